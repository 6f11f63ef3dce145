"""From model probabilities to a centred edge (the directions, confidence and multi-timeframe
confirmation that follow are in ``decision.kernels.signals``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trader_runtime.decision import kernels
from trader_runtime.decision.config import SignalConfig

FloatArray = npt.NDArray[np.float64]


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
        return kernels.centred_edges(p, self._values, self._count, self._sum, self._slot, self._min)
