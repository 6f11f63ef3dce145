"""From model probabilities to directions, confidence and multi-timeframe confirmation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.arrays import finite_or_zero
from trader_runtime.decision.config import SignalConfig

FloatArray = npt.NDArray[np.float64]

BoolArray = npt.NDArray[np.bool_]


class ProbabilityCenter:
    """The causal centring of ``SignalConfig``: per symbol, the mean of its last
    ``center_window_bars`` probabilities, before the current one is added. Bounded memory: one
    ring buffer of ``window x n_symbols``."""

    def __init__(self, n_symbols: int, config: SignalConfig) -> None:
        self._window = config.center_window_bars
        self._min = config.center_min_bars
        self._values = np.zeros((self._window, n_symbols))
        self._count = np.zeros(n_symbols, dtype=np.int64)
        self._sum = np.zeros(n_symbols)
        self._slot = np.zeros(n_symbols, dtype=np.int64)

    def edge(self, probabilities: FloatArray) -> FloatArray:
        """``probability - mean of the previous probabilities`` per symbol (NaN where there is no
        probability or fewer than ``center_min_bars`` previous ones); then remember them."""
        p = np.asarray(probabilities, dtype=np.float64)
        known = np.isfinite(p)
        n_prev = np.minimum(self._count, self._window)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._sum / n_prev
        edge = np.where(known & (n_prev >= self._min), p - mean, np.nan)
        for i in np.flatnonzero(known):
            slot = self._slot[i]
            if self._count[i] >= self._window:
                self._sum[i] -= self._values[slot, i]
            self._values[slot, i] = p[i]
            self._sum[i] += p[i]
            self._count[i] += 1
            self._slot[i] = (slot + 1) % self._window
        return edge


def directions(edge: FloatArray, config: SignalConfig) -> FloatArray:
    """+1 long, -1 short (if allowed), 0 none, from the centred probability."""
    out = np.zeros(edge.shape)
    with np.errstate(invalid="ignore"):
        out[edge >= config.entry_edge] = 1.0
        if config.allow_short:
            out[edge <= -config.entry_edge] = -1.0
    return out


def confidence_scale(edge: FloatArray, config: SignalConfig) -> FloatArray:
    """``|edge| / full_confidence_edge`` capped at ``max_confidence_multiple`` (0 where unknown)."""
    scale = np.abs(finite_or_zero(edge)) / config.full_confidence_edge
    return np.minimum(scale, config.max_confidence_multiple)


def confirmed(direction: FloatArray, trends: FloatArray, applicable: BoolArray) -> BoolArray:
    """True where every applicable timeframe's trend has the sign of ``direction``.

    ``trends`` and ``applicable`` are ``(n_symbols, n_timeframes)``; an unknown (NaN) applicable
    trend does not confirm. With no timeframes every direction is confirmed; no direction never is."""
    if trends.shape[1] == 0:
        return np.asarray(direction != 0.0, dtype=bool)
    with np.errstate(invalid="ignore"):
        agree = np.sign(trends) == direction[:, None]
    return np.asarray(np.all(agree | ~applicable, axis=1) & (direction != 0.0), dtype=bool)
