"""`make run`'s entry point as a user runs it: a subprocess against a fresh Dagster home."""

import subprocess
import sys

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT, RoboEnv
from trader_runtime.storage.lake import ParquetLake

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(480)
def test_pipeline_materializes_the_universe_in_the_project_instance(
    robo_env: RoboEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make run's stages on a small universe and a small model budget."""
    for key, value in {
        "ROBO_START": "2024-01-02",
        "ROBO_END": "2024-03-28",
        "ROBO_SPLIT_N_FOLDS": "2",
        "ROBO_SPLIT_TEST_SESSIONS": "5",
        "ROBO_SPLIT_TRAIN_SESSIONS": "10",
        "ROBO_TRAIN_MAX_ROWS": "5000",
        "ROBO_TUNE_TRIALS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    log = robo_env.root / "pipeline.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestration.pipeline"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=420,
            check=False,
        )
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "[1/2] SP500" in text
    assert "[2/2] AAA" in text
    assert "[stage 7/8] backtest" in text
    assert "[stage 8/8] live trading" in text
    assert "390 bars" in text
    assert "decisions" in text
    assert "fills" in text
    assert "tear sheet:" in text
    assert "champion:" in text
    assert list((robo_env.data_dir / "reports").glob("*-v*.html")), "no tear sheet written"
    assert text.count("-> models:/robo-trader/") == 8  # four families, trained and tuned
    assert "2 expanding folds" in text
    assert "checks not passed" not in text
    assert "where to look" in text
    assert "DEBUG" not in text  # Dagster's event log stays in the UI, not the terminal
    assert "cloudpickle format" not in text  # MLflow's notice of the chosen format, once a model
    assert "RuntimeWarning" not in text

    lake = ParquetLake(robo_env.data_dir / "lake")
    assert lake.symbols("bars", "1d") == ["AAA", "SP500"]
    assert lake.symbols("bars", "1m") == ["AAA"]

    instance = dg.DagsterInstance.from_config(str(robo_env.dagster_home))
    runs = instance.get_runs()
    per_symbol = [r for r in runs if r.tags.get("dagster/partition") in ("AAA", "SP500")]
    assert sorted(r.tags["dagster/partition"] for r in per_symbol) == [
        "AAA",
        "AAA",
        "SP500",
        "SP500",
    ]
    assert {r.job_name for r in runs} == {
        "market_data_job",
        "market_index_job",
        "features_job",
        "training_data_job",
        "training_job",
        "tuning_job",
        "backtest_job",
        "live_trading",
    }
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert sorted(instance.get_dynamic_partitions("symbols")) == ["AAA", "SP500"]


def test_dagster_cli_sees_the_project_definitions(robo_env: RoboEnv) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "list", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "market_data_job" in listed.stdout
