"""Optuna tuning of one model family on the walk-forward folds.

Objective: the mean out-of-sample log loss over the folds (minimised). After each fold the running
mean is reported to Optuna, and a median pruner stops trials that are already worse than the median
of earlier trials at the same fold. The sampler is seeded (TPE); the study lives in an RDB storage
(SQLite under data/ by default, any SQLAlchemy URL such as PostgreSQL lets several workers share
it). Each trial is a nested MLflow run under one parent run per family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
import optuna
import polars as pl

from robo_assets.tracking import Tracking
from robo_assets.training.tracked import FAMILY_TAG, Lineage
from robo_assets.training.walk_forward import FoldResult, walk_forward
from trader_runtime.models.zoo import DEFAULT_PARAMS, Family

OBJECTIVE = "mean out-of-sample log loss over the walk-forward folds (minimised)"


def search_space(family: Family, trial: optuna.Trial) -> dict[str, Any]:
    """Hyper-parameters to try for ``family`` (merged over its defaults)."""
    if family == "random_forest":
        return {
            "max_depth": trial.suggest_int("max_depth", 4, 12),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 50, 1000, log=True),
            "max_features": trial.suggest_float("max_features", 0.2, 0.8),
        }
    if family in ("xgboost", "lightgbm"):
        space: dict[str, Any] = {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "n_estimators": trial.suggest_int("n_estimators", 50, 300),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        }
        if family == "xgboost":
            space["max_depth"] = trial.suggest_int("max_depth", 2, 8)
        else:
            space["num_leaves"] = trial.suggest_int("num_leaves", 7, 63, log=True)
        return space
    return {
        "hidden_units": trial.suggest_categorical("hidden_units", [32, 64, 128]),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


@dataclass(frozen=True, slots=True)
class TuningOutcome:
    family: str
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    n_trials: int
    n_pruned: int
    parent_run_id: str


def study_name_for(family: Family, lineage: Lineage) -> str:
    """Studies are per family and per training data, so a new data set starts a new study."""
    return f"{family}-{lineage.feature_set_hash}-{lineage.data_fingerprint}"


def tune_family(
    family: Family,
    training_set: pl.DataFrame,
    assignment: pl.DataFrame,
    feature_names: Sequence[str],
    *,
    tracking: Tracking,
    lineage: Lineage,
    storage_url: str,
    n_trials: int,
    timeout_s: float,
    seed: int = 0,
    max_train_rows: int | None = None,
    space: Callable[[Family, optuna.Trial], dict[str, Any]] = search_space,
) -> TuningOutcome:
    """Run (or resume) the family's study for ``n_trials`` more trials within ``timeout_s``."""
    tracking.activate()
    storage = optuna.storages.RDBStorage(url=storage_url)
    name = study_name_for(family, lineage)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        load_if_exists=True,
    )
    base: Mapping[str, Any] = DEFAULT_PARAMS[family]
    tags = {**lineage.tags(), FAMILY_TAG: family, "optuna_study": name}
    with mlflow.start_run(run_name=f"tune-{family}", tags=tags) as parent:
        mlflow.log_params(
            {"objective": OBJECTIVE, "n_trials": n_trials, "storage": _safe(storage_url)}
        )

        def objective(trial: optuna.Trial) -> float:
            params = {**base, **space(family, trial)}
            losses: list[float] = []

            def on_fold(fold: FoldResult) -> None:
                losses.append(fold.metrics["log_loss"])
                trial.report(sum(losses) / len(losses), step=fold.fold)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {fold.fold}")

            with mlflow.start_run(run_name=f"{family}-trial{trial.number}", nested=True):
                mlflow.log_params({k: v for k, v in params.items()})
                try:
                    result = walk_forward(
                        family,
                        training_set,
                        assignment,
                        feature_names,
                        params=params,
                        seed=seed,
                        max_train_rows=max_train_rows,
                        on_fold=on_fold,
                    )
                except optuna.TrialPruned:
                    mlflow.set_tag("state", "pruned")
                    mlflow.log_metric("partial_log_loss", sum(losses) / max(len(losses), 1))
                    raise
                value = result.mean_fold_metric("log_loss")
                mlflow.log_metrics({"mean_fold_log_loss": value, "oos_auc": result.metrics["auc"]})
                mlflow.set_tag("state", "complete")
                return value

        study.optimize(objective, n_trials=n_trials, timeout=timeout_s, gc_after_trial=True)
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            raise RuntimeError(f"no completed trial in study {name}")
        best = study.best_trial
        best_params = {**base, **space(family, optuna.trial.FixedTrial(best.params))}
        mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
        mlflow.log_metric("best_mean_fold_log_loss", float(best.value))  # type: ignore[arg-type]
    return TuningOutcome(
        family=family,
        study_name=name,
        best_params=best_params,
        best_value=float(best.value),  # type: ignore[arg-type]
        n_trials=len(study.trials),
        n_pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        parent_run_id=parent.info.run_id,
    )


def _safe(url: str) -> str:
    """A storage URL without its password, for logging."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
