"""The compiled path gives the reference engine's results for target-weight schedules."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.backtest_kit import random_grid
from trader_runtime.backtest.engine import run_backtest
from trader_runtime.backtest.fast import simulate_target_weights
from trader_runtime.backtest.policies import ScheduledWeights, unconstrained
from trader_runtime.decision.config import ExecutionConfig, TradingConfig
from trader_runtime.execution.costs import CostModel


def _schedule(n_bars: int, n_symbols: int, seed: int, density: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = np.where(
        rng.random((n_bars, n_symbols)) < density,
        rng.choice([-0.2, -0.05, 0.0, 0.05, 0.1, 0.3], (n_bars, n_symbols)),
        np.nan,
    )
    return weights


def _both(seed: int, costs: CostModel, fractional: bool, missing: float, density: float):
    grid = random_grid(600, 3, seed, missing=missing)
    weights = _schedule(grid.n_bars, 3, seed + 1, density)
    config = unconstrained(
        TradingConfig(
            costs=costs, execution=ExecutionConfig(algo="immediate", fractional_shares=fractional)
        )
    )
    reference = run_backtest(grid, config, "parity", ScheduledWeights(weights))
    fast = simulate_target_weights(
        grid.open,
        grid.close,
        grid.volume,
        weights,
        costs=costs,
        initial_cash_usd=config.initial_cash_usd,
        fractional_shares=fractional,
        daily_vol=grid.daily_vol,
        adv_shares=grid.adv_shares,
    )
    return reference, fast


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    fractional=st.booleans(),
    missing=st.sampled_from([0.0, 0.05]),
    density=st.sampled_from([0.01, 0.2]),
    cap=st.sampled_from([None, 0.001, 0.1]),
    impact=st.sampled_from([0.0, 0.5]),
)
def test_fast_path_equals_reference(seed, fractional, missing, density, cap, impact) -> None:
    costs = CostModel(participation_cap=cap, impact_coefficient=impact, half_spread_bps=1.5)
    reference, fast = _both(seed, costs, fractional, missing, density)
    np.testing.assert_allclose(fast.equity_usd, reference.equity["equity_usd"], rtol=1e-12)
    np.testing.assert_allclose(fast.cash_usd, reference.equity["cash_usd"], rtol=1e-12)
    assert fast.n_fills == reference.fills.height
    fills = reference.fills
    assert fast.commission_usd == pytest.approx(fills["commission_usd"].sum(), rel=1e-12)
    assert fast.spread_cost_usd == pytest.approx(fills["spread_cost_usd"].sum(), rel=1e-12)
    assert fast.impact_cost_usd == pytest.approx(
        fills["impact_cost_usd"].sum(), rel=1e-12, abs=1e-9
    )


def test_the_cap_spreads_a_big_order_over_bars() -> None:
    costs = CostModel(participation_cap=0.001)
    reference, fast = _both(5, costs, False, 0.0, 0.01)
    grid = random_grid(600, 3, 5)
    volume = pl.DataFrame(
        {
            "ts": pl.Series(np.repeat(grid.ts, 3)).cast(pl.Datetime("us", "UTC")),
            "symbol": list(grid.symbols) * grid.n_bars,
            "volume": grid.volume.reshape(-1),
        }
    )
    fills = reference.fills.join(volume, on=["ts", "symbol"])
    assert fills.height == reference.fills.height
    assert (fills["qty"].abs() <= (0.001 * fills["volume"]).floor()).all()
    assert fast.n_fills > 3 * np.isfinite(_schedule(600, 3, 6, 0.01)).sum() // 2
