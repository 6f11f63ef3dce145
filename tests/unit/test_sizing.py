"""Sizing: whatever the inputs, no cap is broken and a crash opens nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

from trader_runtime.decision.config import SizingConfig, StopsConfig
from trader_runtime.decision.sizing import shrunk_covariance, signal_weights, size_weights
from trader_runtime.decision.stops import exit_reason, stop_target_prices
from trader_runtime.market.regimes import Regime

N = 6
weights = arrays(np.float64, N, elements=st.floats(-3, 3) | st.just(float("nan")))
unit = arrays(np.float64, N, elements=st.floats(0, 5) | st.just(float("nan")))
regimes = st.sampled_from(list(Regime))
configs = st.builds(
    SizingConfig,
    max_position_fraction=st.floats(0.01, 0.5),
    max_gross_fraction=st.floats(0.05, 2.0),
    max_net_fraction=st.floats(0.0, 1.0),
    correlation_penalty=st.floats(0.0, 1.0),
)


@settings(max_examples=300, deadline=None)
@given(
    direction=arrays(np.float64, N, elements=st.sampled_from([-1.0, 0.0, 1.0])),
    confidence=unit,
    current=weights,
    regime=regimes,
    config=configs,
    seed=st.integers(0, 2**16),
)
def test_no_input_breaks_a_cap(direction, confidence, current, regime, config, seed) -> None:
    returns = np.random.default_rng(seed).normal(0, 1e-3, (200, N))
    covariance = shrunk_covariance(returns)
    desired = signal_weights(direction, confidence, regime, config)
    final = size_weights(desired, current, regime, config, covariance)
    assert np.all(np.isfinite(final))
    assert np.all(np.abs(final) <= config.max_position_fraction)
    assert np.abs(final).sum() <= config.max_gross_fraction
    assert abs(final.sum()) <= config.max_net_fraction + 1e-15
    if regime is Regime.CRASH:
        held = np.where(np.isfinite(current), current, 0.0)
        assert np.all(np.abs(final) <= np.abs(held) + 1e-15), "a crash enlarged a position"
        assert np.all((final == 0) | (np.sign(final) == np.sign(held))), "a crash opened one"


def test_base_times_regime_times_confidence() -> None:
    config = SizingConfig()
    w = signal_weights(np.array([1.0, -1.0, 1.0]), np.array([1.0, 1.0, 0.5]), Regime.BULL, config)
    np.testing.assert_allclose(w, [0.03, -0.03, 0.015])
    capped = signal_weights(np.array([1.0]), np.array([2.0]), Regime.BULL, config)
    assert capped[0] == pytest.approx(0.05)  # 0.02 * 1.5 * 2 = 0.06 -> the 5% cap


def test_correlated_additions_are_penalised() -> None:
    rng = np.random.default_rng(3)
    common = rng.normal(0, 1e-3, 500)
    returns = np.column_stack([common + rng.normal(0, 2e-4, 500) for _ in range(2)])
    returns = np.column_stack([returns, rng.normal(0, 1e-3, 500)])
    covariance = shrunk_covariance(returns)
    current = np.array([0.04, 0.0, 0.0])
    desired = np.array([0.04, 0.04, 0.04])
    final = size_weights(desired, current, Regime.RANGING, SizingConfig(), covariance)
    assert final[1] < 0.03, "adding to a highly correlated holding was not penalised"
    assert final[2] == pytest.approx(0.04, rel=1e-6), "an uncorrelated addition was penalised"
    # a hedge (opposite direction to a correlated holding) is not penalised
    hedge = size_weights(
        np.array([0.04, -0.04, 0.0]), current, Regime.RANGING, SizingConfig(), covariance
    )
    assert hedge[1] == pytest.approx(-0.04, rel=1e-6)


def test_multipliers_outside_the_design_range_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"\[0.3, 1.5\]"):
        SizingConfig(regime_multipliers={**SizingConfig().regime_multipliers, Regime.BULL: 2.0})


def test_stops_and_targets_by_regime() -> None:
    stops = StopsConfig()
    assert stop_target_prices(1, 100.0, Regime.BULL, stops) == pytest.approx((97.5, 107.0))
    assert stop_target_prices(1, 100.0, Regime.BEAR, stops) == pytest.approx((98.5, 103.0))
    assert stop_target_prices(-1, 100.0, Regime.VOLATILE, stops) == pytest.approx((104.0, 92.0))
    assert exit_reason(1, 97.5, 107.0, high_usd=101, low_usd=97.4) == "stop"
    assert exit_reason(1, 97.5, 107.0, high_usd=107.1, low_usd=99) == "target"
    assert exit_reason(-1, 104.0, 92.0, high_usd=104.5, low_usd=91) == "stop"  # both: stop wins
    assert exit_reason(1, 97.5, 107.0, high_usd=101, low_usd=99) is None
