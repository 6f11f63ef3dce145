"""Impact inputs from earlier sessions: daily volatility, average daily volume and the per-slot
volume profile that VWAP schedules follow.

One implementation for the backtest grid and the live market state: both call these functions
on the same numbers, so their values agree bit for bit. Every sum has a fixed order (or is exact),
never a rolling window's running total.

- A session's total volume is the exact sum of its bars' volumes (``session_volume``).
- ``daily_stats``: daily volatility is the sample standard deviation (ddof 1) of the last
  ``IMPACT_LOOKBACK_SESSIONS`` one-session log returns of the session closes (the last
  ``IMPACT_LOOKBACK_SESSIONS + 1`` closes), NaN with fewer than 2 returns; ADV is the mean total
  volume of the last ``IMPACT_LOOKBACK_SESSIONS`` sessions, NaN with none.
- ``slot_mean``: the expected volume of a session's bar at row ``slot`` (its index within the
  session) is the mean volume of that slot over the last ``IMPACT_LOOKBACK_SESSIONS`` earlier
  sessions that had it, NaN with none. ``slot_means_by_row`` is its vectorised batch form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

IMPACT_LOOKBACK_SESSIONS = 20


def session_volume(volumes: Sequence[float]) -> float:
    """Total volume of one session's bars, in shares: the exact (correctly rounded) sum, so it
    does not depend on the order of summation."""
    return math.fsum(volumes)


def daily_stats(closes_usd: Sequence[float], volumes: Sequence[float]) -> tuple[float, float]:
    """(daily_vol, adv_shares) of a session from the previous sessions' last closes and total
    volumes (oldest first; only the last ``IMPACT_LOOKBACK_SESSIONS + 1`` closes and the last
    ``IMPACT_LOOKBACK_SESSIONS`` volumes are used).

    ``daily_vol`` is the sample standard deviation (ddof 1) of the one-session log returns, NaN
    with fewer than two returns; ``adv_shares`` the mean session volume, NaN with no session."""
    n = IMPACT_LOOKBACK_SESSIONS
    closes = list(closes_usd)[-(n + 1) :]
    logs = [math.log(c) if c > 0.0 else math.nan for c in closes]
    returns = [b - a for a, b in pairwise(logs)]
    daily_vol = math.nan
    if len(returns) >= 2:
        mean = math.fsum(returns) / len(returns)
        variance = math.fsum((r - mean) * (r - mean) for r in returns) / (len(returns) - 1)
        daily_vol = math.sqrt(variance) if variance >= 0.0 else math.nan
    recent = list(volumes)[-n:]
    adv_shares = math.fsum(recent) / len(recent) if recent else math.nan
    return daily_vol, adv_shares


def slot_mean(volumes: Sequence[float]) -> float:
    """Mean of the last ``IMPACT_LOOKBACK_SESSIONS`` of ``volumes`` (oldest first; NaN if none):
    a plain left-to-right sum from 0.0, divided by the count."""
    n = len(volumes)
    if n == 0:
        return math.nan
    skip = n - IMPACT_LOOKBACK_SESSIONS
    total = 0.0
    for i, v in enumerate(volumes):
        if i >= skip:
            total += v
    return total / min(n, IMPACT_LOOKBACK_SESSIONS)


def slot_means_by_row(volumes: FloatArray, sessions: IntArray) -> FloatArray:
    """Expected volume of every bar of one symbol: ``slot_mean`` of the volumes of the same slot
    in the earlier sessions that had it (``volumes`` and ``sessions`` per bar in time order,
    ``sessions`` a non-decreasing session key; a bar's slot is its row index in its session).

    Equal, value for value, to calling ``slot_mean`` on each window: the window sums run in the
    same order (zeros added before the oldest value leave the sum unchanged)."""
    n_rows = int(volumes.shape[0])
    out = np.full(n_rows, np.nan)
    if n_rows == 0:
        return out
    starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])
    sizes = np.diff(np.r_[starts, n_rows])
    slot = np.arange(n_rows) - np.repeat(starts, sizes)
    order = np.lexsort((np.arange(n_rows), slot))  # by slot, then time
    ordered = volumes[order].astype(np.float64, copy=False)
    slot_sorted = slot[order]
    group_starts = np.flatnonzero(np.r_[True, slot_sorted[1:] != slot_sorted[:-1]])
    group_sizes = np.diff(np.r_[group_starts, n_rows])
    position = np.arange(n_rows) - np.repeat(group_starts, group_sizes)  # earlier sessions
    total = np.zeros(n_rows)
    for lag in range(IMPACT_LOOKBACK_SESSIONS, 0, -1):  # oldest first
        take = position >= lag
        total[take] += ordered[np.flatnonzero(take) - lag]
    count = np.minimum(position, IMPACT_LOOKBACK_SESSIONS)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    out[order] = means
    return out
