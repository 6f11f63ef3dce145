"""The data assets materialized through a real Dagster instance (the committed dagster.yaml)."""

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from orchestration.definitions import defs
from robo_assets.bars_assets import INVARIANT_CHECKS
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME
from robo_assets.resources import RoboSettingsResource
from tests.conftest import RoboEnv
from trader_runtime.storage.lake import ParquetLake
from trader_runtime.storage.warehouse import Warehouse

timestamps_unique_increasing, prices_finite_positive, _, _ = INVARIANT_CHECKS


def _instance(robo_env: RoboEnv, *symbols: str) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.get()
    assert Path(instance.root_directory) == robo_env.dagster_home
    instance.add_dynamic_partitions(SYMBOL_PARTITIONS_NAME, list(symbols))
    return instance


def _run(instance: dg.DagsterInstance, symbol: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("market_data_job").execute_in_process(
        instance=instance, partition_key=symbol, raise_on_error=False
    )


def test_synthetic_symbol_materializes_every_timeframe_with_passing_checks(
    robo_env: RoboEnv,
) -> None:
    instance = _instance(robo_env, "AAA")
    result = _run(instance, "AAA")
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(checks, True)
    assert len(checks) == 7
    lake = ParquetLake(robo_env.data_dir / "lake")
    assert lake.timeframes("bars", "AAA") == ["15m", "1d", "1h", "1m", "5m"]
    assert lake.read("bars", "1d", "AAA").height == 6  # 2024-03-01 .. 2024-03-08
    meta = result.asset_materializations_for_node("bars")[0].metadata
    assert meta["rows_by_timeframe"].value == {
        "1m": 2340,
        "5m": 468,
        "15m": 156,
        "1h": 42,
        "1d": 6,
    }
    assert meta["price_plot"].value.startswith("![AAA close (1d)](data:image/png;base64,")
    assert len(meta["preview"].value.records) == 10
    stored = instance.get_latest_materialization_event(dg.AssetKey("bars"))
    assert stored is not None
    assert stored.asset_materialization.partition == "AAA"  # type: ignore[union-attr]


def test_index_symbol_stays_daily(robo_env: RoboEnv) -> None:
    result = _run(_instance(robo_env, "SP500"), "SP500")
    assert result.success
    lake = ParquetLake(robo_env.data_dir / "lake")
    assert lake.timeframes("bars", "SP500") == ["1d"]
    assert lake.read("bars", "1d", "SP500").height == 61  # Q1 2018 sessions


def test_rematerializing_a_partition_replaces_it_exactly(robo_env: RoboEnv) -> None:
    instance = _instance(robo_env, "AAA")
    lake = ParquetLake(robo_env.data_dir / "lake")
    assert _run(instance, "AAA").success
    first = {tf: lake.read("bars", tf, "AAA") for tf in lake.timeframes("bars", "AAA")}
    assert _run(instance, "AAA").success
    second = {tf: lake.read("bars", tf, "AAA") for tf in lake.timeframes("bars", "AAA")}
    assert first.keys() == second.keys()
    for tf, frame in first.items():
        assert frame.equals(second[tf]), tf
        assert frame["ts"].is_unique().all()


def test_bad_rows_from_user_files_are_quarantined_and_good_rows_flow_on(
    robo_env: RoboEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = robo_env.root / "files"
    files.mkdir()
    (files / "ACME.csv").write_text(
        "ts,open,high,low,close,volume\n"
        "2024-03-01T14:31:00Z,10,11,9,10.5,100\n"
        "2024-03-01T14:32:00Z,10,11,9,NaN,100\n"
        "2024-03-01T14:33:00Z,10,9,11,10,100\n"
        "2024-03-01T14:33:00Z,10,11,9,10,100\n"
        "2024-03-01T14:34:00Z,10,11,9,10.2,-3\n"
        "2024-03-01T14:35:00Z,10,11,9,10.1,7\n"
    )
    monkeypatch.setenv("ROBO_SOURCE", "files")
    monkeypatch.setenv("ROBO_FILES_DIR", str(files))
    monkeypatch.setenv("ROBO_SYMBOLS", "ACME")
    monkeypatch.setenv("ROBO_END", "2024-03-01")
    result = _run(_instance(robo_env, "ACME"), "ACME")
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["ohlc_consistent"].passed
    assert checks["prices_finite_positive"].passed
    assert not checks["quarantine_rate"].passed
    assert checks["quarantine_rate"].severity == dg.AssetCheckSeverity.WARN
    kept = ParquetLake(robo_env.data_dir / "lake").read("bars", "1m", "ACME")
    assert kept["close"].to_list() == [10.5, 10.0, 10.1]
    quarantine = Warehouse(robo_env.data_dir / "warehouse.duckdb").quarantine(symbol="ACME")
    assert sorted(quarantine["reason"].to_list()) == [
        "close is not finite",
        "high < low; open outside [low, high]; close outside [low, high]",
        "volume is negative",
    ]
    assert set(quarantine["run_id"].to_list()) == {result.run_id}


def test_a_blocking_check_fails_on_corrupted_stored_bars(robo_env: RoboEnv) -> None:
    instance = _instance(robo_env, "AAA")
    assert _run(instance, "AAA").success
    lake = ParquetLake(robo_env.data_dir / "lake")
    bad = lake.read("bars", "5m", "AAA").with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("low")).alias("low")
    )
    lake.write("bars", "5m", "AAA", bad)
    context = dg.build_op_context(partition_key="AAA", resources={"robo": RoboSettingsResource()})
    prices = prices_finite_positive(context)
    timestamps = timestamps_unique_increasing(context)
    assert not prices.passed
    assert prices.metadata["failing_rows_by_timeframe"].value == {"5m": 1}
    assert timestamps.passed


def test_universe_sensor_adds_missing_symbol_partitions(robo_env: RoboEnv) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SYMBOL_PARTITIONS_NAME, ["AAA"])
        context = dg.build_sensor_context(
            instance=instance, resources={"robo": RoboSettingsResource()}
        )
        result = defs.resolve_sensor_def("universe_sensor")(context)
        requests = result.dynamic_partitions_requests
        assert [list(r.partition_keys) for r in requests] == [["SP500"]]
