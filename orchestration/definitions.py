"""The one ``Definitions`` of robo-trader, loaded by workspace.yaml and every ``dagster`` CLI."""

from __future__ import annotations

import dagster as dg

from orchestration.jobs import JOBS
from orchestration.sensors import SENSORS
from robo_assets.backtest_assets import ASSETS as BACKTEST_ASSETS
from robo_assets.bars_assets import ASSETS as BAR_ASSETS
from robo_assets.bars_assets import CHECKS as BAR_CHECKS
from robo_assets.feature_assets import ASSETS as RESEARCH_ASSETS
from robo_assets.feature_assets import CHECKS as RESEARCH_CHECKS
from robo_assets.live_assets import ASSETS as LIVE_ASSETS
from robo_assets.model_assets import ASSETS as MODEL_ASSETS
from robo_assets.regime_assets import ASSETS as REGIME_ASSETS
from robo_assets.resources import RoboSettingsResource

defs = dg.Definitions(
    assets=[
        *BAR_ASSETS,
        *RESEARCH_ASSETS,
        *REGIME_ASSETS,
        *MODEL_ASSETS,
        *BACKTEST_ASSETS,
        *LIVE_ASSETS,
    ],
    asset_checks=[*BAR_CHECKS, *RESEARCH_CHECKS],
    jobs=[*JOBS],
    sensors=[*SENSORS],
    resources={"robo": RoboSettingsResource()},
)
