"""The state of the causal probability centring (the centred edge, directions, confidence and
multi-timeframe confirmation are computed in ``decision.kernels``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.config import SignalConfig

FloatArray = npt.NDArray[np.float64]


class ProbabilityCenter:
    """The causal centring of ``SignalConfig``: per symbol, the mean of its last
    ``center_window_bars`` probabilities, before the current one is added. Bounded memory: one
    ring buffer of ``window x n_symbols`` (``values``) with each symbol's ``count``, running
    ``total`` and next ``slot``; ``kernels.decide`` updates them in place."""

    def __init__(self, n_symbols: int, config: SignalConfig) -> None:
        self.min_bars = config.center_min_bars
        self.values = np.zeros((config.center_window_bars, n_symbols))
        self.count = np.zeros(n_symbols, dtype=np.int64)
        self.total = np.zeros(n_symbols)
        self.slot = np.zeros(n_symbols, dtype=np.int64)
