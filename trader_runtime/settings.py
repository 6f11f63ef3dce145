"""Typed, frozen settings for robo-trader, read from ``ROBO_*`` environment variables.

The one place configuration is resolved. Dagster resources and run config build a ``RoboSettings``
through ``RoboSettings.from_overrides`` (explicit values win over the environment, which wins over
the defaults below), so research, the CLI and live trading see the same objects.

Lists may be given as JSON (``ROBO_SYMBOLS='["AAA","BBB"]'``) or comma-separated
(``ROBO_SYMBOLS=AAA,BBB``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trader_runtime.brokers.ib.config import IbConfig
from trader_runtime.decision.config import TradingConfig
from trader_runtime.errors import ConfigError
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.monitoring.drift import DriftConfig
from trader_runtime.performance.gates import PromotionGates
from trader_runtime.sources import index_history
from trader_runtime.storage.lake import check_name

SourceName = Literal["synthetic", "index_history", "files", "ibkr"]

DEFAULT_SYNTHETIC_SYMBOLS: tuple[str, ...] = (
    "SYNA",
    "SYNB",
    "SYNC",
    "SYND",
    "SYNE",
    "SYNF",
    "SYNG",
    "SYNH",
)


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return tuple(json.loads(text))
        return tuple(s.strip() for s in text.split(",") if s.strip())
    return value


class RoboSettings(BaseSettings):
    """What to trade and research, where the data comes from, and where files live."""

    model_config = SettingsConfigDict(
        env_prefix="ROBO_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    # universe
    symbols: Annotated[tuple[str, ...], NoDecode] = DEFAULT_SYNTHETIC_SYMBOLS
    index_symbols: Annotated[tuple[str, ...], NoDecode] = index_history.SYMBOLS
    source: SourceName = "synthetic"
    start: date = date(2024, 1, 2)
    end: date = date(2024, 6, 28)
    index_start: date = date(1999, 1, 1)
    index_end: date = date(2018, 12, 31)

    # synthetic market
    synthetic_seed: int = 7
    signal_strength: float = Field(default=0.1, ge=0.0, lt=0.5)

    # files source
    files_dir: Path | None = None
    files_timeframe: Timeframe = Timeframe.M1

    # labels and walk-forward splits (research)
    label_horizon_bars: int = Field(default=15, ge=1)
    label_cost_bps: float = Field(default=2.0, ge=0.0)
    label_kind: Literal["fixed_horizon", "triple_barrier"] = "fixed_horizon"
    split_scheme: Literal["expanding", "rolling"] = "expanding"
    split_n_folds: int = Field(default=4, ge=1)
    split_test_sessions: int = Field(default=15, ge=1)
    split_train_sessions: int = Field(default=40, ge=1)
    split_purge_bars: int = Field(default=15, ge=0)
    split_embargo_bars: int = Field(default=30, ge=0)

    # models, tracking and tuning
    model_seed: int = 7
    # training rows per fold (a seeded subsample in time order) so `make run` trains four families
    # in minutes on 2 cores; raise it (or set it above the data size) to train on everything
    train_max_rows: int | None = Field(default=100_000, ge=1000)
    mlflow_experiment: str = "robo-trader"
    registered_model: str = "robo-trader"
    tune_trials: int = Field(default=3, ge=1)
    tune_max_train_rows: int | None = Field(default=50_000, ge=1000)
    tune_timeout_s: float = Field(default=600.0, gt=0)
    optuna_storage: str | None = None  # default: sqlite under data_dir; any SQLAlchemy URL
    # default: sqlite under mlruns_dir; the team profile: postgresql+psycopg2://...
    mlflow_tracking_store: str | None = None

    # decision core, execution and costs (nested: ROBO_TRADING__SIZING__BASE_FRACTION=0.01)
    trading: TradingConfig = TradingConfig()

    # champion promotion gates
    promotion: PromotionGates = PromotionGates()

    # drift monitoring of the champion (ROBO_DRIFT__PSI_ALERT=0.2, ROBO_DRIFT__MIN_SAMPLES=500)
    drift: DriftConfig = DriftConfig()

    # Interactive Brokers (ROBO_IB__PORT=4002, ROBO_IB__CLIENT_ID=17, ROBO_IB__MODE=paper, ...)
    ib: IbConfig = IbConfig()

    # paths
    data_dir: Path = Path("data")
    mlruns_dir: Path = Path("mlruns")

    @field_validator("symbols", "index_symbols", mode="before")
    @classmethod
    def _lists_from_text(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("symbols", "index_symbols")
    @classmethod
    def _valid_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for symbol in value:
            try:
                check_name("symbol", symbol)
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        if len(set(value)) != len(value):
            raise ValueError(f"symbols repeat: {list(value)}")
        return value

    @field_validator("data_dir", "mlruns_dir", "files_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @model_validator(mode="after")
    def _consistent(self) -> RoboSettings:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.index_end < self.index_start:
            raise ValueError(f"index_end {self.index_end} is before index_start {self.index_start}")
        unknown = [s for s in self.index_symbols if s not in index_history.SYMBOLS]
        if unknown:
            raise ValueError(
                f"index_symbols {unknown} are not in index_history ({', '.join(index_history.SYMBOLS)})"
            )
        both = set(self.symbols) & set(self.index_symbols)
        if both:
            raise ValueError(f"symbols {sorted(both)} are listed as both symbols and index_symbols")
        if self.split_purge_bars < self.label_horizon_bars:
            raise ValueError(
                f"split_purge_bars ({self.split_purge_bars}) must be >= label_horizon_bars "
                f"({self.label_horizon_bars}): training labels would overlap the test window"
            )
        if self.source == "files" and self.files_dir is None:
            raise ValueError("source 'files' needs ROBO_FILES_DIR")
        return self

    @classmethod
    def from_overrides(cls, **overrides: Any) -> RoboSettings:
        """Settings from the environment, with ``overrides`` (None values ignored) on top."""
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except ValueError as exc:
            raise ConfigError(f"invalid robo-trader settings: {exc}") from exc

    # derived paths and lookups
    @property
    def universe(self) -> tuple[str, ...]:
        """Every symbol: the index symbols first, then ``symbols``."""
        return (*self.index_symbols, *self.symbols)

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow_tracking_store or f"sqlite:///{self.mlruns_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.mlruns_dir / "artifacts"

    @property
    def optuna_storage_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.data_dir / 'optuna.db'}"

    def source_for(self, symbol: str) -> SourceName:
        """Index symbols come from ``index_history``; every other symbol from ``source``."""
        return "index_history" if symbol in self.index_symbols else self.source

    def date_range_for(self, symbol: str) -> tuple[date, date]:
        if self.source_for(symbol) == "index_history":
            return self.index_start, self.index_end
        return self.start, self.end
