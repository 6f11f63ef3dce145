"""The bar schema every source, validator and store agrees on.

A bar is keyed by (symbol, timeframe, ts) where ``ts`` is the UTC instant the bar *closed*.
Prices are in the instrument's currency, ``volume`` in shares (or index units), ``vwap`` is the
volume-weighted average price of the bar and ``trade_count`` the number of trades, both null where
the source has no such field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

TS_DTYPE = pl.Datetime("us", "UTC")

BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "ts": TS_DTYPE,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "vwap": pl.Float64(),
    "trade_count": pl.Int64(),
}
BAR_COLUMNS: tuple[str, ...] = tuple(BAR_SCHEMA)
REQUIRED_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS: tuple[str, ...] = ("vwap", "trade_count")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of one symbol as plain floats, for the live loop; ``ts`` is its close (UTC)."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def empty_bars() -> pl.DataFrame:
    """A zero-row frame with the bar schema."""
    return pl.DataFrame(schema=BAR_SCHEMA)


def conform(frame: pl.DataFrame, *, symbol: str) -> pl.DataFrame:
    """Return ``frame`` with exactly the bar columns, in order, with the bar dtypes.

    Optional columns missing from ``frame`` are added as nulls. Values that cannot be cast become
    null (validation then quarantines the row with a reason); required columns must be present.
    """
    exprs: list[pl.Expr] = []
    for name, dtype in BAR_SCHEMA.items():
        if name == "symbol":
            exprs.append(pl.lit(symbol, dtype=pl.String()).alias("symbol"))
        elif name in frame.columns:
            exprs.append(pl.col(name).cast(dtype, strict=False).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)
