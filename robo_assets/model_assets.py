"""Model assets, one partition per model family: ``trained_models`` and ``oos_predictions``
(walk-forward training, MLflow runs, a registered version per family) and ``tuned_models``
(an Optuna study per family, the best configuration retrained and registered)."""

import dataclasses
from typing import Any

import dagster as dg
import polars as pl

from robo_assets.feature_assets import SPEC, training_set, walk_forward_splits
from robo_assets.metadata import table_preview
from robo_assets.research_data import POOLED, SPLITS, TRAINING_SET, label_spec, walk_forward_spec
from robo_assets.resources import RoboSettingsResource
from robo_assets.tracking import Tracking, model_version_url, run_url
from robo_assets.training.tracked import FamilyOutcome, Lineage, train_family
from robo_assets.training.tuning import OBJECTIVE, tune_family
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.models.zoo import FAMILIES, Family
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake

GROUP = "models"
OOS_PREDICTIONS = "oos_predictions"
family_partitions = dg.StaticPartitionsDefinition(list(FAMILIES))


@dataclasses.dataclass(frozen=True)
class _Inputs:
    settings: RoboSettings
    lake: ParquetLake
    frame: pl.DataFrame
    assignment: pl.DataFrame
    names: tuple[str, ...]
    tracking: Tracking
    lineage: Lineage


def _inputs(robo: RoboSettingsResource) -> _Inputs:
    settings, lake = robo.settings(), robo.lake()
    frame = lake.read(TRAINING_SET, Timeframe.M1.value, POOLED)
    assignment = lake.read(SPLITS, Timeframe.M1.value, POOLED)
    lineage = Lineage.of(
        frame,
        feature_set_hash=SPEC.spec_hash,
        split_spec=dataclasses.asdict(walk_forward_spec(settings)),
        label_spec=dataclasses.asdict(label_spec(settings)),
    )
    return _Inputs(
        settings,
        lake,
        frame,
        assignment,
        SPEC.feature_names(Timeframe.M1),
        Tracking.from_settings(settings),
        lineage,
    )


def leaderboard(tracking: Tracking, data_fingerprint: str) -> pl.DataFrame:
    """Registered versions trained on the same data, best out-of-sample log loss first."""
    versions = tracking.client().search_model_versions(f"name = '{tracking.registered_model}'")
    rows: list[dict[str, Any]] = []
    for v in versions:
        tags = v.tags or {}
        if tags.get("data_fingerprint") != data_fingerprint:
            continue
        rows.append(
            {
                "version": int(v.version),
                "family": tags.get("family", ""),
                "tuned": tags.get("tuned", "false"),
                "oos_auc": float(tags.get("oos_auc", "nan")),
                "oos_log_loss": float(tags.get("oos_log_loss", "nan")),
                "oos_ic": float(tags.get("oos_ic", "nan")),
                "run_id": tags.get("run_id", ""),
            }
        )
    if not rows:
        return pl.DataFrame()
    return pl.DataFrame(rows).sort("oos_log_loss")


def _outcome_metadata(outcome: FamilyOutcome, inputs: _Inputs) -> dict[str, Any]:
    fold_table = pl.DataFrame(
        [
            {"fold": f.fold, "n_train": f.n_train, "n_test": f.n_test, **f.metrics}
            for f in outcome.result.folds
        ]
    )
    return {
        "family": outcome.family,
        "mlflow_run": dg.MetadataValue.url(run_url(outcome.experiment_id, outcome.run_id)),
        "run_id": outcome.run_id,
        "model_uri": outcome.model_uri,
        "model_version": dg.MetadataValue.url(
            model_version_url(inputs.tracking.registered_model, outcome.model_version)
        ),
        **{f"oos_{k}": float(v) for k, v in outcome.result.metrics.items()},
        "folds": table_preview(fold_table, rows=len(outcome.result.folds)),
        "leaderboard": table_preview(
            leaderboard(inputs.tracking, inputs.lineage.data_fingerprint), rows=20
        ),
        "feature_set_hash": inputs.lineage.feature_set_hash,
        "data_fingerprint": inputs.lineage.data_fingerprint,
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "trained_models",
            deps=[training_set, walk_forward_splits],
            group_name=GROUP,
            kinds={"mlflow", "sklearn"},
            description="One model family trained walk-forward (a nested MLflow run per fold), "
            "refit on all folds and registered as a version of the registered model.",
        ),
        dg.AssetSpec(
            OOS_PREDICTIONS,
            deps=[training_set, walk_forward_splits],
            group_name=GROUP,
            kinds={"parquet"},
            description="Out-of-sample probabilities of every fold: symbol, ts, model, fold, "
            "probability (with the target and forward return for evaluation).",
        ),
    ],
    partitions_def=family_partitions,
)
def trained_models(context: dg.AssetExecutionContext, robo: RoboSettingsResource):  # type: ignore[no-untyped-def]
    family: Family = context.partition_key  # type: ignore[assignment]
    inputs = _inputs(robo)
    outcome = train_family(
        family,
        inputs.frame,
        inputs.assignment,
        inputs.names,
        tracking=inputs.tracking,
        lineage=inputs.lineage,
        seed=inputs.settings.model_seed,
        max_train_rows=inputs.settings.train_max_rows,
        extra_tags={"tuned": "false", "dagster_run_id": context.run.run_id},
    )
    predictions = outcome.result.predictions
    path = inputs.lake.write(OOS_PREDICTIONS, Timeframe.M1.value, family, predictions)
    context.log.info(f"{family}: OOS AUC {outcome.result.metrics['auc']:.4f}, {outcome.model_uri}")
    yield dg.MaterializeResult(
        asset_key="trained_models", metadata=_outcome_metadata(outcome, inputs)
    )
    yield dg.MaterializeResult(
        asset_key=OOS_PREDICTIONS,
        metadata={
            "dagster/row_count": predictions.height,
            "path": dg.MetadataValue.path(str(path)),
            "model": family,
            "folds": predictions["fold"].n_unique(),
            "preview": table_preview(predictions.head(10)),
        },
    )


@dg.asset(
    partitions_def=family_partitions,
    deps=[training_set, walk_forward_splits],
    group_name=GROUP,
    kinds={"optuna", "mlflow"},
    description=f"An Optuna study per family; objective: {OBJECTIVE}; pruning across folds; the "
    "best configuration retrained walk-forward and registered (tag tuned=true).",
)
def tuned_models(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    family: Family = context.partition_key  # type: ignore[assignment]
    inputs = _inputs(robo)
    settings = inputs.settings
    tuning = tune_family(
        family,
        inputs.frame,
        inputs.assignment,
        inputs.names,
        tracking=inputs.tracking,
        lineage=inputs.lineage,
        storage_url=settings.optuna_storage_url,
        n_trials=settings.tune_trials,
        timeout_s=settings.tune_timeout_s,
        seed=settings.model_seed,
        max_train_rows=_smallest(settings.train_max_rows, settings.tune_max_train_rows),
    )
    outcome = train_family(
        family,
        inputs.frame,
        inputs.assignment,
        inputs.names,
        tracking=inputs.tracking,
        lineage=inputs.lineage,
        params=tuning.best_params,
        seed=settings.model_seed,
        max_train_rows=settings.train_max_rows,
        run_name=f"{family}-tuned",
        extra_tags={
            "tuned": "true",
            "optuna_study": tuning.study_name,
            "dagster_run_id": context.run.run_id,
        },
    )
    inputs.lake.write(
        OOS_PREDICTIONS, Timeframe.M1.value, f"{family}-tuned", outcome.result.predictions
    )
    return dg.MaterializeResult(
        metadata={
            **_outcome_metadata(outcome, inputs),
            "optuna_study": tuning.study_name,
            "objective": OBJECTIVE,
            "best_mean_fold_log_loss": tuning.best_value,
            "best_params": {k: str(v) for k, v in tuning.best_params.items()},
            "trials": tuning.n_trials,
            "pruned_trials": tuning.n_pruned,
            "tuning_run_id": tuning.parent_run_id,
        }
    )


def _smallest(*caps: int | None) -> int | None:
    given = [c for c in caps if c is not None]
    return min(given) if given else None


ASSETS = (trained_models, tuned_models)
