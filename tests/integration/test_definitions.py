"""The whole Definitions loads, and its graph is what the docs say (catches stale imports/docs)."""

import dagster as dg

from orchestration.definitions import defs


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == [
        "backtest",
        "bars",
        "champion_model",
        "features",
        "labels",
        "live_trading_session",
        "market_index",
        "market_regimes",
        "oos_predictions",
        "performance_report",
        "raw_bars",
        "trained_models",
        "training_set",
        "tuned_models",
        "walk_forward_splits",
    ]
    parents = {
        k: sorted(p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys) for k in keys
    }
    assert parents == {
        "raw_bars": [],
        "bars": ["raw_bars"],
        "market_index": ["bars"],
        "features": ["bars", "market_index"],
        "labels": ["bars"],
        "training_set": ["features", "labels"],
        "walk_forward_splits": ["training_set"],
        "trained_models": ["training_set", "walk_forward_splits"],
        "oos_predictions": ["training_set", "walk_forward_splits"],
        "tuned_models": ["training_set", "walk_forward_splits"],
        "market_regimes": ["bars", "market_index"],
        "backtest": [
            "bars",
            "features",
            "market_regimes",
            "oos_predictions",
            "trained_models",
            "training_set",
            "tuned_models",
        ],
        "performance_report": ["backtest"],
        "champion_model": ["performance_report"],
        "live_trading_session": ["champion_model"],
    }
    checks = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    assert checks == [
        "bars:calendar_gaps",
        "bars:ohlc_consistent",
        "bars:prices_finite_positive",
        "bars:quarantine_rate",
        "bars:timestamps_unique_increasing",
        "bars:volume_non_negative",
        "features:features_match_spec",
        "raw_bars:raw_bars_schema",
        "training_set:no_future_information",
        "walk_forward_splits:purge_covers_label_horizon",
        "walk_forward_splits:splits_disjoint_including_label_windows",
    ]


def test_checks_that_guard_downstream_data_are_blocking() -> None:
    graph = defs.resolve_asset_graph()
    blocking = sorted(
        key.name for key in graph.asset_check_keys if graph.get_check_spec(key).blocking
    )
    assert blocking == [
        "features_match_spec",
        "no_future_information",
        "ohlc_consistent",
        "prices_finite_positive",
        "purge_covers_label_horizon",
        "raw_bars_schema",
        "splits_disjoint_including_label_windows",
        "timestamps_unique_increasing",
        "volume_non_negative",
    ]


def test_jobs_and_sensors_are_registered() -> None:
    for job in (
        "market_data_job",
        "market_index_job",
        "features_job",
        "training_data_job",
        "training_job",
        "tuning_job",
        "backtest_job",
        "live_trading",
    ):
        assert defs.resolve_job_def(job).name == job
    for sensor in ("universe_sensor", "champion_reload_sensor"):
        assert defs.resolve_sensor_def(sensor).name == sensor
