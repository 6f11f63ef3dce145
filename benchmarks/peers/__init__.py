"""Peer backtesting engines for the ``backtest`` benchmark, one module per engine.

Every peer runs the same strategy (:class:`StrategySpec`) on the same bars (:class:`BarPanel`) and
returns an :class:`EngineRun`. The peer modules import their engine at module level, so the
benchmark imports them lazily (``importlib``) and reports a peer whose engine is not installed as
unavailable: the main virtualenv has none of them; ``.venv-bench`` (the ``bench`` extra) has all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BAR_NS = 60_000_000_000
"""Length of a one-minute bar in nanoseconds: a bar opens ``BAR_NS`` before its close stamp."""


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """SMA(fast) / SMA(slow) crossover on close, long-only, with costs every engine can express.

    At bar ``t``'s close the signal is ``weight`` if SMA(fast) > SMA(slow) (both defined), else
    0. When the signal changes, each engine places one order at bar ``t + 1``'s open for
    ``signal x equity at that open / open`` shares minus the position, truncated toward zero to
    whole shares (an entry from flat or an exit to flat); between changes the position is held,
    not rebalanced. Fills are at ``open x (1 +/- half_spread)``; commission is ``commission_bps``
    of the fill's value. No minimums, no impact, no volume cap.
    """

    fast_bars: int = 10
    slow_bars: int = 50
    weight: float = 0.5
    commission_bps: float = 1.0
    half_spread_bps: float = 1.0
    initial_cash_usd: float = 100_000.0

    @property
    def commission_rate(self) -> float:
        """Commission as a fraction of traded value."""
        return self.commission_bps / 1e4

    @property
    def slippage_rate(self) -> float:
        """Half-spread as a fraction of the open price."""
        return self.half_spread_bps / 1e4


@dataclass(frozen=True, slots=True)
class BarPanel:
    """The same one-minute bars for every engine: arrays of shape (n_bars, n_symbols).

    ``ts_close_ns`` is the UTC close instant of each bar (nanoseconds since the epoch), shared by
    every symbol.
    """

    symbols: tuple[str, ...]
    ts_close_ns: IntArray
    open_usd: FloatArray
    high_usd: FloatArray
    low_usd: FloatArray
    close_usd: FloatArray
    volume: FloatArray

    @property
    def n_bars(self) -> int:
        """Bars per symbol."""
        return int(self.ts_close_ns.shape[0])

    @property
    def total_bars(self) -> int:
        """Bars over all symbols: what ``bars_per_s`` counts."""
        return self.n_bars * len(self.symbols)


@dataclass(frozen=True, slots=True)
class EngineRun:
    """One engine's run of the strategy over a panel, one independent portfolio per symbol."""

    engine: str
    version: str
    wall_s: float
    total_bars: int
    final_equity_usd: tuple[float, ...]
    n_fills: int
    timed: str
    """What ``wall_s`` covers, in words."""

    @property
    def bars_per_s(self) -> float:
        return self.total_bars / self.wall_s

    @property
    def total_final_equity_usd(self) -> float:
        """Final equity summed over the symbols' portfolios."""
        return float(sum(self.final_equity_usd))
