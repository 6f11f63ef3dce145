"""Parent orders (a target position to reach) and the child orders that work them.

A decision becomes a ``ParentOrder`` whose target is fixed in shares at the decision's close
(``weight x equity / close``). Each bar, the parent releases one child: the next slice of its
schedule (``execution.schedules``) plus whatever the previous child left unfilled, never beyond
the target. A child lives for one bar: the broker (or the simulator) fills what it can by the next
bar and the rest rolls into the next child.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.config import ExecutionConfig
from trader_runtime.execution.schedules import child_schedule

FloatArray = npt.NDArray[np.float64]


def clip(x: float, lo: float, hi: float) -> float:
    """``float(np.clip(x, lo, hi))`` for ``lo <= hi``, bit for bit (NaN kept, the sign of a zero
    kept at a tie), without a NumPy call on a scalar."""
    clipped = x if x != x or x >= lo else lo
    return float(clipped if clipped != clipped or clipped <= hi else hi)


@dataclass(slots=True)
class ParentOrder:
    """A working target of one symbol: ``target_shares`` to hold, decided at bar ``decided_bar``."""

    parent_id: int
    j: int
    weight: float
    reason: str
    target_shares: float
    decided_bar: int
    children: FloatArray | None = None
    child: int = 0
    carry: float = 0.0

    def next_quantity(
        self, position_shares: float, execution: ExecutionConfig, horizon: FloatArray | None
    ) -> float:
        """The next child's signed quantity given the position now; ``horizon`` is the expected
        volume of the coming bars (VWAP's first child needs it)."""
        remaining = self.target_shares - position_shares
        if self.children is None:
            self.children = child_schedule(remaining, execution, horizon)
        if self.child < len(self.children):
            wanted = float(self.children[self.child]) + self.carry
            self.child += 1
        else:
            wanted = remaining
        # never beyond the target, whatever the rounding of the schedule
        return clip(wanted, min(0.0, remaining), max(0.0, remaining))


class ChildOrder(NamedTuple):
    """One order sent for one bar: ``qty`` shares (signed) of symbol ``j`` at market, priced
    against ``reference_usd`` (the decision bar's close) by the pre-trade checks.

    ``remaining_shares`` is what the parent still needed when the child was cut; a child that
    fills exactly that completes its parent."""

    parent_id: int
    j: int
    symbol: str
    qty: float
    reference_usd: float
    remaining_shares: float
    reason: str
    bar: int
