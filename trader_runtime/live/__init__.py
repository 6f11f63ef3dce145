"""The live runtime: feeds, market state, the engine loop, journal, risk and brokers."""
