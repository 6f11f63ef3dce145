"""Build the market data source that serves a symbol, from settings."""

from __future__ import annotations

from trader_runtime.errors import ConfigError
from trader_runtime.settings import RoboSettings, SourceName
from trader_runtime.sources.base import MarketDataSource
from trader_runtime.sources.files import FilesSource
from trader_runtime.sources.index_history import IndexHistorySource
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource


def build_source(name: SourceName, settings: RoboSettings) -> MarketDataSource:
    """The source called ``name``, configured from ``settings``."""
    if name == "synthetic":
        return SyntheticSource(
            SyntheticMarketConfig(
                seed=settings.synthetic_seed, signal_strength=settings.signal_strength
            )
        )
    if name == "index_history":
        return IndexHistorySource()
    if name == "files":
        if settings.files_dir is None:
            raise ConfigError("source 'files' needs ROBO_FILES_DIR")
        return FilesSource(settings.files_dir, settings.files_timeframe)
    if name == "ibkr":
        from trader_runtime.brokers.ib.historical import IbHistoricalSource

        return IbHistoricalSource(settings.ib)
    raise ConfigError(f"unknown source {name!r}")


def source_for_symbol(symbol: str, settings: RoboSettings) -> MarketDataSource:
    return build_source(settings.source_for(symbol), settings)
