"""Real daily OHLCV of the S&P 500 and the NASDAQ Composite, 1999-2018, shipped in ``arch``.

Each daily bar is stamped at the session close on the XNYS calendar (16:00 New York, earlier on an
early close). A date that is not a session keeps 16:00 New York so validation quarantines it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from types import MappingProxyType

import pandas as pd
import polars as pl

from trader_runtime.errors import UnknownSymbolError
from trader_runtime.market.bars import TS_DTYPE, conform
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest


def _load_sp500() -> pd.DataFrame:
    from arch.data import sp500

    return sp500.load()


def _load_nasdaq() -> pd.DataFrame:
    from arch.data import nasdaq

    return nasdaq.load()


LOADERS: MappingProxyType[str, Callable[[], pd.DataFrame]] = MappingProxyType(
    {"SP500": _load_sp500, "NASDAQ": _load_nasdaq}
)
SYMBOLS: tuple[str, ...] = tuple(LOADERS)


class IndexHistorySource:
    """Daily index bars from the data files of the ``arch`` package (no network)."""

    @property
    def name(self) -> str:
        return "index_history"

    @property
    def base_timeframe(self) -> Timeframe:
        return Timeframe.D1

    def has_symbol(self, symbol: str) -> bool:
        return symbol in LOADERS

    def load(self, request: BarRequest) -> pl.DataFrame:
        loader = LOADERS.get(request.symbol)
        if loader is None:
            raise UnknownSymbolError(
                f"index_history has no symbol {request.symbol!r}; it has {', '.join(SYMBOLS)}"
            )
        raw = loader()
        raw = raw.loc[pd.Timestamp(request.start) : pd.Timestamp(request.end)]
        days = pl.DataFrame(
            {
                "session": pl.Series(raw.index.to_numpy(dtype="datetime64[us]")).cast(pl.Date),
                "open": raw["Open"].to_numpy(),
                "high": raw["High"].to_numpy(),
                "low": raw["Low"].to_numpy(),
                "close": raw["Close"].to_numpy(),
                "volume": raw["Volume"].to_numpy().astype("float64"),
            }
        )
        return conform(stamp_daily(days), symbol=request.symbol)


def stamp_daily(days: pl.DataFrame, *, date_column: str = "session") -> pl.DataFrame:
    """Add ``ts``: each date's session close in UTC (16:00 New York where it is not a session)."""
    if days.height == 0:
        return days.with_columns(pl.lit(None, dtype=TS_DTYPE).alias("ts")).drop(date_column)
    dates: list[date] = days[date_column].to_list()
    schedule = (
        TradingCalendar(min(dates), max(dates))
        .schedule()
        .select(pl.col("session").alias(date_column), "close_ts")
    )
    fallback = (
        (pl.col(date_column).cast(pl.Datetime("us")) + pl.duration(hours=16))
        .dt.replace_time_zone("America/New_York")
        .dt.convert_time_zone("UTC")
    )
    return (
        days.join(schedule, on=date_column, how="left")
        .with_columns(pl.coalesce("close_ts", fallback).cast(TS_DTYPE).alias("ts"))
        .drop("close_ts", date_column)
    )
