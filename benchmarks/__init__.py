"""Reproducible performance benchmarks: ``python -m benchmarks --list`` names them.

Each benchmark is one module registering ``run(quick) -> list[Measurement]`` with
``benchmarks.harness.register``; importing it below is all that adds it to the suite.
"""

from benchmarks import (
    backtest,  # noqa: F401  (registers "backtest")
    features,  # noqa: F401  (registers "features")
    ingest,  # noqa: F401  (registers "ingest")
    latency,  # noqa: F401  (registers "latency")
    training,  # noqa: F401  (registers "training")
)
