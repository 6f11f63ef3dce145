"""``make run``: materialize the pipeline on the configured universe in the project's Dagster
instance, one stage at a time, printing progress.

Runs are ordinary Dagster runs (they show in the UI under their job), executed in this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import dagster as dg

from orchestration.definitions import defs
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME
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


def run_market_data(instance: dg.DagsterInstance, symbols: Sequence[str]) -> bool:
    job = defs.resolve_job_def("market_data_job")
    ok = True
    for i, symbol in enumerate(symbols, start=1):
        started = time.perf_counter()
        result = job.execute_in_process(
            instance=instance,
            partition_key=symbol,
            run_config=QUIET_RUN_CONFIG,
            raise_on_error=False,
            tags={"robo/stage": "market_data", "robo/launched_by": "make run"},
        )
        elapsed_s = time.perf_counter() - started
        if not result.success:
            ok = False
            failures = [
                e.message or "" for e in result.all_events if e.is_failure or e.is_step_failure
            ]
            _say(
                f"  [{i}/{len(symbols)}] {symbol}: FAILED in {elapsed_s:.1f}s (run {result.run_id})"
            )
            for message in failures[:3]:
                _say(f"      {message.strip()[:300]}")
            continue
        meta = result.asset_materializations_for_node("bars")[0].metadata
        rows = meta["rows_by_timeframe"].value
        quarantined = meta["quarantined_rows"].value
        failed_checks = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
        _say(
            f"  [{i}/{len(symbols)}] {symbol:<7} {meta['source'].value:<14} "
            f"bars {rows}  quarantined {quarantined}"
            f"{'  warnings: ' + ', '.join(failed_checks) if failed_checks else ''}"
            f"  ({elapsed_s:.1f}s)"
        )
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.pipeline", description=__doc__)
    parser.add_argument("--symbols", nargs="*", help="limit to these symbols of the universe")
    args = parser.parse_args(argv)

    settings = RoboSettings.from_overrides()
    symbols = list(args.symbols) if args.symbols else list(settings.universe)
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    _say(f"robo-trader pipeline: {len(symbols)} symbols, Dagster home {instance.root_directory}")
    new = register_universe(instance, symbols)
    if new:
        _say(f"  registered symbol partitions: {', '.join(new)}")

    _say("[stage 1/1] market data: raw_bars -> bars (validate, quarantine, resample)")
    ok = run_market_data(instance, symbols)

    _say(f"done in {time.perf_counter() - started:.0f}s{'' if ok else ' WITH FAILURES'}")
    _say("where to look:")
    _say("  Dagster UI:  make ui  ->  http://127.0.0.1:3000 (assets, runs, checks, plots)")
    _say(f"  bars:        {settings.lake_dir}/bars/<timeframe>/<symbol>/data.parquet")
    _say(f"  quarantine:  {settings.warehouse_path} (table quarantine)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
