"""A live session assembled from settings: which feed, broker, journal and model, where files live.

``SessionSpec`` is what a user chooses per run (the Dagster job's run config mirrors it);
``RoboSettings`` says where data and MLflow live and holds the trading rules. Files of the live
runtime sit under ``<data_dir>/live/``: ``journal.duckdb`` (never the research warehouse),
``paper_account.json`` (the paper broker's account) and ``control/`` (``stop``, ``kill`` and
``reload`` request files, written by ``request``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from trader_runtime.brokers.base import Broker
from trader_runtime.brokers.ib.broker import IbBroker
from trader_runtime.brokers.ib.config import IbConfig
from trader_runtime.brokers.ib.feed import IbFeed
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.errors import ConfigError
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.live.engine import LiveConfig, LiveEngine, Observation, SessionSummary
from trader_runtime.live.feeds import Feed, Pacing, ReplayFeed, SyntheticFeed
from trader_runtime.live.journal import Journal
from trader_runtime.live.scoring import LoadedModel, load_model
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.settings import RoboSettings
from trader_runtime.sources.synthetic import SyntheticMarketConfig
from trader_runtime.storage.lake import ParquetLake

CONTROL_REQUESTS = ("stop", "kill", "reload")


class SessionSpec(BaseModel):
    """One live session's choices. Defaults: paper broker, the synthetic market continued after
    the research period, the model under the ``champion`` alias."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbols: tuple[str, ...] | None = None
    broker: Literal["paper", "ibkr"] = "paper"
    mode: Literal["paper", "live"] = "paper"
    feed: Literal["synthetic", "replay", "ibkr"] = "synthetic"
    live_start: date | None = None
    live_sessions: int = Field(default=1, ge=1)
    warmup_sessions: int = Field(default=25, ge=1)
    speed: float = Field(default=60.0, ge=0.0)
    max_bars: int | None = Field(default=None, ge=1)
    model_alias: str = "champion"
    model_version: str | None = None
    flatten_on_stop: bool = False
    resume: bool = True
    observation_interval_s: float = Field(default=60.0, gt=0.0)
    # Interactive Brokers: overrides of settings.ib (ROBO_IB__*) for this session
    ib_host: str | None = None
    ib_port: int | None = Field(default=None, ge=0, le=65535)
    ib_client_id: int | None = Field(default=None, ge=0)
    ib_account: str | None = None
    live_trading_enabled: bool = False
    allow_port_mismatch: bool = False

    def ib_config(self, settings: RoboSettings) -> IbConfig:
        """``settings.ib`` with this session's overrides; ``mode`` is the session's."""
        update: dict[str, object] = {
            "mode": self.mode,
            "live_trading_enabled": self.live_trading_enabled or settings.ib.live_trading_enabled,
            "allow_port_mismatch": self.allow_port_mismatch or settings.ib.allow_port_mismatch,
        }
        for field, value in (
            ("host", self.ib_host),
            ("port", self.ib_port),
            ("client_id", self.ib_client_id),
            ("account", self.ib_account),
        ):
            if value is not None:
                update[field] = value
        return IbConfig.model_validate({**settings.ib.model_dump(), **update})


def live_dir(settings: RoboSettings) -> Path:
    return settings.data_dir / "live"


def control_dir(settings: RoboSettings) -> Path:
    return live_dir(settings) / "control"


def request(settings: RoboSettings, what: str) -> Path:
    """Ask the running session to ``stop``, ``kill`` (halt, cancel, stop) or ``reload`` its model
    at the next safe point; returns the request file."""
    if what not in CONTROL_REQUESTS:
        raise ConfigError(f"unknown request {what!r}; one of {CONTROL_REQUESTS}")
    path = control_dir(settings) / what
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def next_session_after(day: date) -> date:
    """The first exchange session after ``day``."""
    sessions = TradingCalendar(day + timedelta(days=1), day + timedelta(days=15)).sessions()
    return sessions[0]


def champion_loader(settings: RoboSettings, spec: SessionSpec) -> Callable[[], LoadedModel]:
    names = DEFAULT_FEATURE_SET.feature_names(Timeframe.M1)

    def load() -> LoadedModel:
        return load_model(
            settings.mlflow_tracking_uri,
            settings.registered_model,
            expected_feature_set_hash=DEFAULT_FEATURE_SET.spec_hash,
            expected_features=names,
            alias=spec.model_alias,
            version=spec.model_version,
        )

    return load


def build_feed(
    settings: RoboSettings, spec: SessionSpec, symbols: tuple[str, ...], broker: Broker
) -> Feed:
    pacing = Pacing(speed=spec.speed)
    if spec.feed == "ibkr":
        if not isinstance(broker, IbBroker):
            raise ConfigError("the ibkr feed needs the ibkr broker (one connection serves both)")
        return IbFeed(
            broker.conn,
            broker.config,
            symbols,
            warmup_sessions=spec.warmup_sessions,
            live_sessions=spec.live_sessions,
        )
    if spec.feed == "synthetic":
        if any(settings.source_for(s) != "synthetic" for s in symbols):
            raise ConfigError("the synthetic feed needs synthetic symbols (settings.source)")
        start = spec.live_start or next_session_after(settings.end)
        return SyntheticFeed(
            symbols,
            config=SyntheticMarketConfig(
                seed=settings.synthetic_seed, signal_strength=settings.signal_strength
            ),
            live_start=start,
            live_sessions=spec.live_sessions,
            warmup_sessions=spec.warmup_sessions,
            pacing=pacing,
            research_start=settings.start,  # the live bars continue the research data exactly
        )
    if spec.live_start is None:
        raise ConfigError("the replay feed needs live_start (the first session to replay)")
    open_ny = datetime.combine(spec.live_start, time(9, 30), ZoneInfo("America/New_York"))
    return ReplayFeed.from_lake(
        ParquetLake(settings.lake_dir),
        symbols,
        live_start=open_ny,
        warmup_sessions=spec.warmup_sessions,
        pacing=pacing,
    )


def build_broker(settings: RoboSettings, spec: SessionSpec) -> Broker:
    if spec.broker == "paper":
        trading = settings.trading
        return PaperBroker(
            live_dir(settings) / "paper_account.json",
            costs=trading.costs,
            initial_cash_usd=trading.initial_cash_usd,
            fractional_shares=trading.execution.fractional_shares,
        )
    if spec.broker == "ibkr":
        return IbBroker(spec.ib_config(settings), costs=settings.trading.costs)
    raise ConfigError(f"unknown broker {spec.broker!r}")


def build_engine(
    settings: RoboSettings,
    spec: SessionSpec,
    *,
    journal: Journal,
    on_observation: Callable[[Observation], None] | None = None,
    model: LoadedModel | None = None,
) -> LiveEngine:
    """The engine of one session (the model loaded and checked unless given)."""
    symbols = spec.symbols or settings.symbols
    loader = champion_loader(settings, spec)
    scorer = model if model is not None else loader()
    speed = spec.speed
    broker = build_broker(settings, spec)
    return LiveEngine(
        symbols=tuple(symbols),
        trading=settings.trading,
        live=LiveConfig(
            mode=spec.mode,
            max_bars=spec.max_bars,
            observation_interval_s=spec.observation_interval_s,
            flatten_on_stop=spec.flatten_on_stop,
            resume=spec.resume,
            control_dir=control_dir(settings),
            bar_interval_s=60.0 if spec.feed == "ibkr" else (60.0 / speed if speed > 0 else None),
        ),
        feed=build_feed(settings, spec, tuple(symbols), broker),
        broker=broker,
        journal=journal,
        model=scorer,
        model_loader=loader,
        model_uri=(getattr(scorer, "ref", None) and scorer.ref.uri) or "",
        feature_set_hash=DEFAULT_FEATURE_SET.spec_hash,
        on_observation=on_observation,
    )


def run_session(
    settings: RoboSettings,
    spec: SessionSpec,
    *,
    on_observation: Callable[[Observation], None] | None = None,
    engine_ready: Callable[[LiveEngine], None] | None = None,
) -> SessionSummary:
    """Run one session to its end in this thread (its own event loop). Requests left from an
    earlier session are cleared first."""
    for name in CONTROL_REQUESTS:
        (control_dir(settings) / name).unlink(missing_ok=True)
    with Journal(live_dir(settings) / "journal.duckdb") as journal:
        engine = build_engine(settings, spec, journal=journal, on_observation=on_observation)
        if engine_ready is not None:
            engine_ready(engine)
        return asyncio.run(engine.run())
