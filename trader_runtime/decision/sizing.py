"""Target weights (signed fractions of equity) under the sizing rules and every cap.

``size_weights`` is the one place caps are applied; a Hypothesis test drives it with arbitrary
inputs and checks that no result breaks the per-position, gross or net cap and that a crash never
opens or enlarges a position.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.covariance import ledoit_wolf  # type: ignore[import-untyped]

from trader_runtime.decision import kernels
from trader_runtime.decision.arrays import finite_or_zero
from trader_runtime.decision.config import SizingConfig
from trader_runtime.market.regimes import Regime

FloatArray = npt.NDArray[np.float64]


_EPS = 1e-12


def shrunk_covariance(returns: FloatArray) -> FloatArray:
    """Ledoit-Wolf shrinkage covariance of ``returns`` (bars x symbols); NaN returns count as 0."""
    clean = np.nan_to_num(np.asarray(returns, dtype=np.float64), nan=0.0)
    covariance, _ = ledoit_wolf(clean)
    return np.asarray(covariance, dtype=np.float64)


def signal_weights(
    direction: FloatArray, confidence: FloatArray, regime: Regime, config: SizingConfig
) -> FloatArray:
    """``direction x base_fraction x regime multiplier x confidence``, capped per position."""
    multiplier = config.regime_multipliers[regime]
    return np.array(
        [
            kernels.signal_weight(
                float(d), float(c), config.base_fraction, multiplier, config.max_position_fraction
            )
            for d, c in zip(direction, confidence, strict=True)
        ]
    )


def correlation_penalised(
    desired: FloatArray, current: FloatArray, covariance: FloatArray | None, penalty: float
) -> FloatArray:
    """Shrink the part of each change that adds exposure correlated with the other holdings.

    For symbol i, ``c_i`` is the correlation of i with the rest of the current portfolio; when the
    added exposure points the same way (``sign(change) * c_i > 0``) the change is multiplied by
    ``1 - penalty * sign(change) * c_i``."""
    if covariance is None or penalty <= 0.0:
        return desired
    out = desired.copy()
    variances = np.clip(np.diag(covariance), 0.0, None)
    for i in range(len(desired)):
        change = desired[i] - current[i]
        adds = abs(desired[i]) > abs(current[i]) or np.sign(desired[i]) != np.sign(current[i])
        if change == 0.0 or not adds:
            continue
        rest = current.copy()
        rest[i] = 0.0
        rest_var = float(rest @ covariance @ rest)
        if rest_var <= _EPS or variances[i] <= _EPS:
            continue
        corr = float(covariance[i] @ rest) / np.sqrt(variances[i] * rest_var)
        aligned = float(np.sign(change)) * float(np.clip(corr, -1.0, 1.0))
        if aligned > 0.0:
            out[i] = current[i] + change * (1.0 - penalty * aligned)
    return out


def size_weights(
    desired: FloatArray,
    current: FloatArray,
    regime: Regime,
    config: SizingConfig,
    covariance: FloatArray | None = None,
) -> FloatArray:
    """Final target weights from the ``desired`` ones (already from ``signal_weights``, or the
    current weight where nothing was decided) and the ``current`` ones (position value / equity).

    Order: crash rule, correlation penalty, per-position cap, net cap, gross cap. Scaling down
    keeps every earlier rule true, so the result respects all of them."""
    desired = finite_or_zero(np.asarray(desired, dtype=np.float64))
    current = finite_or_zero(np.asarray(current, dtype=np.float64))
    if regime is Regime.CRASH:
        desired = kernels.no_new_exposure(desired, current)
    else:
        desired = correlation_penalised(desired, current, covariance, config.correlation_penalty)
    return kernels.capped(
        desired, config.max_position_fraction, config.max_net_fraction, config.max_gross_fraction
    )
