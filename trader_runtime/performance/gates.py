"""Champion promotion gates: what a candidate's backtest must show to replace the champion.

Pure logic over backtest figures; moving the registry alias is ``robo_assets/promotion.py``'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class PromotionGates(BaseModel):
    """Thresholds (``ROBO_PROMOTION__MIN_TRADES=50`` etc.).

    - ``min_oos_sessions``, ``min_trades``: enough out-of-sample history and trades;
    - ``min_deflated_sharpe``: the deflated Sharpe ratio (a probability that the true Sharpe is
      above zero after accounting for the number of candidates tried) must reach it;
    - ``max_drawdown``: the worst peak-to-trough loss, a positive fraction of equity;
    - ``regime_tolerance``: in no regime may the candidate's P&L (fraction of initial equity)
      trail the champion's by more than this;
    - ``min_sharpe_margin``: its annualised Sharpe must beat the champion's by this much on the
      common out-of-sample period.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_oos_sessions: int = Field(default=20, ge=1)
    min_trades: int = Field(default=30, ge=0)
    min_deflated_sharpe: float = Field(default=0.5, ge=0.0, le=1.0)
    max_drawdown: float = Field(default=0.15, gt=0.0, le=1.0)
    regime_tolerance: float = Field(default=0.01, ge=0.0)
    min_sharpe_margin: float = Field(default=0.1)


@dataclass(frozen=True, slots=True)
class CandidateFigures:
    """What the gates read of one backtest."""

    label: str
    n_sessions: int
    n_trades: int
    sharpe: float
    deflated_sharpe: float
    max_drawdown: float  # negative fraction, e.g. -0.12
    regime_pnl: Mapping[str, float]  # P&L per regime at entry, fraction of initial equity


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str


@dataclass(frozen=True, slots=True)
class GateReport:
    candidate: str
    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failures(self) -> tuple[str, ...]:
        return tuple(g.detail for g in self.gates if not g.passed)

    def as_tags(self) -> dict[str, str]:
        """Version tags: ``gate_<name>`` = ``pass``/``fail`` (value vs threshold)."""
        tags = {
            f"gate_{g.name}": f"{'pass' if g.passed else 'fail'} ({g.value:.4g} vs {g.threshold:.4g})"
            for g in self.gates
        }
        tags["gates_passed"] = "true" if self.passed else "false"
        return tags


def _gate(name: str, value: float, threshold: float, ok: bool, text: str) -> GateResult:
    verdict = "passes" if ok else "fails"
    return GateResult(name, ok, value, threshold, f"{name} {verdict}: {text}")


def evaluate_gates(
    candidate: CandidateFigures, champion: CandidateFigures | None, gates: PromotionGates
) -> GateReport:
    """Every gate for ``candidate``; the comparison gates pass trivially without a champion
    (and say so)."""
    c = candidate
    results = [
        _gate(
            "oos_sessions",
            c.n_sessions,
            gates.min_oos_sessions,
            c.n_sessions >= gates.min_oos_sessions,
            f"{c.n_sessions} out-of-sample sessions, at least {gates.min_oos_sessions} required",
        ),
        _gate(
            "trades",
            c.n_trades,
            gates.min_trades,
            c.n_trades >= gates.min_trades,
            f"{c.n_trades} trades, at least {gates.min_trades} required",
        ),
        _gate(
            "deflated_sharpe",
            c.deflated_sharpe,
            gates.min_deflated_sharpe,
            math.isfinite(c.deflated_sharpe) and c.deflated_sharpe >= gates.min_deflated_sharpe,
            f"deflated Sharpe {c.deflated_sharpe:.3f}, at least {gates.min_deflated_sharpe} required",
        ),
        _gate(
            "max_drawdown",
            -c.max_drawdown,
            gates.max_drawdown,
            -c.max_drawdown <= gates.max_drawdown,
            f"max drawdown {-c.max_drawdown:.2%}, at most {gates.max_drawdown:.2%} allowed",
        ),
    ]
    if champion is None:
        results.append(_gate("regimes", 0.0, 0.0, True, "no champion to compare regimes with"))
        results.append(_gate("margin", 0.0, 0.0, True, "no champion to beat"))
        return GateReport(c.label, tuple(results))
    worst_name, worst_gap = "", math.inf
    for regime in sorted(set(c.regime_pnl) | set(champion.regime_pnl)):
        gap = c.regime_pnl.get(regime, 0.0) - champion.regime_pnl.get(regime, 0.0)
        if gap < worst_gap:
            worst_name, worst_gap = regime, gap
    if not math.isfinite(worst_gap):
        worst_gap = 0.0
    results.append(
        _gate(
            "regimes",
            worst_gap,
            -gates.regime_tolerance,
            worst_gap >= -gates.regime_tolerance,
            f"worst regime vs champion {champion.label}: {worst_name or 'none'} "
            f"{worst_gap:+.2%} of equity, at worst -{gates.regime_tolerance:.2%} allowed",
        )
    )
    margin = c.sharpe - champion.sharpe
    results.append(
        _gate(
            "margin",
            margin,
            gates.min_sharpe_margin,
            math.isfinite(margin) and margin >= gates.min_sharpe_margin,
            f"Sharpe {c.sharpe:.2f} vs champion {champion.label} {champion.sharpe:.2f}, "
            f"a margin of {gates.min_sharpe_margin} required",
        )
    )
    return GateReport(c.label, tuple(results))
