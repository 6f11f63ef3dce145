"""Build the research data (bars -> features -> training set -> splits) once into a folder, through
a real Dagster instance, for tests that need it; tests then work on a copy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import defs
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME
from tests.conftest import REPO_ROOT, SMALL_UNIVERSE

RESEARCH_ENV = {
    "ROBO_SYMBOLS": "AAA,BBB",
    "ROBO_START": "2024-01-02",
    "ROBO_END": "2024-03-28",
    "ROBO_SPLIT_N_FOLDS": "2",
    "ROBO_SPLIT_TEST_SESSIONS": "5",
    "ROBO_SPLIT_TRAIN_SESSIONS": "10",
}
RESEARCH_SYMBOLS = ("SP500", "AAA", "BBB")


def run_job(
    job: str, instance: dg.DagsterInstance, key: str | None = None
) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False
    )
    if not result.success:
        raise AssertionError(f"{job} {key or ''} failed")
    return result


@contextmanager
def research_environment(root: Path) -> Iterator[dg.DagsterInstance]:
    """Environment variables of a research universe under ``root`` (data, mlruns, Dagster home)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("ROBO_"):
                mp.delenv(key)
        home = root / "dagster_home"
        home.mkdir(exist_ok=True)
        shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        env = {
            **SMALL_UNIVERSE,
            **RESEARCH_ENV,
            "ROBO_DATA_DIR": str(root / "data"),
            "ROBO_MLRUNS_DIR": str(root / "mlruns"),
            "DAGSTER_HOME": str(home),
        }
        for key, value in env.items():
            mp.setenv(key, value)
        yield dg.DagsterInstance.get()


def build_research_data(instance: dg.DagsterInstance) -> dict[str, bool]:
    """Materialize everything up to the walk-forward splits; returns every check's result."""
    existing = set(instance.get_dynamic_partitions(SYMBOL_PARTITIONS_NAME))
    instance.add_dynamic_partitions(
        SYMBOL_PARTITIONS_NAME, [s for s in RESEARCH_SYMBOLS if s not in existing]
    )
    checks: dict[str, bool] = {}
    for s in RESEARCH_SYMBOLS:
        run_job("market_data_job", instance, s)
    run_job("market_index_job", instance)
    for s in RESEARCH_SYMBOLS:
        result = run_job("features_job", instance, s)
        checks |= {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    result = run_job("training_data_job", instance)
    checks |= {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return checks
