"""Incremental twin of the batch feature engine, for the live loop.

``StreamingFeatures.update`` takes one bar at a time and returns the row ``batch.compute_features``
gives for that bar, from bounded state (ring buffers and running sums, never the history). Every
TA-Lib indicator is a state machine replaying the arithmetic of the TA-Lib build in use, in its
order: seeds, running sums, Wilder steps, the shifted-data variance with its reseeds, and the fused
multiply-adds of EMA, MACD, ATR and BBANDS. The numpy running-sum features replay ``np.cumsum``.
Higher-timeframe bars are built with the bucket rule of ``market.resample``; a row sees the last
completed bucket, as the batch as-of join does. ``StreamingMarketIndex`` is the incremental
``batch.market_index``.

Values equal the batch bit for bit when the stream starts at the first bar of the batch input and
receives the same bars: running sums carry their floating-point history. Inputs must be finite with
positive prices (validated bars).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from operator import attrgetter
from typing import Protocol, TypeVar, cast

from trader_runtime.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec, IndicatorSpec
from trader_runtime.market.bars import Bar
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.timeframes import Timeframe

NAN = math.nan
_EPSILON = 1e-14  # TA_EPSILON of TA-Lib's ta_utility.h
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_MINUTE_US = 60_000_000

Fma = Callable[[float, float, float], float]


def fma_exact(a: float, b: float, c: float) -> float:
    """Correctly rounded ``a * b + c`` (exact rational arithmetic; the slow fallback)."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        return a * b + c  # keeps IEEE's sign of zero
    return float(exact)


def _load_fma() -> Fma:
    """``math.fma`` (Python >= 3.13), else the C library's ``fma``, else exact rationals."""
    native = getattr(math, "fma", None)
    if native is not None:
        return cast(Fma, native)
    name = ctypes.util.find_library("m")
    if name is not None:
        try:
            fn = ctypes.CDLL(name).fma
        except (OSError, AttributeError):
            return fma_exact
        fn.restype = ctypes.c_double
        fn.argtypes = (ctypes.c_double, ctypes.c_double, ctypes.c_double)
        probe = (0.1, 10.0, -1.0)  # fused: 2**-54, unfused: 0.0
        if fn(*probe) == fma_exact(*probe):
            return cast(Fma, fn)
    return fma_exact


fma: Fma = _load_fma()


def _is_zero(v: float) -> bool:
    """TA-Lib's ``TA_IS_ZERO``."""
    return -_EPSILON < v < _EPSILON


def _sqrt(v: float) -> float:
    """C ``sqrt``: NaN (not an exception) for a negative argument."""
    return math.sqrt(v) if v >= 0.0 else NAN


def _log(v: float) -> float:
    """numpy ``log`` semantics: -inf at 0, NaN below."""
    if v > 0.0:
        return math.log(v)
    return -math.inf if v == 0.0 else NAN


def _div(a: float, b: float) -> float:
    """numpy division: inf or NaN (not an exception) on a zero divisor."""
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0.0:
            return NAN
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def safe_ratio(num: float, den: float, fallback: float) -> float:
    """Scalar ``indicators.safe_ratio``: num/den, ``fallback`` where den <= 0, NaN where either is NaN."""
    if num != num or den != den:
        return NAN
    if den > 0.0:
        return num / den
    return fallback


# --------------------------------------------------------------------------------------------------
# TA-Lib state machines: one bar in, the value TA-Lib has at that bar out (NaN in the lookback).


class TaSma:
    """SMA: add the new value to the running total, emit total/period, drop the oldest."""

    __slots__ = ("_period", "_total", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._window: deque[float] = deque(maxlen=period)
        self._total = 0.0

    def update(self, x: float) -> float:
        window = self._window
        window.append(x)
        total = self._total + x
        if len(window) < self._period:
            self._total = total
            return NAN
        self._total = total - window[0]
        return total / self._period


class TaSum:
    """SUM: the SMA's running total, undivided."""

    __slots__ = ("_period", "_total", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._window: deque[float] = deque(maxlen=period)
        self._total = 0.0

    def update(self, x: float) -> float:
        window = self._window
        window.append(x)
        total = self._total + x
        if len(window) < self._period:
            self._total = total
            return NAN
        self._total = total - window[0]
        return total


class TaEma:
    """EMA seeded by the mean of the ``period`` values ending at bar ``lookback`` (default
    ``period - 1``; MACD seeds its fast EMA at the slow one's lookback), then
    ``fma(k, x - prev, prev)`` with ``k = 2 / (period + 1)``."""

    __slots__ = ("_k", "_lookback", "_n", "_period", "_prev", "_seed")

    def __init__(self, period: int, lookback: int | None = None) -> None:
        self._period = period
        self._k = 2.0 / float(period + 1)
        self._lookback = period - 1 if lookback is None else lookback
        self._seed: deque[float] = deque(maxlen=period)
        self._n = 0
        self._prev = NAN

    def update(self, x: float) -> float:
        if self._n > self._lookback:
            prev = self._prev
            self._prev = prev = fma(self._k, x - prev, prev)
            return prev
        self._n += 1
        self._seed.append(x)
        if self._n <= self._lookback:
            return NAN
        total = 0.0
        for v in self._seed:
            total += v
        self._seed.clear()
        self._prev = total / self._period
        return self._prev


class TaMacd:
    """MACD line, signal and histogram (TA-Lib's single lockstep pass)."""

    __slots__ = (
        "_fast",
        "_k",
        "_n",
        "_signal",
        "_signal_period",
        "_slow",
        "hist",
        "macd",
        "signal",
    )

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        if slow < fast:
            fast, slow = slow, fast
        self._slow = TaEma(slow)
        self._fast = TaEma(fast, lookback=slow - 1)
        self._signal_period = signal
        self._k = 2.0 / float(signal + 1)
        self._n = 0
        self._signal = 0.0
        self.macd = self.signal = self.hist = NAN

    def update(self, x: float) -> None:
        fast = self._fast.update(x)
        slow = self._slow.update(x)
        if slow != slow:
            return
        line = fast - slow
        if self._n < self._signal_period:
            self._n += 1
            self._signal += line
            if self._n < self._signal_period:
                return
            sig = self._signal = self._signal / self._signal_period
        elif self._signal_period == 1:
            sig = self._signal = line
        else:
            prev = self._signal
            sig = self._signal = fma(self._k, line - prev, prev)
        self.macd = line
        self.signal = sig
        self.hist = line - sig


class TaRsi:
    """Wilder RSI: gains and losses scaled by a hoisted 1/period; 0 when both are zero."""

    __slots__ = ("_gain", "_inv", "_loss", "_n", "_period", "_pm1", "_prev")

    def __init__(self, period: int) -> None:
        self._period = period
        self._inv = 1.0 / float(period)
        self._pm1 = float(period - 1)
        self._n = 0
        self._prev = self._gain = self._loss = 0.0

    def update(self, x: float) -> float:
        n = self._n
        self._n = n + 1
        if n == 0:
            self._prev = x
            return NAN
        d = x - self._prev
        self._prev = x
        g = d if d > 0.0 else 0.0
        if n < self._period:
            self._gain += g
            self._loss += g - d
            return NAN
        if n == self._period:
            gain = (self._gain + g) * self._inv
            loss = (self._loss + (g - d)) * self._inv
        else:
            gain = (self._gain * self._pm1 + g) * self._inv
            loss = (self._loss * self._pm1 + (g - d)) * self._inv
        self._gain = gain
        self._loss = loss
        total = gain + loss
        return 100.0 * (gain / total) if total > 0.0 else 0.0


def _true_range(high: float, low: float, prev_close: float) -> float:
    greatest = high - low
    v = abs(prev_close - high)
    if v > greatest:
        greatest = v
    v = abs(prev_close - low)
    if v > greatest:
        greatest = v
    return greatest


class TaAtr:
    """ATR: the mean of the first ``period`` true ranges, then ``fma(beta, atr, alpha * tr)``."""

    __slots__ = ("_alpha", "_atr", "_beta", "_n", "_period", "_prev_close")

    def __init__(self, period: int) -> None:
        self._period = period
        self._beta = float(period - 1) / float(period)
        self._alpha = 1.0 - self._beta
        self._n = 0
        self._prev_close = 0.0
        self._atr = 0.0

    def update(self, high: float, low: float, close: float) -> float:
        n = self._n
        self._n = n + 1
        prev_close = self._prev_close
        self._prev_close = close
        if n == 0:
            return NAN
        tr = _true_range(high, low, prev_close)
        if n < self._period:
            self._atr += tr
            return NAN
        if n == self._period:
            self._atr = (self._atr + tr) / self._period
        else:
            self._atr = fma(self._beta, self._atr, self._alpha * tr)
        return self._atr


class TaAdx:
    """ADX: Wilder-smoothed +DM/-DM/TR, DX, then the Wilder-smoothed DX."""

    __slots__ = (
        "_adx",
        "_minus_dm",
        "_n",
        "_period",
        "_pf",
        "_plus_dm",
        "_prev_close",
        "_prev_high",
        "_prev_low",
        "_sum_dx",
        "_tr",
    )

    def __init__(self, period: int) -> None:
        self._period = period
        self._pf = float(period)
        self._n = 0
        self._prev_high = self._prev_low = self._prev_close = 0.0
        self._minus_dm = self._plus_dm = self._tr = self._sum_dx = self._adx = 0.0

    def update(self, high: float, low: float, close: float) -> float:
        n = self._n
        self._n = n + 1
        if n == 0:
            self._prev_high, self._prev_low, self._prev_close = high, low, close
            return NAN
        pf = self._pf
        diff_p = high - self._prev_high
        diff_m = self._prev_low - low
        self._prev_high = high
        self._prev_low = low
        minus_dm = self._minus_dm
        plus_dm = self._plus_dm
        if n >= self._period:
            minus_dm -= minus_dm / pf
            plus_dm -= plus_dm / pf
        if diff_m > 0.0 and diff_p < diff_m:
            minus_dm += diff_m
        elif diff_p > 0.0 and diff_p > diff_m:
            plus_dm += diff_p
        self._minus_dm = minus_dm
        self._plus_dm = plus_dm
        tr_1 = _true_range(high, low, self._prev_close)
        self._prev_close = close
        if n < self._period:
            self._tr += tr_1
            return NAN
        tr = self._tr = self._tr - self._tr / pf + tr_1
        dx = NAN
        if tr > 0.0:
            minus_di = 100.0 * (minus_dm / tr)
            plus_di = 100.0 * (plus_dm / tr)
            total = minus_di + plus_di
            if not _is_zero(total):
                dx = 100.0 * (abs(minus_di - plus_di) / total)
        last_seed = 2 * self._period - 1
        if n <= last_seed:
            if dx == dx:
                self._sum_dx += dx
            if n < last_seed:
                return NAN
            self._adx = self._sum_dx / pf
        elif dx == dx:
            self._adx = (self._adx * float(self._period - 1) + dx) / pf
        return self._adx


class TaStoch:
    """Slow stochastic: raw %K over ``fastk`` bars, %K = SMA(raw, slowk), %D = SMA(%K, slowd)."""

    __slots__ = ("_highs", "_lows", "_period", "_slow_d", "_slow_k", "d", "k")

    def __init__(self, fastk: int, slowk: int, slowd: int) -> None:
        self._period = fastk
        self._highs: deque[float] = deque(maxlen=fastk)
        self._lows: deque[float] = deque(maxlen=fastk)
        self._slow_k = TaSma(slowk)
        self._slow_d = TaSma(slowd)
        self.k = self.d = NAN

    def update(self, high: float, low: float, close: float) -> None:
        highs = self._highs
        highs.append(high)
        self._lows.append(low)
        if len(highs) < self._period:
            return
        highest = max(highs)
        lowest = min(self._lows)
        span = highest - lowest
        if abs(span) <= _EPSILON * (abs(highest) + abs(lowest)):
            raw = 0.0
        else:
            raw = (close - lowest) / span * 100.0
        k = self._slow_k.update(raw)
        if k != k:
            return
        d = self._slow_d.update(k)
        if d == d:
            self.k = k
            self.d = d


class TaWillr:
    """Williams %R over ``period`` bars, clamped to [-100, 0]."""

    __slots__ = ("_highs", "_lows", "_period")

    def __init__(self, period: int) -> None:
        self._period = period
        self._highs: deque[float] = deque(maxlen=period)
        self._lows: deque[float] = deque(maxlen=period)

    def update(self, high: float, low: float, close: float) -> float:
        highs = self._highs
        highs.append(high)
        self._lows.append(low)
        if len(highs) < self._period:
            return NAN
        highest = max(highs)
        lowest = min(self._lows)
        span = highest - lowest
        if abs(span) <= _EPSILON * (abs(highest) + abs(lowest)):
            return 0.0
        value = (highest - close) / span * -100.0
        if value > 0.0:
            return 0.0
        return -100.0 if value < -100.0 else value


class TaCci:
    """CCI: typical prices in a circular buffer, summed in slot order as TA-Lib does; 0 inside a
    dead zone scaled to the mean."""

    __slots__ = ("_buf", "_idx", "_n", "_period")

    def __init__(self, period: int) -> None:
        self._period = period
        self._buf = [0.0] * period
        self._idx = 0
        self._n = 0

    def update(self, high: float, low: float, close: float) -> float:
        period = self._period
        last = (high + low + close) / 3.0
        buf = self._buf
        buf[self._idx] = last
        self._idx = (self._idx + 1) % period
        if self._n < period - 1:
            self._n += 1
            return NAN
        average = 0.0
        for v in buf:
            average += v
        average /= period
        deviation = 0.0
        for v in buf:
            deviation += abs(v - average)
        diff = last - average
        dead_zone = abs(average) * _EPSILON
        mean_deviation = deviation / period
        if dead_zone >= abs(diff) or dead_zone >= abs(mean_deviation):
            return 0.0
        denominator = 0.015 * mean_deviation
        return diff / denominator if denominator != 0.0 else 0.0


class TaMfi:
    """Money-flow index: positive/negative flows in a ring, with TA-Lib's dead-zone and reset."""

    __slots__ = (
        "_idx",
        "_n",
        "_neg",
        "_neg_sum",
        "_null_run",
        "_period",
        "_pos",
        "_pos_sum",
        "_prev",
    )

    def __init__(self, period: int) -> None:
        self._period = period
        self._pos = [0.0] * period
        self._neg = [0.0] * period
        self._idx = 0
        self._n = 0
        self._prev = self._pos_sum = self._neg_sum = 0.0
        self._null_run = 0

    def update(self, high: float, low: float, close: float, volume: float) -> float:
        n = self._n
        self._n = n + 1
        typical = (high + low + close) / 3.0
        if n == 0:
            self._prev = typical
            return NAN
        period = self._period
        idx = self._idx
        pos_sum = self._pos_sum
        neg_sum = self._neg_sum
        if n > period:
            pos_sum -= self._pos[idx]
            neg_sum -= self._neg[idx]
        d = typical - self._prev
        scale = abs(typical) + abs(self._prev)
        self._prev = typical
        flow = 0.0 if abs(d) <= _EPSILON * scale else typical * volume
        if d < 0.0:
            pos_flow, neg_flow = 0.0, flow
        else:
            pos_flow, neg_flow = flow, 0.0
        self._pos[idx] = pos_flow
        self._neg[idx] = neg_flow
        pos_sum += pos_flow
        neg_sum += neg_flow
        self._null_run = self._null_run + 1 if flow == 0.0 else 0
        if self._null_run >= period:
            self._null_run = period
            pos_sum = neg_sum = 0.0
        self._pos_sum = pos_sum
        self._neg_sum = neg_sum
        self._idx = (idx + 1) % period
        if n < period:
            return NAN
        total = pos_sum + neg_sum
        clamped = 0.0 if pos_sum < 0.0 else (total if pos_sum > total else pos_sum)
        return 100.0 * (clamped / total) if total > 0.0 else 0.0


class TaVar:
    """Population variance from running sums of deviations from a shift, re-anchored at the window
    mean when the sums lose digits, after a large value leaves, or every 32 windows (TA_VAR)."""

    __slots__ = ("_bars", "_inv", "_n", "_period", "_shift", "_total1", "_total2", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._inv = 1.0 / float(period)
        self._window: deque[float] = deque(maxlen=period)
        self._n = 0
        self._shift = self._total1 = self._total2 = 0.0
        self._bars = 32 * period

    def update(self, x: float) -> float:
        window = self._window
        window.append(x)
        n = self._n = self._n + 1
        if n == 1:
            self._shift = x
        t = x - self._shift
        total1 = self._total1 + t
        total2 = self._total2 + t * t
        if n < self._period:
            self._total1 = total1
            self._total2 = total2
            return NAN
        inv = self._inv
        mean1 = total1 * inv
        variance = total2 * inv - mean1 * mean1
        t = window[0] - self._shift
        total1 -= t
        t *= t
        total2 -= t
        self._bars -= 1
        if variance < 0.000001 * (total2 * inv) or t > 1000000.0 * total2 or self._bars <= 0:
            variance, total1, total2 = self._reseed()
        self._total1 = total1
        self._total2 = total2
        return variance

    def _reseed(self) -> tuple[float, float, float]:
        self._bars = 32 * self._period
        inv = self._inv
        window = self._window
        total = 0.0
        for v in window:
            total += v
        shift = self._shift = total * inv
        total1 = total2 = 0.0
        for v in window:
            t = v - shift
            total1 += t
            total2 += t * t
        mean1 = total1 * inv
        variance = total2 * inv - mean1 * mean1
        if variance < 0.000000000001 * (total2 * inv):
            variance = 0.0
        t = window[0] - shift
        return variance, total1 - t, total2 - t * t


class TaStdDev:
    """STDDEV: the square root of ``TaVar``, times ``nbdev``."""

    __slots__ = ("_nbdev", "_var")

    def __init__(self, period: int, nbdev: float = 1.0) -> None:
        self._var = TaVar(period)
        self._nbdev = nbdev

    def update(self, x: float) -> float:
        std = _sqrt(self._var.update(x))
        return std if self._nbdev == 1.0 else std * self._nbdev


class TaBbands:
    """Bollinger bands over an SMA: middle = SMA, deviation = sqrt(TA_VAR)."""

    __slots__ = ("_dn", "_sma", "_up", "_var", "lower", "middle", "upper")

    def __init__(self, period: int, nbdev_up: float, nbdev_dn: float) -> None:
        self._sma = TaSma(period)
        self._var = TaVar(period)
        self._up = nbdev_up
        self._dn = nbdev_dn
        self.upper = self.middle = self.lower = NAN

    def update(self, x: float) -> None:
        middle = self._sma.update(x)
        variance = self._var.update(x)
        if middle != middle:
            return
        std = _sqrt(variance) if variance != 0.0 else 0.0
        self.middle = middle
        if self._up == self._dn:
            t = std * self._up
            self.upper = middle + t
            self.lower = middle - t
        else:
            self.upper = fma(std, self._up, middle)
            self.lower = middle - std * self._dn


class TaObv:
    """On-balance volume, starting at the first bar's volume."""

    __slots__ = ("_obv", "_prev")

    def __init__(self) -> None:
        self._obv = NAN
        self._prev = NAN

    def update(self, close: float, volume: float) -> float:
        if self._obv != self._obv:
            self._obv = volume
        elif close > self._prev:
            self._obv += volume
        elif close < self._prev:
            self._obv -= volume
        self._prev = close
        return self._obv


class TaRoc:
    """Rate of change in percent over ``period`` bars (0 when the old value is 0)."""

    __slots__ = ("_period", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._window: deque[float] = deque(maxlen=period + 1)

    def update(self, x: float) -> float:
        window = self._window
        window.append(x)
        if len(window) <= self._period:
            return NAN
        old = window[0]
        return ((x / old) - 1.0) * 100.0 if old != 0.0 else 0.0


class TaCorrel:
    """Pearson correlation from running sums of deviations from per-series shifts (TA_CORREL)."""

    __slots__ = (
        "_bars",
        "_inv",
        "_leaving_x",
        "_leaving_y",
        "_n",
        "_period",
        "_shift_x",
        "_shift_y",
        "_sum_x",
        "_sum_x2",
        "_sum_xy",
        "_sum_y",
        "_sum_y2",
        "_xs",
        "_ys",
    )

    def __init__(self, period: int) -> None:
        self._period = period
        self._inv = 1.0 / float(period)
        self._xs: deque[float] = deque(maxlen=period)
        self._ys: deque[float] = deque(maxlen=period)
        self._n = 0
        self._shift_x = self._shift_y = 0.0
        self._sum_x = self._sum_x2 = self._sum_xy = self._sum_y = self._sum_y2 = 0.0
        self._leaving_x = self._leaving_y = 0.0
        self._bars = 32 * period

    def update(self, x: float, y: float) -> float:
        xs = self._xs
        ys = self._ys
        xs.append(x)
        ys.append(y)
        n = self._n = self._n + 1
        if n == 1:
            self._shift_x = x
            self._shift_y = y
        dx = x - self._shift_x
        dy = y - self._shift_y
        sum_x = self._sum_x + dx
        sum_x2 = self._sum_x2 + dx * dx
        sum_xy = self._sum_xy + dx * dy
        sum_y = self._sum_y + dy
        sum_y2 = self._sum_y2 + dy * dy
        if n >= self._period:
            inv = self._inv
            ss_x = sum_x2 - ((sum_x * sum_x) * inv)
            ss_y = sum_y2 - ((sum_y * sum_y) * inv)
            sp_xy = sum_xy - ((sum_x * sum_y) * inv)
            self._bars -= 1
            if (
                ss_x < 0.000001 * sum_x2
                or ss_y < 0.000001 * sum_y2
                or self._leaving_x > 1000000.0 * sum_x2
                or self._leaving_y > 1000000.0 * sum_y2
                or self._bars <= 0
            ):
                sum_x, sum_x2, sum_xy, sum_y, sum_y2 = self._reseed()
                ss_x = sum_x2 - ((sum_x * sum_x) * inv)
                ss_y = sum_y2 - ((sum_y * sum_y) * inv)
                sp_xy = sum_xy - ((sum_x * sum_y) * inv)
                if ss_x < 0.0:
                    ss_x = 0.0
                if ss_y < 0.0:
                    ss_y = 0.0
            tx = xs[0] - self._shift_x
            ty = ys[0] - self._shift_y
            if ss_x > 0.00000000000001 * sum_x2 and ss_y > 0.00000000000001 * sum_y2:
                out = sp_xy / _sqrt(ss_x * ss_y)
                if out > 1.0:
                    out = 1.0
                elif out < -1.0:
                    out = -1.0
            else:
                out = 0.0
            leaving_x = self._leaving_x = tx * tx
            leaving_y = self._leaving_y = ty * ty
            sum_x -= tx
            sum_x2 -= leaving_x
            sum_xy -= tx * ty
            sum_y -= ty
            sum_y2 -= leaving_y
        else:
            out = NAN
        self._sum_x = sum_x
        self._sum_x2 = sum_x2
        self._sum_xy = sum_xy
        self._sum_y = sum_y
        self._sum_y2 = sum_y2
        return out

    def _reseed(self) -> tuple[float, float, float, float, float]:
        self._bars = 32 * self._period
        inv = self._inv
        total_x = total_y = 0.0
        for x, y in zip(self._xs, self._ys, strict=True):
            total_x += x
            total_y += y
        shift_x = self._shift_x = total_x * inv
        shift_y = self._shift_y = total_y * inv
        sum_x = sum_x2 = sum_xy = sum_y = sum_y2 = 0.0
        for x, y in zip(self._xs, self._ys, strict=True):
            dx = x - shift_x
            sum_x += dx
            sum_x2 += dx * dx
            dy = y - shift_y
            sum_xy += dx * dy
            sum_y += dy
            sum_y2 += dy * dy
        return sum_x, sum_x2, sum_xy, sum_y, sum_y2


def _beta_return(price: float, prev: float, shift: float) -> float:
    return (price - prev) / prev - shift if prev != 0.0 else -shift


class TaBeta:
    """Regression slope of the returns of the second input on those of the first (TA_BETA),
    from running sums of shifted returns with TA-Lib's reseeds."""

    __slots__ = (
        "_bars",
        "_i",
        "_leaving_xx",
        "_leaving_yy",
        "_n",
        "_period",
        "_s_x",
        "_s_xx",
        "_s_xy",
        "_s_y",
        "_s_yy",
        "_shift_x",
        "_shift_y",
        "_xs",
        "_ys",
    )

    def __init__(self, period: int) -> None:
        self._period = period
        self._n = float(period)
        self._xs: deque[float] = deque(maxlen=period + 1)
        self._ys: deque[float] = deque(maxlen=period + 1)
        self._i = 0
        self._shift_x = self._shift_y = 0.0
        self._s_xx = self._s_yy = self._s_xy = self._s_x = self._s_y = 0.0
        self._leaving_xx = self._leaving_yy = 0.0
        self._bars = 32 * period

    def update(self, price_x: float, price_y: float) -> float:
        xs = self._xs
        ys = self._ys
        i = self._i
        self._i = i + 1
        if i == 0:
            xs.append(price_x)
            ys.append(price_y)
            return NAN
        last_x = xs[-1]
        last_y = ys[-1]
        xs.append(price_x)
        ys.append(price_y)
        if i == 1:
            if last_x != 0.0:
                self._shift_x = (price_x - last_x) / last_x
            if last_y != 0.0:
                self._shift_y = (price_y - last_y) / last_y
        x = _beta_return(price_x, last_x, self._shift_x)
        y = _beta_return(price_y, last_y, self._shift_y)
        s_xx = self._s_xx + x * x
        s_yy = self._s_yy + y * y
        s_xy = self._s_xy + x * y
        s_x = self._s_x + x
        s_y = self._s_y + y
        if i < self._period:
            self._s_xx, self._s_yy, self._s_xy, self._s_x, self._s_y = s_xx, s_yy, s_xy, s_x, s_y
            return NAN
        n = self._n
        denom_scale = n * s_xx
        denom = denom_scale - (s_x * s_x)
        self._bars -= 1
        if (
            denom < 0.000001 * denom_scale
            or self._leaving_xx > 1000.0 * s_xx
            or self._leaving_yy > 1000.0 * s_yy
            or self._bars <= 0
        ):
            s_xx, s_yy, s_xy, s_x, s_y = self._reseed()
            denom_scale = n * s_xx
            denom = denom_scale - (s_x * s_x)
            if denom < 0.0:
                denom = 0.0
        x = _beta_return(xs[1], xs[0], self._shift_x)
        y = _beta_return(ys[1], ys[0], self._shift_y)
        out = ((n * s_xy) - (s_x * s_y)) / denom if denom > 0.00000000000001 * denom_scale else 0.0
        xx = self._leaving_xx = x * x
        yy = self._leaving_yy = y * y
        self._s_xx = s_xx - xx
        self._s_yy = s_yy - yy
        self._s_xy = s_xy - x * y
        self._s_x = s_x - x
        self._s_y = s_y - y
        return out

    def _reseed(self) -> tuple[float, float, float, float, float]:
        self._bars = 32 * self._period
        total_x = total_y = 0.0
        prices = iter(zip(self._xs, self._ys, strict=True))
        prev_x, prev_y = next(prices)
        for px, py in prices:
            if prev_x != 0.0:
                total_x += (px - prev_x) / prev_x
            prev_x = px
            if prev_y != 0.0:
                total_y += (py - prev_y) / prev_y
            prev_y = py
        shift_x = self._shift_x = total_x / self._n
        shift_y = self._shift_y = total_y / self._n
        s_xx = s_yy = s_xy = s_x = s_y = 0.0
        prices = iter(zip(self._xs, self._ys, strict=True))
        prev_x, prev_y = next(prices)
        for px, py in prices:
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


class RunningWindowSum:
    """``indicators.window_sum`` fed one value at a time: the running total (as ``np.cumsum``)
    minus the running total ``period`` values back."""

    __slots__ = ("_period", "_started", "_total", "_totals")

    def __init__(self, period: int) -> None:
        self._period = period
        self._totals: deque[float] = deque(maxlen=period + 1)
        self._total = 0.0
        self._started = False

    def update(self, x: float) -> float:
        if self._started:
            self._total += x
        else:
            self._total = x
            self._started = True
        totals = self._totals
        totals.append(self._total)
        if len(totals) > self._period:
            return self._total - totals[0]
        return self._total if len(totals) == self._period else NAN


class RollingSkew:
    """``indicators.rolling_skew`` fed one value at a time (leading NaN values are skipped)."""

    __slots__ = ("_period", "_started", "_sum1", "_sum2", "_sum3")

    def __init__(self, period: int) -> None:
        self._period = period
        self._started = False
        self._sum1 = RunningWindowSum(period)
        self._sum2 = RunningWindowSum(period)
        self._sum3 = RunningWindowSum(period)

    def update(self, x: float) -> float:
        if not self._started:
            if x != x:
                return NAN
            self._started = True
        sq = x * x
        period = self._period
        mean = self._sum1.update(x) / period
        ex2 = self._sum2.update(sq) / period
        ex3 = self._sum3.update(sq * x) / period
        m2 = ex2 - mean * mean
        m3 = ex3 - 3.0 * mean * ex2 + 2.0 * mean * mean * mean
        return safe_ratio(m3, m2 * _sqrt(abs(m2)), 0.0)


# --------------------------------------------------------------------------------------------------
# Feature graph of one bar series: shared state machines (memoised like ``BarArrays.memo``) updated
# once per bar in dependency order, then one reader per feature.


class _Tick:
    """The bar being processed, as the nodes see it."""

    __slots__ = (
        "close",
        "high",
        "log_close",
        "low",
        "market_level",
        "market_return",
        "open",
        "row",
        "volume",
    )

    def __init__(self) -> None:
        self.open = self.high = self.low = self.close = self.volume = NAN
        self.log_close = self.market_return = self.market_level = NAN
        self.row = -1


class _Node(Protocol):
    def update(self, t: _Tick) -> None: ...


N = TypeVar("N", bound=_Node)
Reader = Callable[[], float]


class _Graph:
    """The state machines of one bar series."""

    __slots__ = ("_memo", "_steps", "nodes", "tick")

    def __init__(self) -> None:
        self.tick = _Tick()
        self.nodes: list[_Node] = []
        self._memo: dict[Hashable, _Node] = {}
        self._steps: list[Callable[[_Tick], None]] = []

    def node(self, key: Hashable, make: Callable[[], N]) -> N:
        """The node under ``key``, made (after its own dependencies) on first use."""
        found = self._memo.get(key)
        if found is None:
            found = make()
            self._memo[key] = found
            self.nodes.append(found)
            self._steps.append(found.update)
        return cast(N, found)

    def step(
        self,
        o: float,
        h: float,
        lo: float,
        c: float,
        v: float,
        market_return: float = NAN,
        market_level: float = NAN,
    ) -> None:
        t = self.tick
        t.open = o
        t.high = h
        t.low = lo
        t.close = c
        t.volume = v
        t.log_close = _log(c)
        t.market_return = market_return
        t.market_level = market_level
        t.row += 1
        for update in self._steps:
            update(t)


class _Value:
    """A node with one output ``value``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = NAN


class _LogHistory(_Value):
    """The last ``lag + 1`` values of a log series (close or market level); ``value`` is the
    one-bar difference."""

    __slots__ = ("_hist", "_source")

    def __init__(self, source: Callable[[_Tick], float]) -> None:
        super().__init__()
        self._source = source
        self._hist: deque[float] = deque(maxlen=2)

    def need(self, lag: int) -> None:
        if lag + 1 > (self._hist.maxlen or 0):
            self._hist = deque(self._hist, maxlen=lag + 1)

    def update(self, t: _Tick) -> None:
        hist = self._hist
        hist.append(self._source(t))
        self.value = hist[-1] - hist[-2] if len(hist) > 1 else NAN

    def diff(self, lag: int) -> float:
        hist = self._hist
        return hist[-1] - hist[-1 - lag] if len(hist) > lag else NAN


class _FieldSma(_Value):
    __slots__ = ("_get", "_sma")

    def __init__(self, field: str, period: int) -> None:
        super().__init__()
        self._get = attrgetter(field)
        self._sma = TaSma(period)

    def update(self, t: _Tick) -> None:
        self.value = self._sma.update(self._get(t))


class _FieldStdDev(_Value):
    __slots__ = ("_get", "_std")

    def __init__(self, field: str, period: int) -> None:
        super().__init__()
        self._get = attrgetter(field)
        self._std = TaStdDev(period, 1.0)

    def update(self, t: _Tick) -> None:
        self.value = self._std.update(self._get(t))


class _Lagged(_Value):
    """``source.value`` now over ``lag`` bars ago, minus one."""

    __slots__ = ("_hist", "_source")

    def __init__(self, source: _Value, lag: int) -> None:
        super().__init__()
        self._source = source
        self._hist: deque[float] = deque(maxlen=lag + 1)

    def update(self, t: _Tick) -> None:
        hist = self._hist
        hist.append(self._source.value)
        self.value = _div(hist[-1], hist[0]) - 1.0 if len(hist) == hist.maxlen else NAN


class _CloseEma(_Value):
    __slots__ = ("_ema",)

    def __init__(self, period: int) -> None:
        super().__init__()
        self._ema = TaEma(period)

    def update(self, t: _Tick) -> None:
        self.value = self._ema.update(t.close)


class _CloseMacd:
    __slots__ = ("macd",)

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        self.macd = TaMacd(fast, slow, signal)

    def update(self, t: _Tick) -> None:
        self.macd.update(t.close)


class _Hlc(_Value):
    """A TA-Lib state machine of (high, low, close)."""

    __slots__ = ("_fn",)

    def __init__(self, machine: TaAdx | TaAtr | TaWillr | TaCci) -> None:
        super().__init__()
        self._fn = machine.update

    def update(self, t: _Tick) -> None:
        self.value = self._fn(t.high, t.low, t.close)


class _CloseOnly(_Value):
    """A TA-Lib state machine of the close."""

    __slots__ = ("_fn",)

    def __init__(self, machine: TaRsi | TaRoc) -> None:
        super().__init__()
        self._fn = machine.update

    def update(self, t: _Tick) -> None:
        self.value = self._fn(t.close)


class _Stoch:
    __slots__ = ("stoch",)

    def __init__(self, fastk: int, slowk: int, slowd: int) -> None:
        self.stoch = TaStoch(fastk, slowk, slowd)

    def update(self, t: _Tick) -> None:
        self.stoch.update(t.high, t.low, t.close)


class _Mfi(_Value):
    __slots__ = ("_mfi",)

    def __init__(self, period: int) -> None:
        super().__init__()
        self._mfi = TaMfi(period)

    def update(self, t: _Tick) -> None:
        self.value = self._mfi.update(t.high, t.low, t.close, t.volume)


class _Bbands:
    __slots__ = ("bands",)

    def __init__(self, period: int, nbdev: float) -> None:
        self.bands = TaBbands(period, nbdev, nbdev)

    def update(self, t: _Tick) -> None:
        self.bands.update(t.close)


class _ReturnStdDev(_Value):
    """STDDEV of the one-bar log returns from row 1 (``_from_row(..., 1)``)."""

    __slots__ = ("_logs", "_std")

    def __init__(self, logs: _LogHistory, period: int) -> None:
        super().__init__()
        self._logs = logs
        self._std = TaStdDev(period, 1.0)

    def update(self, t: _Tick) -> None:
        if t.row >= 1:
            self.value = self._std.update(self._logs.value)


class _ObvFlow(_Value):
    """safe_ratio(OBV - OBV ``period`` bars ago, SUM(volume, period), 0)."""

    __slots__ = ("_hist", "_obv", "_sum")

    def __init__(self, period: int) -> None:
        super().__init__()
        self._obv = TaObv()
        self._sum = TaSum(period)
        self._hist: deque[float] = deque(maxlen=period + 1)

    def update(self, t: _Tick) -> None:
        hist = self._hist
        hist.append(self._obv.update(t.close, t.volume))
        flow = hist[-1] - hist[0] if len(hist) == hist.maxlen else NAN
        self.value = safe_ratio(flow, self._sum.update(t.volume), 0.0)


class _ReturnSkew(_Value):
    __slots__ = ("_logs", "_skew")

    def __init__(self, logs: _LogHistory, period: int) -> None:
        super().__init__()
        self._logs = logs
        self._skew = RollingSkew(period)

    def update(self, t: _Tick) -> None:
        self.value = self._skew.update(self._logs.value)


class _MarketCorrel(_Value):
    """CORREL of the log returns with the market returns, both from row 1."""

    __slots__ = ("_correl", "_logs")

    def __init__(self, logs: _LogHistory, period: int) -> None:
        super().__init__()
        self._logs = logs
        self._correl = TaCorrel(period)

    def update(self, t: _Tick) -> None:
        if t.row >= 1:
            self.value = self._correl.update(self._logs.value, t.market_return)


class _MarketBeta(_Value):
    __slots__ = ("_beta",)

    def __init__(self, period: int) -> None:
        super().__init__()
        self._beta = TaBeta(period)

    def update(self, t: _Tick) -> None:
        self.value = self._beta.update(t.market_level, t.close)  # TA-Lib: index first


# --------------------------------------------------------------------------------------------------
# Feature kinds: each builds its nodes in a graph and returns the reader of its value.


def _p(spec: IndicatorSpec, key: str) -> int:
    return int(spec.param(key))


def _closes(g: _Graph) -> _LogHistory:
    return g.node(("log", "close"), lambda: _LogHistory(attrgetter("log_close")))


def _sma(g: _Graph, field: str, period: int) -> _FieldSma:
    return g.node(("sma", field, period), lambda: _FieldSma(field, period))


def _stddev(g: _Graph, field: str, period: int) -> _FieldStdDev:
    return g.node(("stddev", field, period), lambda: _FieldStdDev(field, period))


def _sma_ratio(g: _Graph, s: IndicatorSpec) -> Reader:
    sma, t = _sma(g, "close", _p(s, "period")), g.tick
    return lambda: _div(t.close, sma.value) - 1.0


def _sma_slope(g: _Graph, s: IndicatorSpec) -> Reader:
    period, lag = _p(s, "period"), _p(s, "lag")
    sma = _sma(g, "close", period)
    node = g.node(("sma_slope", period, lag), lambda: _Lagged(sma, lag))
    return lambda: node.value


def _ema_ratio(g: _Graph, s: IndicatorSpec) -> Reader:
    period, t = _p(s, "period"), g.tick
    ema = g.node(("ema", period), lambda: _CloseEma(period))
    return lambda: _div(t.close, ema.value) - 1.0


def _macd_part(part: str) -> Callable[[_Graph, IndicatorSpec], Reader]:
    def build(g: _Graph, s: IndicatorSpec) -> Reader:
        args = (_p(s, "fast"), _p(s, "slow"), _p(s, "signal"))
        macd, t = g.node(("macd", *args), lambda: _CloseMacd(*args)).macd, g.tick
        get = attrgetter(part)
        return lambda: _div(get(macd), t.close)

    return build


def _hlc(
    make: Callable[[int], TaAdx | TaAtr | TaWillr | TaCci], name: str
) -> Callable[[_Graph, IndicatorSpec], Reader]:
    def build(g: _Graph, s: IndicatorSpec) -> Reader:
        period = _p(s, "period")
        node = g.node((name, period), lambda: _Hlc(make(period)))
        return lambda: node.value

    return build


def _close_only(
    make: Callable[[int], TaRsi | TaRoc], name: str
) -> Callable[[_Graph, IndicatorSpec], Reader]:
    def build(g: _Graph, s: IndicatorSpec) -> Reader:
        period = _p(s, "period")
        node = g.node((name, period), lambda: _CloseOnly(make(period)))
        return lambda: node.value

    return build


def _stoch_part(part: str) -> Callable[[_Graph, IndicatorSpec], Reader]:
    def build(g: _Graph, s: IndicatorSpec) -> Reader:
        args = (_p(s, "fastk"), _p(s, "slowk"), _p(s, "slowd"))
        stoch = g.node(("stoch", *args), lambda: _Stoch(*args)).stoch
        get = attrgetter(part)
        return lambda: cast(float, get(stoch))

    return build


def _mfi(g: _Graph, s: IndicatorSpec) -> Reader:
    period = _p(s, "period")
    node = g.node(("mfi", period), lambda: _Mfi(period))
    return lambda: node.value


def _atr_ratio(g: _Graph, s: IndicatorSpec) -> Reader:
    period, t = _p(s, "period"), g.tick
    node = g.node(("atr", period), lambda: _Hlc(TaAtr(period)))
    return lambda: _div(node.value, t.close)


def _bbands(g: _Graph, s: IndicatorSpec) -> TaBbands:
    period, dev = _p(s, "period"), float(s.param("nbdev"))
    return g.node(("bbands", period, dev), lambda: _Bbands(period, dev)).bands


def _bb_position(g: _Graph, s: IndicatorSpec) -> Reader:
    bands, t = _bbands(g, s), g.tick
    return lambda: safe_ratio(t.close - bands.lower, bands.upper - bands.lower, 0.5)


def _bb_width(g: _Graph, s: IndicatorSpec) -> Reader:
    bands = _bbands(g, s)
    return lambda: _div(bands.upper - bands.lower, bands.middle)


def _realized_vol(g: _Graph, s: IndicatorSpec) -> Reader:
    period, logs = _p(s, "period"), _closes(g)
    node = g.node(("realized_vol", period), lambda: _ReturnStdDev(logs, period))
    return lambda: node.value


def _range_ratio(g: _Graph, s: IndicatorSpec) -> Reader:
    t = g.tick
    return lambda: _div(t.high - t.low, t.close)


def _obv_flow(g: _Graph, s: IndicatorSpec) -> Reader:
    period = _p(s, "period")
    node = g.node(("obv_flow", period), lambda: _ObvFlow(period))
    return lambda: node.value


def _volume_ratio(g: _Graph, s: IndicatorSpec) -> Reader:
    sma, t = _sma(g, "volume", _p(s, "period")), g.tick
    return lambda: safe_ratio(t.volume, sma.value, 1.0)


def _zscore(field: str) -> Callable[[_Graph, IndicatorSpec], Reader]:
    def build(g: _Graph, s: IndicatorSpec) -> Reader:
        period, t = _p(s, "period"), g.tick
        sma, std, get = _sma(g, field, period), _stddev(g, field, period), attrgetter(field)
        return lambda: safe_ratio(get(t) - sma.value, std.value, 0.0)

    return build


def _log_return(g: _Graph, s: IndicatorSpec) -> Reader:
    lag, logs = _p(s, "lag"), _closes(g)
    logs.need(lag)
    return lambda: logs.diff(lag)


def _return_skew(g: _Graph, s: IndicatorSpec) -> Reader:
    period, logs = _p(s, "period"), _closes(g)
    node = g.node(("skew", period), lambda: _ReturnSkew(logs, period))
    return lambda: node.value


def _market_correl(g: _Graph, s: IndicatorSpec) -> Reader:
    period, logs = _p(s, "period"), _closes(g)
    node = g.node(("market_correl", period), lambda: _MarketCorrel(logs, period))
    return lambda: node.value


def _market_beta(g: _Graph, s: IndicatorSpec) -> Reader:
    period = _p(s, "period")
    node = g.node(("market_beta", period), lambda: _MarketBeta(period))
    return lambda: node.value


def _log_market_level(t: _Tick) -> float:
    return _log(t.market_level)


def _market_relative_return(g: _Graph, s: IndicatorSpec) -> Reader:
    lag, logs = _p(s, "lag"), _closes(g)
    levels = g.node(("log", "market_level"), lambda: _LogHistory(_log_market_level))
    logs.need(lag)
    levels.need(lag)
    return lambda: logs.diff(lag) - levels.diff(lag)


KINDS: Mapping[str, Callable[[_Graph, IndicatorSpec], Reader]] = {
    "sma_ratio": _sma_ratio,
    "sma_slope": _sma_slope,
    "ema_ratio": _ema_ratio,
    "macd": _macd_part("macd"),
    "macd_signal": _macd_part("signal"),
    "macd_hist": _macd_part("hist"),
    "adx": _hlc(TaAdx, "adx"),
    "rsi": _close_only(TaRsi, "rsi"),
    "stoch_k": _stoch_part("k"),
    "stoch_d": _stoch_part("d"),
    "willr": _hlc(TaWillr, "willr"),
    "cci": _hlc(TaCci, "cci"),
    "roc": _close_only(TaRoc, "roc"),
    "mfi": _mfi,
    "atr_ratio": _atr_ratio,
    "bb_position": _bb_position,
    "bb_width": _bb_width,
    "realized_vol": _realized_vol,
    "range_ratio": _range_ratio,
    "obv_flow": _obv_flow,
    "volume_ratio": _volume_ratio,
    "volume_zscore": _zscore("volume"),
    "log_return": _log_return,
    "close_zscore": _zscore("close"),
    "return_skew": _return_skew,
    "market_correl": _market_correl,
    "market_beta": _market_beta,
    "market_relative_return": _market_relative_return,
}


def _reader(g: _Graph, spec: IndicatorSpec) -> Reader:
    build = KINDS.get(spec.kind)
    if build is None:
        raise KeyError(f"unknown indicator kind {spec.kind!r} ({spec.name})")
    return build(g, spec)


# --------------------------------------------------------------------------------------------------
# Higher timeframes: sessions, buckets and their features.


def epoch_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch of a timezone-aware instant."""
    if ts.tzinfo is None:
        raise ValueError(f"bar timestamps must be timezone-aware (UTC), got {ts!r}")
    return (ts - _EPOCH) // _ONE_US


def _load_sessions(year: int) -> dict[int, tuple[int, int]]:
    """Sessions of one calendar year: UTC day number -> (open, close) in epoch microseconds."""
    sched = TradingCalendar(date(year, 1, 1), date(year, 12, 31)).schedule()
    opens = sched["open_ts"].dt.epoch("us").to_list()
    closes = sched["close_ts"].dt.epoch("us").to_list()
    return {close // _DAY_US: (open_, close) for open_, close in zip(opens, closes, strict=True)}


class _Sessions:
    """Session bounds by UTC day (an XNYS session lies within one UTC day), loaded a calendar
    year at a time from ``TradingCalendar``; at most two years are kept."""

    __slots__ = ("_bounds", "_day", "_years")

    def __init__(self) -> None:
        self._years: dict[int, dict[int, tuple[int, int]]] = {}
        self._day = -1
        self._bounds: tuple[int, int] | None = None

    def bounds(self, ts_us: int) -> tuple[int, int] | None:
        """(open, close) of the session with ``open < ts <= close``, or None."""
        day = ts_us // _DAY_US
        if day != self._day:
            self._day = day
            year = (_EPOCH_DATE + timedelta(days=day)).year
            sessions = self._years.get(year)
            if sessions is None:
                sessions = _load_sessions(year)
                self._years = {y: s for y, s in self._years.items() if y == year - 1}
                self._years[year] = sessions
            self._bounds = sessions.get(day)
        bounds = self._bounds
        if bounds is None or not bounds[0] < ts_us <= bounds[1]:
            return None
        return bounds


class _HigherTimeframe:
    """Builds one higher timeframe's bars from the base bars (``resample.bucket_close``) and keeps
    the features of the last completed one."""

    __slots__ = (
        "_close",
        "_graph",
        "_high",
        "_low",
        "_open",
        "_pending",
        "_readers",
        "_specs",
        "_step",
        "_volume",
        "values",
    )

    def __init__(self, timeframe: Timeframe, specs: tuple[IndicatorSpec, ...]) -> None:
        minutes = timeframe.minutes
        self._step = 0 if minutes is None else minutes * _MINUTE_US
        self._graph = _Graph()
        self._specs = specs
        self._readers = [_reader(self._graph, s) for s in specs]
        self.values: list[float] = [NAN] * len(specs)
        self._pending = -1  # close (epoch us) of the bucket being built, -1 if none
        self._open = self._high = self._low = self._close = self._volume = NAN

    def on_bar(self, ts_us: int, session: tuple[int, int] | None, bar: Bar) -> None:
        bucket = -1
        if session is not None:
            open_us, close_us = session
            step = self._step
            if step:
                end = open_us + (ts_us - open_us + step - 1) // step * step
                bucket = end if end < close_us else close_us
            else:
                bucket = close_us
        if self._pending >= 0 and self._pending != bucket and self._pending <= ts_us:
            self._emit()
        if bucket < 0:
            return
        if self._pending != bucket:
            self._pending = bucket
            self._open, self._high, self._low = bar.open, bar.high, bar.low
            self._close, self._volume = bar.close, bar.volume
        else:
            if bar.high > self._high:
                self._high = bar.high
            if bar.low < self._low:
                self._low = bar.low
            self._close = bar.close
            self._volume += bar.volume
        if bucket <= ts_us:
            self._emit()

    def __getstate__(self) -> dict[str, object]:
        return _slots_state(self, without=("_readers",))

    def __setstate__(self, state: dict[str, object]) -> None:
        _restore_slots(self, state)
        self._readers = [_reader(self._graph, s) for s in self._specs]

    def _emit(self) -> None:
        self._graph.step(self._open, self._high, self._low, self._close, self._volume)
        self.values = [read() for read in self._readers]
        self._pending = -1


# --------------------------------------------------------------------------------------------------
# Public engines.


class StreamingFeatures:
    """Every feature of ``spec`` for one symbol, one base bar at a time, with bounded memory.

    ``update`` returns the values right after the bar closed, in ``feature_names`` order (NaN where
    the batch frame has null). Cross-asset features need ``market_return`` and ``market_level`` of
    the market index at the bar (see ``StreamingMarketIndex``); a missing return counts as 0.0 and
    a missing level repeats the last one, as the batch alignment does.
    """

    __slots__ = (
        "_base",
        "_base_readers",
        "_cross_readers",
        "_higher",
        "_last_us",
        "_level",
        "_names",
        "_sessions",
        "_spec",
    )

    def __init__(
        self, spec: FeatureSetSpec = DEFAULT_FEATURE_SET, base: Timeframe = Timeframe.M1
    ) -> None:
        self._spec = spec
        self._names = spec.feature_names(base)
        self._base = _Graph()
        self._base_readers = [_reader(self._base, s) for s in spec.base]
        self._cross_readers = [_reader(self._base, s) for s in spec.cross_asset]
        self._higher = [
            _HigherTimeframe(tf, spec.higher) for tf in spec.higher_timeframes_for(base)
        ]
        self._sessions = _Sessions()
        self._last_us = -(2**63)
        self._level = NAN

    def __getstate__(self) -> dict[str, object]:
        # the readers are closures over the graph's nodes: rebuilt from the spec on restore, so
        # the state pickles with the standard pickle (the graph memoises its nodes by key)
        return _slots_state(self, without=("_base_readers", "_cross_readers"))

    def __setstate__(self, state: dict[str, object]) -> None:
        _restore_slots(self, state)
        self._base_readers = [_reader(self._base, s) for s in self._spec.base]
        self._cross_readers = [_reader(self._base, s) for s in self._spec.cross_asset]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns, in the order of ``spec.feature_names(base)`` (as the batch)."""
        return self._names

    def update(
        self,
        bar: Bar,
        *,
        market_return: float | None = None,
        market_level: float | None = None,
    ) -> dict[str, float]:
        """Advance by one bar (timestamps strictly increasing) and return its feature values."""
        ts_us = epoch_us(bar.ts)
        if ts_us <= self._last_us:
            raise ValueError(
                f"bars must arrive in increasing ts order; got {bar.ts} after the last"
            )
        self._last_us = ts_us
        if market_level is not None:
            self._level = market_level
        self._base.step(
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            0.0 if market_return is None else market_return,
            self._level,
        )
        values = [read() for read in self._base_readers]
        if self._higher:
            session = self._sessions.bounds(ts_us)
            for higher in self._higher:
                higher.on_bar(ts_us, session, bar)
                values += higher.values
        values += [read() for read in self._cross_readers]
        return dict(zip(self._names, values, strict=True))

    def buffered_values(self) -> int:
        """How many values the indicator state holds (ring buffers, windows); bounded by the
        spec's periods, whatever the number of bars seen. The session cache is not counted."""
        return _count_buffered([self._base, *self._higher])


def _slots_state(obj: object, *, without: tuple[str, ...]) -> dict[str, object]:
    return {
        name: getattr(obj, name)
        for name in type(obj).__slots__  # type: ignore[attr-defined]
        if name not in without and hasattr(obj, name)
    }


def _restore_slots(obj: object, state: dict[str, object]) -> None:
    for name, value in state.items():
        setattr(obj, name, value)


def _count_buffered(root: object) -> int:
    total = 0
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, deque | list | dict):
            total += len(obj)
            items = obj.values() if isinstance(obj, dict) else obj
            stack.extend(item for item in items if not isinstance(item, float | int))
        elif type(obj).__module__ == __name__:
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    stack.append(getattr(obj, slot, None))
    return total


class StreamingMarketIndex:
    """Incremental ``batch.market_index``: the mean one-bar log return of the symbols that have a
    bar at each instant (each against its own previous bar) and its cumulative level.

    Pass the closes of one instant in the universe's order (the order of the frames given to
    ``market_index``): the mean sums them in that order.
    """

    __slots__ = ("_cum", "_last_us", "_prev_log", "_started")

    def __init__(self) -> None:
        self._prev_log: dict[str, float] = {}
        self._cum = 0.0
        self._started = False
        self._last_us = -(2**63)

    def update(self, ts: datetime, closes: Mapping[str, float]) -> tuple[float, float]:
        """(market_return, market_level) at ``ts``; timestamps strictly increasing."""
        ts_us = epoch_us(ts)
        if ts_us <= self._last_us:
            raise ValueError(f"instants must arrive in increasing order; got {ts} after the last")
        self._last_us = ts_us
        total = 0.0
        count = 0
        for symbol, close in closes.items():
            log_close = _log(close)
            prev = self._prev_log.get(symbol)
            self._prev_log[symbol] = log_close
            if prev is not None:
                r = log_close - prev
                total = total + r if count else r
                count += 1
        market_return = total / count if count else 0.0
        self._cum = self._cum + market_return if self._started else market_return
        self._started = True
        return market_return, math.exp(self._cum)


def measure_update_latency_us(n_bars: int = 20000, seed: int = 7) -> tuple[float, float]:
    """(p50, p99) in microseconds of one ``StreamingFeatures.update`` with the default spec (base,
    every higher timeframe, cross-asset) over ``n_bars`` synthetic one-minute bars, timed after a
    warm-up session whose first call loads the calendar."""
    from trader_runtime.sources.base import BarRequest
    from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

    warmup = 390
    start = date(2024, 1, 2)
    end = start + timedelta(days=(n_bars + warmup) // 390 * 7 // 5 + 30)
    source = SyntheticSource(SyntheticMarketConfig(seed=seed))
    frames = [source.load(BarRequest(symbol, start, end)) for symbol in ("AAA", "BBB")]
    rows = [frame.select("ts", "open", "high", "low", "close", "volume").rows() for frame in frames]
    if len(rows[0]) < n_bars + warmup or len(rows[0]) != len(rows[1]):
        raise ValueError(f"not enough synthetic bars for {n_bars} timed updates")
    index = StreamingMarketIndex()
    engine = StreamingFeatures()
    samples: list[int] = []
    for i, (row, other) in enumerate(zip(rows[0][: n_bars + warmup], rows[1], strict=False)):
        market_return, market_level = index.update(row[0], {"AAA": row[4], "BBB": other[4]})
        bar = Bar(row[0], row[1], row[2], row[3], row[4], row[5])
        began = time.perf_counter_ns()
        engine.update(bar, market_return=market_return, market_level=market_level)
        elapsed = time.perf_counter_ns() - began
        if i >= warmup:
            samples.append(elapsed)
    samples.sort()
    return samples[len(samples) // 2] / 1000.0, samples[(len(samples) * 99) // 100] / 1000.0


SessionBounds = _Sessions
"""Public name of the session-bounds lookup (``bounds(ts_us) -> (open_us, close_us) | None``)."""
