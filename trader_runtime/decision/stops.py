"""Stops and profit targets by the regime at entry (the compiled rules of ``decision.kernels``)."""

from __future__ import annotations

from trader_runtime.decision import kernels
from trader_runtime.decision.config import StopsConfig
from trader_runtime.market.regimes import Regime


def stop_target_prices(
    side: float, entry_price_usd: float, regime: Regime, config: StopsConfig
) -> tuple[float, float]:
    """(stop, target) prices of a position on ``side`` (+1 long, -1 short) entered at
    ``entry_price_usd`` in ``regime``."""
    levels = config.by_regime[regime]
    stop, target = kernels.stop_target(side, entry_price_usd, levels.stop_pct, levels.target_pct)
    return float(stop), float(target)


def exit_reason(
    side: float, stop_usd: float, target_usd: float, high_usd: float, low_usd: float
) -> str | None:
    """``"stop"`` or ``"target"`` when the bar's range reached a level (the stop wins when a bar
    reaches both: the pessimistic reading of one bar), else None."""
    return kernels.REASONS[kernels.exit_code(side, stop_usd, target_usd, high_usd, low_usd)]
