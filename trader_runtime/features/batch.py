"""Build the feature frame of one symbol from its bars (all timeframes) and the market index.

Higher-timeframe features are computed on higher-timeframe bars and joined to each base row as of
the row's close: a base bar closing at t sees the latest higher-timeframe bar that closed at or
before t, never one still forming. Cross-asset features use the equal-weighted market index of the
universe at the same instants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl

from trader_runtime.features.indicators import Array, BarArrays, compute_indicator
from trader_runtime.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec, IndicatorSpec
from trader_runtime.market.bars import TS_DTYPE
from trader_runtime.market.timeframes import Timeframe

MARKET_SCHEMA = {"ts": TS_DTYPE, "market_return": pl.Float64(), "market_level": pl.Float64()}


def bar_arrays(bars: pl.DataFrame, market: pl.DataFrame | None = None) -> BarArrays:
    """Arrays of one symbol's bars; ``market`` (ts, market_return, market_level) is aligned by ts."""

    def col(frame: pl.DataFrame, name: str) -> Array:
        return np.ascontiguousarray(frame[name].to_numpy(), dtype=np.float64)

    market_return = market_level = None
    if market is not None:
        aligned = bars.select("ts").join(market, on="ts", how="left")
        aligned = aligned.with_columns(
            pl.col("market_return").fill_null(0.0), pl.col("market_level").forward_fill()
        )
        market_return = col(aligned, "market_return")
        market_level = col(aligned, "market_level")
    return BarArrays(
        open=col(bars, "open"),
        high=col(bars, "high"),
        low=col(bars, "low"),
        close=col(bars, "close"),
        volume=col(bars, "volume"),
        market_return=market_return,
        market_level=market_level,
    )


def indicator_frame(
    bars: pl.DataFrame,
    specs: Iterable[IndicatorSpec],
    *,
    names: Iterable[str] | None = None,
    market: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """``ts`` plus one column per indicator, named by ``names`` (default: the specs' names)."""
    specs = tuple(specs)
    arrays = bar_arrays(bars, market)
    columns = tuple(names) if names is not None else tuple(s.name for s in specs)
    data = {
        name: compute_indicator(arrays, spec) for name, spec in zip(columns, specs, strict=True)
    }
    return pl.DataFrame({"ts": bars["ts"], **data}).fill_nan(None)


def compute_features(
    bars: Mapping[Timeframe, pl.DataFrame],
    *,
    base: Timeframe = Timeframe.M1,
    market: pl.DataFrame | None = None,
    spec: FeatureSetSpec = DEFAULT_FEATURE_SET,
) -> pl.DataFrame:
    """Columns ``symbol, ts`` and every feature of ``spec`` (nulls during warm-up), one row per
    base bar. ``bars`` maps timeframe to that timeframe's bars of one symbol; every higher
    timeframe of the spec above ``base`` must be present; ``market`` is required when the spec has
    cross-asset features."""
    base_bars = bars[base]
    out = indicator_frame(base_bars, spec.base)
    for tf in spec.higher_timeframes_for(base):
        if tf not in bars:
            raise KeyError(
                f"compute_features needs {tf.value} bars for the higher-timeframe features"
            )
        htf = indicator_frame(
            bars[tf], spec.higher, names=[spec.higher_name(tf, s) for s in spec.higher]
        )
        out = out.join_asof(htf, on="ts", strategy="backward", check_sortedness=False)
    if spec.cross_asset:
        if market is None:
            raise ValueError("compute_features needs the market index for cross-asset features")
        out = out.hstack(indicator_frame(base_bars, spec.cross_asset, market=market).drop("ts"))
    symbol = base_bars["symbol"] if "symbol" in base_bars.columns else None
    out = out.insert_column(
        0, symbol if symbol is not None else pl.Series("symbol", [None] * out.height, pl.String)
    )
    return out.select("symbol", "ts", *spec.feature_names(base))


def market_index(closes: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Equal-weighted index of several symbols: at each instant, the mean one-bar log return of the
    symbols that have a bar then (their own previous bar as the base), and its cumulative level
    (1.0 before the first return). Input frames need ``ts`` and ``close``."""
    returns = [
        frame.select("ts", (pl.col("close").log() - pl.col("close").log().shift(1)).alias("r"))
        for frame in closes
    ]
    if not returns:
        return pl.DataFrame(schema=MARKET_SCHEMA)
    stacked = pl.concat(returns)
    by_ts = (
        stacked.group_by("ts")
        .agg(pl.col("r").mean().fill_null(0.0).alias("market_return"))
        .sort("ts")
    )
    return by_ts.with_columns(pl.col("market_return").cum_sum().exp().alias("market_level")).select(
        list(MARKET_SCHEMA)
    )
