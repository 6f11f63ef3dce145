"""Build the feature frame of one symbol from its bars (all timeframes) and the market index.

Warm-up values are NaN (not null): a float that is not defined yet.

Higher-timeframe features are computed on higher-timeframe bars and joined to each base row as of
the row's close: a base bar closing at t sees the latest higher-timeframe bar that closed at or
before t, never one still forming. Cross-asset features use the equal-weighted market index of the
universe at the same instants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl
from numpy.typing import NDArray

from trader_runtime.features.indicators import Array, BarArrays, compute_indicator
from trader_runtime.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec, IndicatorSpec
from trader_runtime.market.bars import TS_DTYPE
from trader_runtime.market.timeframes import Timeframe

MARKET_SCHEMA = {"ts": TS_DTYPE, "market_return": pl.Float64(), "market_level": pl.Float64()}


def _epoch_us(ts: pl.Series) -> NDArray[np.int64]:
    return ts.dt.epoch("us").to_numpy()


def _column(frame: pl.DataFrame, name: str) -> Array:
    return np.ascontiguousarray(frame[name].to_numpy(), dtype=np.float64)


def _forward_fill(x: Array) -> Array:
    """Replace each NaN by the last non-NaN before it (leading NaNs stay)."""
    present = ~np.isnan(x)
    last = np.maximum.accumulate(np.where(present, np.arange(len(x)), -1))
    out = x[np.maximum(last, 0)]
    out[last < 0] = np.nan
    return out


def bar_arrays(bars: pl.DataFrame, market: pl.DataFrame | None = None) -> BarArrays:
    """Arrays of one symbol's bars. ``market`` (ts, market_return, market_level) is aligned by ts:
    a bar without a market row gets return 0 and the level of the symbol's previous bar."""
    market_return = market_level = None
    if market is not None:
        bar_ts, market_ts = _epoch_us(bars["ts"]), _epoch_us(market["ts"])
        pos = np.minimum(np.searchsorted(market_ts, bar_ts), max(len(market_ts) - 1, 0))
        matched = market_ts[pos] == bar_ts if len(market_ts) else np.zeros(len(bar_ts), bool)
        market_return = np.where(matched, _column(market, "market_return")[pos], 0.0)
        market_level = _forward_fill(
            np.where(matched, _column(market, "market_level")[pos], np.nan)
        )
    return BarArrays(
        open=_column(bars, "open"),
        high=_column(bars, "high"),
        low=_column(bars, "low"),
        close=_column(bars, "close"),
        volume=_column(bars, "volume"),
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
    return pl.DataFrame({"ts": bars["ts"], **data}, nan_to_null=True)


def as_of_positions(htf_ts: pl.Series, base_ts: pl.Series) -> NDArray[np.int64]:
    """For each base instant, the row of the latest higher-timeframe bar closed at or before it
    (-1 before the first one): a backward as-of join on bar-close timestamps (a linear merge)."""
    right = pl.DataFrame({"ts": htf_ts}).with_row_index("pos")
    joined = pl.DataFrame({"ts": base_ts}).join_asof(
        right, on="ts", strategy="backward", check_sortedness=False
    )
    return joined["pos"].fill_null(-1).cast(pl.Int64).to_numpy()


def take_as_of(values: Array, positions: NDArray[np.int64]) -> Array:
    """``values`` at ``positions`` from ``as_of_positions``; NaN where there is no bar yet."""
    if not len(values):
        return np.full(len(positions), np.nan)
    out = values.take(np.maximum(positions, 0))
    out[positions < 0] = np.nan
    return out


def compute_features(
    bars: Mapping[Timeframe, pl.DataFrame],
    *,
    base: Timeframe = Timeframe.M1,
    market: pl.DataFrame | None = None,
    spec: FeatureSetSpec = DEFAULT_FEATURE_SET,
) -> pl.DataFrame:
    """Columns ``symbol, ts`` and every feature of ``spec`` (NaN during warm-up), one row per
    base bar. ``bars`` maps timeframe to that timeframe's bars of one symbol; every higher
    timeframe of the spec above ``base`` must be present; ``market`` is required when the spec has
    cross-asset features."""
    base_bars = bars[base]
    if spec.cross_asset and market is None:
        raise ValueError("compute_features needs the market index for cross-asset features")
    arrays = bar_arrays(base_bars, market if spec.cross_asset else None)
    columns: dict[str, Array] = {s.name: compute_indicator(arrays, s) for s in spec.base}
    for tf in spec.higher_timeframes_for(base):
        if tf not in bars:
            raise KeyError(
                f"compute_features needs {tf.value} bars for the higher-timeframe features"
            )
        htf_bars = bars[tf]
        htf_arrays = bar_arrays(htf_bars)
        positions = as_of_positions(htf_bars["ts"], base_bars["ts"])
        for s in spec.higher:
            values = compute_indicator(htf_arrays, s)
            columns[spec.higher_name(tf, s)] = take_as_of(values, positions)
    for s in spec.cross_asset:
        columns[s.name] = compute_indicator(arrays, s)
    symbol = (
        base_bars["symbol"]
        if "symbol" in base_bars.columns
        else pl.Series("symbol", [None] * base_bars.height, pl.String)
    )
    return pl.DataFrame({"symbol": symbol, "ts": base_bars["ts"], **columns})


def market_index(closes: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """Equal-weighted index of several symbols: at each instant, the mean one-bar log return of the
    symbols that have a bar then (their own previous bar as the base), and its cumulative level
    (1.0 before the first return). Input frames need ``ts`` and ``close``; the mean adds the
    symbols in the order given."""
    frames = list(closes)
    if not frames:
        return pl.DataFrame(schema=MARKET_SCHEMA)
    first_ts = frames[0]["ts"]
    if all(f["ts"].equals(first_ts) for f in frames[1:]):
        # every symbol on the same bar grid (the usual case): one column per symbol
        logs = np.vstack([np.log(_column(f, "close")) for f in frames])
        returns = np.full_like(logs, np.nan)
        returns[:, 1:] = logs[:, 1:] - logs[:, :-1]
        with np.errstate(invalid="ignore"):
            counts = (~np.isnan(returns)).sum(axis=0)
            mean = np.nansum(returns, axis=0) / counts
        by_ts = pl.DataFrame({"ts": first_ts, "market_return": np.where(counts > 0, mean, 0.0)})
    else:
        stacked = pl.concat(
            f.select("ts", (pl.col("close").log() - pl.col("close").log().shift(1)).alias("r"))
            for f in frames
        )
        by_ts = (
            stacked.group_by("ts")
            .agg(pl.col("r").mean().fill_null(0.0).alias("market_return"))
            .sort("ts")
        )
    return by_ts.with_columns(pl.col("market_return").cum_sum().exp().alias("market_level")).select(
        list(MARKET_SCHEMA)
    )
