"""IB's historical-data pacing rules enforced on our side, and the backoff of retries.

IB answers a request that breaks its pacing with error 162 and an empty result, and repeated
violations can get the session throttled, so we never send one: ``HistoricalPacer.delay_s`` says
how long a request must wait. A window of ``w`` seconds counts the requests started in
``(t - w, t]``: a start exactly ``w`` ago no longer counts. Times are seconds on one monotonic
clock (``now_s``).
"""

from __future__ import annotations

from collections import deque

from trader_runtime.brokers.ib.config import HistoricalPacing

RequestKey = tuple[str, str, str]
"""What makes two historical requests identical, e.g. (contract, bar size, end|duration)."""

OPEN_POLL_S = 0.5
"""The delay returned while ``max_open`` requests are waiting: when they finish is unknown."""
_EPS_S = 1e-9
_MAX_DOUBLINGS = 60


class HistoricalPacer:
    """Tracks recent and open historical requests against ``rules``."""

    def __init__(self, rules: HistoricalPacing) -> None:
        self.rules = rules
        self._last_by_key: dict[RequestKey, float] = {}
        self._by_contract: dict[str, deque[float]] = {}
        self._recent: deque[float] = deque(maxlen=rules.max_requests)
        self._open: dict[RequestKey, int] = {}

    @property
    def open_requests(self) -> int:
        return sum(self._open.values())

    def delay_s(self, key: RequestKey, contract: str, now_s: float) -> float:
        """Seconds to wait before the request ``key`` for ``contract`` may start (0 = now)."""
        rules = self.rules
        delay = 0.0
        last = self._last_by_key.get(key)
        if last is not None:
            delay = max(delay, last + rules.identical_window_s - now_s)
        starts = self._by_contract.get(contract)
        if starts is not None and len(starts) >= rules.burst_max:
            delay = max(delay, starts[-rules.burst_max] + rules.burst_window_s - now_s)
        if len(self._recent) >= rules.max_requests:
            delay = max(delay, self._recent[-rules.max_requests] + rules.window_s - now_s)
        if self.open_requests >= rules.max_open:
            delay = max(delay, OPEN_POLL_S)
        return delay if delay > _EPS_S else 0.0

    def started(self, key: RequestKey, contract: str, now_s: float) -> None:
        """Record that the request ``key`` for ``contract`` was sent at ``now_s``."""
        self._last_by_key[key] = now_s
        starts = self._by_contract.get(contract)
        if starts is None:
            starts = self._by_contract[contract] = deque(maxlen=self.rules.burst_max)
        starts.append(now_s)
        self._recent.append(now_s)
        self._open[key] = self._open.get(key, 0) + 1
        self._forget(now_s)

    def finished(self, key: RequestKey) -> None:
        """Record that a request ``key`` was answered (or failed); unknown keys are ignored."""
        count = self._open.get(key, 0)
        if count <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] = count - 1

    def _forget(self, now_s: float) -> None:
        """Drop identical-request times that no longer matter (keeps memory bounded)."""
        horizon = now_s - self.rules.identical_window_s
        if len(self._last_by_key) > 4 * self.rules.max_requests:
            self._last_by_key = {k: t for k, t in self._last_by_key.items() if t > horizon}


def backoff_s(attempt: int, initial_s: float, max_s: float) -> float:
    """Wait before reconnect ``attempt`` (1 = after the first failure; 0 counts as 1):
    ``initial_s`` doubling per attempt, at most ``max_s``. No jitter: one client, one gateway."""
    if initial_s <= 0.0 or max_s <= 0.0:
        raise ValueError(f"backoff needs positive initial_s and max_s, got {initial_s}, {max_s}")
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    return float(min(initial_s * 2.0**doublings, max_s))


def retry_delay_s(attempt: int, rules: HistoricalPacing) -> float:
    """Wait before retrying a request IB refused for pacing (162): ``retry_backoff_s`` for the
    first retry (``attempt`` 0 or 1), doubling after, at most ``rules.window_s`` (by then the
    10-minute window has rolled over) and never below ``retry_backoff_s``."""
    cap_s = max(rules.window_s, rules.retry_backoff_s)
    return backoff_s(attempt, rules.retry_backoff_s, cap_s)
