"""The decision core's per-bar loops, compiled with numba: one pass over the symbols instead of a
few dozen NumPy calls on small arrays (a NumPy call costs about a microsecond whatever its size,
which is most of a one-symbol bar).

The results are NumPy's bit for bit: the same IEEE operations in the same order, ``sign``,
``clip`` and ``minimum`` as NumPy defines them on floats, and every sum in NumPy's pairwise order
(``pairwise_sum``). Logarithms stay in NumPy (the C library's ``log`` that numba calls may differ
in the last bit). Reasons are small integers, named by ``REASONS``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from trader_runtime.market.regimes import REGIME_ORDER, Regime

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

_jit = njit(cache=True, error_model="numpy")

NO_REASON, STOP, TARGET, EXPIRY, REBALANCE, ENTRY = 0, 1, 2, 3, 4, 5
REASONS: tuple[str | None, ...] = (None, "stop", "target", "expiry", "rebalance", "entry")

# the settings array of ``signals``, ``decide`` and ``finish`` (``DecisionCore`` fills it)
(
    P_ENTRY_EDGE,
    P_ALLOW_SHORT,
    P_CONFIRM,
    P_STOPS,
    P_HOLDING_BARS,
    P_BASE_FRACTION,
    P_FULL_EDGE,
    P_MAX_MULTIPLE,
    P_CAP,
    P_MAX_NET,
    P_MAX_GROSS,
    P_BAND,
    P_PENALTY,
    P_CENTER_MIN_BARS,
) = range(14)
N_PARAMS = 14
CRASH = REGIME_ORDER.index(Regime.CRASH)  # the regimes are codes in ``REGIME_ORDER``
N_REGIMES = len(REGIME_ORDER)
# ``decide``'s settings: the ``P_*`` parameters, then per regime (``REGIME_ORDER``) the sizing
# multiplier, the stop level and the target level (percent)
S_MULTIPLIERS = N_PARAMS
S_STOP_PCT = S_MULTIPLIERS + N_REGIMES
S_TARGET_PCT = S_STOP_PCT + N_REGIMES
N_SETTINGS = S_TARGET_PCT + N_REGIMES
# ``decide``'s per-symbol state, rows of a (rows, n) float array and a (rows, n) int array: the
# last finite close, the probability centring's running total, the side of the signal held, and
# the current and desired weights of the last bar (read back when ``decide`` leaves the
# correlation penalty to its caller); the centring's count and next slot, each position's
# holding expiry (bar index) and its regime at entry
F_LAST_CLOSE, F_CENTER_TOTAL, F_SIDE, F_CURRENT, F_DESIRED = range(5)
N_FLOAT_ROWS = 5
I_CENTER_COUNT, I_CENTER_SLOT, I_EXPIRY, I_ENTRY_REGIME = range(4)
N_INT_ROWS = 4

_PAIRWISE_BLOCK = 128  # NumPy's PW_BLOCKSIZE


@_jit
def _block_sum(a: FloatArray, start: int, n: int) -> float:
    """NumPy's ``pairwise_sum`` of ``a[start:start + n]`` for ``n <= 128`` (eight partial sums)."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = 8
    end = n - n % 8
    while i < end:
        j = start + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[start + i]
        i += 1
    return float(res)


@_jit
def _pairwise(a: FloatArray, start: int, n: int) -> float:
    """NumPy's ``pairwise_sum``: blocks of up to 128 summed by ``_block_sum``; a longer range is
    split in two (the first half a multiple of 8) and the halves' sums added. The recursion runs
    on an explicit stack (numba's cache cannot hold recursive functions)."""
    if n <= _PAIRWISE_BLOCK:
        return _block_sum(a, start, n)
    starts = np.empty(64, dtype=np.int64)
    sizes = np.empty(64, dtype=np.int64)
    stages = np.empty(64, dtype=np.int64)  # 0: left half next, 1: right half next, 2: add them
    sums = np.empty(64)
    top, held = 0, 0
    starts[0], sizes[0], stages[0] = start, n, 0
    while top >= 0:
        s, m = starts[top], sizes[top]
        if m <= _PAIRWISE_BLOCK:
            sums[held] = _block_sum(a, s, m)
            held += 1
            top -= 1
            continue
        half = m // 2
        half -= half % 8
        stage = stages[top]
        stages[top] = stage + 1
        if stage == 0:
            top += 1
            starts[top], sizes[top], stages[top] = s, half, 0
        elif stage == 1:
            top += 1
            starts[top], sizes[top], stages[top] = s + half, m - half, 0
        else:
            held -= 1
            sums[held - 1] = sums[held - 1] + sums[held]
            top -= 1
    return float(sums[0])


@_jit
def pairwise_sum(a: FloatArray) -> float:
    """``float(a.sum())`` of a contiguous 1-D float64 array, in NumPy's pairwise order. NumPy's
    reduction starts from its identity, +0.0, so a sum of negative zeros is +0.0 (the unrolled
    block alone would give -0.0); adding +0.0 changes no other result."""
    return 0.0 + _pairwise(a, 0, a.shape[0])


@_jit
def sign(x: float) -> float:
    """``np.sign`` of a float: 1, -1, 0 (for either zero) or NaN."""
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    if x == 0.0:
        return 0.0
    return x


@_jit
def clip(x: float, lo: float, hi: float) -> float:
    """``np.clip`` of a float (NaN stays NaN)."""
    if math.isnan(x):
        return x
    v = x if x > lo else lo
    return v if v < hi else hi


@_jit
def finite_or_zero(x: float) -> float:
    return x if math.isfinite(x) else 0.0


@_jit
def observe_returns(
    close: FloatArray, last_close: FloatArray, returns: FloatArray, row: int
) -> None:
    """Row ``row`` of ``returns`` takes each symbol's one-bar log return: ``log(close /
    last_close)`` where that ratio is finite and positive, else exactly 0.0; then ``last_close``
    takes the finite closes."""
    for i in range(close.shape[0]):
        ratio = close[i] / last_close[i]
        returns[row, i] = math.log(ratio) if ratio > 0.0 and ratio < math.inf else 0.0
        if math.isfinite(close[i]):
            last_close[i] = close[i]


@_jit
def centred_edges(
    probability: FloatArray,
    values: npt.NDArray[np.float64],
    count: IntArray,
    total: FloatArray,
    slot: IntArray,
    min_bars: int,
) -> FloatArray:
    """``probability - mean of the previous ones`` per symbol (NaN without a probability or with
    fewer than ``min_bars`` previous ones), then the probabilities join the ring buffer
    ``values`` (window x n) with their running ``total``, ``count`` and next ``slot``."""
    window = values.shape[0]
    n = probability.shape[0]
    edge = np.empty(n)
    for i in range(n):
        p = probability[i]
        known = math.isfinite(p)
        n_prev = min(count[i], window)
        if known and n_prev >= min_bars:
            edge[i] = p - total[i] / n_prev
        else:
            edge[i] = math.nan
        if known:
            s = slot[i]
            if count[i] >= window:
                total[i] -= values[s, i]
            values[s, i] = p
            total[i] += p
            count[i] += 1
            slot[i] = (s + 1) % window
    return edge


@_jit
def stop_target(
    side: float, entry_usd: float, stop_pct: float, target_pct: float
) -> tuple[float, float]:
    """(stop, target) prices of a position on ``side`` (+1 long, -1 short) entered at
    ``entry_usd`` with levels ``stop_pct`` and ``target_pct`` (percent)."""
    stop = entry_usd * (1.0 - side * stop_pct / 100.0)
    target = entry_usd * (1.0 + side * target_pct / 100.0)
    return stop, target


@_jit
def exit_code(
    side: float, stop_usd: float, target_usd: float, high_usd: float, low_usd: float
) -> int:
    """``STOP`` or ``TARGET`` when the bar's range reached a level (the stop wins when a bar
    reaches both: the pessimistic reading of one bar), else ``NO_REASON``."""
    if side > 0:
        if low_usd <= stop_usd:
            return STOP
        if high_usd >= target_usd:
            return TARGET
    elif side < 0:
        if high_usd >= stop_usd:
            return STOP
        if low_usd <= target_usd:
            return TARGET
    return NO_REASON


@_jit
def confidence(edge: float, full_edge: float, max_multiple: float) -> float:
    """``|edge| / full_edge`` capped at ``max_multiple`` (0 where the edge is unknown)."""
    scale = abs(finite_or_zero(edge)) / full_edge
    return scale if scale <= max_multiple else max_multiple


@_jit
def signal_weight(
    direction: float, confidence: float, base_fraction: float, multiplier: float, cap: float
) -> float:
    """``direction x base_fraction x regime multiplier x confidence``, capped per position."""
    raw = direction * base_fraction * multiplier * confidence
    return clip(finite_or_zero(raw), -cap, cap)


@_jit
def signals(
    bar_index: int,
    close: FloatArray,
    high: FloatArray,
    low: FloatArray,
    edge: FloatArray,
    trends: FloatArray,
    applicable: BoolArray,
    regime: int,
    equity_usd: float,
    committed: FloatArray,
    position: FloatArray,
    avg_entry: FloatArray,
    last_close: FloatArray,
    side_state: FloatArray,
    expiry: IntArray,
    entry_regime: IntArray,
    params: FloatArray,
    multipliers: FloatArray,
    stop_pct: FloatArray,
    target_pct: FloatArray,
) -> tuple[FloatArray, BoolArray, BoolArray, FloatArray, FloatArray, IntArray]:
    """Directions, confirmation, exits of what is held and new or renewed signals of one bar.

    Returns ``(direction, confirmed, has_bar, current, desired, reasons)``: ``current`` is the
    committed weight at this bar's price, ``desired`` the weight wanted before the sizing rules.
    Updates each symbol's ``side_state``, holding ``expiry`` and ``entry_regime``. ``params``
    holds the settings (``P_*``), ``multipliers`` the sizing multiplier of each regime and
    ``stop_pct``/``target_pct`` the stop levels of each regime (``REGIME_ORDER``)."""
    entry_edge = params[P_ENTRY_EDGE]
    allow_short = params[P_ALLOW_SHORT] != 0.0
    confirm = params[P_CONFIRM] != 0.0
    stops = params[P_STOPS] != 0.0
    holding_bars = np.int64(params[P_HOLDING_BARS])
    base_fraction = params[P_BASE_FRACTION]
    multiplier = multipliers[regime]
    full_edge = params[P_FULL_EDGE]
    max_multiple = params[P_MAX_MULTIPLE]
    cap = params[P_CAP]
    n = close.shape[0]
    k = trends.shape[1]
    direction = np.zeros(n)
    ok = np.zeros(n, dtype=np.bool_)
    has_bar = np.zeros(n, dtype=np.bool_)
    current = np.empty(n)
    desired = np.empty(n)
    reasons = np.zeros(n, dtype=np.int64)
    blocked = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        e = edge[i]
        d = 0.0
        if e >= entry_edge:
            d = 1.0
        if allow_short and e <= -entry_edge:
            d = -1.0
        direction[i] = d
        agreed = d != 0.0
        if confirm and agreed:
            for c in range(k):
                if applicable[i, c] and sign(trends[i, c]) != d:  # NaN never agrees
                    agreed = False
                    break
        ok[i] = agreed
        has_bar[i] = math.isfinite(close[i])
        price = close[i] if has_bar[i] else last_close[i]
        current[i] = finite_or_zero(committed[i] * price / equity_usd)
        desired[i] = current[i]

    # stops, targets and expiry of what is held
    for i in range(n):
        side = sign(position[i])
        if not has_bar[i] or side == 0.0:
            continue
        hit = NO_REASON
        if stops and math.isfinite(avg_entry[i]):
            r = entry_regime[i]
            stop, target = stop_target(side, avg_entry[i], stop_pct[r], target_pct[r])
            hit = exit_code(side, stop, target, high[i], low[i])
        if hit == NO_REASON and bar_index >= expiry[i] and not (ok[i] and direction[i] == side):
            hit = EXPIRY
        if hit != NO_REASON:
            desired[i] = 0.0
            reasons[i] = hit
            blocked[i] = True
            side_state[i] = 0.0

    # new and renewed signals
    for i in range(n):
        if not (has_bar[i] and ok[i] and not blocked[i]):
            continue
        d = direction[i]
        scale = confidence(edge[i], full_edge, max_multiple)
        weight = signal_weight(d, scale, base_fraction, multiplier, cap)
        if sign(current[i]) == d:
            expiry[i] = bar_index + holding_bars
            if regime != CRASH:
                desired[i] = weight
                reasons[i] = REBALANCE
            continue
        if regime == CRASH:
            continue  # no new positions in a crash
        desired[i] = weight
        reasons[i] = ENTRY
        side_state[i] = d
        expiry[i] = bar_index + holding_bars
        entry_regime[i] = regime
    return direction, ok, has_bar, current, desired, reasons


@_jit
def no_new_exposure(desired: FloatArray, current: FloatArray) -> FloatArray:
    """A crash: keep, reduce or close positions, never open, enlarge or flip one."""
    n = desired.shape[0]
    out = np.empty(n)
    for i in range(n):
        d, c = desired[i], current[i]
        if sign(d) == sign(c):
            a, b = abs(d), abs(c)
            out[i] = sign(c) * (a if a <= b or math.isnan(a) else b)
        else:
            out[i] = 0.0
    return out


@_jit
def capped(desired: FloatArray, cap: float, max_net: float, max_gross: float) -> FloatArray:
    """The per-position, net and gross caps, in that order, then a margin of 1e-12 so no weight
    is above a cap by a rounding error. Scaling down keeps every earlier cap true."""
    n = desired.shape[0]
    w = np.empty(n)
    for i in range(n):
        w[i] = clip(desired[i], -cap, cap)
    net = pairwise_sum(w)
    if abs(net) > max_net:
        dominant = np.empty(n)
        m = 0
        for i in range(n):
            if (w[i] > 0.0) if net > 0 else (w[i] < 0.0):
                dominant[m] = abs(w[i])
                m += 1
        excess = pairwise_sum(dominant[:m])
        factor = (excess - (abs(net) - max_net)) / excess
        factor = factor if factor > 0.0 else 0.0  # Python's max(0.0, x)
        for i in range(n):
            if (w[i] > 0.0) if net > 0 else (w[i] < 0.0):
                w[i] = w[i] * factor
    magnitudes = np.empty(n)
    for i in range(n):
        magnitudes[i] = abs(w[i])
    gross = pairwise_sum(magnitudes)
    if gross > max_gross:
        scale = max_gross / gross
        for i in range(n):
            w[i] = w[i] * scale
    for i in range(n):
        w[i] = w[i] * (1.0 - 1e-12)
    return w


@_jit
def targets(
    final: FloatArray,
    current: FloatArray,
    has_bar: BoolArray,
    reasons: IntArray,
    cap: float,
    max_net: float,
    max_gross: float,
    band: float,
) -> FloatArray:
    """The weights that go out (NaN elsewhere): a symbol with a bar is re-targeted when it
    closes, flips or opens a position, sits beyond the position cap, or moves by at least the
    rebalance ``band`` (by any amount when the book drifted beyond the gross or net cap by more
    than the band). Updates ``reasons`` to match."""
    n = final.shape[0]
    magnitudes = np.empty(n)
    for i in range(n):
        magnitudes[i] = abs(current[i])
    over_caps = (
        pairwise_sum(magnitudes) > max_gross + band or abs(pairwise_sum(current)) > max_net + band
    )
    threshold = 0.0 if over_caps else band
    out = np.full(n, math.nan)
    for i in range(n):
        if not has_bar[i]:
            continue
        new, old = final[i], current[i]
        closes = new == 0.0 and old != 0.0
        flips = new != 0.0 and old != 0.0 and sign(new) != sign(old)
        opens = old == 0.0 and new != 0.0
        beyond_cap = abs(old) > cap + band
        if closes or flips or opens or beyond_cap or abs(new - old) >= threshold:
            out[i] = new
            if reasons[i] == NO_REASON:
                reasons[i] = REBALANCE
            elif reasons[i] == REBALANCE and opens:
                reasons[i] = ENTRY
        else:
            reasons[i] = NO_REASON
    return out


@_jit
def finish(
    desired: FloatArray,
    current: FloatArray,
    has_bar: BoolArray,
    reasons: IntArray,
    params: FloatArray,
) -> FloatArray:
    """The caps on ``desired`` (``capped``), then the weights that go out (``targets``)."""
    final = capped(desired, params[P_CAP], params[P_MAX_NET], params[P_MAX_GROSS])
    return targets(
        final,
        current,
        has_bar,
        reasons,
        params[P_CAP],
        params[P_MAX_NET],
        params[P_MAX_GROSS],
        params[P_BAND],
    )


@_jit
def decide(
    bar_index: int,
    close: FloatArray,
    high: FloatArray,
    low: FloatArray,
    probability: FloatArray,
    trends: FloatArray,
    applicable: BoolArray,
    regime: int,
    equity_usd: float,
    committed: FloatArray,
    position: FloatArray,
    avg_entry: FloatArray,
    state: FloatArray,
    counters: IntArray,
    center_values: FloatArray,
    returns: FloatArray,
    returns_row: int,
    settings: FloatArray,
) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray, IntArray, bool]:
    """One bar of the decision core, in one call: the bar's log returns into row
    ``returns_row`` of the ``returns`` window (``observe_returns``), the centred edges, then
    ``signals``, the crash rule and ``finish``.

    ``state``/``counters`` are the per-symbol rows (``F_*``, ``I_*``), ``center_values`` the
    centring's ring (window x n), ``settings`` the ``P_*`` parameters and the per-regime levels
    (``S_*``). Returns ``(edge, direction, confirmed, targets, reasons, done)``; when ``done`` is
    False the correlation penalty may apply: the caller penalises ``state[F_DESIRED]`` against
    ``state[F_CURRENT]`` and calls ``finish`` (``targets`` is then empty)."""
    params = settings[:N_PARAMS]
    last_close = state[F_LAST_CLOSE]
    observe_returns(close, last_close, returns, returns_row)
    edge = centred_edges(
        probability,
        center_values,
        counters[I_CENTER_COUNT],
        state[F_CENTER_TOTAL],
        counters[I_CENTER_SLOT],
        int(params[P_CENTER_MIN_BARS]),
    )
    direction, ok, has_bar, current, desired, reasons = signals(
        bar_index,
        close,
        high,
        low,
        edge,
        trends,
        applicable,
        regime,
        equity_usd,
        committed,
        position,
        avg_entry,
        last_close,
        state[F_SIDE],
        counters[I_EXPIRY],
        counters[I_ENTRY_REGIME],
        params,
        settings[S_MULTIPLIERS:S_STOP_PCT],
        settings[S_STOP_PCT:S_TARGET_PCT],
        settings[S_TARGET_PCT:N_SETTINGS],
    )
    if regime == CRASH:
        desired = no_new_exposure(desired, current)
    elif params[P_PENALTY] > 0.0 and current.shape[0] > 1:
        for i in range(current.shape[0]):
            if current[i] != 0.0:  # something held: the penalty may act
                state[F_CURRENT] = current
                state[F_DESIRED] = desired
                return edge, direction, ok, np.empty(0), reasons, False
    out = finish(desired, current, has_bar, reasons, params)
    return edge, direction, ok, out, reasons, True
