"""The simulated fill of one child order at a bar's open: the backtest's and the paper broker's.

The order meets the bar's open, limited by the participation cap of the bar's volume; the cost
model prices what fills (commission, half-spread, square-root impact)."""

from __future__ import annotations

import math

from trader_runtime.execution.costs import CostModel, Fill, participation_limited


def simulate_fill(
    qty: float,
    open_usd: float,
    volume: float,
    *,
    costs: CostModel,
    fractional_shares: bool,
    daily_vol: float = math.nan,
    adv_shares: float = math.nan,
) -> Fill | None:
    """The fill of a market order for ``qty`` shares at a bar that opened at ``open_usd`` and
    traded ``volume`` shares; None when nothing fills (no price, zero quantity or no volume)."""
    if not open_usd > 0.0 or qty == 0.0:
        return None
    filled = participation_limited(qty, volume, costs.cap, fractional_shares)
    if filled == 0.0:
        return None
    return costs.fill(filled, open_usd, daily_vol=daily_vol, adv_shares=adv_shares)
