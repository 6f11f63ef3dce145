"""The decision core: one bar of the universe in, target weights out.

bar -> model probability -> centred edge and direction -> multi-timeframe confirmation -> regime
-> signal weight -> stops, targets and holding expiry -> correlation penalty and caps -> targets.

``DecisionCore.step`` is called once per bar instant by the backtest engine and by the live
runtime, with the same inputs in the same order, so both make the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trader_runtime.decision import kernels
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.signal import ProbabilityCenter
from trader_runtime.decision.sizing import correlation_penalised, shrunk_covariance
from trader_runtime.market.regimes import REGIME_ORDER, Regime

FloatArray = npt.NDArray[np.float64]

BoolArray = npt.NDArray[np.bool_]

_REGIME_CODE = {r: i for i, r in enumerate(REGIME_ORDER)}


def _params(config: TradingConfig) -> FloatArray:
    """The settings array of ``kernels.decide`` (``kernels.P_*``)."""
    signal, sizing = config.signal, config.sizing
    params = np.empty(kernels.N_PARAMS)
    params[kernels.P_ENTRY_EDGE] = signal.entry_edge
    params[kernels.P_ALLOW_SHORT] = signal.allow_short
    params[kernels.P_CONFIRM] = config.confirmation.enabled
    params[kernels.P_STOPS] = config.stops.enabled
    params[kernels.P_HOLDING_BARS] = signal.holding_bars
    params[kernels.P_BASE_FRACTION] = sizing.base_fraction
    params[kernels.P_FULL_EDGE] = signal.full_confidence_edge
    params[kernels.P_MAX_MULTIPLE] = signal.max_confidence_multiple
    params[kernels.P_CAP] = sizing.max_position_fraction
    params[kernels.P_MAX_NET] = sizing.max_net_fraction
    params[kernels.P_MAX_GROSS] = sizing.max_gross_fraction
    params[kernels.P_BAND] = sizing.rebalance_min_fraction
    params[kernels.P_PENALTY] = sizing.correlation_penalty
    return params


@dataclass(frozen=True, slots=True)
class BarSnapshot:
    """One bar instant across the universe (arrays over symbols; NaN = no bar or no value).

    ``trends`` and ``applicable`` are ``(n_symbols, n_confirmation_timeframes)``."""

    bar_index: int
    close: FloatArray
    high: FloatArray
    low: FloatArray
    probability: FloatArray
    trends: FloatArray
    applicable: BoolArray
    regime: Regime


@dataclass(frozen=True, slots=True)
class PortfolioView:
    """What the core needs of the book: equity, the shares committed per symbol (position plus
    the unfilled rest of a working target) and the average entry price of each position."""

    equity_usd: float
    committed_shares: FloatArray
    position_shares: FloatArray
    avg_entry_usd: FloatArray


@dataclass(frozen=True, slots=True)
class Decision:
    """Targets of one bar: a weight where something changes (NaN elsewhere) and why."""

    target_weights: FloatArray
    reasons: tuple[str | None, ...]
    edge: FloatArray
    direction: FloatArray
    confirmed: BoolArray
    regime: Regime

    @property
    def changed(self) -> list[tuple[int, float]]:
        """(symbol index, target weight) where something changes, as Python numbers (one
        conversion of the weights, no NumPy call per symbol)."""
        return [(j, w) for j, w in enumerate(self.target_weights.tolist()) if math.isfinite(w)]


class DecisionCore:
    """Stateful per universe: probability centring, covariance of recent returns, and each
    position's side, holding expiry and regime at entry. Bounded memory.

    The per-bar loops are compiled (``decision.kernels``); the Ledoit-Wolf covariance is taken
    of the returns window as it stood at each refresh, and only when the correlation penalty
    needs it (never with one symbol or an empty book)."""

    def __init__(self, n_symbols: int, config: TradingConfig) -> None:
        self.config = config
        self.n = n_symbols
        self._center = ProbabilityCenter(n_symbols, config.signal)
        sizing = config.sizing
        self._returns = np.zeros((sizing.covariance_window_bars, n_symbols))
        self._n_returns = 0
        self._last_close = np.full(n_symbols, np.nan)
        self._covariance: FloatArray | None = None
        self._covariance_window: FloatArray | None = None  # returns at the last refresh
        self._side = np.zeros(n_symbols)
        self._expiry = np.zeros(n_symbols, dtype=np.int64)
        self._entry_regime = np.full(n_symbols, REGIME_ORDER.index(Regime.RANGING), dtype=np.int64)
        stops = config.stops.by_regime
        self._stop_pct = np.array([stops[r].stop_pct for r in REGIME_ORDER])
        self._target_pct = np.array([stops[r].target_pct for r in REGIME_ORDER])
        self._multipliers = np.array([sizing.regime_multipliers[r] for r in REGIME_ORDER])
        self._params = _params(config)

    # -- state that only depends on prices ---------------------------------------------------

    def _observe_returns(self, bar_index: int, close: FloatArray) -> None:
        window = self.config.sizing.covariance_window_bars
        kernels.observe_returns(close, self._last_close, self._returns, self._n_returns % window)
        self._n_returns += 1
        sizing = self.config.sizing
        if (
            self._n_returns >= sizing.covariance_min_bars
            and bar_index % sizing.covariance_refresh_bars == 0
        ):
            filled = min(self._n_returns, window)
            self._covariance_window = self._returns[:filled].copy()
            self._covariance = None

    def covariance(self) -> FloatArray | None:
        """The shrunk covariance of the returns window at the last refresh (None before one)."""
        if self._covariance is None and self._covariance_window is not None:
            self._covariance = shrunk_covariance(self._covariance_window)
        return self._covariance

    # -- one bar -----------------------------------------------------------------------------

    def step(self, bar: BarSnapshot, book: PortfolioView) -> Decision:
        self._observe_returns(bar.bar_index, bar.close)
        center = self._center
        edge, direction, ok, has_bar, current, desired, reasons, targets, done = kernels.decide(
            bar.bar_index,
            bar.close,
            bar.high,
            bar.low,
            np.asarray(bar.probability, dtype=np.float64),
            bar.trends,
            bar.applicable,
            _REGIME_CODE[bar.regime],
            book.equity_usd,
            book.committed_shares,
            book.position_shares,
            book.avg_entry_usd,
            self._last_close,
            center.values,
            center.count,
            center.total,
            center.slot,
            center.min_bars,
            self._side,
            self._expiry,
            self._entry_regime,
            self._params,
            self._multipliers,
            self._stop_pct,
            self._target_pct,
        )
        if not done:
            covariance = self.covariance()
            if covariance is not None:
                desired = correlation_penalised(
                    desired, current, covariance, self.config.sizing.correlation_penalty
                )
            targets = kernels.finish(desired, current, has_bar, reasons, self._params)
        return Decision(
            target_weights=targets,
            reasons=tuple([kernels.REASONS[r] for r in reasons.tolist()]),
            edge=edge,
            direction=direction,
            confirmed=ok,
            regime=bar.regime,
        )
