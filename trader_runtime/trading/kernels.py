"""Compiled per-bar loops of the book and the risk engine (numba): marks, equity and the closes
the price band compares. Results are NumPy's bit for bit (sums in NumPy's pairwise order)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from trader_runtime.decision.kernels import pairwise_sum

FloatArray = npt.NDArray[np.float64]

_jit = njit(cache=True, error_model="numpy")


@_jit
def mark_to(closes: FloatArray, mark: FloatArray, position: FloatArray, cash_usd: float) -> float:
    """Take the positive ``closes`` as the new ``mark`` (in place) and return cash plus the
    positions valued at the marks."""
    n = closes.shape[0]
    held = np.empty(n)
    for i in range(n):
        if closes[i] > 0.0:
            mark[i] = closes[i]
        held[i] = position[i] * mark[i] if position[i] != 0.0 else 0.0
    return cash_usd + pairwise_sum(held)


@_jit
def value_at(prices: FloatArray, mark: FloatArray, position: FloatArray, cash_usd: float) -> float:
    """Cash plus the positions valued at ``prices`` (the mark where a price is missing)."""
    n = prices.shape[0]
    held = np.empty(n)
    m = 0
    for i in range(n):
        if position[i] != 0.0:
            held[m] = position[i] * (prices[i] if prices[i] > 0.0 else mark[i])
            m += 1
    return cash_usd + pairwise_sum(held[:m])


@_jit
def track_closes(closes: FloatArray, last: FloatArray, prev: FloatArray) -> None:
    """Where a symbol has a close: its last close becomes the previous one and the close the
    last (in place)."""
    for i in range(closes.shape[0]):
        if math.isfinite(closes[i]):
            prev[i] = last[i]
            last[i] = closes[i]


@_jit
def gross_without(positions: FloatArray, marks: FloatArray, j: int) -> float:
    """The book's gross exposure at the marks (USD) without symbol ``j``: the sum (NumPy's
    order) of every held position's absolute value, minus ``j``'s."""
    n = positions.shape[0]
    held = np.empty(n)
    for i in range(n):
        held[i] = abs(positions[i] * marks[i]) if positions[i] != 0.0 else 0.0
    return pairwise_sum(held) - float(held[j])
