"""Transaction costs: IBKR commissions, half-spread, square-root market impact, participation cap.

The scalar functions here are the one fill and cost model of robo-trader. The backtest's reference
path, the live paper broker and the backtest's compiled path all call them; the compiled path
compiles these very functions with numba (``trader_runtime/backtest/fast.py``), so they use plain
float arithmetic only.

Conventions: quantities are shares (``qty`` signed: + buy, - sell), prices USD per share, costs
USD, ``*_bps`` basis points of traded value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from trader_runtime.errors import ConfigError


def commission_usd(
    qty_abs: float,
    price_usd: float,
    per_share_usd: float,
    min_usd: float,
    max_pct: float,
    extra_bps: float,
) -> float:
    """IBKR's fixed schedule: ``per_share_usd`` a share, at least ``min_usd`` an order, at most
    ``max_pct`` percent of the trade value (0 = no maximum); plus ``extra_bps`` of the value (a
    percentage commission, or exchange and regulatory fees). Zero for an empty order."""
    if qty_abs <= 0.0:
        return 0.0
    value = qty_abs * price_usd
    fee = per_share_usd * qty_abs
    if fee < min_usd:
        fee = min_usd
    if max_pct > 0.0:
        cap = max_pct / 100.0 * value
        if fee > cap:
            fee = cap
    return fee + extra_bps / 1e4 * value


def impact_bps(qty_abs: float, daily_vol: float, adv_shares: float, coefficient: float) -> float:
    """Square-root market impact ``coefficient * daily_vol * sqrt(qty / ADV)`` in bps of price.

    ``daily_vol`` is the standard deviation of daily returns (a fraction), ``adv_shares`` the
    average daily volume. Unknown inputs (NaN, ADV <= 0) give no impact."""
    if qty_abs <= 0.0 or coefficient <= 0.0:
        return 0.0
    if not (adv_shares > 0.0) or not (daily_vol >= 0.0):  # also false for NaN
        return 0.0
    return coefficient * daily_vol * math.sqrt(qty_abs / adv_shares) * 1e4


def fill_price_usd(
    reference_usd: float, side: float, half_spread_bps: float, impact: float
) -> float:
    """The price paid (``side`` +1) or received (-1): the reference price moved against the order
    by the half-spread and the impact, both in bps."""
    return reference_usd * (1.0 + side * (half_spread_bps + impact) / 1e4)


def shares_for_weight(
    weight: float, equity_usd: float, price_usd: float, fractional_shares: bool
) -> float:
    """Shares worth ``weight`` of ``equity_usd`` at ``price_usd``, truncated towards zero to whole
    shares unless ``fractional_shares``. Zero when the price is not a positive number."""
    if not (price_usd > 0.0) or not (equity_usd > 0.0):
        return 0.0
    raw = weight * equity_usd / price_usd
    if fractional_shares:
        return raw
    return float(math.trunc(raw))


def participation_limited(
    qty: float, bar_volume: float, participation_cap: float, fractional_shares: bool
) -> float:
    """``qty`` limited to ``participation_cap`` of the bar's volume (cap <= 0 means no cap)."""
    if participation_cap <= 0.0:
        return qty
    limit = participation_cap * bar_volume if bar_volume > 0.0 else 0.0
    if not fractional_shares:
        limit = float(math.floor(limit))
    if qty > limit:
        return limit
    if qty < -limit:
        return -limit
    return qty


class Fill(NamedTuple):
    """One executed quantity and what it cost (all costs positive USD). A NamedTuple: made on
    every fill of the live loop's hot path, in one call."""

    qty: float
    price_usd: float
    reference_usd: float
    commission_usd: float
    spread_cost_usd: float
    impact_cost_usd: float

    @property
    def notional_usd(self) -> float:
        return abs(self.qty) * self.price_usd

    @property
    def cash_flow_usd(self) -> float:
        """Change of cash: buying spends, selling receives, commission always spends."""
        return -self.qty * self.price_usd - self.commission_usd

    @property
    def cost_usd(self) -> float:
        return self.commission_usd + self.spread_cost_usd + self.impact_cost_usd


@dataclass(frozen=True, slots=True)
class CostModel:
    """The costs a fill pays. Defaults: IBKR Pro fixed pricing for US stocks ($0.005 a share,
    $1.00 minimum, 1% of trade value maximum), 1 bp half-spread, a square-root impact coefficient
    of 0.1 and at most 10% of a bar's volume (``participation_cap`` None = no cap)."""

    commission_per_share_usd: float = 0.005
    commission_min_usd: float = 1.0
    commission_max_pct: float = 1.0
    commission_bps: float = 0.0
    half_spread_bps: float = 1.0
    impact_coefficient: float = 0.1
    participation_cap: float | None = 0.1

    def __post_init__(self) -> None:
        for name in (
            "commission_per_share_usd",
            "commission_min_usd",
            "commission_max_pct",
            "commission_bps",
            "half_spread_bps",
            "impact_coefficient",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        cap = self.participation_cap
        if cap is not None and not (0.0 < cap <= 1.0):
            raise ConfigError(f"participation_cap must be in (0, 1] or None, got {cap}")

    @property
    def cap(self) -> float:
        """The participation cap as the scalar functions take it (0 = none)."""
        return 0.0 if self.participation_cap is None else self.participation_cap

    def commission(self, qty: float, price_usd: float) -> float:
        return commission_usd(
            abs(qty),
            price_usd,
            self.commission_per_share_usd,
            self.commission_min_usd,
            self.commission_max_pct,
            self.commission_bps,
        )

    def fill(
        self,
        qty: float,
        reference_usd: float,
        *,
        daily_vol: float = math.nan,
        adv_shares: float = math.nan,
    ) -> Fill:
        """Execute ``qty`` shares against ``reference_usd`` (the bar price the order meets)."""
        side = 1.0 if qty > 0 else -1.0
        impact = impact_bps(abs(qty), daily_vol, adv_shares, self.impact_coefficient)
        price = fill_price_usd(reference_usd, side, self.half_spread_bps, impact)
        value = abs(qty) * reference_usd
        return Fill(
            qty=qty,
            price_usd=price,
            reference_usd=reference_usd,
            commission_usd=self.commission(qty, price),
            spread_cost_usd=value * self.half_spread_bps / 1e4,
            impact_cost_usd=value * impact / 1e4,
        )
