"""The reference backtest: pinned figures, determinism, accounting and decision-core rules."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.backtest_kit import random_grid
from trader_runtime.backtest.engine import run_backtest
from trader_runtime.decision.config import TradingConfig
from trader_runtime.market.regimes import REGIME_ORDER, Regime


def test_acceptance_pinned_figures() -> None:
    """A small backtest's exact figures: any change to the decision core, execution or costs
    shows up here and must be explained in the commit that changes them."""
    grid = random_grid(1500, 4, 11)
    result = run_backtest(grid, TradingConfig(), "m")
    assert result.final_equity_usd == pytest.approx(999146.7848, abs=1e-4)
    assert result.fills.height == 511
    assert result.trades.height == 273
    assert result.fills["commission_usd"].sum() == pytest.approx(707.68, abs=1e-2)
    twap = run_backtest(grid, TradingConfig(execution={"algo": "twap"}), "m")
    assert twap.final_equity_usd == pytest.approx(997990.8408, abs=1e-4)
    assert twap.fills.height == 2100


def test_a_rerun_is_identical() -> None:
    grid = random_grid(800, 3, 4, missing=0.03)
    config = TradingConfig(execution={"algo": "vwap"})
    first, second = run_backtest(grid, config, "m"), run_backtest(grid, config, "m")
    for name in ("equity", "fills", "trades", "decisions"):
        assert_frame_equal(getattr(first, name), getattr(second, name))


def test_cash_and_equity_add_up() -> None:
    grid = random_grid(1000, 4, 2)
    result = run_backtest(grid, TradingConfig(), "m")
    fills = result.fills
    flows = (-(fills["qty"] * fills["price_usd"]) - fills["commission_usd"]).sum()
    assert result.equity["cash_usd"][-1] == pytest.approx(
        result.initial_cash_usd + flows, rel=1e-12
    )
    # closed round trips: net pnl = gross pnl - every cost
    trades = result.trades
    assert trades["pnl_usd"].sum() == pytest.approx(
        (trades["gross_pnl_usd"] - trades["costs_usd"]).sum(), rel=1e-9
    )
    assert (fills["spread_cost_usd"] > 0).all()


def test_no_new_positions_in_a_crash() -> None:
    crash = np.full(1000, REGIME_ORDER.index(Regime.CRASH))
    result = run_backtest(random_grid(1000, 4, 2, regime_codes=crash), TradingConfig(), "m")
    assert result.fills.height == 0
    normal = run_backtest(random_grid(1000, 4, 2), TradingConfig(), "m")
    assert normal.fills.height > 0


def test_signals_trade_only_when_timeframes_agree() -> None:
    grid = random_grid(1000, 4, 2)
    down = grid.trends.copy()
    down[:] = -1.0  # every timeframe trends down
    disagreeing = grid.__class__(**{**_fields(grid), "trends": down})
    longs_only = {"signal": {"allow_short": False}}
    confirmed = run_backtest(disagreeing, TradingConfig(**longs_only), "m")
    assert confirmed.fills.height == 0
    unconfirmed = run_backtest(
        disagreeing, TradingConfig(**longs_only, confirmation={"enabled": False}), "m"
    )
    assert unconfirmed.fills.filter(pl.col("qty") > 0).height > 0
    shorts = run_backtest(disagreeing, TradingConfig(), "m")
    assert shorts.trades.height > 0
    assert set(shorts.trades["side"]) == {"short"}


def test_a_stop_closes_a_losing_position() -> None:
    grid = random_grid(400, 1, 3, n_timeframes=0)
    fields = _fields(grid)
    prob = np.full((400, 1), 0.45)
    prob[100] = 0.60  # one strong long signal
    close = np.full((400, 1), 100.0)
    close[101:] = 100.0
    close[150:] = 96.0  # -4%: beyond the 2% ranging stop, within the holding period
    fields.update(
        probability=prob,
        close=close,
        open=close.copy(),
        high=close * 1.0001,
        low=close * 0.9999,
        regime_codes=np.full(400, REGIME_ORDER.index(Regime.RANGING)),
    )
    signal = {"holding_bars": 200}
    result = run_backtest(grid.__class__(**fields), TradingConfig(signal=signal), "m")
    assert result.trades.height == 1
    trade = result.trades.row(0, named=True)
    assert trade["side"] == "long"
    assert trade["exit_reason"] == "stop"
    assert trade["pnl_usd"] < 0


def _fields(grid):
    return {name: getattr(grid, name) for name in grid.__slots__}
