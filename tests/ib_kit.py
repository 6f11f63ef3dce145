"""The fake IB gateway loaded with a synthetic market, and the live engine wired to it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from tests.fake_ib import FakeGateway, MinuteBar, Script, ThreadedGateway
from tests.live_kit import loaded_model
from trader_runtime.brokers.ib.broker import IbBroker
from trader_runtime.brokers.ib.config import IbConfig
from trader_runtime.brokers.ib.feed import IbFeed
from trader_runtime.decision.config import TradingConfig
from trader_runtime.live.engine import LiveConfig, LiveEngine, SessionSummary
from trader_runtime.live.journal import Journal
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

T = TypeVar("T")
SYMBOLS = ("AAA", "BBB")
WARMUP = (date(2024, 3, 4), date(2024, 3, 7))
LIVE_DAY = date(2024, 3, 8)
NEW_YORK = ZoneInfo("America/New_York")
LIVE_OPEN = datetime.combine(LIVE_DAY, time(9, 30), NEW_YORK)
# the live parity test's settings: the small model trades several times a session
CONFIG = TradingConfig(
    signal={"center_window_bars": 60, "center_min_bars": 10, "entry_edge": 0.01},
)


def market(symbols: Sequence[str] = SYMBOLS, seed: int = 11) -> dict[str, list[MinuteBar]]:
    source = SyntheticSource(SyntheticMarketConfig(seed=seed, signal_strength=0.1))
    out = {}
    for symbol in symbols:
        frame = source.load(BarRequest(symbol, WARMUP[0], LIVE_DAY))
        out[symbol] = [
            MinuteBar(ts, o, h, lo, c, v)
            for ts, o, h, lo, c, v in frame.select(
                "ts", "open", "high", "low", "close", "volume"
            ).iter_rows()
        ]
    return out


def on(gw: ThreadedGateway, fn: Callable[[FakeGateway], T]) -> T:
    """``fn(gateway)`` on the gateway's own loop."""
    return gw.call(lambda: fn(gw.gateway))


def ib_config(port: int, **overrides: object) -> IbConfig:
    base: dict[str, object] = {
        "port": port,
        "client_id": 7,
        "connect_timeout_s": 2.0,
        "connect_attempts": 3,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.3,
        "heartbeat_interval_s": 0.5,
        "heartbeat_timeout_s": 2.0,
        "commission_wait_s": 0.5,
        "order_ack_timeout_s": 3.0,
        "allow_port_mismatch": True,
    }
    return IbConfig.model_validate({**base, **overrides})


@contextmanager
def loaded_gateway(
    *, script: Script | None = None, accounts: tuple[str, ...] = ("DU1234567",)
) -> Iterator[ThreadedGateway]:
    """A running fake gateway with the synthetic market, its clock at the live day's open."""
    with ThreadedGateway(accounts=accounts, script=script) as gw:

        def load(g: FakeGateway) -> None:
            for symbol, bars in market().items():
                g.add_bars(symbol, bars)
            g.set_clock(LIVE_OPEN)

        on(gw, load)
        yield gw


def realtime_subscriptions(gw: ThreadedGateway) -> int:
    """Real-time bar subscriptions held by connected clients."""

    def count(g: FakeGateway) -> int:
        return sum(len(c.rt_bars) for c in g._connections if not c.closed)

    return on(gw, count)


@dataclass
class Clock:
    """Advances the gateway's market one minute every ``interval_s`` from its own thread."""

    gw: ThreadedGateway
    interval_s: float = 0.05
    minutes: int = 0
    until: Callable[[], bool] | None = None  # stop advancing once this is true
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Clock:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.until is not None and self.until():
                return  # the session has its last bar: no fill after it stops listening
            self.gw.call(self.gw.gateway.advance)
            self.minutes += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._stop.wait(0)
            self._thread.join(timeout=10)


def engine(
    tmp: Path, config: IbConfig, *, max_bars: int, journal: Journal, warmup_sessions: int = 3
) -> LiveEngine:
    broker = IbBroker(config, costs=CONFIG.costs)
    return LiveEngine(
        symbols=SYMBOLS,
        trading=CONFIG,
        live=LiveConfig(max_bars=max_bars, bar_interval_s=60.0),
        feed=IbFeed(broker.conn, config, SYMBOLS, warmup_sessions=warmup_sessions),
        broker=broker,
        journal=journal,
        model=loaded_model(),
    )


def run_engine(
    tmp: Path,
    config: IbConfig,
    gw: ThreadedGateway,
    *,
    max_bars: int,
    interval_s: float = 0.05,
    alongside: Callable[[], None] | None = None,
) -> tuple[SessionSummary, Journal]:
    """Run a session against ``gw`` while its clock advances (and ``alongside``, a scenario, runs
    in a thread of its own); returns the summary and the journal."""
    scenario = None if alongside is None else threading.Thread(target=alongside, daemon=True)
    if scenario is not None:
        scenario.start()
    journal = Journal(tmp / "journal.duckdb")
    live = engine(tmp, config, max_bars=max_bars, journal=journal)
    clock: Clock | None = None

    async def main() -> SessionSummary:
        nonlocal clock
        task = asyncio.create_task(live.run())
        # the clock starts once the warm-up is read (the feed subscribes after it)
        while live._state is None and not task.done():
            await asyncio.sleep(0.02)
        state = live._state
        clock = Clock(gw, interval_s, until=lambda: state is not None and state.bar >= max_bars)
        clock.start()
        return await task

    try:
        summary = asyncio.run(main())
    finally:
        if clock is not None:
            clock.stop()
        if scenario is not None:
            scenario.join(timeout=60)
    return summary, journal
