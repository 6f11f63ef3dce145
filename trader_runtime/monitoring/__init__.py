"""Monitoring of the model in production: drift of its inputs and outputs (``drift``).

Pure functions, no Dagster; ``robo_assets/drift_assets.py`` feeds them the champion's training
data and recent data and turns the report into asset metadata.
"""

from trader_runtime.monitoring.drift import (
    DriftConfig,
    DriftInputError,
    DriftReport,
    FeatureDrift,
    drift_report,
    information_coefficient,
    ks,
    psi,
)

__all__ = [
    "DriftConfig",
    "DriftInputError",
    "DriftReport",
    "FeatureDrift",
    "drift_report",
    "information_coefficient",
    "ks",
    "psi",
]
