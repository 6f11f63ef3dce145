"""The team deployment profile (deploy/team) against a real PostgreSQL server started on loopback
for this module: MLflow's backend store, Optuna's study storage and the Dagster instance all in
PostgreSQL, artifacts and the Parquet lake on a shared path.

Training and tuning run in worker processes, as they would on several machines; this process only
reads what they left in PostgreSQL and on the shared path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import optuna
import polars as pl
import psycopg2  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from orchestration.definitions import defs
from robo_assets.labels import LabelSpec, compute_labels
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME
from robo_assets.resources import RoboSettingsResource
from robo_assets.splits import WalkForwardSpec, assign_folds, walk_forward_folds
from tests.conftest import REPO_ROOT
from tests.features_kit import minute_bars
from tests.pg_kit import PostgresServer
from trader_runtime.storage.lake import ParquetLake

# the PostgreSQL profile: starts a real server (and worker processes)
pytestmark = pytest.mark.e2e

TEAM_DIR = REPO_ROOT / "deploy" / "team"
DATABASES = ("dagster", "mlflow", "optuna")  # Dagster and MLflow both have a `runs` table
FEATURES = ("ret_1", "ret_5", "ret_15", "hl_range")
MODEL = "robo-trader"
TRIALS_PER_WORKER = 2
WORKER_TIMEOUT_S = 240

# What a training or tuning machine runs: the project's own train_family / tune_family against the
# PostgreSQL stores, inputs and artifacts on the shared path. All three workers start together; the
# trainer is the first client of the fresh MLflow database (it creates the schema and experiment),
# and the tuners wait at a barrier for it and for each other, so they optimize one study at once.
WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import mlflow
    import polars as pl

    from robo_assets.tracking import Tracking
    from robo_assets.training.tracked import Lineage, train_family
    from robo_assets.training.tuning import tune_family

    job = json.loads(sys.argv[1])
    shared = Path(job["shared"])
    data = pl.read_parquet(shared / "inputs" / "training_set.parquet")
    assignment = pl.read_parquet(shared / "inputs" / "assignment.parquet")
    tracking = Tracking(
        tracking_uri=job["tracking_uri"],
        artifacts_dir=shared / "mlruns" / "artifacts",
        experiment="robo-trader",
        registered_model=job["model"],
    )
    lineage = Lineage.of(data, feature_set_hash="team-profile", split_spec={}, label_spec={})
    features = job["features"]
    if job["mode"] == "train":
        tracking.activate()  # creates MLflow's schema and the experiment in the fresh database
        Path(job["ready"]).touch()
        out = train_family(
            "random_forest", data, assignment, features, tracking=tracking, lineage=lineage
        )
        model = mlflow.pyfunc.load_model(out.model_uri)
        proba = model.predict(data.select(features).head(4).to_pandas())
        result = {"run_id": out.run_id, "version": out.model_version, "proba": proba.tolist()}
    else:
        Path(job["ready"]).touch()
        deadline = time.monotonic() + 120
        while not all(Path(p).exists() for p in job["wait_for"]):
            if time.monotonic() > deadline:
                sys.exit("the other workers never came")
            time.sleep(0.05)
        out = tune_family(
            "random_forest", data, assignment, features, tracking=tracking, lineage=lineage,
            storage_url=job["storage_url"], n_trials=job["n_trials"], timeout_s=180,
            seed=job["seed"],
        )
        result = {"parent_run_id": out.parent_run_id, "study_name": out.study_name}
    Path(job["out"]).write_text(json.dumps(result))
    """
)


@dataclass(frozen=True)
class Team:
    """The PostgreSQL server and the shared path of one team deployment under test."""

    pg: PostgresServer
    shared: Path

    @property
    def artifacts_dir(self) -> Path:
        return self.shared / "mlruns" / "artifacts"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    shared = tmp_path_factory.mktemp("robo-shared")
    _write_training_inputs(shared / "inputs")
    with PostgresServer() as pg:
        for name in DATABASES:
            pg.create_database(name)
        yield Team(pg=pg, shared=shared)


def _write_training_inputs(folder: Path) -> None:
    """A tiny pooled training set (two synthetic symbols, two weeks of minute bars, four causal
    features) and its walk-forward assignment from the project's splitter."""
    frames = []
    for symbol in ("AAA", "BBB"):
        bars = minute_bars(symbol, date(2024, 10, 1), date(2024, 10, 15))
        log_close = pl.col("close").log()
        feats = bars.select(
            "symbol",
            "ts",
            ret_1=log_close.diff(),
            ret_5=log_close.diff(5),
            ret_15=log_close.diff(15),
            hl_range=(pl.col("high") / pl.col("low")).log(),
        )
        frames.append(feats.join(compute_labels(bars, LabelSpec()), on=["symbol", "ts"]))
    pooled = pl.concat(frames).drop_nulls(["target", "label_end_ts"]).sort("ts", "symbol")
    spec = WalkForwardSpec(n_folds=2, test_sessions=3, train_sessions=4)
    folder.mkdir(parents=True)
    pooled.write_parquet(folder / "training_set.parquet")
    assign_folds(pooled, walk_forward_folds(pooled["ts"], spec)).write_parquet(
        folder / "assignment.parquet"
    )


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBO_", "MLFLOW_"))}
    return env | {"OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@dataclass(frozen=True)
class WorkerResults:
    """What the trainer and the two tuners reported (run ids, model version, study name)."""

    train: dict[str, Any]
    tune: tuple[dict[str, Any], ...]
    storage_url: str


def _start_worker(team: Team, name: str, **job: Any) -> tuple[subprocess.Popen[bytes], Path]:
    folder = team.shared / "workers"
    folder.mkdir(exist_ok=True)
    job |= {
        "shared": str(team.shared),
        "tracking_uri": team.pg.url(db="mlflow"),
        "model": MODEL,
        "features": list(FEATURES),
        "ready": str(folder / f"{name}.ready"),
        "out": str(folder / f"{name}.json"),
    }
    with (folder / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(job)],
            cwd=REPO_ROOT,
            env=_worker_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, folder / f"{name}.json"


def _finish_workers(workers: list[tuple[subprocess.Popen[bytes], Path]]) -> list[dict[str, Any]]:
    """Wait for every worker; a failed one fails the test with its log (the rest are killed)."""
    try:
        for proc, out in workers:
            code = proc.wait(timeout=WORKER_TIMEOUT_S)
            if code != 0:
                log = out.with_suffix(".log").read_text(errors="replace")
                pytest.fail(f"worker {out.stem} failed ({code}):\n{log[-4000:]}")
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [json.loads(out.read_text()) for _, out in workers]


@pytest.fixture(scope="module")
def worker_results(team: Team) -> WorkerResults:
    """A trainer and two tuners, three processes at once, against the PostgreSQL stores."""
    storage_url = team.pg.url(db="optuna")
    # Optuna's tables are created once, like any database schema a team deploys; the tuners then
    # race only to create the study itself (load_if_exists)
    optuna.storages.RDBStorage(storage_url).remove_session()
    ready = [str(team.shared / "workers" / f"{name}.ready") for name in ("train", "tune0", "tune1")]
    workers = [_start_worker(team, "train", mode="train")] + [
        _start_worker(
            team,
            f"tune{i}",
            mode="tune",
            storage_url=storage_url,
            n_trials=TRIALS_PER_WORKER,
            seed=i,  # each tuner its own sampler seed, or their random start-up trials coincide
            wait_for=ready,
        )
        for i in (0, 1)
    ]
    train, *tune = _finish_workers(workers)
    return WorkerResults(train=train, tune=tuple(tune), storage_url=storage_url)


def test_mlflow_runs_and_model_versions_land_in_postgres(
    team: Team, worker_results: WorkerResults
) -> None:
    pg = team.pg
    trained = worker_results.train
    [(status, artifact_uri, experiment)] = pg.query(
        "SELECT r.status, r.artifact_uri, e.name FROM runs r "
        "JOIN experiments e ON e.experiment_id = r.experiment_id WHERE r.run_uuid = %s",
        [trained["run_id"]],
        db="mlflow",
    )
    assert (status, experiment) == ("FINISHED", "robo-trader")
    assert artifact_uri.startswith(team.artifacts_dir.as_uri())
    folds = pg.query(
        "SELECT r.name, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE t.key = 'mlflow.parentRunId' AND t.value = %s ORDER BY r.name",
        [trained["run_id"]],
        db="mlflow",
    )
    assert folds == [("random_forest-fold0", "FINISHED"), ("random_forest-fold1", "FINISHED")]
    metrics = dict(
        pg.query(
            "SELECT key, value FROM latest_metrics WHERE run_uuid = %s",
            [trained["run_id"]],
            db="mlflow",
        )
    )
    assert 0.0 < metrics["oos_auc"] < 1.0
    versions = pg.query(
        "SELECT name, version, run_id, status FROM model_versions WHERE name = %s",
        [MODEL],
        db="mlflow",
    )
    assert versions == [(MODEL, int(trained["version"]), trained["run_id"], "READY")]
    version_tags = dict(
        pg.query(
            "SELECT key, value FROM model_version_tags WHERE name = %s AND version = %s",
            [MODEL, int(trained["version"])],
            db="mlflow",
        )
    )
    assert version_tags["family"] == "random_forest"
    assert version_tags["run_id"] == trained["run_id"]
    # the model files are on the shared path, and the worker loaded them back through the registry
    assert any(team.artifacts_dir.rglob("MLmodel"))
    assert any(team.artifacts_dir.rglob("oos_predictions.parquet"))
    for p_down, p_up in trained["proba"]:
        assert p_down + p_up == pytest.approx(1.0)


def test_two_optuna_worker_processes_share_one_study_in_postgres(
    team: Team, worker_results: WorkerResults
) -> None:
    results = worker_results.tune
    storage_url = worker_results.storage_url
    [study_name] = {r["study_name"] for r in results}
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(2 * TRIALS_PER_WORKER))
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert {t.state for t in study.trials} <= finished
    assert study.best_value < 0.75  # a log loss of a probability, not a failure value

    # which worker ran which trial: each trial is a nested MLflow run under its worker's parent run
    by_worker = [
        {
            int(name.rsplit("trial", 1)[1])
            for (name,) in team.pg.query(
                "SELECT r.name FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "WHERE t.key = 'mlflow.parentRunId' AND t.value = %s",
                [r["parent_run_id"]],
                db="mlflow",
            )
        }
        for r in results
    ]
    assert [len(trials) for trials in by_worker] == [TRIALS_PER_WORKER, TRIALS_PER_WORKER]
    assert by_worker[0].isdisjoint(by_worker[1])
    assert by_worker[0] | by_worker[1] == set(numbers)
    # the two workers optimized at the same time, not one after the other
    spans = [_span([t for t in study.trials if t.number in trials]) for trials in by_worker]
    assert spans[0][0] < spans[1][1]
    assert spans[1][0] < spans[0][1]
    # and it is PostgreSQL that holds them
    [(stored,)] = team.pg.query(
        "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
        "WHERE s.study_name = %s",
        [study_name],
        db="optuna",
    )
    assert stored == 2 * TRIALS_PER_WORKER


def _span(trials: list[optuna.trial.FrozenTrial]) -> tuple[datetime, datetime]:
    """When the first of ``trials`` started and the last one finished."""
    starts = [t.datetime_start for t in trials]
    ends = [t.datetime_complete for t in trials]
    assert None not in starts
    assert None not in ends
    return min(s for s in starts if s), max(e for e in ends if e)


def test_a_dagster_run_completes_on_the_team_instance(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg = team.pg
    for key in list(os.environ):
        if key.startswith("ROBO_"):
            monkeypatch.delenv(key)
    env = {
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_USER": pg.user,
        "DAGSTER_PG_PASSWORD": pg.password,
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_SHARED_DIR": str(team.shared / "dagster"),
        "DAGSTER_COMPUTE_LOGS_DIR": str(team.shared / "dagster" / "compute_logs"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    robo = RoboSettingsResource(
        data_dir=str(team.shared / "data"),
        mlruns_dir=str(team.shared / "mlruns"),
        symbols=["AAA"],
        index_symbols=[],
        start="2024-03-04",
        end="2024-03-06",
    )
    instance = dg.DagsterInstance.from_config(str(TEAM_DIR))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        instance.add_dynamic_partitions(SYMBOL_PARTITIONS_NAME, ["AAA"])
        result = defs.resolve_job_def("market_data_job").execute_in_process(
            instance=instance,
            partition_key="AAA",
            resources={"robo": robo},
            raise_on_error=False,
        )
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks
        assert all(checks.values()), checks
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert run.status == dg.DagsterRunStatus.SUCCESS
        materialized = instance.get_latest_materialization_event(dg.AssetKey("bars"))
        assert materialized is not None
        assert materialized.run_id == result.run_id
    finally:
        instance.dispose()

    # the run, its partition and the symbol partition are rows in PostgreSQL ...
    assert pg.query(
        "SELECT pipeline_name, status, partition FROM runs WHERE run_id = %s",
        [result.run_id],
        db="dagster",
    ) == [("market_data_job", "SUCCESS", "AAA")]
    assert pg.query(
        "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s",
        [SYMBOL_PARTITIONS_NAME],
        db="dagster",
    ) == [("AAA",)]
    # ... and the bars it wrote are in the lake on the shared path
    lake = ParquetLake(team.shared / "data" / "lake")
    assert lake.read("bars", "1d", "AAA").height == 3  # 2024-03-04 .. 2024-03-06


def _env_vars_read_by(config: Any) -> set[str]:
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return {config["env"]}
        return set().union(*(_env_vars_read_by(v) for v in config.values()))
    return set()


def test_env_example_lists_every_variable_the_instance_reads_with_placeholder_secrets() -> None:
    instance_vars = _env_vars_read_by(yaml.safe_load((TEAM_DIR / "dagster.yaml").read_text()))
    assert "DAGSTER_PG_PASSWORD" in instance_vars
    lines = (TEAM_DIR / "env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert instance_vars <= set(example)
    assert {"ROBO_DATA_DIR", "ROBO_MLRUNS_DIR", "ROBO_OPTUNA_STORAGE"} <= set(example)
    for name, value in example.items():
        if "PASSWORD" in name:
            assert re.fullmatch(r"<[a-z-]+>", value), name
        if "://" in value:
            assert value.startswith("postgresql+psycopg2://robo:<robo-db-password>@"), name


class _BodyFailedError(Exception):
    pass


def test_the_test_server_is_stopped_and_removed_even_when_the_body_fails() -> None:
    server = PostgresServer(db="scratch")
    seen: list[tuple[Path, int]] = []

    def failing_body() -> None:
        with server:
            seen.append((server.root, server.port))
            assert server.query("SELECT current_user, current_database()") == [("robo", "scratch")]
            raise _BodyFailedError

    with pytest.raises(_BodyFailedError):
        failing_body()
    [(root, port)] = seen
    assert not root.exists()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(
            host="127.0.0.1", port=port, user="robo", password=server.password, connect_timeout=5
        )
