"""The compiled loops of the batch feature engine give the numpy expressions they replace, bit for
bit (NaN positions and the sign of zero included), on arbitrary floats: NaN, infinities, zeros."""

from __future__ import annotations

import gc
from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

from tests.features_kit import all_timeframes, minute_bars
from trader_runtime.features import kernels
from trader_runtime.features.batch import (
    as_of_positions,
    compute_features,
    market_index,
    take_as_of,
)
from trader_runtime.features.indicators import safe_ratio, window_sum

Array = NDArray[np.float64]
FAST = settings(max_examples=60, deadline=None)

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
lengths = st.integers(min_value=0, max_value=40)
lags = st.integers(min_value=1, max_value=45)


def _columns(k: int) -> st.SearchStrategy[list[Array]]:
    """``k`` float64 arrays of one length, with NaN, infinities and signed zeros."""
    return lengths.flatmap(
        lambda n: st.lists(arrays(np.float64, n, elements=floats), min_size=k, max_size=k)
    )


def _assert_same(ours: Array, numpy: Array) -> None:
    """Same NaN positions; every other element identical in its bits (so -0.0 != 0.0)."""
    assert ours.shape == numpy.shape
    nan = np.isnan(numpy)
    np.testing.assert_array_equal(np.isnan(ours), nan)
    assert ours[~nan].tobytes() == numpy[~nan].tobytes()


def _run(kernel: Callable[..., None], *args: object, n: int) -> Array:
    out = np.full(n, 12345.0)  # a value no kernel writes: every element must be overwritten
    kernel(*args, out)
    return out


def _lagged(x: Array, lag: int) -> Array:
    out = np.full(len(x), np.nan)
    if lag < len(x):
        out[lag:] = x[lag:] - x[: len(x) - lag]
    return out


@FAST
@given(_columns(2))
def test_elementwise_ratios_are_the_numpy_expressions(xs: list[Array]) -> None:
    num, den = xs
    with np.errstate(all="ignore"):
        _assert_same(_run(kernels.ratio_minus_one, num, den, n=len(num)), num / den - 1.0)
        _assert_same(_run(kernels.divide, num, den, n=len(num)), num / den)
        for fallback in (0.0, 0.5, 1.0):
            _assert_same(
                _run(kernels.safe_ratio, num, den, fallback, n=len(num)),
                safe_ratio(num, den, fallback),
            )


@FAST
@given(_columns(3))
def test_three_input_ratios_are_the_numpy_expressions(xs: list[Array]) -> None:
    a, b, c = xs
    with np.errstate(all="ignore"):
        _assert_same(_run(kernels.spread_ratio, a, b, c, n=len(a)), (a - b) / c)
        _assert_same(
            _run(kernels.safe_diff_ratio, a, b, c, 0.0, n=len(a)), safe_ratio(a - b, c, 0.0)
        )
        _assert_same(_run(kernels.band_position, a, b, c, n=len(a)), safe_ratio(a - c, b - c, 0.5))


@FAST
@given(_columns(2), lags)
def test_lagged_expressions_are_the_numpy_expressions(xs: list[Array], lag: int) -> None:
    a, b = xs
    n = len(a)
    with np.errstate(all="ignore"):
        _assert_same(_run(kernels.lagged_diff, a, lag, n=n), _lagged(a, lag))
        _assert_same(
            _run(kernels.lagged_diff_spread, a, b, lag, n=n), _lagged(a, lag) - _lagged(b, lag)
        )
        ratio = np.full(n, np.nan)
        if lag < n:
            ratio[lag:] = a[lag:] / a[: n - lag] - 1.0
        _assert_same(_run(kernels.lagged_ratio_minus_one, a, lag, n=n), ratio)
        _assert_same(
            _run(kernels.lagged_flow_ratio, a, lag, b, n=n), safe_ratio(_lagged(a, lag), b, 0.0)
        )


def _numpy_skew(x: Array, period: int) -> Array:
    """The running-sum skew as numpy expressions (the batch engine's former code)."""
    n = len(x)
    out = np.full(n, np.nan)
    first = int(np.argmax(~np.isnan(x))) if n and not np.isnan(x).all() else n
    if first + period > n:
        return out
    body = x[first:]
    sq = body * body
    mean = window_sum(body, period) / period
    ex2 = window_sum(sq, period) / period
    ex3 = window_sum(sq * body, period) / period
    m2 = ex2 - mean * mean
    m3 = ex3 - 3.0 * mean * ex2 + 2.0 * mean * mean * mean
    out[first:] = safe_ratio(m3, m2 * np.sqrt(np.abs(m2)), 0.0)
    return out


@FAST
@given(
    st.integers(min_value=0, max_value=4),
    arrays(np.float64, st.integers(0, 300), elements=st.floats(-1e-2, 1e-2)),
    st.integers(min_value=1, max_value=70),
)
def test_rolling_skew_is_the_running_sum_formula(lead: int, body: Array, period: int) -> None:
    x = np.r_[np.full(lead, np.nan), body]
    with np.errstate(all="ignore"):
        _assert_same(_run(kernels.rolling_skew, x, period, n=len(x)), _numpy_skew(x, period))


def _ascending(draw: st.DrawFn, max_size: int) -> NDArray[np.int64]:
    steps = draw(st.lists(st.integers(0, 3), max_size=max_size))
    return np.cumsum(np.array(steps, dtype=np.int64)) * 60


@FAST
@given(st.data())
def test_the_as_of_gather_is_the_backward_as_of_join(data: st.DataObject) -> None:
    base = _ascending(data.draw, 80)
    htf = _ascending(data.draw, 30)  # repeats allowed: the last of equal instants is taken
    values = data.draw(arrays(np.float64, (3, len(htf)), elements=floats))
    outs = tuple(np.full(len(base), 12345.0) for _ in range(3))
    kernels.gather_as_of(htf, base, values, outs)
    as_ts = lambda x: pl.Series(x).cast(pl.Datetime("us", "UTC"))  # noqa: E731
    positions = as_of_positions(as_ts(htf), as_ts(base))
    np.testing.assert_array_equal(positions, np.searchsorted(htf, base, side="right") - 1)
    for row, out in zip(values, outs, strict=True):
        _assert_same(out, take_as_of(row, positions))


@FAST
@given(st.lists(st.integers(-3, 3), max_size=30))
def test_order_checks_are_the_numpy_comparisons(xs: list[int]) -> None:
    x = np.array(xs, dtype=np.int64)
    assert kernels.strictly_ascending(x) == bool(np.all(x[1:] > x[:-1]))
    assert kernels.non_decreasing(x) == bool(np.all(x[1:] >= x[:-1]))


@FAST
@given(st.integers(1, 6).flatmap(lambda k: _columns(k)))
def test_the_mean_log_return_is_the_numpy_nan_mean_in_symbol_order(logs_: list[Array]) -> None:
    logs = np.vstack(logs_)
    with np.errstate(all="ignore"):
        returns = np.full_like(logs, np.nan)
        returns[:, 1:] = logs[:, 1:] - logs[:, :-1]
        counts = (~np.isnan(returns)).sum(axis=0)
        expected = np.where(counts > 0, np.nansum(returns, axis=0) / counts, 0.0)
    _assert_same(_run(kernels.mean_log_return, logs, n=logs.shape[1]), expected)


@FAST
@given(st.data())
def test_the_market_is_aligned_as_a_sorted_search_then_a_forward_fill(
    data: st.DataObject,
) -> None:
    bar_ts = np.unique(_ascending(data.draw, 60))
    market_ts = np.unique(_ascending(data.draw, 60))
    if not len(market_ts):
        market_ts = np.array([0], np.int64)
    market_return = data.draw(arrays(np.float64, len(market_ts), elements=floats))
    level = data.draw(arrays(np.float64, len(market_ts), elements=floats))
    out_return, out_level = np.full(len(bar_ts), 7.0), np.full(len(bar_ts), 7.0)
    kernels.align_market(bar_ts, market_ts, market_return, level, out_return, out_level)
    pos = np.minimum(np.searchsorted(market_ts, bar_ts), len(market_ts) - 1)
    matched = market_ts[pos] == bar_ts
    expected_level = np.where(matched, level[pos], np.nan)
    for i in range(1, len(expected_level)):  # forward fill
        if np.isnan(expected_level[i]):
            expected_level[i] = expected_level[i - 1]
    _assert_same(out_return, np.where(matched, market_return[pos], 0.0))
    _assert_same(out_level, expected_level)


@pytest.mark.parametrize("unit", ["ms", "ns"])
def test_timestamps_in_other_units_give_the_same_features(unit: str) -> None:
    """Microsecond timestamps take the compiled merges; others the general search and join."""
    m1 = minute_bars("AAA").head(3000)
    market = market_index([m1.select("ts", "close"), minute_bars("BBB").head(2990)])
    expected = compute_features(all_timeframes(m1), market=market)
    cast = pl.col("ts").cast(pl.Datetime(unit, "UTC"))
    got = compute_features(
        {tf: b.with_columns(cast) for tf, b in all_timeframes(m1).items()},
        market=market.with_columns(cast),
    )
    for name in expected.columns[2:]:
        _assert_same(got[name].to_numpy(), expected[name].to_numpy())


def test_frames_of_successive_calls_do_not_share_memory() -> None:
    """Feature columns are carved from shared blocks: a later call must never write into them."""
    bars = all_timeframes(minute_bars("AAA").head(2000))
    market = market_index([bars[next(iter(bars))].select("ts", "close")])
    first = compute_features(bars, market=market)
    snapshot = {name: first[name].to_numpy().copy() for name in first.columns[2:]}
    for _ in range(3):
        other = compute_features(all_timeframes(minute_bars("BBB").head(2000)), market=market)
        del other
        gc.collect()
    for name, values in snapshot.items():
        assert first[name].to_numpy().tobytes() == values.tobytes(), name
