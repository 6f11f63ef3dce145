"""The market_regimes asset through a real Dagster instance on a small universe: two synthetic
symbols (1m, nine sessions) and the S&P 500 (1d, 2018 Q1)."""

import os
import shutil
from collections.abc import Iterator

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from robo_assets.bars_assets import bars, raw_bars
from robo_assets.feature_assets import market_index
from robo_assets.market_data import TRUE_REGIMES
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME
from robo_assets.regime_assets import ASSETS, MARKET_REGIMES, load_regimes, market_regimes
from robo_assets.research_data import MARKET_INDEX, MARKET_KEY
from robo_assets.resources import RoboSettingsResource
from tests.conftest import REPO_ROOT, SMALL_UNIVERSE
from trader_runtime.decision.regime import INPUT_COLUMNS, evaluate_regimes
from trader_runtime.market.regimes import REGIME_ORDER
from trader_runtime.storage.lake import ParquetLake

SYMBOLS = ("SP500", "AAA", "BBB")
ENV = {
    **SMALL_UNIVERSE,
    "ROBO_SYMBOLS": "AAA,BBB",
    "ROBO_START": "2024-01-02",
    "ROBO_END": "2024-01-12",
}
RESOURCES = {"robo": RoboSettingsResource()}


@pytest.fixture(scope="module")
def materialized(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dg.ExecuteInProcessResult, ParquetLake]]:
    """Bars, the market index and the regimes, materialized once for the module."""
    root = tmp_path_factory.mktemp("regimes")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("ROBO_"):
                mp.delenv(key)
        env = {**ENV, "ROBO_DATA_DIR": str(root / "data"), "DAGSTER_HOME": str(home)}
        for key, value in env.items():
            mp.setenv(key, value)
        instance = dg.DagsterInstance.get()
        instance.add_dynamic_partitions(SYMBOL_PARTITIONS_NAME, list(SYMBOLS))
        for symbol in SYMBOLS:
            result = dg.materialize(
                [raw_bars, bars], partition_key=symbol, instance=instance, resources=RESOURCES
            )
            assert result.success
        result = dg.materialize(
            [bars, market_index, market_regimes],
            selection=[market_index, market_regimes],
            instance=instance,
            resources=RESOURCES,
        )
        yield result, ParquetLake(root / "data" / "lake")


def test_market_regimes_writes_every_base_timeframe_with_its_inputs(
    materialized: tuple[dg.ExecuteInProcessResult, ParquetLake],
) -> None:
    result, lake = materialized
    assert result.success
    assert (market_regimes,) == ASSETS
    for timeframe in ("1m", "1d"):
        index = lake.read(MARKET_INDEX, timeframe, MARKET_KEY)
        stored = lake.read(MARKET_REGIMES, timeframe, MARKET_KEY)
        assert stored.columns == ["ts", "regime", *INPUT_COLUMNS]
        assert stored["ts"].to_list() == index["ts"].to_list()
        assert set(stored["regime"]) <= {r.value for r in REGIME_ORDER}
        assert_frame_equal(load_regimes(lake, timeframe), stored)
    # breadth needs a full 10-session moving average: the 1d history has one, 9 sessions of 1m not
    assert lake.read(MARKET_REGIMES, "1d", MARKET_KEY)["breadth"].drop_nans().len() > 40


def test_market_regimes_metadata_scores_the_synthetic_market_against_its_truth(
    materialized: tuple[dg.ExecuteInProcessResult, ParquetLake],
) -> None:
    result, lake = materialized
    (event,) = result.asset_materializations_for_node("market_regimes")
    meta = {k: v.value for k, v in event.metadata.items()}
    stored = lake.read(MARKET_REGIMES, "1m", MARKET_KEY)
    truth = lake.read(TRUE_REGIMES, "1m", "AAA")
    expected = evaluate_regimes(stored, truth)
    assert meta["macro_f1_1m"] == pytest.approx(expected.macro_f1, abs=1e-4)
    assert 0.0 < meta["macro_f1_1m"] <= 1.0
    assert "macro_f1_1d" not in meta  # the index history has no true regimes
    confusion = meta["confusion_1m"]
    assert [r.data["true_regime"] for r in confusion.records] == [r.value for r in REGIME_ORDER]
    assert sum(
        int(v) for r in confusion.records for k, v in r.data.items() if k != "true_regime"
    ) == (stored.height)
    counts = meta["regime_counts"]
    assert sum(counts["1m"].values()) == stored.height
    assert counts["1m"] == {
        r.value: stored.filter(pl.col("regime") == r.value).height for r in REGIME_ORDER
    }
    assert sum(meta["regime_shares"]["1d"].values()) == pytest.approx(1.0, abs=1e-3)
    assert meta["timeline_1m"].startswith("![market regimes 1m](data:image/png;base64,")
    assert "timeline_1d" in meta
