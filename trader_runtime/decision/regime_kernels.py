"""Compiled per-bar step of ``regime.StreamingRegime``: one numba call takes a bar, updates the
state and returns the number of the rule that labels it.

State lives in two arrays built by :func:`new_state`: floats ``f`` and ints ``n`` (two arguments:
numba's dispatch costs about 0.1 us per array argument). Their headers are the ``F_*`` and ``N_*``
slots, the rings follow. A ring of capacity ``cap`` holds the value of bar ``i`` at ``i % cap``:
the running totals of squared returns (capacity the longest window + 1) and the log levels (the
trend window + 1). A rolling extreme is a monotonic deque kept as a ring of capacity ``window + 2``
(``window + 1`` entries between bars, one more while a bar is appended): its block of ``n`` at
``N_RANGE_MAX``, ``N_RANGE_MIN`` or ``N_PEAK`` holds the window, head, size, the offset of its
values in ``f`` (``E_*``), then the entries' bar numbers.

The arithmetic is that of ``classify_regimes`` for one bar, operation for operation and in the
same order, so the inputs are equal bit for bit: no fastmath, so LLVM neither reassociates nor
contracts ``a * b + c``; numpy's error model; ``math.log`` and ``math.sqrt`` are the C library's,
as Python's ``math`` module; the percentile's knot search is CPython's ``bisect_right``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_F = TypeVar("_F", bound=Callable[..., Any])

_jit = njit(cache=True, error_model="numpy")
# called only from compiled code: no Python entry to build, compiled and cached with ``step``
# (numba's IR inlining, ``inline="always"``, made the first compile 4.5 s instead of 2.5 s)
_inner: Callable[[_F], _F] = njit(  # type: ignore[call-overload]
    error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True
)

# rule numbers ``step`` returns, in the order the rules are tried
CRASH, VOLATILE, BEAR, RANGING, BULL = range(5)

# ``f`` header: running total of squared returns, last log level, bars per year, the thresholds
# (``RegimeConfig`` fields named by ``THRESHOLDS``), the last bar's inputs (``INPUT_COLUMNS``
# order), then the reference knots (volatilities, then percentiles)
F_TOTAL, F_LAST_LOG, F_BARS_PER_YEAR = range(3)
(
    F_CRASH_DRAWDOWN,
    F_CRASH_VOL,
    F_CRASH_BURST_VOL,
    F_VOLATILE_VOL,
    F_BEAR_VOL,
    F_BEAR_TREND,
    F_BEAR_BREADTH,
    F_DOWNTREND_TREND,
    F_RANGING_RANGE,
    F_RANGING_VOL,
) = range(3, 13)
THRESHOLDS: tuple[str, ...] = (
    "crash_drawdown",
    "crash_vol_percentile",
    "crash_burst_vol_percentile",
    "volatile_vol_percentile",
    "bear_vol_percentile",
    "bear_trend_max",
    "bear_breadth_max",
    "downtrend_trend_max",
    "ranging_range_ratio_max",
    "ranging_vol_percentile_max",
)
(
    F_TREND,
    F_VOL_ANNUAL,
    F_VOL_PERCENTILE,
    F_FAST_PERCENTILE,
    F_BURST_PERCENTILE,
    F_DRAWDOWN,
    F_RANGE_RATIO,
    F_BREADTH,
) = range(13, 21)
F_INPUTS, N_INPUTS = F_TREND, 8
F_KNOTS = 21

# ``n`` header: bars seen, the windows in bars, the number of knots, the totals ring (offset in
# ``f``, capacity), the log ring's offset in ``f``, the offsets of the three extremes' blocks
N_BARS = 0
N_VOL, N_FAST_VOL, N_BURST_VOL, N_TREND, N_RANGE, N_DRAWDOWN = range(1, 7)
N_KNOTS, N_TOTALS, N_TOTALS_CAP, N_LOGS, N_RANGE_MAX, N_RANGE_MIN, N_PEAK = range(7, 14)
# an extreme's block: window, head, size, offset of its values in ``f``, then its bar numbers
E_WINDOW, E_HEAD, E_SIZE, E_VALUES, E_BARS = range(5)


def new_state(
    windows: Sequence[int],
    bars_per_year: float,
    thresholds: Sequence[float],
    reference: Sequence[tuple[float, float]],
) -> tuple[FloatArray, IntArray]:
    """The state of a stream before its first bar: ``windows`` in bars (vol, fast vol, burst vol,
    trend, range, drawdown), ``thresholds`` in ``THRESHOLDS`` order, ``reference`` the
    (volatility, percentile) knots."""
    vol, fast_vol, burst_vol, trend, range_, drawdown = windows
    k = len(reference)
    totals_cap = max(vol, fast_vol, burst_vol, trend, range_) + 1
    f_size = F_KNOTS + 2 * k
    n_header = [0, *windows, k, f_size, totals_cap, f_size + totals_cap]
    f_size += totals_cap + trend + 1
    blocks: list[int] = []
    n_size = len(n_header) + 3
    for window in (range_, range_, drawdown):
        n_header.append(n_size)
        blocks += [window, 0, 0, f_size] + [0] * (window + 2)
        n_size += E_BARS + window + 2
        f_size += window + 2
    f = np.zeros(f_size, dtype=np.float64)
    f[F_LAST_LOG] = math.nan
    f[F_BARS_PER_YEAR] = bars_per_year
    f[F_CRASH_DRAWDOWN : F_RANGING_VOL + 1] = thresholds
    f[F_INPUTS : F_INPUTS + N_INPUTS] = math.nan
    f[F_KNOTS : F_KNOTS + k] = [v for v, _ in reference]
    f[F_KNOTS + k : F_KNOTS + 2 * k] = [p for _, p in reference]
    return f, np.array(n_header + blocks, dtype=np.int64)


@_inner
def _window_sum(f: FloatArray, n: IntArray, i: int, window: int) -> tuple[float, int]:
    """Sum of the last ``min(i, window)`` squared returns at bar ``i``, and that count."""
    count = min(i, window)
    return f[F_TOTAL] - f[n[N_TOTALS] + (i - count) % n[N_TOTALS_CAP]], count


@_inner
def _annual_vol(f: FloatArray, n: IntArray, i: int, window: int) -> float:
    """Realised volatility over the window, annualised (NaN before the first return)."""
    squares, count = _window_sum(f, n, i, window)
    return math.nan if count == 0 else math.sqrt(squares / count * f[F_BARS_PER_YEAR])


@_inner
def _scaled(f: FloatArray, n: IntArray, i: int, numerator: float, window: int) -> float:
    """``numerator`` in units of the window's realised volatility (not annualised)."""
    squares, count = _window_sum(f, n, i, window)
    if count == 0:
        return math.nan
    return numerator / math.sqrt(squares) if squares > 0.0 else 0.0


@_inner
def _percentile(f: FloatArray, n: IntArray, vol: float) -> float:
    """The piecewise-linear reference CDF at ``vol``."""
    k = n[N_KNOTS]
    xs = F_KNOTS
    ps = F_KNOTS + k
    if math.isnan(vol):
        return math.nan
    if vol <= f[xs]:
        return float(f[ps])
    if vol >= f[xs + k - 1]:
        return float(f[ps + k - 1])
    lo = 0
    hi = k
    while lo < hi:  # bisect.bisect_right(xs, vol)
        mid = (lo + hi) // 2
        if vol < f[xs + mid]:
            hi = mid
        else:
            lo = mid + 1
    j = min(max(lo - 1, 0), k - 2)
    return float(
        f[ps + j] + (vol - f[xs + j]) / (f[xs + j + 1] - f[xs + j]) * (f[ps + j + 1] - f[ps + j])
    )


@_inner
def _extreme(f: FloatArray, n: IntArray, at: int, i: int, value: float, sign: float) -> float:
    """Append ``value`` of bar ``i`` to the extreme whose block is at ``at``; the maximum
    (``sign`` 1.0) or minimum (-1.0) of the last ``window + 1`` values."""
    window = n[at + E_WINDOW]
    cap = window + 2
    head = n[at + E_HEAD]
    size = n[at + E_SIZE]
    values = n[at + E_VALUES]
    bars = at + E_BARS
    key = sign * value
    while size > 0 and sign * f[values + (head + size - 1) % cap] <= key:
        size -= 1
    tail = (head + size) % cap
    n[bars + tail] = i
    f[values + tail] = value
    size += 1
    while n[bars + head] < i - window:
        head = (head + 1) % cap
        size -= 1
    n[at + E_HEAD] = head
    n[at + E_SIZE] = size
    return float(f[values + head])


@_inner
def _rule(f: FloatArray) -> int:
    """The first rule (module docstring of ``regime``) the last bar's inputs satisfy."""
    if f[F_DRAWDOWN] <= -f[F_CRASH_DRAWDOWN] and (
        f[F_FAST_PERCENTILE] >= f[F_CRASH_VOL] or f[F_BURST_PERCENTILE] >= f[F_CRASH_BURST_VOL]
    ):
        return CRASH
    vol_pct = f[F_VOL_PERCENTILE]
    if vol_pct >= f[F_VOLATILE_VOL]:
        return VOLATILE
    trend = f[F_TREND]
    if (
        vol_pct >= f[F_BEAR_VOL] and (trend <= f[F_BEAR_TREND] or f[F_BREADTH] <= f[F_BEAR_BREADTH])
    ) or trend <= f[F_DOWNTREND_TREND]:
        return BEAR
    if f[F_RANGE_RATIO] <= f[F_RANGING_RANGE] and vol_pct < f[F_RANGING_VOL]:
        return RANGING
    return BULL


@_jit
def step(f: FloatArray, n: IntArray, close: float, breadth: float) -> int:
    """Take the next bar (a finite positive index close, the breadth or NaN): update the state,
    write the bar's inputs to ``f[F_INPUTS:]`` and return its rule number."""
    i = n[N_BARS]
    log_level = math.log(close)
    r = 0.0 if i == 0 else log_level - f[F_LAST_LOG]
    f[F_TOTAL] = f[F_TOTAL] + r * r
    f[n[N_TOTALS] + i % n[N_TOTALS_CAP]] = f[F_TOTAL]
    trend_window = n[N_TREND]
    logs = n[N_LOGS]
    f[logs + i % (trend_window + 1)] = log_level
    vol = _annual_vol(f, n, i, n[N_VOL])
    trend_count = min(i, trend_window)
    band = _extreme(f, n, n[N_RANGE_MAX], i, log_level, 1.0) - _extreme(
        f, n, n[N_RANGE_MIN], i, log_level, -1.0
    )
    f[F_TREND] = _scaled(
        f, n, i, log_level - f[logs + (i - trend_count) % (trend_window + 1)], trend_window
    )
    f[F_VOL_ANNUAL] = vol
    f[F_VOL_PERCENTILE] = _percentile(f, n, vol)
    f[F_FAST_PERCENTILE] = _percentile(f, n, _annual_vol(f, n, i, n[N_FAST_VOL]))
    f[F_BURST_PERCENTILE] = _percentile(f, n, _annual_vol(f, n, i, n[N_BURST_VOL]))
    f[F_DRAWDOWN] = close / _extreme(f, n, n[N_PEAK], i, close, 1.0) - 1.0
    f[F_RANGE_RATIO] = _scaled(f, n, i, band, n[N_RANGE])
    f[F_BREADTH] = breadth
    n[N_BARS] = i + 1
    f[F_LAST_LOG] = log_level
    return _rule(f)
