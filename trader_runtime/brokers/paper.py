"""The paper broker: fills with the backtest's own fill and cost model; survives a restart.

An order submitted after a bar's close fills at the next bar's open through
``execution.fills.simulate_fill`` (participation cap, half-spread, square-root impact, IBKR
commissions), exactly as the backtest fills a child; what the cap leaves is cancelled. The account
(cash, positions, every order and execution) is written atomically to a JSON file after each
change, so a restarted runtime finds the broker where it left it. A bar that finds no order
working changes nothing a restart needs, so it writes nothing (the write, with its ``fsync``,
was 3 ms of every bar before the engine saw it): its time and quotes are kept in memory and
written with the next change.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from trader_runtime.brokers.base import (
    AccountState,
    BarQuote,
    BrokerError,
    Execution,
    OrderRequest,
    OrderStatus,
    Reconciliation,
)
from trader_runtime.execution.costs import CostModel, Fill
from trader_runtime.execution.fills import simulate_fill
from trader_runtime.trading.book import average_entry

PAPER_ACCOUNT = "DU0000000"


class PaperBroker:
    """A simulated account of ``initial_cash_usd`` persisted at ``state_path``."""

    def __init__(
        self,
        state_path: Path,
        *,
        costs: CostModel,
        initial_cash_usd: float,
        fractional_shares: bool = False,
        account_id: str = PAPER_ACCOUNT,
    ) -> None:
        self.state_path = state_path
        self.costs = costs
        self.fractional = fractional_shares
        self.account_id = account_id
        self.cash_usd = initial_cash_usd
        self.positions: dict[str, float] = {}
        self.orders: dict[str, OrderStatus] = {}
        self.requests: dict[str, OrderRequest] = {}
        self.executions: list[Execution] = []
        self.last_bar: datetime | None = None
        self.last_quotes: dict[str, BarQuote] = {}
        self._new_execs: list[Execution] = []
        self._new_final: list[OrderStatus] = []
        if state_path.exists():
            self._load()

    @property
    def name(self) -> str:
        return "paper"

    # -- connection ----------------------------------------------------------------------------

    async def connect(self) -> AccountState:
        return self._account()

    async def close(self) -> None:
        self._save()

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def late_commissions(self) -> list[tuple[str, float]]:
        return []  # commissions are known at the fill

    def _account(self) -> AccountState:
        held = {s: q for s, q in self.positions.items() if q != 0.0}
        return AccountState(self.account_id, True, self.cash_usd, held, self._avg_cost(held))

    def _avg_cost(self, held: Mapping[str, float]) -> dict[str, float]:
        """Each held position's average fill price, from the executions (the book's rule)."""
        qty: dict[str, float] = {}
        avg: dict[str, float] = {}
        for e in self.executions:
            old = qty.get(e.symbol, 0.0)
            avg[e.symbol] = average_entry(old, avg.get(e.symbol, math.nan), e.qty, e.price_usd)
            qty[e.symbol] = old + e.qty
        return {s: avg[s] for s in held if math.isfinite(avg.get(s, math.nan))}

    # -- orders --------------------------------------------------------------------------------

    async def submit(self, order: OrderRequest) -> OrderStatus:
        known = self.orders.get(order.client_order_id)
        if known is not None:
            return known  # idempotent: the same id never becomes a second order
        if order.qty == 0.0:
            raise BrokerError(f"order {order.client_order_id} has zero quantity")
        status = OrderStatus(
            client_order_id=order.client_order_id,
            broker_order_id=f"P{len(self.orders) + 1:08d}",
            symbol=order.symbol,
            qty=order.qty,
            state="submitted",
            filled_qty=0.0,
        )
        self.orders[order.client_order_id] = status
        self.requests[order.client_order_id] = order
        self._save()
        return status

    async def cancel(self, client_order_id: str) -> OrderStatus | None:
        status = self.orders.get(client_order_id)
        if status is None or status.final:
            return status
        done = self._finish(status, "cancelled", status.filled_qty, "cancelled by the client")
        self._save()
        return done

    def _finish(
        self, status: OrderStatus, state: Any, filled: float, reason: str | None
    ) -> OrderStatus:
        done = OrderStatus(
            status.client_order_id,
            status.broker_order_id,
            status.symbol,
            status.qty,
            state,
            filled,
            reason,
        )
        self.orders[status.client_order_id] = done
        self._new_final.append(done)
        return done

    def _working(self) -> list[OrderStatus]:
        return [s for s in self.orders.values() if not s.final]

    # -- the market ----------------------------------------------------------------------------

    async def on_bar(self, ts: datetime, quotes: Mapping[str, BarQuote]) -> None:
        """Fill every order decided before ``ts`` at this bar's open; idempotent per bar."""
        if self.last_bar is not None and ts <= self.last_bar:
            return
        working = self._working()
        for status in working:
            request = self.requests[status.client_order_id]
            if request.ts >= ts:
                continue
            quote = quotes.get(status.symbol)
            fill = (
                None
                if quote is None
                else simulate_fill(
                    status.qty,
                    quote.open_usd,
                    quote.volume,
                    costs=self.costs,
                    fractional_shares=self.fractional,
                    daily_vol=quote.daily_vol,
                    adv_shares=quote.adv_shares,
                )
            )
            filled = 0.0
            if fill is not None:
                filled = fill.qty
                self._execute(status, ts, fill)
            if filled == status.qty:
                self._finish(status, "filled", filled, None)
            else:
                reason = "no bar" if quote is None else "participation cap"
                self._finish(status, "cancelled", filled, reason)
        self.last_bar = ts
        self.last_quotes.update(quotes)
        if working:  # orders submitted since the last save were saved with ``last_bar`` as is
            self._save()

    def _execute(self, status: OrderStatus, ts: datetime, fill: Fill) -> None:
        execution = Execution(
            exec_id=f"X{len(self.executions) + 1:09d}",
            client_order_id=status.client_order_id,
            symbol=status.symbol,
            qty=fill.qty,
            price_usd=fill.price_usd,
            reference_usd=fill.reference_usd,
            commission_usd=fill.commission_usd,
            spread_cost_usd=fill.spread_cost_usd,
            impact_cost_usd=fill.impact_cost_usd,
            ts=ts,
        )
        self.executions.append(execution)
        self._new_execs.append(execution)
        self.cash_usd += fill.cash_flow_usd
        self.positions[status.symbol] = self.positions.get(status.symbol, 0.0) + fill.qty

    async def settle(self) -> None:
        """Fill what is still working at each symbol's last close, without a participation cap
        (the session is ending: a flattening order must complete)."""
        for status in self._working():
            quote = self.last_quotes.get(status.symbol)
            if quote is None or not quote.close_usd > 0.0:
                self._finish(status, "cancelled", 0.0, "no price to settle at")
                continue
            fill = self.costs.fill(
                status.qty,
                quote.close_usd,
                daily_vol=quote.daily_vol,
                adv_shares=quote.adv_shares,
            )
            assert self.last_bar is not None
            self._execute(status, self.last_bar, fill)
            self._finish(status, "filled", fill.qty, "settled at the last close")
        self._save()

    def drain(self) -> tuple[list[Execution], list[OrderStatus]]:
        execs, final = self._new_execs, self._new_final
        self._new_execs, self._new_final = [], []
        return execs, final

    async def reconcile(self) -> Reconciliation:
        return Reconciliation(list(self.executions), list(self.orders.values()), self._account())

    # -- persistence ---------------------------------------------------------------------------

    def _save(self) -> None:
        state = {
            "account_id": self.account_id,
            "cash_usd": self.cash_usd,
            "positions": self.positions,
            "orders": [_shallow(s) for s in self.orders.values()],
            "requests": [_request_json(r) for r in self.requests.values()],
            "executions": [_execution_json(e) for e in self.executions],
            "last_bar": None if self.last_bar is None else self.last_bar.isoformat(),
            "last_quotes": {s: _shallow(q) for s, q in self.last_quotes.items()},
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        text = json.dumps(state)  # one write: ``json.dump`` writes piece by piece
        with tmp.open("w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    def _load(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise BrokerError(f"paper account {self.state_path} is unreadable: {exc}") from exc
        if state["account_id"] != self.account_id:
            raise BrokerError(
                f"paper account file {self.state_path} belongs to {state['account_id']}"
            )
        self.cash_usd = float(state["cash_usd"])
        self.positions = {s: float(q) for s, q in state["positions"].items()}
        self.orders = {o["client_order_id"]: OrderStatus(**o) for o in state["orders"]}
        self.requests = {
            r["client_order_id"]: OrderRequest(**{**r, "ts": datetime.fromisoformat(r["ts"])})
            for r in state["requests"]
        }
        self.executions = [
            Execution(**{**e, "ts": datetime.fromisoformat(e["ts"])}) for e in state["executions"]
        ]
        last = state["last_bar"]
        self.last_bar = None if last is None else datetime.fromisoformat(last)
        self.last_quotes = {s: BarQuote(**q) for s, q in state["last_quotes"].items()}


def _shallow(record: Any) -> dict[str, Any]:
    """A flat slotted dataclass's fields, in order (``asdict`` without its deep copies: two
    thirds of a save's time with a day's orders)."""
    return {name: getattr(record, name) for name in record.__slots__}


def _request_json(r: OrderRequest) -> dict[str, Any]:
    return {**_shallow(r), "ts": r.ts.isoformat()}


def _execution_json(e: Execution) -> dict[str, Any]:
    return {**_shallow(e), "ts": e.ts.isoformat()}
