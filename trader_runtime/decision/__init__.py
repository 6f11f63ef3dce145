"""The decision core: regime, signal, confirmation, sizing, stops; shared by backtest and live."""
