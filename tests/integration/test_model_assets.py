"""Models through Dagster into a real MLflow store (SQLite) and a real Optuna RDB storage."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import optuna
import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from robo_assets.research_data import POOLED, TRAINING_SET
from tests.research_kit import build_research_data, research_environment, run_job
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.models.zoo import FAMILIES
from trader_runtime.storage.lake import ParquetLake

FAMILY_DISTRIBUTIONS = {
    "random_forest": (),
    "xgboost": ("xgboost-cpu",),
    "lightgbm": ("lightgbm",),
    "mlp": ("torch", "pytorch-lightning"),
}
FAST = {"ROBO_TRAIN_MAX_ROWS": "20000", "ROBO_TUNE_TRIALS": "3"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dg.DagsterInstance]]:
    root = tmp_path_factory.mktemp("models")
    with research_environment(root) as instance, pytest.MonkeyPatch.context() as mp:
        for key, value in FAST.items():
            mp.setenv(key, value)
        build_research_data(instance)
        yield root, instance


def _meta(result: dg.ExecuteInProcessResult, key: str) -> dict[str, object]:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_trained_logged_registered_and_loadable_as_probabilities(
    project: tuple[Path, dg.DagsterInstance], family: str
) -> None:
    root, instance = project
    result = run_job("training_job", instance, family)
    meta = _meta(result, "trained_models")
    assert meta["family"] == family
    assert 0.0 < meta["oos_auc"] < 1.0  # type: ignore[operator]
    uri = str(meta["model_uri"])
    assert uri.startswith("models:/robo-trader/")

    tracking_uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri)
    version = client.get_model_version("robo-trader", uri.rsplit("/", 1)[1])
    assert version.tags["family"] == family
    assert version.tags["feature_set_hash"] == DEFAULT_FEATURE_SET.spec_hash
    assert {"data_fingerprint", "split_spec", "code_version", "oos_auc", "run_id"} <= set(
        version.tags
    )

    run = client.get_run(str(meta["run_id"]))
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert sorted(c.data.params["fold"] for c in children) == ["0", "1"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/calibration.png" in artifacts

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(uri)
    lake = ParquetLake(root / "data" / "lake")
    rows = lake.read(TRAINING_SET, "1m", POOLED).select(DEFAULT_FEATURE_SET.feature_names()).head(7)
    proba = np.asarray(model.predict(rows.to_pandas()))
    assert proba.shape == (7, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)

    # the requirements name what the pickle imports, our estimator classes included
    requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    names = {r.split("==")[0] for r in requirements}
    assert {"mlflow", "robo-trader", "scikit-learn", "cloudpickle", "numpy", "pandas"} <= names
    assert set(FAMILY_DISTRIBUTIONS[family]) <= names
    assert all("==" in r for r in requirements), requirements

    oos = lake.read("oos_predictions", "1m", family)
    assert {"symbol", "ts", "model", "fold", "probability"} <= set(oos.columns)
    assert oos.select(pl.struct("symbol", "ts", "fold").is_unique().all()).item()


def test_tuning_runs_an_optuna_study_in_the_rdb_storage_and_registers_the_best(
    project: tuple[Path, dg.DagsterInstance],
) -> None:
    root, instance = project
    result = run_job("tuning_job", instance, "xgboost")
    meta = _meta(result, "tuned_models")
    storage = f"sqlite:///{root / 'data' / 'optuna.db'}"
    study = optuna.load_study(study_name=str(meta["optuna_study"]), storage=storage)
    assert len(study.trials) == 3
    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    version = client.get_model_version("robo-trader", str(meta["model_uri"]).rsplit("/", 1)[1])
    assert version.tags["tuned"] == "true"
    assert version.tags["optuna_study"] == meta["optuna_study"]
    tune_run = client.get_run(str(meta["tuning_run_id"]))
    trials = client.search_runs(
        [tune_run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{tune_run.info.run_id}'",
    )
    assert len(trials) == 3
    assert {t.data.tags["state"] for t in trials} <= {"complete", "pruned"}
    # a second materialization resumes the same study
    run_job("tuning_job", instance, "xgboost")
    assert len(optuna.load_study(study_name=str(meta["optuna_study"]), storage=storage).trials) == 6
