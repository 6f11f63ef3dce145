"""Batch indicators: one function per ``IndicatorSpec.kind``, on numpy arrays of one symbol.

TA-Lib computes every indicator it has; the rest use running sums (``np.cumsum``), which a streaming
update reproduces exactly. All are causal: the value at row t uses rows <= t only. Rows inside an
indicator's warm-up are NaN. Inputs must be finite (validated bars).

A kind returns either an array TA-Lib made (an indicator TA-Lib computes as is) or one it took from
``alloc`` and filled, so the batch engine hands out rows of a few preallocated blocks instead of
allocating a column per feature and a temporary per numpy operation: the arithmetic around the
TA-Lib calls runs in the fused loops of ``kernels``, which repeat the numpy expressions kept here
(``safe_ratio``, ``window_sum``) operation for operation.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

import numpy as np
import talib
from numpy.typing import NDArray
from talib._ta_lib import MA_Type

from trader_runtime.features import kernels
from trader_runtime.features.spec import IndicatorSpec

Array = NDArray[np.float64]
T = TypeVar("T")
Alloc = Callable[[], Array]  # an uninitialised float64 array of the bars' length
Kind = Callable[["BarArrays", IndicatorSpec, Alloc], Array]


@dataclass(frozen=True, slots=True)
class BarArrays:
    """OHLCV of one symbol as contiguous float64 arrays, plus the market index where needed."""

    open: Array
    high: Array
    low: Array
    close: Array
    volume: Array
    market_return: Array | None = None  # log return of the market index at each row
    market_level: Array | None = None  # market index level at each row
    _memo: dict[Hashable, object] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.close)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per key for these arrays (shared TA-Lib calls, log prices)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[return-value]


def _nan(n: int) -> Array:
    out = np.empty(n)
    out.fill(np.nan)
    return out


def safe_ratio(num: Array, den: Array, fallback: float) -> Array:
    """num / den; ``fallback`` where den <= 0, NaN where either is NaN (warm-up stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(num, den)
        not_positive = den <= 0  # False for NaN
    ratio[not_positive & ~np.isnan(num)] = fallback
    return ratio


def _lagged_diff(x: Array, lag: int) -> Array:
    out = np.empty(len(x))
    out[:lag] = np.nan
    if lag < len(x):
        np.subtract(x[lag:], x[:-lag], out=out[lag:])
    return out


def log_returns(close: Array) -> Array:
    """log(c_t / c_{t-1}); NaN at row 0."""
    return _lagged_diff(np.log(close), 1)


def window_sum(x: Array, period: int) -> Array:
    """Sum of the last ``period`` values via a running sum (streaming-exact); NaN before."""
    cs = np.cumsum(x)
    out = _nan(len(x))
    if period <= len(x):
        out[period - 1] = cs[period - 1]
        out[period:] = cs[period:] - cs[:-period]
    return out


def rolling_skew(x: Array, period: int) -> Array:
    """Skewness (biased, population moments) of the last ``period`` values, from running sums.

    NaN values at the start of ``x`` (warm-up) are skipped; the window starts after them. The
    window sums are ``window_sum`` of ``x``, ``x * x`` and ``x * x * x``; the moments
    ``m2 = E[x^2] - mean^2`` and ``m3 = E[x^3] - 3 mean E[x^2] + 2 mean^3``; the skew
    ``safe_ratio(m3, m2 * sqrt(|m2|), 0.0)``.
    """
    if period < 1:
        raise ValueError(f"rolling_skew needs a period >= 1, got {period}")
    out = np.empty(len(x))
    kernels.rolling_skew(np.ascontiguousarray(x, dtype=np.float64), period, out)
    return out


def _p(spec: IndicatorSpec, key: str) -> int:
    return int(spec.param(key))


def _log_close(b: BarArrays) -> Array:
    return b.memo("log_close", lambda: np.log(b.close))


def _returns(b: BarArrays) -> Array:
    return b.memo("log_returns", lambda: _lagged_diff(_log_close(b), 1))


def _sma(b: BarArrays, x: str, period: int) -> Array:
    return b.memo(("sma", x, period), lambda: talib.SMA(getattr(b, x), period))


def _stddev(b: BarArrays, x: str, period: int) -> Array:
    return b.memo(("stddev", x, period), lambda: talib.STDDEV(getattr(b, x), period, 1.0))


def _sma_ratio(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    out = alloc()
    kernels.ratio_minus_one(b.close, _sma(b, "close", _p(s, "period")), out)
    return out


def _sma_slope(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    out = alloc()
    kernels.lagged_ratio_minus_one(_sma(b, "close", _p(s, "period")), _p(s, "lag"), out)
    return out


def _ema_ratio(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    out = alloc()
    kernels.ratio_minus_one(b.close, talib.EMA(b.close, _p(s, "period")), out)
    return out


def _macd_part(index: int) -> Kind:
    def fn(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
        args = (_p(s, "fast"), _p(s, "slow"), _p(s, "signal"))
        parts = b.memo(("macd", *args), lambda: talib.MACD(b.close, *args))
        out = alloc()
        kernels.divide(np.asarray(parts[index]), b.close, out)
        return out

    return fn


def _adx(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return talib.ADX(b.high, b.low, b.close, _p(s, "period"))


def _rsi(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return talib.RSI(b.close, _p(s, "period"))


def _stoch_part(index: int) -> Kind:
    def fn(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
        args = (_p(s, "fastk"), _p(s, "slowk"), _p(s, "slowd"))
        parts = b.memo(
            ("stoch", *args),
            lambda: talib.STOCH(
                b.high,
                b.low,
                b.close,
                fastk_period=args[0],
                slowk_period=args[1],
                slowk_matype=MA_Type.SMA,
                slowd_period=args[2],
                slowd_matype=MA_Type.SMA,
            ),
        )
        return np.asarray(parts[index])

    return fn


def _willr(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return talib.WILLR(b.high, b.low, b.close, _p(s, "period"))


def _cci(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return talib.CCI(b.high, b.low, b.close, _p(s, "period"))


def _roc(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return talib.ROC(b.close, _p(s, "period"))


def _mfi(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return talib.MFI(b.high, b.low, b.close, b.volume, _p(s, "period"))


def _atr_ratio(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    out = alloc()
    kernels.divide(talib.ATR(b.high, b.low, b.close, _p(s, "period")), b.close, out)
    return out


def _bbands(b: BarArrays, s: IndicatorSpec) -> tuple[Array, Array, Array]:
    dev = float(s.param("nbdev"))
    period = _p(s, "period")
    upper, middle, lower = b.memo(
        ("bbands", period, dev), lambda: talib.BBANDS(b.close, period, dev, dev, MA_Type.SMA)
    )
    return np.asarray(upper), np.asarray(middle), np.asarray(lower)


def _bb_position(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    """safe_ratio(close - lower, upper - lower, 0.5)."""
    upper, _, lower = _bbands(b, s)
    out = alloc()
    kernels.band_position(b.close, upper, lower, out)
    return out


def _bb_width(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    """(upper - lower) / middle."""
    upper, middle, lower = _bbands(b, s)
    out = alloc()
    kernels.spread_ratio(upper, lower, middle, out)
    return out


def _from_row(fn: Callable[[Array], Array], x: Array, start: int, alloc: Alloc) -> Array:
    """Apply a TA-Lib function to ``x[start:]`` (whose first rows are undefined); NaN before."""
    out = alloc()
    out[:start] = np.nan
    if start < len(x):
        out[start:] = fn(x[start:])
    return out


def _realized_vol(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    period = _p(s, "period")
    return _from_row(lambda r: talib.STDDEV(r, period, 1.0), _returns(b), 1, alloc)


def _range_ratio(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    """(high - low) / close."""
    out = alloc()
    kernels.spread_ratio(b.high, b.low, b.close, out)
    return out


def _obv_flow(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    """safe_ratio(OBV - OBV ``period`` bars ago, SUM(volume, period), 0)."""
    period = _p(s, "period")
    obv = talib.OBV(b.close, b.volume)
    out = alloc()
    kernels.lagged_flow_ratio(obv, period, talib.SUM(b.volume, period), out)
    return out


def _volume_ratio(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    out = alloc()
    kernels.safe_ratio(b.volume, _sma(b, "volume", _p(s, "period")), 1.0, out)
    return out


def _zscore(b: BarArrays, x: str, period: int, alloc: Alloc) -> Array:
    """safe_ratio(x - SMA(x), STDDEV(x), 0)."""
    out = alloc()
    kernels.safe_diff_ratio(getattr(b, x), _sma(b, x, period), _stddev(b, x, period), 0.0, out)
    return out


def _volume_zscore(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return _zscore(b, "volume", _p(s, "period"), alloc)


def _close_zscore(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    return _zscore(b, "close", _p(s, "period"), alloc)


def _log_return(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    lag = _p(s, "lag")
    if lag == 1:
        return _returns(b)
    out = alloc()
    kernels.lagged_diff(_log_close(b), lag, out)
    return out


def _return_skew(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    out = alloc()
    kernels.rolling_skew(_returns(b), _p(s, "period"), out)
    return out


def _market(b: BarArrays, s: IndicatorSpec) -> tuple[Array, Array]:
    if b.market_return is None or b.market_level is None:
        raise ValueError(f"{s.name} needs the market index (market_return, market_level)")
    return b.market_return, b.market_level


def _market_correl(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    market_return, _ = _market(b, s)
    period = _p(s, "period")
    return _from_row(lambda r: talib.CORREL(r, market_return[1:], period), _returns(b), 1, alloc)


def _market_beta(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    """cov(stock, market) / var(market) of one-bar returns: TA-Lib's BETA takes the index first."""
    _, level = _market(b, s)
    return talib.BETA(level, b.close, _p(s, "period"))


def _market_relative_return(b: BarArrays, s: IndicatorSpec, alloc: Alloc) -> Array:
    """log-return of the stock over ``lag`` bars minus that of the market index."""
    _, level = _market(b, s)
    out = alloc()
    kernels.lagged_diff_spread(_log_close(b), np.log(level), _p(s, "lag"), out)
    return out


KINDS: MappingProxyType[str, Kind] = MappingProxyType(
    {
        "sma_ratio": _sma_ratio,
        "sma_slope": _sma_slope,
        "ema_ratio": _ema_ratio,
        "macd": _macd_part(0),
        "macd_signal": _macd_part(1),
        "macd_hist": _macd_part(2),
        "adx": _adx,
        "rsi": _rsi,
        "stoch_k": _stoch_part(0),
        "stoch_d": _stoch_part(1),
        "willr": _willr,
        "cci": _cci,
        "roc": _roc,
        "mfi": _mfi,
        "atr_ratio": _atr_ratio,
        "bb_position": _bb_position,
        "bb_width": _bb_width,
        "realized_vol": _realized_vol,
        "range_ratio": _range_ratio,
        "obv_flow": _obv_flow,
        "volume_ratio": _volume_ratio,
        "volume_zscore": _volume_zscore,
        "log_return": _log_return,
        "close_zscore": _close_zscore,
        "return_skew": _return_skew,
        "market_correl": _market_correl,
        "market_beta": _market_beta,
        "market_relative_return": _market_relative_return,
    }
)


def compute_indicator(bars: BarArrays, spec: IndicatorSpec) -> Array:
    """The values of one indicator for every row of ``bars``."""
    return indicator_values(bars, spec, lambda: np.empty(len(bars)))


def indicator_values(bars: BarArrays, spec: IndicatorSpec, alloc: Alloc) -> Array:
    """The values of one indicator: an array from ``alloc`` (called at most once; uninitialised
    contiguous float64 arrays of ``len(bars)``), or one of its own, TA-Lib's output as is."""
    fn = KINDS.get(spec.kind)
    if fn is None:
        raise KeyError(f"unknown indicator kind {spec.kind!r} ({spec.name})")
    return np.asarray(fn(bars, spec, alloc), dtype=np.float64)
