import re
from pathlib import Path

import mlflow
import polars as pl

from robo_assets.tracking import Tracking, code_version, data_fingerprint
from robo_assets.training.tuning import _safe


def _frame(n: int = 5) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "symbol": ["A"] * n,
            "ts": pl.Series(range(n)).cast(pl.Datetime("us", "UTC")),
            "x": [float(i) for i in range(n)],
        }
    )


def test_the_data_fingerprint_is_stable_and_changes_with_any_value() -> None:
    assert data_fingerprint(_frame()) == data_fingerprint(_frame())
    changed = _frame().with_columns(
        pl.when(pl.col("x") == 3.0).then(3.5).otherwise(pl.col("x")).alias("x")
    )
    assert data_fingerprint(changed) != data_fingerprint(_frame())
    assert data_fingerprint(_frame(6)) != data_fingerprint(_frame())


def test_code_version_is_a_commit_or_unknown() -> None:
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?|unknown", code_version())


def test_storage_urls_are_logged_without_passwords() -> None:
    assert _safe("postgresql://robo:s3cret@db:5432/optuna") == "postgresql://***@db:5432/optuna"
    assert _safe("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"


def test_activate_creates_the_experiment_once_with_artifacts_under_mlruns(tmp_path: Path) -> None:
    tracking = Tracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifacts_dir=tmp_path / "artifacts",
        experiment="exp",
        registered_model="m",
    )
    first = tracking.activate()
    assert tracking.activate() == first
    experiment = tracking.client().get_experiment(first)
    assert experiment.artifact_location == (tmp_path / "artifacts").as_uri()
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
    assert tracking.client().get_run(run.info.run_id).data.metrics == {"m": 1.0}
