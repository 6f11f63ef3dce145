"""``make run``: materialize the pipeline on the configured universe in the project's Dagster
instance, one stage at a time, printing progress.

Runs are ordinary Dagster runs (they show in the UI under their job), executed in this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import dagster as dg

from orchestration.definitions import defs
from robo_assets.live_assets import champion_version
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME
from trader_runtime.models.zoo import FAMILIES
from trader_runtime.settings import RoboSettings

# The terminal shows one line per run; Dagster's own event log stays complete in the UI.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _say(text: str) -> None:
    print(text, flush=True)


def register_universe(instance: dg.DagsterInstance, symbols: Sequence[str]) -> list[str]:
    existing = set(instance.get_dynamic_partitions(SYMBOL_PARTITIONS_NAME))
    new = [s for s in symbols if s not in existing]
    if new:
        instance.add_dynamic_partitions(SYMBOL_PARTITIONS_NAME, new)
    return new


def _failed(result: dg.ExecuteInProcessResult) -> list[str]:
    return [
        (e.message or "").strip()[:300]
        for e in result.all_events
        if e.is_failure or e.is_step_failure
    ]


def _warnings(result: dg.ExecuteInProcessResult) -> str:
    names = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    return f"  checks not passed: {', '.join(names)}" if names else ""


def _execute(
    job_name: str, instance: dg.DagsterInstance, partition_key: str | None
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=partition_key,
        run_config=QUIET_RUN_CONFIG,
        raise_on_error=False,
        tags={"robo/launched_by": "make run"},
    )


def run_per_partition(
    job_name: str,
    instance: dg.DagsterInstance,
    keys: Sequence[str],
    describe: Callable[[dg.ExecuteInProcessResult], str],
) -> bool:
    """Run a partitioned job once per partition key, one terminal line each; False if any failed."""
    ok = True
    for i, key in enumerate(keys, start=1):
        started = time.perf_counter()
        result = _execute(job_name, instance, key)
        elapsed_s = time.perf_counter() - started
        prefix = f"  [{i}/{len(keys)}] {key:<7}"
        if not result.success:
            ok = False
            _say(f"{prefix} FAILED in {elapsed_s:.1f}s (run {result.run_id})")
            for message in _failed(result)[:3]:
                _say(f"      {message}")
            continue
        _say(f"{prefix} {describe(result)}{_warnings(result)}  ({elapsed_s:.1f}s)")
    return ok


def run_once(
    job_name: str,
    instance: dg.DagsterInstance,
    describe: Callable[[dg.ExecuteInProcessResult], str],
) -> bool:
    started = time.perf_counter()
    return _report(job_name, _execute(job_name, instance, None), describe, started)


def _report(
    job_name: str,
    result: dg.ExecuteInProcessResult,
    describe: Callable[[dg.ExecuteInProcessResult], str],
    started: float,
) -> bool:
    """One terminal line for a finished run; False if it failed."""
    elapsed_s = time.perf_counter() - started
    if not result.success:
        _say(f"  {job_name} FAILED (run {result.run_id})")
        for message in _failed(result)[:3]:
            _say(f"      {message}")
        return False
    _say(f"  {describe(result)}{_warnings(result)}  ({elapsed_s:.1f}s)")
    return True


def _meta(result: dg.ExecuteInProcessResult, node: str) -> Mapping[str, dg.MetadataValue]:  # type: ignore[type-arg]
    return result.asset_materializations_for_node(node)[0].metadata


def _describe_bars(result: dg.ExecuteInProcessResult) -> str:
    meta = _meta(result, "bars")
    return (
        f"{meta['source'].value:<14} bars {meta['rows_by_timeframe'].value}  "
        f"quarantined {meta['quarantined_rows'].value}"
    )


def _describe_index(result: dg.ExecuteInProcessResult) -> str:
    text = f"market_index rows {_meta(result, 'market_index')['rows_by_timeframe'].value}"
    regimes = _meta(result, "market_regimes")
    scores = [
        f"{key.removeprefix('macro_f1_')} macro-F1 {value.value:.3f}"
        for key, value in regimes.items()
        if key.startswith("macro_f1_")
    ]
    return text + "; market_regimes" + (f" ({', '.join(scores)} vs true regimes)" if scores else "")


def _describe_features(result: dg.ExecuteInProcessResult) -> str:
    f, lab = _meta(result, "features"), _meta(result, "labels")
    return (
        f"{f['n_features'].value} features x {f['dagster/row_count'].value} rows "
        f"(set {f['feature_set_hash'].value}), labels positive rate "
        f"{lab['positive_rate'].value:.2f}"
    )


def _describe_model(node: str) -> Callable[[dg.ExecuteInProcessResult], str]:
    def describe(result: dg.ExecuteInProcessResult) -> str:
        meta = _meta(result, node)
        return (
            f"OOS AUC {meta['oos_auc'].value:.4f}  log loss {meta['oos_log_loss'].value:.4f}  "
            f"IC {meta['oos_ic'].value:+.4f}  -> {meta['model_uri'].value}"
        )

    return describe


def _describe_training(result: dg.ExecuteInProcessResult) -> str:
    t, s = _meta(result, "training_set"), _meta(result, "walk_forward_splits")
    return (
        f"training_set {t['dagster/row_count'].value} rows x {t['n_features'].value} features, "
        f"{s['n_folds'].value} {s['scheme'].value} folds (purge {s['purge_bars'].value}, "
        f"embargo {s['embargo_bars'].value} bars)"
    )


def _describe_backtest(result: dg.ExecuteInProcessResult) -> str:
    report, champion = _meta(result, "performance_report"), _meta(result, "champion_model")
    best = report["best_metrics"].value
    return (
        f"best {report['best'].value}: Sharpe {best.get('sharpe', float('nan')):.2f}, "
        f"deflated Sharpe {best.get('deflated_sharpe', float('nan')):.2f}, "
        f"{int(best.get('n_trades', 0))} trades, max drawdown "
        f"{best.get('max_drawdown', float('nan')):.2%}\n"
        f"  tear sheet: {report['best_tearsheet'].value}\n"
        f"  champion: {champion['decision'].value}"
    )


def live_demo_config(
    backtest: dg.ExecuteInProcessResult | None, settings: RoboSettings, max_bars: int
) -> tuple[dict[str, object], str]:
    """Run config of the closing paper session, and what it trades: the champion, or, when no
    version passed the gates, the best backtested candidate, named as such (paper only)."""
    live: dict[str, object] = {
        "max_bars": max_bars,
        "speed": 0.0,
        "observation_interval_s": 5.0,
        "resume": False,
    }
    if champion_version(settings) is not None:
        return live, "the champion"
    if backtest is None:
        raise RuntimeError("no champion and no backtest to pick a candidate from")
    report = _meta(backtest, "performance_report")
    live["model_version"] = str(report["best_version"].value)
    return live, (
        f"{report['best'].value} (no version passed the gates: the best candidate, on paper only)"
    )


def run_live_demo(
    instance: dg.DagsterInstance,
    settings: RoboSettings,
    backtest: dg.ExecuteInProcessResult | None,
    max_bars: int,
) -> bool:
    live, what = live_demo_config(backtest, settings, max_bars)
    _say(f"  trading {what}")
    started = time.perf_counter()
    result = defs.resolve_job_def("live_trading").execute_in_process(
        instance=instance,
        run_config={
            **QUIET_RUN_CONFIG,
            "ops": {"live_trading_session": {"config": live}},
        },
        raise_on_error=False,
        tags={"robo/launched_by": "make run"},
    )
    if not result.success:
        _say(f"  FAILED: {'; '.join(_failed(result)) or 'see the run in the Dagster UI'}")
        return False
    m = _meta(result, "live_trading_session")
    _say(
        f"  session {m['session_id'].value}: {m['bars'].value} bars, {m['decisions'].value} "
        f"decisions, {m['orders'].value} orders, {m['fills'].value} fills, "
        f"{m['round_trips'].value} round trips; equity {m['equity_start_usd'].value:,.2f} -> "
        f"{m['equity_end_usd'].value:,.2f} USD (P&L {m['pnl_usd'].value:,.2f}, commissions "
        f"{m['commission_usd'].value:,.2f}, slippage vs arrival "
        f"{m['slippage_vs_arrival_bps'].value:.2f} bp) in {time.perf_counter() - started:.0f}s"
    )
    _say(f"  journal: {settings.data_dir / 'live' / 'journal.duckdb'}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.pipeline", description=__doc__)
    parser.add_argument("--symbols", nargs="*", help="limit to these symbols of the universe")
    parser.add_argument(
        "--live-bars", type=int, default=390, help="bars of the closing paper session"
    )
    args = parser.parse_args(argv)

    settings = RoboSettings.from_overrides()
    symbols = list(args.symbols) if args.symbols else list(settings.universe)
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    _say(f"robo-trader pipeline: {len(symbols)} symbols, Dagster home {instance.root_directory}")
    new = register_universe(instance, symbols)
    if new:
        _say(f"  registered symbol partitions: {', '.join(new)}")

    ok = True
    stages = 8
    backtest: dg.ExecuteInProcessResult | None = None
    _say(f"[stage 1/{stages}] market data: raw_bars -> bars (validate, quarantine, resample)")
    ok &= run_per_partition("market_data_job", instance, symbols, _describe_bars)
    if ok:
        _say(f"[stage 2/{stages}] market index (equal-weighted) and market regimes")
        ok &= run_once("market_index_job", instance, _describe_index)
    if ok:
        _say(f"[stage 3/{stages}] features and labels")
        ok &= run_per_partition("features_job", instance, symbols, _describe_features)
    if ok:
        _say(f"[stage 4/{stages}] training set and walk-forward splits (leakage checks)")
        ok &= run_once("training_data_job", instance, _describe_training)
    if ok:
        _say(f"[stage 5/{stages}] models: walk-forward training, MLflow runs, registry")
        ok &= run_per_partition(
            "training_job", instance, FAMILIES, _describe_model("trained_models")
        )
    if ok:
        _say(f"[stage 6/{stages}] tuning: Optuna ({settings.tune_trials} trials per family)")
        ok &= run_per_partition("tuning_job", instance, FAMILIES, _describe_model("tuned_models"))
    if ok:
        _say(
            f"[stage 7/{stages}] backtest every candidate and the champion, performance report, "
            "champion promotion"
        )
        started_s = time.perf_counter()
        backtest = _execute("backtest_job", instance, None)
        ok &= _report("backtest_job", backtest, _describe_backtest, started_s)
    if ok:
        _say(
            f"[stage 8/{stages}] live trading: a bounded paper session "
            f"({args.live_bars} one-minute bars) on the synthetic market after the research period"
        )
        ok &= run_live_demo(instance, settings, backtest, args.live_bars)

    _say(f"done in {time.perf_counter() - started:.0f}s{'' if ok else ' WITH FAILURES'}")
    _say("where to look:")
    _say("  Dagster UI:  make ui  ->  http://127.0.0.1:3000 (assets, runs, checks, plots)")
    _say(f"  lake:        {settings.lake_dir}/<dataset>/<timeframe>/<symbol>/data.parquet")
    _say(
        "               datasets: bars, market_index, features, labels, training_set, "
        "walk_forward_splits, oos_predictions, backtest_*, performance_*"
    )
    _say(f"  quarantine:  {settings.warehouse_path} (table quarantine)")
    _say(f"  tear sheets: {settings.reports_dir}/<model>-v<version>.html")
    _say(
        "  MLflow UI:   make ui  ->  http://127.0.0.1:5000 (runs, registered model "
        f"'{settings.registered_model}')"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
