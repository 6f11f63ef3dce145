"""Jobs: named selections of assets that run together (checks of selected assets included)."""

from __future__ import annotations

import dagster as dg

from robo_assets.backtest_assets import backtest, champion_model, performance_report
from robo_assets.bars_assets import bars, raw_bars
from robo_assets.feature_assets import (
    features,
    labels,
    market_index,
    training_set,
    walk_forward_splits,
)
from robo_assets.live_assets import live_trading_session
from robo_assets.model_assets import trained_models, tuned_models
from robo_assets.regime_assets import market_regimes

market_data_job = dg.define_asset_job(
    name="market_data_job",
    selection=dg.AssetSelection.assets(raw_bars, bars),
    description="Ingest, validate, quarantine and resample one symbol's bars.",
)

market_index_job = dg.define_asset_job(
    name="market_index_job",
    selection=dg.AssetSelection.assets(market_index, market_regimes),
    description="Rebuild the equal-weighted market index from every symbol's bars, and the "
    "market regime of every bar from it.",
)

features_job = dg.define_asset_job(
    name="features_job",
    selection=dg.AssetSelection.assets(features, labels),
    description="Features and labels of one symbol.",
)

training_data_job = dg.define_asset_job(
    name="training_data_job",
    selection=dg.AssetSelection.assets(training_set, walk_forward_splits),
    description="Pool features and labels into the training set and cut walk-forward splits.",
)

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.assets(trained_models),
    description="Walk-forward train one model family, log it to MLflow and register it "
    "(partition = family; a backfill over families runs them in parallel).",
)

tuning_job = dg.define_asset_job(
    name="tuning_job",
    selection=dg.AssetSelection.assets(tuned_models),
    description="Optuna-tune one model family, retrain the best configuration and register it.",
)

backtest_job = dg.define_asset_job(
    name="backtest_job",
    selection=dg.AssetSelection.assets(backtest, performance_report, champion_model),
    description="Backtest every candidate and the champion, report, and promote through the gates.",
)

# Runs of retrain_job carry this tag (its value says who asked: manual, weekly, drift); the model
# assets' automation condition (orchestration/definitions.py) starts training only after training
# data built by such a run, so `make run` or a manual training_set never sets off a retraining.
RETRAIN_TAG = "robo/retrain"

retrain_job = dg.define_asset_job(
    name="retrain_job",
    selection=dg.AssetSelection.assets(training_set, walk_forward_splits),
    tags={RETRAIN_TAG: "manual"},
    description="Retraining, step 1: rebuild the pooled training set and its walk-forward splits "
    "(leakage checks blocking) from the current features and labels. When its checks pass, the "
    "automation condition sensor carries on in one backfill: trained_models and tuned_models for "
    "every family, then backtest, performance_report and champion_model. Launched by "
    "weekly_retrain_schedule and drift_retrain_sensor, or by hand.",
)

live_trading = dg.define_asset_job(
    name="live_trading",
    selection=dg.AssetSelection.assets(live_trading_session),
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": "0"},
    description="A long-running live trading session of the champion (paper broker and synthetic "
    "market by default; run config picks symbols, duration, feed and broker). Terminate the run to "
    "stop it cleanly.",
)

JOBS = (
    market_data_job,
    market_index_job,
    features_job,
    training_data_job,
    training_job,
    tuning_job,
    backtest_job,
    retrain_job,
    live_trading,
)
