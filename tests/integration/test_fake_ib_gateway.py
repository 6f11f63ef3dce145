"""The fake IB gateway against the REAL ib_async client: handshake, contracts, historical and
realtime bars, the order lifecycle, failure injection and reconnects."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Order, Stock, Trade

from tests.fake_ib import (
    DecoderErrorGuard,
    DecoderErrorsFoundError,
    FakeGateway,
    FakeGatewayError,
    MinuteBar,
    Script,
    ThreadedGateway,
    stable_con_id,
)
from tests.fake_ib.gateway import PACING_TEXT
from tests.fake_ib.log_guard import ib_decoder_guard  # noqa: F401

pytestmark = pytest.mark.usefixtures("ib_decoder_guard")

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # 09:30 New York, a Tuesday
PREV_DAY_OPEN = datetime(2023, 12, 29, 14, 30, tzinfo=UTC)  # 09:30 New York, the Friday before
AAA = Stock("AAA", "SMART", "USD")
EXEC_ID = re.compile(r"^[0-9a-f]{8}\.[0-9a-f]{8}\.01\.\d{2}$")


def walk(first_open: datetime, n: int, *, seed: int, price: float = 100.0) -> list[MinuteBar]:
    """``n`` seeded random-walk minute bars, the first opening at ``first_open``."""
    rng = random.Random(seed)
    bars = []
    for i in range(n):
        o = round(price, 2)
        c = round(o + rng.uniform(-0.3, 0.3), 2)
        bars.append(
            MinuteBar(
                ts_close=first_open + timedelta(minutes=i + 1),
                open=o,
                high=round(max(o, c) + rng.uniform(0.01, 0.2), 2),
                low=round(min(o, c) - rng.uniform(0.01, 0.2), 2),
                close=c,
                volume=float(rng.randint(500, 5000)),
            )
        )
        price = c
    return bars


def bar_closing(gw_bars: list[MinuteBar], ts_close: datetime) -> MinuteBar:
    return next(b for b in gw_bars if b.ts_close == ts_close)


AAA_BARS = walk(T0 - timedelta(hours=1), 180, seed=1)  # 08:30-11:30 New York
AAA_PREV = walk(PREV_DAY_OPEN, 60, seed=2, price=95.0)
BBB_BARS = walk(T0 - timedelta(hours=1), 180, seed=3, price=50.0)


@asynccontextmanager
async def running_gateway(**kwargs: Any) -> AsyncIterator[FakeGateway]:
    """A started gateway with AAA/BBB bars and the clock 10 minutes into the session; asserts
    the gateway recorded no handler errors."""
    gw = FakeGateway(**kwargs)
    gw.add_bars("AAA", AAA_PREV + AAA_BARS)
    gw.add_bars("BBB", BBB_BARS)
    gw.set_clock(T0 + timedelta(minutes=10))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()
    assert gw.errors == []


async def connect(gw: FakeGateway, client_id: int = 1, **kwargs: Any) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=2, **kwargs)
    return ib


async def wait_until(predicate: Callable[[], object], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def error_codes(ib: IB) -> list[tuple[int, int, str]]:
    """Collects (reqId, code, message) of every errorEvent of ``ib``."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, msg, contract: seen.append((req_id, code, msg))
    return seen


def place(ib: IB, order: Order, contract: Stock = AAA) -> Trade:
    return ib.placeOrder(contract, order)


# ----------------------------------------------------------------------------- handshake


def test_connect_serves_every_startup_request_without_timeouts(
    ib_decoder_guard: DecoderErrorGuard,  # noqa: F811
) -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = IB()
            codes = error_codes(ib)
            started = time.monotonic()
            await ib.connectAsync("127.0.0.1", gw.port, clientId=3, timeout=2)
            assert time.monotonic() - started < 1.0
            assert ib.client.serverVersion() == 178
            assert ib.managedAccounts() == ["DU1234567"]
            assert [c for _, c, _ in codes] == [2104, 2106, 2158]
            assert gw.connected_client_ids == [3]
            assert gw.connection_count == 1
            values = {v.tag: v.value for v in ib.accountValues() if v.currency in ("USD", "")}
            assert values["NetLiquidation"] == "1000000.00"
            assert ib.positions() == []
            ib.disconnect()
            await wait_until(lambda: gw.connected_client_ids == [])

    asyncio.run(main())
    assert not [m for m in ib_decoder_guard.messages() if "timed out" in m]


def test_next_valid_id_is_one_past_the_highest_order_id_of_that_client() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw, client_id=5)
            codes = error_codes(ib)
            first = place(ib, LimitOrder("BUY", 10, 90.0, orderId=40, orderRef="gap"))
            lower = place(ib, LimitOrder("BUY", 10, 90.0, orderId=30, orderRef="low"))
            await wait_until(lambda: lower.orderStatus.status == "Cancelled")
            assert first.orderStatus.status == "Submitted"
            assert (30, 103, "Duplicate order id") in codes
            assert gw.duplicate_order_ids == [(5, 30)]
            assert [o.order_ref for o in gw.orders] == ["gap"]
            ib.disconnect()
            await wait_until(lambda: gw.connected_client_ids == [])

            for client_id, expected in ((5, 41), (6, 1)):
                again = IB()
                seen: list[int] = []
                again.wrapper.nextValidId = seen.append  # type: ignore[method-assign,assignment]
                await again.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=2)
                assert seen == [expected]
                again.client.reqIds(1)
                await wait_until(lambda seen=seen: len(seen) == 2)  # type: ignore[misc]
                assert seen[1] == expected
                again.disconnect()
                await wait_until(lambda: gw.connected_client_ids == [])

    asyncio.run(main())


@pytest.mark.parametrize("held_by", ["script", "live connection"])
def test_client_id_in_use_gets_326_then_the_socket_closes(held_by: str) -> None:
    async def main() -> None:
        script = Script(client_ids_in_use=frozenset({7} if held_by == "script" else set()))
        async with running_gateway(script=script) as gw:
            holder = await connect(gw, client_id=7) if held_by != "script" else None
            ib = IB()
            codes = error_codes(ib)
            with pytest.raises(TimeoutError):
                await ib.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=0.3)
            assert (-1, 326) in [(r, c) for r, c, _ in codes]
            assert gw.connection_count == (0 if holder is None else 1)
            assert gw.connected_client_ids == ([] if holder is None else [7])
            if holder is not None:
                holder.disconnect()

    asyncio.run(main())


def test_refused_connections_close_after_the_handshake_then_connect_works() -> None:
    async def main() -> None:
        async with running_gateway(script=Script(refuse_connections=1)) as gw:
            with pytest.raises(TimeoutError):
                await IB().connectAsync("127.0.0.1", gw.port, clientId=1, timeout=0.3)
            assert gw.connection_count == 0
            ib = await connect(gw)
            assert ib.isConnected()
            assert gw.connection_count == 1
            ib.disconnect()

    asyncio.run(main())


def test_ib_insync_server_version_176_layouts_decode_cleanly() -> None:
    async def main() -> None:
        async with running_gateway(server_version_max=176) as gw:
            ib = await connect(gw)
            assert ib.client.serverVersion() == 176
            done = place(ib, MarketOrder("BUY", 10, orderRef="v176-done"))
            working = place(ib, LimitOrder("BUY", 5, 1.0, orderRef="v176-open"))
            await wait_until(lambda: working.orderStatus.status == "Submitted")
            await gw.advance(1)
            await wait_until(lambda: done.orderStatus.status == "Filled")
            ib.disconnect()
            await wait_until(lambda: gw.connected_client_ids == [])
            again = await connect(gw)
            refs = {t.order.orderRef: t.orderStatus.status for t in again.trades()}
            assert refs == {"v176-done": "Filled", "v176-open": "Submitted"}
            assert [f.execution.orderRef for f in again.fills()] == ["v176-done"]
            assert working.order.permId in {t.order.permId for t in again.openTrades()}
            again.disconnect()

    asyncio.run(main())


# ----------------------------------------------------------------------------- contracts and bars


def test_qualify_gives_a_stable_con_id_and_an_unknown_symbol_gets_200() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw)
            codes = error_codes(ib)
            aaa, zzz = await ib.qualifyContractsAsync(
                Stock("AAA", "SMART", "USD"), Stock("ZZZ", "SMART", "USD")
            )
            assert isinstance(aaa, Stock)
            assert aaa.conId == stable_con_id("AAA") > 0
            assert (aaa.exchange, aaa.primaryExchange) == ("SMART", "NASDAQ")
            assert zzz is None
            assert 200 in [c for _, c, _ in codes]
            by_con_id = await ib.reqContractDetailsAsync(Stock(conId=stable_con_id("BBB")))
            assert [d.contract.symbol for d in by_con_id if d.contract] == ["BBB"]
            ib.disconnect()

    asyncio.run(main())


def test_historical_minute_bars_stop_at_the_clock_and_are_dated_by_their_start() -> None:
    async def main() -> None:
        script = Script(pacing_identical_window_s=0.0, pacing_burst_max=100)
        async with running_gateway(script=script) as gw:
            gw.set_clock(T0 + timedelta(minutes=60))
            ib = await connect(gw)

            async def req(end: str, duration: str, rth: bool = True, fmt: int = 1) -> list[Any]:
                return list(
                    await ib.reqHistoricalDataAsync(AAA, end, duration, "1 min", "TRADES", rth, fmt)
                )

            rth = await req("", "1 D")
            assert len(rth) == 60
            assert rth[0].date == T0
            assert rth[-1].date == T0 + timedelta(minutes=59)
            source = bar_closing(AAA_BARS, T0 + timedelta(minutes=1))
            first = rth[0]
            assert (first.open, first.high, first.low, first.close, first.volume) == (
                source.open,
                source.high,
                source.low,
                source.close,
                source.volume,
            )
            assert isinstance(first.barCount, int)
            assert len(await req("", "1 D", rth=False)) == 120  # pre-market from 08:30 New York
            epoch = await req("", "1 D", fmt=2)
            assert [b.date for b in epoch] == [b.date for b in rth]
            for end in ("20240102 15:00:00 UTC", "20240102-15:00:00"):
                upto = await req(end, "1 D")
                assert upto[-1].date == datetime(2024, 1, 2, 14, 59, tzinfo=UTC)
            future_end = await req("20240102 18:00:00 UTC", "1 D")
            assert future_end[-1].date == T0 + timedelta(minutes=59)
            assert len(await req("", "600 S")) == 10
            assert len(await req("", "2 D")) == 120
            assert len(await req("", "1 W")) == 120
            assert await req("20231201 15:00:00 UTC", "1 D") == []  # 162: no data
            assert [r.bars_returned for r in gw.historical_requests][:3] == [60, 120, 60]
            ib.disconnect()

    asyncio.run(main())


def test_daily_bars_aggregate_the_closed_minutes_of_each_new_york_day() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            gw.set_clock(T0 + timedelta(minutes=30))
            ib = await connect(gw)
            bars = await ib.reqHistoricalDataAsync(AAA, "", "2 D", "1 day", "TRADES", True, 2)
            assert [b.date for b in bars] == [date(2023, 12, 29), date(2024, 1, 2)]
            today = [b for b in AAA_BARS if T0 < b.ts_close <= T0 + timedelta(minutes=30)]
            last = bars[-1]
            assert last.open == today[0].open
            assert last.close == today[-1].close
            assert last.high == max(b.high for b in today)
            assert last.low == min(b.low for b in today)
            assert last.volume == pytest.approx(sum(b.volume for b in today))
            ib.disconnect()

    asyncio.run(main())


def test_historical_pacing_violations_return_empty_lists_and_are_logged() -> None:
    async def main() -> None:
        script = Script(
            pacing_identical_window_s=0.3,
            pacing_burst_max=3,
            pacing_burst_window_s=0.3,
            pacing_max_requests=5,
            pacing_window_s=60.0,
        )
        async with running_gateway(script=script) as gw:
            ib = await connect(gw)
            codes = error_codes(ib)

            async def req(duration: str, contract: Stock = AAA) -> int:
                bars = await ib.reqHistoricalDataAsync(
                    contract, "", duration, "1 min", "TRADES", False
                )
                return len(bars)

            assert await req("600 S") == 10
            assert await req("600 S") == 0  # identical within the window
            await asyncio.sleep(0.35)
            assert [await req(d) for d in ("300 S", "240 S", "180 S")] == [5, 4, 3]
            assert await req("120 S") == 0  # a 4th for AAA within the burst window
            await asyncio.sleep(0.35)
            assert await req("60 S") == 1
            assert await req("60 S", Stock("BBB", "SMART", "USD")) == 0  # 6th in the window
            refused = [r.refused_pacing for r in gw.historical_requests]
            assert refused == [False, True, False, False, False, True, False, True]
            assert [m for _, c, m in codes if c == 162] == [PACING_TEXT] * 3
            assert gw.historical_requests[-1].symbol == "BBB"
            ib.disconnect()

    asyncio.run(main())


def test_realtime_bars_split_each_minute_into_twelve_five_second_bars() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw)
            rt = ib.reqRealTimeBars(AAA, 5, "TRADES", False)
            await asyncio.sleep(0.02)
            minute_open = gw.clock
            await gw.advance(2)
            await wait_until(lambda: len(rt) == 24)
            source = bar_closing(AAA_BARS, minute_open + timedelta(minutes=1))
            first12 = rt[:12]
            assert [b.time for b in first12] == [
                minute_open + timedelta(seconds=5 * i) for i in range(12)
            ]
            assert first12[0].open_ == source.open
            assert first12[-1].close == source.close
            assert max(b.high for b in first12) == pytest.approx(source.high)
            assert min(b.low for b in first12) == pytest.approx(source.low)
            assert sum(b.volume for b in first12) == pytest.approx(source.volume)
            assert all(isinstance(b.count, int) for b in first12)
            ib.cancelRealTimeBars(rt)
            await asyncio.sleep(0.02)
            await gw.advance(1)
            await asyncio.sleep(0.05)
            assert len(rt) == 24

            ib.reqRealTimeBars(AAA, 5, "TRADES", False)
            await wait_until(lambda: len(gw.realtime_subscriptions) == 1)
            await gw.drop_connections()
            await wait_until(lambda: not ib.isConnected())
            assert gw.realtime_subscriptions == []  # died with the connection
            again = await connect(gw)
            fresh = again.reqRealTimeBars(Stock("BBB", "SMART", "USD"), 5, "TRADES", False)
            await wait_until(lambda: len(gw.realtime_subscriptions) == 1)
            assert gw.realtime_subscriptions == [(1, fresh.reqId, "BBB")]
            assert [sym for _, _, sym in gw.realtime_bar_requests] == ["AAA", "AAA", "BBB"]
            await gw.advance(1)
            await wait_until(lambda: len(fresh) == 12)
            again.disconnect()

    asyncio.run(main())


# ----------------------------------------------------------------------------- orders


def test_market_order_fills_at_the_next_minute_open_with_commission_and_positions() -> None:
    async def main() -> None:
        async with running_gateway(script=Script(commission_delay_s=0.05)) as gw:
            ib = await connect(gw)
            fill_wall: list[float] = []
            commission_wall: list[float] = []
            ib.execDetailsEvent += lambda trade, fill: fill_wall.append(time.monotonic())
            ib.commissionReportEvent += lambda t, f, r: commission_wall.append(time.monotonic())
            trade = place(ib, MarketOrder("BUY", 300, orderRef="ref-1"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            placed = gw.orders[0]
            assert trade.order.permId == placed.perm_id > 0
            assert placed.client_id == 1
            assert (placed.symbol, placed.action, placed.total_qty) == ("AAA", "BUY", 300)
            await asyncio.sleep(0.02)
            assert trade.fills == []

            fill_minute = gw.clock
            await gw.advance(1)
            await wait_until(lambda: len(commission_wall) == 1)
            price = bar_closing(AAA_BARS, fill_minute + timedelta(minutes=1)).open
            (fill,) = trade.fills
            assert EXEC_ID.match(fill.execution.execId)
            assert (fill.execution.shares, fill.execution.price) == (300, price)
            assert fill.execution.time == fill_minute
            assert commission_wall[0] - fill_wall[0] >= 0.04
            assert fill.commissionReport.commission == pytest.approx(1.5)
            assert trade.orderStatus.status == "Filled"
            assert [(p.contract.symbol, p.position) for p in ib.positions()] == [("AAA", 300)]
            assert [(p.contract.symbol, p.position) for p in ib.portfolio()] == [("AAA", 300)]
            cash = 1_000_000 - 300 * price - 1.5
            assert gw.positions() == {"AAA": 300}
            assert gw.cash_usd() == pytest.approx(cash)
            values = {v.tag: v.value for v in ib.accountValues() if v.currency == "USD"}
            assert float(values["TotalCashValue"]) == pytest.approx(cash, abs=0.01)

            sell = place(ib, MarketOrder("SELL", 300, orderRef="ref-2"))
            await wait_until(lambda: sell.orderStatus.status == "Submitted")
            sell_minute = gw.clock
            await gw.advance(1)
            await wait_until(lambda: len(commission_wall) == 2)
            exit_price = bar_closing(AAA_BARS, sell_minute + timedelta(minutes=1)).open
            report = sell.fills[0].commissionReport
            assert report.realizedPNL == pytest.approx((exit_price - price) * 300 - 1.5)
            assert ib.positions() == []
            assert gw.positions() == {}
            assert [e.side for e in gw.executions] == ["BOT", "SLD"]
            ib.disconnect()

    asyncio.run(main())


def test_partial_fills_take_one_slice_per_minute_and_the_rest_stays_working() -> None:
    async def main() -> None:
        async with running_gateway(script=Script(partial_fill_fractions=(0.5, 0.3))) as gw:
            ib = await connect(gw)
            trade = place(ib, MarketOrder("BUY", 100, orderRef="partial"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            await gw.advance(1)
            await wait_until(lambda: trade.orderStatus.filled == 50)
            assert (trade.orderStatus.status, trade.orderStatus.remaining) == ("Submitted", 50)
            await gw.advance(2)
            await wait_until(lambda: trade.orderStatus.filled == 80)
            await asyncio.sleep(0.02)
            assert [f.execution.cumQty for f in trade.fills] == [50, 80]
            assert len({f.execution.execId for f in trade.fills}) == 2
            assert trade.orderStatus.status == "Submitted"
            assert trade.orderStatus.remaining == 20
            assert gw.orders[0].filled_qty == 80
            assert gw.orders[0].is_working
            ib.disconnect()

    asyncio.run(main())


def test_immediate_mode_fills_on_placement_and_limits_fill_only_when_marketable() -> None:
    async def main() -> None:
        async with running_gateway(script=Script(fill_mode="immediate")) as gw:
            ib = await connect(gw)
            now_open = bar_closing(AAA_BARS, gw.clock + timedelta(minutes=1)).open
            mkt = place(ib, MarketOrder("BUY", 10, orderRef="now"))
            await wait_until(lambda: mkt.orderStatus.status == "Filled")
            assert mkt.fills[0].execution.price == now_open
            passive = place(ib, LimitOrder("BUY", 10, now_open - 20, orderRef="passive"))
            marketable = place(ib, LimitOrder("SELL", 5, now_open - 20, orderRef="cross"))
            await wait_until(lambda: marketable.orderStatus.status == "Filled")
            await wait_until(lambda: passive.orderStatus.status == "Submitted")
            assert marketable.fills[0].execution.price == now_open  # the market, not the limit
            await gw.advance(2)
            await asyncio.sleep(0.02)
            assert passive.orderStatus.status == "Submitted"
            assert passive.fills == []
            assert gw.positions() == {"AAA": 5}
            ib.disconnect()

    asyncio.run(main())


def test_modifying_a_working_order_updates_it_in_place() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw)
            trade = place(ib, LimitOrder("BUY", 10, 50.0, orderRef="mod"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            trade.order.totalQuantity, trade.order.lmtPrice = 25, 51.0
            place(ib, trade.order)
            await wait_until(lambda: trade.orderStatus.remaining == 25)
            (order,) = gw.orders
            assert (order.total_qty, order.lmt_price, order.modify_count) == (25, 51.0, 1)
            ib.disconnect()

    asyncio.run(main())


def test_rejections_cancel_the_trade_with_201_or_200() -> None:
    async def main() -> None:
        script = Script(reject_next_orders=1, reject_symbols=frozenset({"BBB"}))
        async with running_gateway(script=script) as gw:
            ib = await connect(gw)
            first = place(ib, MarketOrder("BUY", 10, orderRef="r1"))
            second = place(ib, MarketOrder("BUY", 10, orderRef="r2"))
            bbb = place(ib, MarketOrder("BUY", 10, orderRef="r3"), Stock("BBB", "SMART", "USD"))
            zzz = place(ib, MarketOrder("BUY", 10, orderRef="r4"), Stock("ZZZ", "SMART", "USD"))
            await wait_until(lambda: zzz.orderStatus.status == "Cancelled")
            await wait_until(lambda: second.orderStatus.status == "Submitted")
            assert first.orderStatus.status == "Cancelled"
            assert first.log[-1].errorCode == 201
            assert bbb.orderStatus.status == "Cancelled"
            assert bbb.log[-1].errorCode == 201
            assert zzz.log[-1].errorCode == 200
            assert [(o.order_ref, o.status) for o in gw.orders] == [
                ("r1", "Cancelled"),
                ("r2", "Submitted"),
                ("r3", "Cancelled"),
                ("r4", "Cancelled"),
            ]
            assert gw.orders[0].reject_reason.startswith("Order rejected - reason:")
            assert gw.script.reject_next_orders == 0
            ib.disconnect()

    asyncio.run(main())


def test_cancel_ack_sends_cancelled_and_202_and_unknown_ids_get_10147() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw)
            codes = error_codes(ib)
            trade = place(ib, MarketOrder("BUY", 10, orderRef="c1"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            ib.cancelOrder(trade.order)
            await wait_until(lambda: 202 in [c for _, c, _ in codes])
            assert trade.orderStatus.status == "Cancelled"
            assert gw.orders[0].status == "Cancelled"
            await gw.advance(1)
            assert gw.executions == []
            ib.client.cancelOrder(999)
            await wait_until(lambda: 10147 in [c for _, c, _ in codes])
            ib.disconnect()

    asyncio.run(main())


@pytest.mark.parametrize("reply", ["10147", "10148"])
def test_cancel_races_leave_the_order_working_until_it_fills(reply: str) -> None:
    async def main() -> None:
        async with running_gateway(script=Script(cancel_reply=reply)) as gw:  # type: ignore[arg-type]
            ib = await connect(gw)
            codes = error_codes(ib)
            trade = place(ib, MarketOrder("BUY", 10, orderRef="race"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            ib.cancelOrder(trade.order)
            await wait_until(lambda: int(reply) in [c for _, c, _ in codes])
            assert trade.orderStatus.status == "Cancelled"  # ib_async's reading of the race
            message = next(m for _, c, m in codes if c == int(reply))
            if reply == "10148":
                assert message == (
                    f"OrderId {trade.order.orderId} that needs to be cancelled cannot be "
                    "cancelled, state: Filled."
                )
            assert gw.orders[0].is_working
            await gw.advance(1)
            await wait_until(lambda: trade.orderStatus.status == "Filled")
            assert len(trade.fills) == 1
            ib.disconnect()

    asyncio.run(main())


def test_global_cancel_cancels_working_orders_of_every_client() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            one, two = await connect(gw, 0), await connect(gw, 2)  # 0 also sends reqAutoOpenOrders
            a = place(one, LimitOrder("BUY", 10, 1.0, orderRef="g1"))
            b = place(two, LimitOrder("BUY", 10, 1.0, orderRef="g2"))
            await wait_until(lambda: b.orderStatus.status == "Submitted")
            one.reqGlobalCancel()
            await wait_until(lambda: a.orderStatus.status == b.orderStatus.status == "Cancelled")
            assert [o.status for o in gw.orders] == ["Cancelled", "Cancelled"]
            one.disconnect()
            two.disconnect()

    asyncio.run(main())


# ----------------------------------------------------------------------------- reconnects


def test_fills_while_away_come_back_through_req_executions_after_reconnect() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw, client_id=4)
            filled = place(ib, MarketOrder("BUY", 100, orderRef="away-fill"))
            working = place(ib, LimitOrder("BUY", 50, 1.0, orderRef="away-open"))
            await wait_until(lambda: working.orderStatus.status == "Submitted")
            await gw.drop_connections()
            await wait_until(lambda: not ib.isConnected())
            assert gw.connected_client_ids == []
            await gw.advance(1)
            assert [e.order_ref for e in gw.executions] == ["away-fill"]

            again = IB()
            live_events: list[object] = []
            again.execDetailsEvent += lambda trade, fill: live_events.append(fill)
            await again.connectAsync("127.0.0.1", gw.port, clientId=4, timeout=2)
            (fill,) = again.fills()
            assert fill.execution.orderRef == "away-fill"
            assert fill.execution.execId == gw.executions[0].exec_id
            assert fill.commissionReport.commission == pytest.approx(1.0)
            assert live_events == []
            by_ref = {t.order.orderRef: t for t in again.trades()}
            assert by_ref["away-fill"].orderStatus.status == "Filled"
            assert by_ref["away-fill"].order.permId == filled.order.permId
            (open_trade,) = again.openTrades()
            assert open_trade.order.orderRef == "away-open"
            assert open_trade.order.permId == working.order.permId
            assert [(p.contract.symbol, p.position) for p in again.positions()] == [("AAA", 100)]

            await gw.advance(1)  # nothing more: the limit is far away
            assert len(gw.executions) == 1
            again.disconnect()

    asyncio.run(main())


def test_orders_wait_for_their_client_when_fills_while_disconnected_is_off() -> None:
    async def main() -> None:
        async with running_gateway(script=Script(fills_while_disconnected=False)) as gw:
            ib = await connect(gw)
            waiting = place(ib, MarketOrder("BUY", 10, orderRef="wait"))
            await wait_until(lambda: waiting.orderStatus.status == "Submitted")
            await gw.drop_connections()
            await gw.advance(2)
            assert gw.executions == []
            again = await connect(gw)
            assert [t.order.orderRef for t in again.openTrades()] == ["wait"]
            await gw.advance(1)
            await wait_until(lambda: len(again.fills()) == 1)
            assert again.openTrades() == []
            assert again.trades()[0].orderStatus.status == "Filled"
            again.disconnect()

    asyncio.run(main())


# ----------------------------------------------------------------------------- executions


def test_duplicate_exec_details_make_one_fill_and_corrections_replace_executions() -> None:
    async def main() -> None:
        async with running_gateway(script=Script(duplicate_exec_details=True)) as gw:
            ib = await connect(gw)
            events: list[str] = []
            ib.execDetailsEvent += lambda trade, fill: events.append(fill.execution.execId)
            trade = place(ib, MarketOrder("BUY", 100, orderRef="dup"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            await gw.advance(1)
            await wait_until(lambda: trade.orderStatus.status == "Filled")
            await asyncio.sleep(0.02)
            assert len(events) == 1
            assert len(ib.fills()) == 1
            original = gw.executions[0]

            new_id = await gw.correct_execution(original.exec_id, price=original.price + 0.5)
            assert new_id == original.exec_id[:-2] + "02"
            await wait_until(lambda: new_id in events)
            assert gw.executions[-1].corrects == original.exec_id
            assert gw.positions() == {"AAA": 100}
            expected_cash = 1_000_000 - 100 * (original.price + 0.5) - 1.0
            assert gw.cash_usd() == pytest.approx(expected_cash)
            again = await gw.correct_execution(new_id, shares=90)
            assert again.endswith(".03")
            assert gw.positions() == {"AAA": 90}
            ib.disconnect()

    asyncio.run(main())


def test_fill_order_by_hand_books_a_partial_fill_now() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw)
            trade = place(ib, MarketOrder("SELL", 100, orderRef="hand"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            exec_id = await gw.fill_order("hand", 40, 99.5)
            await wait_until(lambda: len(trade.fills) == 1)
            assert trade.fills[0].execution.execId == exec_id
            assert (trade.orderStatus.filled, trade.orderStatus.remaining) == (40, 60)
            assert gw.positions() == {"AAA": -40}
            with pytest.raises(FakeGatewayError):
                await gw.fill_order("nope", 1, 1.0)
            ib.disconnect()

    asyncio.run(main())


# ----------------------------------------------------------------------------- system and misc


def test_system_messages_current_time_and_account_summary() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw)
            codes = error_codes(ib)
            await gw.send_system_message(1100)
            await gw.send_system_message(1102)  # ib_async re-requests the account summary
            await wait_until(lambda: len(codes) == 2)
            assert codes[0] == (
                -1,
                1100,
                "Connectivity between IB and Trader Workstation has been lost.",
            )
            assert codes[1][1] == 1102
            assert codes[1][2].endswith("data maintained.")
            await wait_until(lambda: bool(ib.wrapper.acctSummary))
            summary = {v.tag: v.value for v in await ib.accountSummaryAsync("DU1234567")}
            assert summary["NetLiquidation"] == "1000000.00"
            assert await ib.reqCurrentTimeAsync() == gw.clock
            with pytest.raises(FakeGatewayError):
                await gw.send_system_message(4242)
            ib.disconnect()

    asyncio.run(main())


def test_unknown_and_malformed_messages_never_break_the_connection() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            ib = await connect(gw)
            ib.client.send(999, 1, "whatever")
            ib.reqMarketDataType(3)
            ib.client.send(20, "not-a-req-id")  # a known message the fake cannot parse
            await wait_until(lambda: gw.ignored_messages == [["999", "1", "whatever"]])
            await wait_until(lambda: len(gw.errors) == 1)
            assert "not-a-req-id" in gw.errors[0]
            trade = place(ib, MarketOrder("BUY", 1, orderRef="still-alive"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            gw.errors.clear()  # provoked on purpose; running_gateway asserts it is empty
            ib.disconnect()

    asyncio.run(main())


def test_threaded_gateway_serves_a_client_running_on_another_loop() -> None:
    with ThreadedGateway() as tg:
        tg.call(tg.gateway.add_bars, "AAA", AAA_BARS)
        tg.call(tg.gateway.set_clock, T0)

        async def client() -> None:
            ib = IB()
            await ib.connectAsync("127.0.0.1", tg.port, clientId=9, timeout=2)
            trade = place(ib, MarketOrder("BUY", 7, orderRef="threaded"))
            await wait_until(lambda: trade.orderStatus.status == "Submitted")
            await asyncio.to_thread(tg.call, tg.gateway.advance, 1)
            await wait_until(lambda: trade.orderStatus.status == "Filled")
            ib.disconnect()

        asyncio.run(client())
        orders = tg.call(lambda: [(o.order_ref, o.status) for o in tg.gateway.orders])
        assert orders == [("threaded", "Filled")]
        assert tg.call(tg.gateway.positions) == {"AAA": 7}
        assert tg.call(lambda: tg.gateway.errors) == []


KILLED_CLIENT = """
import asyncio, sys
from ib_async import IB, LimitOrder, Stock

async def main():
    ib = IB()
    await ib.connectAsync("127.0.0.1", int(sys.argv[1]), clientId=11, timeout=5)
    trade = ib.placeOrder(Stock("AAA", "SMART", "USD"), LimitOrder("BUY", 5, 1.0, orderRef="k1"))
    while trade.orderStatus.status != "Submitted":
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_sigkilled_client_frees_its_client_id_and_finds_its_order_again() -> None:
    with ThreadedGateway() as tg:
        tg.call(tg.gateway.add_bars, "AAA", AAA_BARS)
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_CLIENT, str(tg.port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            assert tg.call(lambda: tg.gateway.connected_client_ids) == [11]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

        async def restarted() -> None:
            await wait_until(lambda: tg.call(lambda: tg.gateway.connected_client_ids) == [])
            ib = IB()
            await ib.connectAsync("127.0.0.1", tg.port, clientId=11, timeout=2)
            assert [t.order.orderRef for t in ib.openTrades()] == ["k1"]
            ib.disconnect()

        asyncio.run(restarted())
        assert tg.call(lambda: tg.gateway.errors) == []


def test_decoder_error_guard_catches_the_real_decoders_errors(
    ib_decoder_guard: DecoderErrorGuard,  # noqa: F811
) -> None:
    decoder = IB().client.decoder
    with (
        pytest.raises(DecoderErrorsFoundError, match="Error handling fields"),
        DecoderErrorGuard(),
    ):
        decoder.interpret(["61", "3", "DU1234567"])  # position: 16 fields required
    with (
        pytest.raises(DecoderErrorsFoundError, match="Error for updateAccountValue"),
        DecoderErrorGuard(),
    ):
        decoder.interpret(["6", "2", "NetLiquidation"])  # too few fields for the wrapper
    with DecoderErrorGuard() as clean:
        decoder.interpret(["6", "2", "NetLiquidation", "1.0", "USD", "DU1234567"])
    assert clean.decoder_errors == []
    ib_decoder_guard.records.clear()  # the errors above were provoked on purpose
