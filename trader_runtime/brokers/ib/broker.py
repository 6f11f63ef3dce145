"""The ``ibkr`` broker: the live engine's ``Broker`` on an ib_async connection.

- Orders are DAY market orders whose ``orderRef`` is the engine's client order id (which carries
  the decision id). Orders are found by ``orderRef`` in ib_async's current trades (open and
  completed, refreshed on every connect), never through a ``Trade`` object kept across a
  reconnect: ib_async resets its state when the socket drops.
- Executions are the source of truth for fills. Each goes through ``ExecutionBook``: booked once
  per execId (duplicates and replays ignored, a correction replaces the fill it corrects), held
  until its commission report arrives or ``commission_wait_s`` passes (then IBKR's fixed schedule
  estimates it and the real figure is journaled when it comes).
- A final order status is handed to the engine only once the executions of its filled quantity
  have been handed over, so no fill arrives for an order the engine has closed.
- Order statuses: a reject (201) is ``rejected``; a cancel that races a fill (10147/10148) is not
  final, the executions decide (ib_async marks such an order Cancelled on its own, so the status
  is read with the error that set it); IB's 202 ("Order Canceled") ends an order as cancelled
  whatever came before it.
- What the engine does not finish within a bar: a working order still open one bar after the bar
  it was sent for is cancelled (the paper broker's "one bar" rule, with a bar of grace for fills in
  flight), once: IB answers every cancel, with a status or an error.
- While IB reports lost connectivity (1100) or the socket is down, new orders are refused with a
  ``BrokerError`` (the engine journals them as rejected); after a reconnect the broker books every
  execution it missed and resolves every order it was tracking.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ib_async import Fill as IbFill
from ib_async import MarketOrder, Trade

from trader_runtime.brokers.base import (
    AccountState,
    BarQuote,
    BrokerError,
    Execution,
    OrderRequest,
    OrderStatus,
    Reconciliation,
)
from trader_runtime.brokers.ib.config import IbConfig
from trader_runtime.brokers.ib.connection import IbConnection
from trader_runtime.brokers.ib.executions import ExecutionBook
from trader_runtime.brokers.ib.mapping import (
    ORDER_CANCELLED_CODE,
    REJECT_CODES,
    RawExecution,
    order_spec,
    order_state,
    to_execution,
)
from trader_runtime.execution.costs import CostModel


@dataclass(slots=True)
class _Track:
    """What the broker knows of one of the engine's orders (``qty`` signed shares)."""

    ref: str
    request: OrderRequest | None
    symbol: str
    qty: float
    order_id: int = 0
    perm_id: int = 0
    released_qty: float = 0.0
    final: OrderStatus | None = None
    reported: bool = False
    final_at_s: float = 0.0
    cancel_sent: bool = False  # the one-bar rule asked IB to cancel it (once: IB answers)

    def status(
        self, state: str = "submitted", filled_shares: float = 0.0, reason: str | None = None
    ) -> OrderStatus:
        """Our view of the order; ``filled_shares`` unsigned, as IB reports it."""
        sign = 1.0 if self.qty > 0 else -1.0
        return OrderStatus(
            self.ref,
            str(self.perm_id or self.order_id),
            self.symbol,
            self.qty,
            state,  # type: ignore[arg-type]
            sign * filled_shares,
            reason,
        )


class IbBroker:
    """Interactive Brokers through ib_async (see the module docstring)."""

    def __init__(
        self,
        config: IbConfig,
        *,
        costs: CostModel,
        connection: IbConnection | None = None,
        final_wait_s: float = 30.0,
    ) -> None:
        self.config = config
        self.costs = costs
        self.conn = connection or IbConnection(config)
        self.book = ExecutionBook(commission_wait_s=config.commission_wait_s)
        self.final_wait_s = final_wait_s
        self._orders: dict[str, _Track] = {}  # every order of the session, by reference
        self._working: dict[str, _Track] = {}  # no final status yet
        self._unreported: dict[str, _Track] = {}  # final, not yet handed to the engine
        self._by_order_id: dict[int, _Track] = {}
        self._errors: dict[int, tuple[int, str]] = {}
        self._previous_bar: datetime | None = None
        self._subscribed = False

    @property
    def name(self) -> str:
        return "ibkr"

    @property
    def ib(self) -> Any:
        return self.conn.ib

    # -- connection ----------------------------------------------------------------------------

    async def connect(self) -> AccountState:
        if not self.conn.connected:
            await self.conn.connect()
        if not self._subscribed:
            ib = self.ib
            ib.execDetailsEvent += self._on_exec
            ib.commissionReportEvent += self._on_commission
            ib.orderStatusEvent += self._on_status
            ib.errorEvent += self._on_error
            self.conn.on_reconnected(self._resync)
            self._subscribed = True
        return self._account()

    async def close(self) -> None:
        await self.conn.close()

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        return self.conn.drain_events()

    def _account(self) -> AccountState:
        account = self.conn.account
        positions: dict[str, float] = {}
        avg_cost: dict[str, float] = {}
        for p in self.ib.positions(account):
            if p.position != 0:
                positions[p.contract.symbol] = float(p.position)
                if 0.0 < p.avgCost < math.inf:  # per share for stocks, commissions included
                    avg_cost[p.contract.symbol] = float(p.avgCost)
        cash = 0.0
        for value in self.ib.accountValues(account):
            if value.tag == "TotalCashValue" and value.currency in ("USD", "BASE"):
                cash = float(value.value)
                if value.currency == "USD":
                    break
        return AccountState(account, account.startswith("D"), cash, positions, avg_cost)

    # -- orders --------------------------------------------------------------------------------

    def _trade_of(self, client_order_id: str) -> Trade | None:
        """ib_async's current trade for an order reference (open or completed); the newest."""
        found = None
        for trade in self.ib.trades():
            if trade.order.orderRef == client_order_id:
                found = trade
        return found

    async def submit(self, order: OrderRequest) -> OrderStatus:
        known = self._orders.get(order.client_order_id)
        if known is not None:
            return known.final or known.status()
        trade = self._trade_of(order.client_order_id)
        if trade is not None:  # sent before a restart: never twice
            track = self._track_trade(trade, request=order)
            self._on_status(trade)
            return track.final or track.status()
        if not self.conn.connected or self.conn.paused:
            raise BrokerError("IB connectivity is lost: new orders are paused until it returns")
        contract = await self.conn.stock(order.symbol)
        spec = order_spec(order, self.conn.account)
        ib_order = MarketOrder(
            spec.action,
            spec.total_quantity,
            orderRef=spec.order_ref,
            account=spec.account,
            tif=spec.tif,
        )
        trade = self.ib.placeOrder(contract, ib_order)
        return self._track_trade(trade, request=order).status()

    def _track_trade(self, trade: Trade, *, request: OrderRequest | None = None) -> _Track:
        ref = trade.order.orderRef
        track = self._orders.get(ref)
        if track is None:
            sign = 1.0 if trade.order.action == "BUY" else -1.0
            qty = sign * float(trade.order.totalQuantity)
            track = _Track(ref, request, trade.contract.symbol, qty)
            self._orders[ref] = self._working[ref] = track
        if request is not None and track.request is None:
            track.request = request
        track.order_id = int(trade.order.orderId or track.order_id)
        track.perm_id = int(trade.order.permId or track.perm_id)
        self._by_order_id[track.order_id] = track
        return track

    async def cancel(self, client_order_id: str) -> OrderStatus | None:
        track = self._orders.get(client_order_id)
        if track is not None and track.final is not None:
            return track.final
        trade = self._trade_of(client_order_id)
        if trade is None or trade.isDone() or not self.conn.connected:
            return None
        self.ib.cancelOrder(trade.order)
        return None

    async def on_bar(self, ts: datetime, quotes: Mapping[str, BarQuote]) -> None:
        """Cancel what is still working one bar after the bar it was sent for."""
        previous, self._previous_bar = self._previous_bar, ts
        if previous is None:
            return
        for ref, track in list(self._working.items()):
            if track.cancel_sent:
                continue  # IB answers a cancel (a status, or 10147/10148): not sent again
            if track.request is not None and track.request.ts < previous:
                track.cancel_sent = True
                await self.cancel(ref)

    # -- events from ib_async ------------------------------------------------------------------

    def _raw(self, fill: IbFill) -> RawExecution:
        ex = fill.execution
        report = fill.commissionReport
        commission = (
            float(report.commission) if report is not None and report.execId == ex.execId else None
        )
        return RawExecution(
            exec_id=ex.execId,
            order_ref=ex.orderRef,
            perm_id=int(ex.permId),
            symbol=fill.contract.symbol,
            side=ex.side,
            shares=float(ex.shares),
            price=float(ex.price),
            time=fill.time,
            commission_usd=commission,
        )

    def _reference(self, order_ref: str, price: float) -> float:
        track = self._orders.get(order_ref)
        if track is not None and track.request is not None:
            return track.request.reference_usd
        return price

    def _add_fill(self, fill: IbFill) -> None:
        ex = fill.execution
        if not ex.orderRef:
            return  # not one of ours (manual TWS orders carry no reference)
        self.book.add(
            self._raw(fill),
            reference_usd=self._reference(ex.orderRef, float(ex.price)),
            now_s=time.monotonic(),
        )

    def _on_exec(self, trade: Trade, fill: IbFill) -> None:
        self._track_trade(trade)
        self._add_fill(fill)

    def _on_commission(self, trade: Trade, fill: IbFill, report: Any) -> None:
        self.book.attach_commission(report.execId, float(report.commission), now_s=time.monotonic())

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if req_id <= 0:
            return
        self._errors[req_id] = (code, message)
        track = self._by_order_id.get(req_id)
        if code in REJECT_CODES and track is not None:
            # ib_async may report the order Cancelled just before the error: a reject wins
            undecided = track.final is None or (
                track.final.state == "cancelled" and not track.reported
            )
            if undecided:
                self._finish(track, "rejected", 0.0, f"IB {code}: {message}")
        elif code == ORDER_CANCELLED_CODE and track is not None and track.final is None:
            # IB's word that the order is cancelled. After a cancel race (10148 while the order
            # was PendingCancel, say) the Cancelled status itself is not final for us (ib_async
            # marks raced orders Cancelled on its own) and may not even reach us (the same
            # fields as ib_async's own Cancelled): this is what ends the order.
            trade = self._trade_of(track.ref)
            filled = float(trade.orderStatus.filled) if trade is not None else 0.0
            self._finish(track, "cancelled", filled, f"IB {code}: {message}")

    def _on_status(self, trade: Trade) -> None:
        ref = trade.order.orderRef
        if not ref or ref not in self._orders:
            return
        track = self._track_trade(trade)
        if track.final is not None:
            return
        code, message = self._error_of(trade, track)
        state = order_state(trade.orderStatus.status, error_code=code)
        if state is None or state == "submitted":
            return
        self._finish(track, state, float(trade.orderStatus.filled), message or None)

    def _error_of(self, trade: Trade, track: _Track) -> tuple[int | None, str]:
        """The error behind the trade's current status: ib_async's own log entry when an error
        set it (ib_async emits the status before the error event, so ``_errors`` does not have
        it yet), else the last error IB sent for the order."""
        if trade.log and trade.log[-1].errorCode:
            last = trade.log[-1]
            return last.errorCode, last.message
        return self._errors.get(track.order_id, (None, ""))

    def _finish(self, track: _Track, state: str, filled_shares: float, reason: str | None) -> None:
        track.final = track.status(state, filled_shares, reason)
        track.final_at_s = time.monotonic()
        self._working.pop(track.ref, None)
        self._unreported[track.ref] = track

    def _reported(self, track: _Track) -> None:
        track.reported = True
        self._working.pop(track.ref, None)
        self._unreported.pop(track.ref, None)

    # -- to the engine -------------------------------------------------------------------------

    def _estimate_commission(self, qty: float, price: float) -> float:
        return float(self.costs.commission(qty, price))

    def drain(self) -> tuple[list[Execution], list[OrderStatus]]:
        now = time.monotonic()
        executions = self.book.release(now, estimate_commission=self._estimate_commission)
        for e in executions:
            track = self._orders.get(e.client_order_id)
            if track is not None:
                track.released_qty += e.qty
        finals = []
        for track in list(self._unreported.values()):
            final = track.final
            if final is None:
                continue
            complete = abs(track.released_qty - final.filled_qty) < 1e-9
            if complete or now - track.final_at_s > self.final_wait_s:
                finals.append(final)
                self._reported(track)
        return executions, finals

    def late_commissions(self) -> list[tuple[str, float]]:
        """Real commissions that came after their execution was booked with an estimate."""
        return self.book.late_commissions()

    async def reconcile(self) -> Reconciliation:
        """Every execution of the day (by execId), every order by reference, the account."""
        fills = await self.ib.reqExecutionsAsync()
        executions: list[Execution] = []
        for fill in fills:
            ex = fill.execution
            if not ex.orderRef:
                continue
            raw = self._raw(fill)
            commission = raw.commission_usd
            if commission is None:
                commission = self._estimate_commission(raw.shares, raw.price)
            executions.append(
                to_execution(
                    raw,
                    reference_usd=self._reference(ex.orderRef, raw.price),
                    commission_usd=commission,
                )
            )
        self.book.mark_booked({e.exec_id for e in executions})
        orders: list[OrderStatus] = []
        for trade in self.ib.trades():
            ref = trade.order.orderRef
            if not ref:
                continue
            track = self._track_trade(trade)
            code = self._error_of(trade, track)[0]
            state = order_state(trade.orderStatus.status, error_code=code) or "submitted"
            orders.append(track.status(state, float(trade.orderStatus.filled)))
            if state != "submitted":
                track.final = orders[-1]
                self._reported(track)
        return Reconciliation(executions, orders, self._account())

    async def _resync(self) -> None:
        """After a reconnect: book missed executions, resolve every tracked order."""
        await self.ib.reqExecutionsAsync()
        for fill in self.ib.fills():
            self._add_fill(fill)
        for ref, track in list(self._working.items()):
            track.cancel_sent = False  # a cancel in flight when the socket dropped may be lost
            trade = self._trade_of(ref)
            if trade is None:
                self._finish(track, "cancelled", 0.0, "unknown to IB after the reconnect")
                continue
            self._on_status(trade)

    async def settle(self) -> None:
        """Wait up to ``order_ack_timeout_s`` for working orders to report."""
        deadline = time.monotonic() + self.config.order_ack_timeout_s
        while time.monotonic() < deadline:
            if not self._working:
                return
            await asyncio.sleep(0.05)
