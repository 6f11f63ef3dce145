"""The hot path's scalar helpers give NumPy's results bit for bit (they replace NumPy calls on
Python floats, which cost a microsecond or more each)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trader_runtime.trading.book import sign
from trader_runtime.trading.orders import clip

_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, math.nan]
)


def _identical(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    )


@settings(max_examples=2000)
@given(_FLOATS, _FLOATS)
def test_clip_is_numpys_clip_between_zero_and_the_remaining_quantity(
    wanted: float, remaining: float
) -> None:
    lo, hi = min(0.0, remaining), max(0.0, remaining)
    assert _identical(clip(wanted, lo, hi), float(np.clip(wanted, lo, hi)))


@settings(max_examples=2000)
@given(_FLOATS, _FLOATS)
def test_clip_is_numpys_clip_for_any_ordered_bounds(x: float, bound: float) -> None:
    lo, hi = (bound, abs(bound)) if bound <= abs(bound) else (abs(bound), bound)
    assert _identical(clip(x, lo, hi), float(np.clip(x, lo, hi)))


@given(_FLOATS)
def test_sign_is_numpys_sign(x: float) -> None:
    assert _identical(sign(x), float(np.sign(x)))
