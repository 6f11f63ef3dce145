"""The ``backtest`` benchmark's own side (quick size): our engine's figures are sane, the signal is
causal, and peers that cannot be imported are reported as unavailable. No speed thresholds."""

from __future__ import annotations

import sys
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.backtest import (
    NAME,
    QUICK,
    SPEC,
    crossover_weights,
    load_panel,
    load_peer,
    measure,
    run_ours,
)
from benchmarks.peers import BarPanel, EngineRun, StrategySpec
from trader_runtime.market.calendar import TradingCalendar

STUB_PEER = "stub_vectorbt_peer"
STUB_WALL_S = 2.0
STUB_EQUITY_FACTOR = 1.0 + 3e-7


@pytest.fixture(scope="module")
def panel() -> BarPanel:
    return load_panel(QUICK)


@pytest.fixture(scope="module")
def ours_only() -> dict[str, dict[str, Any]]:
    """Our side of the quick benchmark, with one peer whose engine is not installed."""
    measurements = measure(True, peers={"ghost": "benchmarks.peers.no_such_engine"})
    assert all(m.bench == NAME for m in measurements)
    metrics = {m.metric: {"value": m.value, "unit": m.unit, **m.extra} for m in measurements}
    assert len(metrics) == len(measurements), "a metric is reported twice"
    return metrics


def test_quick_run_counts_every_bar_of_every_symbol(ours_only: dict[str, dict[str, Any]]) -> None:
    minutes = TradingCalendar(QUICK.start, QUICK.end).minute_bar_closes().len()
    for record in ours_only.values():
        assert record["bars"] == minutes * QUICK.n_symbols
        assert record["symbols"] == QUICK.n_symbols


def test_ours_speed_is_a_positive_finite_rate(ours_only: dict[str, dict[str, Any]]) -> None:
    speed = ours_only["ours_bars_per_s"]
    assert speed["unit"] == "bars/s"
    assert 0.0 < speed["wall_s"] < 60.0
    assert speed["value"] == pytest.approx(speed["bars"] / speed["wall_s"])
    assert ours_only["reference_bars_per_s"]["value"] > 0.0


def test_ours_final_equity_is_plausible_and_costs_match_the_aligned_model(
    ours_only: dict[str, dict[str, Any]],
) -> None:
    equity = ours_only["ours_final_equity_usd"]
    start_usd = SPEC.initial_cash_usd * QUICK.n_symbols
    assert 0.8 * start_usd < equity["value"] < 1.2 * start_usd
    notional = equity["traded_notional_usd"]
    assert notional > 0.0
    # the only commission left is the percentage one, on the filled value
    assert equity["commission_usd"] == pytest.approx(SPEC.commission_rate * notional, rel=1e-12)
    # the half-spread is charged on the value at the open: within a half-spread of the fill value
    assert equity["spread_cost_usd"] == pytest.approx(SPEC.slippage_rate * notional, rel=1e-3)


def test_reference_engine_agrees_with_the_compiled_path(
    ours_only: dict[str, dict[str, Any]],
) -> None:
    assert ours_only["reference_equity_rel_diff_vs_ours"]["value"] < 1e-9


def test_one_fill_per_traded_signal_change(panel: BarPanel) -> None:
    ours = run_ours(panel, SPEC, repeats=1)
    weights = crossover_weights(panel.close_usd, SPEC)
    # a change decided at the last close has no next open to trade at
    assert ours.run.n_fills == int(np.isfinite(weights[:-1]).sum())
    assert ours.run.n_fills > 10


def test_a_missing_peer_is_reported_unavailable_with_a_note(
    ours_only: dict[str, dict[str, Any]],
) -> None:
    record = ours_only["ghost_available"]
    assert record["value"] == 0
    assert "ModuleNotFoundError" in record["note"]
    assert ".venv-bench" in record["note"]
    assert not any(metric.startswith("ghost_bars") for metric in ours_only)
    assert "equity_rel_diff_vs_vectorbt" not in ours_only


@pytest.mark.parametrize("engine", ["vectorbt", "backtrader", "nautilus_trader"])
def test_real_peers_load_only_where_their_engine_is_installed(engine: str) -> None:
    module = {"vectorbt": "vectorbt", "backtrader": "backtrader", "nautilus_trader": "nautilus"}
    peer = load_peer(f"benchmarks.peers.{module[engine]}_peer")
    try:
        __import__(engine)
    except Exception:
        assert isinstance(peer, str)
    else:
        assert not isinstance(peer, str)
        assert callable(peer.run)


def _stub_run(panel: BarPanel, spec: StrategySpec) -> EngineRun:
    """A hand-written peer: our engine's equity moved by a known factor, a known wall time."""
    ours = run_ours(panel, spec, repeats=1).run
    return replace(
        ours,
        engine="stub",
        wall_s=STUB_WALL_S,
        final_equity_usd=tuple(v * STUB_EQUITY_FACTOR for v in ours.final_equity_usd),
    )


def test_comparisons_with_an_available_peer(
    panel: BarPanel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, STUB_PEER, SimpleNamespace(run=_stub_run))
    metrics = {m.metric: m for m in measure(True, peers={"vectorbt": STUB_PEER})}
    peer_speed = metrics["vectorbt_bars_per_s"].value
    assert peer_speed == pytest.approx(panel.total_bars / STUB_WALL_S)
    assert metrics["ours_speed_vs_vectorbt"].value == pytest.approx(
        metrics["ours_bars_per_s"].value / peer_speed
    )
    diff = metrics["equity_rel_diff_vs_vectorbt"]
    assert diff.value == pytest.approx(1.0 - 1.0 / STUB_EQUITY_FACTOR, rel=1e-6)
    assert diff.extra["fills"] == diff.extra["vectorbt_fills"]
    assert "vectorbt_available" not in metrics


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bars=st.integers(60, 400),
    cut=st.floats(0.0, 1.0),
)
def test_crossover_weights_are_causal_and_alternate(seed: int, n_bars: int, cut: float) -> None:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-3, (n_bars, 2)), axis=0))
    weights = crossover_weights(close, SPEC)
    # a bar's weight uses closes up to that bar only
    t = int(cut * (n_bars - 1))
    np.testing.assert_array_equal(weights[: t + 1], crossover_weights(close[: t + 1], SPEC))
    for j in range(close.shape[1]):
        orders = weights[np.isfinite(weights[:, j]), j]
        # starting flat, the orders alternate: enter at the weight, exit to flat
        expected = [SPEC.weight if k % 2 == 0 else 0.0 for k in range(orders.size)]
        assert orders.tolist() == expected
        assert not np.isfinite(weights[: SPEC.slow_bars - 1, j]).any()
