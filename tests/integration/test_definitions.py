"""The whole Definitions loads, and its graph is what the docs say (catches stale imports/docs)."""

import dagster as dg

from orchestration.definitions import defs


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == ["bars", "raw_bars"]
    assert graph.get(dg.AssetKey("bars")).parent_keys == {dg.AssetKey("raw_bars")}
    checks = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    assert checks == [
        "bars:calendar_gaps",
        "bars:ohlc_consistent",
        "bars:prices_finite_positive",
        "bars:quarantine_rate",
        "bars:timestamps_unique_increasing",
        "bars:volume_non_negative",
        "raw_bars:raw_bars_schema",
    ]


def test_checks_that_guard_downstream_data_are_blocking() -> None:
    graph = defs.resolve_asset_graph()
    blocking = sorted(
        key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking
    )
    assert blocking == [
        "ohlc_consistent",
        "prices_finite_positive",
        "raw_bars_schema",
        "timestamps_unique_increasing",
        "volume_non_negative",
    ]


def test_jobs_and_sensors_are_registered() -> None:
    assert defs.resolve_job_def("market_data_job").name == "market_data_job"
    assert defs.resolve_sensor_def("universe_sensor").name == "universe_sensor"
