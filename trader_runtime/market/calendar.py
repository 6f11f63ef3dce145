"""Regular trading hours of US equities, from the ``exchange_calendars`` XNYS calendar.

Everything here is in UTC. A *session* is one trading day, labelled by its date in New York; it has an
open and a close instant (early closes included). One-minute bars of a session close at
``open + 1min, open + 2min, ..., close``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import polars as pl

from trader_runtime.market.bars import TS_DTYPE

EXCHANGE = "XNYS"
_CALENDAR_START = "1990-01-02"


@lru_cache(maxsize=1)
def _xnys() -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange_calendars 4.13 trips a pandas deprecation inside its own constructor
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar(EXCHANGE, start=_CALENDAR_START)


@dataclass(frozen=True, slots=True)
class TradingCalendar:
    """Sessions of one exchange between two dates (inclusive)."""

    start: date
    end: date

    def schedule(self) -> pl.DataFrame:
        """One row per session: ``session`` (date), ``open_ts`` and ``close_ts`` (UTC)."""
        return _schedule(self.start, self.end)

    def sessions(self) -> list[date]:
        return list(self.schedule()["session"])

    def minute_bar_closes(self) -> pl.Series:
        """Close instants of every regular-hours one-minute bar, ascending, UTC."""
        return _minute_closes(self.start, self.end)


@lru_cache(maxsize=64)
def _schedule(start: date, end: date) -> pl.DataFrame:
    cal = _xnys()
    sched = cal.schedule.loc[pd.Timestamp(start) : pd.Timestamp(end)]
    return pl.DataFrame(
        {
            "session": [ts.date() for ts in sched.index],
            "open_ts": pl.Series(sched["open"].to_numpy(dtype="datetime64[us]")).cast(TS_DTYPE),
            "close_ts": pl.Series(sched["close"].to_numpy(dtype="datetime64[us]")).cast(TS_DTYPE),
        }
    )


@lru_cache(maxsize=16)
def _minute_closes(start: date, end: date) -> pl.Series:
    sched = _schedule(start, end)
    opens = sched["open_ts"].dt.epoch("us").to_numpy()
    closes = sched["close_ts"].dt.epoch("us").to_numpy()
    minute_us = 60_000_000
    counts = ((closes - opens) // minute_us).astype(np.int64)
    session_idx = np.repeat(np.arange(len(opens)), counts)
    starts_in_session = np.cumsum(counts) - counts
    offsets = np.arange(int(counts.sum())) - np.repeat(starts_in_session, counts) + 1
    stamps = opens[session_idx] + offsets * minute_us
    return (
        pl.Series("ts", stamps, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    )


def session_bounds(ts: pl.Series) -> pl.DataFrame:
    """For each bar-close instant, the open and close of the session it belongs to.

    A bar belongs to the session with ``open < ts <= close``; instants outside every session get
    nulls. Returns columns ``ts``, ``session``, ``open_ts``, ``close_ts`` in the order of ``ts``.
    """
    frame = pl.DataFrame({"ts": ts.cast(TS_DTYPE)}).with_row_index("_row")
    if frame.height == 0 or frame["ts"].null_count() == frame.height:
        return frame.select(
            "ts",
            pl.lit(None, dtype=pl.Date()).alias("session"),
            pl.lit(None, dtype=TS_DTYPE).alias("open_ts"),
            pl.lit(None, dtype=TS_DTYPE).alias("close_ts"),
        )
    lo = pd.Timestamp(frame["ts"].min()).tz_convert("America/New_York")  # type: ignore[arg-type]
    hi = pd.Timestamp(frame["ts"].max()).tz_convert("America/New_York")  # type: ignore[arg-type]
    sched = _schedule((lo - pd.Timedelta(days=7)).date(), (hi + pd.Timedelta(days=7)).date())
    joined = (
        frame.filter(pl.col("ts").is_not_null())
        .sort("ts")
        .join_asof(sched.sort("close_ts"), left_on="ts", right_on="close_ts", strategy="forward")
        .with_columns(
            inside=(pl.col("ts") > pl.col("open_ts")) & (pl.col("ts") <= pl.col("close_ts"))
        )
        .select(
            "_row",
            pl.when("inside").then(pl.col("session")).alias("session"),
            pl.when("inside").then(pl.col("open_ts")).alias("open_ts"),
            pl.when("inside").then(pl.col("close_ts")).alias("close_ts"),
        )
    )
    return (
        frame.join(joined, on="_row", how="left")
        .sort("_row")
        .select("ts", "session", "open_ts", "close_ts")
    )
