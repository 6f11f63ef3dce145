"""Promotion gates: each one can fail, and says why."""

from __future__ import annotations

import math

from trader_runtime.performance.gates import CandidateFigures, PromotionGates, evaluate_gates


def _figures(**changes: object) -> CandidateFigures:
    base = {
        "label": "lightgbm-v3",
        "n_sessions": 60,
        "n_trades": 200,
        "sharpe": 1.5,
        "deflated_sharpe": 0.9,
        "max_drawdown": -0.05,
        "regime_pnl": {"bull": 0.02, "bear": 0.0},
    }
    return CandidateFigures(**{**base, **changes})  # type: ignore[arg-type]


def test_a_good_candidate_passes_without_a_champion() -> None:
    report = evaluate_gates(_figures(), None, PromotionGates())
    assert report.passed
    assert report.as_tags()["gates_passed"] == "true"
    assert "no champion" in " ".join(g.detail for g in report.gates)


def test_every_gate_can_fail_and_names_itself() -> None:
    gates = PromotionGates()
    champion = _figures(label="xgboost-v1", sharpe=1.45, regime_pnl={"bull": 0.05})
    cases = {
        "oos_sessions": _figures(n_sessions=5),
        "trades": _figures(n_trades=3),
        "deflated_sharpe": _figures(deflated_sharpe=0.2),
        "max_drawdown": _figures(max_drawdown=-0.3),
        "regimes": _figures(sharpe=2.0, regime_pnl={"bull": 0.02}),  # bull 3% worse
        "margin": _figures(sharpe=1.5, regime_pnl={"bull": 0.05}),  # 1.5 vs 1.45 < 0.1
    }
    for gate, figures in cases.items():
        report = evaluate_gates(figures, champion, gates)
        failed = [g.name for g in report.gates if not g.passed]
        assert gate in failed, (gate, failed)
        assert any(gate in reason for reason in report.failures)
        assert report.as_tags()[f"gate_{gate}"].startswith("fail")


def test_nan_sharpe_never_passes() -> None:
    report = evaluate_gates(_figures(deflated_sharpe=math.nan), None, PromotionGates())
    assert not report.passed
