"""Small array helpers of the decision core."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def finite_or_zero(values: FloatArray) -> FloatArray:
    """NaN and infinities as 0 (much cheaper than ``np.nan_to_num`` on small arrays)."""
    return np.asarray(np.where(np.isfinite(values), values, 0.0), dtype=np.float64)
