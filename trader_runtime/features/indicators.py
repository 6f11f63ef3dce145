"""Batch indicators: one function per ``IndicatorSpec.kind``, on numpy arrays of one symbol.

TA-Lib computes every indicator it has; the rest use running sums (``np.cumsum``), which a streaming
update reproduces exactly. All are causal: the value at row t uses rows <= t only. Rows inside an
indicator's warm-up are NaN. Inputs must be finite (validated bars).
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

from trader_runtime.features.spec import IndicatorSpec

Array = NDArray[np.float64]
T = TypeVar("T")


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


def _from_row(fn: Callable[[Array], Array], x: Array, start: int) -> Array:
    """Apply a TA-Lib function to ``x[start:]`` (whose first rows are undefined) and re-pad."""
    out = _nan(len(x))
    if start < len(x):
        out[start:] = fn(x[start:])
    return out


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

    NaN values at the start of ``x`` (warm-up) are skipped; the window starts after them.
    """
    n = len(x)
    out = _nan(n)
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
    skew = safe_ratio(m3, m2 * np.sqrt(np.abs(m2)), 0.0)
    out[first:] = skew
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


def _sma_ratio(b: BarArrays, s: IndicatorSpec) -> Array:
    return b.close / _sma(b, "close", _p(s, "period")) - 1.0


def _sma_slope(b: BarArrays, s: IndicatorSpec) -> Array:
    sma = _sma(b, "close", _p(s, "period"))
    lag = _p(s, "lag")
    out = _nan(len(b))
    out[lag:] = sma[lag:] / sma[:-lag] - 1.0
    return out


def _ema_ratio(b: BarArrays, s: IndicatorSpec) -> Array:
    return b.close / talib.EMA(b.close, _p(s, "period")) - 1.0


def _macd_part(index: int) -> Callable[[BarArrays, IndicatorSpec], Array]:
    def fn(b: BarArrays, s: IndicatorSpec) -> Array:
        args = (_p(s, "fast"), _p(s, "slow"), _p(s, "signal"))
        parts = b.memo(("macd", *args), lambda: talib.MACD(b.close, *args))
        return np.asarray(parts[index]) / b.close

    return fn


def _adx(b: BarArrays, s: IndicatorSpec) -> Array:
    return talib.ADX(b.high, b.low, b.close, _p(s, "period"))


def _rsi(b: BarArrays, s: IndicatorSpec) -> Array:
    return talib.RSI(b.close, _p(s, "period"))


def _stoch_part(index: int) -> Callable[[BarArrays, IndicatorSpec], Array]:
    def fn(b: BarArrays, s: IndicatorSpec) -> Array:
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


def _willr(b: BarArrays, s: IndicatorSpec) -> Array:
    return talib.WILLR(b.high, b.low, b.close, _p(s, "period"))


def _cci(b: BarArrays, s: IndicatorSpec) -> Array:
    return talib.CCI(b.high, b.low, b.close, _p(s, "period"))


def _roc(b: BarArrays, s: IndicatorSpec) -> Array:
    return talib.ROC(b.close, _p(s, "period"))


def _mfi(b: BarArrays, s: IndicatorSpec) -> Array:
    return talib.MFI(b.high, b.low, b.close, b.volume, _p(s, "period"))


def _atr_ratio(b: BarArrays, s: IndicatorSpec) -> Array:
    return talib.ATR(b.high, b.low, b.close, _p(s, "period")) / b.close


def _bbands(b: BarArrays, s: IndicatorSpec) -> tuple[Array, Array, Array]:
    dev = float(s.param("nbdev"))
    period = _p(s, "period")
    upper, middle, lower = b.memo(
        ("bbands", period, dev), lambda: talib.BBANDS(b.close, period, dev, dev, MA_Type.SMA)
    )
    return np.asarray(upper), np.asarray(middle), np.asarray(lower)


def _bb_position(b: BarArrays, s: IndicatorSpec) -> Array:
    upper, _, lower = _bbands(b, s)
    return safe_ratio(b.close - lower, upper - lower, 0.5)


def _bb_width(b: BarArrays, s: IndicatorSpec) -> Array:
    upper, middle, lower = _bbands(b, s)
    return (upper - lower) / middle


def _realized_vol(b: BarArrays, s: IndicatorSpec) -> Array:
    period = _p(s, "period")
    return _from_row(lambda r: talib.STDDEV(r, period, 1.0), _returns(b), 1)


def _range_ratio(b: BarArrays, s: IndicatorSpec) -> Array:
    return (b.high - b.low) / b.close


def _obv_flow(b: BarArrays, s: IndicatorSpec) -> Array:
    period = _p(s, "period")
    obv = talib.OBV(b.close, b.volume)
    flow = _lagged_diff(obv, period)
    return safe_ratio(flow, talib.SUM(b.volume, period), 0.0)


def _volume_ratio(b: BarArrays, s: IndicatorSpec) -> Array:
    return safe_ratio(b.volume, _sma(b, "volume", _p(s, "period")), 1.0)


def _zscore(b: BarArrays, x: str, period: int) -> Array:
    return safe_ratio(getattr(b, x) - _sma(b, x, period), _stddev(b, x, period), 0.0)


def _volume_zscore(b: BarArrays, s: IndicatorSpec) -> Array:
    return _zscore(b, "volume", _p(s, "period"))


def _close_zscore(b: BarArrays, s: IndicatorSpec) -> Array:
    return _zscore(b, "close", _p(s, "period"))


def _log_return(b: BarArrays, s: IndicatorSpec) -> Array:
    lag = _p(s, "lag")
    return _returns(b) if lag == 1 else _lagged_diff(_log_close(b), lag)


def _return_skew(b: BarArrays, s: IndicatorSpec) -> Array:
    return rolling_skew(_returns(b), _p(s, "period"))


def _market(b: BarArrays, s: IndicatorSpec) -> tuple[Array, Array]:
    if b.market_return is None or b.market_level is None:
        raise ValueError(f"{s.name} needs the market index (market_return, market_level)")
    return b.market_return, b.market_level


def _market_correl(b: BarArrays, s: IndicatorSpec) -> Array:
    market_return, _ = _market(b, s)
    ret = _returns(b)
    out = _nan(len(b))
    if len(b) > 1:
        out[1:] = talib.CORREL(ret[1:], market_return[1:], _p(s, "period"))
    return out


def _market_beta(b: BarArrays, s: IndicatorSpec) -> Array:
    """cov(stock, market) / var(market) of one-bar returns: TA-Lib's BETA takes the index first."""
    _, level = _market(b, s)
    return talib.BETA(level, b.close, _p(s, "period"))


def _market_relative_return(b: BarArrays, s: IndicatorSpec) -> Array:
    _, level = _market(b, s)
    lag = _p(s, "lag")
    return _lagged_diff(_log_close(b), lag) - _lagged_diff(np.log(level), lag)


KINDS: MappingProxyType[str, Callable[[BarArrays, IndicatorSpec], Array]] = MappingProxyType(
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
    fn = KINDS.get(spec.kind)
    if fn is None:
        raise KeyError(f"unknown indicator kind {spec.kind!r} ({spec.name})")
    return np.asarray(fn(bars, spec), dtype=np.float64)
