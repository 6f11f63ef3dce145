"""Compiled loops of the batch feature engine: the arithmetic around the TA-Lib calls, fused.

Each kernel writes one output array in a single pass, where the numpy expression it replaces made
one temporary array per operation. The arithmetic is numpy's, operation for operation and in the
same order (no fastmath, so no reassociation or fused multiply-add; numpy's error model, so a
division by zero gives inf or NaN as in numpy, not an exception): results are bit-identical to the
numpy expressions given in each docstring, NaN positions included. Every kernel writes every
element of its output. Logarithms stay in numpy: numba would call the C library's ``log``, which
numpy does not use on every CPU. Arguments are not checked: callers pass arrays of the lengths
the docstrings imply.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

NAN = math.nan
_jit = njit(cache=True, error_model="numpy")


@_jit
def _safe(num: float, den: float, fallback: float) -> float:
    """Scalar ``indicators.safe_ratio``."""
    if den <= 0.0 and not math.isnan(num):
        return fallback
    return num / den


@_jit
def ratio_minus_one(num: Any, den: Any, out: Any) -> None:
    """``num / den - 1.0``."""
    for i in range(out.shape[0]):
        out[i] = num[i] / den[i] - 1.0


@_jit
def divide(num: Any, den: Any, out: Any) -> None:
    """``num / den``."""
    for i in range(out.shape[0]):
        out[i] = num[i] / den[i]


@_jit
def lagged_diff(x: Any, lag: int, out: Any) -> None:
    """``x[t] - x[t - lag]``; NaN for the first ``lag`` rows."""
    n = out.shape[0]
    for i in range(min(lag, n)):
        out[i] = NAN
    for i in range(lag, n):
        out[i] = x[i] - x[i - lag]


@_jit
def lagged_ratio_minus_one(x: Any, lag: int, out: Any) -> None:
    """``x[t] / x[t - lag] - 1.0``; NaN for the first ``lag`` rows."""
    n = out.shape[0]
    for i in range(min(lag, n)):
        out[i] = NAN
    for i in range(lag, n):
        out[i] = x[i] / x[i - lag] - 1.0


@_jit
def lagged_diff_spread(a: Any, b: Any, lag: int, out: Any) -> None:
    """``(a[t] - a[t - lag]) - (b[t] - b[t - lag])``; NaN for the first ``lag`` rows."""
    n = out.shape[0]
    for i in range(min(lag, n)):
        out[i] = NAN
    for i in range(lag, n):
        out[i] = (a[i] - a[i - lag]) - (b[i] - b[i - lag])


@_jit
def safe_ratio(num: Any, den: Any, fallback: float, out: Any) -> None:
    """``indicators.safe_ratio(num, den, fallback)``."""
    for i in range(out.shape[0]):
        out[i] = _safe(num[i], den[i], fallback)


@_jit
def safe_diff_ratio(a: Any, b: Any, den: Any, fallback: float, out: Any) -> None:
    """``safe_ratio(a - b, den, fallback)``."""
    for i in range(out.shape[0]):
        out[i] = _safe(a[i] - b[i], den[i], fallback)


@_jit
def band_position(close: Any, upper: Any, lower: Any, out: Any) -> None:
    """``safe_ratio(close - lower, upper - lower, 0.5)``."""
    for i in range(out.shape[0]):
        out[i] = _safe(close[i] - lower[i], upper[i] - lower[i], 0.5)


@_jit
def spread_ratio(a: Any, b: Any, den: Any, out: Any) -> None:
    """``(a - b) / den``."""
    for i in range(out.shape[0]):
        out[i] = (a[i] - b[i]) / den[i]


@_jit
def lagged_flow_ratio(x: Any, lag: int, den: Any, out: Any) -> None:
    """``safe_ratio(x[t] - x[t - lag], den, 0.0)``; NaN for the first ``lag`` rows."""
    n = out.shape[0]
    for i in range(min(lag, n)):
        out[i] = NAN  # safe_ratio(NaN, den, 0.0)
    for i in range(lag, n):
        out[i] = _safe(x[i] - x[i - lag], den[i], 0.0)


@_jit
def rolling_skew(x: Any, period: int, out: Any) -> None:
    """``indicators.rolling_skew``: from the first non-NaN row on, the running sums of ``np.cumsum``
    (sequential), window sums as differences of running sums ``period`` apart, then the moments."""
    n = out.shape[0]
    first = 0
    while first < n and math.isnan(x[first]):
        out[first] = NAN
        first += 1
    ring1 = np.empty(period)  # running sums of the last ``period`` rows, by row % period
    ring2 = np.empty(period)
    ring3 = np.empty(period)
    s1 = s2 = s3 = 0.0
    for k in range(n - first):
        v = x[first + k]
        sq = v * v
        cube = sq * v
        if k == 0:
            s1, s2, s3 = v, sq, cube
        else:
            s1 += v
            s2 += sq
            s3 += cube
        slot = k % period
        if k < period - 1:
            out[first + k] = NAN
        else:
            if k == period - 1:
                w1, w2, w3 = s1, s2, s3
            else:
                w1, w2, w3 = s1 - ring1[slot], s2 - ring2[slot], s3 - ring3[slot]
            mean = w1 / period
            ex2 = w2 / period
            ex3 = w3 / period
            m2 = ex2 - mean * mean
            m3 = ex3 - 3.0 * mean * ex2 + 2.0 * mean * mean * mean
            out[first + k] = _safe(m3, m2 * math.sqrt(abs(m2)), 0.0)
        ring1[slot], ring2[slot], ring3[slot] = s1, s2, s3


@_jit
def gather_as_of(htf_ts: Any, base_ts: Any, values: Any, outs: Any) -> None:
    """A backward as-of join as one merge: ``outs[k][t] = values[k, j]`` for the last
    higher-timeframe row ``j`` with ``htf_ts[j] <= base_ts[t]``, NaN where there is none. Both
    timestamp arrays ascending (repeats allowed: the last of equal instants is taken); ``outs`` a
    tuple of arrays as long as ``base_ts``, one per row of ``values``."""
    m = htf_ts.shape[0]
    j = -1
    for i in range(base_ts.shape[0]):
        t = base_ts[i]
        while j + 1 < m and htf_ts[j + 1] <= t:
            j += 1
        for k in range(len(outs)):
            outs[k][i] = values[k, j] if j >= 0 else NAN


@_jit
def strictly_ascending(x: Any) -> bool:
    """Whether every value is greater than the one before it."""
    bad = 0
    for i in range(1, x.shape[0]):
        bad += x[i] <= x[i - 1]  # counted, not returned early: the loop vectorizes
    return bad == 0


@_jit
def non_decreasing(x: Any) -> bool:
    """Whether no value is less than the one before it."""
    bad = 0
    for i in range(1, x.shape[0]):
        bad += x[i] < x[i - 1]
    return bad == 0


@_jit
def align_market(
    bar_ts: Any,
    market_ts: Any,
    market_return: Any,
    market_level: Any,
    out_return: Any,
    out_level: Any,
) -> None:
    """The market row at each bar's instant (both ascending, ``market_ts`` not empty): its return,
    else 0.0; its level, else NaN, then NaN levels replaced by the last level before them (leading
    NaN stays). ``pos = min(searchsorted(market_ts, bar_ts), m - 1)`` as one linear merge."""
    m = market_ts.shape[0]
    j = 0
    last = NAN
    for i in range(bar_ts.shape[0]):
        t = bar_ts[i]
        while j < m and market_ts[j] < t:
            j += 1
        pos = min(j, m - 1)
        if market_ts[pos] == t:
            out_return[i] = market_return[pos]
            level = market_level[pos]
        else:
            out_return[i] = 0.0
            level = NAN
        if not math.isnan(level):
            last = level
        out_level[i] = last


@_jit
def mean_log_return(logs: Any, out: Any) -> None:
    """For each column ``t`` of ``logs`` (symbols x instants): the returns
    ``r = logs[:, t] - logs[:, t - 1]`` (NaN at ``t = 0``), ``np.nansum(r) / count`` over the
    symbols whose return is not NaN (summed in symbol order), 0.0 where there is none."""
    n_symbols, n = logs.shape
    for t in range(n):
        total = 0.0
        count = 0
        for s in range(n_symbols):
            r = logs[s, t] - logs[s, t - 1] if t > 0 else NAN
            if math.isnan(r):
                r = 0.0
            else:
                count += 1
            total = r if s == 0 else total + r
        out[t] = total / count if count > 0 else 0.0
