"""A scripted fake IB Gateway: an asyncio TCP server on loopback speaking the TWS API to the real
ib_async client.

One ``FakeGateway`` holds a market (minute bars and a clock the test moves with ``advance``), an
order book that fills working orders per ``Script``, and the connections of any number of clients.
``ThreadedGateway`` runs one on its own event loop in a daemon thread, for tests whose client runs
in another loop or process. Wire layouts live in ``wire.py``, the book's pure logic in ``state.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, overload

from tests.fake_ib import wire
from tests.fake_ib.state import (
    CANCELLED,
    FILLED,
    ONE_MINUTE,
    WORKING,
    AggregatedBar,
    BarStore,
    Book,
    FakeExecution,
    FakeGatewayError,
    HistoricalQueryError,
    HistoricalRequestLog,
    MinuteBar,
    PlacedOrder,
    PositionState,
    aggregate,
    bar_size_minutes,
    five_second_bars,
    limit_allows,
    ny_date,
    parse_end_datetime,
    select_minutes,
    slice_target_qty,
    stable_con_id,
    utc,
)
from tests.fake_ib.wire import Field, OrderView, StockContract

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CLOCK = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
"""The clock before ``set_clock``: 09:30 New York on a trading day."""

SYSTEM_MESSAGES: dict[int, str] = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    1300: "TWS socket port has been reset and this connection is being dropped. Please reconnect on the new port",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2107: "HMDS data farm connection is inactive but should be available upon demand.ushmds",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
}
FARM_OK_CODES = (2104, 2106, 2158)
CLIENT_ID_IN_USE_TEXT = (
    "Unable to connect as the client id is already in use. Retry with a unique client id."
)
PACING_TEXT = (
    "Historical Market Data Service error message:Historical data request pacing violation"
)
NO_SECURITY_TEXT = "No security definition has been found for the request"


@dataclass
class Script:
    """Mutable scenario knobs, read at the moment they apply."""

    fill_mode: Literal["next_minute", "immediate"] = "next_minute"
    partial_fill_fractions: tuple[float, ...] = (1.0,)
    """Each order fills in these slices of its quantity: one slice per advanced minute
    (next_minute) or all at once (immediate); they sum to <= 1, the rest stays working."""
    reject_next_orders: int = 0
    """The next N placeOrder get error 201 "Order rejected - reason:..."."""
    reject_symbols: frozenset[str] = frozenset()
    cancel_reply: Literal["ack", "10147", "10148", "pending"] = "ack"
    """How cancels are answered. pending: IB is already cancelling the order on its own (a
    server-side cancel in progress): a cancel gets 10148 (state: PendingCancel), and the order is
    cancelled (orderStatus Cancelled, then 202) two advanced minutes after the first; it can
    still fill meanwhile."""
    commission_delay_s: float = 0.0
    """commissionReport sent this long after its execDetails."""
    duplicate_exec_details: bool = False
    """Send every live execDetails twice (same execId)."""
    client_ids_in_use: frozenset[int] = frozenset()
    """Connecting with these gets 326, then the socket closes."""
    refuse_connections: int = 0
    """Close the next N connections right after their handshake bytes arrive."""
    fills_while_disconnected: bool = True
    """Working orders keep filling on advance() while their client is away."""
    pacing_identical_window_s: float = 15.0
    pacing_burst_max: int = 6
    pacing_burst_window_s: float = 2.0
    pacing_max_requests: int = 60
    pacing_window_s: float = 600.0


@dataclass(eq=False)
class _Connection:
    """One client socket and its subscriptions."""

    conn_no: int
    writer: asyncio.StreamWriter
    server_version: int = 0
    client_id: int | None = None
    ready: bool = False
    closed: bool = False
    positions_subscribed: bool = False
    account_subscription: str | None = None
    multi_subscriptions: dict[int, str] = field(default_factory=dict)
    rt_bars: dict[int, str] = field(default_factory=dict)

    def send(self, fields: list[Field]) -> None:
        """Write one framed message unless the socket is closing."""
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(wire.frame(fields))

    def error(self, req_id: int, code: int, message: str) -> None:
        """Send error(4) in this connection's server-version layout."""
        self.send(wire.error_fields(req_id, code, message, self.server_version))


@dataclass(frozen=True)
class _ServedHistorical:
    """A served historical request, for the pacing windows."""

    mono_s: float
    key: tuple[str, ...]
    symbol: str


Handler = Callable[[_Connection, list[str]], None]


class FakeGateway:
    """A scripted fake IB Gateway for one test (see the module docstring)."""

    def __init__(
        self,
        *,
        accounts: tuple[str, ...] = ("DU1234567",),
        script: Script | None = None,
        start_cash_usd: float = 1_000_000.0,
        commission_per_share_usd: float = 0.005,
        commission_min_usd: float = 1.0,
        server_version_max: int = 178,
    ) -> None:
        if not accounts:
            raise FakeGatewayError("the gateway needs at least one account")
        self.accounts = tuple(accounts)
        self.script = script if script is not None else Script()
        self.server_version_max = server_version_max
        self.port = 0
        self.clock = DEFAULT_CLOCK
        self.book = Book(
            accounts=self.accounts,
            start_cash_usd=start_cash_usd,
            commission_per_share_usd=commission_per_share_usd,
            commission_min_usd=commission_min_usd,
        )
        self.historical_requests: list[HistoricalRequestLog] = []
        self.errors: list[str] = []
        """Exceptions raised while handling client messages (tests assert it stays empty)."""
        self.ignored_messages: list[list[str]] = []
        """Client messages the fake does not implement (logged and dropped)."""
        self.realtime_bar_requests: list[tuple[int, int, str]] = []
        """(clientId, reqId, symbol) of every reqRealTimeBars, in arrival order."""
        self.duplicate_order_ids: list[tuple[int, int]] = []
        """(clientId, orderId) of placeOrders refused with 103."""
        self.connection_count = 0
        """Handshakes that completed (nextValidId sent)."""
        self._bars = BarStore()
        self._served_historical: list[_ServedHistorical] = []
        self._connections: list[_Connection] = []
        self._conn_numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._pending_cancels: dict[int, int] = {}  # permId -> advanced minutes to the cancel
        self.cancel_requests: collections.Counter[int] = collections.Counter()  # by orderId
        self._handlers: dict[int, Handler] = {
            3: self._on_place_order,
            4: self._on_cancel_order,
            5: self._on_req_open_orders,
            6: self._on_req_account_updates,
            7: self._on_req_executions,
            8: self._on_req_ids,
            9: self._on_req_contract_details,
            15: self._accept,  # reqAutoOpenOrders
            16: self._on_req_all_open_orders,
            20: self._on_req_historical_data,
            25: self._accept,  # cancelHistoricalData
            49: self._on_req_current_time,
            50: self._on_req_real_time_bars,
            51: self._on_cancel_real_time_bars,
            58: self._on_req_global_cancel,
            59: self._accept,  # reqMarketDataType
            61: self._on_req_positions,
            62: self._on_req_account_summary,
            63: self._accept,  # cancelAccountSummary
            64: self._on_cancel_positions,
            71: self._accept,  # a repeated startApi
            76: self._on_req_account_updates_multi,
            77: self._on_cancel_account_updates_multi,
            99: self._on_req_completed_orders,
        }

    # ------------------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = ephemeral); returns the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info("fake IB gateway listening on %s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        """Stop listening, close every client socket and drop pending timers."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._server is not None:
            self._server.close()
        await self.drop_connections()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    # ------------------------------------------------------------------------- market

    def add_bars(self, symbol: str, bars: Iterable[MinuteBar]) -> None:
        """Add minute bars (past and future) of ``symbol``; the clock decides what is history."""
        self._bars.add(symbol, bars)

    def set_clock(self, ts: datetime) -> None:
        """Set the gateway's market time (tz-aware, on a whole minute: bars close on minutes)."""
        if ts.second or ts.microsecond:
            raise FakeGatewayError(f"clock {ts} is not on a whole minute")
        self.clock = utc(ts)

    async def advance(self, minutes: int = 1) -> None:
        """Move the clock minute by minute: send that minute's 5-second bars to realtime-bar
        subscribers, then fill working orders at the minute's open, then step the clock."""
        for _ in range(minutes):
            self._finish_pending_cancels()
            minute_close = self.clock + ONE_MINUTE
            self._publish_realtime_bars(minute_close)
            all_slices = self.script.fill_mode == "immediate"
            for order in list(self.orders):
                if not order.is_working:
                    continue
                if not self.script.fills_while_disconnected and (
                    self._connection_of(order.client_id) is None
                ):
                    continue
                bar = self._bars.closing_at(order.symbol, minute_close)
                if bar is not None and limit_allows(order, bar.open):
                    self._fill_slices(order, bar.open, all_slices=all_slices)
            self.clock = minute_close
            await asyncio.sleep(0)

    # ------------------------------------------------------------------------- failure injection

    async def drop_connections(self) -> None:
        """Close every client socket; orders stay and keep filling."""
        for conn in list(self._connections):
            self._close(conn)
        await asyncio.sleep(0)

    async def send_system_message(self, code: int, message: str | None = None) -> None:
        """Send error(4) with reqId -1 (1100/1101/1102/2104/...) to every connected client."""
        text = message if message is not None else SYSTEM_MESSAGES.get(code)
        if text is None:
            raise FakeGatewayError(f"no default text for system message {code}; pass message=")
        for conn in self._ready_connections():
            conn.error(-1, code, text)
        await asyncio.sleep(0)

    async def correct_execution(
        self, exec_id: str, *, shares: float | None = None, price: float | None = None
    ) -> str:
        """Supersede an execution by a correction ('<base>.02', ...): the book is rebuilt with
        the new shares/price; the client gets a live execDetails and commissionReport for it."""
        correction = self.book.correct(exec_id, shares=shares, price=price)
        order = self.book.order_by_perm_id(correction.perm_id)
        self._publish_execution(order, correction, with_status=False)
        self._publish_position(correction.account, correction.symbol)
        await asyncio.sleep(0)
        return correction.exec_id

    async def fill_order(self, order_ref: str, shares: float, price: float) -> str:
        """Fill the latest working order with ``order_ref`` now, by hand; returns the execId."""
        matches = [o for o in self.orders if o.order_ref == order_ref and o.is_working]
        if not matches:
            raise FakeGatewayError(f"no working order with orderRef {order_ref!r}")
        order = matches[-1]
        if shares <= 0 or shares > order.remaining_qty + 1e-9:
            raise FakeGatewayError(f"cannot fill {shares} of {order.remaining_qty} remaining")
        execution = self._execute(order, float(shares), float(price))
        await asyncio.sleep(0)
        return execution.exec_id

    # ------------------------------------------------------------------------- inspection

    @property
    def orders(self) -> list[PlacedOrder]:
        """Every order received (a modify updates its entry), in arrival order."""
        return self.book.orders

    @property
    def executions(self) -> list[FakeExecution]:
        """Every execution, corrections included (``corrects`` names the one replaced)."""
        return self.book.executions

    def positions(self, account: str | None = None) -> dict[str, float]:
        """Signed shares per symbol of ``account`` (default: the first), zeros dropped."""
        return {sym: pos.shares for sym, pos in self.book.held(account or self.accounts[0])}

    def cash_usd(self, account: str | None = None) -> float:
        """Cash of ``account`` (default: the first) after fills and commissions."""
        return self.book.cash_usd[account or self.accounts[0]]

    @property
    def realtime_subscriptions(self) -> list[tuple[int, int, str]]:
        """(clientId, reqId, symbol) of the live realtime-bar subscriptions."""
        return [
            (c.client_id or 0, req_id, symbol)
            for c in self._ready_connections()
            for req_id, symbol in c.rt_bars.items()
        ]

    @property
    def connected_client_ids(self) -> list[int]:
        """Client ids of the live, handshaken connections."""
        return [c.client_id for c in self._ready_connections() if c.client_id is not None]

    # ------------------------------------------------------------------------- connection plumbing

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(conn_no=next(self._conn_numbers), writer=writer)
        self._connections.append(conn)
        try:
            if await self._handshake(conn, reader):
                while not conn.closed:
                    header = await reader.readexactly(4)
                    payload = await reader.readexactly(wire.read_length(header))
                    self._dispatch(conn, wire.decode_payload(payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:
            self._record_error(f"connection {conn.conn_no}: {exc!r}")
        finally:
            self._close(conn)

    async def _handshake(self, conn: _Connection, reader: asyncio.StreamReader) -> bool:
        prefix = await reader.readexactly(4)
        if prefix != wire.API_PREFIX:
            self._record_error(f"connection {conn.conn_no}: bad API prefix {prefix!r}")
            return False
        header = await reader.readexactly(4)
        version_text = (await reader.readexactly(wire.read_length(header))).decode()
        if self.script.refuse_connections > 0:
            self.script.refuse_connections -= 1
            logger.info("refusing connection %d as scripted", conn.conn_no)
            return False
        _, client_max = wire.parse_version_range(version_text)
        conn.server_version = min(client_max, self.server_version_max)
        conn.send(wire.server_version_fields(conn.server_version, self.clock))
        return True

    def _dispatch(self, conn: _Connection, fields: list[str]) -> None:
        try:
            msg_id = int(fields[0])
            if not conn.ready:
                if msg_id == 71:
                    self._on_start_api(conn, fields)
                else:
                    self._ignore(conn, fields)
                return
            handler = self._handlers.get(msg_id)
            if handler is None:
                self._ignore(conn, fields)
            else:
                handler(conn, fields)
        except Exception as exc:
            self._record_error(f"client {conn.client_id} message {fields!r}: {exc!r}")

    def _on_start_api(self, conn: _Connection, fields: list[str]) -> None:
        client_id = int(fields[2])
        held = any(c.client_id == client_id for c in self._ready_connections())
        if held or client_id in self.script.client_ids_in_use:
            conn.error(-1, 326, CLIENT_ID_IN_USE_TEXT)
            self._close(conn)
            return
        conn.client_id, conn.ready = client_id, True
        self.connection_count += 1
        conn.send(wire.next_valid_id_fields(self.book.next_order_id(client_id)))
        conn.send(wire.managed_accounts_fields(self.accounts))
        for code in FARM_OK_CODES:
            conn.error(-1, code, SYSTEM_MESSAGES[code])

    def _close(self, conn: _Connection) -> None:
        if conn in self._connections:
            self._connections.remove(conn)
        if not conn.closed:
            conn.closed = True
            with contextlib.suppress(Exception):
                conn.writer.close()

    def _ready_connections(self) -> list[_Connection]:
        return [c for c in self._connections if c.ready and not c.closed]

    def _connection_of(self, client_id: int) -> _Connection | None:
        for conn in self._ready_connections():
            if conn.client_id == client_id:
                return conn
        return None

    def _record_error(self, message: str) -> None:
        logger.error("fake gateway: %s", message)
        self.errors.append(message)

    def _ignore(self, conn: _Connection, fields: list[str]) -> None:
        logger.info("fake gateway ignores message from client %s: %s", conn.client_id, fields)
        self.ignored_messages.append(list(fields))

    def _accept(self, conn: _Connection, fields: list[str]) -> None:
        """Requests that need no reply."""

    # ------------------------------------------------------------------------- helpers

    def _contract(self, symbol: str) -> StockContract:
        return StockContract(con_id=stable_con_id(symbol), symbol=symbol)

    def _symbol_for(self, con_id_text: str, symbol: str) -> str:
        if symbol:
            return symbol
        con_id = int(con_id_text or 0)
        for known in self._bars.symbols():
            if stable_con_id(known) == con_id:
                return known
        return ""

    def _mark_price(self, symbol: str, pos: PositionState) -> float:
        last = self._bars.last_close(symbol, self.clock)
        if last is not None:
            return last
        return self.book.last_fill_price.get(symbol, pos.avg_cost)

    def _order_view(self, order: PlacedOrder, status: str | None = None) -> OrderView:
        completed = order.completed_time
        if order.reject_reason:
            completed_status = f"Rejected: {order.reject_reason}"
        else:
            completed_status = {FILLED: "Filled", CANCELLED: "Cancelled by Trader"}.get(
                order.status, ""
            )
        return OrderView(
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            action=order.action,
            total_qty=order.total_qty,
            order_type=order.order_type,
            lmt_price=order.lmt_price,
            tif=order.tif,
            account=order.account,
            order_ref=order.order_ref,
            status=status or order.status,
            filled_qty=order.filled_qty,
            completed_time=wire.ib_datetime_text(completed) if completed else "",
            completed_status=completed_status,
        )

    def _send_order_state(self, conn: _Connection, order: PlacedOrder) -> None:
        """openOrder + orderStatus for ``order`` (as on acceptance and in open-order replies)."""
        conn.send(
            wire.open_order_fields(
                self._order_view(order), self._contract(order.symbol), conn.server_version
            )
        )
        self._send_order_status(conn, order)

    def _send_order_status(
        self, conn: _Connection, order: PlacedOrder, last_fill_price: float = 0.0
    ) -> None:
        conn.send(
            wire.order_status_fields(
                order_id=order.order_id,
                status=order.status,
                filled=order.filled_qty,
                remaining=0.0 if order.status == FILLED else order.remaining_qty,
                avg_fill_price=order.avg_price,
                perm_id=order.perm_id,
                last_fill_price=last_fill_price or order.avg_price,
                client_id=order.client_id,
            )
        )

    # ------------------------------------------------------------------------- orders

    def _on_place_order(self, conn: _Connection, f: list[str]) -> None:
        client_id = conn.client_id if conn.client_id is not None else 0
        order_id = int(f[1])
        lmt_price = float(f[19]) if f[19] else None
        existing = self.book.find_order(client_id, order_id)
        if existing is not None and existing.is_working:
            existing.total_qty, existing.lmt_price = float(f[17]), lmt_price
            existing.modify_count += 1
            self._send_order_state(conn, existing)
            return
        if existing is not None or not self.book.is_fresh_order_id(client_id, order_id):
            self.duplicate_order_ids.append((client_id, order_id))
            conn.error(order_id, 103, "Duplicate order id")
            return
        order = self.book.add_order(
            PlacedOrder(
                client_id=client_id,
                order_id=order_id,
                perm_id=0,
                symbol=self._symbol_for(f[2], f[3]),
                action=f[16],
                total_qty=float(f[17] or 0),
                order_type=f[18],
                order_ref=f[26],
                account=f[23] or self.accounts[0],
                status=WORKING,
                lmt_price=lmt_price,
                tif=f[21] or "DAY",
            )
        )
        code, reason = self._rejection(order, sec_type=f[4], currency=f[11])
        if code:
            self.book.finish(order, CANCELLED, self.clock, reason)
            conn.error(order_id, code, reason)
            return
        self._send_order_state(conn, order)
        if self.script.fill_mode == "immediate":
            price = self._immediate_price(order.symbol)
            if price is not None and limit_allows(order, price):
                self._fill_slices(order, price, all_slices=True)

    def _rejection(self, order: PlacedOrder, *, sec_type: str, currency: str) -> tuple[int, str]:
        """(error code, text) if the order is refused, else (0, "")."""
        if order.symbol not in self._bars.symbols() or sec_type != "STK" or currency != "USD":
            return 200, NO_SECURITY_TEXT
        if order.account not in self.accounts:
            return 201, f"Order rejected - reason:Invalid account code {order.account}"
        if order.action not in ("BUY", "SELL") or order.total_qty <= 0:
            return 201, "Order rejected - reason:Invalid action or quantity"
        if order.order_type not in ("MKT", "LMT") or (
            order.order_type == "LMT" and order.lmt_price is None
        ):
            return 201, f"Order rejected - reason:Unsupported order type {order.order_type}"
        if self.script.reject_next_orders > 0:
            self.script.reject_next_orders -= 1
            return 201, "Order rejected - reason:Scripted rejection by the fake gateway"
        if order.symbol in self.script.reject_symbols:
            return 201, f"Order rejected - reason:Trading in {order.symbol} is restricted"
        return 0, ""

    def _immediate_price(self, symbol: str) -> float | None:
        """Price now: the open of the minute starting at the clock, else the last close."""
        bar = self._bars.closing_at(symbol, self.clock + ONE_MINUTE)
        return bar.open if bar is not None else self._bars.last_close(symbol, self.clock)

    def _fill_slices(self, order: PlacedOrder, price: float, *, all_slices: bool) -> None:
        fractions = self.script.partial_fill_fractions
        while order.is_working and order.slices_done < len(fractions):
            target = slice_target_qty(order.total_qty, fractions, order.slices_done)
            order.slices_done += 1
            shares = min(target, order.total_qty) - order.filled_qty
            if shares > 1e-9:
                self._execute(order, shares, price)
            if not all_slices:
                break

    def _execute(self, order: PlacedOrder, shares: float, price: float) -> FakeExecution:
        """Book one execution of ``order`` at the clock and tell whoever should know."""
        execution = self.book.execute(order, shares, price, self.clock)
        self._publish_execution(order, execution, with_status=True)
        self._publish_position(order.account, order.symbol)
        return execution

    def _execution_view(self, e: FakeExecution) -> wire.ExecutionView:
        return wire.ExecutionView(
            order_id=e.order_id,
            client_id=e.client_id,
            perm_id=e.perm_id,
            exec_id=e.exec_id,
            time=e.time,
            account=e.account,
            side=e.side,
            shares=e.shares,
            price=e.price,
            cum_qty=e.cum_qty,
            avg_price=e.avg_price,
            order_ref=e.order_ref,
        )

    def _publish_execution(
        self, order: PlacedOrder, execution: FakeExecution, *, with_status: bool
    ) -> None:
        """Live execDetails (+ orderStatus) and, maybe later, the commissionReport; nothing if
        the owning client is away (it learns the fill from reqExecutions)."""
        conn = self._connection_of(order.client_id)
        if conn is None:
            return
        details = wire.exec_details_fields(
            -1, self._execution_view(execution), self._contract(order.symbol), conn.server_version
        )
        conn.send(details)
        if self.script.duplicate_exec_details:
            conn.send(details)
        if with_status:
            self._send_order_status(conn, order, last_fill_price=execution.price)
        delay_s = self.script.commission_delay_s
        if delay_s <= 0:
            self._send_commission(order.client_id, execution)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._send_commission(order.client_id, execution)

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    def _send_commission(self, client_id: int, execution: FakeExecution) -> None:
        conn = self._connection_of(client_id)
        if conn is not None:
            conn.send(
                wire.commission_report_fields(
                    execution.exec_id, execution.commission_usd, execution.realized_pnl_usd
                )
            )

    def _on_cancel_order(self, conn: _Connection, f: list[str]) -> None:
        order_id = int(f[2])
        self.cancel_requests[order_id] += 1
        reply = self.script.cancel_reply
        order = self.book.find_order(conn.client_id or 0, order_id)
        if reply == "pending" and order is not None and order.is_working:
            self._pending_cancels.setdefault(order.perm_id, 2)
            conn.error(
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                "state: PendingCancel.",
            )
            return
        if reply == "10147" or order is None:
            conn.error(
                order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found."
            )
        elif reply == "10148" or not order.is_working:
            state = FILLED if reply == "10148" else order.status
            conn.error(
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}.",
            )
        else:
            self._cancel(order)

    def _finish_pending_cancels(self) -> None:
        """Count down the PendingCancel orders (``cancel_reply="pending"``); cancel the due."""
        for perm_id, minutes_left in list(self._pending_cancels.items()):
            order = self.book.order_by_perm_id(perm_id)
            if not order.is_working:
                del self._pending_cancels[perm_id]  # filled meanwhile
            elif minutes_left <= 1:
                del self._pending_cancels[perm_id]
                self._cancel(order)
            else:
                self._pending_cancels[perm_id] = minutes_left - 1

    def _cancel(self, order: PlacedOrder) -> None:
        self.book.finish(order, CANCELLED, self.clock)
        conn = self._connection_of(order.client_id)
        if conn is not None:
            self._send_order_status(conn, order)
            conn.error(order.order_id, 202, "Order Canceled - reason:")

    def _on_req_global_cancel(self, conn: _Connection, f: list[str]) -> None:
        for order in list(self.orders):
            if order.is_working:
                self._cancel(order)

    def _on_req_open_orders(self, conn: _Connection, f: list[str]) -> None:
        for order in self.orders:
            if order.is_working and order.client_id == conn.client_id:
                self._send_order_state(conn, order)
        conn.send(wire.open_order_end_fields())

    def _on_req_all_open_orders(self, conn: _Connection, f: list[str]) -> None:
        for order in self.orders:
            if order.is_working:
                self._send_order_state(conn, order)
        conn.send(wire.open_order_end_fields())

    def _on_req_completed_orders(self, conn: _Connection, f: list[str]) -> None:
        for order in self.orders:
            if not order.is_working:
                conn.send(
                    wire.completed_order_fields(
                        self._order_view(order), self._contract(order.symbol), conn.server_version
                    )
                )
        conn.send(wire.completed_orders_end_fields())

    def _on_req_executions(self, conn: _Connection, f: list[str]) -> None:
        req_id = int(f[2])
        matches = self.book.executions_matching(
            day=ny_date(self.clock),
            client_id=int(f[3] or 0),
            account=f[4],
            since=parse_end_datetime(f[5], self.clock) if f[5] else None,
            symbol=f[6],
            side=f[9],
        )
        for e in matches:
            conn.send(
                wire.exec_details_fields(
                    req_id, self._execution_view(e), self._contract(e.symbol), conn.server_version
                )
            )
        for e in matches:
            conn.send(
                wire.commission_report_fields(e.exec_id, e.commission_usd, e.realized_pnl_usd)
            )
        conn.send(wire.exec_details_end_fields(req_id))

    def _on_req_ids(self, conn: _Connection, f: list[str]) -> None:
        conn.send(wire.next_valid_id_fields(self.book.next_order_id(conn.client_id or 0)))

    # ------------------------------------------------------------------------- account

    def _portfolio_fields(self, account: str, symbol: str, pos: PositionState) -> list[Field]:
        mark = self._mark_price(symbol, pos)
        return wire.update_portfolio_fields(
            contract=self._contract(symbol),
            position=pos.shares,
            market_price=mark,
            market_value=pos.shares * mark,
            average_cost=pos.avg_cost,
            unrealized_pnl=(mark - pos.avg_cost) * pos.shares,
            realized_pnl=pos.realized_pnl_usd,
            account=account,
        )

    def _send_account_values(self, conn: _Connection, account: str) -> None:
        for key, value, currency in self.book.account_values(account, self._mark_price):
            conn.send(wire.update_account_value_fields(key, value, currency, account))

    def _publish_position(self, account: str, symbol: str) -> None:
        """position to reqPositions subscribers, portfolio and values to account subscribers."""
        pos = self.book.positions.get((account, symbol), PositionState())
        contract = self._contract(symbol)
        for conn in self._ready_connections():
            if conn.positions_subscribed:
                conn.send(wire.position_fields(account, contract, pos.shares, pos.avg_cost))
            if conn.account_subscription == account:
                conn.send(self._portfolio_fields(account, symbol, pos))
                self._send_account_values(conn, account)
            for req_id, acct in conn.multi_subscriptions.items():
                if acct == account:
                    self._send_account_multi(conn, req_id, account)

    def _on_req_positions(self, conn: _Connection, f: list[str]) -> None:
        conn.positions_subscribed = True
        for account in self.accounts:
            for symbol, pos in self.book.held(account):
                conn.send(
                    wire.position_fields(account, self._contract(symbol), pos.shares, pos.avg_cost)
                )
        conn.send(wire.position_end_fields())

    def _on_cancel_positions(self, conn: _Connection, f: list[str]) -> None:
        conn.positions_subscribed = False

    def _on_req_account_updates(self, conn: _Connection, f: list[str]) -> None:
        subscribe, account = f[2] == "1", f[3] or self.accounts[0]
        if not subscribe:
            conn.account_subscription = None
            return
        if account not in self.accounts:
            conn.error(
                -1, 321, f"Error validating request:-'bB' : cause - Invalid account {account}"
            )
            return
        conn.account_subscription = account
        self._send_account_values(conn, account)
        for symbol, pos in self.book.held(account):
            conn.send(self._portfolio_fields(account, symbol, pos))
        conn.send(wire.update_account_time_fields(self.clock.strftime("%H:%M")))
        conn.send(wire.account_download_end_fields(account))

    def _send_account_multi(self, conn: _Connection, req_id: int, account: str) -> None:
        for key, value, currency in self.book.account_values(account, self._mark_price):
            conn.send(wire.account_update_multi_fields(req_id, account, "", key, value, currency))

    def _on_req_account_updates_multi(self, conn: _Connection, f: list[str]) -> None:
        req_id, account = int(f[2]), f[3]
        for acct in self.accounts if account in ("", "All") else [account]:
            if acct in self.accounts:
                conn.multi_subscriptions[req_id] = acct
                self._send_account_multi(conn, req_id, acct)
        conn.send(wire.account_update_multi_end_fields(req_id))

    def _on_cancel_account_updates_multi(self, conn: _Connection, f: list[str]) -> None:
        conn.multi_subscriptions.pop(int(f[2]), None)

    def _on_req_account_summary(self, conn: _Connection, f: list[str]) -> None:
        req_id, tags = int(f[2]), set(f[4].split(","))
        for account in self.accounts:
            for key, value, currency in self.book.account_values(account, self._mark_price):
                if key in tags:
                    conn.send(wire.account_summary_fields(req_id, account, key, value, currency))
        conn.send(wire.account_summary_end_fields(req_id))

    def _on_req_current_time(self, conn: _Connection, f: list[str]) -> None:
        conn.send(wire.current_time_fields(wire.epoch_seconds(self.clock)))

    # ------------------------------------------------------------------------- market data

    def _on_req_contract_details(self, conn: _Connection, f: list[str]) -> None:
        req_id = int(f[2])
        symbol = self._symbol_for(f[3], f[4])
        sec_type, currency = f[5], f[12]
        if symbol in self._bars.symbols() and sec_type in ("STK", "") and currency in ("USD", ""):
            conn.send(wire.contract_details_fields(req_id, self._contract(symbol)))
            conn.send(wire.contract_details_end_fields(req_id))
        else:
            conn.error(req_id, 200, NO_SECURITY_TEXT)

    def _pacing_violation(self, key: tuple[str, ...], symbol: str, now_s: float) -> bool:
        s = self.script
        served = self._served_historical
        if any(r.key == key and now_s - r.mono_s < s.pacing_identical_window_s for r in served):
            return True
        burst = [
            r for r in served if r.symbol == symbol and now_s - r.mono_s < s.pacing_burst_window_s
        ]
        if len(burst) >= s.pacing_burst_max:
            return True
        return (
            sum(1 for r in served if now_s - r.mono_s < s.pacing_window_s) >= s.pacing_max_requests
        )

    def _on_req_historical_data(self, conn: _Connection, f: list[str]) -> None:
        req_id = int(f[1])
        symbol = self._symbol_for(f[2], f[3])
        end_text, bar_size, duration = f[15], f[16], f[17]
        use_rth, what_to_show, format_date = f[18] == "1", f[19], int(f[20] or 1)
        now_s = time.monotonic()
        key = (symbol, end_text, bar_size, duration, f[18], what_to_show, f[20])
        refused = self._pacing_violation(key, symbol, now_s)
        log = HistoricalRequestLog(
            wall_time_s=now_s,
            client_id=conn.client_id or 0,
            req_id=req_id,
            symbol=symbol,
            bar_size=bar_size,
            duration=duration,
            end=end_text,
            what_to_show=what_to_show,
            use_rth=use_rth,
            format_date=format_date,
            refused_pacing=refused,
        )
        if refused:
            self.historical_requests.append(log)
            conn.error(req_id, 162, PACING_TEXT)
            return
        self._served_historical.append(_ServedHistorical(now_s, key, symbol))
        if symbol not in self._bars.symbols():
            self.historical_requests.append(log)
            conn.error(req_id, 200, NO_SECURITY_TEXT)
            return
        try:
            end = min(parse_end_datetime(end_text, self.clock), self.clock)
            minutes = bar_size_minutes(bar_size)
            selected = select_minutes(
                self._bars.up_to(symbol, end), end=end, duration=duration, use_rth=use_rth
            )
            bars = aggregate(selected, minutes)
        except (HistoricalQueryError, ValueError) as exc:
            self.historical_requests.append(log)
            conn.error(req_id, 162, f"Historical Market Data Service error message:{exc}")
            return
        self.historical_requests.append(replace(log, bars_returned=len(bars)))
        if not bars:
            conn.error(
                req_id,
                162,
                f"Historical Market Data Service error message:HMDS query returned no data: "
                f"{symbol}@SMART {what_to_show.title()}",
            )
            return
        rows = [self._historical_row(b, format_date) for b in bars]
        conn.send(
            wire.historical_data_fields(
                req_id, wire.ib_datetime_text(bars[0].start), wire.ib_datetime_text(end), rows
            )
        )

    @staticmethod
    def _historical_row(bar: AggregatedBar, format_date: int) -> wire.HistoricalRow:
        if bar.is_daily:
            date_text = ny_date(bar.start).strftime("%Y%m%d")
        elif format_date == 2:
            date_text = str(wire.epoch_seconds(bar.start))
        else:
            date_text = wire.ib_datetime_text(bar.start)
        return wire.HistoricalRow(
            date=date_text,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            wap=bar.wap,
            bar_count=bar.count,
        )

    def _on_req_real_time_bars(self, conn: _Connection, f: list[str]) -> None:
        req_id = int(f[2])
        symbol = self._symbol_for(f[3], f[4])
        if symbol not in self._bars.symbols():
            conn.error(req_id, 200, NO_SECURITY_TEXT)
            return
        conn.rt_bars[req_id] = symbol
        self.realtime_bar_requests.append((conn.client_id or 0, req_id, symbol))

    def _on_cancel_real_time_bars(self, conn: _Connection, f: list[str]) -> None:
        conn.rt_bars.pop(int(f[2]), None)

    def _publish_realtime_bars(self, minute_close: datetime) -> None:
        for conn in self._ready_connections():
            for req_id, symbol in list(conn.rt_bars.items()):
                bar = self._bars.closing_at(symbol, minute_close)
                if bar is None:
                    continue
                for start_s, o, h, low, c, volume in five_second_bars(bar):
                    conn.send(
                        wire.realtime_bar_fields(
                            req_id,
                            time_epoch_s=start_s,
                            open_=o,
                            high=h,
                            low=low,
                            close=c,
                            volume=volume,
                            wap=(h + low + c) / 3,
                            count=max(1, int(volume // 100)),
                        )
                    )


class ThreadedGateway:
    """A ``FakeGateway`` on its own event loop in a daemon thread (a context manager)."""

    def __init__(self, **gateway_kwargs: Any) -> None:
        self.gateway = FakeGateway(**gateway_kwargs)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-ib-gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self) -> int:
        """Start the loop thread and the server; returns the port."""
        self._thread.start()
        self.port = self.call(self.gateway.start)
        return self.port

    def stop(self) -> None:
        """Stop the server, finish the loop's tasks, stop the loop and join the thread."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self._shutdown)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    async def _shutdown(self) -> None:
        await self.gateway.stop()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def __enter__(self) -> ThreadedGateway:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @overload
    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T: ...

    @overload
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the gateway loop (awaiting it if it returns an
        awaitable) and return its result; raises TimeoutError after 30 s."""

        async def run() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30.0)
