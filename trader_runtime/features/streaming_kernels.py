"""Compiled half of the streaming feature graph: the TA-Lib state machines and ``step``, which runs
one bar through a whole engine (the base series, the buckets and series of the higher timeframes,
the feature row) in one numba call by interpreting the engine's program.

State lives in two arrays laid out by ``streaming``: floats ``f`` and ints ``n``. A machine owns a
block of each at ``fo`` and ``no`` (its layout is in its docstring, ``F`` and ``N``; parameters
are stored there at construction), its outputs first in its float block. A ring keeps the last
``cap`` values pushed: after ``count`` pushes the newest is at ``(count - 1) % cap`` and, once full,
the oldest at ``count % cap``.

A program is an int64 array of ``WIDTH``-column rows run in order: the opcode, the first graph row
(0-based bar index) it runs at, the machine's ``fo`` and ``no`` (for a reader: the slot it writes),
then up to four operands (input slots of ``f``, a lag, another node's ``no``).

The arithmetic is TA-Lib's (numpy's for the running sums), operation for operation and in the
same order: no fastmath, so LLVM neither reassociates nor contracts ``a * b + c``; ``fma`` is
LLVM's ``llvm.fma.f64`` (the FMA instruction, or the C library's correctly rounded ``fma``); numpy's
error model, so a division by zero gives inf or NaN as in numpy; ``math.log`` and ``math.sqrt``
are the C library's, as Python's ``math`` module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from numba import njit, types
from numba.extending import intrinsic

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_F = TypeVar("_F", bound=Callable[..., Any])

NAN = math.nan
EPSILON = 1e-14  # TA_EPSILON of TA-Lib's ta_utility.h
_jit = njit(cache=True, error_model="numpy")
# called only from compiled code: no Python entry to build (a third of the compile time)
_inner: Callable[[_F], _F] = njit(  # type: ignore[call-overload]
    cache=True, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True
)

# program rows: opcode, first row, fo (reader: destination slot), no, operands a, b, c, d
WIDTH = 8
# the tick of a graph: its bar and the market inputs, in ``f`` from the graph's tick slot on
TICK_FIELDS = ("open", "high", "low", "close", "volume", "market_return", "market_level")
# columns of the graph table: program rows [START, STOP), tick slot, row counter, bucket length
# (us; 0 for the session), pending bucket close (-1 if none)
START, STOP, TICK, ROW, STEP, PENDING = range(6)

# machines (operands: their input slots)
SMA, SUM, EMA, MACD, RSI, ATR, ADX, STOCH, WILLR, CCI, MFI = range(11)
STDDEV, BBANDS, OBV, ROC, CORREL, BETA = range(11, 17)
# graph nodes: LOG (a: slot), HISTORY (a: slot), LAGGED (a: slot), OBV_FLOW (a: close,
# b: volume), SKEW (a: slot)
LOG, HISTORY, LAGGED, OBV_FLOW, SKEW = range(17, 22)
# readers, writing slot ``fo``
VALUE = 22  # a
RATIO = 23  # a / b
RATIO_M1 = 24  # a / b - 1
SPREAD_RATIO = 25  # (a - b) / c
BAND_POSITION = 26  # safe_ratio(a - c, b - c, 0.5)
RATIO_OR_ONE = 27  # safe_ratio(a, b, 1.0)
ZSCORE = 28  # safe_ratio(a - b, c, 0.0)
LOG_DIFF = 29  # a: a HISTORY's no, b: lag
LOG_DIFF_SPREAD = 30  # a, b: two HISTORY's no, c: lag


@intrinsic
def _llvm_fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    if not all(isinstance(t, types.Float | types.Integer) for t in (a, b, c)):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        x, y, z = (
            context.cast(builder, v, t, types.float64)
            for v, t in zip(args, signature.args, strict=True)
        )
        return builder.fma(x, y, z)

    return types.float64(a, b, c), codegen


@_jit
def fma(a: float, b: float, c: float) -> float:
    """Correctly rounded ``a * b + c`` (``llvm.fma.f64``)."""
    return _llvm_fma(a, b, c)  # type: ignore[call-arg]  # typed by the intrinsic


@_inner
def _put(f: FloatArray, slot: int, value: float) -> float:
    """Write ``value`` to ``f[slot]``; ``value``."""
    f[slot] = value
    return value


@_inner
def _log(v: float) -> float:
    """numpy ``log`` semantics: -inf at 0, NaN below."""
    if v > 0.0:
        return math.log(v)
    return -math.inf if v == 0.0 else NAN


@_inner
def _sqrt(v: float) -> float:
    """C ``sqrt``: NaN for a negative argument."""
    return math.sqrt(v) if v >= 0.0 else NAN


@_inner
def _safe_ratio(num: float, den: float, fallback: float) -> float:
    """``indicators.safe_ratio``: num/den, ``fallback`` where den <= 0, NaN where either is NaN."""
    if num != num or den != den:
        return NAN
    if den > 0.0:
        return num / den
    return fallback


@_inner
def _ring_max(f: FloatArray, ring: int, cap: int, count: int) -> float:
    """Python's ``max`` of a full ring, oldest first."""
    oldest = ring + count % cap
    best: float = f[oldest]
    for j in range(oldest + 1, ring + cap):
        if f[j] > best:
            best = f[j]
    for j in range(ring, oldest):
        if f[j] > best:
            best = f[j]
    return best


@_inner
def _ring_min(f: FloatArray, ring: int, cap: int, count: int) -> float:
    """Python's ``min`` of a full ring, oldest first."""
    oldest = ring + count % cap
    best: float = f[oldest]
    for j in range(oldest + 1, ring + cap):
        if f[j] < best:
            best = f[j]
    for j in range(ring, oldest):
        if f[j] < best:
            best = f[j]
    return best


# --------------------------------------------------------------------------------------------------
# TA-Lib state machines: one bar in, the value TA-Lib has at that bar out (NaN in the lookback).


@_inner
def _window_total(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """SUM's running total with ``x``, NaN until the window is full; drops the oldest."""
    period = n[no]
    count = n[no + 1]
    ring = fo + 2
    f[ring + count % period] = x
    count += 1
    n[no + 1] = count
    total: float = f[fo + 1] + x
    if count < period:
        f[fo + 1] = total
        return NAN
    f[fo + 1] = total - f[ring + count % period]
    return total


@_inner
def sma(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """SMA: the running total over the period. F: value, total, ring[period]; N: period, count."""
    return _put(f, fo, _window_total(f, n, fo, no, x) / n[no])


@_inner
def window_sum(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """SUM, laid out as ``sma``."""
    return _put(f, fo, _window_total(f, n, fo, no, x))


@_inner
def ema(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """EMA seeded by the mean of the ``period`` values ending at bar ``lookback``, then
    ``fma(k, x - prev, prev)``. F: value, k, prev, seed[period]; N: period, lookback, count."""
    period = n[no]
    count = n[no + 2]
    if count > n[no + 1]:
        prev = f[fo + 2]
        prev = fma(f[fo + 1], x - prev, prev)
        f[fo + 2] = prev
        return _put(f, fo, prev)
    seed = fo + 3
    f[seed + count % period] = x
    count += 1
    n[no + 2] = count
    if count <= n[no + 1]:
        return _put(f, fo, NAN)
    total = 0.0
    for j in range(count - min(count, period), count):
        total += f[seed + j % period]
    prev = total / period
    f[fo + 2] = prev
    return _put(f, fo, prev)


@_inner
def macd(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> None:
    """MACD line, signal and histogram in TA-Lib's lockstep pass. F: macd, signal, hist, k,
    signal state; N: signal period, count, slow EMA (fo, no), fast EMA (fo, no)."""
    fast = ema(f, n, n[no + 4], n[no + 5], x)
    slow = ema(f, n, n[no + 2], n[no + 3], x)
    if slow != slow:
        return
    line = fast - slow
    period = n[no]
    count = n[no + 1]
    if count < period:
        count += 1
        n[no + 1] = count
        total = f[fo + 4] + line
        f[fo + 4] = total
        if count < period:
            return
        sig = total / period
    elif period == 1:
        sig = line
    else:
        prev = f[fo + 4]
        sig = fma(f[fo + 3], line - prev, prev)
    f[fo + 4] = sig
    f[fo] = line
    f[fo + 1] = sig
    f[fo + 2] = line - sig


@_inner
def rsi(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """Wilder RSI, gains and losses scaled by a hoisted 1/period; 0 when both are zero.
    F: value, 1/period, period - 1, prev, gain, loss; N: period, count."""
    period = n[no]
    count = n[no + 1]
    n[no + 1] = count + 1
    if count == 0:
        f[fo + 3] = x
        return _put(f, fo, NAN)
    d = x - f[fo + 3]
    f[fo + 3] = x
    g = d if d > 0.0 else 0.0
    if count < period:
        f[fo + 4] += g
        f[fo + 5] += g - d
        return _put(f, fo, NAN)
    inv = f[fo + 1]
    if count == period:
        gain = (f[fo + 4] + g) * inv
        loss = (f[fo + 5] + (g - d)) * inv
    else:
        pm1 = f[fo + 2]
        gain = (f[fo + 4] * pm1 + g) * inv
        loss = (f[fo + 5] * pm1 + (g - d)) * inv
    f[fo + 4] = gain
    f[fo + 5] = loss
    total = gain + loss
    return _put(f, fo, 100.0 * (gain / total) if total > 0.0 else 0.0)


@_inner
def _true_range(high: float, low: float, prev_close: float) -> float:
    """TA-Lib's true range: the greatest of high - low and the gaps to the previous close."""
    greatest = high - low
    v = abs(prev_close - high)
    if v > greatest:
        greatest = v
    v = abs(prev_close - low)
    if v > greatest:
        greatest = v
    return greatest


@_inner
def atr(
    f: FloatArray, n: IntArray, fo: int, no: int, high: float, low: float, close: float
) -> float:
    """ATR: the mean of the first ``period`` true ranges, then ``fma(beta, atr, alpha * tr)``.
    F: value, beta, alpha, prev close, atr; N: period, count."""
    period = n[no]
    count = n[no + 1]
    n[no + 1] = count + 1
    prev_close = f[fo + 3]
    f[fo + 3] = close
    if count == 0:
        return _put(f, fo, NAN)
    tr = _true_range(high, low, prev_close)
    if count < period:
        f[fo + 4] += tr
        return _put(f, fo, NAN)
    if count == period:
        value = (f[fo + 4] + tr) / period
    else:
        value = fma(f[fo + 1], f[fo + 4], f[fo + 2] * tr)
    f[fo + 4] = value
    return _put(f, fo, value)


@_inner
def adx(
    f: FloatArray, n: IntArray, fo: int, no: int, high: float, low: float, close: float
) -> float:
    """ADX: Wilder-smoothed +DM/-DM/TR, DX, then the Wilder-smoothed DX. F: value, period,
    prev high, prev low, prev close, -DM, +DM, TR, DX sum, ADX; N: period, count."""
    period = n[no]
    count = n[no + 1]
    n[no + 1] = count + 1
    if count == 0:
        f[fo + 2] = high
        f[fo + 3] = low
        f[fo + 4] = close
        return _put(f, fo, NAN)
    pf = f[fo + 1]
    diff_p = high - f[fo + 2]
    diff_m = f[fo + 3] - low
    f[fo + 2] = high
    f[fo + 3] = low
    minus_dm = f[fo + 5]
    plus_dm = f[fo + 6]
    if count >= period:
        minus_dm -= minus_dm / pf
        plus_dm -= plus_dm / pf
    if diff_m > 0.0 and diff_p < diff_m:
        minus_dm += diff_m
    elif diff_p > 0.0 and diff_p > diff_m:
        plus_dm += diff_p
    f[fo + 5] = minus_dm
    f[fo + 6] = plus_dm
    tr_1 = _true_range(high, low, f[fo + 4])
    f[fo + 4] = close
    if count < period:
        f[fo + 7] += tr_1
        return _put(f, fo, NAN)
    tr = f[fo + 7] - f[fo + 7] / pf + tr_1
    f[fo + 7] = tr
    dx = NAN
    if tr > 0.0:
        minus_di = 100.0 * (minus_dm / tr)
        plus_di = 100.0 * (plus_dm / tr)
        total = minus_di + plus_di
        if not -EPSILON < total < EPSILON:
            dx = 100.0 * (abs(minus_di - plus_di) / total)
    last_seed = 2 * period - 1
    if count <= last_seed:
        if dx == dx:
            f[fo + 8] += dx
        if count < last_seed:
            return _put(f, fo, NAN)
        f[fo + 9] = f[fo + 8] / pf
    elif dx == dx:
        f[fo + 9] = (f[fo + 9] * float(period - 1) + dx) / pf
    return _put(f, fo, f[fo + 9])


@_inner
def stoch(
    f: FloatArray, n: IntArray, fo: int, no: int, high: float, low: float, close: float
) -> None:
    """Slow stochastic: raw %K over ``fastk`` bars, %K = SMA(raw, slowk), %D = SMA(%K, slowd).
    F: k, d, highs[fastk], lows[fastk]; N: fastk, count, %K SMA (fo, no), %D SMA (fo, no)."""
    period = n[no]
    count = n[no + 1]
    highs = fo + 2
    lows = highs + period
    f[highs + count % period] = high
    f[lows + count % period] = low
    count += 1
    n[no + 1] = count
    if count < period:
        return
    highest = _ring_max(f, highs, period, count)
    lowest = _ring_min(f, lows, period, count)
    span = highest - lowest
    if abs(span) <= EPSILON * (abs(highest) + abs(lowest)):
        raw = 0.0
    else:
        raw = (close - lowest) / span * 100.0
    k = sma(f, n, n[no + 2], n[no + 3], raw)
    if k != k:
        return
    d = sma(f, n, n[no + 4], n[no + 5], k)
    if d == d:
        f[fo] = k
        f[fo + 1] = d


@_inner
def willr(
    f: FloatArray, n: IntArray, fo: int, no: int, high: float, low: float, close: float
) -> float:
    """Williams %R over ``period`` bars, clamped to [-100, 0]. F: value, highs[period],
    lows[period]; N: period, count."""
    period = n[no]
    count = n[no + 1]
    highs = fo + 1
    lows = highs + period
    f[highs + count % period] = high
    f[lows + count % period] = low
    count += 1
    n[no + 1] = count
    if count < period:
        return _put(f, fo, NAN)
    highest = _ring_max(f, highs, period, count)
    lowest = _ring_min(f, lows, period, count)
    span = highest - lowest
    if abs(span) <= EPSILON * (abs(highest) + abs(lowest)):
        return _put(f, fo, 0.0)
    value = (highest - close) / span * -100.0
    if value > 0.0:
        return _put(f, fo, 0.0)
    return _put(f, fo, -100.0 if value < -100.0 else value)


@_inner
def cci(
    f: FloatArray, n: IntArray, fo: int, no: int, high: float, low: float, close: float
) -> float:
    """CCI: typical prices in a circular buffer, summed in slot order as TA-Lib does; 0 inside a
    dead zone scaled to the mean. F: value, buffer[period]; N: period, next slot, count."""
    period = n[no]
    buf = fo + 1
    last = (high + low + close) / 3.0
    f[buf + n[no + 1]] = last
    n[no + 1] = (n[no + 1] + 1) % period
    if n[no + 2] < period - 1:
        n[no + 2] += 1
        return _put(f, fo, NAN)
    average = 0.0
    for j in range(buf, buf + period):
        average += f[j]
    average /= period
    deviation = 0.0
    for j in range(buf, buf + period):
        deviation += abs(f[j] - average)
    diff = last - average
    dead_zone = abs(average) * EPSILON
    mean_deviation = deviation / period
    if dead_zone >= abs(diff) or dead_zone >= abs(mean_deviation):
        return _put(f, fo, 0.0)
    denominator = 0.015 * mean_deviation
    return _put(f, fo, diff / denominator if denominator != 0.0 else 0.0)


@_inner
def mfi(
    f: FloatArray,
    n: IntArray,
    fo: int,
    no: int,
    high: float,
    low: float,
    close: float,
    volume: float,
) -> float:
    """Money-flow index: positive/negative flows in a ring, with TA-Lib's dead zone and reset.
    F: value, prev typical, positive sum, negative sum, positive[period], negative[period];
    N: period, next slot, count, run of null flows."""
    count = n[no + 2]
    n[no + 2] = count + 1
    typical = (high + low + close) / 3.0
    if count == 0:
        f[fo + 1] = typical
        return _put(f, fo, NAN)
    period = n[no]
    idx = n[no + 1]
    pos = fo + 4 + idx
    neg = pos + period
    pos_sum = f[fo + 2]
    neg_sum = f[fo + 3]
    if count > period:
        pos_sum -= f[pos]
        neg_sum -= f[neg]
    prev = f[fo + 1]
    d = typical - prev
    scale = abs(typical) + abs(prev)
    f[fo + 1] = typical
    flow = 0.0 if abs(d) <= EPSILON * scale else typical * volume
    if d < 0.0:
        pos_flow, neg_flow = 0.0, flow
    else:
        pos_flow, neg_flow = flow, 0.0
    f[pos] = pos_flow
    f[neg] = neg_flow
    pos_sum += pos_flow
    neg_sum += neg_flow
    null_run = n[no + 3] + 1 if flow == 0.0 else 0
    if null_run >= period:
        null_run = period
        pos_sum = neg_sum = 0.0
    n[no + 3] = null_run
    f[fo + 2] = pos_sum
    f[fo + 3] = neg_sum
    n[no + 1] = (idx + 1) % period
    if count < period:
        return _put(f, fo, NAN)
    total = pos_sum + neg_sum
    clamped = 0.0 if pos_sum < 0.0 else (total if pos_sum > total else pos_sum)
    return _put(f, fo, 100.0 * (clamped / total) if total > 0.0 else 0.0)


@_inner
def _var_reseed(f: FloatArray, n: IntArray, fo: int, no: int) -> tuple[float, float, float]:
    """``var``'s reseed: the window's sums re-anchored at its mean (the new shift); the variance
    and the sums without the oldest value."""
    period = n[no]
    count = n[no + 1]
    window = fo + 5
    n[no + 2] = 32 * period
    inv = f[fo + 1]
    total = 0.0
    for j in range(count, count + period):
        total += f[window + j % period]
    shift = total * inv
    f[fo + 2] = shift
    total1 = total2 = 0.0
    for j in range(count, count + period):
        t = f[window + j % period] - shift
        total1 += t
        total2 += t * t
    mean1 = total1 * inv
    variance = total2 * inv - mean1 * mean1
    if variance < 0.000000000001 * (total2 * inv):
        variance = 0.0
    t = f[window + count % period] - shift
    return variance, total1 - t, total2 - t * t


@_inner
def var(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """Population variance from running sums of deviations from a shift, re-anchored at the window
    mean when the sums lose digits, after a large value leaves, or every 32 windows (TA_VAR).
    F: value, 1/period, shift, total1, total2, window[period]; N: period, count, bars left."""
    period = n[no]
    count = n[no + 1]
    window = fo + 5
    f[window + count % period] = x
    count += 1
    n[no + 1] = count
    if count == 1:
        f[fo + 2] = x
    shift = f[fo + 2]
    t = x - shift
    total1 = f[fo + 3] + t
    total2 = f[fo + 4] + t * t
    if count < period:
        f[fo + 3] = total1
        f[fo + 4] = total2
        return _put(f, fo, NAN)
    inv = f[fo + 1]
    mean1 = total1 * inv
    variance = total2 * inv - mean1 * mean1
    t = f[window + count % period] - shift
    total1 -= t
    t *= t
    total2 -= t
    bars = n[no + 2] - 1
    n[no + 2] = bars
    if variance < 0.000001 * (total2 * inv) or t > 1000000.0 * total2 or bars <= 0:
        variance, total1, total2 = _var_reseed(f, n, fo, no)
    f[fo + 3] = total1
    f[fo + 4] = total2
    return _put(f, fo, variance)


@_inner
def stddev(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """STDDEV: the square root of ``var``, times ``nbdev``. F: value, nbdev; N: VAR (fo, no)."""
    std = _sqrt(var(f, n, n[no], n[no + 1], x))
    nbdev = f[fo + 1]
    return _put(f, fo, std if nbdev == 1.0 else std * nbdev)


@_inner
def bbands(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> None:
    """Bollinger bands over an SMA: middle = SMA, deviation = sqrt(TA_VAR). F: upper, middle,
    lower, nbdev up, nbdev down; N: SMA (fo, no), VAR (fo, no)."""
    middle = sma(f, n, n[no], n[no + 1], x)
    variance = var(f, n, n[no + 2], n[no + 3], x)
    if middle != middle:
        return
    std = _sqrt(variance) if variance != 0.0 else 0.0
    f[fo + 1] = middle
    up = f[fo + 3]
    dn = f[fo + 4]
    if up == dn:
        t = std * up
        f[fo] = middle + t
        f[fo + 2] = middle - t
    else:
        f[fo] = fma(std, up, middle)
        f[fo + 2] = middle - std * dn


@_inner
def obv(f: FloatArray, n: IntArray, fo: int, no: int, close: float, volume: float) -> float:
    """On-balance volume, starting at the first bar's volume. F: value, prev close; N: none."""
    value = f[fo]
    if value != value:
        value = volume
    elif close > f[fo + 1]:
        value += volume
    elif close < f[fo + 1]:
        value -= volume
    f[fo + 1] = close
    return _put(f, fo, value)


@_inner
def roc(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """Rate of change in percent over ``period`` bars (0 when the old value is 0).
    F: value, window[period + 1]; N: period, count."""
    cap = n[no] + 1
    count = n[no + 1]
    window = fo + 1
    f[window + count % cap] = x
    count += 1
    n[no + 1] = count
    if count < cap:
        return _put(f, fo, NAN)
    old = f[window + count % cap]
    return _put(f, fo, ((x / old) - 1.0) * 100.0 if old != 0.0 else 0.0)


@_inner
def _correl_reseed(
    f: FloatArray, n: IntArray, fo: int, no: int
) -> tuple[float, float, float, float, float]:
    """``correl``'s reseed: the window's sums re-anchored at its mean (new shift); returns them."""
    period = n[no]
    count = n[no + 1]
    xs = fo + 11
    ys = xs + period
    n[no + 2] = 32 * period
    inv = f[fo + 1]
    total_x = total_y = 0.0
    for j in range(count, count + period):
        total_x += f[xs + j % period]
        total_y += f[ys + j % period]
    shift_x = total_x * inv
    shift_y = total_y * inv
    f[fo + 2] = shift_x
    f[fo + 3] = shift_y
    sum_x = sum_x2 = sum_xy = sum_y = sum_y2 = 0.0
    for j in range(count, count + period):
        dx = f[xs + j % period] - shift_x
        sum_x += dx
        sum_x2 += dx * dx
        dy = f[ys + j % period] - shift_y
        sum_xy += dx * dy
        sum_y += dy
        sum_y2 += dy * dy
    return sum_x, sum_x2, sum_xy, sum_y, sum_y2


@_inner
def correl(f: FloatArray, n: IntArray, fo: int, no: int, x: float, y: float) -> float:
    """Pearson correlation from running sums of deviations from per-series shifts (TA_CORREL).
    F: value, 1/period, shift x, shift y, sums x, x2, xy, y, y2, leaving x2, leaving y2,
    xs[period], ys[period]; N: period, count, bars left."""
    period = n[no]
    count = n[no + 1]
    xs = fo + 11
    ys = xs + period
    f[xs + count % period] = x
    f[ys + count % period] = y
    count += 1
    n[no + 1] = count
    if count == 1:
        f[fo + 2] = x
        f[fo + 3] = y
    dx = x - f[fo + 2]
    dy = y - f[fo + 3]
    sum_x = f[fo + 4] + dx
    sum_x2 = f[fo + 5] + dx * dx
    sum_xy = f[fo + 6] + dx * dy
    sum_y = f[fo + 7] + dy
    sum_y2 = f[fo + 8] + dy * dy
    if count >= period:
        inv = f[fo + 1]
        ss_x = sum_x2 - ((sum_x * sum_x) * inv)
        ss_y = sum_y2 - ((sum_y * sum_y) * inv)
        sp_xy = sum_xy - ((sum_x * sum_y) * inv)
        bars = n[no + 2] - 1
        n[no + 2] = bars
        if (
            ss_x < 0.000001 * sum_x2
            or ss_y < 0.000001 * sum_y2
            or f[fo + 9] > 1000000.0 * sum_x2
            or f[fo + 10] > 1000000.0 * sum_y2
            or bars <= 0
        ):
            sum_x, sum_x2, sum_xy, sum_y, sum_y2 = _correl_reseed(f, n, fo, no)
            ss_x = sum_x2 - ((sum_x * sum_x) * inv)
            ss_y = sum_y2 - ((sum_y * sum_y) * inv)
            sp_xy = sum_xy - ((sum_x * sum_y) * inv)
            if ss_x < 0.0:
                ss_x = 0.0
            if ss_y < 0.0:
                ss_y = 0.0
        tx = f[xs + count % period] - f[fo + 2]
        ty = f[ys + count % period] - f[fo + 3]
        if ss_x > 0.00000000000001 * sum_x2 and ss_y > 0.00000000000001 * sum_y2:
            out = sp_xy / _sqrt(ss_x * ss_y)
            if out > 1.0:
                out = 1.0
            elif out < -1.0:
                out = -1.0
        else:
            out = 0.0
        leaving_x = tx * tx
        leaving_y = ty * ty
        f[fo + 9] = leaving_x
        f[fo + 10] = leaving_y
        sum_x -= tx
        sum_x2 -= leaving_x
        sum_xy -= tx * ty
        sum_y -= ty
        sum_y2 -= leaving_y
    else:
        out = NAN
    f[fo + 4] = sum_x
    f[fo + 5] = sum_x2
    f[fo + 6] = sum_xy
    f[fo + 7] = sum_y
    f[fo + 8] = sum_y2
    return _put(f, fo, out)


@_inner
def _beta_return(price: float, prev: float, shift: float) -> float:
    """TA_BETA's shifted one-bar return (``-shift`` after a zero price)."""
    return (price - prev) / prev - shift if prev != 0.0 else -shift


@_inner
def _beta_reseed(
    f: FloatArray, n: IntArray, fo: int, no: int, count: int
) -> tuple[float, float, float, float, float]:
    """``beta``'s reseed: the window's sums re-anchored at its mean (new shift); returns them."""
    period = n[no]
    cap = period + 1
    xs = fo + 11
    ys = xs + cap
    n[no + 2] = 32 * period
    total_x = total_y = 0.0
    prev_x = f[xs + count % cap]
    prev_y = f[ys + count % cap]
    for j in range(count + 1, count + cap):
        px = f[xs + j % cap]
        py = f[ys + j % cap]
        if prev_x != 0.0:
            total_x += (px - prev_x) / prev_x
        prev_x = px
        if prev_y != 0.0:
            total_y += (py - prev_y) / prev_y
        prev_y = py
    shift_x = total_x / f[fo + 1]
    shift_y = total_y / f[fo + 1]
    f[fo + 2] = shift_x
    f[fo + 3] = shift_y
    s_xx = s_yy = s_xy = s_x = s_y = 0.0
    prev_x = f[xs + count % cap]
    prev_y = f[ys + count % cap]
    for j in range(count + 1, count + cap):
        px = f[xs + j % cap]
        py = f[ys + j % cap]
        x = _beta_return(px, prev_x, shift_x)
        prev_x = px
        y = _beta_return(py, prev_y, shift_y)
        prev_y = py
        s_xx += x * x
        s_yy += y * y
        s_xy += x * y
        s_x += x
        s_y += y
    return s_xx, s_yy, s_xy, s_x, s_y


@_inner
def beta(f: FloatArray, n: IntArray, fo: int, no: int, price_x: float, price_y: float) -> float:
    """Regression slope of the returns of the second input on those of the first (TA_BETA), from
    running sums of shifted returns with TA-Lib's reseeds. F: value, period, shift x, shift y,
    sums xx, yy, xy, x, y, leaving xx, leaving yy, xs[period + 1], ys[period + 1]; N: period,
    count, bars left."""
    period = n[no]
    cap = period + 1
    i = n[no + 1]
    n[no + 1] = i + 1
    xs = fo + 11
    ys = xs + cap
    if i == 0:
        f[xs] = price_x
        f[ys] = price_y
        return _put(f, fo, NAN)
    last_x = f[xs + (i - 1) % cap]
    last_y = f[ys + (i - 1) % cap]
    f[xs + i % cap] = price_x
    f[ys + i % cap] = price_y
    if i == 1:
        if last_x != 0.0:
            f[fo + 2] = (price_x - last_x) / last_x
        if last_y != 0.0:
            f[fo + 3] = (price_y - last_y) / last_y
    x = _beta_return(price_x, last_x, f[fo + 2])
    y = _beta_return(price_y, last_y, f[fo + 3])
    s_xx = f[fo + 4] + x * x
    s_yy = f[fo + 5] + y * y
    s_xy = f[fo + 6] + x * y
    s_x = f[fo + 7] + x
    s_y = f[fo + 8] + y
    if i >= period:
        nf = f[fo + 1]
        denom_scale = nf * s_xx
        denom = denom_scale - (s_x * s_x)
        bars = n[no + 2] - 1
        n[no + 2] = bars
        if (
            denom < 0.000001 * denom_scale
            or f[fo + 9] > 1000.0 * s_xx
            or f[fo + 10] > 1000.0 * s_yy
            or bars <= 0
        ):
            s_xx, s_yy, s_xy, s_x, s_y = _beta_reseed(f, n, fo, no, i + 1)
            denom_scale = nf * s_xx
            denom = denom_scale - (s_x * s_x)
            if denom < 0.0:
                denom = 0.0
        oldest = (i + 1) % cap
        second = (i + 2) % cap
        x = _beta_return(f[xs + second], f[xs + oldest], f[fo + 2])
        y = _beta_return(f[ys + second], f[ys + oldest], f[fo + 3])
        scaled = denom > 0.00000000000001 * denom_scale
        out = ((nf * s_xy) - (s_x * s_y)) / denom if scaled else 0.0
        xx = x * x
        yy = y * y
        f[fo + 9] = xx
        f[fo + 10] = yy
        s_xx -= xx
        s_yy -= yy
        s_xy -= x * y
        s_x -= x
        s_y -= y
    else:
        out = NAN
    f[fo + 4] = s_xx
    f[fo + 5] = s_yy
    f[fo + 6] = s_xy
    f[fo + 7] = s_x
    f[fo + 8] = s_y
    return _put(f, fo, out)


# --------------------------------------------------------------------------------------------------
# Graph nodes around the machines.


@_inner
def _running_window_sum(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """``indicators.window_sum`` one value at a time: the running total (as ``np.cumsum``) minus
    the running total ``period`` values back. F: total, totals[period + 1]; N: period, count,
    started."""
    if n[no + 2]:
        total = f[fo] + x
    else:
        total = x
        n[no + 2] = 1
    f[fo] = total
    period = n[no]
    cap = period + 1
    count = n[no + 1]
    f[fo + 1 + count % cap] = total
    count += 1
    n[no + 1] = count
    if count > period:
        return float(total - f[fo + 1 + count % cap])
    return total if count == period else NAN


@_inner
def skew(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> float:
    """``indicators.rolling_skew`` one value at a time (leading NaN values are skipped). F: value;
    N: period, started, three running window sums (fo, no) of x, x**2, x**3."""
    if not n[no + 1]:
        if x != x:
            return _put(f, fo, NAN)
        n[no + 1] = 1
    sq = x * x
    period = n[no]
    mean = _running_window_sum(f, n, n[no + 2], n[no + 3], x) / period
    ex2 = _running_window_sum(f, n, n[no + 4], n[no + 5], sq) / period
    ex3 = _running_window_sum(f, n, n[no + 6], n[no + 7], sq * x) / period
    m2 = ex2 - mean * mean
    m3 = ex3 - 3.0 * mean * ex2 + 2.0 * mean * mean * mean
    return _put(f, fo, _safe_ratio(m3, m2 * _sqrt(abs(m2)), 0.0))


@_inner
def _history(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> None:
    """The last ``cap`` values of a log series; the value is the one-bar difference.
    F: value; N: cap, count, ring slot."""
    cap = n[no]
    count = n[no + 1]
    ring = n[no + 2]
    f[ring + count % cap] = x
    count += 1
    n[no + 1] = count
    f[fo] = x - f[ring + (count - 2) % cap] if count > 1 else NAN


@_inner
def _history_diff(f: FloatArray, n: IntArray, no: int, lag: int) -> float:
    """Newest minus the value ``lag`` pushes before it; NaN until there is one."""
    cap = n[no]
    count = n[no + 1]
    ring = n[no + 2]
    if min(count, cap) <= lag:
        return NAN
    return float(f[ring + (count - 1) % cap] - f[ring + (count - 1 - lag) % cap])


@_inner
def _lagged(f: FloatArray, n: IntArray, fo: int, no: int, x: float) -> None:
    """``x`` now over ``x`` ``lag`` bars ago, minus one. F: value, ring[lag + 1]; N: cap, count."""
    cap = n[no]
    count = n[no + 1]
    ring = fo + 1
    f[ring + count % cap] = x
    count += 1
    n[no + 1] = count
    f[fo] = x / f[ring + count % cap] - 1.0 if count >= cap else NAN


@_inner
def _obv_flow(f: FloatArray, n: IntArray, fo: int, no: int, close: float, volume: float) -> None:
    """safe_ratio(OBV - OBV ``period`` bars ago, SUM(volume, period), 0). F: value,
    OBV ring[period + 1]; N: cap, count, OBV (fo, no), SUM (fo, no)."""
    value = obv(f, n, n[no + 2], n[no + 3], close, volume)
    cap = n[no]
    count = n[no + 1]
    ring = fo + 1
    f[ring + count % cap] = value
    count += 1
    n[no + 1] = count
    flow = value - f[ring + count % cap] if count >= cap else NAN
    f[fo] = _safe_ratio(flow, window_sum(f, n, n[no + 4], n[no + 5], volume), 0.0)


# --------------------------------------------------------------------------------------------------
# The engine step: higher-timeframe buckets and the interpreter.


@_inner
def _due(
    graphs: IntArray,
    g: int,
    phase: int,
    f: FloatArray,
    n: IntArray,
    ts_us: int,
    open_us: int,
    close_us: int,
) -> bool:
    """Whether graph ``g`` runs at ``phase`` (0 or 1) of the base bar, its tick set for that run.

    The base graph (0) runs at phase 0. A higher timeframe builds its bars in its tick from the
    base bars (``resample.bucket_close``: the session's buckets of ``STEP`` us from its open, the
    last one cut at its close) and runs on each one completed: at phase 0 if the base bar is the
    first after it, at phase 1 (once the bar has joined its bucket) if the bar is at its close."""
    if g == 0:
        return phase == 0
    bucket = -1
    if close_us >= 0:
        size = graphs[g, STEP]
        end = open_us + (ts_us - open_us + size - 1) // size * size if size else close_us
        bucket = end if end < close_us else close_us
    pending = graphs[g, PENDING]
    if phase == 0:
        return bool(n[pending] >= 0 and n[pending] != bucket and n[pending] <= ts_us)
    if bucket < 0:
        return False
    t = graphs[g, TICK]
    bar = graphs[0, TICK]
    if n[pending] != bucket:
        n[pending] = bucket
        for j in range(5):
            f[t + j] = f[bar + j]
    else:
        if f[bar + 1] > f[t + 1]:
            f[t + 1] = f[bar + 1]
        if f[bar + 2] < f[t + 2]:
            f[t + 2] = f[bar + 2]
        f[t + 3] = f[bar + 3]
        f[t + 4] += f[bar + 4]
    return bucket <= ts_us


@_jit
def step(
    program: IntArray,
    graphs: IntArray,
    columns: IntArray,
    f: FloatArray,
    n: IntArray,
    ts_us: int,
    open_us: int,
    close_us: int,
    out: FloatArray,
) -> None:
    """One base bar, already in the tick of graph 0 (the base series), through an engine: each
    graph runs its program rows when ``_due`` (the higher timeframes on each bucket completed),
    then ``out[j] = f[columns[j]]``. ``open_us`` and ``close_us`` bound the bar's session,
    ``close_us`` -1 outside one."""
    for slot in range(2 * graphs.shape[0]):
        g, phase = divmod(slot, 2)
        if not _due(graphs, g, phase, f, n, ts_us, open_us, close_us):
            continue
        row = n[graphs[g, ROW]] + 1
        n[graphs[g, ROW]] = row
        n[graphs[g, PENDING]] = -1
        for k in range(graphs[g, START], graphs[g, STOP]):
            if row < program[k, 1]:
                continue
            op = program[k, 0]
            fo = program[k, 2]
            no = program[k, 3]
            a = program[k, 4]
            b = program[k, 5]
            c = program[k, 6]
            d = program[k, 7]
            if op == SMA:
                sma(f, n, fo, no, f[a])
            elif op == SUM:
                window_sum(f, n, fo, no, f[a])
            elif op == EMA:
                ema(f, n, fo, no, f[a])
            elif op == MACD:
                macd(f, n, fo, no, f[a])
            elif op == RSI:
                rsi(f, n, fo, no, f[a])
            elif op == ATR:
                atr(f, n, fo, no, f[a], f[b], f[c])
            elif op == ADX:
                adx(f, n, fo, no, f[a], f[b], f[c])
            elif op == STOCH:
                stoch(f, n, fo, no, f[a], f[b], f[c])
            elif op == WILLR:
                willr(f, n, fo, no, f[a], f[b], f[c])
            elif op == CCI:
                cci(f, n, fo, no, f[a], f[b], f[c])
            elif op == MFI:
                mfi(f, n, fo, no, f[a], f[b], f[c], f[d])
            elif op == STDDEV:
                stddev(f, n, fo, no, f[a])
            elif op == BBANDS:
                bbands(f, n, fo, no, f[a])
            elif op == OBV:
                obv(f, n, fo, no, f[a], f[b])
            elif op == ROC:
                roc(f, n, fo, no, f[a])
            elif op == CORREL:
                correl(f, n, fo, no, f[a], f[b])
            elif op == BETA:
                beta(f, n, fo, no, f[a], f[b])
            elif op == LOG:
                f[fo] = _log(f[a])
            elif op == HISTORY:
                _history(f, n, fo, no, f[a])
            elif op == LAGGED:
                _lagged(f, n, fo, no, f[a])
            elif op == OBV_FLOW:
                _obv_flow(f, n, fo, no, f[a], f[b])
            elif op == SKEW:
                skew(f, n, fo, no, f[a])
            elif op == VALUE:
                f[fo] = f[a]
            elif op == RATIO:
                f[fo] = f[a] / f[b]
            elif op == RATIO_M1:
                f[fo] = f[a] / f[b] - 1.0
            elif op == SPREAD_RATIO:
                f[fo] = (f[a] - f[b]) / f[c]
            elif op == BAND_POSITION:
                f[fo] = _safe_ratio(f[a] - f[c], f[b] - f[c], 0.5)
            elif op == RATIO_OR_ONE:
                f[fo] = _safe_ratio(f[a], f[b], 1.0)
            elif op == ZSCORE:
                f[fo] = _safe_ratio(f[a] - f[b], f[c], 0.0)
            elif op == LOG_DIFF:
                f[fo] = _history_diff(f, n, a, b)
            elif op == LOG_DIFF_SPREAD:
                f[fo] = _history_diff(f, n, a, c) - _history_diff(f, n, b, c)
    for j in range(out.shape[0]):
        out[j] = f[columns[j]]


@_jit
def step_bar(
    program: IntArray,
    graphs: IntArray,
    columns: IntArray,
    f: FloatArray,
    n: IntArray,
    open_: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    market_return: float,
    market_level: float,
    ts_us: int,
    open_us: int,
    close_us: int,
    out: FloatArray,
) -> None:
    """``step`` of one base bar given as values: its tick (``TICK_FIELDS``) is written first, in
    the same call (the live loop's one entry per bar)."""
    f[0] = open_
    f[1] = high
    f[2] = low
    f[3] = close
    f[4] = volume
    f[5] = market_return
    f[6] = market_level
    step(program, graphs, columns, f, n, ts_us, open_us, close_us, out)


@_jit
def market_index_step(
    closes: FloatArray, slots: IntArray, prev_log: FloatArray, has_prev: IntArray, index: FloatArray
) -> tuple[float, float]:
    """One instant of ``batch.market_index``: ``closes[k]`` is the close of symbol slot
    ``slots[k]``, in the universe's order (the mean sums the log returns in that order). Each
    slot's previous log close is ``prev_log`` (``has_prev`` 1 once it has one); ``index`` holds
    the cumulative log return and whether it started. Returns ``(market_return, market_level)``.
    ``StreamingMarketIndex`` and the live market state's ``step_instant`` both step it."""
    total = 0.0
    count = 0
    for k in range(closes.shape[0]):
        slot = slots[k]
        log_close = _log(closes[k])
        if has_prev[slot]:
            r = log_close - prev_log[slot]
            total = total + r if count else r
            count += 1
        prev_log[slot] = log_close
        has_prev[slot] = 1
    market_return = total / count if count else 0.0
    cumulative = index[0] + market_return if index[1] != 0.0 else market_return
    index[0] = cumulative
    index[1] = 1.0
    return market_return, math.exp(cumulative)
