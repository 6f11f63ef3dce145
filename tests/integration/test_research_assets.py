"""Features, labels, training set and splits through a real Dagster instance, and leakage canaries:
planted future information must be caught by the blocking checks."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from robo_assets.feature_assets import (
    no_future_information,
    purge_covers_label_horizon,
    splits_disjoint_including_label_windows,
)
from robo_assets.research_data import FEATURES, FOLDS, POOLED, SPLITS, TRAINING_SET
from robo_assets.resources import RoboSettingsResource
from robo_assets.splits import TEST, TRAIN
from tests.conftest import RoboEnv
from tests.research_kit import RESEARCH_ENV, build_research_data, research_environment
from trader_runtime.storage.lake import ParquetLake


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The research pipeline materialized once; tests get a copy of its data dir."""
    root = tmp_path_factory.mktemp("research")
    with research_environment(root) as instance:
        assert build_research_data(instance) == {
            "features_match_spec": True,
            "no_future_information": True,
            "splits_disjoint_including_label_windows": True,
            "purge_covers_label_horizon": True,
        }
        yield root / "data"


@pytest.fixture
def research(built: Path, robo_env: RoboEnv, monkeypatch: pytest.MonkeyPatch) -> ParquetLake:
    for key, value in RESEARCH_ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copytree(built, robo_env.data_dir)
    return ParquetLake(robo_env.data_dir / "lake")


def _context() -> dg.OpExecutionContext:
    return dg.build_op_context(resources={"robo": RoboSettingsResource()})


def test_research_assets_materialize_with_spec_columns_and_folds(research: ParquetLake) -> None:
    training = research.read(TRAINING_SET, "1m", POOLED)
    assert sorted(training["symbol"].unique()) == ["AAA", "BBB"]
    assert (
        training.drop("barrier").null_count().sum_horizontal().item() == 0
    )  # barrier: triple-barrier only
    assert research.read(FEATURES, "1d", "SP500").width == 2 + 34
    folds = research.read(FOLDS, "1m", POOLED)
    assert folds["fold"].to_list() == [0, 1]
    assignment = research.read(SPLITS, "1m", POOLED)
    assert set(assignment["fold_1"].drop_nulls().unique()) == {TRAIN, TEST}


def test_canary_a_planted_future_return_column_is_caught(research: ParquetLake) -> None:
    training = research.read(TRAINING_SET, "1m", POOLED)
    research.write(
        TRAINING_SET,
        "1m",
        POOLED,
        training.with_columns(pl.col("fwd_return").alias("future_return")),
    )
    result = no_future_information(_context())
    assert not result.passed
    assert result.metadata["unexpected_columns"].value == ["future_return"]
    assert "future_return" in result.metadata["features_correlated_with_future_return"].value


def test_canary_a_future_return_hidden_in_a_feature_column_is_caught(research: ParquetLake) -> None:
    training = research.read(TRAINING_SET, "1m", POOLED)
    research.write(
        TRAINING_SET, "1m", POOLED, training.with_columns(pl.col("fwd_return").alias("ret_15"))
    )
    result = no_future_information(_context())
    assert not result.passed
    assert list(result.metadata["features_correlated_with_future_return"].value) == ["ret_15"]


def test_canary_a_feature_that_peeks_one_bar_ahead_fails_the_truncation_check(
    research: ParquetLake,
) -> None:
    stored = research.read(FEATURES, "1m", "AAA")
    research.write(FEATURES, "1m", "AAA", stored.with_columns(pl.col("rsi_14").shift(-1)))
    result = no_future_information(_context())
    assert not result.passed
    assert set(result.metadata["truncation_mismatches"].value) == {"rsi_14"}


def test_canary_a_training_row_moved_into_the_test_window_fails_the_split_check(
    research: ParquetLake,
) -> None:
    assignment = research.read(SPLITS, "1m", POOLED)
    first_test = assignment.filter(pl.col("fold_0") == TEST)["ts"].min()
    tampered = assignment.with_columns(
        pl.when(pl.col("ts") == first_test)
        .then(pl.lit(TRAIN))
        .otherwise(pl.col("fold_0"))
        .alias("fold_0")
    )
    research.write(SPLITS, "1m", POOLED, tampered)
    result = splits_disjoint_including_label_windows(_context())
    assert not result.passed
    assert "fold_0" in result.metadata["violations"].value


def test_canary_a_purge_shorter_than_the_horizon_fails_the_purge_check(
    research: ParquetLake,
) -> None:
    folds = research.read(FOLDS, "1m", POOLED)
    research.write(FOLDS, "1m", POOLED, folds.with_columns(pl.lit(5).alias("purge_bars")))
    result = purge_covers_label_horizon(_context())
    assert not result.passed
    assert result.metadata["purge_bars"].value == 5


def test_feature_metadata_reports_warm_up_rates(built: Path) -> None:
    instance = dg.DagsterInstance.from_config(str(built.parent / "dagster_home"))
    event = instance.get_latest_materialization_event(dg.AssetKey("features"))
    assert event is not None
    rates = event.asset_materialization.metadata["warmup_rates"].value  # type: ignore[union-attr]
    assert rates["rsi_14"] > 0
    assert rates["range_ratio"] == 0
