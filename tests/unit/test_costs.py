"""The fill and cost model: IBKR commissions, spread, impact, participation cap."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader_runtime.errors import ConfigError
from trader_runtime.execution.costs import (
    CostModel,
    commission_usd,
    impact_bps,
    participation_limited,
    shares_for_weight,
)


def test_ibkr_fixed_schedule_minimum_per_share_and_maximum() -> None:
    # 100 shares at $50: 0.005 * 100 = $0.50 -> the $1.00 minimum
    assert commission_usd(100, 50.0, 0.005, 1.0, 1.0, 0.0) == pytest.approx(1.0)
    # 1,000 shares at $50: $5.00
    assert commission_usd(1000, 50.0, 0.005, 1.0, 1.0, 0.0) == pytest.approx(5.0)
    # 1,000 shares at $0.10: 1% of $100 = $1.00 caps the $5.00 per-share fee
    assert commission_usd(1000, 0.10, 0.005, 1.0, 1.0, 0.0) == pytest.approx(1.0)
    # a percentage commission adds on top, and nothing is charged for nothing
    assert commission_usd(1000, 50.0, 0.0, 0.0, 0.0, 2.0) == pytest.approx(10.0)
    assert commission_usd(0, 50.0, 0.005, 1.0, 1.0, 0.0) == 0.0


def test_square_root_impact() -> None:
    # 2% daily vol, trading 1% of ADV with coefficient 1: 0.02 * 0.1 = 20 bps
    assert impact_bps(10_000, 0.02, 1_000_000, 1.0) == pytest.approx(20.0)
    # four times the size, twice the impact
    assert impact_bps(40_000, 0.02, 1_000_000, 1.0) == pytest.approx(40.0)
    assert impact_bps(10_000, math.nan, 1_000_000, 1.0) == 0.0
    assert impact_bps(10_000, 0.02, 0.0, 1.0) == 0.0


def test_a_fill_pays_spread_and_impact_in_its_price() -> None:
    model = CostModel(half_spread_bps=2.0, impact_coefficient=1.0)
    buy = model.fill(10_000, 100.0, daily_vol=0.02, adv_shares=1_000_000)
    assert buy.price_usd == pytest.approx(100.0 * (1 + 22e-4))
    assert buy.spread_cost_usd == pytest.approx(1_000_000 * 2e-4)
    assert buy.impact_cost_usd == pytest.approx(1_000_000 * 20e-4)
    sell = model.fill(-10_000, 100.0, daily_vol=0.02, adv_shares=1_000_000)
    assert sell.price_usd == pytest.approx(100.0 * (1 - 22e-4))
    # the cash paid beyond the reference value is exactly spread + impact + commission
    assert -buy.cash_flow_usd - 1_000_000 == pytest.approx(buy.cost_usd)
    assert sell.cash_flow_usd == pytest.approx(1_000_000 - sell.cost_usd)


@given(
    qty=st.integers(-10_000_000, 10_000_000).map(float),
    volume=st.floats(0, 1e8, allow_nan=False),
    cap=st.floats(0.01, 1.0),
)
def test_participation_cap_never_exceeded(qty: float, volume: float, cap: float) -> None:
    limited = participation_limited(qty, volume, cap, False)
    assert abs(limited) <= cap * volume + 1e-9
    assert abs(limited) <= abs(qty)
    assert limited == 0 or math.copysign(1, limited) == math.copysign(1, qty)
    assert limited == math.trunc(limited)


@given(
    weight=st.floats(-1, 1),
    equity=st.floats(1, 1e9),
    price=st.floats(0.01, 1e5),
)
def test_whole_shares_never_exceed_the_weight(weight: float, equity: float, price: float) -> None:
    shares = shares_for_weight(weight, equity, price, False)
    assert shares == math.trunc(shares)
    assert abs(shares * price) <= abs(weight) * equity * (1 + 1e-12)


def test_cost_model_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="half_spread_bps"):
        CostModel(half_spread_bps=-1.0)
    with pytest.raises(ConfigError, match="participation_cap"):
        CostModel(participation_cap=1.5)
