"""The market state's per-instant loop, compiled: every symbol's features, the market index, the
breadth and the regime of one instant in one call (``MarketState.update``'s single entry).

On this machine's cold bars each Python line and each NumPy or numba entry costs several times
what it costs warm; the loop that made a dozen of them per symbol is now one. The arithmetic is
the streaming classes' own, so the values are bit for bit theirs: the market index is
``streaming_kernels.market_index_step`` (as ``StreamingMarketIndex`` steps it), the breadth SMA
Polars' ``rolling_mean`` (``rolling_mean_step``), then ``streaming_kernels.step_bar`` per symbol
and ``regime_kernels.step`` for the regime.

State, all in arrays that pickle exactly (the engine's checkpoint):

- ``symbol_f`` (``N_SYMBOL_FLOATS``, n): the previous log close and the SMA's running sum with
  its two Kahan compensations; ``symbol_i`` (``N_SYMBOL_INTS``, n): whether there is a previous
  close, and the SMA window's fill count and next slot (rows, so each is contiguous);
- ``breadth_values`` (n, window): the SMA windows as rings;
- ``index_f`` (``N_INDEX``): the index's cumulative log return and whether it started.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from trader_runtime.decision import regime_kernels as rk
from trader_runtime.features import streaming_kernels as sk

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_jit = njit(cache=True, error_model="numpy")

S_PREV_LOG, S_SUM, S_ERR_ADD, S_ERR_SUB = range(4)
N_SYMBOL_FLOATS = 4
S_HAS_PREV, S_COUNT, S_NEXT = range(3)
N_SYMBOL_INTS = 3
I_CUM, I_STARTED = range(2)
N_INDEX = 2

NO_BARS = -1  # ``step_instant``'s rule when no symbol had a bar (the regime stays)
BAD_LEVEL = -2  # ... when the index level is not finite and positive (refused)


def new_state(n_symbols: int, window: int) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
    """Fresh ``(symbol_f, symbol_i, breadth_values, index_f)`` for ``n_symbols`` and an SMA of
    ``window`` bars."""
    return (
        np.zeros((N_SYMBOL_FLOATS, n_symbols)),
        np.zeros((N_SYMBOL_INTS, n_symbols), dtype=np.int64),
        np.zeros((n_symbols, max(window, 1))),
        np.zeros(N_INDEX),
    )


@_jit
def rolling_mean_step(
    values: FloatArray, symbol_f: FloatArray, symbol_i: IntArray, j: int, x: float
) -> float:
    """Polars' ``rolling_mean(window)`` of symbol ``j`` one value at a time (NaN until the window
    is full): a sliding sum with separate Kahan compensations for the values added and
    subtracted; a window of one restarts the sum (Polars does when windows do not overlap)."""
    window = values.shape[1]
    if window == 1:
        return x / 1.0
    count = symbol_i[S_COUNT, j]
    slot = symbol_i[S_NEXT, j]  # the oldest value once the window is full
    if count == window:
        y = -values[j, slot] - symbol_f[S_ERR_SUB, j]
        total = symbol_f[S_SUM, j] + y
        symbol_f[S_ERR_SUB, j] = (total - symbol_f[S_SUM, j]) - y
        symbol_f[S_SUM, j] = total
    y = x - symbol_f[S_ERR_ADD, j]
    total = symbol_f[S_SUM, j] + y
    symbol_f[S_ERR_ADD, j] = (total - symbol_f[S_SUM, j]) - y
    symbol_f[S_SUM, j] = total
    values[j, slot] = x
    symbol_i[S_NEXT, j] = (slot + 1) % window
    if count < window:
        count += 1
        symbol_i[S_COUNT, j] = count
    return total / window if count == window else math.nan


@_jit
def step_instant(
    program: IntArray,
    graphs: IntArray,
    columns: IntArray,
    feature_f: FloatArray,
    feature_n: IntArray,
    ohlcv: FloatArray,
    ts_us: int,
    open_us: int,
    close_us: int,
    symbol_f: FloatArray,
    symbol_i: IntArray,
    breadth_values: FloatArray,
    index_f: FloatArray,
    regime_f: FloatArray,
    regime_n: IntArray,
    trend_columns: IntArray,
) -> tuple[FloatArray, FloatArray, BoolArray, int]:
    """One instant of the universe. ``ohlcv`` (5, n) holds the bars (NaN close: no bar);
    ``feature_f``/``feature_n`` (n, ...) each symbol's feature state for the shared program;
    ``trend_columns`` (k,) the feature column of each confirmation trend (-1: not applicable).

    Returns ``(features (n, n_features), trends (n, k), has_bar (n,), rule)``: NaN where a symbol
    has no bar; ``rule`` is ``regime_kernels.step``'s, or ``NO_BARS`` / ``BAD_LEVEL``."""
    n = ohlcv.shape[1]
    features = np.full((n, columns.shape[0]), math.nan)
    trends = np.full((n, trend_columns.shape[0]), math.nan)
    has_bar = np.zeros(n, dtype=np.bool_)
    m = 0
    for j in range(n):
        has_bar[j] = not math.isnan(ohlcv[3, j])
        m += has_bar[j]
    if m == 0:
        return features, trends, has_bar, NO_BARS
    closes = np.empty(m)
    slots = np.empty(m, dtype=np.int64)
    k = 0
    for j in range(n):
        if has_bar[j]:
            closes[k] = ohlcv[3, j]
            slots[k] = j
            k += 1
    market_return, level = sk.market_index_step(
        closes, slots, symbol_f[S_PREV_LOG], symbol_i[S_HAS_PREV], index_f
    )
    above = 0
    counted = 0
    for j in range(n):
        if not has_bar[j]:
            continue
        close = ohlcv[3, j]
        sk.step_bar(
            program,
            graphs,
            columns,
            feature_f[j],
            feature_n[j],
            ohlcv[0, j],
            ohlcv[1, j],
            ohlcv[2, j],
            close,
            ohlcv[4, j],
            market_return,
            level,
            ts_us,
            open_us,
            close_us,
            features[j],
        )
        sma = rolling_mean_step(breadth_values, symbol_f, symbol_i, j, close)
        if not math.isnan(sma):
            counted += 1
            if close > sma:
                above += 1
    for c in range(trend_columns.shape[0]):
        column = trend_columns[c]
        if column >= 0:
            for j in range(n):
                trends[j, c] = features[j, column]
    if not (math.isfinite(level) and level > 0.0):
        return features, trends, has_bar, BAD_LEVEL
    breadth = above / counted if counted else math.nan
    return features, trends, has_bar, rk.step(regime_f, regime_n, level, breadth)
