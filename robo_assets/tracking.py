"""MLflow set-up and lineage tags: one place that knows where runs and models go.

Tracking store ``sqlite:///<mlruns>/mlflow.db``, artifacts under ``<mlruns>/artifacts``, one
experiment, one registered model whose versions carry the family, metrics and gate results as tags.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import mlflow
import polars as pl
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trader_runtime.settings import RoboSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
# artifact downloads (a model version's OOS predictions) would draw progress bars in the terminal
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True, slots=True)
class Tracking:
    tracking_uri: str
    artifacts_dir: Path
    experiment: str
    registered_model: str

    @classmethod
    def from_settings(cls, settings: RoboSettings) -> Tracking:
        return cls(
            tracking_uri=settings.mlflow_tracking_uri,
            artifacts_dir=settings.mlflow_artifacts_dir,
            experiment=settings.mlflow_experiment,
            registered_model=settings.registered_model,
        )

    def activate(self) -> str:
        """Point MLflow at this store (creating the database and experiment once); returns the
        experiment id."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        client = MlflowClient(self.tracking_uri)
        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                experiment_id = client.create_experiment(
                    self.experiment, artifact_location=self.artifacts_dir.as_uri()
                )
            except MlflowException:  # another worker created it a moment ago
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)


def data_fingerprint(frame: pl.DataFrame) -> str:
    """A short digest of a training set: its shape, columns, symbols, time range and row hashes."""
    summary = {
        "rows": frame.height,
        "columns": frame.columns,
        "symbols": sorted(frame["symbol"].unique().to_list()),
        "first": str(frame["ts"].min()),
        "last": str(frame["ts"].max()),
        "row_hash_sum": int(frame.hash_rows(seed=0).cast(pl.UInt64).sum()),
    }
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the working tree (with ``-dirty`` when it has changes), else ``unknown``."""
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def run_url(experiment_id: str, run_id: str) -> str:
    """Where the MLflow UI started by ``make ui`` shows a run."""
    return f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(registered_model: str, version: str) -> str:
    return f"http://127.0.0.1:5000/#/models/{registered_model}/versions/{version}"
