"""Hand-made bars for tests: small, exact, and on the real calendar."""

from __future__ import annotations

from datetime import date

import polars as pl

from trader_runtime.market.bars import conform
from trader_runtime.market.calendar import TradingCalendar


def minute_bars(
    start: date, end: date, *, symbol: str = "TEST", base: float = 100.0
) -> pl.DataFrame:
    """Conformed one-minute bars on every regular-hours minute between two sessions.

    Bar i has open = base + i, close = open + 0.5, high = close + 0.25, low = open - 0.25,
    volume = 10 + i, vwap = (high + low + close) / 3 and trade_count = 1 + i % 7, so aggregates can
    be computed by hand.
    """
    ts = TradingCalendar(start, end).minute_bar_closes()
    i = pl.int_range(0, ts.len(), eager=True).cast(pl.Float64)
    frame = pl.DataFrame({"ts": ts}).with_columns(
        open=base + i,
        close=base + i + 0.5,
        high=base + i + 0.75,
        low=base + i - 0.25,
        volume=10.0 + i,
        trade_count=(1 + i.cast(pl.Int64) % 7),
    )
    frame = frame.with_columns(vwap=(pl.col("high") + pl.col("low") + pl.col("close")) / 3)
    return conform(frame, symbol=symbol)
