"""A seeded, regime-switching synthetic US-equity market of one-minute bars.

The market is a one-factor model: every symbol's minute log return is ``beta * f + idio``, where
the market factor ``f`` follows a hidden regime (bull, bear, volatile, ranging, crash) that switches
once per session by a Markov chain. Both the factor and the idiosyncratic noise carry a U-shaped
intraday volatility profile and a stochastic log-volatility AR(1), so volatility clusters. Each
session opens with an overnight gap. With ``signal_strength > 0`` every symbol's returns get a
planted, exactly known momentum component that a model can learn; ``0.0`` is the null market.

Bars cover regular trading hours of the real NYSE calendar (holidays and early closes included)
and are stamped at bar close, UTC.

Determinism: everything is a function of the config, the request's ``start`` date and, for
symbol-specific parts, the symbol. The regime path and the market factor never depend on the
symbol, so symbols generated separately share one market. All random draws are consumed in time
order, so extending ``end`` leaves earlier bars unchanged; a different ``start`` is a different
realisation of the same market model.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy.signal import lfilter

from trader_runtime.errors import ConfigError, DataSourceError, UnknownSymbolError
from trader_runtime.market.bars import conform, empty_bars
from trader_runtime.market.calendar import TradingCalendar

# re-exported (``as``): the regimes moved to trader_runtime.market.regimes; REGIME_ORDER is also the
# order of ``regime_params``, the rows/columns of ``transition_matrix`` and ``start_regime_probs``
from trader_runtime.market.regimes import REGIME_ORDER as REGIME_ORDER
from trader_runtime.market.regimes import Regime as Regime
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SESSIONS_PER_YEAR = 252
MINUTES_PER_FULL_SESSION = 390
MINUTES_PER_YEAR = SESSIONS_PER_YEAR * MINUTES_PER_FULL_SESSION
_MINUTE_US = 60_000_000
_ROW_SUM_TOLERANCE = 1e-9
_MAX_SIGNAL_STRENGTH = 0.5
_MARKET_CACHE_SIZE = 4

# Domains and stream ids of the seed sequences; changing any of them changes every market.
_MARKET_DOMAIN = 0x4D4B54
_SYMBOL_DOMAIN = 0x53594D
_REGIME_STREAM = 1
_FACTOR_NOISE_STREAM = 2
_FACTOR_LOG_VOL_STREAM = 3
_FACTOR_GAP_STREAM = 4
_SYMBOL_PARAMS_STREAM = 11
_IDIO_NOISE_STREAM = 12
_IDIO_LOG_VOL_STREAM = 13
_IDIO_GAP_STREAM = 14
_HIGH_STREAM = 15
_LOW_STREAM = 16
_VOLUME_STREAM = 17


def _require_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")


def _require_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigError(f"{name} must be a positive finite number, got {value}")


def _require_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ConfigError(f"{name} must be a non-negative finite number, got {value}")


def _require_distribution(name: str, probs: tuple[float, ...]) -> None:
    if any(not (math.isfinite(p) and p >= 0.0) for p in probs):
        raise ConfigError(f"{name} must hold non-negative finite probabilities, got {probs}")
    total = math.fsum(probs)
    if abs(total - 1.0) > _ROW_SUM_TOLERANCE:
        raise ConfigError(f"{name} must sum to 1 (within {_ROW_SUM_TOLERANCE}), got {total}")


def _require_range(name: str, bounds: tuple[float, float], *, positive: bool) -> None:
    if len(bounds) != 2:
        raise ConfigError(f"{name} must be a (low, high) pair, got {bounds}")
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{name} must be finite with low <= high, got {bounds}")
    if positive and low <= 0.0:
        raise ConfigError(f"{name} must be positive, got {bounds}")
    if not positive and low < 0.0:
        raise ConfigError(f"{name} must be non-negative, got {bounds}")


@dataclass(frozen=True, slots=True)
class RegimeParams:
    """Behaviour of the market while in one regime.

    ``drift_annual`` and ``vol_annual`` are the annualised log drift and volatility of the market
    factor (252 sessions of 390 minutes a year). ``mean_reversion_per_minute`` pulls the factor's
    log level back towards its running mean (fraction of the deviation removed per minute, 0 = a
    random walk). ``idio_vol_multiplier`` scales every symbol's idiosyncratic volatility and
    ``volume_multiplier`` every symbol's volume.
    """

    drift_annual: float
    vol_annual: float
    mean_reversion_per_minute: float = 0.0
    idio_vol_multiplier: float = 1.0
    volume_multiplier: float = 1.0

    def __post_init__(self) -> None:
        _require_finite("drift_annual", self.drift_annual)
        _require_positive("vol_annual", self.vol_annual)
        if not 0.0 <= self.mean_reversion_per_minute < 1.0:
            raise ConfigError(
                f"mean_reversion_per_minute must be in [0, 1), got {self.mean_reversion_per_minute}"
            )
        _require_positive("idio_vol_multiplier", self.idio_vol_multiplier)
        _require_positive("volume_multiplier", self.volume_multiplier)


DEFAULT_REGIME_PARAMS: tuple[RegimeParams, ...] = (
    RegimeParams(drift_annual=0.30, vol_annual=0.12),
    RegimeParams(
        drift_annual=-0.25, vol_annual=0.22, idio_vol_multiplier=1.2, volume_multiplier=1.3
    ),
    RegimeParams(drift_annual=0.0, vol_annual=0.35, idio_vol_multiplier=1.5, volume_multiplier=1.6),
    RegimeParams(
        drift_annual=0.02, vol_annual=0.10, mean_reversion_per_minute=0.002, volume_multiplier=0.8
    ),
    RegimeParams(
        drift_annual=-5.0, vol_annual=0.70, idio_vol_multiplier=2.0, volume_multiplier=3.0
    ),
)
"""Defaults in ``REGIME_ORDER``: bull, bear, volatile, ranging, crash."""

DEFAULT_TRANSITION_MATRIX: tuple[tuple[float, ...], ...] = (
    # to:  bull   bear   volat. rang.  crash
    (0.975, 0.005, 0.009, 0.010, 0.001),  # from bull: expected duration 40 sessions
    (0.012, 0.950, 0.020, 0.012, 0.006),  # from bear: 20 sessions
    (0.030, 0.030, 0.900, 0.028, 0.012),  # from volatile: 10 sessions
    (0.025, 0.010, 0.012, 0.950, 0.003),  # from ranging: 20 sessions
    (0.030, 0.100, 0.170, 0.030, 0.670),  # from crash: ~3 sessions
)
"""Daily regime transition probabilities, rows = from, columns = to, in ``REGIME_ORDER``."""


@dataclass(frozen=True, slots=True)
class SyntheticMarketConfig:
    """Every knob of the synthetic market. Ranges are ``(low, high)``; symbol values are drawn
    log-uniformly in positive ranges (prices, volumes, vols) and uniformly in the loading range.

    ``start_regime_probs=None`` starts the chain from the stationary distribution of
    ``transition_matrix``. ``stoch_vol_persistence`` is the per-minute AR(1) coefficient of log
    volatility and ``vol_of_vol`` its stationary standard deviation. The overnight gap's standard
    deviation is ``overnight_gap_vol_ratio`` times one session's volatility. Intraday profiles are
    ``1 + open_boost * exp(-minutes_since_open / decay) + close_boost * exp(-minutes_to_close /
    decay)``, normalised per session. ``bar_range_scale`` is the mean excursion of high above
    ``max(open, close)`` (and of low below ``min(open, close)``) in units of the bar's volatility.
    """

    seed: int = 7
    signal_strength: float = 0.0
    signal_lookback_bars: int = 15
    regime_params: tuple[RegimeParams, ...] = DEFAULT_REGIME_PARAMS
    transition_matrix: tuple[tuple[float, ...], ...] = DEFAULT_TRANSITION_MATRIX
    start_regime_probs: tuple[float, ...] | None = None
    factor_loading_range: tuple[float, float] = (0.6, 1.4)
    idio_vol_annual_range: tuple[float, float] = (0.06, 0.20)
    start_price_range: tuple[float, float] = (10.0, 500.0)
    base_volume_shares_range: tuple[float, float] = (5e5, 2e7)
    stoch_vol_persistence: float = 0.98
    vol_of_vol: float = 0.5
    overnight_gap_vol_ratio: float = 0.5
    intraday_vol_open_boost: float = 1.5
    intraday_vol_close_boost: float = 0.5
    intraday_volume_open_boost: float = 2.0
    intraday_volume_close_boost: float = 2.5
    intraday_decay_minutes: float = 20.0
    volume_return_sensitivity: float = 0.5
    volume_noise_sigma: float = 0.4
    mean_trade_size_shares: float = 100.0
    bar_range_scale: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative int, got {self.seed!r}")
        if not 0.0 <= self.signal_strength < _MAX_SIGNAL_STRENGTH:
            raise ConfigError(
                f"signal_strength must be in [0, {_MAX_SIGNAL_STRENGTH}), "
                f"got {self.signal_strength}"
            )
        if self.signal_lookback_bars < 1:
            raise ConfigError(f"signal_lookback_bars must be >= 1, got {self.signal_lookback_bars}")
        n = len(REGIME_ORDER)
        if len(self.regime_params) != n:
            raise ConfigError(
                f"regime_params needs {n} entries (one per regime, in order "
                f"{[r.value for r in REGIME_ORDER]}), got {len(self.regime_params)}"
            )
        if len(self.transition_matrix) != n or any(len(row) != n for row in self.transition_matrix):
            raise ConfigError(f"transition_matrix must be {n}x{n}")
        for regime, row in zip(REGIME_ORDER, self.transition_matrix, strict=True):
            _require_distribution(f"transition_matrix row {regime.value!r}", row)
        if self.start_regime_probs is not None:
            if len(self.start_regime_probs) != n:
                raise ConfigError(f"start_regime_probs needs {n} entries")
            _require_distribution("start_regime_probs", self.start_regime_probs)
        _require_range("factor_loading_range", self.factor_loading_range, positive=False)
        _require_range("idio_vol_annual_range", self.idio_vol_annual_range, positive=True)
        _require_range("start_price_range", self.start_price_range, positive=True)
        _require_range("base_volume_shares_range", self.base_volume_shares_range, positive=True)
        if not 0.0 <= self.stoch_vol_persistence < 1.0:
            raise ConfigError(
                f"stoch_vol_persistence must be in [0, 1), got {self.stoch_vol_persistence}"
            )
        for name in (
            "vol_of_vol",
            "overnight_gap_vol_ratio",
            "intraday_vol_open_boost",
            "intraday_vol_close_boost",
            "intraday_volume_open_boost",
            "intraday_volume_close_boost",
            "volume_return_sensitivity",
            "volume_noise_sigma",
            "bar_range_scale",
        ):
            _require_non_negative(name, getattr(self, name))
        _require_positive("intraday_decay_minutes", self.intraday_decay_minutes)
        _require_positive("mean_trade_size_shares", self.mean_trade_size_shares)

    def params_for(self, regime: Regime) -> RegimeParams:
        """The parameters of one regime."""
        return self.regime_params[REGIME_ORDER.index(regime)]

    def start_distribution(self) -> FloatArray:
        """Probabilities of the first session's regime, in ``REGIME_ORDER``."""
        if self.start_regime_probs is not None:
            return np.asarray(self.start_regime_probs, dtype=np.float64)
        return stationary_distribution(self.transition_matrix)


def stationary_distribution(transition_matrix: tuple[tuple[float, ...], ...]) -> FloatArray:
    """The stationary distribution ``pi = pi @ P`` of a row-stochastic matrix (least squares)."""
    p = np.asarray(transition_matrix, dtype=np.float64)
    n = p.shape[0]
    system = np.vstack([p.T - np.eye(n), np.ones((1, n))])
    rhs = np.concatenate([np.zeros(n), [1.0]])
    pi, *_ = np.linalg.lstsq(system, rhs, rcond=None)
    pi = np.clip(pi, 0.0, None)
    return np.asarray(pi / pi.sum(), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Market:
    """The symbol-independent part of one (start, end) window: calendar, regimes, factor."""

    ts: pl.Series
    regime_codes: IntArray  # per minute, index into REGIME_ORDER
    first_of_session: npt.NDArray[np.bool_]  # per minute
    session_index: IntArray  # per minute
    vol_profile: FloatArray  # per minute, mean square 1 within each session
    volume_profile: FloatArray  # per minute, mean 1 within each session
    factor_return: FloatArray  # per minute log return, open to close of the bar
    factor_vol: FloatArray  # per minute instantaneous standard deviation of factor_return
    factor_gap: FloatArray  # per minute, the overnight log gap at first bars, else 0
    session_regime_codes: IntArray  # per session


@dataclass(frozen=True, slots=True)
class _SymbolPath:
    """One symbol's simulated minutes."""

    market: _Market
    log_return: FloatArray  # r_t: open-to-close log return of each bar
    planted: FloatArray  # r_t - eps_t: the predictable momentum part
    bars: pl.DataFrame


class SyntheticSource:
    """A :class:`~trader_runtime.sources.base.MarketDataSource` of synthetic one-minute bars.

    Every non-empty symbol exists. ``true_regimes`` and ``planted_signal`` expose the hidden truth
    so that regime detectors and models can be scored against it.
    """

    def __init__(self, config: SyntheticMarketConfig | None = None) -> None:
        self._config = config if config is not None else SyntheticMarketConfig()
        self._markets: dict[tuple[date, date], _Market] = {}

    @property
    def config(self) -> SyntheticMarketConfig:
        return self._config

    @property
    def name(self) -> str:
        return "synthetic"

    @property
    def base_timeframe(self) -> Timeframe:
        return Timeframe.M1

    def has_symbol(self, symbol: str) -> bool:
        return bool(symbol)

    def load(self, request: BarRequest) -> pl.DataFrame:
        """One-minute bars of ``request.symbol`` for the sessions in [start, end], sorted by ts."""
        return self._simulate(request).bars

    def true_regimes(self, start: date, end: date) -> pl.DataFrame:
        """The hidden regime of every one-minute bar: columns ``ts`` (bar close, UTC), ``regime``.

        It is the same for every symbol and matches ``load`` for requests starting at ``start``.
        """
        market = self._market(start, end)
        names = np.array([r.value for r in REGIME_ORDER], dtype=object)
        return pl.DataFrame(
            {
                "ts": market.ts,
                "regime": pl.Series("regime", names[market.regime_codes], dtype=pl.String()),
            }
        )

    def planted_signal(self, request: BarRequest) -> pl.DataFrame:
        """Columns ``ts`` and ``expected_return``: the predictable part of each bar's log return
        ``log(close / open)``, known from the previous ``signal_lookback_bars`` returns. All zeros
        for the null market (``signal_strength == 0``)."""
        path = self._simulate(request)
        return pl.DataFrame(
            {
                "ts": path.market.ts,
                "expected_return": pl.Series("expected_return", path.planted, dtype=pl.Float64()),
            }
        )

    # -- simulation ---------------------------------------------------------------------------

    def _market(self, start: date, end: date) -> _Market:
        key = (start, end)
        cached = self._markets.get(key)
        if cached is not None:
            return cached
        market = _simulate_market(self._config, start, end)
        if len(self._markets) >= _MARKET_CACHE_SIZE:
            self._markets.pop(next(iter(self._markets)))
        self._markets[key] = market
        return market

    def _simulate(self, request: BarRequest) -> _SymbolPath:
        if not self.has_symbol(request.symbol):
            raise UnknownSymbolError("the synthetic source needs a non-empty symbol")
        market = self._market(request.start, request.end)
        return _simulate_symbol(self._config, market, request.symbol, request.start)


def _simulate_market(config: SyntheticMarketConfig, start: date, end: date) -> _Market:
    calendar = TradingCalendar(start, end)
    schedule = calendar.schedule()
    ts = calendar.minute_bar_closes()
    opens_us = schedule["open_ts"].dt.epoch("us").to_numpy().astype(np.int64)
    closes_us = schedule["close_ts"].dt.epoch("us").to_numpy().astype(np.int64)
    counts = ((closes_us - opens_us) // _MINUTE_US).astype(np.int64)
    n_sessions = int(counts.size)
    n_minutes = int(counts.sum())
    if n_minutes != ts.len():
        raise DataSourceError("calendar minute closes disagree with its schedule")

    session_index = np.repeat(np.arange(n_sessions, dtype=np.int64), counts)
    session_first = np.cumsum(counts) - counts
    minutes_since_open = np.arange(n_minutes, dtype=np.int64) - session_first[session_index]
    minutes_to_close = counts[session_index] - 1 - minutes_since_open
    first_of_session = minutes_since_open == 0

    decay = config.intraday_decay_minutes
    open_weight = np.exp(-minutes_since_open / decay)
    close_weight = np.exp(-minutes_to_close / decay)
    vol_shape = (
        1.0
        + config.intraday_vol_open_boost * open_weight
        + config.intraday_vol_close_boost * close_weight
    )
    vol_profile = vol_shape / np.sqrt(_session_mean(vol_shape**2, session_index, counts))
    volume_shape = (
        1.0
        + config.intraday_volume_open_boost * open_weight
        + config.intraday_volume_close_boost * close_weight
    )
    volume_profile = volume_shape / _session_mean(volume_shape, session_index, counts)

    seed_key = (config.seed, _MARKET_DOMAIN, start.toordinal())
    session_codes = _regime_path(config, n_sessions, _rng(*seed_key, _REGIME_STREAM))
    regime_codes = session_codes[session_index]

    drift_annual = np.array([p.drift_annual for p in config.regime_params], dtype=np.float64)
    vol_annual = np.array([p.vol_annual for p in config.regime_params], dtype=np.float64)
    reversion = np.array(
        [p.mean_reversion_per_minute for p in config.regime_params], dtype=np.float64
    )

    log_vol = _log_vol_multiplier(config, n_minutes, _rng(*seed_key, _FACTOR_LOG_VOL_STREAM))
    factor_vol = vol_annual[regime_codes] / math.sqrt(MINUTES_PER_YEAR) * vol_profile * log_vol
    noise = _rng(*seed_key, _FACTOR_NOISE_STREAM).standard_normal(n_minutes)
    factor_return = drift_annual[regime_codes] / MINUTES_PER_YEAR + factor_vol * noise
    factor_return = _apply_mean_reversion(factor_return, reversion[regime_codes])

    gap_vol = (
        config.overnight_gap_vol_ratio * vol_annual[session_codes] / math.sqrt(SESSIONS_PER_YEAR)
    )
    session_gap = gap_vol * _rng(*seed_key, _FACTOR_GAP_STREAM).standard_normal(n_sessions)
    factor_gap = np.zeros(n_minutes, dtype=np.float64)
    factor_gap[session_first] = session_gap

    return _Market(
        ts=ts,
        regime_codes=regime_codes,
        first_of_session=first_of_session,
        session_index=session_index,
        vol_profile=vol_profile,
        volume_profile=volume_profile,
        factor_return=factor_return,
        factor_vol=factor_vol,
        factor_gap=factor_gap,
        session_regime_codes=session_codes,
    )


def _simulate_symbol(
    config: SyntheticMarketConfig, market: _Market, symbol: str, start: date
) -> _SymbolPath:
    n = int(market.factor_return.size)
    if n == 0:
        empty = np.zeros(0, dtype=np.float64)
        return _SymbolPath(market, empty, empty, conform(empty_bars(), symbol=symbol))

    seed_key = (config.seed, _SYMBOL_DOMAIN, zlib.crc32(symbol.encode("utf-8")), start.toordinal())
    u = _rng(*seed_key, _SYMBOL_PARAMS_STREAM).random(4)
    beta = _uniform(config.factor_loading_range, u[0])
    idio_vol_annual = _log_uniform(config.idio_vol_annual_range, u[1])
    start_price = _log_uniform(config.start_price_range, u[2])
    base_volume_shares = _log_uniform(config.base_volume_shares_range, u[3])

    idio_mult = np.array([p.idio_vol_multiplier for p in config.regime_params], dtype=np.float64)
    volume_mult = np.array([p.volume_multiplier for p in config.regime_params], dtype=np.float64)
    vol_annual = np.array([p.vol_annual for p in config.regime_params], dtype=np.float64)

    idio_scale = idio_vol_annual * idio_mult[market.regime_codes]
    log_vol = _log_vol_multiplier(config, n, _rng(*seed_key, _IDIO_LOG_VOL_STREAM))
    idio_vol = idio_scale / math.sqrt(MINUTES_PER_YEAR) * market.vol_profile * log_vol
    eps = beta * market.factor_return + idio_vol * _rng(
        *seed_key, _IDIO_NOISE_STREAM
    ).standard_normal(n)

    s = config.signal_strength
    if s > 0.0:
        lookback = config.signal_lookback_bars
        denominator = np.concatenate([[1.0], np.full(lookback, -s / lookback)])
        log_return = np.asarray(lfilter([1.0], denominator, eps), dtype=np.float64)
        planted = log_return - eps
    else:
        log_return = eps
        planted = np.zeros(n, dtype=np.float64)

    n_sessions = int(market.session_regime_codes.size)
    idio_gap_vol = (
        config.overnight_gap_vol_ratio
        * idio_vol_annual
        * idio_mult[market.session_regime_codes]
        / math.sqrt(SESSIONS_PER_YEAR)
    )
    idio_gap = np.zeros(n, dtype=np.float64)
    idio_gap[market.first_of_session] = idio_gap_vol * _rng(
        *seed_key, _IDIO_GAP_STREAM
    ).standard_normal(n_sessions)
    gap = beta * market.factor_gap + idio_gap

    log_close = math.log(start_price) + np.cumsum(gap + log_return)
    log_open = log_close - log_return
    bar_vol = np.sqrt((beta * market.factor_vol) ** 2 + idio_vol**2)
    scale = config.bar_range_scale
    up = scale * bar_vol * _rng(*seed_key, _HIGH_STREAM).standard_exponential(n)
    down = scale * bar_vol * _rng(*seed_key, _LOW_STREAM).standard_exponential(n)
    log_high = np.maximum(log_open, log_close) + up
    log_low = np.minimum(log_open, log_close) - down
    open_ = np.exp(log_open)
    close = np.exp(log_close)
    high = np.maximum(np.exp(log_high), np.maximum(open_, close))
    low = np.minimum(np.exp(log_low), np.minimum(open_, close))

    # Volume reacts to the size of the move relative to the symbol's typical minute volatility.
    typical_factor_vol_annual = math.sqrt(
        float(stationary_distribution(config.transition_matrix) @ vol_annual**2)
    )
    typical_minute_vol = math.sqrt(
        (beta * typical_factor_vol_annual) ** 2 + idio_vol_annual**2
    ) / math.sqrt(MINUTES_PER_YEAR)
    sigma = config.volume_noise_sigma
    volume_noise = np.exp(
        sigma * _rng(*seed_key, _VOLUME_STREAM).standard_normal(n) - 0.5 * sigma**2
    )
    volume = (
        base_volume_shares
        / MINUTES_PER_FULL_SESSION
        * volume_mult[market.regime_codes]
        * market.volume_profile
        * (1.0 + config.volume_return_sensitivity * np.abs(log_return) / typical_minute_vol)
        * volume_noise
    )
    volume = np.maximum(np.round(volume), 1.0)
    trade_count = np.maximum(np.round(volume / config.mean_trade_size_shares), 1.0).astype(np.int64)

    bars = pl.DataFrame(
        {
            "ts": market.ts,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": (high + low + close) / 3.0,
            "trade_count": trade_count,
        }
    )
    return _SymbolPath(market, log_return, planted, conform(bars, symbol=symbol))


# -- helpers ----------------------------------------------------------------------------------


def _rng(*key: int) -> np.random.Generator:
    """A generator for one stream; each array is drawn from its own stream so that drawing more
    (a later ``end``) only appends values."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def _regime_path(
    config: SyntheticMarketConfig, n_sessions: int, rng: np.random.Generator
) -> IntArray:
    codes = np.zeros(n_sessions, dtype=np.int64)
    if n_sessions == 0:
        return codes
    u = rng.random(n_sessions)
    cumulative = np.cumsum(np.asarray(config.transition_matrix, dtype=np.float64), axis=1)
    start_cumulative = np.cumsum(config.start_distribution())
    last = len(REGIME_ORDER) - 1
    state = min(int(np.searchsorted(start_cumulative, u[0], side="right")), last)
    codes[0] = state
    for k in range(1, n_sessions):  # one step per session, not per minute
        state = min(int(np.searchsorted(cumulative[state], u[k], side="right")), last)
        codes[k] = state
    return codes


def _log_vol_multiplier(
    config: SyntheticMarketConfig, n: int, rng: np.random.Generator
) -> FloatArray:
    """``exp(h_t - vol_of_vol**2)`` with ``h`` a stationary AR(1) of std ``vol_of_vol``, so the
    multiplier has mean square 1."""
    phi = config.stoch_vol_persistence
    std = config.vol_of_vol
    shocks = rng.standard_normal(n + 1)
    innovation_std = std * math.sqrt(1.0 - phi**2)
    h_initial = std * shocks[0]
    h, _ = lfilter([innovation_std], [1.0, -phi], shocks[1:], zi=[phi * h_initial])
    return np.asarray(np.exp(np.asarray(h, dtype=np.float64) - std**2), dtype=np.float64)


def _apply_mean_reversion(returns: FloatArray, reversion: FloatArray) -> FloatArray:
    """Turn the returns of minutes with ``reversion > 0`` into increments of an AR(1) level
    ``x_t = (1 - k) x_{t-1} + e_t`` (one process over those minutes, in time order)."""
    mask = reversion > 0.0
    if not mask.any():
        return returns
    out = returns.copy()
    for k in np.unique(reversion[mask]):  # one pass per distinct strength (normally one)
        sel = reversion == k
        level = np.asarray(lfilter([1.0], [1.0, -(1.0 - k)], returns[sel]), dtype=np.float64)
        out[sel] = np.diff(level, prepend=0.0)
    return out


def _session_mean(values: FloatArray, session_index: IntArray, counts: IntArray) -> FloatArray:
    sums = np.bincount(session_index, weights=values, minlength=counts.size)
    return np.asarray((sums / np.maximum(counts, 1))[session_index], dtype=np.float64)


def _uniform(bounds: tuple[float, float], u: float) -> float:
    low, high = bounds
    return float(low + (high - low) * u)


def _log_uniform(bounds: tuple[float, float], u: float) -> float:
    low, high = bounds
    return float(math.exp(math.log(low) + (math.log(high) - math.log(low)) * u))
