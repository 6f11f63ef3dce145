"""Policies other than the decision core, for parity tests and benchmarks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.config import RiskConfig, TradingConfig
from trader_runtime.decision.core import BarSnapshot, Decision, PortfolioView

FloatArray = npt.NDArray[np.float64]


class ScheduledWeights:
    """Decides ``weights[t]`` at bar ``t`` (NaN = no decision), whatever the book holds: the
    reference engine's counterpart of ``fast.simulate_target_weights``."""

    def __init__(self, weights: FloatArray) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)

    def step(self, bar: BarSnapshot, book: PortfolioView) -> Decision:
        row = self.weights[bar.bar_index]
        n = row.shape[0]
        return Decision(
            target_weights=row,
            reasons=tuple("rebalance" if np.isfinite(w) else None for w in row),
            edge=np.full(n, np.nan),
            direction=np.sign(np.where(np.isfinite(row), row, 0.0)),
            confirmed=np.isfinite(row),
            regime=bar.regime,
        )


def unconstrained(config: TradingConfig) -> TradingConfig:
    """``config`` with risk limits and caps that never bind: what a fixed schedule of weights
    (``ScheduledWeights``, ``fast.simulate_target_weights``) is compared under."""
    return config.model_copy(
        update={
            "sizing": config.sizing.model_copy(
                update={
                    "max_position_fraction": 1.0,
                    "max_gross_fraction": 10.0,
                    "max_net_fraction": 10.0,
                }
            ),
            "risk": RiskConfig(
                daily_loss_limit_fraction=1.0,
                max_orders_per_minute=1_000_000,
                price_band_fraction=10.0,
                cap_tolerance_fraction=1.0,
                trading_hours_only=False,
            ),
        }
    )
