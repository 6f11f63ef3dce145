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

from trader_runtime.decision.arrays import finite_or_zero
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.signal import (
    ProbabilityCenter,
    confidence_scale,
    confirmed,
    directions,
)
from trader_runtime.decision.sizing import shrunk_covariance, signal_weights, size_weights
from trader_runtime.decision.stops import exit_reason, stop_target_prices
from trader_runtime.market.regimes import Regime

FloatArray = npt.NDArray[np.float64]

BoolArray = npt.NDArray[np.bool_]


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
    position's side, holding expiry and regime at entry. Bounded memory."""

    def __init__(self, n_symbols: int, config: TradingConfig) -> None:
        self.config = config
        self.n = n_symbols
        self._center = ProbabilityCenter(n_symbols, config.signal)
        sizing = config.sizing
        self._returns = np.zeros((sizing.covariance_window_bars, n_symbols))
        self._n_returns = 0
        self._last_close = np.full(n_symbols, np.nan)
        self._covariance: FloatArray | None = None
        self._side = np.zeros(n_symbols)
        self._expiry = np.zeros(n_symbols, dtype=np.int64)
        self._entry_regime: list[Regime] = [Regime.RANGING] * n_symbols

    # -- state that only depends on prices ---------------------------------------------------

    def _observe_returns(self, bar_index: int, close: FloatArray) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            ret = np.log(close / self._last_close)
        ret = np.where(np.isfinite(ret), ret, 0.0)
        window = self.config.sizing.covariance_window_bars
        self._returns[self._n_returns % window] = ret
        self._n_returns += 1
        self._last_close = np.where(np.isfinite(close), close, self._last_close)
        sizing = self.config.sizing
        if (
            self._n_returns >= sizing.covariance_min_bars
            and bar_index % sizing.covariance_refresh_bars == 0
        ):
            filled = min(self._n_returns, window)
            self._covariance = shrunk_covariance(self._returns[:filled])

    # -- one bar -----------------------------------------------------------------------------

    def step(self, bar: BarSnapshot, book: PortfolioView) -> Decision:
        cfg = self.config
        self._observe_returns(bar.bar_index, bar.close)
        edge = self._center.edge(bar.probability)
        direction = directions(edge, cfg.signal)
        ok = (
            confirmed(direction, bar.trends, bar.applicable)
            if cfg.confirmation.enabled
            else direction != 0.0
        )
        has_bar = np.isfinite(bar.close)
        price = np.where(has_bar, bar.close, self._last_close)
        equity = book.equity_usd
        with np.errstate(invalid="ignore"):
            current = finite_or_zero(book.committed_shares * price / equity)
        desired = current.copy()
        reasons: list[str | None] = [None] * self.n
        blocked = np.zeros(self.n, dtype=bool)  # exited this bar: no re-entry on the same bar
        position_side = np.sign(book.position_shares)

        # stops, targets and expiry of what is held
        for i in np.flatnonzero(has_bar & (position_side != 0.0)):
            side = float(position_side[i])
            hit = None
            if cfg.stops.enabled and np.isfinite(book.avg_entry_usd[i]):
                stop, target = stop_target_prices(
                    side, float(book.avg_entry_usd[i]), self._entry_regime[i], cfg.stops
                )
                hit = exit_reason(side, stop, target, float(bar.high[i]), float(bar.low[i]))
            if (
                hit is None
                and bar.bar_index >= self._expiry[i]
                and not (ok[i] and direction[i] == side)
            ):
                hit = "expiry"
            if hit is not None:
                desired[i] = 0.0
                reasons[i] = hit
                blocked[i] = True
                self._side[i] = 0.0

        # new and renewed signals
        signal = signal_weights(
            direction, confidence_scale(edge, cfg.signal), bar.regime, cfg.sizing
        )
        for i in np.flatnonzero(has_bar & ok & ~blocked):
            d = float(direction[i])
            held = float(np.sign(current[i]))
            if held == d:
                self._expiry[i] = bar.bar_index + cfg.signal.holding_bars
                if bar.regime is not Regime.CRASH:
                    desired[i] = signal[i]
                    reasons[i] = "rebalance"
                continue
            if bar.regime is Regime.CRASH:
                continue  # no new positions in a crash
            desired[i] = signal[i]
            reasons[i] = "entry"
            self._side[i] = d
            self._expiry[i] = bar.bar_index + cfg.signal.holding_bars
            self._entry_regime[i] = bar.regime

        final = size_weights(desired, current, bar.regime, cfg.sizing, self._covariance)
        targets = np.full(self.n, np.nan)
        sizing = cfg.sizing
        # a book that drifted beyond a cap by more than the rebalance band is brought back
        band = sizing.rebalance_min_fraction
        over_caps = (
            float(np.abs(current).sum()) > sizing.max_gross_fraction + band
            or abs(float(current.sum())) > sizing.max_net_fraction + band
        )
        threshold = 0.0 if over_caps else band
        for i in np.flatnonzero(has_bar):
            new, old = float(final[i]), float(current[i])
            closes = new == 0.0 and old != 0.0
            flips = new != 0.0 and old != 0.0 and np.sign(new) != np.sign(old)
            opens = old == 0.0 and new != 0.0
            beyond_cap = abs(old) > sizing.max_position_fraction + band
            if closes or flips or opens or beyond_cap or abs(new - old) >= threshold:
                targets[i] = new
                if reasons[i] is None:
                    reasons[i] = "rebalance"
                elif reasons[i] == "rebalance" and opens:
                    reasons[i] = "entry"
            else:
                reasons[i] = None
        return Decision(
            target_weights=targets,
            reasons=tuple(reasons),
            edge=edge,
            direction=direction,
            confirmed=np.asarray(ok, dtype=bool),
            regime=bar.regime,
        )
