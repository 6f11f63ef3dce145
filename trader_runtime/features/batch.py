"""Build the feature frame of one symbol from its bars (all timeframes) and the market index.

Warm-up values are NaN (not null): a float that is not defined yet.

Higher-timeframe features are computed on higher-timeframe bars and joined to each base row as of
the row's close: a base bar closing at t sees the latest higher-timeframe bar that closed at or
before t, never one still forming. Cross-asset features use the equal-weighted market index of the
universe at the same instants.

Speed: a feature TA-Lib returns as it is stays TA-Lib's array; every other feature is written by one
compiled pass (``kernels``) into a row of a few preallocated blocks, and the rows become the
frame's columns without a copy. The as-of joins and the market alignment are linear merges over
ascending timestamps (Polars' join and a sorted search remain for other inputs, and for a market
not in microseconds). Memory new to the process costs more here than the arithmetic (page faults:
see ``_BLOCK_BYTES``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import partial

import numpy as np
import polars as pl
from numpy.typing import NDArray

from trader_runtime.features import kernels
from trader_runtime.features.indicators import (
    Array,
    BarArrays,
    compute_indicator,
    indicator_values,
)
from trader_runtime.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec, IndicatorSpec
from trader_runtime.market.bars import TS_DTYPE
from trader_runtime.market.timeframes import Timeframe

MARKET_SCHEMA = {"ts": TS_DTYPE, "market_return": pl.Float64(), "market_level": pl.Float64()}


def _epoch_us(ts: pl.Series) -> NDArray[np.int64]:
    return ts.dt.epoch("us").to_numpy()


def _instants(ts: pl.Series, unit: str | None = None) -> NDArray[np.int64] | None:
    """The physical values of a datetime column without nulls (in ``unit`` if given), as a view,
    else None."""
    dtype = ts.dtype
    if not isinstance(dtype, pl.Datetime) or (unit is not None and dtype.time_unit != unit):
        return None
    if ts.null_count():
        return None
    return ts.to_numpy().view(np.int64)


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
        market_return, market_level = _align_market(bars, market)
    return BarArrays(
        open=_column(bars, "open"),
        high=_column(bars, "high"),
        low=_column(bars, "low"),
        close=_column(bars, "close"),
        volume=_column(bars, "volume"),
        market_return=market_return,
        market_level=market_level,
    )


def _align_market(bars: pl.DataFrame, market: pl.DataFrame) -> tuple[Array, Array]:
    """``market_return`` and ``market_level`` at each bar (see ``bar_arrays``)."""
    bar_ts, market_ts = _instants(bars["ts"], "us"), _instants(market["ts"], "us")
    if (
        bar_ts is not None
        and market_ts is not None
        and len(market_ts)
        and kernels.strictly_ascending(bar_ts)
        and kernels.strictly_ascending(market_ts)
    ):
        market_return, market_level = np.empty(len(bar_ts)), np.empty(len(bar_ts))
        kernels.align_market(
            bar_ts,
            market_ts,
            _column(market, "market_return"),
            _column(market, "market_level"),
            market_return,
            market_level,
        )
        return market_return, market_level
    # anything else (unsorted, other time units, no market rows): the general search
    bar_ts, market_ts = _epoch_us(bars["ts"]), _epoch_us(market["ts"])
    pos = np.minimum(np.searchsorted(market_ts, bar_ts), max(len(market_ts) - 1, 0))
    matched = market_ts[pos] == bar_ts if len(market_ts) else np.zeros(len(bar_ts), bool)
    market_return = np.where(matched, _column(market, "market_return")[pos], 0.0)
    market_level = _forward_fill(np.where(matched, _column(market, "market_level")[pos], np.nan))
    return market_return, market_level


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


def _ascending_instants(ts: pl.Series) -> NDArray[np.int64] | None:
    instants = _instants(ts)
    return instants if instants is not None and kernels.non_decreasing(instants) else None


def _join_as_of(
    htf_ts: pl.Series,
    base_ts: pl.Series,
    base_instants: NDArray[np.int64] | None,
    values: list[Array],
    outs: tuple[Array, ...],
) -> None:
    """``outs[k] = take_as_of(values[k], as_of_positions(htf_ts, base_ts))``, as one merge when
    both columns are ascending datetimes of one type (``base_instants``:
    ``_ascending_instants(base_ts)``)."""
    if base_instants is not None and htf_ts.dtype == base_ts.dtype:
        htf_instants = _ascending_instants(htf_ts)
        if htf_instants is not None:
            stacked = np.vstack(values) if values else np.empty((0, len(htf_ts)))
            kernels.gather_as_of(htf_instants, base_instants, stacked, outs)
            return
    positions = as_of_positions(htf_ts, base_ts)
    for v, out in zip(values, outs, strict=True):
        out[:] = take_as_of(v, positions)


# Feature rows come in blocks of at most this size. glibc's malloc raises its mmap threshold to the
# size of a freed mmap-ed block up to 32 MiB (and its heap trim threshold to twice that), so from
# the second call on, blocks below 32 MiB and the TA-Lib temporaries are served again from memory
# the process already has. One block of every row (39 MiB for a year of minutes) would be a fresh
# mmap on every call, faulted in and zeroed page by page: that was the largest cost of a call.
_BLOCK_BYTES = 31 * 2**20


def _feature_rows(n_features: int, n_rows: int) -> Iterator[Array]:
    """Uninitialised float64 arrays of ``n_rows``, at most ``n_features`` of them, carved from
    blocks allocated as they are needed."""
    per_block = max(1, _BLOCK_BYTES // (8 * max(n_rows, 1)))
    left = n_features
    while left > 0:
        block = np.empty((min(per_block, left), n_rows))
        left -= len(block)
        yield from block


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
    n_rows = len(base_bars)
    higher_timeframes = spec.higher_timeframes_for(base)
    for tf in higher_timeframes:
        if tf not in bars:
            raise KeyError(
                f"compute_features needs {tf.value} bars for the higher-timeframe features"
            )
    n_features = len(spec.base) + len(higher_timeframes) * len(spec.higher) + len(spec.cross_asset)
    # one array per feature: TA-Lib's own output, or a row of a shared block
    alloc = partial(next, _feature_rows(n_features, n_rows))
    columns: dict[str, Array] = {}
    arrays = bar_arrays(base_bars, market if spec.cross_asset else None)
    for s in spec.base:
        columns[s.name] = indicator_values(arrays, s, alloc)
    base_instants = _ascending_instants(base_bars["ts"]) if higher_timeframes else None
    for tf in higher_timeframes if spec.higher else ():
        htf_bars = bars[tf]
        htf_arrays = bar_arrays(htf_bars)
        outs = tuple(alloc() for _ in spec.higher)
        values = [compute_indicator(htf_arrays, s) for s in spec.higher]
        _join_as_of(htf_bars["ts"], base_bars["ts"], base_instants, values, outs)
        for s, out in zip(spec.higher, outs, strict=True):
            columns[spec.higher_name(tf, s)] = out
    for s in spec.cross_asset:
        columns[s.name] = indicator_values(arrays, s, alloc)
    symbol = (
        base_bars["symbol"]
        if "symbol" in base_bars.columns
        else pl.Series("symbol", [None] * base_bars.height, pl.String)
    )
    data: dict[str, pl.Series | Array] = {"symbol": symbol, "ts": base_bars["ts"], **columns}
    return pl.DataFrame([pl.Series(name, values) for name, values in data.items()])


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
        logs = np.empty((len(frames), len(first_ts)))
        for f, row in zip(frames, logs, strict=True):
            np.log(_column(f, "close"), out=row)
        mean = np.empty(len(first_ts))
        kernels.mean_log_return(logs, mean)
        by_ts = pl.DataFrame({"ts": first_ts, "market_return": mean})
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
