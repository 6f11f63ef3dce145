"""Resampling one-minute bars to 5m, 15m, 1h and 1d on the exchange calendar.

Intraday buckets are anchored at the session open: a 1h bar covers 09:30-10:30 New York time, and the
last bucket of a session is cut at the close (15:30-16:00, or 12:30-13:00 on an early close). The
daily bar covers the whole session. Every bar is stamped with its close instant in UTC, and a bucket
is emitted only once the input reaches its close, so a higher-timeframe bar never exists before it is
complete.
"""

from __future__ import annotations

import polars as pl

from trader_runtime.market.bars import BAR_COLUMNS, TS_DTYPE
from trader_runtime.market.calendar import TradingCalendar, session_bounds
from trader_runtime.market.timeframes import Timeframe


def bucket_close(ts: pl.Expr, open_ts: pl.Expr, close_ts: pl.Expr, timeframe: Timeframe) -> pl.Expr:
    """The close instant of the ``timeframe`` bar that contains the one-minute bar closing at ``ts``."""
    minutes = timeframe.minutes
    if minutes is None:
        return close_ts
    step_us = minutes * 60_000_000
    offset_us = (ts - open_ts).dt.total_microseconds()
    n_steps = (offset_us + step_us - 1) // step_us
    end = open_ts + pl.duration(microseconds=n_steps * step_us)
    return pl.min_horizontal(end, close_ts)


def resample_bars(bars_1m: pl.DataFrame, timeframe: Timeframe) -> pl.DataFrame:
    """Aggregate validated one-minute bars of one symbol to ``timeframe``.

    open: first, high: max, low: min, close: last, volume: sum, vwap: volume-weighted mean of the
    minute vwaps that are present (plain mean when they traded no volume; null when the source has
    none), trade_count: sum (null when the source has none).
    """
    if timeframe is Timeframe.M1:
        return bars_1m.select(BAR_COLUMNS)
    if bars_1m.height == 0:
        return bars_1m.select(BAR_COLUMNS)
    bounds = session_bounds(bars_1m["ts"])
    work = bars_1m.with_columns(
        bounds["open_ts"].alias("_open"), bounds["close_ts"].alias("_close")
    ).with_columns(
        bucket_close(pl.col("ts"), pl.col("_open"), pl.col("_close"), timeframe).alias("_bucket")
    )
    last_ts = bars_1m["ts"].max()
    volume = pl.col("volume")
    has_vwap = pl.col("vwap").is_not_null()
    vwap_volume = volume.filter(has_vwap).sum()
    weighted_vwap = (pl.col("vwap") * volume).sum() / vwap_volume
    out = (
        work.filter(pl.col("_bucket") <= last_ts)
        .group_by("_bucket", maintain_order=True)
        .agg(
            pl.col("symbol").first(),
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            volume.sum(),
            pl.when(~has_vwap.any())
            .then(None)
            .when(vwap_volume > 0)
            .then(weighted_vwap)
            .otherwise(pl.col("vwap").mean())
            .alias("vwap"),
            pl.when(pl.col("trade_count").is_not_null().any())
            .then(pl.col("trade_count").sum())
            .alias("trade_count"),
        )
        .rename({"_bucket": "ts"})
        .with_columns(pl.col("ts").cast(TS_DTYPE))
        .sort("ts")
    )
    return out.select(BAR_COLUMNS)


def expected_bar_closes(calendar: TradingCalendar, timeframe: Timeframe) -> pl.Series:
    """Every bar close of ``timeframe`` the calendar has between its first and last session."""
    minute_closes = calendar.minute_bar_closes()
    if timeframe is Timeframe.M1:
        return minute_closes
    if timeframe is Timeframe.D1:
        return calendar.schedule()["close_ts"].alias("ts")
    bounds = session_bounds(minute_closes)
    return (
        bounds.select(
            bucket_close(pl.col("ts"), pl.col("open_ts"), pl.col("close_ts"), timeframe).alias("ts")
        )
        .unique(maintain_order=True)
        .to_series()
    )
