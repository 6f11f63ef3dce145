"""``ExecutionBook``: IB executions become our ``Execution`` records exactly once.

Executions are the source of truth for fills. IB reports each fill by ``execId``; the same execId
comes again after every reconnect (``reqExecutions`` replays the day), its commission report comes
separately and possibly later, and a correction re-reports a fill under a new last part of the id
(``x.01`` -> ``x.02``). The book

- ignores an execId it has seen (duplicates, replays) and an older version of a corrected fill;
- holds a new execution until its commission report arrives or ``commission_wait_s`` passes, then
  releases it with an estimated commission and remembers it, so the real figure is handed over
  later by ``late_commissions()``;
- releases a correction of an execution it already released as a reversal of the old one
  (``"<old exec id>/reversed"``, the old quantity negated at the old price, no commission)
  followed by the new version, so the booked quantity always equals the latest version;
- never releases an id the journal already holds (``mark_booked``).

Pure state; times are injected (``now_s``, seconds on a clock that survives a restart if the book
is persisted, e.g. ``time.time()``); ``to_json()``/``from_json()`` persist it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trader_runtime.brokers.base import Execution
from trader_runtime.brokers.ib.mapping import (
    RawExecution,
    exec_base_id,
    exec_revision,
    to_execution,
)
from trader_runtime.errors import RoboTraderError

REVERSED_SUFFIX = "/reversed"
STATE_VERSION = 1

CommissionEstimate = Callable[[float, float], float]
"""``(signed qty shares, price USD) -> commission USD``, e.g. ``CostModel.commission``."""


class ExecutionStateError(RoboTraderError):
    """A persisted execution book cannot be read."""


@dataclass(frozen=True, slots=True)
class _Pending:
    raw: RawExecution
    reference_usd: float
    arrived_s: float


class ExecutionBook:
    """Executions waiting to be booked and what is needed to book each fill once."""

    def __init__(self, *, commission_wait_s: float = 5.0) -> None:
        if not commission_wait_s >= 0.0:
            raise ValueError(f"commission_wait_s must be >= 0, got {commission_wait_s}")
        self.commission_wait_s = commission_wait_s
        self._pending: dict[str, _Pending] = {}  # arrival order
        self._commissions: dict[str, float] = {}  # real commissions of unreleased exec ids
        self._latest: dict[str, Execution] = {}  # base id -> latest booked version
        self._id_only: dict[str, str] = {}  # base id -> booked exec id whose details we lack
        self._top: dict[str, str] = {}  # base id -> highest version seen
        self._seen: set[str] = set()
        self._estimated: set[str] = set()  # released with an estimate, real figure pending
        self._late: list[tuple[str, float]] = []
        self._unmatched: list[str] = []

    # -- input ---------------------------------------------------------------------------------

    def add(self, raw: RawExecution, *, reference_usd: float, now_s: float) -> None:
        """Take an execution (live or replayed); ``reference_usd`` is its order's arrival price.

        A commission carried by ``raw`` counts as its commission report."""
        if raw.commission_usd is not None:
            self._note_commission(raw.exec_id, raw.commission_usd)
        exec_id = raw.exec_id
        if exec_id in self._seen:
            return
        self._seen.add(exec_id)
        base = exec_base_id(exec_id)
        top = self._top.get(base)
        if top is not None and exec_revision(exec_id) < exec_revision(top):
            self._commissions.pop(exec_id, None)
            return  # an older version of a corrected fill
        self._supersede(base, exec_id)
        self._pending[exec_id] = _Pending(raw, float(reference_usd), float(now_s))

    def attach_commission(self, exec_id: str, commission_usd: float, *, now_s: float) -> None:
        """IB's commission report for ``exec_id`` (kept until the execution arrives if it is not
        known yet; a late one for an execution released with an estimate goes to
        ``late_commissions()``). ``now_s`` is accepted for symmetry with ``add``."""
        del now_s
        self._note_commission(exec_id, commission_usd)

    def mark_booked(self, exec_ids: Iterable[str | Execution]) -> None:
        """Executions the journal already holds (e.g. after a restart): never released again.

        Given ``Execution`` records (not just ids), a later correction of one of them is released
        as a proper reversal; given only an id, the correction is released without one and listed
        by ``unmatched_corrections()``."""
        for item in exec_ids:
            execution = item if isinstance(item, Execution) else None
            exec_id = item.exec_id if isinstance(item, Execution) else item
            self._seen.add(exec_id)
            self._pending.pop(exec_id, None)
            self._commissions.pop(exec_id, None)
            if exec_id.endswith(REVERSED_SUFFIX):
                continue
            base = exec_base_id(exec_id)
            top = self._top.get(base)
            if top is not None and exec_revision(exec_id) < exec_revision(top):
                continue
            self._supersede(base, exec_id)
            known = self._latest.get(base)
            if execution is not None:
                self._latest[base] = execution
                self._id_only.pop(base, None)
            elif known is None or known.exec_id != exec_id:
                self._latest.pop(base, None)
                self._id_only[base] = exec_id

    # -- output --------------------------------------------------------------------------------

    def release(self, now_s: float, *, estimate_commission: CommissionEstimate) -> list[Execution]:
        """Executions ready to book, in arrival order: those whose commission is known, and those
        that waited ``commission_wait_s`` (with ``estimate_commission(qty, price_usd)``)."""
        out: list[Execution] = []
        for exec_id, pending in list(self._pending.items()):
            commission = self._commissions.pop(exec_id, None)
            if commission is None:
                if now_s - pending.arrived_s < self.commission_wait_s:
                    continue
                raw = pending.raw
                commission = float(estimate_commission(raw.qty, raw.price))
                self._estimated.add(exec_id)
            del self._pending[exec_id]
            base = exec_base_id(exec_id)
            execution = to_execution(
                pending.raw, reference_usd=pending.reference_usd, commission_usd=commission
            )
            old = self._latest.get(base)
            if old is not None:
                reversal = _reversal(old, execution.ts)
                self._seen.add(reversal.exec_id)
                out.append(reversal)
            elif base in self._id_only:
                self._unmatched.append(exec_id)
            self._id_only.pop(base, None)
            self._latest[base] = execution
            out.append(execution)
        return out

    def late_commissions(self) -> list[tuple[str, float]]:
        """``(exec_id, commission_usd)`` of real commissions that arrived after their execution
        was released with an estimate; returned once."""
        late, self._late = self._late, []
        return late

    def unmatched_corrections(self) -> list[str]:
        """Exec ids released as corrections of a fill known only by id (``mark_booked`` with ids):
        no reversal was released, the journal must replace the old version; returned once."""
        unmatched, self._unmatched = self._unmatched, []
        return unmatched

    def known_exec_ids(self) -> set[str]:
        """Every exec id seen, released, ignored or marked booked (including reversal ids)."""
        return set(self._seen)

    def seen(self, exec_id: str) -> bool:
        return exec_id in self._seen

    def pending_exec_ids(self) -> list[str]:
        """Exec ids held back, waiting for their commission, in arrival order."""
        return list(self._pending)

    # -- persistence ---------------------------------------------------------------------------

    def to_json(self) -> str:
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "commission_wait_s": self.commission_wait_s,
            "pending": [
                {
                    "raw": _raw_to_dict(p.raw),
                    "reference_usd": float(p.reference_usd),
                    "arrived_s": float(p.arrived_s),
                }
                for p in self._pending.values()
            ],
            "commissions": self._commissions,
            "latest": {base: _execution_to_dict(e) for base, e in self._latest.items()},
            "id_only": self._id_only,
            "top": self._top,
            "seen": sorted(self._seen),
            "estimated": sorted(self._estimated),
            "late": [list(item) for item in self._late],
            "unmatched": self._unmatched,
        }
        return json.dumps(state, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExecutionBook:
        """The book ``to_json`` wrote; ``ExecutionStateError`` when it cannot be read."""
        try:
            state = json.loads(text)
            if state.get("version") != STATE_VERSION:
                raise ExecutionStateError(
                    f"unknown execution book version {state.get('version')!r}"
                )
            book = cls(commission_wait_s=float(state["commission_wait_s"]))
            for p in state["pending"]:
                raw = _raw_from_dict(p["raw"])
                book._pending[raw.exec_id] = _Pending(
                    raw, float(p["reference_usd"]), float(p["arrived_s"])
                )
            book._commissions = {str(k): float(v) for k, v in state["commissions"].items()}
            book._latest = {str(k): _execution_from_dict(v) for k, v in state["latest"].items()}
            book._id_only = {str(k): str(v) for k, v in state["id_only"].items()}
            book._top = {str(k): str(v) for k, v in state["top"].items()}
            book._seen = {str(x) for x in state["seen"]}
            book._estimated = {str(x) for x in state["estimated"]}
            book._late = [(str(i), float(c)) for i, c in state["late"]]
            book._unmatched = [str(x) for x in state["unmatched"]]
        except ExecutionStateError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ExecutionStateError(f"the execution book state cannot be read: {exc}") from exc
        return book

    # -- internals -----------------------------------------------------------------------------

    def _supersede(self, base: str, exec_id: str) -> None:
        """Make ``exec_id`` the newest version of ``base``; drop an older unreleased version."""
        top = self._top.get(base)
        if top is not None and top != exec_id:
            self._pending.pop(top, None)
            self._commissions.pop(top, None)
        self._top[base] = exec_id

    def _note_commission(self, exec_id: str, commission_usd: float) -> None:
        if exec_id in self._estimated:
            self._estimated.discard(exec_id)
            self._late.append((exec_id, float(commission_usd)))
        elif exec_id in self._pending or exec_id not in self._seen:
            self._commissions[exec_id] = float(commission_usd)
        # otherwise: released with its real commission, booked, or an ignored version


def _reversal(old: Execution, ts: datetime) -> Execution:
    """The booking that undoes ``old``: its quantity negated at its price, no commission."""
    return Execution(
        exec_id=old.exec_id + REVERSED_SUFFIX,
        client_order_id=old.client_order_id,
        symbol=old.symbol,
        qty=-old.qty,
        price_usd=old.price_usd,
        reference_usd=old.reference_usd,
        commission_usd=0.0,
        spread_cost_usd=0.0,
        impact_cost_usd=-old.impact_cost_usd,
        ts=ts,
    )


def _raw_to_dict(raw: RawExecution) -> dict[str, Any]:
    return {
        "exec_id": raw.exec_id,
        "order_ref": raw.order_ref,
        "perm_id": raw.perm_id,
        "symbol": raw.symbol,
        "side": raw.side,
        "shares": float(raw.shares),
        "price": float(raw.price),
        "time": raw.time.isoformat(),
        "commission_usd": raw.commission_usd,
    }


def _raw_from_dict(d: dict[str, Any]) -> RawExecution:
    commission = d["commission_usd"]
    return RawExecution(
        exec_id=str(d["exec_id"]),
        order_ref=str(d["order_ref"]),
        perm_id=int(d["perm_id"]),
        symbol=str(d["symbol"]),
        side=d["side"],
        shares=float(d["shares"]),
        price=float(d["price"]),
        time=datetime.fromisoformat(d["time"]),
        commission_usd=None if commission is None else float(commission),
    )


def _execution_to_dict(e: Execution) -> dict[str, Any]:
    return {
        "exec_id": e.exec_id,
        "client_order_id": e.client_order_id,
        "symbol": e.symbol,
        "qty": float(e.qty),
        "price_usd": float(e.price_usd),
        "reference_usd": float(e.reference_usd),
        "commission_usd": float(e.commission_usd),
        "spread_cost_usd": float(e.spread_cost_usd),
        "impact_cost_usd": float(e.impact_cost_usd),
        "ts": e.ts.isoformat(),
    }


def _execution_from_dict(d: dict[str, Any]) -> Execution:
    return Execution(
        exec_id=str(d["exec_id"]),
        client_order_id=str(d["client_order_id"]),
        symbol=str(d["symbol"]),
        qty=float(d["qty"]),
        price_usd=float(d["price_usd"]),
        reference_usd=float(d["reference_usd"]),
        commission_usd=float(d["commission_usd"]),
        spread_cost_usd=float(d["spread_cost_usd"]),
        impact_cost_usd=float(d["impact_cost_usd"]),
        ts=datetime.fromisoformat(d["ts"]),
    )
