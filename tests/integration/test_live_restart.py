"""A crash mid-session, then a restart: the session resumes from the journal, sends every intent
exactly once and ends where an uninterrupted session ends."""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.integration.test_live_parity import CONFIG, SYMBOLS, _feed
from tests.live_kit import loaded_model
from trader_runtime.brokers.base import OrderRequest, OrderStatus
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.live.engine import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    LiveConfig,
    LiveEngine,
    SessionSummary,
)
from trader_runtime.live.journal import BarCommit, Journal


class CrashError(Exception):
    """The process dies here."""


class DyingBroker(PaperBroker):
    """Dies at its ``die_at``-th order: before accepting it (``accept=False``) or just after.
    Once dead it does nothing more, as a killed process would not."""

    def __init__(self, *args: object, die_at: int, accept: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.die_at, self.accept, self.seen, self.dead = die_at, accept, 0, False

    async def submit(self, order: OrderRequest) -> OrderStatus:
        self.seen += 1
        if self.seen == self.die_at:
            if self.accept:
                await super().submit(order)
            self.dead = True
            raise CrashError(order.client_order_id)
        return await super().submit(order)

    async def cancel(self, client_order_id: str) -> OrderStatus | None:
        return None if self.dead else await super().cancel(client_order_id)

    async def close(self) -> None:
        if not self.dead:
            await super().close()


def _engine(
    tmp: Path, broker: PaperBroker, journal: Journal, *, market_every: int = 30
) -> LiveEngine:
    return LiveEngine(
        symbols=SYMBOLS,
        trading=CONFIG,
        live=LiveConfig(max_bars=150, market_checkpoint_bars=market_every),
        feed=_feed(),
        broker=broker,
        journal=journal,
        model=loaded_model(),
    )


def _paper(tmp: Path) -> PaperBroker:
    return PaperBroker(
        tmp / "paper.json", costs=CONFIG.costs, initial_cash_usd=CONFIG.initial_cash_usd
    )


def _run(engine: LiveEngine) -> SessionSummary:
    return asyncio.run(engine.run())


def _crashed_session(
    tmp: Path, journal: Journal, *, die_at: int, accept: bool, market_every: int = 30
) -> str:
    """A session whose process dies at its ``die_at``-th order; its id."""
    dying = DyingBroker(
        tmp / "paper.json",
        costs=CONFIG.costs,
        initial_cash_usd=CONFIG.initial_cash_usd,
        die_at=die_at,
        accept=accept,
    )
    first = _engine(tmp, dying, journal, market_every=market_every)
    with pytest.raises(CrashError):
        _run(first)
    return first.session_id


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Journal, str, bytes]:
    tmp = tmp_path_factory.mktemp("straight")
    journal = Journal(tmp / "journal.duckdb")
    engine = _engine(tmp, _paper(tmp), journal)
    _run(engine)
    return journal, engine.session_id, pickle.dumps(engine.market)


def test_the_market_state_is_saved_apart_every_few_bars(
    uninterrupted: tuple[Journal, str, bytes],
) -> None:
    journal, session, _ = uninterrupted
    saved = journal.latest_market_checkpoint(session)
    assert saved is not None
    assert saved.bar == 150  # every 30 bars, the last after the 150th bar's orders went out
    checkpoint = journal.latest_checkpoint(session)
    assert checkpoint is not None
    assert not hasattr(pickle.loads(checkpoint.state)[1], "market")
    assert len(checkpoint.state) * 5 < len(saved.state)  # the bar's checkpoint is the small part
    assert [r.bar for r in journal.market_instants(session, 0, 10_000)] == list(range(150))


@pytest.mark.parametrize(
    ("accept", "market_every"),
    [(False, 30), (True, 30), (True, 1), (False, 4)],
    ids=["before-the-broker", "after-the-broker", "market-every-bar", "market-every-4"],
)
def test_a_crash_and_restart_match_an_uninterrupted_session(
    tmp_path: Path, uninterrupted: tuple[Journal, str, bytes], accept: bool, market_every: int
) -> None:
    journal = Journal(tmp_path / "journal.duckdb")
    session = _crashed_session(
        tmp_path, journal, die_at=7, accept=accept, market_every=market_every
    )
    assert journal.session(session).status == "running"  # resumable
    pending = journal.intents(session, ["pending"])
    assert pending  # the dying order and those after it in its bar never left (or never acked)
    saved = journal.latest_market_checkpoint(session)
    checkpoint = journal.latest_checkpoint(session)
    assert saved is not None
    assert checkpoint is not None
    crashed_bar = pickle.loads(checkpoint.state)[1].bar
    # the crash came while the last bar's orders went out, before its market state was saved:
    # the restart replays at least that bar's instant and at most ``market_every`` of them
    assert 0 < crashed_bar - saved.bar <= market_every

    restarted = _engine(tmp_path, _paper(tmp_path), journal, market_every=market_every)
    summary = _run(restarted)
    assert restarted.resumed
    assert restarted.session_id == session
    assert summary.status == "stopped"  # at max_bars

    broker = _paper(tmp_path)
    intents = journal.intents(session)
    ids = [i.client_order_id for i in intents]
    assert len(ids) == len(set(ids))
    assert len(broker.orders) == len(ids)  # every intent reached the broker exactly once
    assert not journal.intents(session, ["pending"])

    reference, ref_session, ref_market = uninterrupted
    assert pickle.dumps(restarted.market) == ref_market  # the replayed market state, bit for bit
    fills, ref_fills = journal.fills(session), reference.fills(ref_session)
    assert fills.height == ref_fills.height > 10
    assert fills["exec_id"].n_unique() == fills.height  # no fill booked twice
    for column in ("symbol", "qty", "price_usd", "commission_usd"):
        assert fills[column].to_list() == ref_fills[column].to_list()
    decisions, ref_decisions = journal.decisions(session), reference.decisions(ref_session)
    assert decisions["target_weight"].to_list() == ref_decisions["target_weight"].to_list()
    np.testing.assert_array_equal(
        journal.equity(session)["equity_usd"].to_numpy()[-5:],
        reference.equity(ref_session)["equity_usd"].to_numpy()[-5:],
    )
    positions = {r["symbol"]: r["qty"] for r in journal.positions(session).iter_rows(named=True)}
    held = {s: q for s, q in broker.positions.items() if q != 0.0}
    assert {s: q for s, q in positions.items() if q != 0.0} == held
    journal.close()


@pytest.mark.parametrize(
    "checkpoint",
    [pickle.dumps({"bar": 3}), pickle.dumps((CHECKPOINT_FORMAT - 1, {"bar": 3})), b"\x80junk"],
    ids=["unversioned", "older-format", "unreadable"],
)
def test_a_checkpoint_of_another_state_format_is_refused_clearly_and_nothing_moves(
    tmp_path: Path, checkpoint: bytes
) -> None:
    journal = Journal(tmp_path / "journal.duckdb")
    session = _crashed_session(tmp_path, journal, die_at=2, accept=True)
    # the session's newest checkpoint, as another version of robo-trader would have written it
    journal.commit_bar(BarCommit(session, datetime.now(UTC), [], [], [], [], None, [], checkpoint))
    intents_before = journal.intents(session)

    with pytest.raises(CheckpointError, match=f"session {session} was checkpointed by another"):
        _run(_engine(tmp_path, _paper(tmp_path), journal))
    assert journal.session(session).status == "running"  # still resumable by its own version
    assert journal.intents(session) == intents_before

    # resume=false: a new session from the broker's account, the old one kept as abandoned
    fresh = LiveEngine(
        symbols=SYMBOLS,
        trading=CONFIG,
        live=LiveConfig(max_bars=20, resume=False),
        feed=_feed(),
        broker=_paper(tmp_path),
        journal=journal,
        model=loaded_model(),
    )
    summary = _run(fresh)
    assert fresh.session_id != session
    assert not fresh.resumed
    assert summary.status == "stopped"
    assert journal.session(session).status == "abandoned"
    journal.close()


@pytest.mark.parametrize(
    ("lost", "message"),
    [
        ("DELETE FROM market_bars WHERE bar = (SELECT max(bar) FROM market_bars)", "not all"),
        ("DELETE FROM market_checkpoints", "no market state saved"),
    ],
    ids=["an-instant", "the-market-state"],
)
def test_a_journal_missing_what_the_market_state_replays_is_refused(
    tmp_path: Path, lost: str, message: str
) -> None:
    path = tmp_path / "journal.duckdb"
    journal = Journal(path)
    session = _crashed_session(tmp_path, journal, die_at=7, accept=True, market_every=4)
    journal.close()
    con = duckdb.connect(str(path))
    con.execute(lost)
    con.close()
    journal = Journal(path)
    intents_before = journal.intents(session)
    with pytest.raises(CheckpointError, match=message):
        _run(_engine(tmp_path, _paper(tmp_path), journal, market_every=4))
    assert journal.session(session).status == "running"
    assert journal.intents(session) == intents_before
    journal.close()
