"""Dagster resources of the research pipeline."""

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
    synthetic_seed: int | None = None
    signal_strength: float | None = None
    files_dir: str | None = None

    def settings(self) -> RoboSettings:
        overrides = {
            name: getattr(self, name)
            for name in (
                "data_dir",
                "mlruns_dir",
                "source",
                "start",
                "end",
                "synthetic_seed",
                "signal_strength",
                "files_dir",
            )
        }
        overrides["symbols"] = tuple(self.symbols) if self.symbols is not None else None
        overrides["index_symbols"] = (
            tuple(self.index_symbols) if self.index_symbols is not None else None
        )
        return RoboSettings.from_overrides(**overrides)

    def lake(self) -> ParquetLake:
        return ParquetLake(self.settings().lake_dir)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.settings().warehouse_path)
