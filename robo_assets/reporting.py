"""Performance reports of backtests: metrics, attribution, plots, HTML tear sheets, MLflow
artifacts; and the champion decision over them."""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import polars as pl
from matplotlib.figure import Figure

from robo_assets.backtesting import Candidate
from robo_assets.reports.plots import report_figures
from robo_assets.reports.tearsheet import write_tearsheet
from robo_assets.tracking import Tracking
from trader_runtime.backtest.engine import BacktestResult
from trader_runtime.performance.attribution import attribution
from trader_runtime.performance.gates import CandidateFigures
from trader_runtime.performance.metrics import performance_metrics, strategy_sharpe


@dataclass(frozen=True)
class Report:
    candidate: Candidate
    metrics: dict[str, float]
    tables: dict[str, pl.DataFrame]
    figures: dict[str, Figure]  # built without pyplot: nothing to close
    tearsheet: Path


def gate_figures(
    label: str, metrics: dict[str, float], regime_pnl: dict[str, float]
) -> CandidateFigures:
    """What the promotion gates read of one report."""
    return CandidateFigures(
        label=label,
        n_sessions=int(metrics.get("n_days", 0)),
        n_trades=int(metrics.get("n_trades", 0)),
        sharpe=float(metrics.get("sharpe", math.nan)),
        deflated_sharpe=float(metrics.get("deflated_sharpe", math.nan)),
        max_drawdown=float(metrics.get("max_drawdown", 0.0)),
        regime_pnl=regime_pnl,
    )


def regime_pnl(tables: dict[str, pl.DataFrame], initial_cash_usd: float) -> dict[str, float]:
    """P&L per regime at entry as a fraction of the initial equity."""
    by_regime = tables.get("by_regime", pl.DataFrame())
    if not by_regime.height:
        return {}
    return {
        str(row["regime"]): float(row["pnl_usd"]) / initial_cash_usd
        for row in by_regime.iter_rows(named=True)
    }


def _sharpe_variance(results: Sequence[BacktestResult]) -> float:
    sharpes = [strategy_sharpe(r.equity) for r in results]
    finite = [s for s in sharpes if math.isfinite(s)]
    return statistics.pvariance(finite) if len(finite) > 1 else 0.0


def _log_report(
    tracking: Tracking, run_id: str, tearsheet: Path, figures: dict[str, Figure]
) -> None:
    """Attach the tear sheet and the plots to the model's own MLflow run (artifacts ``backtest/``)."""
    tracking.activate()
    client = tracking.client()
    with tempfile.TemporaryDirectory() as tmp:
        for name, fig in figures.items():
            path = Path(tmp) / f"{name}.png"
            fig.savefig(path, dpi=90, bbox_inches="tight")
            client.log_artifact(run_id, str(path), artifact_path="backtest")
        client.log_artifact(run_id, str(tearsheet), artifact_path="backtest")


def build_reports(
    candidates: Sequence[Candidate],
    results: Sequence[BacktestResult],
    *,
    reports_dir: Path,
    tracking: Tracking | None,
) -> list[Report]:
    """A report per backtest. The deflated Sharpe counts every candidate as a trial."""
    variance = _sharpe_variance(results)
    reports = []
    for candidate, result in zip(candidates, results, strict=True):
        metrics = performance_metrics(
            result.equity,
            result.fills,
            result.trades,
            n_trials=max(1, len(results)),
            trial_sharpe_variance=variance,
        )
        tables = attribution(result.trades, result.fills, result.equity)
        figures = report_figures(result.equity)
        first, last = result.equity["ts"].min(), result.equity["ts"].max()
        path = write_tearsheet(
            reports_dir / f"{candidate.label}.html",
            title=f"robo-trader backtest: {candidate.label}",
            metrics=metrics,
            attribution=tables,
            figures=figures,
            subtitle_lines=(
                f"model version {candidate.version} ({candidate.family}"
                f"{', tuned' if candidate.tuned else ''}), MLflow run {candidate.run_id}",
                f"out-of-sample period {first} to {last}",
                f"{len(results)} candidates backtested (the deflated Sharpe counts them as trials)",
            ),
        )
        if tracking is not None:
            _log_report(tracking, candidate.run_id, path, figures)
        reports.append(Report(candidate, metrics, tables, figures, path))
    return reports


def metrics_table(reports: Sequence[Report]) -> pl.DataFrame:
    rows = [
        {
            "label": r.candidate.label,
            "version": r.candidate.version,
            "family": r.candidate.family,
            "tuned": r.candidate.tuned,
            "is_champion": r.candidate.is_champion,
            "run_id": r.candidate.run_id,
            "tearsheet": str(r.tearsheet),
            **r.metrics,
        }
        for r in reports
    ]
    return pl.DataFrame(rows).sort("sharpe", descending=True, nulls_last=True)


def regime_table(reports: Sequence[Report], initial_cash_usd: float) -> pl.DataFrame:
    rows = [
        {"label": r.candidate.label, "regime": regime, "pnl_fraction": pnl}
        for r in reports
        for regime, pnl in regime_pnl(r.tables, initial_cash_usd).items()
    ]
    schema = {"label": pl.String, "regime": pl.String, "pnl_fraction": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
