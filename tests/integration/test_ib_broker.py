"""The ibkr broker and feed, driven by the real ib_async client against the project's fake gateway.

Every session checks the same books: each order reference reached the gateway once, every
execution of the gateway is in the journal once (corrections replace), and the journal's net
fills equal the gateway's positions.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from tests.fake_ib import FakeGateway, Script, ThreadedGateway
from tests.fake_ib.log_guard import ib_decoder_guard  # noqa: F401 - fixture
from tests.fake_ib.state import PositionState
from tests.ib_kit import (
    CONFIG,
    LIVE_DAY,
    ib_config,
    loaded_gateway,
    market,
    on,
    realtime_subscriptions,
    run_engine,
)
from trader_runtime.brokers.base import AccountState, BrokerError
from trader_runtime.brokers.ib.broker import IbBroker
from trader_runtime.brokers.ib.connection import IbConnection
from trader_runtime.brokers.ib.guard import IbGuardError
from trader_runtime.brokers.ib.historical import IbHistoricalSource
from trader_runtime.live.journal import Journal
from trader_runtime.sources.base import BarRequest

pytestmark = pytest.mark.usefixtures("ib_decoder_guard")


def assert_books_agree(gw: ThreadedGateway, journal: Journal, session_id: str) -> pl.DataFrame:
    orders = on(gw, lambda g: list(g.orders))
    executions = on(gw, lambda g: list(g.executions))
    positions = on(gw, lambda g: g.positions())
    refs = [o.order_ref for o in orders]
    assert len(refs) == len(set(refs)), "an order reference reached the gateway twice"
    intents = {i.client_order_id: i for i in journal.intents(session_id)}
    assert set(refs) <= set(intents), "the gateway holds an order the journal never intended"
    fills = journal.fills(session_id)
    booked = [e for e in fills["exec_id"].to_list() if not e.endswith("/reversed")]
    assert len(booked) == len(set(booked)), "an execution was booked twice"
    superseded = {e.corrects for e in executions if e.corrects}
    current = {e.exec_id for e in executions if e.exec_id not in superseded}
    assert current <= set(booked), "an execution of the gateway is missing from the journal"
    assert set(booked) <= {e.exec_id for e in executions}, "the journal booked an unknown fill"
    net: dict[str, float] = defaultdict(float)
    for symbol, qty in fills.select("symbol", "qty").iter_rows():
        net[symbol] += qty
    assert {s: q for s, q in net.items() if abs(q) > 1e-9} == positions
    return fills


def test_a_session_trades_through_the_gateway_and_the_books_agree(tmp_path: Path) -> None:
    with loaded_gateway() as gw:
        summary, journal = run_engine(tmp_path, ib_config(gw.port), gw, max_bars=45)
        with journal:
            fills = assert_books_agree(gw, journal, summary.session_id)
            assert fills.height >= 2, "the model should trade in 45 minutes"
            # commissions are IB's reports (0.005 a share, 1.00 minimum), not estimates
            reported = {e.exec_id: e.commission_usd for e in on(gw, lambda g: list(g.executions))}
            for exec_id, commission in fills.select("exec_id", "commission_usd").iter_rows():
                assert commission == pytest.approx(reported[exec_id])
            refs = {o.order_ref for o in on(gw, lambda g: list(g.orders))}
            assert all(ref.startswith(summary.session_id) for ref in refs)  # orderRef = decision


def test_socket_drops_mid_session_lose_no_fill_and_duplicate_no_order(tmp_path: Path) -> None:
    script = Script(partial_fill_fractions=(0.5, 0.5), duplicate_exec_details=True)
    with loaded_gateway(script=script) as gw:
        dropped = []

        def dropper() -> None:
            for _ in range(2):
                time.sleep(1.0)
                gw.call(gw.gateway.drop_connections)
                dropped.append(True)

        summary, journal = run_engine(
            tmp_path, ib_config(gw.port), gw, max_bars=60, alongside=dropper
        )
        with journal:
            assert_books_agree(gw, journal, summary.session_id)
            kinds = journal.events(summary.session_id)["kind"].to_list()
            assert kinds.count("broker_reconnected") >= 1
            assert on(gw, lambda g: g.connection_count) >= 2


def test_rejects_are_journaled_as_rejected_and_not_retried(tmp_path: Path) -> None:
    with loaded_gateway(script=Script(reject_next_orders=2)) as gw:
        summary, journal = run_engine(tmp_path, ib_config(gw.port), gw, max_bars=40)
        with journal:
            assert_books_agree(gw, journal, summary.session_id)
            rejected = journal.intents(summary.session_id, ["rejected"])
            assert len(rejected) >= 2
            first_two = [o.order_ref for o in on(gw, lambda g: list(g.orders))][:2]
            assert {i.client_order_id for i in rejected} >= set(first_two)


def test_a_correction_replaces_the_fill_it_corrects(tmp_path: Path) -> None:
    # the gateway corrects one fill of a live session: the journal holds the reversal of the
    # first version and the corrected fill, and the books still agree
    with loaded_gateway(script=Script(fill_mode="immediate")) as gw:
        corrected: list[str] = []

        def corrector() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not corrected:
                execs = on(gw, lambda g: list(g.executions))
                if execs:
                    time.sleep(1.0)  # booked by then (commission wait 0.5 s): a reversal follows
                    first = execs[0]
                    corrected.append(
                        gw.call(gw.gateway.correct_execution, first.exec_id, shares=first.shares)
                    )
                time.sleep(0.05)

        summary, journal = run_engine(
            tmp_path, ib_config(gw.port), gw, max_bars=90, alongside=corrector
        )
        with journal:
            assert corrected
            fills = journal.fills(summary.session_id)
            assert corrected[0] in fills["exec_id"].to_list()
            assert any(e.endswith("/reversed") for e in fills["exec_id"].to_list())
            assert_books_agree(gw, journal, summary.session_id)


def test_paper_mode_refuses_a_live_account_and_hangs_up(tmp_path: Path) -> None:
    with loaded_gateway(accounts=("U7654321",)) as gw:
        with pytest.raises(IbGuardError, match="U7654321"):
            asyncio.run(IbConnection(ib_config(gw.port)).connect())
        # the refused connection does not hold its client id until a garbage collection
        deadline = time.monotonic() + 2.0
        while on(gw, lambda g: g.connected_client_ids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert on(gw, lambda g: g.connected_client_ids) == []


def test_a_client_id_in_use_is_retried_then_refused_naming_326(tmp_path: Path) -> None:
    with loaded_gateway(script=Script(client_ids_in_use=frozenset({7}))) as gw:
        with pytest.raises(BrokerError, match="326"):
            asyncio.run(IbConnection(ib_config(gw.port, connect_timeout_s=0.5)).connect())
        assert on(gw, lambda g: g.connected_client_ids) == []


def test_the_historical_source_downloads_within_the_pacing_rules() -> None:
    # the gateway enforces IB's rules with short windows; our pacer uses the same windows
    script = Script(
        pacing_identical_window_s=0.5,
        pacing_burst_max=2,
        pacing_burst_window_s=0.4,
        pacing_max_requests=50,
        pacing_window_s=5.0,
    )
    with loaded_gateway(script=script) as gw:
        config = ib_config(
            gw.port,
            historical={
                "identical_window_s": 0.5,
                "burst_max": 2,
                "burst_window_s": 0.4,
                "max_requests": 50,
                "window_s": 5.0,
                "retry_backoff_s": 0.2,
            },
        )
        frame = IbHistoricalSource(config).load(
            BarRequest("AAA", LIVE_DAY.replace(day=4), LIVE_DAY.replace(day=7))
        )
        logs = on(gw, lambda g: list(g.historical_requests))
    want = [b for b in market()["AAA"] if b.ts_close.date() < LIVE_DAY]
    assert frame.height == len(want)
    assert frame["ts"].to_list() == [b.ts_close for b in want]
    assert frame["close"].to_list() == [b.close for b in want]
    assert not any(log.refused_pacing for log in logs), "our pacer let a request break IB's rules"


def test_a_pacing_violation_is_retried_with_backoff() -> None:
    script = Script(pacing_identical_window_s=0.2, pacing_burst_max=1, pacing_burst_window_s=0.6)
    with loaded_gateway(script=script) as gw:
        # our pacer is looser than the gateway: the gateway answers 162, we back off and retry
        # (the same request again only after the identical-request window)
        config = ib_config(
            gw.port,
            historical={
                "identical_window_s": 0.2,
                "burst_max": 5,
                "burst_window_s": 0.1,
                "retry_backoff_s": 0.3,
            },
        )
        frame = IbHistoricalSource(config).load(
            BarRequest("BBB", LIVE_DAY.replace(day=5), LIVE_DAY.replace(day=7))
        )
        logs = on(gw, lambda g: list(g.historical_requests))
    assert frame.height == 3 * 390
    assert any(log.refused_pacing for log in logs)
    assert frame["ts"].is_sorted()
    assert set(frame["symbol"].unique()) == {"BBB"}


def test_orders_pause_on_1100_and_bars_resubscribe_on_1101(tmp_path: Path) -> None:
    with loaded_gateway() as gw:
        seen: dict[str, int] = {}

        def outage() -> None:
            while realtime_subscriptions(gw) < 2:
                time.sleep(0.02)
            time.sleep(0.8)
            before = len(on(gw, lambda g: list(g.realtime_bar_requests)))
            gw.call(gw.gateway.send_system_message, 1100)
            time.sleep(0.1)
            seen["orders_at_outage"] = len(on(gw, lambda g: list(g.orders)))
            time.sleep(0.6)  # a dozen bars without connectivity: no order may go out
            seen["orders_before_restore"] = len(on(gw, lambda g: list(g.orders)))
            gw.call(gw.gateway.send_system_message, 1101)
            time.sleep(0.6)
            seen["resubscribed"] = len(on(gw, lambda g: list(g.realtime_bar_requests))) - before
            seen["live_subscriptions"] = realtime_subscriptions(gw)

        summary, journal = run_engine(
            tmp_path, ib_config(gw.port), gw, max_bars=70, alongside=outage
        )
        with journal:
            assert_books_agree(gw, journal, summary.session_id)
            events = journal.events(summary.session_id)
            kinds = events["kind"].to_list()
            assert "broker_connectivity_lost" in kinds
            assert "broker_connectivity_restored" in kinds
            assert seen["resubscribed"] == 2  # one per symbol after "data lost"
            assert seen["live_subscriptions"] == 2  # the old ones were cancelled
            paused = [
                i
                for i in journal.intents(summary.session_id, ["rejected"])
                if i.note and "paused" in i.note
            ]
            assert seen["orders_before_restore"] == seen["orders_at_outage"]
            assert paused, "no order was decided during the outage: the check above proved nothing"
            orders = on(gw, lambda g: list(g.orders))
            # every intent decided during the outage was refused, none reached the gateway
            assert {i.client_order_id for i in paused}.isdisjoint({o.order_ref for o in orders})


def test_a_cancel_that_races_a_fill_waits_for_the_executions(tmp_path: Path) -> None:
    # each order fills in three slices, one a minute: the engine cancels the rest after a bar of
    # grace, the gateway answers 10148 (too late) and the order keeps filling to the end
    script = Script(partial_fill_fractions=(0.3, 0.3, 0.4), cancel_reply="10148")
    with loaded_gateway(script=script) as gw:
        summary, journal = run_engine(tmp_path, ib_config(gw.port), gw, max_bars=50)
        with journal:
            fills = assert_books_agree(gw, journal, summary.session_id)
            orders = on(gw, lambda g: list(g.orders))
            assert any(o.status == "Filled" and o.filled_qty == o.total_qty for o in orders)
            per_order = fills.group_by("client_order_id").len()
            assert per_order["len"].max() == 3  # all three slices booked, the cancel lost


def test_a_cancel_raced_by_ibs_own_cancel_ends_as_ib_ends_it_and_is_sent_once(
    tmp_path: Path,
) -> None:
    # orders fill 30% a minute, twice, and never complete; the engine cancels the rest one bar
    # late while IB is already cancelling the order on its own: 10148 (state: PendingCancel),
    # then two minutes later Cancelled and 202, the order still filling meanwhile. ib_async marks
    # the order Cancelled on the 10148 (not final: it may fill), and IB's real Cancelled repeats
    # those fields: the 202 ends it.
    script = Script(partial_fill_fractions=(0.3, 0.3), cancel_reply="pending")
    with loaded_gateway(script=script) as gw:
        summary, journal = run_engine(tmp_path, ib_config(gw.port), gw, max_bars=45)
        with journal:
            fills = assert_books_agree(gw, journal, summary.session_id)
            orders = on(gw, lambda g: list(g.orders))
            assert any(o.status == "Cancelled" for o in orders), "the scenario cancels orders"
            intents = {i.client_order_id: i.status for i in journal.intents(summary.session_id)}
            # every order ends in the journal as it ended at the gateway; only those IB was
            # still cancelling when the market stopped (the last bars') are left as sent
            expected = {"Cancelled": "cancelled", "Filled": "filled", "Submitted": "sent"}
            assert {o.order_ref: intents[o.order_ref] for o in orders} == {
                o.order_ref: expected[o.status] for o in orders
            }
            # no order was closed early: every fill came while its order was open
            assert "late" not in fills["reason"].to_list()
            # one cancel a bar late, at most one more when the session stops: none repeated
            cancels = on(gw, lambda g: dict(g.cancel_requests))
            assert cancels
            assert max(cancels.values()) <= 2


def test_a_silent_gateway_fails_the_heartbeat_and_the_connection_is_remade() -> None:
    with loaded_gateway() as gw:

        async def scenario() -> list[str]:
            conn = IbConnection(
                ib_config(gw.port, heartbeat_interval_s=0.2, heartbeat_timeout_s=0.3)
            )
            await conn.connect()
            # the gateway stops answering reqCurrentTime (49) but keeps the socket open
            silent = await asyncio.to_thread(
                on, gw, lambda g: g._handlers.__setitem__(49, g._ignore)
            )
            assert silent is None
            for _ in range(100):
                kinds = [kind for kind, _ in conn.events]
                if "heartbeat_failed" in kinds and "reconnected" in kinds:
                    break
                await asyncio.sleep(0.05)
            await conn.close()
            return [kind for kind, _ in conn.events]

        kinds = asyncio.run(scenario())
        assert "heartbeat_failed" in kinds
        assert kinds.index("reconnected") > kinds.index("heartbeat_failed")
        assert on(gw, lambda g: g.connection_count) >= 2


def test_the_account_gives_each_positions_average_cost(tmp_path: Path) -> None:
    def hold(g: FakeGateway) -> None:
        g.book.positions[("DU1234567", "AAA")] = PositionState(shares=100.0, avg_cost=123.45)
        g.book.positions[("DU1234567", "BBB")] = PositionState(shares=-20.0, avg_cost=67.5)

    async def account_of(port: int) -> AccountState:
        broker = IbBroker(ib_config(port), costs=CONFIG.costs)
        try:
            return await broker.connect()
        finally:
            await broker.close()

    with loaded_gateway() as gw:
        on(gw, hold)
        account = asyncio.run(account_of(gw.port))
    assert account.positions == {"AAA": 100.0, "BBB": -20.0}
    assert account.avg_cost_usd == {"AAA": 123.45, "BBB": 67.5}
