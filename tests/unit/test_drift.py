"""Drift statistics: PSI, KS, IC and the drift verdict (trader_runtime/monitoring/drift.py)."""

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from trader_runtime.monitoring import (
    DriftConfig,
    DriftInputError,
    drift_report,
    information_coefficient,
    ks,
    psi,
)

RNG_SEED = 20240102


def _normal(n: int, seed: int, loc: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, scale, n)


def test_psi_of_a_sample_against_itself_is_zero() -> None:
    x = _normal(5000, RNG_SEED)
    assert psi(x, x) == 0.0


def test_psi_of_two_samples_of_one_distribution_is_small() -> None:
    assert psi(_normal(20_000, 1), _normal(2_000, 2)) < 0.02


def test_psi_of_a_shifted_sample_is_above_the_alert() -> None:
    alert = DriftConfig().psi_alert
    assert psi(_normal(20_000, 1), _normal(2_000, 2, loc=1.0)) > alert
    assert psi(_normal(20_000, 1), _normal(2_000, 2, scale=3.0)) > alert


def test_psi_grows_with_the_shift() -> None:
    base = _normal(20_000, 1)
    values = [psi(base, _normal(2_000, 2, loc=shift)) for shift in (0.0, 0.25, 0.5, 1.0)]
    assert values == sorted(values)


def test_psi_of_a_constant_column_is_finite_and_flags_a_move() -> None:
    constant = np.full(1000, 3.0)
    assert psi(constant, constant) == 0.0
    moved = psi(constant, np.full(300, 4.0))
    assert math.isfinite(moved)
    assert moved > 1.0


def test_psi_drops_non_finite_values() -> None:
    x = _normal(1000, 3)
    with_gaps = np.concatenate([x, [np.nan, np.inf, -np.inf]])
    assert psi(with_gaps, x) == psi(x, x) == 0.0


def test_psi_refuses_an_empty_sample() -> None:
    with pytest.raises(DriftInputError, match="finite values"):
        psi([np.nan, np.nan], [1.0, 2.0])
    with pytest.raises(DriftInputError, match="2 bins"):
        psi([1.0, 2.0], [1.0], bins=1)


samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=200
)
tied_samples = st.lists(st.sampled_from([-1.0, 0.0, 0.0, 0.5, 2.0]), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(expected=samples | tied_samples, actual=samples | tied_samples, bins=st.integers(2, 20))
def test_psi_is_non_negative_and_finite(
    expected: list[float], actual: list[float], bins: int
) -> None:
    value = psi(expected, actual, bins=bins)
    assert math.isfinite(value)
    assert value >= 0.0


@settings(max_examples=200, deadline=None)
@given(values=samples | tied_samples, bins=st.integers(2, 20))
def test_psi_of_any_sample_against_itself_is_zero(values: list[float], bins: int) -> None:
    assert psi(values, values, bins=bins) == 0.0


@settings(max_examples=100, deadline=None)
@given(values=tied_samples, repeat=st.integers(2, 5))
def test_psi_does_not_see_a_resampled_copy_as_drift(values: list[float], repeat: int) -> None:
    # the same empirical distribution, more rows: ties fall on the same side of every edge
    assert psi(values, values * repeat) == pytest.approx(0.0, abs=1e-12)


def test_ks_separates_shifted_samples_and_not_equal_ones() -> None:
    same_stat, same_p = ks(_normal(3000, 1), _normal(3000, 2))
    shifted_stat, shifted_p = ks(_normal(3000, 1), _normal(3000, 2, loc=0.5))
    assert same_p > 0.01
    assert shifted_p < 1e-6
    assert shifted_stat > same_stat


def test_information_coefficient_has_the_sign_of_the_relation() -> None:
    signal = _normal(1000, 4)
    noise = _normal(1000, 5)
    assert information_coefficient(signal, signal + noise) > 0.5
    assert information_coefficient(signal, -signal + noise) < -0.5
    assert abs(information_coefficient(signal, noise)) < 0.1


def test_information_coefficient_is_rank_based_and_skips_missing_pairs() -> None:
    x = np.arange(1.0, 51.0)
    assert information_coefficient(x, np.exp(x)) == pytest.approx(1.0)
    y = np.exp(x)
    y[::7] = np.nan
    assert information_coefficient(x, y) == pytest.approx(1.0)
    assert math.isnan(information_coefficient([1.0, 2.0], [np.nan, 3.0]))
    assert math.isnan(information_coefficient([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    with pytest.raises(DriftInputError, match="aligned"):
        information_coefficient([1.0, 2.0], [1.0])


def test_drift_config_is_frozen_and_validated() -> None:
    cfg = DriftConfig()
    assert (cfg.psi_alert, cfg.ks_pvalue_alert, cfg.ic_floor) == (0.25, 0.01, 0.0)
    assert (cfg.min_samples, cfg.recent_sessions) == (200, 5)
    with pytest.raises(ValidationError):
        cfg.psi_alert = 0.1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        DriftConfig(ks_pvalue_alert=1.5)


def _frame(n: int, seed: int, shift: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "f_trend": rng.normal(shift, 1.0, n),
            "f_vol": rng.gamma(2.0, 1.0, n),
            "f_flat": np.zeros(n),
            "symbol": ["AAA"] * n,
        }
    )


def _predict(frame: pl.DataFrame) -> np.ndarray:
    z = frame["f_trend"].to_numpy()
    return 1.0 / (1.0 + np.exp(-z))


def test_drift_report_of_the_same_distribution_is_not_drifted() -> None:
    train, recent = _frame(20_000, 1), _frame(600, 2)
    returns = 0.001 * recent["f_trend"].to_numpy() + _normal(600, 3, scale=0.002)
    report = drift_report(train, recent, _predict(train), _predict(recent), returns)
    assert not report.drifted
    assert report.reasons == ()
    assert report.enough_samples
    assert {f.name for f in report.features} == {"f_trend", "f_vol", "f_flat"}
    psis = [f.psi for f in report.features]
    assert psis == sorted(psis, reverse=True)
    assert report.max_psi < 0.1
    assert report.ic > 0.2
    assert (report.n_train, report.n_recent, report.n_ic_pairs) == (20_000, 600, 600)


def test_drift_report_flags_a_shifted_feature_and_the_predictions() -> None:
    train, recent = _frame(20_000, 1), _frame(600, 2, shift=1.5)
    returns = np.full(600, np.nan)
    report = drift_report(train, recent, _predict(train), _predict(recent), returns)
    assert report.drifted
    assert report.drifted_features == ("f_trend",)
    assert report.features[0].name == "f_trend"
    assert report.prediction_psi > 0.25
    assert any("f_trend" in r for r in report.reasons)
    assert any(r.startswith("predictions shifted") for r in report.reasons)
    assert math.isnan(report.ic)
    assert report.n_ic_pairs == 0


def test_drift_report_flags_a_model_ranking_returns_backwards() -> None:
    train, recent = _frame(20_000, 1), _frame(600, 2)
    returns = -0.001 * recent["f_trend"].to_numpy() + _normal(600, 3, scale=0.002)
    report = drift_report(train, recent, _predict(train), _predict(recent), returns)
    assert report.drifted
    assert report.drifted_features == ()
    assert report.ic < 0.0
    assert report.reasons == (f"realized IC {report.ic:+.3f} < 0.0 over 600 predictions",)


def test_drift_report_gives_no_verdict_on_too_few_recent_rows() -> None:
    train, recent = _frame(5_000, 1), _frame(50, 2, shift=3.0)
    report = drift_report(train, recent, _predict(train), _predict(recent), np.full(50, np.nan))
    assert not report.enough_samples
    assert not report.drifted
    assert report.features[0].drifted  # the numbers are there; the verdict waits for data
    shifted = drift_report(
        train,
        recent,
        _predict(train),
        _predict(recent),
        np.full(50, np.nan),
        DriftConfig(min_samples=40),
    )
    assert shifted.drifted


def test_drift_report_refuses_misaligned_inputs() -> None:
    train, recent = _frame(100, 1), _frame(10, 2)
    with pytest.raises(DriftInputError, match="10 recent rows"):
        drift_report(train, recent, _predict(train), np.zeros(9), np.zeros(9))
    with pytest.raises(DriftInputError, match="no numeric feature"):
        drift_report(
            train.select("symbol"), recent.select("symbol"), [], np.zeros(10), np.zeros(10)
        )
