"""The one interface every market data source implements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

import polars as pl

from trader_runtime.market.timeframes import Timeframe


@dataclass(frozen=True, slots=True)
class BarRequest:
    """Which bars to load: one symbol, sessions from ``start`` to ``end`` inclusive (New York dates)."""

    symbol: str
    start: date
    end: date


@runtime_checkable
class MarketDataSource(Protocol):
    """A source of OHLCV bars.

    ``load`` returns a frame with the columns of ``trader_runtime.market.bars.BAR_SCHEMA`` (see
    ``conform``), bar-close UTC timestamps, at the source's ``base_timeframe``. It does not validate:
    rows may be bad, and ``trader_runtime.market.validation`` decides what is quarantined.
    """

    @property
    def name(self) -> str: ...

    @property
    def base_timeframe(self) -> Timeframe: ...

    def has_symbol(self, symbol: str) -> bool: ...

    def load(self, request: BarRequest) -> pl.DataFrame: ...
