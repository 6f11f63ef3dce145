"""The one ``Definitions`` of robo-trader, loaded by workspace.yaml and every ``dagster`` CLI.

Automation at a glance (times in New York; docs/OPERATIONS.md has the whole day):

- ``market_data_schedule`` (weekdays 16:30) ingests each symbol's new bars; the assets'
  automation conditions, evaluated by ``automation_condition_sensor``, carry them to the market
  index, features, labels and market regimes.
- ``weekly_retrain_schedule`` (Saturdays 06:00) and ``drift_retrain_sensor`` launch
  ``retrain_job``; once its training set and splits pass their blocking checks, the model
  families train and tune, then ``backtest``, ``performance_report`` and ``champion_model``
  follow (``RETRAIN_CASCADE`` below).
- ``model_drift`` (weekdays 19:00) compares recent data with the champion's training data;
  ``champion_reload_sensor`` tells a running live session to reload when the champion moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from orchestration.jobs import JOBS, RETRAIN_TAG
from orchestration.schedules import SCHEDULES
from orchestration.sensors import AUTOMATION_RUN_TAGS, SENSORS
from robo_assets.backtest_assets import ASSETS as BACKTEST_ASSETS
from robo_assets.bars_assets import ASSETS as BAR_ASSETS
from robo_assets.bars_assets import CHECKS as BAR_CHECKS
from robo_assets.drift_assets import ASSETS as DRIFT_ASSETS
from robo_assets.feature_assets import ASSETS as RESEARCH_ASSETS
from robo_assets.feature_assets import CHECKS as RESEARCH_CHECKS
from robo_assets.feature_assets import walk_forward_splits
from robo_assets.live_assets import ASSETS as LIVE_ASSETS
from robo_assets.model_assets import ASSETS as MODEL_ASSETS
from robo_assets.regime_assets import ASSETS as REGIME_ASSETS
from robo_assets.resources import RoboSettingsResource

# The retraining cascade, after retrain_job. Set here rather than on the assets' decorators: it
# is orchestration policy, and it reads the tags of the runs that orchestration launches.
#
# 1. Model families retrain after training data built by a retrain_job run (tag RETRAIN_TAG)
#    whose blocking leakage checks passed, and only then: `make run`, or a training set
#    materialized by hand, never sets off a retraining. Requested for every family in one tick,
#    they go out as one backfill.
RETRAIN_CONDITION = (
    dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated()
        & dg.AutomationCondition.any_new_update_has_run_tags(tag_keys={RETRAIN_TAG})
    )
    .allow(dg.AssetSelection.assets(walk_forward_splits))
    .since_last_handled()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after a retrain_job run")

# 2. The backtest follows once every family of that backfill is done (none in progress), and only
#    after models that this sensor retrained (a model trained by `make run` or by hand does not
#    start a backtest behind the user's back).
MODELS = dg.AssetSelection.assets(*MODEL_ASSETS)
AFTER_RETRAINED_MODELS = (
    dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated()
        & dg.AutomationCondition.any_new_update_has_run_tags(tag_values=AUTOMATION_RUN_TAGS)
    )
    .allow(MODELS)
    .since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress().allow(MODELS)
    & ~dg.AutomationCondition.any_deps_missing().allow(MODELS)
    & ~dg.AutomationCondition.in_progress()
).with_label("after retrained models")

# 3. The performance report and the champion decision run with the backtest (same run, in order).
WITH_UPSTREAM = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.will_be_requested()
).with_label("with its upstream")

RETRAIN_CASCADE: Mapping[str, dg.AutomationCondition[Any]] = {
    "trained_models": RETRAIN_CONDITION,
    "oos_predictions": RETRAIN_CONDITION,
    "tuned_models": RETRAIN_CONDITION,
    "backtest": AFTER_RETRAINED_MODELS,
    "performance_report": WITH_UPSTREAM,
    "champion_model": WITH_UPSTREAM,
}


def _with_cascade(spec: dg.AssetSpec) -> dg.AssetSpec:
    condition = RETRAIN_CASCADE.get(spec.key.to_user_string())
    return spec if condition is None else spec.replace_attributes(automation_condition=condition)


defs = dg.Definitions(
    assets=[
        *BAR_ASSETS,
        *RESEARCH_ASSETS,
        *REGIME_ASSETS,
        *dg.map_asset_specs(_with_cascade, [*MODEL_ASSETS, *BACKTEST_ASSETS]),
        *DRIFT_ASSETS,
        *LIVE_ASSETS,
    ],
    asset_checks=[*BAR_CHECKS, *RESEARCH_CHECKS],
    jobs=[*JOBS],
    schedules=[*SCHEDULES],
    sensors=[*SENSORS],
    resources={"robo": RoboSettingsResource()},
)
