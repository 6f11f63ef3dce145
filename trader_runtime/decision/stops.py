"""Stops and profit targets by the regime at entry."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.config import StopsConfig
from trader_runtime.market.regimes import Regime

FloatArray = npt.NDArray[np.float64]


def stop_target_prices(
    side: float, entry_price_usd: float, regime: Regime, config: StopsConfig
) -> tuple[float, float]:
    """(stop, target) prices of a position on ``side`` (+1 long, -1 short) entered at
    ``entry_price_usd`` in ``regime``."""
    levels = config.by_regime[regime]
    stop = entry_price_usd * (1.0 - side * levels.stop_pct / 100.0)
    target = entry_price_usd * (1.0 + side * levels.target_pct / 100.0)
    return stop, target


def exit_reason(
    side: float, stop_usd: float, target_usd: float, high_usd: float, low_usd: float
) -> str | None:
    """``"stop"`` or ``"target"`` when the bar's range reached a level (the stop wins when a bar
    reaches both: the pessimistic reading of one bar), else None."""
    if side > 0:
        if low_usd <= stop_usd:
            return "stop"
        if high_usd >= target_usd:
            return "target"
    elif side < 0:
        if high_usd >= stop_usd:
            return "stop"
        if low_usd <= target_usd:
            return "target"
    return None
