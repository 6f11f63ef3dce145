"""``Trader``: the bar-by-bar state machine between market data and orders, shared by the
backtest and the live runtime so both decide, size, check and book identically.

Per bar instant ``t`` the caller (backtest loop or live engine) does, in this order:
1. ``book_fill`` for every execution of the children sent at ``t - 1`` (filled at ``t``'s open),
   then ``child_done`` for each of those children;
2. ``mark`` with ``t``'s closes (the daily loss guard runs here);
3. ``decide`` with the bar's snapshot: the decision core's targets become parent orders, fixed in
   shares at this close;
4. ``children``: one child per working parent, through the risk checks; the caller sends them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.core import BarSnapshot, Decision, DecisionCore, PortfolioView
from trader_runtime.execution.costs import Fill, shares_for_weight
from trader_runtime.trading.book import Book, Ledger
from trader_runtime.trading.orders import ChildOrder, ParentOrder
from trader_runtime.trading.risk import RiskEngine, RiskEvent

FloatArray = npt.NDArray[np.float64]


class Policy(Protocol):
    """What decides: the decision core, or a fixed schedule of weights (parity tests, benchmarks)."""

    def step(self, bar: BarSnapshot, book: PortfolioView) -> Decision: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """A child the risk checks stopped: its symbol, quantity and reason (``risk.REFUSALS``)."""

    ts_us: int
    symbol: str
    qty: float
    reason: str


class Trader:
    """Decision core, book, ledger, working parents and risk engine of one universe."""

    def __init__(
        self,
        symbols: tuple[str, ...],
        config: TradingConfig,
        *,
        model: str = "",
        policy: Policy | None = None,
    ) -> None:
        n = len(symbols)
        self.symbols = symbols
        self.config = config
        self.model = model
        self.core: Policy = policy if policy is not None else DecisionCore(n, config)
        self.book = Book(n, config.initial_cash_usd)
        self.ledger = Ledger(symbols, self.book, model)
        self.risk = RiskEngine(config.risk, config.sizing, n)
        self.orders: list[ParentOrder | None] = [None] * n
        self.decisions: list[dict[str, Any]] = []
        self.refusals: list[Refusal] = []
        self.risk_events: list[RiskEvent] = []
        self._next_parent = 0

    # -- 1. executions -------------------------------------------------------------------------

    def book_fill(self, bar: int, ts_us: int, child: ChildOrder, fill: Fill, regime: str) -> None:
        """Book one execution of ``child`` (a child may fill in several executions)."""
        self.ledger.book_fill(bar, ts_us, child.j, fill, child.reason, regime)

    def book_late_fill(self, bar: int, ts_us: int, j: int, fill: Fill, regime: str) -> None:
        """Book an execution that came after its child was over (a broker's correction or
        reversal, a fill reported after a cancel): the position is the broker's, whatever the
        child expected."""
        self.ledger.book_fill(bar, ts_us, j, fill, "late", regime)

    def child_done(self, child: ChildOrder, filled_shares: float) -> None:
        """``child`` is over (filled, partly filled or cancelled) with ``filled_shares`` in all:
        its parent completes when that was all it needed, else the rest rolls into the next
        child."""
        order = self.orders[child.j]
        if order is None or order.parent_id != child.parent_id:
            return  # the parent was replaced or cancelled meanwhile
        if filled_shares == child.remaining_shares:
            self.orders[child.j] = None
        else:
            order.carry = child.qty - filled_shares

    # -- 2. marks ------------------------------------------------------------------------------

    def mark(self, ts_us: int, closes: FloatArray) -> float:
        """Mark the book at ``closes``; run the daily loss guard; return the equity (USD)."""
        equity = self.book.mark_to(closes)
        event = self.risk.on_bar(ts_us, closes, equity)
        if event is not None:
            self.risk_events.append(event)
            self.cancel_all()
        return equity

    def cancel_all(self) -> None:
        """Drop every working parent (a halt)."""
        self.orders = [None] * len(self.symbols)

    # -- 3. decisions --------------------------------------------------------------------------

    def committed_shares(self) -> FloatArray:
        """Positions, with each working parent's target in place of its symbol's position."""
        committed = self.book.position.copy()
        for j, order in enumerate(self.orders):
            if order is not None:
                committed[j] = order.target_shares
        return committed

    def decide(self, ts_us: int, bar: BarSnapshot) -> Decision:
        """The decision core's targets at this close, as new parent orders (replacing working
        ones). Returns the decision; its rows are appended to ``decisions``."""
        book = self.book
        equity = book.value_at(bar.close)
        view = PortfolioView(
            equity_usd=equity,
            committed_shares=self.committed_shares(),
            position_shares=book.position,  # read only: the core keeps no reference
            avg_entry_usd=book.avg_entry,
        )
        decision = self.core.step(bar, view)
        if self.risk.halted:
            return decision  # the core keeps its state; nothing new goes out
        fractional = self.config.execution.fractional_shares
        for j, weight in decision.changed:
            reason = decision.reasons[j] or "rebalance"
            price = float(book.mark[j])  # this close, or the last one without a bar now
            if not price > 0.0:
                continue
            self.orders[j] = ParentOrder(
                parent_id=self._next_parent,
                j=j,
                weight=weight,
                reason=reason,
                target_shares=shares_for_weight(weight, equity, price, fractional),
                decided_bar=bar.bar_index,
            )
            self._next_parent += 1
            self.decisions.append(
                {
                    "ts": ts_us,
                    "symbol": self.symbols[j],
                    "model": self.model,
                    "regime": decision.regime.value,
                    "probability": float(bar.probability[j]),
                    "edge": float(decision.edge[j]),
                    "target_weight": weight,
                    "reason": reason,
                }
            )
        return decision

    # -- 4. children ---------------------------------------------------------------------------

    def children(
        self,
        bar: int,
        ts_us: int,
        expected_volume: Callable[[], FloatArray],
        equity_usd: float,
    ) -> list[ChildOrder]:
        """One child per working parent, in symbol order, each through the risk checks.
        ``expected_volume()`` is ``(slices, n)``: the coming bars' expected volume, asked for
        only when a new parent's schedule follows volume (VWAP)."""
        out: list[ChildOrder] = []
        book, execution = self.book, self.config.execution
        volumes: FloatArray | None = None
        for j, order in enumerate(self.orders):
            if order is None:
                continue
            position = float(book.position[j])
            remaining = order.target_shares - position
            horizon = None
            if order.children is None and execution.algo == "vwap":
                if volumes is None:
                    volumes = expected_volume()
                horizon = volumes[:, j]
            qty = order.next_quantity(position, execution, horizon)
            if qty == 0.0:
                if remaining == 0.0:
                    self.orders[j] = None
                continue
            price = float(book.mark[j])
            refusal = self.risk.check(ts_us, j, qty, price, book.position, book.mark, equity_usd)
            child = ChildOrder(
                parent_id=order.parent_id,
                j=j,
                symbol=self.symbols[j],
                qty=qty,
                reference_usd=price,
                remaining_shares=remaining,
                reason=order.reason,
                bar=bar,
            )
            if refusal is not None:
                self.refusals.append(Refusal(ts_us, self.symbols[j], qty, refusal))
                self.child_done(child, 0.0)
                continue
            self.risk.record_order(ts_us)
            out.append(child)
        return out

    def flatten_children(self, bar: int, ts_us: int) -> list[ChildOrder]:
        """Orders that close every position now (a halt with flattening, or a stop that asks
        for it); they replace the working parents."""
        out: list[ChildOrder] = []
        self.cancel_all()
        for j in np.flatnonzero(self.book.position != 0.0):
            qty = -float(self.book.position[j])
            price = float(self.book.mark[j])
            if (
                self.risk.check(
                    ts_us,
                    int(j),
                    qty,
                    price,
                    self.book.position,
                    self.book.mark,
                    math.nan,
                    flatten=True,
                )
                is not None
            ):
                continue
            parent = ParentOrder(
                parent_id=self._next_parent,
                j=int(j),
                weight=0.0,
                reason="flatten",
                target_shares=0.0,
                decided_bar=bar,
            )
            self._next_parent += 1
            self.orders[j] = parent
            out.append(
                ChildOrder(
                    parent.parent_id, int(j), self.symbols[j], qty, price, qty, "flatten", bar
                )
            )
        return out
