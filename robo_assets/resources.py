"""Dagster resources of the research pipeline."""

from typing import Any

import dagster as dg

from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake
from trader_runtime.storage.warehouse import Warehouse


class RoboSettingsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Settings of robo-trader. Unset fields come from ``ROBO_*`` environment variables, then
    defaults (``trader_runtime.settings.RoboSettings``); run config may set any of them."""

    data_dir: str | None = None
    mlruns_dir: str | None = None
    source: str | None = None
    symbols: list[str] | None = None
    index_symbols: list[str] | None = None
    start: str | None = None
    end: str | None = None
    index_start: str | None = None
    index_end: str | None = None
    synthetic_seed: int | None = None
    signal_strength: float | None = None
    files_dir: str | None = None
    files_timeframe: str | None = None
    label_horizon_bars: int | None = None
    label_cost_bps: float | None = None
    label_kind: str | None = None
    split_scheme: str | None = None
    split_n_folds: int | None = None
    split_test_sessions: int | None = None
    split_train_sessions: int | None = None
    split_purge_bars: int | None = None
    split_embargo_bars: int | None = None
    model_seed: int | None = None
    train_max_rows: int | None = None
    mlflow_experiment: str | None = None
    registered_model: str | None = None
    tune_trials: int | None = None
    tune_max_train_rows: int | None = None
    tune_timeout_s: float | None = None
    optuna_storage: str | None = None
    mlflow_tracking_store: str | None = None
    # nested settings as mappings, e.g. {"execution": {"algo": "twap"}}
    trading: dict[str, Any] | None = None
    promotion: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    ib: dict[str, Any] | None = None

    def settings(self) -> RoboSettings:
        overrides = {
            name: tuple(value) if isinstance(value, list) else value
            for name in type(self).model_fields
            if (value := getattr(self, name)) is not None
        }
        return RoboSettings.from_overrides(**overrides)

    def lake(self) -> ParquetLake:
        return ParquetLake(self.settings().lake_dir)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings().warehouse_path)
