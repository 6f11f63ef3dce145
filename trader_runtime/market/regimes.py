"""Market regimes: the five states the decision core sizes, stops and confirms by."""

from __future__ import annotations

from enum import StrEnum


class Regime(StrEnum):
    """A market regime; the values are what assets and reports show."""

    BULL = "bull"
    BEAR = "bear"
    VOLATILE = "volatile"
    RANGING = "ranging"
    CRASH = "crash"


REGIME_ORDER: tuple[Regime, ...] = tuple(Regime)
"""Bull, bear, volatile, ranging, crash: the order of per-regime tables and matrices."""
