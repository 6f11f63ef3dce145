"""Walk-forward training of one model family, tracked in MLflow and registered.

One parent run per family (per pipeline run), a nested run per fold; params, metrics, lineage tags;
a feature-importance plot and a calibration plot as artifacts. The final model, refit on all data up
to the end of the last fold, is logged with a signature, an input example (pyfunc ``predict``
returns class probabilities) and its pip requirements (``requirements.model_requirements``), and
registered as a new version of the registered model, tagged with its family and metrics.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import polars as pl
from mlflow.models import infer_signature
from sklearn.calibration import calibration_curve
from sklearn.pipeline import Pipeline

from robo_assets.tracking import Tracking, code_version, data_fingerprint
from robo_assets.training.requirements import model_requirements
from robo_assets.training.walk_forward import (
    FoldResult,
    WalkForwardResult,
    fit_final,
    walk_forward,
)
from trader_runtime.models.zoo import Family

FEATURE_SET_TAG = "feature_set_hash"
FAMILY_TAG = "family"


@dataclass(frozen=True, slots=True)
class Lineage:
    """What a model was trained on: carried as tags on runs and model versions."""

    feature_set_hash: str
    data_fingerprint: str
    split_spec: str
    label_spec: str
    code_version: str = field(default_factory=code_version)

    @classmethod
    def of(
        cls,
        training_set: pl.DataFrame,
        *,
        feature_set_hash: str,
        split_spec: Mapping[str, Any],
        label_spec: Mapping[str, Any],
    ) -> Lineage:
        return cls(
            feature_set_hash=feature_set_hash,
            data_fingerprint=data_fingerprint(training_set),
            split_spec=json.dumps(split_spec, sort_keys=True, default=str),
            label_spec=json.dumps(label_spec, sort_keys=True, default=str),
        )

    def tags(self) -> dict[str, str]:
        return {
            FEATURE_SET_TAG: self.feature_set_hash,
            "data_fingerprint": self.data_fingerprint,
            "split_spec": self.split_spec,
            "label_spec": self.label_spec,
            "code_version": self.code_version,
        }


@dataclass(frozen=True, slots=True)
class FamilyOutcome:
    family: str
    run_id: str
    experiment_id: str
    model_version: str
    model_uri: str
    result: WalkForwardResult
    extra_tags: dict[str, str]


def _fold_logger(family: str) -> Any:
    def log_fold(fold: FoldResult) -> None:
        with mlflow.start_run(run_name=f"{family}-fold{fold.fold}", nested=True):
            mlflow.log_params({"fold": fold.fold, "n_train": fold.n_train, "n_test": fold.n_test})
            mlflow.log_metrics({**fold.metrics, "fit_seconds": fold.fit_seconds})

    return log_fold


def _importance_figure(model: Pipeline, names: Sequence[str], title: str) -> plt.Figure | None:
    estimator = model.named_steps["model"]
    importances = getattr(estimator, "feature_importances_", None)
    if importances is None:
        return None
    order = np.argsort(importances)[-25:]
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.barh([names[i] for i in order], np.asarray(importances)[order])
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _calibration_figure(predictions: pl.DataFrame, title: str) -> plt.Figure:
    target = predictions["target"].to_numpy()
    probability = predictions["probability"].to_numpy()
    frac_pos, mean_pred = calibration_curve(target, probability, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.plot(mean_pred, frac_pos, marker="o")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    return fig


def _log_figure(fig: plt.Figure | None, name: str) -> None:
    if fig is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        mlflow.log_artifact(str(path), artifact_path="plots")


OOS_ARTIFACT = "oos/oos_predictions.parquet"
CLOUDPICKLE_NOTICE = "Saving scikit-learn models in the pickle or cloudpickle format"


class _ChosenFormatNotice(logging.Filter):
    """Drops MLflow's notice that a cloudpickled model runs code when it is loaded. The format is
    chosen (our own estimators are outside skops' safe list) and the registry is the project's
    own; it would otherwise repeat in the terminal for every model logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(CLOUDPICKLE_NOTICE)


@contextmanager
def cloudpickle_notice_dropped() -> Iterator[None]:
    """While logging a model: MLflow's cloudpickle notice dropped, every other record kept."""
    logger = logging.getLogger("mlflow.sklearn")
    notice = _ChosenFormatNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def _log_predictions(predictions: pl.DataFrame) -> None:
    """The out-of-sample predictions travel with the run, so any registered version (the current
    champion included) can be backtested later on its own out-of-sample period."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(OOS_ARTIFACT).name
        predictions.write_parquet(path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(OOS_ARTIFACT).parent))


def load_logged_predictions(tracking: Tracking, run_id: str) -> pl.DataFrame | None:
    """The predictions ``_log_predictions`` stored with ``run_id``; None if the run has none."""
    tracking.activate()
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=OOS_ARTIFACT)
    except Exception:
        return None
    return pl.read_parquet(local)


def train_family(
    family: Family,
    training_set: pl.DataFrame,
    assignment: pl.DataFrame,
    feature_names: Sequence[str],
    *,
    tracking: Tracking,
    lineage: Lineage,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_train_rows: int | None = None,
    run_name: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> FamilyOutcome:
    """Walk-forward evaluate ``family``, refit it on all folds, log and register it."""
    experiment_id = tracking.activate()
    tags = {**lineage.tags(), FAMILY_TAG: family, **(extra_tags or {})}
    with mlflow.start_run(run_name=run_name or family, tags=tags) as parent:
        result = walk_forward(
            family,
            training_set,
            assignment,
            feature_names,
            params=params,
            seed=seed,
            max_train_rows=max_train_rows,
            on_fold=_fold_logger(family),
        )
        mlflow.log_params({"family": family, "seed": seed, **result.params})
        _log_predictions(result.predictions)
        mlflow.log_metrics({f"oos_{k}": v for k, v in result.metrics.items()})
        for name in ("auc", "log_loss", "ic"):
            mlflow.log_metric(f"mean_fold_{name}", result.mean_fold_metric(name))
        final = fit_final(
            family,
            training_set,
            assignment,
            feature_names,
            params=params,
            seed=seed,
            max_train_rows=max_train_rows,
        )
        _log_figure(
            _importance_figure(final, feature_names, f"{family}: feature importance"),
            "feature_importance.png",
        )
        _log_figure(
            _calibration_figure(result.predictions, f"{family}: calibration (OOS)"),
            "calibration.png",
        )
        example = training_set.select(feature_names).head(5).to_pandas()
        signature = infer_signature(example, final.predict_proba(example))
        with cloudpickle_notice_dropped():
            info = mlflow.sklearn.log_model(
                final,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=tracking.registered_model,
                pyfunc_predict_fn="predict_proba",
                pip_requirements=model_requirements(family),
                # our estimators (LightGBM boosters, the torch MLP) are outside skops' safe list
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            )
    version = str(info.registered_model_version)
    client = tracking.client()
    version_tags = {
        **tags,
        **{f"oos_{k}": f"{v:.6f}" for k, v in result.metrics.items()},
        "run_id": parent.info.run_id,
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(tracking.registered_model, version, key, value)
    return FamilyOutcome(
        family=family,
        run_id=parent.info.run_id,
        experiment_id=experiment_id,
        model_version=version,
        model_uri=f"models:/{tracking.registered_model}/{version}",
        result=result,
        extra_tags=dict(extra_tags or {}),
    )
