"""Execution schedules: how a parent order is split into child orders over bars.

``immediate`` sends the whole parent at the next bar; ``twap`` splits it evenly over ``slices``
bars; ``vwap`` splits it in proportion to the expected volume of those bars (the same bar of the
session in earlier sessions). Whole-share schedules distribute the rounding so the children add up
to the parent exactly.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from trader_runtime.decision.config import ExecutionConfig

FloatArray = npt.NDArray[np.float64]


def _split(total: float, fractions: FloatArray, fractional_shares: bool) -> FloatArray:
    cumulative = np.cumsum(fractions) * total
    if not fractional_shares:
        cumulative = np.trunc(np.round(cumulative, 9))
    cumulative[-1] = total
    return np.diff(np.concatenate(([0.0], cumulative)))


def twap_schedule(total: float, slices: int, fractional_shares: bool = False) -> FloatArray:
    """``slices`` child quantities of (nearly) equal size adding up to ``total``."""
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    return _split(total, np.full(slices, 1.0 / slices), fractional_shares)


def vwap_schedule(
    total: float, expected_volume: FloatArray, fractional_shares: bool = False
) -> FloatArray:
    """Child quantities in proportion to ``expected_volume`` per bar (TWAP where it is unknown)."""
    volume = np.nan_to_num(np.asarray(expected_volume, dtype=np.float64), nan=0.0)
    volume = np.clip(volume, 0.0, None)
    if volume.size == 0:
        raise ValueError("vwap needs at least one bar")
    weight_sum = float(volume.sum())
    if not math.isfinite(weight_sum) or weight_sum <= 0.0:
        return twap_schedule(total, volume.size, fractional_shares)
    return _split(total, volume / weight_sum, fractional_shares)


def child_schedule(
    total: float, config: ExecutionConfig, expected_volume: FloatArray | None = None
) -> FloatArray:
    """The children of a parent of ``total`` shares under ``config``."""
    if config.algo == "immediate":
        return np.array([total])
    if config.algo == "twap":
        return twap_schedule(total, config.slices, config.fractional_shares)
    profile = expected_volume if expected_volume is not None else np.full(config.slices, np.nan)
    return vwap_schedule(total, profile[: config.slices], config.fractional_shares)
