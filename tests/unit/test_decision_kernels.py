"""The compiled decision loops keep NumPy's results bit for bit: sums in NumPy's pairwise order,
``sign`` and ``clip`` as NumPy defines them on floats."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trader_runtime.decision import kernels

floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=300, deadline=None)
@given(values=arrays(np.float64, st.integers(0, 700), elements=floats))
def test_pairwise_sum_is_numpys_sum_bit_for_bit(values: np.ndarray) -> None:
    assert kernels.pairwise_sum(values).hex() == float(values.sum()).hex()


def test_a_sum_of_negative_zeros_is_positive_zero_as_numpys() -> None:
    # found by the property above in CI: eight or more -0.0 went through the unrolled block
    for n in (1, 7, 8, 9, 16, 129, 300):
        values = np.full(n, -0.0)
        assert kernels.pairwise_sum(values).hex() == float(values.sum()).hex() == "0x0.0p+0", n


def test_pairwise_sum_over_long_arrays_and_every_block_boundary() -> None:
    rng = np.random.default_rng(5)
    for n in [*range(120, 140), 255, 256, 257, 1023, 1024, 1025, 4099, 20_000]:
        values = rng.normal(0.0, 1.0, n) * 10.0 ** rng.integers(-6, 6, n)
        assert kernels.pairwise_sum(values) == float(values.sum()), n


@given(x=st.floats(allow_nan=True) | st.sampled_from([0.0, -0.0]))
def test_sign_and_clip_are_numpys(x: float) -> None:
    expected = float(np.sign(x))
    got = kernels.sign(x)
    assert (math.isnan(got) and math.isnan(expected)) or got.hex() == expected.hex()
    clipped = float(np.clip(x, -0.05, 0.05))
    got = kernels.clip(x, -0.05, 0.05)
    assert (math.isnan(got) and math.isnan(clipped)) or got.hex() == clipped.hex()


_PRICES = st.one_of(
    st.floats(min_value=1e-6, max_value=1e6),
    st.sampled_from([0.0, -1.0, math.nan, math.inf]),
)


@settings(max_examples=300, deadline=None)
@given(
    close=arrays(np.float64, 6, elements=_PRICES),
    last=arrays(np.float64, 6, elements=_PRICES),
    row=st.integers(0, 2),
)
def test_observed_returns_are_numpys_log_of_the_usable_ratios(
    close: np.ndarray, last: np.ndarray, row: int
) -> None:
    with np.errstate(all="ignore"):
        ratio = close / last
        usable = (ratio > 0.0) & (ratio < math.inf)
        expected = np.where(usable, np.log(np.where(usable, ratio, 1.0)), 0.0)
    returns = np.full((3, 6), 7.0)
    last_close = last.copy()
    kernels.observe_returns(close, last_close, returns, row)
    assert returns[row].tobytes() == expected.tobytes()  # bit for bit, zeros' signs included
    assert np.all(np.delete(returns, row, axis=0) == 7.0)  # the other rows untouched
    finite = np.isfinite(close)
    assert np.array_equal(last_close, np.where(finite, close, last), equal_nan=True)
