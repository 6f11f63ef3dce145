import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trader_runtime.errors import RoboTraderError
from trader_runtime.live.journal import (
    BarCommit,
    DecisionRecord,
    EquityRecord,
    EventRecord,
    FillRecord,
    InstantRecord,
    IntentRecord,
    Journal,
    JournalError,
    PositionRecord,
)
from trader_runtime.market.bars import Bar
from trader_runtime.market.instant import MarketInstant

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
SID = "s1"


def _minute(k: int) -> datetime:
    return T0 + timedelta(minutes=k)


def _start(journal: Journal, session_id: str = SID, **overrides: object) -> None:
    args: dict[str, object] = {
        "mode": "paper",
        "broker": "paper",
        "model_uri": "models:/m@champion",
        "model_version": "3",
        "feature_set_hash": "abc",
        "symbols": ("AAA", "BBB"),
        "config": {"max_weight": 0.2},
        "started_at": T0,
    }
    args.update(overrides)
    journal.start_session(session_id, **args)  # type: ignore[arg-type]


def _fill(exec_id: str, k: int = 0, *, price_usd: float = 100.0, sid: str = SID) -> FillRecord:
    return FillRecord(
        exec_id=exec_id,
        session_id=sid,
        client_order_id=f"c-{exec_id}",
        ts=_minute(k),
        symbol="AAA",
        qty=10.0,
        price_usd=price_usd,
        reference_usd=99.5,
        commission_usd=0.0,
        spread_cost_usd=0.05,
        impact_cost_usd=0.01,
        reason="entry",
    )


def _decision(decision_id: str, k: int = 0, sid: str = SID) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        session_id=sid,
        ts=_minute(k),
        symbol="AAA",
        model_version="3",
        regime="bull",
        probability=0.61,
        edge=0.11,
        target_weight=0.2,
        reason="entry",
        features={"rsi_14": 55.0, "sma_ratio_10": float("nan")},
    )


def _intent(client_order_id: str, k: int = 0, sid: str = SID) -> IntentRecord:
    return IntentRecord(
        client_order_id=client_order_id,
        session_id=sid,
        decision_id=f"d-{client_order_id}",
        ts=_minute(k),
        symbol="AAA",
        qty=10.0,
        reference_usd=99.5,
        reason="entry",
    )


def _bar(
    k: int,
    *,
    fills: Sequence[FillRecord] = (),
    decisions: Sequence[DecisionRecord] = (),
    intents: Sequence[IntentRecord] = (),
    positions: Sequence[PositionRecord] = (),
    equity_usd: float | None = None,
    events: Sequence[EventRecord] = (),
    checkpoint: bytes | None = None,
    sid: str = SID,
) -> BarCommit:
    ts = _minute(k)
    return BarCommit(
        session_id=sid,
        ts=ts,
        fills=fills,
        decisions=decisions,
        intents=intents,
        positions=positions,
        equity=None
        if equity_usd is None
        else EquityRecord(ts, equity_usd, equity_usd - 1000.0, 1000.0, 1000.0, "bull"),
        events=events,
        checkpoint=checkpoint,
    )


def _full_bar(k: int, checkpoint: bytes) -> BarCommit:
    return _bar(
        k,
        fills=[_fill(f"e{k}", k)],
        decisions=[_decision(f"d{k}", k)],
        intents=[_intent(f"c{k}", k)],
        positions=[PositionRecord("AAA", 10.0 * (k + 1), 100.0, 101.0)],
        equity_usd=100_000.0 + k,
        events=[EventRecord(_minute(k), "bar", {"k": k})],
        checkpoint=checkpoint,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "live" / "journal.duckdb") as j:
        _start(j)
        yield j


def _count(path: Path, sql: str) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(sql).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


# -- atomic bars -------------------------------------------------------------------------------


def test_a_bar_repeating_a_journaled_client_order_id_writes_nothing_and_keeps_earlier_bars(
    journal: Journal,
) -> None:
    journal.commit_bar(_full_bar(0, b"bar0"))
    bad = _full_bar(1, b"bar1")
    bad = replace(bad, intents=[_intent("c1", 1), _intent("c0", 1)])

    with pytest.raises(JournalError, match="c0"):
        journal.commit_bar(bad)

    assert journal.fills(SID)["exec_id"].to_list() == ["e0"]
    assert journal.decisions(SID)["decision_id"].to_list() == ["d0"]
    assert [i.client_order_id for i in journal.intents(SID)] == ["c0"]
    assert journal.equity(SID)["equity_usd"].to_list() == [100_000.0]
    assert journal.events(SID)["kind"].to_list() == ["bar"]
    assert journal.positions(SID)["qty"].to_list() == [10.0]
    checkpoint = journal.latest_checkpoint(SID)
    assert checkpoint is not None
    assert checkpoint.state == b"bar0"
    # the journal is usable after the refused bar
    journal.commit_bar(_full_bar(1, b"bar1"))
    assert journal.fills(SID)["exec_id"].to_list() == ["e0", "e1"]


def test_a_bar_failing_midway_is_rolled_back_whole(journal: Journal) -> None:
    journal.commit_bar(_full_bar(0, b"bar0"))
    broken = PositionRecord(None, 1.0, 1.0, 1.0)  # type: ignore[arg-type]  # NOT NULL symbol
    bad = replace(_full_bar(1, b"bar1"), positions=[broken])

    with pytest.raises(JournalError):
        journal.commit_bar(bad)

    assert journal.fills(SID)["exec_id"].to_list() == ["e0"]
    assert journal.decisions(SID)["decision_id"].to_list() == ["d0"]
    assert [i.client_order_id for i in journal.intents(SID)] == ["c0"]
    checkpoint = journal.latest_checkpoint(SID)
    assert checkpoint is not None
    assert checkpoint.state == b"bar0"


def test_a_bar_repeating_a_client_order_id_within_itself_is_refused(journal: Journal) -> None:
    bar = _bar(0, fills=[_fill("e0")], intents=[_intent("c0"), _intent("c0")])
    with pytest.raises(JournalError, match="client_order_id"):
        journal.commit_bar(bar)
    assert journal.fills(SID).height == 0
    assert journal.intents(SID) == []


def test_a_bar_of_an_unknown_session_or_with_foreign_records_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="unknown session"):
        journal.commit_bar(_bar(0, equity_usd=1.0, checkpoint=b"x", sid="nope"))
    with pytest.raises(JournalError, match="session"):
        journal.commit_bar(_bar(0, fills=[_fill("e0", sid="other")]))
    assert journal.fills(SID).height == 0


def test_naive_timestamps_are_refused(journal: Journal) -> None:
    naive = datetime(2024, 3, 4, 14, 30)
    with pytest.raises(JournalError, match="timezone-aware"):
        journal.commit_bar(_bar(0, fills=[_fill("e0")._replace(ts=naive)]))
    with pytest.raises(JournalError, match="timezone-aware"):
        journal.mark_intent("c0", "sent", at=naive)
    assert journal.fills(SID).height == 0


def test_timestamps_come_back_as_utc_whatever_zone_they_were_written_in(journal: Journal) -> None:
    new_york = timezone(timedelta(hours=-5))
    journal.commit_bar(_bar(0, fills=[_fill("e0")._replace(ts=T0.astimezone(new_york))]))
    (ts,) = journal.fills(SID)["ts"].to_list()
    assert ts == T0
    assert ts.utcoffset() == timedelta(0)
    assert str(journal.fills(SID).schema["ts"]) == "Datetime(time_unit='us', time_zone='UTC')"


# -- fills -------------------------------------------------------------------------------------


def test_a_repeated_fill_is_ignored_and_a_correction_replaces_it_in_place(
    journal: Journal,
) -> None:
    assert journal.record_fill(_fill("e1", 0)) is True
    assert journal.record_fill(_fill("e2", 0)) is True
    assert journal.record_fill(_fill("e1", 0)) is False
    assert journal.record_fill(_fill("e1", 0, price_usd=100.25)) is True

    fills = journal.fills(SID)
    assert fills["exec_id"].to_list() == ["e1", "e2"]
    assert fills["price_usd"].to_list() == [100.25, 100.0]
    assert journal.fill_ids(SID) == {"e1", "e2"}


def test_a_bar_rebooking_a_known_fill_does_not_duplicate_it(journal: Journal) -> None:
    journal.commit_bar(_bar(0, fills=[_fill("e1")]))
    journal.commit_bar(_bar(1, fills=[_fill("e1"), _fill("e2", 1)]))
    assert journal.fills(SID)["exec_id"].to_list() == ["e1", "e2"]


def test_fills_are_ordered_by_time_then_booking_order(journal: Journal) -> None:
    journal.commit_bar(_bar(0, fills=[_fill("late", 5), _fill("b", 1), _fill("a", 1)]))
    assert journal.fills(SID)["exec_id"].to_list() == ["b", "a", "late"]


def test_a_commission_report_attaches_to_its_fill(journal: Journal) -> None:
    journal.record_fill(_fill("e1"))
    journal.record_commission("e1", 1.25)
    assert journal.fills(SID)["commission_usd"].to_list() == [1.25]
    with pytest.raises(JournalError, match="unknown execution"):
        journal.record_commission("missing", 1.0)


def test_a_fill_without_a_finite_price_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="non-finite"):
        journal.record_fill(_fill("e1", price_usd=float("nan")))


_EXEC_IDS = st.integers(min_value=0, max_value=4)
_VALUES = st.tuples(
    st.integers(min_value=0, max_value=3),  # minute
    st.sampled_from([99.0, 100.0, 100.5]),  # price
    st.sampled_from([0.0, 1.0]),  # commission
)
_BATCHES = st.lists(st.lists(st.tuples(_EXEC_IDS, _VALUES), min_size=1, max_size=3), max_size=8)


@pytest.fixture(scope="module")
def shared_journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    with Journal(tmp_path_factory.mktemp("hyp") / "journal.duckdb") as j:
        yield j


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_BATCHES)
def test_fills_hold_the_last_value_per_exec_id(
    shared_journal: Journal, batches: list[list[tuple[int, tuple[int, float, float]]]]
) -> None:
    sid = uuid.uuid4().hex
    _start(shared_journal, sid)
    expected: dict[str, FillRecord] = {}
    first_seen: dict[str, int] = {}
    for n, batch in enumerate(batches):
        records = []
        for k, (minute, price, commission) in batch:
            fill = _fill(f"{sid}-{k}", minute, price_usd=price, sid=sid)._replace(
                commission_usd=commission
            )
            records.append(fill)
        if len(records) == 1:
            changed = shared_journal.record_fill(records[0])
            assert changed == (expected.get(records[0].exec_id) != records[0])
        else:
            shared_journal.commit_bar(_bar(n, fills=records, sid=sid))
        for fill in records:
            first_seen.setdefault(fill.exec_id, len(first_seen))
            expected[fill.exec_id] = fill

    frame = shared_journal.fills(sid)
    got = {
        r["exec_id"]: FillRecord(**{k: v for k, v in r.items() if k != "seq"})
        for r in frame.iter_rows(named=True)
    }
    assert got == expected
    order = sorted(expected, key=lambda e: (expected[e].ts, first_seen[e]))
    assert frame["exec_id"].to_list() == order


# -- checkpoints, positions, sessions -----------------------------------------------------------


def test_only_the_newest_checkpoint_is_kept_and_it_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    with Journal(path) as journal:
        _start(journal)
        _start(journal, "other")
        journal.commit_bar(_bar(0, checkpoint=b"other", sid="other"))
        for k in range(3):
            journal.commit_bar(_bar(k, checkpoint=f"state{k}".encode()))
        journal.commit_bar(_bar(3, equity_usd=1.0))  # no checkpoint: the last one stays
        assert journal.latest_checkpoint("never") is None

    assert _count(path, "SELECT count(*) FROM checkpoints WHERE session_id = 's1'") == 1
    with Journal(path) as journal:
        checkpoint = journal.latest_checkpoint(SID)
        assert checkpoint is not None
        assert (checkpoint.state, checkpoint.ts) == (b"state2", _minute(2))
        other = journal.latest_checkpoint("other")
        assert other is not None
        assert other.state == b"other"


def _instant(k: int, symbols: Sequence[str] = ("AAA", "BBB")) -> InstantRecord:
    ts = _minute(k)
    bars = {s: Bar(ts, 10.0 + k, 11.0 + k, 9.0 + k, 10.5 + k, float(100 * k)) for s in symbols}
    return InstantRecord(k, MarketInstant(ts, bars))


def _values(bar: Bar) -> np.ndarray:
    return np.array([bar.open, bar.high, bar.low, bar.close, bar.volume])


def test_instants_come_back_as_committed_with_their_bars_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    no_volume = Bar(_minute(2), 1.0, 2.0, 0.5, 1.5, float("nan"))
    odd = InstantRecord(2, MarketInstant(_minute(2), {"BBB": no_volume}))
    committed = [_instant(0, ("BBB", "AAA")), _instant(1, ()), odd, _instant(3)]
    with Journal(path) as journal:
        _start(journal)
        _start(journal, "other")
        journal.commit_bar(replace(_bar(0, sid="other"), instant=_instant(0, ("AAA",))))
        for record in committed:
            journal.commit_bar(replace(_bar(record.bar, equity_usd=1.0), instant=record))
    with Journal(path) as journal:
        got = journal.market_instants(SID, 0, 4)
        assert [r.bar for r in got] == [0, 1, 2, 3]
        for want, have in zip(committed, got, strict=True):
            assert have.instant.ts == want.instant.ts
            assert list(have.instant.bars) == list(want.instant.bars)  # the order they came
            for symbol, bar in want.instant.bars.items():
                back = have.instant.bars[symbol]
                assert back.ts == bar.ts
                np.testing.assert_array_equal(_values(back), _values(bar))  # NaN volume kept
        assert have.instant.bars == committed[3].instant.bars
        assert got[1].instant.bars == {}  # an instant without bars is kept as one
        assert [r.bar for r in journal.market_instants(SID, 1, 3)] == [1, 2]
        assert journal.market_instants(SID, 4, 9) == []
        assert [r.bar for r in journal.market_instants("other", 0, 9)] == [0]


def test_a_bar_refused_midway_leaves_no_instant(journal: Journal) -> None:
    journal.commit_bar(replace(_bar(0, intents=[_intent("c0")]), instant=_instant(0)))
    with pytest.raises(JournalError, match="duplicate client_order_id"):
        journal.commit_bar(replace(_bar(1, intents=[_intent("c0", 1)]), instant=_instant(1)))
    assert [r.bar for r in journal.market_instants(SID, 0, 9)] == [0]


def test_only_the_newest_market_checkpoint_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    with Journal(path) as journal:
        _start(journal)
        assert journal.latest_market_checkpoint(SID) is None
        for bar in (0, 30, 60):
            journal.write_market_checkpoint(SID, bar, _minute(bar), f"market{bar}".encode())
        with pytest.raises(JournalError, match="unknown session"):
            journal.write_market_checkpoint("never", 0, T0, b"x")
    assert _count(path, "SELECT count(*) FROM market_checkpoints") == 1
    with Journal(path) as journal:
        saved = journal.latest_market_checkpoint(SID)
        assert saved is not None
        assert (saved.bar, saved.ts, saved.state) == (60, _minute(60), b"market60")


def test_positions_are_the_latest_snapshot_and_empty_once_flat(journal: Journal) -> None:
    a, b = PositionRecord("AAA", 10.0, 100.0, 101.0), PositionRecord("BBB", -5.0, 50.0, 49.0)
    journal.commit_bar(_bar(0, positions=[a, b], equity_usd=1.0))
    journal.commit_bar(_bar(1, positions=[a._replace(qty=20.0)], equity_usd=1.0))
    assert journal.positions(SID).select("symbol", "qty").rows() == [("AAA", 20.0)]
    journal.commit_bar(_bar(2, intents=[_intent("c2", 2)]))  # no snapshot in this commit
    assert journal.positions(SID)["qty"].to_list() == [20.0]
    journal.commit_bar(_bar(3, equity_usd=1.0))  # equity without positions: flat
    assert journal.positions(SID).height == 0


def test_a_bar_repeating_a_position_symbol_is_refused(journal: Journal) -> None:
    p = PositionRecord("AAA", 1.0, 1.0, 1.0)
    with pytest.raises(JournalError, match="position symbol"):
        journal.commit_bar(_bar(0, positions=[p, p]))


def test_resumable_session_is_the_newest_running_one_of_that_broker_and_universe(
    tmp_path: Path,
) -> None:
    with Journal(tmp_path / "journal.duckdb") as journal:
        _start(journal, "old", started_at=_minute(0))
        _start(journal, "newer", started_at=_minute(1))
        _start(journal, "ended", started_at=_minute(2))
        journal.end_session("ended", status="completed", summary={}, ended_at=_minute(3))
        _start(journal, "ib", broker="ibkr", started_at=_minute(4))
        _start(journal, "other_universe", symbols=("AAA", "CCC"), started_at=_minute(5))

        found = journal.resumable_session(broker="paper", symbols=["AAA", "BBB"])
        assert found is not None
        assert found.session_id == "newer"
        assert journal.resumable_session(broker="paper", symbols=("BBB", "AAA")) is None
        assert journal.resumable_session(broker="alpaca", symbols=("AAA", "BBB")) is None

        journal.end_session("newer", status="failed", summary={}, ended_at=_minute(6))
        found = journal.resumable_session(broker="paper", symbols=("AAA", "BBB"))
        assert found is not None
        assert found.session_id == "old"


def test_a_session_records_its_start_and_end(journal: Journal) -> None:
    record = journal.session(SID)
    assert record is not None
    assert (record.status, record.symbols, record.config) == (
        "running",
        ("AAA", "BBB"),
        {"max_weight": 0.2},
    )
    assert record.ended_at is None
    assert record.summary is None
    journal.end_session(
        SID,
        status="stopped",
        summary={"pnl_usd": 12.5, "sharpe": float("nan")},
        ended_at=_minute(9),
    )
    record = journal.session(SID)
    assert record is not None
    assert (record.status, record.ended_at) == ("stopped", _minute(9))
    assert record.summary == {"pnl_usd": 12.5, "sharpe": None}
    assert journal.session("nope") is None


def test_ending_a_session_twice_or_with_an_unknown_status_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="end status"):
        journal.end_session(SID, status="running", summary={}, ended_at=_minute(1))
    with pytest.raises(JournalError, match="unknown session"):
        journal.end_session("nope", status="completed", summary={}, ended_at=_minute(1))
    journal.end_session(SID, status="completed", summary={}, ended_at=_minute(1))
    with pytest.raises(JournalError, match="already ended"):
        journal.end_session(SID, status="killed", summary={}, ended_at=_minute(2))
    with pytest.raises(JournalError, match="already exists"):
        _start(journal)


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    with Journal(path) as journal:
        _start(journal)
        for k in range(3):
            journal.commit_bar(_full_bar(k, f"state{k}".encode()))
        journal.mark_intent("c0", "sent", broker_order_id="B0", at=_minute(0))
        journal.record_event(SID, EventRecord(_minute(3), "reconnect", {"attempt": 2}))
        before = [
            journal.fills(SID),
            journal.decisions(SID),
            journal.equity(SID),
            journal.events(SID),
            journal.positions(SID),
        ]
        intents = journal.intents(SID)
        session = journal.session(SID)

    with Journal(path) as journal:
        after = [
            journal.fills(SID),
            journal.decisions(SID),
            journal.equity(SID),
            journal.events(SID),
            journal.positions(SID),
        ]
        for old, new in zip(before, after, strict=True):
            assert new.equals(old)
        assert journal.intents(SID) == intents
        assert journal.session(SID) == session
        assert journal.fill_ids(SID) == {"e0", "e1", "e2"}
        resumable = journal.resumable_session(broker="paper", symbols=("AAA", "BBB"))
        assert resumable == session
        # numbering continues after the restart: new rows sort after the old ones
        journal.commit_bar(_full_bar(3, b"state3"))
        assert journal.decisions(SID)["decision_id"].to_list() == ["d0", "d1", "d2", "d3"]


def test_a_journal_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    Journal(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE schema_version SET version = 99")
    con.close()
    with pytest.raises(JournalError, match="schema version 99"):
        Journal(path)


def test_a_closed_journal_refuses_calls(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.duckdb")
    journal.close()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.fill_ids(SID)
    assert issubclass(JournalError, RoboTraderError)


# -- intents and orders -------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["done", "PENDING", "", "submitted"])
def test_mark_intent_rejects_unknown_statuses(journal: Journal, status: str) -> None:
    journal.commit_bar(_bar(0, intents=[_intent("c0")]))
    with pytest.raises(JournalError, match="unknown intent status"):
        journal.mark_intent("c0", status, at=_minute(1))
    assert journal.intents(SID)[0].status == "pending"


def test_mark_intent_moves_an_intent_and_keeps_what_it_is_not_given(journal: Journal) -> None:
    journal.commit_bar(_bar(0, intents=[_intent("c0"), _intent("c1")]))
    journal.mark_intent("c0", "sent", broker_order_id="B7", at=_minute(1))
    journal.mark_intent("c0", "rejected", note="price band", at=_minute(2))
    with pytest.raises(JournalError, match="unknown order intent"):
        journal.mark_intent("nope", "sent", at=_minute(1))

    (c0,) = journal.intents(SID, ["rejected"])
    assert (c0.client_order_id, c0.broker_order_id, c0.note) == ("c0", "B7", "price band")
    assert [i.client_order_id for i in journal.intents(SID, ["pending"])] == ["c1"]
    assert journal.intents(SID, []) == []
    with pytest.raises(JournalError, match="unknown intent status"):
        journal.intents(SID, ["open"])


def test_an_intent_with_an_unknown_status_is_refused_in_a_bar(journal: Journal) -> None:
    with pytest.raises(JournalError, match="unknown intent status"):
        journal.commit_bar(_bar(0, intents=[_intent("c0")._replace(status="working")]))


def test_order_statuses_keep_the_latest_per_order_and_the_history(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    with Journal(path) as journal:
        _start(journal)
        journal.commit_bar(_bar(0, intents=[_intent("c0")]))
        journal.mark_intent("c0", "sent", at=_minute(0))
        for status, filled in (("submitted", 0.0), ("filled", 10.0)):
            journal.record_order_status(
                session_id=SID,
                client_order_id="c0",
                broker_order_id="B1" if status == "submitted" else "",
                status=status,
                filled_qty=filled,
                remaining_qty=10.0 - filled,
                at=_minute(1),
            )
        (intent,) = journal.intents(SID)
        assert (intent.status, intent.broker_order_id) == ("filled", "B1")

    con = duckdb.connect(str(path), read_only=True)
    try:
        latest = con.execute(
            "SELECT broker_order_id, status, filled_qty, remaining_qty FROM broker_orders"
        ).fetchall()
        history = con.execute("SELECT status FROM order_events ORDER BY seq").fetchall()
    finally:
        con.close()
    assert latest == [("B1", "filled", 10.0, 0.0)]
    assert history == [("submitted",), ("filled",)]


# -- events, decisions ---------------------------------------------------------------------------


def test_events_are_filtered_by_kind_and_keep_their_detail(journal: Journal) -> None:
    journal.record_event(SID, EventRecord(_minute(0), "halt", {"reason": "daily_loss"}))
    journal.record_event(SID, EventRecord(_minute(1), "refused", {"qty": 3.0}))
    halts = journal.events(SID, "halt")
    assert halts["kind"].to_list() == ["halt"]
    assert json.loads(halts["detail"][0]) == {"reason": "daily_loss"}
    assert journal.events(SID).height == 2
    with pytest.raises(JournalError, match="unknown session"):
        journal.record_event("nope", EventRecord(_minute(0), "halt", {}))


def test_decisions_keep_their_feature_snapshot_as_json(journal: Journal) -> None:
    journal.commit_bar(_bar(0, decisions=[_decision("d0"), _decision("d1")]))
    decisions = journal.decisions(SID)
    assert decisions["decision_id"].to_list() == ["d0", "d1"]
    assert json.loads(decisions["features"][0]) == {"rsi_14": 55.0, "sma_ratio_10": None}


# -- concurrency -------------------------------------------------------------------------------


def test_two_threads_committing_and_recording_concurrently_lose_nothing(journal: Journal) -> None:
    n_bars, n_events = 60, 120
    start = threading.Barrier(2)

    def commit_bars() -> None:
        start.wait()
        for k in range(n_bars):
            journal.commit_bar(_full_bar(k, f"state{k}".encode()))

    def record() -> None:
        start.wait()
        for k in range(n_events):
            journal.record_event(SID, EventRecord(_minute(k), "heartbeat", {"k": k}))
            if k % 2 == 0:
                journal.record_fill(_fill(f"x{k}", k))

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(commit_bars), pool.submit(record)]
        for future in futures:
            future.result()

    assert journal.decisions(SID)["decision_id"].to_list() == [f"d{k}" for k in range(n_bars)]
    assert len(journal.intents(SID)) == n_bars
    assert journal.fill_ids(SID) == {f"e{k}" for k in range(n_bars)} | {
        f"x{k}" for k in range(0, n_events, 2)
    }
    events = journal.events(SID)
    assert events.filter(kind="bar").height == n_bars
    heartbeats = events.filter(kind="heartbeat")["detail"].map_elements(
        lambda d: json.loads(d)["k"], return_dtype=int
    )
    assert sorted(heartbeats.to_list()) == list(range(n_events))
    checkpoint = journal.latest_checkpoint(SID)
    assert checkpoint is not None
    assert checkpoint.state == f"state{n_bars - 1}".encode()


def test_sessions_lists_every_session_oldest_first(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.duckdb") as journal:
        _start(journal, "b", started_at=_minute(5))
        _start(journal, "a", started_at=_minute(1))
        assert [s.session_id for s in journal.sessions()] == ["a", "b"]


def test_the_journal_runs_duckdb_on_one_thread(journal: Journal) -> None:
    # a bar's one-row statements gain nothing from a pool whose threads would wake beside the
    # next bar's decision (benchmarks/latency)
    with journal._read() as con:
        assert con.execute("SELECT current_setting('threads')").fetchone() == (1,)


def _wide_bar(n: int) -> BarCommit:
    """One bar with ``n`` rows in every table a bar writes (missing values included)."""
    k = 1
    symbols = [f"S{i:02d}" for i in range(n)]
    fills = [
        _fill(f"e{i}", k)._replace(symbol=s, price_usd=100.0 + i) for i, s in enumerate(symbols)
    ]
    decisions = [
        _decision(f"d{i}", k)._replace(symbol=s, edge=float("nan") if i % 3 else 0.1)
        for i, s in enumerate(symbols)
    ]
    intents = [
        _intent(f"c{i}", k)._replace(symbol=s, decision_id=None if i % 2 else f"d{i}")
        for i, s in enumerate(symbols)
    ]
    positions = [
        PositionRecord(s, float(i + 1), float("nan"), 50.0 + i) for i, s in enumerate(symbols)
    ]
    events = [
        EventRecord(_minute(k), "refused", {"symbol": s, "qty": i}) for i, s in enumerate(symbols)
    ]
    bars = {
        s: Bar(_minute(k), 1.0 + i, 2.0 + i, 0.5, 1.5, float("nan")) for i, s in enumerate(symbols)
    }
    return replace(
        _bar(
            k, fills=fills, decisions=decisions, intents=intents, positions=positions, events=events
        ),
        equity=EquityRecord(_minute(k), 1e6, 9e5, 1e5, -1e4, "bear"),
        instant=InstantRecord(k, MarketInstant(_minute(k), bars)),
    )


def test_many_rows_go_in_as_a_few_rows_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many rows are inserted from one Arrow table, a few as one statement: the same rows
    come back either way (missing values, NaN, timestamps and the order included)."""
    from trader_runtime.live import journal as journal_module

    read = []
    for name, min_rows in (("arrow", 1), ("statements", 10_000)):
        monkeypatch.setattr(journal_module, "_ARROW_MIN_ROWS", min_rows)
        with Journal(tmp_path / f"{name}.duckdb") as journal:
            _start(journal)
            journal.commit_bar(_wide_bar(40))
            read.append(
                (
                    [
                        journal.fills(SID),
                        journal.decisions(SID),
                        journal.equity(SID),
                        journal.events(SID),
                        journal.positions(SID),
                    ],
                    journal.intents(SID),
                    journal.market_instants(SID, 0, 9),
                )
            )
    (frames, intents, instants), (want_frames, want_intents, want_instants) = read
    for got, want in zip(frames, want_frames, strict=True):
        assert got.height in (1, 40)
        assert got.drop("seq", strict=False).equals(want.drop("seq", strict=False))
    assert intents == want_intents
    assert [i.decision_id for i in intents[:2]] == ["d0", None]
    assert list(instants[0].instant.bars) == list(want_instants[0].instant.bars)
    for symbol, bar in want_instants[0].instant.bars.items():
        np.testing.assert_array_equal(_values(instants[0].instant.bars[symbol]), _values(bar))
