"""Backtest assets: ``backtest`` (every candidate version and the champion through the decision
core), ``performance_report`` (metrics, attribution, plots, tear sheets) and ``champion_model``
(gates, then the registry alias)."""

from datetime import timedelta

import matplotlib

matplotlib.use("Agg")

import dagster as dg
import matplotlib.pyplot as plt
import polars as pl

from robo_assets.backtesting import (
    BASE,
    Candidate,
    backtest_predictions,
    candidate_table,
    common_period,
    current_champion,
    find_candidates,
    load_market_inputs,
    load_predictions,
    load_result,
    store_result,
)
from robo_assets.bars_assets import bars
from robo_assets.feature_assets import ALL_SYMBOLS, features, training_set
from robo_assets.metadata import png_markdown, table_preview
from robo_assets.model_assets import trained_models, tuned_models
from robo_assets.promotion import Scored, decide_champion
from robo_assets.regime_assets import market_regimes
from robo_assets.reporting import build_reports, gate_figures, metrics_table, regime_table
from robo_assets.research_data import POOLED, TRAINING_SET
from robo_assets.resources import RoboSettingsResource
from robo_assets.tracking import Tracking, data_fingerprint, model_version_url

GROUP = "backtest"
SUMMARY = "backtest_summary"
METRICS = "performance_metrics"
REGIME_PNL = "performance_regimes"
SUMMARY_COLUMNS = ("sharpe", "deflated_sharpe", "cagr", "max_drawdown", "n_trades", "costs_usd")


def _candidates(tracking: Tracking, fingerprint: str) -> list[Candidate]:
    found = find_candidates(tracking, fingerprint)
    champion = current_champion(tracking)
    if champion is None:
        return found
    rest = [c for c in found if c.version != champion.version]
    return [*rest, champion]


@dg.asset(
    group_name=GROUP,
    deps=[
        trained_models,
        tuned_models,
        market_regimes,
        dg.AssetDep(features, partition_mapping=ALL_SYMBOLS),
        dg.AssetDep(bars, partition_mapping=ALL_SYMBOLS),
        training_set,
    ],
    kinds={"parquet", "mlflow"},
    description="Every candidate (the newest version per family, plain and tuned, trained on the "
    "current data) and the current champion, replayed bar by bar through the decision core, "
    "execution and cost model on the candidates' common out-of-sample period.",
)
def backtest(context: dg.AssetExecutionContext, robo: RoboSettingsResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, lake = robo.settings(), robo.lake()
    tracking = Tracking.from_settings(settings)
    fingerprint = data_fingerprint(lake.read(TRAINING_SET, BASE.value, POOLED))
    candidates = _candidates(tracking, fingerprint)
    predictions = {c.label: load_predictions(tracking, c) for c in candidates}
    missing = [label for label, p in predictions.items() if p is None]
    candidates = [c for c in candidates if predictions[c.label] is not None]
    contenders = [predictions[c.label] for c in candidates if not c.is_champion]
    period = common_period([p for p in contenders if p is not None])
    if period is None:
        raise dg.Failure(
            "no candidate with out-of-sample predictions on the current data: materialize "
            "trained_models (and tuned_models) first",
            metadata={"without_predictions": missing},
        )
    symbols = sorted({s for p in predictions.values() if p is not None for s in p["symbol"]})
    inputs = load_market_inputs(lake, symbols, settings.trading)
    rows = []
    curves = []
    for candidate in candidates:
        frame = predictions[candidate.label]
        assert frame is not None
        result = backtest_predictions(candidate.label, frame, inputs, settings.trading, period)
        store_result(lake, candidate.label, result)
        context.log.info(
            f"{candidate.label}: final equity {result.final_equity_usd:,.0f} USD, "
            f"{result.trades.height} trades, {result.fills.height} fills"
        )
        rows.append(
            {
                "label": candidate.label,
                "final_equity_usd": result.final_equity_usd,
                "n_trades": result.trades.height,
                "n_fills": result.fills.height,
                "bars": result.equity.height,
            }
        )
        curves.append((candidate.label, result.equity))
    summary = candidate_table(candidates).join(pl.DataFrame(rows), on="label")
    lake.write(SUMMARY, BASE.value, POOLED, summary)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for label, equity in curves:
        ax.plot(equity["ts"].to_list(), equity["equity_usd"].to_list(), linewidth=0.8, label=label)
    benchmark = curves[0][1]
    ax.plot(
        benchmark["ts"].to_list(),
        benchmark["benchmark_equity_usd"].to_list(),
        color="black",
        linewidth=0.8,
        linestyle="--",
        label="buy and hold",
    )
    ax.legend(fontsize=7)
    ax.set_title("equity of every candidate (USD)")
    return dg.MaterializeResult(
        metadata={
            "period_start": str(period[0]),
            "period_end": str(period[1]),
            "candidates": table_preview(summary, rows=len(candidates)),
            "without_predictions": missing,
            "equity_plot": png_markdown(fig, alt="equity of every candidate"),
            "data_fingerprint": fingerprint,
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[backtest],
    kinds={"html", "mlflow"},
    # the weekly retraining (Saturday 06:00 New York) reports by Saturday noon
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 12 * * 6",
        lower_bound_delta=timedelta(hours=6),
        timezone="America/New_York",
    ),
    description="Metrics (20+), attribution by symbol, regime, model and side, a cost breakdown "
    "and plots of every backtest; an HTML tear sheet per candidate under data/reports/, also "
    "logged to the candidate's MLflow run (artifacts backtest/).",
)
def performance_report(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, lake = robo.settings(), robo.lake()
    tracking = Tracking.from_settings(settings)
    summary = lake.read(SUMMARY, BASE.value, POOLED)
    candidates = [
        Candidate(r["version"], r["family"], r["tuned"], r["run_id"], r["is_champion"])
        for r in summary.iter_rows(named=True)
    ]
    cash = settings.trading.initial_cash_usd
    results = [load_result(lake, c.label, cash) for c in candidates]
    reports = build_reports(
        candidates, results, reports_dir=settings.reports_dir, tracking=tracking
    )
    table = metrics_table(reports)
    lake.write(METRICS, BASE.value, POOLED, table)
    lake.write(REGIME_PNL, BASE.value, POOLED, regime_table(reports, cash))
    best = next(r for r in reports if r.candidate.label == table["label"][0])
    shown = ["label", *[c for c in SUMMARY_COLUMNS if c in table.columns]]
    return dg.MaterializeResult(
        metadata={
            "metrics": table_preview(table.select(shown), rows=table.height),
            "best": best.candidate.label,
            "best_version": best.candidate.version,
            "best_tearsheet": dg.MetadataValue.path(str(best.tearsheet)),
            "best_metrics": {k: round(v, 6) for k, v in best.metrics.items()},
            **{f"best_{name}": png_markdown(fig, alt=name) for name, fig in best.figures.items()},
            **{
                f"attribution_{name}": table_preview(frame, rows=20)
                for name, frame in best.tables.items()
            },
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[performance_report],
    kinds={"mlflow"},
    # the weekly retraining decides on the champion by Saturday noon New York
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 12 * * 6",
        lower_bound_delta=timedelta(hours=6),
        timezone="America/New_York",
    ),
    description="Champion promotion: the best contender must pass every gate (history, trades, "
    "deflated Sharpe, drawdown, no regime much worse than the champion, a Sharpe margin); then "
    "the registry alias `champion` moves to it and `previous` to the former champion.",
)
def champion_model(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, lake = robo.settings(), robo.lake()
    tracking = Tracking.from_settings(settings)
    table = lake.read(METRICS, BASE.value, POOLED)
    regimes = lake.read(REGIME_PNL, BASE.value, POOLED)
    scored = []
    for row in table.iter_rows(named=True):
        candidate = Candidate(
            row["version"], row["family"], row["tuned"], row["run_id"], row["is_champion"]
        )
        metrics = {k: float(v) for k, v in row.items() if isinstance(v, int | float)}
        pnl = {
            r["regime"]: r["pnl_fraction"]
            for r in regimes.filter(pl.col("label") == candidate.label).iter_rows(named=True)
        }
        scored.append(Scored(candidate, gate_figures(candidate.label, metrics, pnl)))
    outcome = decide_champion(tracking, scored, settings.promotion)
    context.log.info(outcome.summary)
    champion = current_champion(tracking)
    gate_table = outcome.gate_table()
    return dg.MaterializeResult(
        metadata={
            "decision": outcome.summary,
            "promoted": outcome.promoted,
            "champion": champion.label if champion else "none",
            "champion_version": dg.MetadataValue.url(
                model_version_url(tracking.registered_model, champion.version)
            )
            if champion
            else "none",
            "previous_champion": outcome.champion_before or "none",
            "reasons": list(outcome.reasons),
            "gates": table_preview(gate_table, rows=gate_table.height or 1),
        }
    )


ASSETS = (backtest, performance_report, champion_model)
