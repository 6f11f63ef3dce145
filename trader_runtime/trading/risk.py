"""The pre-trade risk checks and the daily loss guard, shared by backtest and live.

``RiskEngine.check`` is called for every child order before it goes out; ``on_bar`` is called at
every bar instant, after the book is marked, and halts trading for the rest of the session when
the daily loss limit is crossed. Live-only guards (stale data, the kill switch file) sit in the
live engine and call ``halt`` too. Timestamps are epoch microseconds of market time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.config import RiskConfig, SizingConfig
from trader_runtime.features.streaming import SessionBounds
from trader_runtime.trading import kernels

FloatArray = npt.NDArray[np.float64]
_MINUTE_US = 60_000_000
_HOUR_US = 3_600_000_000
_NEW_YORK = ZoneInfo("America/New_York")

REFUSALS = ("halted", "outside_hours", "rate_limit", "price_band", "position_cap", "gross_cap")


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """Something the risk engine did: ``kind`` is ``halt``; ``detail`` says why."""

    ts_us: int
    kind: str
    detail: dict[str, float | str]


class RiskEngine:
    """Limits of ``config`` over ``n`` symbols; caps from ``sizing``."""

    def __init__(self, config: RiskConfig, sizing: SizingConfig, n: int) -> None:
        self.config = config
        self.sizing = sizing
        self.halted = False
        self.halt_reason: str | None = None
        self.session_key = ""
        self.session_open_equity_usd = float("nan")
        self._orders: deque[int] = deque()
        self._last_close = np.full(n, np.nan)
        self._prev_close = np.full(n, np.nan)
        self._sessions = SessionBounds()
        self._hour = -1
        self._hour_key = ""

    # -- every bar -----------------------------------------------------------------------------

    def on_bar(self, ts_us: int, closes: FloatArray, equity_usd: float) -> RiskEvent | None:
        """Track closes for the price band, roll the session, and check the daily loss limit."""
        kernels.track_closes(closes, self._last_close, self._prev_close)
        key = self._session_key(ts_us)
        if key != self.session_key:
            self.session_key = key
            self.session_open_equity_usd = equity_usd
            if self.halted and self.halt_reason == "daily_loss":
                self.halted = False
                self.halt_reason = None
        if self.halted:
            return None
        start = self.session_open_equity_usd
        loss = (start - equity_usd) / start if start > 0 else 0.0
        if loss >= self.config.daily_loss_limit_fraction:
            self.halt("daily_loss")
            return RiskEvent(
                ts_us,
                "halt",
                {
                    "reason": "daily_loss",
                    "session_open_equity_usd": start,
                    "equity_usd": equity_usd,
                    "loss_fraction": loss,
                },
            )
        return None

    def _session_key(self, ts_us: int) -> str:
        """The New York date of an instant (ISO), looked up once an hour (New York's UTC
        offsets are whole hours)."""
        hour = ts_us // _HOUR_US
        if hour != self._hour:
            self._hour = hour
            self._hour_key = (
                datetime.fromtimestamp(ts_us / 1e6, tz=UTC).astimezone(_NEW_YORK).date().isoformat()
            )
        return self._hour_key

    def halt(self, reason: str) -> None:
        """Stop new orders (a daily-loss halt lifts at the next session; any other lasts)."""
        self.halted = True
        self.halt_reason = reason

    # -- every order ---------------------------------------------------------------------------

    def check(
        self,
        ts_us: int,
        j: int,
        qty: float,
        reference_usd: float,
        positions: FloatArray,
        marks: FloatArray,
        equity_usd: float,
        *,
        flatten: bool = False,
    ) -> str | None:
        """None if the order may go out, else the reason it may not (one of ``REFUSALS``).

        A flattening order (``flatten``) passes a halt, the rate limit, the band and the caps:
        it only reduces risk."""
        cfg = self.config
        if cfg.trading_hours_only and self._sessions.bounds(ts_us) is None:
            return "outside_hours"
        if flatten:
            return None
        if self.halted:
            return "halted"
        while self._orders and self._orders[0] <= ts_us - _MINUTE_US:
            self._orders.popleft()
        if len(self._orders) >= cfg.max_orders_per_minute:
            return "rate_limit"
        prev, last = self._prev_close[j], self._last_close[j]
        if prev > 0.0 and last > 0.0 and abs(last / prev - 1.0) > cfg.price_band_fraction:
            return "price_band"
        old = float(positions[j])
        new = old + qty
        if abs(new) > abs(old) and equity_usd > 0.0:
            price = reference_usd if reference_usd > 0.0 else float(marks[j])
            tolerance = cfg.cap_tolerance_fraction
            if abs(new) * price / equity_usd > self.sizing.max_position_fraction + tolerance:
                return "position_cap"
            gross = kernels.gross_without(positions, marks, j) + abs(new) * price
            if gross / equity_usd > self.sizing.max_gross_fraction + tolerance:
                return "gross_cap"
        return None

    def record_order(self, ts_us: int) -> None:
        """Count an order that went out (for the rate limit)."""
        self._orders.append(ts_us)
