"""IB's historical pacing rules on our side, and the backoff of retries and reconnects."""

from __future__ import annotations

import heapq
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader_runtime.brokers.ib.config import HistoricalPacing
from trader_runtime.brokers.ib.pacing import HistoricalPacer, backoff_s, retry_delay_s

IB = HistoricalPacing()


def key(n: int, contract: str = "AAA") -> tuple[str, str, str]:
    return (contract, "1 min", f"2024010{n} 21:00:00 UTC|23400 S")


def test_a_first_request_goes_at_once() -> None:
    assert HistoricalPacer(IB).delay_s(key(1), "AAA", 0.0) == 0.0


def test_an_identical_request_waits_fifteen_seconds() -> None:
    pacer = HistoricalPacer(IB)
    pacer.started(key(1), "AAA", 100.0)
    pacer.finished(key(1))
    assert pacer.delay_s(key(1), "AAA", 104.0) == pytest.approx(11.0)
    assert pacer.delay_s(key(1), "AAA", 115.0) == 0.0
    assert pacer.delay_s(key(2), "AAA", 104.0) == 0.0


def test_a_sixth_request_for_a_contract_within_two_seconds_waits() -> None:
    pacer = HistoricalPacer(IB)
    for n in range(5):
        pacer.started(key(n), "AAA", 10.0 + 0.1 * n)
        pacer.finished(key(n))
    assert pacer.delay_s(key(7), "AAA", 10.5) == pytest.approx(1.5)
    assert pacer.delay_s(key(7), "BBB", 10.5) == 0.0  # another contract
    assert pacer.delay_s(key(7), "AAA", 12.0) == 0.0


def test_sixty_requests_in_ten_minutes_at_most() -> None:
    pacer = HistoricalPacer(IB)
    for n in range(60):
        contract = f"S{n}"
        pacer.started(key(0, contract), contract, float(n))
        pacer.finished(key(0, contract))
    assert pacer.delay_s(key(0, "NEW"), "NEW", 100.0) == pytest.approx(500.0)
    assert pacer.delay_s(key(0, "NEW"), "NEW", 600.0) == 0.0


def test_fifty_open_requests_at_most() -> None:
    pacer = HistoricalPacer(IB.model_copy(update={"max_requests": 1000}))
    for n in range(50):
        pacer.started(key(0, f"S{n}"), f"S{n}", float(n))
    assert pacer.open_requests == 50
    assert pacer.delay_s(key(0, "NEW"), "NEW", 1000.0) > 0.0
    pacer.finished(key(0, "S3"))
    pacer.finished(key(0, "never-started"))
    assert pacer.open_requests == 49
    assert pacer.delay_s(key(0, "NEW"), "NEW", 1000.0) == 0.0


def test_reconnect_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(a, 1.0, 60.0) for a in range(0, 9)] == [1, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(10_000, 1.0, 60.0) == 60.0
    with pytest.raises(ValueError, match="positive"):
        backoff_s(1, 0.0, 60.0)


def test_a_pacing_retry_starts_at_retry_backoff_and_is_capped() -> None:
    assert [retry_delay_s(a, IB) for a in (0, 1, 2, 3)] == [15.0, 15.0, 30.0, 60.0]
    assert retry_delay_s(50, IB) == IB.window_s
    quick = HistoricalPacing(retry_backoff_s=0.3, window_s=0.1)
    assert retry_delay_s(5, quick) == 0.3


# -- invariant: waiting delay_s never breaks a rule ---------------------------------------------

SMALL = HistoricalPacing(
    identical_window_s=1.5,
    burst_max=2,
    burst_window_s=0.5,
    max_requests=6,
    window_s=4.0,
    max_open=3,
)
TOL_S = 1e-6


def violations(
    starts: list[tuple[float, tuple[str, str, str], str, float]], rules: HistoricalPacing
) -> list[str]:
    """An independent check of a schedule of (start, key, contract, end) against ``rules``."""
    found: list[str] = []
    for i, (t, k, c, _) in enumerate(starts):
        earlier = starts[:i]
        if any(k2 == k and t - t2 < rules.identical_window_s - TOL_S for t2, k2, _, _ in earlier):
            found.append(f"identical request {k} at {t}")
        window = [
            x
            for x in [*earlier, starts[i]]
            if t - x[0] < rules.burst_window_s - TOL_S and x[2] == c
        ]
        if len(window) > rules.burst_max:
            found.append(f"burst of {c} at {t}")
        recent = [x for x in [*earlier, starts[i]] if t - x[0] < rules.window_s - TOL_S]
        if len(recent) > rules.max_requests:
            found.append(f"{len(recent)} requests in the window at {t}")
        still_open = [x for x in earlier if x[3] > t + TOL_S]
        if len(still_open) >= rules.max_open:
            found.append(f"{len(still_open)} open at {t}")
    return found


@settings(max_examples=150, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.floats(0.0, 1.0),  # time since the previous request was wanted
            st.integers(0, 3),  # which of a few request identities
            st.integers(0, 2),  # which contract
            st.floats(0.01, 3.0),  # how long the answer takes
        ),
        min_size=1,
        max_size=40,
    )
)
def test_waiting_delay_s_never_breaks_a_rule(requests: list[tuple[float, int, int, float]]) -> None:
    pacer = HistoricalPacer(SMALL)
    now = 0.0
    wanted = 0.0
    ends: list[tuple[float, int]] = []  # (end time, request index)
    schedule: list[tuple[float, tuple[str, str, str], str, float]] = []
    for gap, k, c, took in requests:
        wanted += gap
        now = max(now, wanted)
        contract = f"C{c}"
        k_full = (contract, "1 min", f"end{k}")
        while True:
            while ends and ends[0][0] <= now:
                _, j = heapq.heappop(ends)
                pacer.finished(schedule[j][1])
            delay = pacer.delay_s(k_full, contract, now)
            if delay == 0.0:
                break
            assert delay > 0.0
            now += delay
        pacer.started(k_full, contract, now)
        schedule.append((now, k_full, contract, now + took))
        heapq.heappush(ends, (now + took, len(schedule) - 1))
    assert violations(schedule, SMALL) == []
    assert len(schedule) == len(requests)
    assert Counter(x[2] for x in schedule) == Counter(f"C{c}" for _, _, c, _ in requests)


def test_the_checker_sees_a_schedule_that_ignores_the_pacer() -> None:
    rushed = [(0.1 * i, ("C0", "1 min", "end0"), "C0", 10.0) for i in range(8)]
    found = violations(rushed, SMALL)
    assert any("identical" in f for f in found)
    assert any("burst" in f for f in found)
    assert any("open" in f for f in found)
    assert any("requests in the window" in f for f in found)
