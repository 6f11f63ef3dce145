"""TWAP and VWAP child orders add up to the parent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trader_runtime.decision.config import ExecutionConfig
from trader_runtime.execution.schedules import child_schedule, twap_schedule, vwap_schedule


def test_twap_splits_evenly_in_whole_shares() -> None:
    np.testing.assert_array_equal(twap_schedule(1000, 4), [250, 250, 250, 250])
    children = twap_schedule(1001, 4)
    assert children.sum() == 1001
    assert set(children) <= {250, 251}
    np.testing.assert_array_equal(twap_schedule(-10, 3), [-3, -3, -4])


def test_vwap_follows_the_volume_profile() -> None:
    children = vwap_schedule(1000, np.array([3.0, 1.0, 1.0]))
    np.testing.assert_array_equal(children, [600, 200, 200])
    # no profile known: TWAP
    np.testing.assert_array_equal(vwap_schedule(9, np.full(3, np.nan)), [3, 3, 3])


@given(
    total=st.integers(-1_000_000, 1_000_000),
    volumes=st.lists(st.floats(0, 1e6), min_size=1, max_size=30),
)
def test_children_add_up_and_keep_the_sign(total: int, volumes: list[float]) -> None:
    children = vwap_schedule(float(total), np.array(volumes))
    assert children.sum() == total
    assert np.all(children * np.sign(total) >= 0)
    assert np.all(children == np.trunc(children))


def test_child_schedule_per_algo() -> None:
    assert list(child_schedule(100, ExecutionConfig(algo="immediate"))) == [100]
    assert len(child_schedule(100, ExecutionConfig(algo="twap", slices=5))) == 5
    with pytest.raises(ValueError, match="slices"):
        twap_schedule(100, 0)
