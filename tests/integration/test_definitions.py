"""The whole Definitions loads, and its graph is what the docs say (catches stale imports/docs);
the ``dagster`` CLI lists its schedules and sensors from workspace.yaml."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import defs
from tests.conftest import REPO_ROOT


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == [
        "backtest",
        "bars",
        "champion_model",
        "features",
        "labels",
        "live_trading_session",
        "market_index",
        "market_regimes",
        "model_drift",
        "oos_predictions",
        "performance_report",
        "raw_bars",
        "trained_models",
        "training_set",
        "tuned_models",
        "walk_forward_splits",
    ]
    parents = {
        k: sorted(p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys) for k in keys
    }
    assert parents == {
        "raw_bars": [],
        "bars": ["raw_bars"],
        "market_index": ["bars"],
        "features": ["bars", "market_index"],
        "labels": ["bars"],
        "training_set": ["features", "labels"],
        "walk_forward_splits": ["training_set"],
        "trained_models": ["training_set", "walk_forward_splits"],
        "oos_predictions": ["training_set", "walk_forward_splits"],
        "tuned_models": ["training_set", "walk_forward_splits"],
        "market_regimes": ["bars", "market_index"],
        "backtest": [
            "bars",
            "features",
            "market_regimes",
            "oos_predictions",
            "trained_models",
            "training_set",
            "tuned_models",
        ],
        "performance_report": ["backtest"],
        "champion_model": ["performance_report"],
        "live_trading_session": ["champion_model"],
        "model_drift": ["champion_model", "features", "labels", "training_set"],
    }
    checks = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    assert checks == [
        "bars:calendar_gaps",
        "bars:ohlc_consistent",
        "bars:prices_finite_positive",
        "bars:quarantine_rate",
        "bars:timestamps_unique_increasing",
        "bars:volume_non_negative",
        "features:features_match_spec",
        "raw_bars:raw_bars_schema",
        "training_set:no_future_information",
        "walk_forward_splits:purge_covers_label_horizon",
        "walk_forward_splits:splits_disjoint_including_label_windows",
    ]


def test_checks_that_guard_downstream_data_are_blocking() -> None:
    graph = defs.resolve_asset_graph()
    blocking = sorted(
        key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking
    )
    assert blocking == [
        "features_match_spec",
        "no_future_information",
        "ohlc_consistent",
        "prices_finite_positive",
        "purge_covers_label_horizon",
        "raw_bars_schema",
        "splits_disjoint_including_label_windows",
        "timestamps_unique_increasing",
        "volume_non_negative",
    ]


def test_jobs_schedules_and_sensors_are_registered() -> None:
    for job in (
        "market_data_job",
        "market_index_job",
        "features_job",
        "training_data_job",
        "training_job",
        "tuning_job",
        "backtest_job",
        "retrain_job",
        "live_trading",
    ):
        assert defs.resolve_job_def(job).name == job
    schedules = {
        name: (
            defs.resolve_schedule_def(name).job_name,
            defs.resolve_schedule_def(name).cron_schedule,
        )
        for name in ("market_data_schedule", "weekly_retrain_schedule")
    }
    assert schedules == {
        "market_data_schedule": ("market_data_job", "30 16 * * 1-5"),
        "weekly_retrain_schedule": ("retrain_job", "0 6 * * 6"),
    }
    for sensor in (
        "universe_sensor",
        "champion_reload_sensor",
        "automation_condition_sensor",
        "drift_retrain_sensor",
    ):
        assert defs.resolve_sensor_def(sensor).name == sensor
    assert defs.resolve_sensor_def("drift_retrain_sensor").job_name == "retrain_job"


def test_automation_conditions_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    labels = {
        k.to_user_string(): graph.get(k).automation_condition.get_label()  # type: ignore[union-attr]
        for k in graph.get_all_asset_keys()
        if graph.get(k).automation_condition is not None
    }
    assert labels == {
        "market_index": "eager (missing symbols allowed)",
        "features": "eager on market_index",
        "labels": "eager",
        "market_regimes": "eager on market_index",
        "trained_models": "after a retrain_job run",
        "oos_predictions": "after a retrain_job run",
        "tuned_models": "after a retrain_job run",
        "backtest": "after retrained models",
        "performance_report": "with its upstream",
        "champion_model": "with its upstream",
        "model_drift": "weekdays 19:00 New York",
    }


# -- the dagster CLI -----------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def cli_listings(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[subprocess.Popen[str], Path]]]:
    """``dagster schedule list`` and ``dagster sensor list`` on a copy of the project's
    dagster.yaml. Each loads the code location in a server of its own (the slow part), so both
    start with this module's first test and run while the others do; output goes to files."""
    home = tmp_path_factory.mktemp("cli_home")
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    # create the instance's SQLite storage once: two processes creating it at once race on its
    # schema ("more than one head")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        dg.DagsterInstance.from_config(str(home)).dispose()
    dagster = str(REPO_ROOT / ".venv" / "bin" / "dagster")
    procs: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    try:
        for kind in ("schedule", "sensor"):
            log = home / f"{kind}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [dagster, kind, "list", "-w", "workspace.yaml"],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            procs[kind] = (proc, log)
        yield procs
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_dagster_cli_lists_the_schedules_and_sensors(
    cli_listings: dict[str, tuple[subprocess.Popen[str], Path]],
) -> None:
    output = {}
    for kind, (proc, log) in cli_listings.items():
        assert proc.wait(timeout=300) == 0, log.read_text()
        output[kind] = log.read_text()
    schedules, sensors = output["schedule"], output["sensor"]
    assert "Schedule: market_data_schedule [RUNNING]" in schedules
    assert "Cron Schedule: 30 16 * * 1-5" in schedules
    assert "Schedule: weekly_retrain_schedule [RUNNING]" in schedules
    assert "Cron Schedule: 0 6 * * 6" in schedules
    for name in (
        "automation_condition_sensor",
        "champion_reload_sensor",
        "drift_retrain_sensor",
        "universe_sensor",
    ):
        assert f"Sensor: {name} [RUNNING]" in sensors
