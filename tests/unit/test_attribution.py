"""P&L attribution: every table adds up to the totals of the trades, fills and equity."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.performance_kit import (
    empty_fills,
    equity_from_daily_returns,
    make_backtest_frames,
    trades_with_pnls,
)
from trader_runtime.performance.attribution import attribution

GROUP_TABLES = ("by_symbol", "by_regime", "by_model", "by_side")
TRADE_SUMS = ("pnl_usd", "gross_pnl_usd", "costs_usd")


def _fill_costs(fills: pl.DataFrame) -> float:
    return float(
        fills.select(pl.sum_horizontal("commission_usd", "spread_cost_usd", "impact_cost_usd"))
        .to_series()
        .sum()
    )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n_trades=st.integers(1, 40))
def test_every_group_table_sums_to_the_trade_and_fill_totals(seed: int, n_trades: int) -> None:
    f = make_backtest_frames(seed=seed, n_sessions=15, n_trades=n_trades)
    tables = attribution(f.trades, f.fills, f.equity)
    for name in GROUP_TABLES:
        table = tables[name]
        assert table["n_trades"].sum() == f.trades.height, name
        for column in TRADE_SUMS:
            assert table[column].sum() == pytest.approx(f.trades[column].sum()), (name, column)
    for name in ("by_symbol", "by_model"):
        table = tables[name]
        assert table["n_fills"].sum() == f.fills.height
        assert table["traded_notional_usd"].sum() == pytest.approx(f.fills["notional_usd"].sum())
        assert table["fill_costs_usd"].sum() == pytest.approx(_fill_costs(f.fills))


@pytest.mark.parametrize("seed", [0, 1])
def test_cost_table_splits_the_fill_costs(seed: int) -> None:
    f = make_backtest_frames(seed=seed)
    costs = attribution(f.trades, f.fills, f.equity)["costs"]
    by_component = dict(zip(costs["component"], costs["cost_usd"], strict=True))
    assert by_component["commission"] == pytest.approx(f.fills["commission_usd"].sum())
    assert by_component["spread"] == pytest.approx(f.fills["spread_cost_usd"].sum())
    assert by_component["impact"] == pytest.approx(f.fills["impact_cost_usd"].sum())
    parts = by_component["commission"] + by_component["spread"] + by_component["impact"]
    assert by_component["total"] == pytest.approx(parts)
    assert by_component["total"] == pytest.approx(_fill_costs(f.fills))
    notional = f.fills["notional_usd"].sum()
    assert costs["cost_bps"].to_list() == pytest.approx(
        [v / notional * 1e4 for v in costs["cost_usd"]]
    )
    assert costs.filter(pl.col("component") != "total")["share_of_costs"].sum() == pytest.approx(1)


def test_regime_returns_compound_to_the_whole_run() -> None:
    f = make_backtest_frames(seed=4)
    regimes = attribution(f.trades, f.fills, f.equity)["by_regime"]
    growth = float(np.prod(1.0 + regimes["strategy_return"].to_numpy()))
    eq = f.equity["equity_usd"]
    assert growth == pytest.approx(eq[-1] / eq[0])
    bench = f.equity["benchmark_equity_usd"]
    assert float(np.prod(1.0 + regimes["benchmark_return"].to_numpy())) == pytest.approx(
        bench[-1] / bench[0]
    )
    assert regimes["n_bars"].sum() == f.equity.height
    assert regimes["time_share"].sum() == pytest.approx(1.0)
    assert set(regimes["regime"]) == set(f.equity["regime"]) | set(f.trades["regime"])


def test_a_regime_without_trades_is_listed_with_zero_trades() -> None:
    eq = equity_from_daily_returns(
        [0.01, -0.02, 0.01, 0.0], regimes=["bull", "bull", "crash", "crash", "bull"]
    )
    tables = attribution(trades_with_pnls([10.0, -5.0]), empty_fills(), eq)
    crash = tables["by_regime"].filter(pl.col("regime") == "crash").row(0, named=True)
    assert crash["n_trades"] == 0
    assert crash["pnl_usd"] == 0
    assert crash["n_bars"] == 2
    assert crash["strategy_return"] == pytest.approx(0.98 * 1.01 - 1)  # the bars labelled crash


def test_side_table_of_known_trades() -> None:
    # trades alternate long, short, long, short, long
    trades = trades_with_pnls([100.0, -50.0, 200.0, 30.0, -25.0])
    eq = equity_from_daily_returns([0.0] * 6)
    side = attribution(trades, empty_fills(), eq)["by_side"]
    rows = {r["side"]: r for r in side.iter_rows(named=True)}
    assert rows["long"]["n_trades"] == 3
    assert rows["long"]["pnl_usd"] == pytest.approx(275.0)
    assert rows["long"]["win_rate"] == pytest.approx(2 / 3)
    assert rows["short"]["pnl_usd"] == pytest.approx(-20.0)
    assert rows["short"]["win_rate"] == pytest.approx(0.5)
    assert side["side"].to_list() == ["long", "short"]  # by P&L, best first


def test_no_trades_and_no_fills_give_empty_tables_not_errors() -> None:
    eq = equity_from_daily_returns([0.01, 0.02], regimes=["bull", "bear", "bear"])
    tables = attribution(pl.DataFrame(), pl.DataFrame(), eq)
    assert set(tables) == {*GROUP_TABLES, "costs"}
    for name in ("by_symbol", "by_model", "by_side"):
        assert tables[name].height == 0
        assert "pnl_usd" in tables[name].columns
    assert tables["by_regime"]["n_trades"].to_list() == [0, 0]
    total = tables["costs"].filter(pl.col("component") == "total").row(0, named=True)
    assert total["cost_usd"] == 0
    assert math.isnan(total["cost_bps"])


def test_missing_keys_are_grouped_as_unknown() -> None:
    trades = trades_with_pnls([10.0, 20.0]).with_columns(model=pl.Series([None, "m"]))
    eq = equity_from_daily_returns([0.0] * 3)
    by_model = attribution(trades, empty_fills(), eq)["by_model"]
    assert dict(zip(by_model["model"], by_model["pnl_usd"], strict=True)) == {
        "m": 20.0,
        "unknown": 10.0,
    }
