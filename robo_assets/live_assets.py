"""The live trading session as a Dagster asset: ``live_trading_session``, run by job
``live_trading``.

The session runs in a thread of the run's process (``trader_runtime.live.session.run_session``);
the op's main thread relays its observations (equity, positions, regime, fills, slippage) to the
event log about once a minute and waits. Terminating the run from the UI raises
``DagsterExecutionInterruptedError`` here: the session is asked to stop, cancels its working
orders (or flattens, per config), closes its journal, and a final materialization records its
summary before the run ends CANCELED. A session that ends on its own (``max_bars``, the end of
the feed, a ``stop`` request) materializes normally.
"""

import queue
import threading
import time
from datetime import date
from typing import Any

import dagster as dg
from pydantic import Field

from robo_assets.backtest_assets import champion_model
from robo_assets.resources import RoboSettingsResource
from trader_runtime.live.engine import LiveEngine, Observation, SessionSummary
from trader_runtime.live.scoring import ModelLoadError, resolve
from trader_runtime.live.session import SessionSpec, request, run_session
from trader_runtime.settings import RoboSettings

GROUP = "live"
LIVE_KEY = dg.AssetKey("live_trading_session")
_STOP_WAIT_S = 120.0


class LiveTradingConfig(dg.Config):
    """Run config of ``live_trading`` (see ``trader_runtime.live.session.SessionSpec``)."""

    symbols: list[str] | None = Field(default=None, description="default: the universe")
    broker: str = Field(default="paper", description="paper | ibkr")
    mode: str = Field(default="paper", description="paper | live (live needs a real broker)")
    feed: str = Field(default="synthetic", description="synthetic | replay | ibkr")
    live_start: str | None = Field(
        default=None, description="first session to trade (default: the one after the data)"
    )
    live_sessions: int = 1
    warmup_sessions: int = 25
    speed: float = Field(default=60.0, description="market minutes per wall minute; 0 = no wait")
    max_bars: int | None = None
    model_alias: str = "champion"
    model_version: str | None = None
    flatten_on_stop: bool = False
    resume: bool = True
    observation_interval_s: float = 60.0
    ib_host: str | None = Field(default=None, description="default: ROBO_IB__HOST (127.0.0.1)")
    ib_port: int | None = Field(default=None, description="default: ROBO_IB__PORT (4002)")
    ib_client_id: int | None = Field(default=None, description="default: ROBO_IB__CLIENT_ID")
    ib_account: str | None = Field(default=None, description="default: the only managed one")
    live_trading_enabled: bool = Field(
        default=False, description="the second explicit flag live mode needs"
    )
    allow_port_mismatch: bool = False

    def spec(self) -> SessionSpec:
        return SessionSpec(
            symbols=None if self.symbols is None else tuple(self.symbols),
            broker=self.broker,  # type: ignore[arg-type]
            mode=self.mode,  # type: ignore[arg-type]
            feed=self.feed,  # type: ignore[arg-type]
            live_start=None if self.live_start is None else date.fromisoformat(self.live_start),
            live_sessions=self.live_sessions,
            warmup_sessions=self.warmup_sessions,
            speed=self.speed,
            max_bars=self.max_bars,
            model_alias=self.model_alias,
            model_version=self.model_version,
            flatten_on_stop=self.flatten_on_stop,
            resume=self.resume,
            observation_interval_s=self.observation_interval_s,
            ib_host=self.ib_host,
            ib_port=self.ib_port,
            ib_client_id=self.ib_client_id,
            ib_account=self.ib_account,
            live_trading_enabled=self.live_trading_enabled,
            allow_port_mismatch=self.allow_port_mismatch,
        )


class _Session:
    """The session thread and what it hands to the op's thread."""

    def __init__(self, settings: RoboSettings, spec: SessionSpec) -> None:
        self.observations: queue.Queue[Observation] = queue.Queue()
        self.summary: SessionSummary | None = None
        self.error: BaseException | None = None
        self._engine: LiveEngine | None = None
        self._stop: str | None = None
        self._lock = threading.Lock()
        # waited on instead of Thread.join: an interrupt inside join can mark a live thread dead
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(settings, spec), name="live-session", daemon=True
        )

    def _run(self, settings: RoboSettings, spec: SessionSpec) -> None:
        try:
            self.summary = run_session(
                settings, spec, on_observation=self.observations.put, engine_ready=self._ready
            )
        except BaseException as exc:  # handed to the op's thread, which raises it
            self.error = exc
        finally:
            self.done.set()

    def _ready(self, engine: LiveEngine) -> None:
        with self._lock:
            self._engine = engine
            if self._stop is not None:
                engine.request_stop(self._stop)

    def stop(self, reason: str) -> None:
        with self._lock:
            self._stop = reason
            if self._engine is not None:
                self._engine.request_stop(reason)


def _relay(context: dg.AssetExecutionContext, session: _Session) -> None:
    while True:
        try:
            observation = session.observations.get_nowait()
        except queue.Empty:
            return
        context.log_event(
            dg.AssetObservation(asset_key=LIVE_KEY, metadata=observation.as_metadata())
        )


def _wait_through_interrupts(done: threading.Event, timeout_s: float) -> None:
    """Wait for the session to wind down; a repeated termination request must not cut that
    short (the session is already cancelling its orders)."""
    deadline = time.monotonic() + timeout_s
    while not done.is_set() and time.monotonic() < deadline:
        try:
            done.wait(timeout=0.5)
        except BaseException:
            continue


def _summary_metadata(summary: SessionSummary) -> dict[str, Any]:
    return {k: v for k, v in summary.as_dict().items() if v is not None}


@dg.asset(
    key=LIVE_KEY,
    group_name=GROUP,
    deps=[champion_model],
    kinds={"python", "duckdb"},
    description="A live trading session of the champion (paper broker and synthetic market by "
    "default): observations about once a minute, a summary when it ends.",
)
def live_trading_session(
    context: dg.AssetExecutionContext, config: LiveTradingConfig, robo: RoboSettingsResource
) -> dg.MaterializeResult:
    settings = robo.settings()
    session = _Session(settings, config.spec())
    session.thread.start()
    interrupted = False
    try:
        while not session.done.wait(timeout=0.5):
            _relay(context, session)
        _relay(context, session)
    except BaseException:  # DagsterExecutionInterruptedError: the run was terminated
        interrupted = True
        context.log.info("run terminated: stopping the live session")
        session.stop("run terminated")
        _wait_through_interrupts(session.done, _STOP_WAIT_S)
        _relay(context, session)
        if session.summary is not None:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=LIVE_KEY, metadata=_summary_metadata(session.summary)
                )
            )
        else:
            context.log.error(
                f"the live session did not stop cleanly: {session.error!r} "
                f"(finished: {session.done.is_set()})"
            )
        raise
    finally:
        if not interrupted and not session.done.is_set():  # pragma: no cover - defensive
            session.stop("op exiting")
            _wait_through_interrupts(session.done, _STOP_WAIT_S)
    if session.error is not None:
        raise session.error
    if session.summary is None:  # pragma: no cover - the thread always sets one or the other
        raise RuntimeError("the live session ended without a summary")
    summary = session.summary
    context.log.info(f"live session {summary.session_id} {summary.status}: {summary.reason}")
    return dg.MaterializeResult(metadata=_summary_metadata(summary))


def champion_version(settings: RoboSettings) -> str | None:
    """The version under the ``champion`` alias, or None."""
    try:
        return resolve(settings.mlflow_tracking_uri, settings.registered_model).version
    except ModelLoadError:
        return None


def ask_reload(settings: RoboSettings) -> None:
    """Ask a running session to reload its model at the next safe point."""
    request(settings, "reload")


ASSETS = (live_trading_session,)
