"""The decision core: one bar of the universe in, target weights out.

bar -> model probability -> centred edge and direction -> multi-timeframe confirmation -> regime
-> signal weight -> stops, targets and holding expiry -> correlation penalty and caps -> targets.

``DecisionCore.step`` is called once per bar instant by the backtest engine and by the live
runtime, with the same inputs in the same order, so both make the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trader_runtime.decision import kernels
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.signal import ProbabilityCenter
from trader_runtime.decision.sizing import (
    correlation_penalised,
    penalty_applies,
    shrunk_covariance,
)
from trader_runtime.market.regimes import REGIME_ORDER, Regime

FloatArray = npt.NDArray[np.float64]

BoolArray = npt.NDArray[np.bool_]

_CRASH = REGIME_ORDER.index(Regime.CRASH)


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
    def changed(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(np.isfinite(self.target_weights))


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

    # -- state that only depends on prices ---------------------------------------------------

    def _observe_returns(self, bar_index: int, close: FloatArray) -> None:
        ret = np.log(kernels.return_ratios(close, self._last_close))
        window = self.config.sizing.covariance_window_bars
        self._returns[self._n_returns % window] = ret
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
        cfg = self.config
        signal, sizing = cfg.signal, cfg.sizing
        self._observe_returns(bar.bar_index, bar.close)
        edge = self._center.edge(bar.probability)
        regime = REGIME_ORDER.index(bar.regime)
        direction, ok, has_bar, current, desired, reasons = kernels.signals(
            bar.bar_index,
            bar.close,
            bar.high,
            bar.low,
            edge,
            bar.trends,
            bar.applicable,
            regime,
            _CRASH,
            book.equity_usd,
            book.committed_shares,
            book.position_shares,
            book.avg_entry_usd,
            self._last_close,
            self._side,
            self._expiry,
            self._entry_regime,
            signal.entry_edge,
            signal.allow_short,
            cfg.confirmation.enabled,
            cfg.stops.enabled,
            self._stop_pct,
            self._target_pct,
            signal.holding_bars,
            sizing.base_fraction,
            sizing.regime_multipliers[bar.regime],
            signal.full_confidence_edge,
            signal.max_confidence_multiple,
            sizing.max_position_fraction,
        )
        if bar.regime is Regime.CRASH:
            desired = kernels.no_new_exposure(desired, current)
        elif penalty_applies(current, sizing.correlation_penalty):
            desired = correlation_penalised(
                desired, current, self.covariance(), sizing.correlation_penalty
            )
        final = kernels.capped(
            desired,
            sizing.max_position_fraction,
            sizing.max_net_fraction,
            sizing.max_gross_fraction,
        )
        targets = kernels.targets(
            final,
            current,
            has_bar,
            reasons,
            sizing.max_position_fraction,
            sizing.max_net_fraction,
            sizing.max_gross_fraction,
            sizing.rebalance_min_fraction,
        )
        return Decision(
            target_weights=targets,
            reasons=tuple([kernels.REASONS[r] for r in reasons.tolist()]),
            edge=edge,
            direction=direction,
            confirmed=ok,
            regime=bar.regime,
        )
