"""Champion promotion in the MLflow registry: gates over backtest reports, then the aliases.

The best contender (highest Sharpe on the common out-of-sample period) is checked against every
gate (``trader_runtime/performance/gates.py``) and the current champion. On a pass the alias
``champion`` moves to it and ``previous`` to the former champion (rollback: point ``champion``
back at ``previous`` in the MLflow UI or with ``MlflowClient.set_registered_model_alias``). Every
contender's version is tagged with its gate results, pass or fail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from robo_assets.backtesting import CHAMPION_ALIAS, PREVIOUS_ALIAS, Candidate
from robo_assets.tracking import Tracking
from trader_runtime.performance.gates import (
    CandidateFigures,
    GateReport,
    PromotionGates,
    evaluate_gates,
)


@dataclass(frozen=True)
class PromotionOutcome:
    promoted: bool
    best: str | None
    champion_before: str | None
    champion_after: str | None
    reasons: tuple[str, ...]
    gate_reports: tuple[GateReport, ...]

    def gate_table(self) -> pl.DataFrame:
        rows = [
            {
                "candidate": report.candidate,
                "gate": g.name,
                "passed": g.passed,
                "value": g.value,
                "threshold": g.threshold,
                "detail": g.detail,
            }
            for report in self.gate_reports
            for g in report.gates
        ]
        return pl.DataFrame(rows) if rows else pl.DataFrame()

    @property
    def summary(self) -> str:
        if self.best is None:
            return "no candidate to promote: " + "; ".join(self.reasons)
        if self.promoted:
            return f"promoted {self.best} to champion (was {self.champion_before or 'none'})"
        kept = (
            f"kept champion {self.champion_before}"
            if self.champion_before
            else "no champion promoted"
        )
        return f"{kept}: {self.best} failed: " + "; ".join(self.reasons)


@dataclass(frozen=True)
class Scored:
    """A backtested version and the figures the gates read."""

    candidate: Candidate
    figures: CandidateFigures


def _sharpe(scored: Scored) -> float:
    value = scored.figures.sharpe
    return value if math.isfinite(value) else -math.inf


def decide_champion(
    tracking: Tracking, scored: Sequence[Scored], gates: PromotionGates
) -> PromotionOutcome:
    """Gate every contender, promote the best one if it passes, tag versions either way."""
    champion = next((s for s in scored if s.candidate.is_champion), None)
    champion_label = champion.candidate.label if champion else None
    champion_version = champion.candidate.version if champion else None
    contenders = [s for s in scored if s.candidate.version != champion_version]
    if not contenders:
        return PromotionOutcome(
            False, None, champion_label, champion_label, ("no contender was backtested",), ()
        )
    champion_figures = champion.figures if champion else None
    client = tracking.client()
    name = tracking.registered_model
    gate_reports = []
    for contender in contenders:
        result = evaluate_gates(contender.figures, champion_figures, gates)
        gate_reports.append(result)
        for key, value in result.as_tags().items():
            client.set_model_version_tag(name, contender.candidate.version, key, value)
    best = max(contenders, key=_sharpe)
    best_gates = next(g for g in gate_reports if g.candidate == best.candidate.label)
    if not best_gates.passed:
        return PromotionOutcome(
            False,
            best.candidate.label,
            champion_label,
            champion_label,
            best_gates.failures,
            tuple(gate_reports),
        )
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, champion.candidate.version)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, best.candidate.version)
    client.set_model_version_tag(
        name, best.candidate.version, "promoted_at", datetime.now(UTC).isoformat()
    )
    return PromotionOutcome(
        True,
        best.candidate.label,
        champion_label,
        best.candidate.label,
        (),
        tuple(gate_reports),
    )
