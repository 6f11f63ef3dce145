"""Interactive Brokers values <-> robo-trader records: orders, order states, executions, times.

Plain functions over plain values (no ib_async import): the I/O half reads ib_async objects into
``RawExecution`` and sends ``IbOrderSpec`` as an ib_async order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from trader_runtime.brokers.base import Execution, OrderRequest, OrderState
from trader_runtime.errors import RoboTraderError

IbAction = Literal["BUY", "SELL"]
IbSide = Literal["BOT", "SLD"]

# IB order statuses (and ib_async's "ValidationError") by what they mean to us.
WORKING_STATUSES: frozenset[str] = frozenset(
    {
        "PendingSubmit",  # sent, not yet acknowledged by IB
        "PreSubmitted",  # accepted, held (e.g. outside hours, simulated order types)
        "Submitted",  # working at the exchange
        "ApiPending",  # created by the API, not yet transmitted
        "PendingCancel",  # a cancel is on its way: still working until IB confirms
        "ValidationError",  # ib_async: a warning on a live order (399, 2100-2199, ...); not final
    }
)
CANCELLED_STATUSES: frozenset[str] = frozenset({"Cancelled", "ApiCancelled"})
INACTIVE_STATUS = "Inactive"  # IB will not work the order (rejected, halted, unfunded...)
FILLED_STATUS = "Filled"

REJECT_CODES: frozenset[int] = frozenset({103, 110, 200, 201, 203, 321})
"""Errors that make a cancelled order a rejected one: 201 order rejected, 103 duplicate order id,
110 price does not fit the tick, 200 no security definition, 203 security not allowed for this
account, 321 request failed validation."""
ORDER_CANCELLED_CODE = 202
"""IB's confirmation that an order is cancelled ("Order Canceled - reason:"), whoever cancelled it
(us, a DAY expiry, a margin call); it follows the orderStatus Cancelled."""
CANCEL_RACE_CODES: frozenset[int] = frozenset({10147, 10148})
"""The cancel raced the order: 10147 order not found, 10148 cannot be cancelled (e.g. filled)."""

_EPOCH_DIGITS = re.compile(r"^\d{9,}$")
_DATE_ONLY = re.compile(r"^\d{8}$")


class IbParseError(RoboTraderError, ValueError):
    """A value from or for IB cannot be mapped (bad quantity, side, time...)."""


@dataclass(frozen=True, slots=True)
class IbOrderSpec:
    """A DAY market order as IB takes it: ``total_quantity`` positive shares, the sign is in
    ``action``; ``order_ref`` is our client order id (IB's ``orderRef``)."""

    action: IbAction
    total_quantity: float
    order_type: Literal["MKT"]
    tif: Literal["DAY"]
    order_ref: str
    account: str

    def __post_init__(self) -> None:
        if self.action not in ("BUY", "SELL"):
            raise IbParseError(f"action must be BUY or SELL, got {self.action!r}")
        if not (math.isfinite(self.total_quantity) and self.total_quantity > 0.0):
            raise IbParseError(f"total_quantity must be positive, got {self.total_quantity}")


def order_spec(request: OrderRequest, account: str) -> IbOrderSpec:
    """The IB order for ``request`` in ``account``; a zero or non-finite quantity raises
    ``IbParseError`` (a ``ValueError``)."""
    qty = request.qty
    if not math.isfinite(qty) or qty == 0.0:
        raise IbParseError(f"order {request.client_order_id} has no quantity to trade ({qty})")
    return IbOrderSpec(
        action="BUY" if qty > 0 else "SELL",
        total_quantity=abs(qty),
        order_type="MKT",
        tif="DAY",
        order_ref=request.client_order_id,
        account=account,
    )


def order_state(status: str, *, error_code: int | None = None) -> OrderState | None:
    """Our state of an IB order status, given the last error IB sent for the order.

    - working statuses (PendingSubmit, PreSubmitted, Submitted, ApiPending, PendingCancel and
      ib_async's ValidationError, a warning on a live order) -> ``"submitted"``;
    - Filled -> ``"filled"``;
    - Cancelled / ApiCancelled -> ``"cancelled"``; with a reject code (``REJECT_CODES``, e.g. 201:
      ib_async marks rejected orders Cancelled) -> ``"rejected"``; with a cancel-race code
      (10147/10148) -> None: not final, the executions decide (the order may have filled);
    - Inactive -> ``"rejected"`` (IB will not work it);
    - anything else -> None (unknown: keep the previous state).
    """
    if status in WORKING_STATUSES:
        return "submitted"
    if status == FILLED_STATUS:
        return "filled"
    if status in CANCELLED_STATUSES:
        if error_code in CANCEL_RACE_CODES:
            return None
        if error_code in REJECT_CODES:
            return "rejected"
        return "cancelled"
    if status == INACTIVE_STATUS:
        return "rejected"
    return None


@dataclass(frozen=True, slots=True)
class RawExecution:
    """One IB execution as the I/O layer reads it off an ib_async ``Fill``: ``side`` BOT/SLD,
    ``shares`` positive, ``price`` USD, ``time`` aware UTC, ``commission_usd`` None until IB's
    commission report for ``exec_id`` is known."""

    exec_id: str
    order_ref: str
    perm_id: int
    symbol: str
    side: str  # "BOT" or "SLD" (IbSide), checked on construction
    shares: float
    price: float
    time: datetime
    commission_usd: float | None = None

    def __post_init__(self) -> None:
        if not self.exec_id:
            raise IbParseError("an execution needs an exec_id")
        if self.side not in ("BOT", "SLD"):
            raise IbParseError(
                f"execution {self.exec_id}: side must be BOT or SLD, got {self.side!r}"
            )
        if not (math.isfinite(self.shares) and self.shares > 0.0):
            raise IbParseError(
                f"execution {self.exec_id}: shares must be positive, got {self.shares}"
            )
        if not (math.isfinite(self.price) and self.price > 0.0):
            raise IbParseError(
                f"execution {self.exec_id}: price must be positive, got {self.price}"
            )
        if self.time.tzinfo is None:
            raise IbParseError(f"execution {self.exec_id}: time must be timezone-aware")

    @property
    def qty(self) -> float:
        """Signed shares (buy > 0)."""
        return signed_qty(self.side, self.shares)


def signed_qty(side: str, shares: float) -> float:
    """``shares`` signed by IB's execution side: BOT positive, SLD negative."""
    if side == "BOT":
        return float(abs(shares))
    if side == "SLD":
        return -float(abs(shares))
    raise IbParseError(f"execution side must be BOT or SLD, got {side!r}")


def exec_base_id(exec_id: str) -> str:
    """The part of an execId a correction keeps: everything before the last ``.`` (IB corrects a
    fill by changing only the last part, ``x.01`` -> ``x.02``); an id without ``.`` is its own base."""
    head, dot, _ = exec_id.rpartition(".")
    return head if dot else exec_id


def exec_revision(exec_id: str) -> tuple[int, str]:
    """A sort key of an execId's correction number (the part after the last ``.``)."""
    _, dot, tail = exec_id.rpartition(".")
    if not dot:
        return (-1, "")
    return (int(tail), tail) if tail.isdigit() else (-1, tail)


def to_execution(raw: RawExecution, *, reference_usd: float, commission_usd: float) -> Execution:
    """Our ``Execution`` of ``raw``: ``impact_cost_usd`` is the slippage against
    ``reference_usd``, ``(price - reference) * signed qty`` (a buy above the reference costs a
    positive amount); the spread is inside that slippage, so ``spread_cost_usd`` is 0."""
    qty = raw.qty
    return Execution(
        exec_id=raw.exec_id,
        client_order_id=raw.order_ref,
        symbol=raw.symbol,
        qty=qty,
        price_usd=float(raw.price),
        reference_usd=float(reference_usd),
        commission_usd=float(commission_usd),
        spread_cost_usd=0.0,
        impact_cost_usd=(float(raw.price) - float(reference_usd)) * qty,
        ts=raw.time.astimezone(UTC),
    )


def parse_ib_time(text: str) -> datetime:
    """An aware UTC datetime of an IB time string.

    Accepts ``"20240102 14:30:00"`` and ``"20240102  14:30:00"`` (naive: taken as UTC, so ask IB
    for UTC), ``"20240102 14:30:00 US/Eastern"`` (any IANA zone), ``"20240102-14:30:00"`` (IB's UTC
    form), epoch seconds (``"1704205800"``) and a bare date ``"20240102"`` (midnight UTC).
    Anything else raises ``IbParseError``.
    """
    value = text.strip()
    if _EPOCH_DIGITS.match(value):
        return datetime.fromtimestamp(int(value), tz=UTC)
    if _DATE_ONLY.match(value):
        return _naive(value, "%Y%m%d", text).replace(tzinfo=UTC)
    parts = value.split()
    if len(parts) == 1 and "-" in value:
        return _naive(value, "%Y%m%d-%H:%M:%S", text).replace(tzinfo=UTC)
    if len(parts) not in (2, 3):
        raise IbParseError(f"not an IB time: {text!r}")
    naive = _naive(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S", text)
    if len(parts) == 2:
        return naive.replace(tzinfo=UTC)
    try:
        zone = ZoneInfo(parts[2])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise IbParseError(f"unknown time zone in IB time {text!r}") from exc
    return naive.replace(tzinfo=zone).astimezone(UTC)


def to_utc(value: datetime | date) -> datetime:
    """An aware UTC datetime of a datetime (naive = UTC) or a date (its midnight UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _naive(value: str, fmt: str, original: str) -> datetime:
    try:
        return datetime.strptime(value, fmt)
    except ValueError as exc:
        raise IbParseError(f"not an IB time: {original!r}") from exc
