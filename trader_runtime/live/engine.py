"""The live engine: feed -> market state -> model -> ``Trader`` -> journal -> broker.

One asyncio loop owns the broker and the feed. Everything heavy for a bar (streaming features,
model scoring, the decision core, sizing, risk, the journal commit) runs in one worker thread, in
one call per bar, so the loop stays free for broker traffic and the watchdog. Per bar instant, in
the backtest's order:

1. the market state opens the instant (checks it and rolls the session, so the impact inputs are
   the instant's); the broker sees the bar (the paper broker fills the previous bar's children
   at this open) and hands over executions and finished orders;
2. in the worker, in one call: the market state takes the bars (features, regime), the
   ``Trader`` books the executions, the book is marked (daily loss guard), the model scores, the
   decision core decides, and the working parents cut their children through the risk checks;
3. the journal commits, in one transaction: fills, decisions (with their feature snapshot),
   order intents with their client order ids, positions, equity, events, the instant's bars and
   a checkpoint of the engine state but the market state; only then do the orders go out.
4. every ``LiveConfig.market_checkpoint_bars`` bars, after the orders went out, the worker saves
   the market state (features, regime, volume profiles: most of the state's bytes) on its own.

A restart finds the newest running session of the same broker and universe in the journal,
restores the checkpoint and the last market state, replays the instants journaled since onto the
market state, books the executions the broker made meanwhile (by ``exec_id``), sends intents
that never reached the broker (by ``client_order_id``, which the broker deduplicates) and
continues the feed after the checkpoint's bar.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import pickle
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trader_runtime import compiled
from trader_runtime.brokers.base import (
    AccountState,
    BarQuote,
    Broker,
    BrokerError,
    Execution,
    OrderRequest,
    OrderStatus,
)
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.core import BarSnapshot
from trader_runtime.errors import ConfigError, RoboTraderError
from trader_runtime.execution.costs import Fill
from trader_runtime.features.streaming import epoch_us
from trader_runtime.live.feeds import Feed
from trader_runtime.live.journal import (
    BarCommit,
    DecisionRecord,
    EquityRecord,
    EventRecord,
    FillRecord,
    InstantRecord,
    IntentRecord,
    Journal,
    PositionRecord,
)
from trader_runtime.live.market_state import MarketRow, MarketState
from trader_runtime.live.scoring import Scorer
from trader_runtime.market.instant import MarketInstant
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.trading.orders import ChildOrder
from trader_runtime.trading.trader import Trader

T = TypeVar("T")
SessionStatus = Literal["completed", "stopped", "killed", "failed"]

CHECKPOINT_FORMAT = 5
"""The layout of the engine state a checkpoint holds. Raise it whenever a class the state pickles
(``MarketState``, ``DecisionCore``, ``Trader`` and what they hold) changes its attributes: a
session checkpointed under another layout is then refused with a clear error at start, instead of
failing mid-session. 4: the market state's per-slot volume history is one array per symbol.
5: the market state is saved on its own (every ``market_checkpoint_bars`` bars) and replayed from
the journaled instants; a bar's checkpoint holds the rest."""


class CheckpointError(RoboTraderError):
    """A session's checkpoint was written by another version of the engine state."""


class LiveConfig(BaseModel):
    """How one live session runs (the trading rules themselves are ``TradingConfig``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["paper", "live"] = "paper"
    max_bars: int | None = Field(default=None, ge=1)
    observation_interval_s: float = Field(default=60.0, gt=0.0)
    flatten_on_stop: bool = False
    resume: bool = True
    pin_threads: bool = True
    """Run the event loop and the worker on one CPU (the last the process may use) while the
    session trades: a bar handed to the worker then starts without waking another CPU. Measured
    here, both threads on one CPU against free to move: hand-off p50 81-124 us against 128-298,
    decision p99 379-1,187 us against 537-5,614 (docs/benchmarks.md)."""
    market_checkpoint_bars: int = Field(default=30, ge=1)
    """Save the market state every this many bars (between bars, after the orders went out); a
    restart replays at most this many journaled instants onto the last one."""
    control_dir: Path | None = None
    bar_interval_s: float | None = Field(default=None, gt=0.0)
    """Expected wall seconds between bars (feeds on an accelerated clock: 60 / speed); enables
    the stale-data watchdog. None: no watchdog."""
    watchdog_period_s: float = Field(default=0.25, gt=0.0)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the session reports about once a minute (and at its end)."""

    session_id: str
    ts: datetime | None
    bars: int
    equity_usd: float
    cash_usd: float
    positions: dict[str, float]
    regime: str
    fills: int
    orders: int
    slippage_bps: float
    halted: bool
    model_version: str

    def as_metadata(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "market_ts": None if self.ts is None else self.ts.isoformat(),
            "bars": self.bars,
            "equity_usd": round(self.equity_usd, 2),
            "cash_usd": round(self.cash_usd, 2),
            "positions": json.dumps({s: q for s, q in self.positions.items() if q}),
            "regime": self.regime,
            # the regime is the market's: every symbol trades under it
            "regime_by_symbol": json.dumps(dict.fromkeys(self.positions, self.regime)),
            "fills": self.fills,
            "orders": self.orders,
            "slippage_vs_arrival_bps": round(self.slippage_bps, 3),
            "halted": self.halted,
            "model_version": self.model_version,
        }


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """The end of a session."""

    session_id: str
    status: SessionStatus
    resumed: bool
    bars: int
    decisions: int
    orders: int
    fills: int
    refusals: int
    trades: int
    equity_start_usd: float
    equity_end_usd: float
    commission_usd: float
    slippage_bps: float
    model_version: str
    reason: str
    broker: str = ""

    @property
    def pnl_usd(self) -> float:
        return self.equity_end_usd - self.equity_start_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "broker": self.broker,
            "status": self.status,
            "resumed": self.resumed,
            "bars": self.bars,
            "decisions": self.decisions,
            "orders": self.orders,
            "fills": self.fills,
            "refusals": self.refusals,
            "round_trips": self.trades,
            "equity_start_usd": round(self.equity_start_usd, 2),
            "equity_end_usd": round(self.equity_end_usd, 2),
            "pnl_usd": round(self.pnl_usd, 2),
            "commission_usd": round(self.commission_usd, 2),
            "slippage_vs_arrival_bps": round(self.slippage_bps, 3),
            "model_version": self.model_version,
            "reason": self.reason,
        }


@dataclass(slots=True)
class _State:
    """Everything a bar's checkpoint restores (the market state is saved on its own)."""

    trader: Trader
    bar: int = 0
    last_ts: datetime | None = None
    inflight: dict[str, ChildOrder] = field(default_factory=dict)
    equity_start_usd: float = math.nan
    equity_usd: float = math.nan
    n_decisions: int = 0
    n_orders: int = 0
    n_fills: int = 0
    n_refusals: int = 0
    commission_usd: float = 0.0
    slippage_bps_notional: float = 0.0
    notional_usd: float = 0.0
    regime: str = ""


class LiveEngine:
    """One live session of ``symbols`` (see the module docstring)."""

    def __init__(
        self,
        *,
        symbols: tuple[str, ...],
        trading: TradingConfig,
        live: LiveConfig,
        feed: Feed,
        broker: Broker,
        journal: Journal,
        model: Scorer,
        model_loader: Callable[[], Scorer] | None = None,
        model_uri: str = "",
        feature_set_hash: str = "",
        on_observation: Callable[[Observation], None] | None = None,
        base: Timeframe = Timeframe.M1,
    ) -> None:
        if live.mode == "live" and broker.name == "paper":
            raise ConfigError("mode 'live' needs a real broker; the paper broker only simulates")
        self.symbols = symbols
        self._column = {s: j for j, s in enumerate(symbols)}  # symbol -> column of the arrays
        self.trading = trading
        self.live = live
        self.feed = feed
        self.broker = broker
        self.journal = journal
        self.model = model
        self.model_loader = model_loader
        self.model_uri = model_uri
        self.feature_set_hash = feature_set_hash
        self.on_observation = on_observation
        self.base = base
        self.session_id = ""
        self.resumed = False
        # per bar: market state update + booking + scoring + decision + children (bar arrival
        # to order intents, the journal commit excluded) and the journal commit, microseconds
        self.latencies_us: deque[float] = deque(maxlen=100_000)
        # the same span in the worker thread's CPU time: the wall time less the time the thread
        # was not running (preempted by the OS, or its virtual CPU by the hypervisor)
        self.latencies_cpu_us: deque[float] = deque(maxlen=100_000)
        self.commit_us: deque[float] = deque(maxlen=100_000)
        self.market_save_us: deque[float] = deque(maxlen=100_000)  # between bars (worker)
        # per bar: its arrival at the loop to the worker's start (the instant's checks, the
        # broker's bar, the hand-off, and a between-bar job still running when bars come back to
        # back), microseconds
        self.handoff_us: deque[float] = deque(maxlen=100_000)
        self._arrived_ns = 0
        self.pinned_cpu: int | None = None  # the CPU the session traded on (``pin_threads``)
        self._state: _State | None = None
        self._market: MarketState | None = None
        self._market_saved_bar = 0  # the bar count of the last market state saved
        self._market_saving: Future[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-engine")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._reload = False
        self._late_final: list[OrderStatus] = []
        self._finished: list[OrderStatus] = []  # finished orders booked, not yet journaled
        self._last_bar_wall = time.monotonic()
        self._stale = False
        self._last_observation = -math.inf
        self._events: list[EventRecord] = []
        self._events_lock = threading.Lock()

    # -- control (thread-safe) -----------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop after the bar in progress: cancel working orders (or flatten, per config)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stop_reason = self._stop_reason or reason
            return
        loop.call_soon_threadsafe(self._set_stop, reason)

    def request_reload(self) -> None:
        """Reload the model at the next safe point (between two bars)."""
        self._reload = True

    def _set_stop(self, reason: str) -> None:
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    @property
    def state(self) -> _State:
        if self._state is None:
            raise RoboTraderError("the engine has not started")
        return self._state

    @property
    def market(self) -> MarketState:
        if self._market is None:
            raise RoboTraderError("the engine has not started")
        return self._market

    # -- the session ---------------------------------------------------------------------------

    async def run(self) -> SessionSummary:
        """Run the session until the feed ends, ``max_bars`` bars, a stop, or a kill."""
        self._loop = asyncio.get_running_loop()
        if self._stop_reason is not None:
            self._stop.set()
        account = await self.broker.connect()
        self._check_account(account)
        try:
            await self._open_session(account)
            await self._reconcile()
            self._broker_news()
            # the model, the warmed-up state and the imports are long-lived: move them out of
            # the collector's generations, and collect only between bars (``_collect_garbage``)
            gc.collect()
            gc.freeze()
            gc_enabled = gc.isenabled()
            gc.disable()
            pinned = await self._pin_threads()
            try:
                status = await self._trade()
            finally:
                await self._unpin_threads(pinned)
                if gc_enabled:
                    gc.enable()
            return await self._shutdown(status, self._stop_reason or "feed ended")
        except BaseException:
            # the session stays "running" in the journal, so the next start resumes it
            await self._abort()
            raise
        finally:
            gc.unfreeze()
            self._pool.shutdown(wait=True)

    async def _pin_threads(self) -> tuple[set[int], set[int]] | None:
        """Pin the loop's thread and the worker to one CPU (``LiveConfig.pin_threads``);
        returns their CPU sets before, or None when nothing was pinned."""
        if not self.live.pin_threads or not hasattr(os, "sched_setaffinity"):
            return None
        cpu = {max(os.sched_getaffinity(0))}
        worker = await self._in_worker(_set_affinity, cpu)
        loop = _set_affinity(cpu)
        self.pinned_cpu = next(iter(cpu))
        return loop, worker

    async def _unpin_threads(self, pinned: tuple[set[int], set[int]] | None) -> None:
        if pinned is not None:
            loop, worker = pinned
            _set_affinity(loop)
            await self._in_worker(_set_affinity, worker)

    async def _abort(self) -> None:
        try:
            if self._state is not None:
                await self._cancel_working()
        except Exception:
            pass
        finally:
            await self.broker.close()

    def _check_account(self, account: AccountState) -> None:
        if self.live.mode == "paper" and not account.paper:
            raise ConfigError(
                f"paper mode, but account {account.account_id} is not a paper account: refused"
            )
        if self.live.mode == "live" and account.paper:
            raise ConfigError(f"live mode, but account {account.account_id} is a paper account")

    async def _in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    async def _open_session(self, account: AccountState) -> None:
        # numba loads a kernel from its on-disk cache at its first call, 5-40 ms each: load them
        # all now, or the first bar, first order and first correlation penalty of the session
        # would wait for them (measured: 62 ms at bar 0, 10 ms at the first order)
        await self._in_worker(compiled.warm)
        found = self.journal.resumable_session(broker=self.broker.name, symbols=self.symbols)
        checkpoint = None if found is None else self.journal.latest_checkpoint(found.session_id)
        if found is not None and checkpoint is not None and self.live.resume:
            state = _restore(found.session_id, checkpoint.state)
            self._market = await self._in_worker(self._replayed_market, found.session_id, state)
            self._state = state
            self.session_id = found.session_id
            self.resumed = True
            self._event("resumed", {"checkpoint_ts": checkpoint.ts.isoformat()})
            return
        if found is not None:
            self.journal.end_session(
                found.session_id,
                status="abandoned",
                summary={"reason": "a new session started without resuming"},
                ended_at=_now(),
            )
        self.session_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self._market, state = await self._in_worker(self._fresh_state, account)
        self._state = state
        self.journal.start_session(
            self.session_id,
            mode=self.live.mode,
            broker=self.broker.name,
            model_uri=self.model_uri,
            model_version=self.model.version,
            feature_set_hash=self.feature_set_hash,
            symbols=self.symbols,
            config={
                "trading": self.trading.model_dump(mode="json"),
                "live": self.live.model_dump(mode="json"),
            },
            started_at=_now(),
        )
        await self._in_worker(self._save_market)

    def _fresh_state(self, account: AccountState) -> tuple[MarketState, _State]:
        market = MarketState(
            self.symbols,
            self.trading.confirmation.timeframes if self.trading.confirmation.enabled else (),
            self.trading.regime,
            base=self.base,
        )
        for instant in self.feed.history():
            market.update(instant)
        trader = Trader(self.symbols, self.trading, model=self.model.version)
        book = trader.book
        book.cash = account.cash_usd
        for j, symbol in enumerate(self.symbols):
            book.position[j] = account.positions.get(symbol, 0.0)
            if book.position[j] != 0.0:  # the stops act on a position carried in at its cost
                book.avg_entry[j] = account.avg_cost_usd.get(symbol, math.nan)
        return market, _State(trader=trader)

    def _save_market(self) -> None:
        """Save the market state as it is after the session's ``state.bar`` instants (in the
        worker, between bars)."""
        started = time.perf_counter_ns()
        state, market = self.state, self.market
        ts = state.last_ts or _now()
        self.journal.write_market_checkpoint(self.session_id, state.bar, ts, _pickled(market))
        self._market_saved_bar = state.bar
        self.market_save_us.append((time.perf_counter_ns() - started) / 1000.0)

    def _replayed_market(self, session_id: str, state: _State) -> MarketState:
        """The session's last saved market state with the instants journaled since replayed
        onto it, up to the checkpoint's bar; refused (``CheckpointError``) when the journal
        lacks either."""
        saved = self.journal.latest_market_checkpoint(session_id)
        if saved is None:
            raise CheckpointError(_refusal(session_id, "no market state saved"))
        market = _restore_market(session_id, saved.state)
        instants = self.journal.market_instants(session_id, saved.bar, state.bar)
        if [r.bar for r in instants] != list(range(saved.bar, state.bar)):
            what = f"instants {saved.bar}..{state.bar - 1} not all journaled"
            raise CheckpointError(_refusal(session_id, what))
        for record in instants:
            market.update(record.instant)
        self._market_saved_bar = saved.bar
        return market

    # -- reconciliation ------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Book what the broker did that the journal lacks; send intents that never left."""
        rec = await self.broker.reconcile()
        self.broker.drain()  # everything is in the reconciliation
        state = self.state
        await self._in_worker(self._book_missed, rec.executions, rec.orders)
        known = {o.client_order_id for o in rec.orders}
        for intent in self.journal.intents(self.session_id, ["pending"]):
            if intent.client_order_id in known:
                self.journal.mark_intent(intent.client_order_id, "sent", at=_now())
                continue
            child = state.inflight.get(intent.client_order_id)
            if child is None:
                self.journal.mark_intent(
                    intent.client_order_id, "cancelled", note="no longer wanted", at=_now()
                )
                continue
            await self._send([intent])

    def _book_missed(self, executions: list[Execution], orders: list[OrderStatus]) -> None:
        state = self.state
        booked = self.journal.fill_ids(self.session_id)
        missed = [
            e for e in executions if e.exec_id not in booked and e.client_order_id in state.inflight
        ]
        finals = [o for o in orders if o.final and o.client_order_id in state.inflight]
        if not missed and not finals:
            return
        ts = state.last_ts or _now()
        fills = self._book(max(state.bar - 1, 0), ts, missed, finals)
        self._event("reconciled", {"missed_fills": len(fills), "finished_orders": len(finals)})
        self._commit(ts, fills=fills)

    # -- the bar loop --------------------------------------------------------------------------

    async def _trade(self) -> SessionStatus:
        watchdog = asyncio.create_task(self._watchdog())
        consume = asyncio.create_task(self._consume())
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({consume, stop}, return_when=asyncio.FIRST_COMPLETED)
            if consume in done:
                consume.result()  # raises what the loop raised
                return "completed" if self._stop_reason is None else self._status_of_stop()
            consume.cancel()
            await asyncio.gather(consume, return_exceptions=True)
            return self._status_of_stop()
        finally:
            for task in (watchdog, stop):
                task.cancel()
            await asyncio.gather(watchdog, stop, return_exceptions=True)

    def _status_of_stop(self) -> SessionStatus:
        return "killed" if (self._stop_reason or "").startswith("kill") else "stopped"

    async def _consume(self) -> None:
        state = self.state
        async for instant in self.feed.stream(after=state.last_ts):
            if self._reload:
                await self._reload_model()
            await self._on_instant(instant)
            if self.live.max_bars is not None and state.bar >= self.live.max_bars:
                self._stop_reason = self._stop_reason or f"max_bars {self.live.max_bars} reached"
                return
            if self._stop.is_set():
                return

    async def _on_instant(self, instant: MarketInstant) -> None:
        self._arrived_ns = time.perf_counter_ns()
        self._last_bar_wall = time.monotonic()
        if self._stale:
            self._stale = False
            self._event("data_resumed", {"ts": instant.ts.isoformat()})
        state = self.state
        await self._market_saved()  # the market state is the worker's until saved
        market = self.market
        market.open_instant(instant)
        bars = instant.bars
        quotes = {
            s: BarQuote(b.open, b.close, b.volume, *market.impact(j))
            for j, s in enumerate(self.symbols)
            if (b := bars.get(s)) is not None
        }
        await self.broker.on_bar(instant.ts, quotes)
        executions, finals = self.broker.drain()
        self._broker_news()
        finals = [*self._late_final, *finals]
        self._late_final = []
        halted_before = state.trader.risk.halted
        intents = await self._in_worker(self._bar, instant, executions, finals)
        if state.trader.risk.halted and not halted_before:
            await self._cancel_working()
        await self._send(intents)
        # the worker's next jobs when due (after the orders went out, before the next bar); most
        # bars none is, and the worker is not woken for nothing
        if state.bar - self._market_saved_bar >= self.live.market_checkpoint_bars:
            self._market_saving = self._pool.submit(self._save_market)
        if _due_generation() is not None:
            self._pool.submit(_collect_garbage)
        self._maybe_observe()

    async def _market_saved(self) -> None:
        """Wait for the market state being saved, if it is (raising what the save raised)."""
        saving, self._market_saving = self._market_saving, None
        if saving is not None:
            await asyncio.wrap_future(saving)

    def _bar(
        self, instant: MarketInstant, executions: list[Execution], finals: list[OrderStatus]
    ) -> list[IntentRecord]:
        """The worker's part of a bar: the market state takes it, then ``_step``."""
        started = time.perf_counter_ns()
        started_cpu = time.thread_time_ns()
        row = self.market.update(instant)
        intents = self._step(
            instant, row, executions, finals, started_ns=started, started_cpu_ns=started_cpu
        )
        self.handoff_us.append((started - self._arrived_ns) / 1000.0)  # outside the spans
        return intents

    def _step(
        self,
        instant: MarketInstant,
        row: MarketRow,
        executions: list[Execution],
        finals: list[OrderStatus],
        *,
        started_ns: int,
        started_cpu_ns: int,
    ) -> list[IntentRecord]:
        state = self.state
        trader = state.trader
        t = state.bar
        ts_us = row.ts_us
        regime = row.regime.value
        fills = self._book(t, row.ts, executions, finals, regime=regime, ts_us=ts_us)
        n_events = len(trader.risk_events)
        equity = trader.mark(ts_us, row.close)
        for event in trader.risk_events[n_events:]:
            self._event(event.kind, dict(event.detail))
        if math.isnan(state.equity_start_usd):
            state.equity_start_usd = equity
        state.equity_usd = equity
        state.regime = regime
        probability = self.model.predict(row.features)
        snapshot = BarSnapshot(
            bar_index=t,
            close=row.close,
            high=row.high,
            low=row.low,
            probability=probability,
            trends=row.trends,
            applicable=row.applicable,
            regime=row.regime,
        )
        n_decided = len(trader.decisions)
        trader.decide(ts_us, snapshot)
        slices = self.trading.execution.slices
        n_refused = len(trader.refusals)
        if trader.risk.halted and self.trading.risk.flatten_on_halt and trader.risk_events:
            children = trader.flatten_children(t, ts_us)
        else:
            children = trader.children(
                t, ts_us, lambda: self.market.expected_volume(slices), equity
            )
        intents = self._intents(row.ts, t, children)
        decided = time.perf_counter_ns()
        self.latencies_us.append((decided - started_ns) / 1000.0)
        self.latencies_cpu_us.append((time.thread_time_ns() - started_cpu_ns) / 1000.0)
        # the journal's rows of the decisions (with their feature snapshots) are not intents
        decisions = self._decision_records(row, trader.decisions[n_decided:], t)
        for refusal in trader.refusals[n_refused:]:
            self._event(
                "refused", {"symbol": refusal.symbol, "qty": refusal.qty, "reason": refusal.reason}
            )
        state.n_refusals += len(trader.refusals) - n_refused
        state.n_decisions += len(decisions)
        state.bar = t + 1
        state.last_ts = row.ts
        trader.decisions.clear()
        trader.ledger.fills.clear()
        trader.refusals.clear()
        self._commit(
            row.ts,
            fills=fills,
            decisions=decisions,
            intents=intents,
            equity=self._equity_record(row.ts, equity, regime),
            instant=InstantRecord(t, instant),
        )
        self.commit_us.append((time.perf_counter_ns() - decided) / 1000.0)
        return intents

    def _book(
        self,
        t: int,
        ts: datetime,
        executions: list[Execution],
        finals: list[OrderStatus],
        *,
        regime: str | None = None,
        ts_us: int | None = None,
    ) -> list[FillRecord]:
        """Book executions of our children, then finish the children that are over
        (``ts_us``: ``ts`` in epoch microseconds, when the caller has it)."""
        if not executions and not finals:
            return []  # most bars
        state = self.state
        trader = state.trader
        if ts_us is None:
            ts_us = epoch_us(ts)
        out: list[FillRecord] = []
        index = self._column
        for e in executions:
            child = state.inflight.get(e.client_order_id)
            if child is None and e.symbol not in index:
                self._event("unknown_execution", {"exec_id": e.exec_id, "order": e.client_order_id})
                continue
            fill = Fill(
                qty=e.qty,
                price_usd=e.price_usd,
                reference_usd=e.reference_usd,
                commission_usd=e.commission_usd,
                spread_cost_usd=e.spread_cost_usd,
                impact_cost_usd=e.impact_cost_usd,
            )
            if child is None:  # a correction, or a fill reported after its order was over
                trader.book_late_fill(t, ts_us, index[e.symbol], fill, regime or state.regime)
                self._event("late_execution", {"exec_id": e.exec_id, "order": e.client_order_id})
            else:
                trader.book_fill(t, ts_us, child, fill, regime or state.regime)
            state.n_fills += 1
            state.commission_usd += e.commission_usd
            if child is not None and child.reference_usd > 0:
                side = 1.0 if e.qty > 0 else -1.0
                notional = abs(e.qty) * child.reference_usd
                slip = side * (e.price_usd / child.reference_usd - 1.0) * 1e4
                state.slippage_bps_notional += slip * notional
                state.notional_usd += notional
            out.append(
                FillRecord(
                    exec_id=e.exec_id,
                    session_id=self.session_id,
                    client_order_id=e.client_order_id,
                    ts=e.ts,
                    symbol=e.symbol,
                    qty=e.qty,
                    price_usd=e.price_usd,
                    reference_usd=e.reference_usd,
                    commission_usd=e.commission_usd,
                    spread_cost_usd=e.spread_cost_usd,
                    impact_cost_usd=e.impact_cost_usd,
                    reason="late" if child is None else child.reason,
                )
            )
        for status in finals:
            child = state.inflight.pop(status.client_order_id, None)
            if child is None:
                continue
            trader.child_done(child, status.filled_qty)
            self._finished.append(status)  # journaled with the bar's commit
        trader.ledger.fills.clear()
        return out

    def _decision_records(
        self, row: MarketRow, rows: list[dict[str, Any]], t: int
    ) -> list[DecisionRecord]:
        out = []
        index = self._column
        names = self.market.feature_names
        for d in rows:
            j = index[d["symbol"]]
            out.append(
                DecisionRecord(
                    decision_id=self._decision_id(t, d["symbol"]),
                    session_id=self.session_id,
                    ts=row.ts,
                    symbol=d["symbol"],
                    model_version=self.model.version,
                    regime=d["regime"],
                    probability=d["probability"],
                    edge=d["edge"],
                    target_weight=d["target_weight"],
                    reason=d["reason"],
                    features={n: float(v) for n, v in zip(names, row.features[j], strict=True)},
                )
            )
        return out

    def _broker_news(self) -> None:
        """Journal the broker's connection events and late commission reports."""
        for kind, detail in self.broker.drain_events():
            self._event(f"broker_{kind}", detail)
        for exec_id, commission_usd in self.broker.late_commissions():
            self.journal.record_commission(exec_id, commission_usd)

    def _decision_id(self, t: int, symbol: str) -> str:
        return f"{self.session_id}-{t:06d}-{symbol}"

    def _intents(self, ts: datetime, t: int, children: list[ChildOrder]) -> list[IntentRecord]:
        state = self.state
        out = []
        for child in children:
            suffix = "F" if child.reason == "flatten" else "C"
            client_id = f"{self._decision_id(t, child.symbol)}-{suffix}"
            state.inflight[client_id] = child
            state.n_orders += 1
            out.append(
                IntentRecord(
                    client_order_id=client_id,
                    session_id=self.session_id,
                    decision_id=self._decision_id(child.bar, child.symbol),
                    ts=ts,
                    symbol=child.symbol,
                    qty=child.qty,
                    reference_usd=child.reference_usd,
                    reason="late" if child is None else child.reason,
                )
            )
        return out

    async def _send(self, intents: list[IntentRecord]) -> None:
        for intent in intents:
            request = OrderRequest(
                client_order_id=intent.client_order_id,
                symbol=intent.symbol,
                qty=intent.qty,
                reference_usd=intent.reference_usd,
                ts=intent.ts,
                decision_id=intent.decision_id,
            )
            try:
                status = await self.broker.submit(request)
            except BrokerError as exc:
                self.journal.mark_intent(
                    intent.client_order_id, "rejected", note=str(exc), at=_now()
                )
                self._late_final.append(
                    OrderStatus(
                        intent.client_order_id,
                        "",
                        intent.symbol,
                        intent.qty,
                        "rejected",
                        0.0,
                        str(exc),
                    )
                )
                continue
            self.journal.mark_intent(
                intent.client_order_id,
                "rejected" if status.state == "rejected" else "sent",
                broker_order_id=status.broker_order_id,
                at=_now(),
            )
            if status.final:
                self._late_final.append(status)

    async def _cancel_working(self) -> None:
        for client_id in list(self.state.inflight):
            status = await self.broker.cancel(client_id)
            if status is not None and status.final:
                self._late_final.append(status)

    # -- reload, watchdog, observations --------------------------------------------------------

    async def _reload_model(self) -> None:
        self._reload = False
        if self.model_loader is None:
            return
        old = self.model.version
        try:
            model = await self._in_worker(self.model_loader)
        except RoboTraderError as exc:
            self._event("model_reload_refused", {"error": str(exc), "kept": old})
            return
        self.model = model
        self.state.trader.model = model.version
        self._event("model_reloaded", {"from": old, "to": model.version})

    async def _watchdog(self) -> None:
        control = self.live.control_dir
        while True:
            await asyncio.sleep(self.live.watchdog_period_s)
            if control is not None:
                self._poll_control(control)
            interval = self.live.bar_interval_s
            if interval is not None and not self._stale:
                silent = time.monotonic() - self._last_bar_wall
                if silent > self.trading.risk.stale_after_bars * interval:
                    self._stale = True
                    self._event("stale_data", {"silent_s": round(silent, 3)})
                    await self._cancel_working()

    def _poll_control(self, control: Path) -> None:
        for name, action in (("stop", "stop"), ("kill", "kill"), ("reload", "reload")):
            path = control / name
            if not path.exists():
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            if action == "reload":
                self.request_reload()
            elif action == "kill":
                self.state.trader.risk.halt("kill_switch")
                self._event("halt", {"reason": "kill_switch"})
                self._set_stop("kill switch")
            else:
                self._set_stop("stop file")

    def _maybe_observe(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_observation < self.live.observation_interval_s:
            return
        self._last_observation = now
        if self.on_observation is not None:
            self.on_observation(self.observation())

    def observation(self) -> Observation:
        state = self.state
        book = state.trader.book
        equity = state.equity_usd if math.isfinite(state.equity_usd) else book.cash
        return Observation(
            session_id=self.session_id,
            ts=state.last_ts,
            bars=state.bar,
            equity_usd=equity,
            cash_usd=book.cash,
            positions={s: float(book.position[j]) for j, s in enumerate(self.symbols)},
            regime=state.regime,
            fills=state.n_fills,
            orders=state.n_orders,
            slippage_bps=self._slippage_bps(),
            halted=state.trader.risk.halted,
            model_version=self.model.version,
        )

    def _slippage_bps(self) -> float:
        state = self.state
        return state.slippage_bps_notional / state.notional_usd if state.notional_usd else 0.0

    # -- stopping ------------------------------------------------------------------------------

    async def _shutdown(self, status: SessionStatus, reason: str) -> SessionSummary:
        if self._state is None or not self.session_id:
            await self.broker.close()
            return SessionSummary(
                session_id=self.session_id,
                status=status,
                resumed=False,
                bars=0,
                decisions=0,
                orders=0,
                fills=0,
                refusals=0,
                trades=0,
                equity_start_usd=math.nan,
                equity_end_usd=math.nan,
                commission_usd=0.0,
                slippage_bps=0.0,
                model_version=self.model.version,
                reason=reason,
                broker=self.broker.name,
            )
        state = self.state
        try:
            await self._market_saved()
            await self._wind_down()
        finally:
            summary = SessionSummary(
                session_id=self.session_id,
                status=status,
                resumed=self.resumed,
                bars=state.bar,
                decisions=state.n_decisions,
                orders=state.n_orders,
                fills=state.n_fills,
                refusals=state.n_refusals,
                trades=len(state.trader.ledger.trades),
                equity_start_usd=state.equity_start_usd,
                equity_end_usd=state.equity_usd,
                commission_usd=state.commission_usd,
                slippage_bps=self._slippage_bps(),
                model_version=self.model.version,
                reason=reason,
                broker=self.broker.name,
            )
            self.journal.end_session(
                self.session_id, status=status, summary=summary.as_dict(), ended_at=_now()
            )
            await self.broker.close()
        self._maybe_observe(force=True)
        return summary

    async def _wind_down(self) -> None:
        """Cancel working orders, or flatten (per config), and book what that leaves."""
        state = self.state
        trader = state.trader
        if self.live.flatten_on_stop and state.last_ts is not None:
            intents = await self._in_worker(self._flatten_intents)
            await self._cancel_working()
            await self._send(intents)
            await self.broker.settle()
        else:
            await self._cancel_working()
            await self.broker.settle()
        executions, finals = self.broker.drain()
        finals = [*self._late_final, *finals]
        self._late_final = []
        ts = state.last_ts or _now()

        def book() -> None:
            fills = self._book(max(state.bar - 1, 0), ts, executions, finals)
            trader.cancel_all()
            equity = trader.book.value_at(trader.book.mark)
            state.equity_usd = equity
            self._event("stopped", {"reason": self._stop_reason or "feed ended"})
            self._commit(ts, fills=fills, equity=self._equity_record(ts, equity, state.regime))

        await self._in_worker(book)

    def _flatten_intents(self) -> list[IntentRecord]:
        state = self.state
        assert state.last_ts is not None
        children = state.trader.flatten_children(state.bar, epoch_us(state.last_ts))
        intents = self._intents(state.last_ts, state.bar, children)
        # no positions snapshot: the book has not moved, the journal keeps the last one
        self._commit(state.last_ts, intents=intents, snapshot=False)
        return intents

    # -- records -------------------------------------------------------------------------------

    def _commit(
        self,
        ts: datetime,
        *,
        fills: Sequence[FillRecord] = (),
        decisions: Sequence[DecisionRecord] = (),
        intents: Sequence[IntentRecord] = (),
        equity: EquityRecord | None = None,
        snapshot: bool = True,
        instant: InstantRecord | None = None,
    ) -> None:
        """One journal transaction: what happened, the positions (and pending events) when
        ``snapshot``, and a checkpoint of the engine state after it. The orders that finished
        are journaled just before (a restart from the previous checkpoint records them again)."""
        finished, self._finished = self._finished, []
        for status in finished:
            self.journal.record_order_status(
                session_id=self.session_id,
                client_order_id=status.client_order_id,
                broker_order_id=status.broker_order_id,
                status=status.state,
                filled_qty=status.filled_qty,
                remaining_qty=status.qty - status.filled_qty,
                at=_now(),
            )
        self.journal.commit_bar(
            BarCommit(
                session_id=self.session_id,
                ts=ts,
                fills=fills,
                decisions=decisions,
                intents=intents,
                positions=self._positions() if snapshot else (),
                equity=equity,
                events=self._drain_events() if snapshot else (),
                checkpoint=self._checkpoint(),
                instant=instant,
            )
        )

    def _equity_record(self, ts: datetime, equity_usd: float, regime: str) -> EquityRecord:
        book = self.state.trader.book
        held = book.holdings_usd()
        return EquityRecord(
            ts=ts,
            equity_usd=equity_usd,
            cash_usd=book.cash,
            gross_usd=float(np.abs(held).sum()),
            net_usd=float(held.sum()),
            regime=regime,
        )

    def _positions(self) -> list[PositionRecord]:
        book = self.state.trader.book
        return [
            PositionRecord(
                s, float(book.position[j]), float(book.avg_entry[j]), float(book.mark[j])
            )
            for j, s in enumerate(self.symbols)
            if book.position[j] != 0.0 or not math.isnan(book.avg_entry[j])
        ]

    def _event(self, kind: str, detail: Mapping[str, Any]) -> None:
        ts = self._state.last_ts if self._state is not None and self._state.last_ts else _now()
        with self._events_lock:
            self._events.append(EventRecord(ts=ts, kind=kind, detail=dict(detail)))

    def _drain_events(self) -> list[EventRecord]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    def _checkpoint(self) -> bytes:
        return _pickled(self.state)


def _pickled(state: _State | MarketState) -> bytes:
    """A checkpoint blob: ``state`` with this version's ``CHECKPOINT_FORMAT`` (``_unpickled``
    reads it back)."""
    return pickle.dumps((CHECKPOINT_FORMAT, state), protocol=pickle.HIGHEST_PROTOCOL)


def _restore(session_id: str, blob: bytes) -> _State:
    """The engine state of a checkpoint in this version's ``CHECKPOINT_FORMAT``; any other is
    refused before anything moves (the journal keeps the session running, for the version that
    wrote it to resume)."""
    return _unpickled(session_id, blob, _State, "state")


def _restore_market(session_id: str, blob: bytes) -> MarketState:
    """The market state of a market checkpoint, refused as ``_restore`` refuses."""
    return _unpickled(session_id, blob, MarketState, "market state")


def _unpickled(session_id: str, blob: bytes, kind: type[T], name: str) -> T:
    """The ``kind`` a checkpoint blob holds as ``(CHECKPOINT_FORMAT, kind)``, else
    ``CheckpointError``."""
    try:
        loaded = pickle.loads(blob)  # our own journal, our own state
    except Exception as exc:  # a module or class another version had
        what = f"{name} unreadable here: {type(exc).__name__}: {exc}"
        raise CheckpointError(_refusal(session_id, what)) from exc
    current = isinstance(loaded, tuple) and len(loaded) == 2 and loaded[0] == CHECKPOINT_FORMAT
    if current and isinstance(loaded[1], kind):
        return loaded[1]
    found = loaded[0] if isinstance(loaded, tuple) and loaded else "none recorded"
    raise CheckpointError(_refusal(session_id, f"{name} format {found}"))


def _refusal(session_id: str, what: str) -> str:
    return (
        f"session {session_id} was checkpointed by another version of robo-trader ({what}; this "
        f"one writes format {CHECKPOINT_FORMAT}): resume it with the version that started it, or "
        "start a new session with resume=false (positions and cash then come from the broker's "
        "account; the journal keeps the old session as abandoned)"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _set_affinity(cpus: set[int]) -> set[int]:
    """Pin the calling thread to ``cpus``; returns the CPUs it had."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    return before


def _due_generation() -> int | None:
    """The generation CPython's thresholds would collect now (without the full collection's
    long-lived ratio), or None."""
    count0, count1, count2 = gc.get_count()
    threshold0, threshold1, threshold2 = gc.get_threshold()
    if count0 <= threshold0:
        return None
    return 2 if count2 > threshold2 else 1 if count1 > threshold1 else 0


def _collect_garbage() -> None:
    """The due collection, run between bars while automatic collection is off: a collection
    then never lands inside a bar's decision (a young-generation pass costs about 0.1 ms here)."""
    generation = _due_generation()
    if generation is not None:
        gc.collect(generation)
