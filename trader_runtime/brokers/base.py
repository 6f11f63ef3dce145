"""The broker interface the live engine trades through, and the records that cross it.

Quantities are signed shares (buy > 0), prices USD, timestamps timezone-aware UTC. Orders are
market orders for one bar: what is not filled by the next bar is cancelled and reported with its
filled quantity. ``client_order_id`` is the engine's idempotency key: submitting an id the broker
already knows returns that order's status and sends nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from trader_runtime.errors import RoboTraderError

OrderState = Literal["submitted", "filled", "cancelled", "rejected"]
FINAL_STATES: frozenset[str] = frozenset({"filled", "cancelled", "rejected"})


class BrokerError(RoboTraderError):
    """The broker refused or could not serve a request."""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A market order of ``qty`` shares; ``reference_usd`` is the arrival price (the deciding
    close) and ``ts`` the market instant it was decided at."""

    client_order_id: str
    symbol: str
    qty: float
    reference_usd: float
    ts: datetime
    decision_id: str | None = None


@dataclass(frozen=True, slots=True)
class OrderStatus:
    """The broker's view of one order."""

    client_order_id: str
    broker_order_id: str
    symbol: str
    qty: float
    state: OrderState
    filled_qty: float
    reason: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill, the source of truth for positions; booked once per ``exec_id``."""

    exec_id: str
    client_order_id: str
    symbol: str
    qty: float
    price_usd: float
    reference_usd: float
    commission_usd: float
    spread_cost_usd: float
    impact_cost_usd: float
    ts: datetime


@dataclass(frozen=True, slots=True)
class BarQuote:
    """What a simulated broker needs of a bar to fill at its open."""

    open_usd: float
    close_usd: float
    volume: float
    daily_vol: float
    adv_shares: float


@dataclass(frozen=True, slots=True)
class AccountState:
    """Who we are trading as, and what the broker says we hold: shares per symbol and, where the
    broker knows it, each position's average cost per share (USD; IB's ``avgCost``)."""

    account_id: str
    paper: bool
    cash_usd: float
    positions: Mapping[str, float] = field(default_factory=dict)
    avg_cost_usd: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Everything the broker knows of this session: every execution, every order's status and
    the account; the engine books what its journal lacks."""

    executions: Sequence[Execution]
    orders: Sequence[OrderStatus]
    account: AccountState


class Broker(Protocol):
    """What the live engine needs of a broker."""

    @property
    def name(self) -> str: ...

    async def connect(self) -> AccountState: ...

    async def close(self) -> None: ...

    async def submit(self, order: OrderRequest) -> OrderStatus: ...

    async def cancel(self, client_order_id: str) -> OrderStatus | None: ...

    async def on_bar(self, ts: datetime, quotes: Mapping[str, BarQuote]) -> None:
        """A bar closed at ``ts``: a simulated broker fills at its open; a real one ignores it."""
        ...

    def drain(self) -> tuple[list[Execution], list[OrderStatus]]:
        """Executions and final order statuses that arrived since the last call, in order."""
        ...

    async def reconcile(self) -> Reconciliation: ...

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        """Connection events since the last call (disconnects, reconnects, guard warnings), for
        the journal; a simulated broker has none."""
        ...

    def late_commissions(self) -> list[tuple[str, float]]:
        """Commission reports that arrived after their execution was booked with an estimate."""
        ...

    async def settle(self) -> None:
        """Before stopping: a simulated broker fills what is working at the last close; a real
        one waits briefly for working orders to report."""
        ...
