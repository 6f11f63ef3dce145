import itertools

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_assets.labels import LabelSpec, compute_labels
from robo_assets.splits import (
    TRAIN,
    WalkForwardSpec,
    assign_folds,
    leakage_violations,
    sessions_of,
    walk_forward_folds,
)
from tests.features_kit import minute_bars
from trader_runtime.errors import ConfigError


def _pooled(horizon: int) -> pl.DataFrame:
    spec = LabelSpec(horizon_bars=horizon)
    frames = [compute_labels(minute_bars(s), spec) for s in ("AAA", "BBB")]
    return pl.concat(frames).drop_nulls("label_end_ts").sort("ts", "symbol")


def test_a_purge_shorter_than_the_label_horizon_is_refused() -> None:
    with pytest.raises(ConfigError, match="purge_bars \\(5\\) must be >= the label horizon"):
        WalkForwardSpec(purge_bars=5).check_purge(15)


def test_test_windows_are_the_last_sessions_consecutive_and_disjoint() -> None:
    frame = _pooled(15)
    spec = WalkForwardSpec(n_folds=3, test_sessions=5, train_sessions=10)
    folds = walk_forward_folds(frame["ts"], spec)
    sessions = sessions_of(frame["ts"]).to_list()
    assert folds[-1].test_end == frame["ts"].max()
    for a, b in itertools.pairwise(folds):
        assert a.test_end < b.test_start
    assert sessions_of(pl.Series([folds[0].test_start])).item() == sessions[-15]


def test_rolling_folds_train_on_a_fixed_window() -> None:
    frame = _pooled(15)
    spec = WalkForwardSpec(n_folds=2, scheme="rolling", test_sessions=5, train_sessions=10)
    folds = walk_forward_folds(frame["ts"], spec)
    sessions = sessions_of(frame["ts"]).to_list()
    assert sessions_of(pl.Series([folds[1].train_start])).item() == sessions[-5 - 10]


def test_too_little_data_for_the_folds_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="walk-forward needs 1000 sessions"):
        walk_forward_folds(
            _pooled(5)["ts"], WalkForwardSpec(train_sessions=960, n_folds=4, test_sessions=10)
        )


@settings(max_examples=15, deadline=None)
@given(
    horizon=st.integers(min_value=1, max_value=30),
    extra_purge=st.integers(min_value=0, max_value=20),
    embargo=st.integers(min_value=0, max_value=60),
    n_folds=st.integers(min_value=1, max_value=4),
    scheme=st.sampled_from(["expanding", "rolling"]),
)
def test_every_generated_split_is_disjoint_including_label_windows(
    horizon: int, extra_purge: int, embargo: int, n_folds: int, scheme: str
) -> None:
    frame = _pooled(horizon)
    spec = WalkForwardSpec(
        n_folds=n_folds,
        scheme=scheme,  # type: ignore[arg-type]
        test_sessions=4,
        train_sessions=8,
        purge_bars=horizon + extra_purge,
        embargo_bars=embargo,
    )
    spec.check_purge(horizon)
    assignment = assign_folds(frame, walk_forward_folds(frame["ts"], spec))
    assert leakage_violations(frame, assignment, min_gap=spec.gap) == {}


def test_the_leakage_check_catches_train_rows_inside_the_purge_or_with_labels_in_the_test() -> None:
    frame = _pooled(15)
    spec = WalkForwardSpec(n_folds=1, test_sessions=5, train_sessions=10)
    folds = walk_forward_folds(frame["ts"], spec)
    assignment = assign_folds(frame, folds)
    stamps = frame["ts"].unique().sort()
    first_test = stamps.search_sorted(folds[0].test_start)
    near_ts = stamps[first_test + 10]  # a bar of the test window relabelled as training
    tampered = assignment.with_columns(
        pl.when(pl.col("ts") == near_ts)
        .then(pl.lit(TRAIN))
        .otherwise(pl.col("fold_0"))
        .alias("fold_0")
    )
    assert leakage_violations(frame, tampered, min_gap=spec.gap) == {
        "fold_0": {"label_reaches_test": 2, "inside_purge_or_embargo": 2}  # one row per symbol
    }
    early_ts = stamps[first_test - 2000]
    overnight = frame.with_columns(
        pl.when(pl.col("ts") == early_ts)
        .then(pl.lit(folds[0].test_start))
        .otherwise(pl.col("label_end_ts"))
        .alias("label_end_ts")
    )
    assert leakage_violations(overnight, assignment, min_gap=spec.gap) == {
        "fold_0": {"label_reaches_test": 2}
    }
