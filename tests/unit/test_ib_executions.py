"""ExecutionBook: every IB fill is booked once, with its commission, corrections replacing."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader_runtime.brokers.base import Execution
from trader_runtime.brokers.ib.executions import ExecutionBook, ExecutionStateError
from trader_runtime.brokers.ib.mapping import RawExecution

T0 = datetime(2024, 1, 2, 14, 31, tzinfo=UTC)
WAIT_S = 5.0


def estimate(qty: float, price: float) -> float:
    """An estimate no real commission in these tests equals."""
    return 1000.0 + abs(qty)


def fill(
    exec_id: str,
    qty: float,
    price: float = 100.0,
    *,
    ref: str = "ord-1",
    commission: float | None = None,
) -> RawExecution:
    return RawExecution(
        exec_id=exec_id,
        order_ref=ref,
        perm_id=7,
        symbol="AAA",
        side="BOT" if qty > 0 else "SLD",
        shares=abs(qty),
        price=price,
        time=T0 + timedelta(seconds=len(exec_id)),
        commission_usd=commission,
    )


def book() -> ExecutionBook:
    return ExecutionBook(commission_wait_s=WAIT_S)


def ids(executions: list[Execution]) -> list[str]:
    return [e.exec_id for e in executions]


def test_a_fill_waits_for_its_commission_report() -> None:
    b = book()
    b.add(fill("a.01", 10), reference_usd=99.0, now_s=0.0)
    assert b.release(1.0, estimate_commission=estimate) == []
    assert b.pending_exec_ids() == ["a.01"]
    b.attach_commission("a.01", 1.25, now_s=2.0)
    [e] = b.release(2.0, estimate_commission=estimate)
    assert (e.exec_id, e.qty, e.commission_usd, e.reference_usd) == ("a.01", 10.0, 1.25, 99.0)
    assert e.impact_cost_usd == pytest.approx(10.0)
    assert b.release(100.0, estimate_commission=estimate) == []
    b.attach_commission("a.01", 1.25, now_s=3.0)  # a repeated report changes nothing
    assert b.late_commissions() == []


def test_a_commission_carried_by_the_fill_releases_it_at_once() -> None:
    b = book()
    b.add(fill("a.01", -5, commission=1.0), reference_usd=100.0, now_s=0.0)
    [e] = b.release(0.0, estimate_commission=estimate)
    assert (e.qty, e.commission_usd) == (-5.0, 1.0)


def test_without_a_report_the_estimate_is_booked_and_the_real_one_reported_late_once() -> None:
    b = book()
    b.add(fill("a.01", 10), reference_usd=100.0, now_s=0.0)
    assert b.release(WAIT_S - 0.01, estimate_commission=estimate) == []
    [e] = b.release(WAIT_S, estimate_commission=estimate)
    assert e.commission_usd == estimate(10.0, 100.0)
    assert b.late_commissions() == []
    b.attach_commission("a.01", 1.0, now_s=9.0)
    b.attach_commission("a.01", 1.0, now_s=9.5)
    assert b.late_commissions() == [("a.01", 1.0)]
    assert b.late_commissions() == []


def test_a_commission_before_its_execution_is_kept() -> None:
    b = book()
    b.attach_commission("a.01", 2.0, now_s=0.0)
    b.add(fill("a.01", 10), reference_usd=100.0, now_s=1.0)
    [e] = b.release(1.0, estimate_commission=estimate)
    assert e.commission_usd == 2.0


def test_duplicates_and_replays_are_booked_once() -> None:
    b = book()
    b.add(fill("a.01", 10, commission=1.0), reference_usd=100.0, now_s=0.0)
    b.add(fill("a.01", 10, commission=1.0), reference_usd=100.0, now_s=0.0)
    assert ids(b.release(0.0, estimate_commission=estimate)) == ["a.01"]
    b.add(fill("a.01", 10, commission=1.0), reference_usd=100.0, now_s=50.0)  # replay
    assert b.release(100.0, estimate_commission=estimate) == []
    assert b.seen("a.01")
    assert not b.seen("b.01")
    assert b.known_exec_ids() == {"a.01"}


def test_executions_are_released_in_arrival_order() -> None:
    b = book()
    b.add(fill("c.01", 1), reference_usd=100.0, now_s=0.0)
    b.add(fill("a.01", 2), reference_usd=100.0, now_s=1.0)
    b.add(fill("b.01", 3, commission=1.0), reference_usd=100.0, now_s=2.0)
    assert ids(b.release(2.0, estimate_commission=estimate)) == ["b.01"]
    assert ids(b.release(10.0, estimate_commission=estimate)) == ["c.01", "a.01"]


def test_a_correction_of_a_booked_fill_reverses_it_then_books_the_new_version() -> None:
    b = book()
    b.add(fill("x.01", 10, 100.0, commission=1.0), reference_usd=99.0, now_s=0.0)
    [old] = b.release(0.0, estimate_commission=estimate)
    b.add(fill("x.02", 8, 100.5, commission=0.8), reference_usd=99.0, now_s=1.0)
    reversal, new = b.release(1.0, estimate_commission=estimate)
    assert reversal.exec_id == "x.01/reversed"
    assert (reversal.qty, reversal.price_usd, reversal.commission_usd) == (-10.0, 100.0, 0.0)
    assert reversal.impact_cost_usd == pytest.approx(-old.impact_cost_usd)
    assert (new.exec_id, new.qty, new.price_usd) == ("x.02", 8.0, 100.5)
    assert old.qty + reversal.qty + new.qty == 8.0
    # a third version reverses the second
    b.add(fill("x.03", 6, commission=0.6), reference_usd=99.0, now_s=2.0)
    assert ids(b.release(2.0, estimate_commission=estimate)) == ["x.02/reversed", "x.03"]
    # the old versions coming again (a replay) change nothing
    for exec_id in ("x.01", "x.02"):
        b.add(fill(exec_id, 10, commission=1.0), reference_usd=99.0, now_s=3.0)
    assert b.release(99.0, estimate_commission=estimate) == []


def test_a_correction_before_release_replaces_the_waiting_version() -> None:
    b = book()
    b.add(fill("x.01", 10), reference_usd=100.0, now_s=0.0)
    b.add(fill("x.02", 9), reference_usd=100.0, now_s=1.0)
    b.attach_commission("x.01", 1.0, now_s=1.5)
    [e] = b.release(20.0, estimate_commission=estimate)
    assert (e.exec_id, e.qty) == ("x.02", 9.0)


def test_an_older_version_after_the_newer_is_ignored() -> None:
    b = book()
    b.add(fill("x.02", 9, commission=1.0), reference_usd=100.0, now_s=0.0)
    b.add(fill("x.01", 10, commission=1.0), reference_usd=100.0, now_s=0.0)
    assert ids(b.release(0.0, estimate_commission=estimate)) == ["x.02"]
    assert b.release(50.0, estimate_commission=estimate) == []


def test_booked_ids_are_never_released_again() -> None:
    b = book()
    b.add(fill("a.01", 10), reference_usd=100.0, now_s=0.0)
    b.mark_booked(["a.01", "b.01"])
    b.add(fill("b.01", 5, commission=1.0), reference_usd=100.0, now_s=1.0)
    assert b.release(100.0, estimate_commission=estimate) == []
    assert {"a.01", "b.01"} <= b.known_exec_ids()


def test_a_correction_of_a_journal_execution_reverses_the_journal_version() -> None:
    first = book()
    first.add(fill("x.01", 10, 100.0, commission=1.0), reference_usd=100.0, now_s=0.0)
    journal = first.release(0.0, estimate_commission=estimate)
    restarted = book()  # its state was lost: the journal tells it what is booked
    restarted.mark_booked(journal)
    restarted.add(fill("x.01", 10, commission=1.0), reference_usd=100.0, now_s=0.0)  # replay
    restarted.add(fill("x.02", 4, commission=0.5), reference_usd=100.0, now_s=0.0)
    released = restarted.release(0.0, estimate_commission=estimate)
    assert ids(released) == ["x.01/reversed", "x.02"]
    assert sum(e.qty for e in journal + released) == 4.0
    assert restarted.unmatched_corrections() == []


def test_a_correction_of_an_execution_known_only_by_id_is_flagged() -> None:
    b = book()
    b.mark_booked(["x.01"])
    b.add(fill("x.02", 4, commission=0.5), reference_usd=100.0, now_s=0.0)
    assert ids(b.release(0.0, estimate_commission=estimate)) == ["x.02"]
    assert b.unmatched_corrections() == ["x.02"]
    assert b.unmatched_corrections() == []


def test_the_book_survives_a_restart_through_json() -> None:
    b = book()
    b.add(fill("a.01", 10), reference_usd=100.0, now_s=0.0)  # waiting
    b.add(fill("b.01", 5), reference_usd=100.0, now_s=0.0)
    b.attach_commission("c.01", 3.0, now_s=0.0)  # report before execution
    b.add(fill("x.01", 2, commission=1.0), reference_usd=100.0, now_s=0.0)
    assert ids(b.release(0.0, estimate_commission=estimate)) == ["x.01"]
    restored = ExecutionBook.from_json(b.to_json())
    assert restored.to_json() == b.to_json()
    assert restored.pending_exec_ids() == ["a.01", "b.01"]
    restored.attach_commission("a.01", 1.5, now_s=1.0)
    [a] = restored.release(1.0, estimate_commission=estimate)
    assert (a.exec_id, a.commission_usd) == ("a.01", 1.5)
    [b1] = restored.release(WAIT_S, estimate_commission=estimate)
    assert b1.exec_id == "b.01"
    restored.add(fill("c.01", 1), reference_usd=100.0, now_s=WAIT_S)
    restored.add(fill("x.02", 3, commission=1.0), reference_usd=100.0, now_s=WAIT_S)
    released = restored.release(WAIT_S, estimate_commission=estimate)
    assert ids(released) == ["c.01", "x.01/reversed", "x.02"]
    assert released[0].commission_usd == 3.0
    restored.attach_commission("b.01", 0.9, now_s=WAIT_S)
    again = ExecutionBook.from_json(restored.to_json())
    assert again.late_commissions() == [("b.01", 0.9)]


@pytest.mark.parametrize("text", ["", "[]", '{"version": 99}', '{"version": 1}'])
def test_an_unreadable_state_is_a_typed_error(text: str) -> None:
    with pytest.raises(ExecutionStateError):
        ExecutionBook.from_json(text)


# -- invariant: any interleaving books each fill's latest version exactly once ---------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["add", "add", "add", "commission", "tick", "release", "release", "restart"]
        ),
        st.integers(0, 9),
        st.integers(0, 9),
    ),
    min_size=4,
    max_size=60,
)
VERSIONS = st.lists(
    st.lists(st.integers(-300, 300).filter(lambda q: q != 0), min_size=1, max_size=3),
    min_size=1,
    max_size=3,
)


def real_commission(base: int, version: int) -> float:
    return round(1.0 + base * 0.1 + version * 0.01, 4)


@settings(max_examples=300, deadline=None)
@given(versions=VERSIONS, ops=OPS)
def test_any_interleaving_books_each_fills_latest_version_exactly_once(
    versions: list[list[int]], ops: list[tuple[str, int, int]]
) -> None:
    def exec_id(b: int, v: int) -> str:
        return f"0000{b}.6582d6b5.01.{v + 1:02d}"

    def ref(b: int) -> str:
        return f"ord-{b % 2}"

    b_book = book()
    now = 0.0
    released: list[Execution] = []
    late: list[tuple[str, float]] = []
    latest_added: dict[int, int] = {}
    commissions: dict[str, float] = {}
    for kind, x, y in ops:
        base = x % len(versions)
        version = y % len(versions[base])
        eid = exec_id(base, version)
        if kind == "add":
            qty = versions[base][version]
            b_book.add(fill(eid, qty, ref=ref(base)), reference_usd=100.0, now_s=now)
            latest_added[base] = max(latest_added.get(base, -1), version)
        elif kind == "commission":
            commissions[eid] = real_commission(base, version)
            b_book.attach_commission(eid, commissions[eid], now_s=now)
        elif kind == "tick":
            now += x
        elif kind == "release":
            released += b_book.release(now, estimate_commission=estimate)
        else:
            b_book = ExecutionBook.from_json(b_book.to_json())
        late += b_book.late_commissions()
    released += b_book.release(now + 1000.0, estimate_commission=estimate)
    late += b_book.late_commissions()

    released_ids = ids(released)
    assert len(released_ids) == len(set(released_ids)), "an execution was released twice"
    assert b_book.pending_exec_ids() == []
    net: dict[str, float] = defaultdict(float)
    for e in released:
        net[e.client_order_id] += e.qty
    want: dict[str, float] = defaultdict(float)
    for base, version in latest_added.items():
        want[ref(base)] += versions[base][version]
    assert {k: v for k, v in net.items() if v} == {k: v for k, v in want.items() if v}
    # commissions: the real one when it was known, else the estimate and the real one later
    estimated = {e.exec_id for e in released if e.commission_usd >= 1000.0}
    for e in released:
        if e.exec_id.endswith("/reversed"):
            assert e.commission_usd == 0.0
        elif e.exec_id not in estimated:
            assert e.commission_usd == commissions[e.exec_id]
    late_ids = [i for i, _ in late]
    assert len(late_ids) == len(set(late_ids))
    assert set(late_ids) == {i for i in estimated if i in commissions}
    assert all(commissions[i] == c for i, c in late)
