"""The decision core: one bar of the universe in, target weights out.

bar -> model probability -> centred edge and direction -> multi-timeframe confirmation -> regime
-> signal weight -> stops, targets and holding expiry -> correlation penalty and caps -> targets.

``DecisionCore.step`` is called once per bar instant by the backtest engine and by the live
runtime, with the same inputs in the same order, so both make the same decisions.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from trader_runtime.decision import kernels
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.sizing import correlation_penalised, shrunk_covariance
from trader_runtime.market.regimes import REGIME_ORDER, Regime

FloatArray = npt.NDArray[np.float64]

BoolArray = npt.NDArray[np.bool_]

_REGIME_CODE = {r: i for i, r in enumerate(REGIME_ORDER)}

# The per-bar records below are NamedTuples, not frozen dataclasses: a frozen dataclass sets each
# field through ``object.__setattr__``, several microseconds per record on a bar's cold path,
# where a tuple is made in one call.


def _settings(config: TradingConfig) -> FloatArray:
    """The settings array of ``kernels.decide`` (``kernels.P_*``, then ``kernels.S_*``)."""
    signal, sizing = config.signal, config.sizing
    params = np.empty(kernels.N_SETTINGS)
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
    params[kernels.P_CENTER_MIN_BARS] = signal.center_min_bars
    stops = config.stops.by_regime
    for r, regime in enumerate(REGIME_ORDER):
        params[kernels.S_MULTIPLIERS + r] = sizing.regime_multipliers[regime]
        params[kernels.S_STOP_PCT + r] = stops[regime].stop_pct
        params[kernels.S_TARGET_PCT + r] = stops[regime].target_pct
    return params


class BarSnapshot(NamedTuple):
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


class PortfolioView(NamedTuple):
    """What the core needs of the book: equity, the shares committed per symbol (position plus
    the unfilled rest of a working target) and the average entry price of each position."""

    equity_usd: float
    committed_shares: FloatArray
    position_shares: FloatArray
    avg_entry_usd: FloatArray


class Decision(NamedTuple):
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
        sizing = config.sizing
        self._returns = np.zeros((sizing.covariance_window_bars, n_symbols))
        self._n_returns = 0
        self._covariance: FloatArray | None = None
        self._covariance_window: FloatArray | None = None  # returns at the last refresh
        # the per-symbol state of ``kernels.decide`` (``kernels.F_*`` and ``kernels.I_*`` rows)
        # and the probability centring's ring buffer (window x n)
        self._state = np.zeros((kernels.N_FLOAT_ROWS, n_symbols))
        self._state[kernels.F_LAST_CLOSE] = np.nan
        self._counters = np.zeros((kernels.N_INT_ROWS, n_symbols), dtype=np.int64)
        self._counters[kernels.I_ENTRY_REGIME] = REGIME_ORDER.index(Regime.RANGING)
        self._center_values = np.zeros((config.signal.center_window_bars, n_symbols))
        self._settings = _settings(config)

    # -- state that only depends on prices ---------------------------------------------------

    def _returns_observed(self, bar_index: int) -> None:
        """After ``kernels.decide`` took the bar's returns: count them, and keep the window for
        the covariance when a refresh is due."""
        self._n_returns += 1
        sizing = self.config.sizing
        if (
            self._n_returns >= sizing.covariance_min_bars
            and bar_index % sizing.covariance_refresh_bars == 0
        ):
            filled = min(self._n_returns, sizing.covariance_window_bars)
            self._covariance_window = self._returns[:filled].copy()
            self._covariance = None

    def covariance(self) -> FloatArray | None:
        """The shrunk covariance of the returns window at the last refresh (None before one)."""
        if self._covariance is None and self._covariance_window is not None:
            self._covariance = shrunk_covariance(self._covariance_window)
        return self._covariance

    # -- one bar -----------------------------------------------------------------------------

    def step(self, bar: BarSnapshot, book: PortfolioView) -> Decision:
        state = self._state
        edge, direction, ok, targets, reasons, done = kernels.decide(
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
            state,
            self._counters,
            self._center_values,
            self._returns,
            self._n_returns % self.config.sizing.covariance_window_bars,
            self._settings,
        )
        self._returns_observed(bar.bar_index)
        if not done:
            current = state[kernels.F_CURRENT]
            desired = state[kernels.F_DESIRED]
            covariance = self.covariance()
            if covariance is not None:
                desired = correlation_penalised(
                    desired, current, covariance, self.config.sizing.correlation_penalty
                )
            has_bar = np.isfinite(bar.close)
            targets = kernels.finish(desired, current, has_bar, reasons, self._settings)
        return Decision(
            target_weights=targets,
            reasons=tuple([kernels.REASONS[r] for r in reasons.tolist()]),
            edge=edge,
            direction=direction,
            confirmed=ok,
            regime=bar.regime,
        )
