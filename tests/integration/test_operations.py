"""Operations: schedules on the NYSE calendar, declarative automation, freshness policies, the
``model_drift`` asset and the drift retraining sensor (the ``dagster`` CLI listing the schedules
and sensors is in test_definitions.py, which is otherwise light)."""

from __future__ import annotations

import warnings
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow.tracking import MlflowClient
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from orchestration.definitions import defs
from orchestration.jobs import RETRAIN_TAG
from orchestration.schedules import market_data_schedule, weekly_retrain_schedule
from orchestration.sensors import AUTOMATION_RUN_TAGS, drift_retrain_sensor
from robo_assets.drift_assets import JOURNAL_SOURCE, RESEARCH_SOURCE, model_drift
from robo_assets.feature_assets import SPEC
from robo_assets.market_data import BARS, RAW_BARS
from robo_assets.model_assets import family_partitions
from robo_assets.research_data import FEATURES, LABELS, POOLED, TRAINING_SET
from robo_assets.resources import RoboSettingsResource
from tests.conftest import RoboEnv
from trader_runtime.live.journal import BarCommit, DecisionRecord, Journal
from trader_runtime.live.scoring import FEATURE_SET_TAG
from trader_runtime.live.session import live_dir
from trader_runtime.market.bars import conform
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake

# dagster's own automation tester selects assets with a beta parameter
warnings.filterwarnings("ignore", category=dg.BetaWarning)

NY = ZoneInfo("America/New_York")
NAMES = SPEC.feature_names(Timeframe.M1)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def _evaluate(
    schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, when: datetime
) -> object:
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, resources={"robo": RoboSettingsResource()}
    ) as context:
        return schedule(context)


def _write_bars(lake: ParquetLake, symbol: str, timeframe: Timeframe, last: datetime) -> None:
    ts = [last - timedelta(minutes=2), last - timedelta(minutes=1), last]
    frame = pl.DataFrame(
        {"ts": ts, "open": 10.0, "high": 10.5, "low": 9.5, "close": 10.0, "volume": 100.0}
    )
    lake.write(BARS, timeframe.value, symbol, conform(frame, symbol=symbol))


# -- market data schedule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2024, 7, 4), "2024-07-04 (Thursday) is an NYSE holiday: July 4th"),
        (date(2024, 7, 6), "2024-07-06 is a Saturday: no NYSE session"),
        (date(2024, 3, 29), "2024-03-29 (Friday) is an NYSE holiday: Good Friday"),
    ],
)
def test_market_data_schedule_skips_days_without_a_session(
    robo_env: RoboEnv, day: date, expected: str
) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAA"])
        result = _evaluate(market_data_schedule, instance, _at(day, 16, 30))
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == expected


def test_market_data_schedule_waits_for_an_early_close_and_then_runs(
    robo_env: RoboEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBO_END", "2024-12-31")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAA"])
        early = _evaluate(market_data_schedule, instance, _at(date(2024, 7, 3), 12, 0))
        after = _evaluate(market_data_schedule, instance, _at(date(2024, 7, 3), 13, 5))
    assert isinstance(early, dg.SkipReason)
    assert "closes at 13:00 New York" in str(early.skip_message)
    assert isinstance(after, list)
    assert [r.partition_key for r in after] == ["AAA"]


def test_market_data_schedule_requests_only_symbols_behind_the_session(
    robo_env: RoboEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBO_END", "2024-12-31")
    settings = RoboSettings.from_overrides()
    lake = ParquetLake(settings.lake_dir)
    close = datetime(2024, 7, 5, 20, 0, tzinfo=ZoneInfo("UTC"))
    early_close = datetime(2024, 7, 3, 17, 0, tzinfo=ZoneInfo("UTC"))
    _write_bars(lake, "AAA", Timeframe.M1, close)  # up to date
    _write_bars(lake, "BBB", Timeframe.M1, early_close)  # a session behind
    _write_bars(lake, "DDD", Timeframe.M1, early_close)  # behind, but its source has no more
    _write_bars(lake, "SP500", Timeframe.D1, datetime(2018, 3, 29, 20, 0, tzinfo=ZoneInfo("UTC")))
    session = _at(date(2024, 7, 5), 16, 30)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAA", "BBB", "CCC", "DDD", "SP500"])
        # DDD's source was asked after the close (now) and still ends on 2024-07-03
        instance.report_runless_asset_event(dg.AssetMaterialization(RAW_BARS, partition="DDD"))
        requests = _evaluate(market_data_schedule, instance, session)
        assert isinstance(requests, list)
        assert [r.partition_key for r in requests] == ["BBB", "CCC"]
        assert [r.run_key for r in requests] == ["2024-07-05:BBB", "2024-07-05:CCC"]
        for request in requests:
            assert request.tags["robo/schedule"] == "market_data_schedule"
            assert request.tags["robo/session"] == "2024-07-05"
            # never past the session that just closed, though the configured range goes on
            assert request.run_config == {"resources": {"robo": {"config": {"end": "2024-07-05"}}}}
        assert (
            requests[0].tags["robo/refresh"]
            == "stored through 2024-07-03, its range reaches 2024-07-05"
        )
        assert requests[1].tags["robo/refresh"] == "no stored bars yet"

        # BBB's run is under way: a re-evaluation requests CCC only, and the same run key
        instance.create_run_for_job(
            defs.resolve_job_def("market_data_job"),
            tags={**requests[0].tags, "dagster/partition": "BBB"},
            status=dg.DagsterRunStatus.STARTED,
        )
        again = _evaluate(market_data_schedule, instance, session)
        assert isinstance(again, list)
        assert [(r.partition_key, r.run_key) for r in again] == [("CCC", "2024-07-05:CCC")]

        _write_bars(lake, "BBB", Timeframe.M1, close)
        _write_bars(lake, "CCC", Timeframe.M1, close)
        done = _evaluate(market_data_schedule, instance, session)
    assert isinstance(done, dg.SkipReason)
    message = str(done.skip_message)
    assert message.startswith("after the 2024-07-05 session nothing new to ingest")
    assert "SP500: up to date through 2018-03-29" in message
    assert "DDD: its source had nothing after 2024-07-03" in message


# -- weekly retraining schedule --------------------------------------------------------------------


def test_weekly_retrain_schedule_retrains_after_the_last_session_of_the_week(
    robo_env: RoboEnv,
) -> None:
    saturday = _at(date(2024, 3, 30), 6, 0)  # Good Friday closed: the week ended on Thursday
    with dg.instance_for_test() as instance:
        nothing = _evaluate(weekly_retrain_schedule, instance, saturday)
        assert isinstance(nothing, dg.SkipReason)
        assert "no features or labels yet" in str(nothing.skip_message)

        instance.report_runless_asset_event(dg.AssetMaterialization("features", partition="AAA"))
        request = _evaluate(weekly_retrain_schedule, instance, saturday)
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == "weekly-retrain:2024-03-28"
        assert request.tags[RETRAIN_TAG] == "weekly"
        assert request.tags["robo/schedule"] == "weekly_retrain_schedule"
        assert request.tags["robo/session"] == "2024-03-28"

        instance.report_runless_asset_event(dg.AssetMaterialization("champion_model"))
        unchanged = _evaluate(weekly_retrain_schedule, instance, saturday)
    assert isinstance(unchanged, dg.SkipReason)
    assert "week ending 2024-03-28: the champion decision of" in str(unchanged.skip_message)


def test_retrain_job_rebuilds_training_data_and_is_tagged() -> None:
    job = defs.resolve_job_def("retrain_job")
    assert job.tags[RETRAIN_TAG] == "manual"
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert selected == {"training_set", "walk_forward_splits"}


# -- declarative automation ----------------------------------------------------------------------


def _requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, list[str]]:
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    return {
        k.to_user_string(): sorted(str(p) for p in result.get_requested_partitions(k))
        for k in keys
        if result.get_num_requested(k)
    }


@dg.asset(name="training_set")
def _training_set_stub() -> None:
    return None


@dg.asset(name="walk_forward_splits", deps=[_training_set_stub])
def _splits_stub() -> None:
    return None


def _passing_check(asset: dg.AssetsDefinition, name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, blocking=True)
    def _check() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    return _check


_TRAINING_DATA_STUBS = [
    _training_set_stub,
    _splits_stub,
    _passing_check(_training_set_stub, "no_future_information"),
    _passing_check(_splits_stub, "splits_disjoint_including_label_windows"),
    _passing_check(_splits_stub, "purge_covers_label_horizon"),
]


@dg.asset(name="tuned_models", partitions_def=family_partitions)
def _tuned_stub() -> None:
    return None


def test_new_bars_flow_to_the_market_index_then_features_and_labels() -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("symbols", ["AAA", "BBB"])
        instance.report_runless_asset_event(dg.AssetMaterialization("market_index"))
        for symbol in ("AAA", "BBB"):
            for key in ("bars", "features", "labels"):
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=symbol))
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert _requested(first) == {}

        instance.report_runless_asset_event(dg.AssetMaterialization("bars", partition="AAA"))
        after_bars = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        # the index (and the regimes, in the same run) first; features wait for the index
        assert _requested(after_bars) == {
            "labels": ["AAA"],
            "market_index": ["None"],
            "market_regimes": ["None"],
        }

        instance.report_runless_asset_event(dg.AssetMaterialization("market_index"))
        after_index = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=after_bars.cursor
        )
    # cross-asset features change for every symbol when the index does
    assert _requested(after_index) == {"features": ["AAA", "BBB"]}


def test_a_retrain_job_run_sets_off_every_family_then_the_backtest_chain() -> None:
    families = sorted(family_partitions.get_partition_keys())
    with dg.instance_for_test() as instance:
        start = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        # training data built by `make run` (no retrain tag) starts nothing
        dg.materialize(
            _TRAINING_DATA_STUBS, instance=instance, tags={"robo/launched_by": "make run"}
        )
        untagged = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=start.cursor
        )
        assert _requested(untagged) == {}

        dg.materialize(_TRAINING_DATA_STUBS, instance=instance, tags={RETRAIN_TAG: "weekly"})
        retrain = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=untagged.cursor
        )
        assert _requested(retrain) == {
            "oos_predictions": families,
            "trained_models": families,
            "tuned_models": families,
        }

        # every family done, the last one by the automation sensor's backfill: the backtest,
        # the report and the champion decision follow together
        for family in families:
            for key in ("trained_models", "oos_predictions"):
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=family))
        for family in families[1:]:
            instance.report_runless_asset_event(
                dg.AssetMaterialization("tuned_models", partition=family)
            )
        dg.materialize(
            [_tuned_stub], instance=instance, partition_key=families[0], tags=AUTOMATION_RUN_TAGS
        )
        backtest = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=retrain.cursor
        )
    assert _requested(backtest) == {
        "backtest": ["None"],
        "champion_model": ["None"],
        "performance_report": ["None"],
    }


def test_freshness_policies_cover_what_a_trader_relies_on() -> None:
    graph = defs.resolve_asset_graph()
    policies = {
        k.to_user_string(): graph.get(k).freshness_policy
        for k in graph.get_all_asset_keys()
        if graph.get(k).freshness_policy is not None
    }
    assert sorted(policies) == ["bars", "champion_model", "features", "performance_report"]
    crons = {k: (p.deadline_cron, p.timezone) for k, p in policies.items()}  # type: ignore[union-attr]
    assert crons == {
        "bars": ("0 18 * * 1-5", "America/New_York"),
        "features": ("30 18 * * 1-5", "America/New_York"),
        "performance_report": ("0 12 * * 6", "America/New_York"),
        "champion_model": ("0 12 * * 6", "America/New_York"),
    }


# -- model drift and the drift retraining sensor -------------------------------------------------


def _minutes(start: date, end: date, per_session: int) -> list[datetime]:
    """The first ``per_session`` one-minute bar closes of every session in [start, end]."""
    closes = TradingCalendar(start, end).minute_bar_closes()
    frame = pl.DataFrame({"ts": closes}).with_columns(
        day=pl.col("ts").dt.convert_time_zone("America/New_York").dt.date()
    )
    return frame.group_by("day", maintain_order=True).head(per_session)["ts"].to_list()


def _features(ts: list[datetime], symbol: str, seed: int, shift: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, (len(ts), len(NAMES)))
    values[:, :10] += shift  # the first ten features move
    return pl.DataFrame({"symbol": symbol, "ts": ts}).with_columns(
        pl.from_numpy(values, schema=list(NAMES))
    )


def _register_champion(settings: RoboSettings, train: pl.DataFrame) -> tuple[str, Pipeline]:
    """A logistic regression on the training features (target: the first feature's sign)."""
    x = train.select(NAMES).to_pandas()
    target = (x[NAMES[0]] + np.random.default_rng(3).normal(0, 0.5, len(x)) > 0).astype(int)
    model = Pipeline([("impute", SimpleImputer()), ("model", LogisticRegression(max_iter=200))])
    model.fit(x, target)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment("drift-test")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=settings.registered_model,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=["scikit-learn"],  # no inference in a subprocess: seconds saved
        )
    version = str(info.registered_model_version)
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_model_version_tag(
        settings.registered_model, version, FEATURE_SET_TAG, SPEC.spec_hash
    )
    client.set_model_version_tag(settings.registered_model, version, "family", "logreg")
    client.set_registered_model_alias(settings.registered_model, "champion", version)
    return version, model


def _write_recent(lake: ParquetLake, shift: float) -> None:
    """Six sessions of 40 bars per symbol; labels follow the first feature (a positive IC)."""
    ts = _minutes(date(2024, 3, 11), date(2024, 3, 18), per_session=40)
    for i, symbol in enumerate(("AAA", "BBB")):
        frame = _features(ts, symbol, seed=10 + i, shift=shift)
        noise = np.random.default_rng(20 + i).normal(0.0, 0.001, frame.height)
        labels = frame.select(
            "symbol", "ts", fwd_return=pl.col(NAMES[0]) * 0.001 + pl.Series(noise)
        )
        lake.write(FEATURES, Timeframe.M1.value, symbol, frame)
        lake.write(LABELS, Timeframe.M1.value, symbol, labels)


def _write_journal(settings: RoboSettings, version: str, model: Pipeline) -> None:
    """Six sessions of decisions of ``version`` (training-like features, the model's own
    probabilities) for AAA and BBB in the live journal, and AAA's bars in the lake."""
    ts = _minutes(date(2024, 3, 11), date(2024, 3, 18), per_session=40)
    closes = 100.0 * np.exp(np.cumsum(np.random.default_rng(5).normal(0.0, 0.001, len(ts))))
    bars = pl.DataFrame(
        {"ts": ts, "open": closes, "high": closes, "low": closes, "close": closes, "volume": 1e4}
    )
    ParquetLake(settings.lake_dir).write(BARS, "1m", "AAA", conform(bars, symbol="AAA"))
    frames = {s: _features(ts, s, seed=30 + i) for i, s in enumerate(("AAA", "BBB"))}
    proba = {s: model.predict_proba(f.select(NAMES).to_pandas())[:, 1] for s, f in frames.items()}
    with Journal(live_dir(settings) / "journal.duckdb") as journal:
        journal.start_session(
            "s1",
            mode="paper",
            broker="paper",
            model_uri=f"models:/{settings.registered_model}/{version}",
            model_version=version,
            feature_set_hash=SPEC.spec_hash,
            symbols=("AAA", "BBB"),
            config={},
            started_at=ts[0],
        )
        for i, at in enumerate(ts):
            decisions = [
                DecisionRecord(
                    decision_id=f"s1-{i}-{symbol}",
                    session_id="s1",
                    ts=at,
                    symbol=symbol,
                    model_version=version,
                    regime="bull",
                    probability=float(proba[symbol][i]),
                    edge=0.0,
                    target_weight=0.0,
                    reason="hold",
                    features=dict(zip(NAMES, frame.select(NAMES).row(i), strict=True)),
                )
                for symbol, frame in frames.items()
            ]
            journal.commit_bar(BarCommit("s1", at, [], decisions, [], [], None, [], None))


def _drift_metadata(instance: dg.DagsterInstance) -> dict[str, object]:
    result = dg.materialize(
        [model_drift], instance=instance, resources={"robo": RoboSettingsResource()}
    )
    assert result.success
    event = result.asset_materializations_for_node("model_drift")[0]
    return {k: v.value for k, v in event.metadata.items()}


def test_model_drift_says_so_without_a_champion_then_tells_a_shift_from_noise_and_reads_the_journal(
    robo_env: RoboEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBO_SYMBOLS", "AAA,BBB")
    settings = RoboSettings.from_overrides()
    lake = ParquetLake(settings.lake_dir)
    train_ts = _minutes(date(2024, 2, 1), date(2024, 3, 8), per_session=60)
    train = pl.concat([_features(train_ts, s, seed=i) for i, s in enumerate(("AAA", "BBB"))])
    lake.write(TRAINING_SET, Timeframe.M1.value, POOLED, train)
    _write_recent(lake, shift=0.0)
    with dg.instance_for_test() as instance:
        none = _drift_metadata(instance)
        assert none == {"status": "no champion yet: nothing to monitor", "drifted": False}

        version, champion = _register_champion(settings, train)
        same = _drift_metadata(instance)
        assert same["drifted"] is False, same["reasons"]
        assert same["champion_version"] == version
        assert same["recent_source"] == RESEARCH_SOURCE
        assert same["journal_not_used"] == "no live journal yet"
        assert same["recent_sessions"] == [f"2024-03-{d}" for d in (12, 13, 14, 15, 18)]
        assert (same["n_train"], same["n_recent"], same["n_ic_pairs"]) == (
            train.height,
            400,
            400,
        )
        assert same["ic"] > 0.3  # type: ignore[operator]
        assert same["max_psi"] < 0.25  # type: ignore[operator]
        assert "| feature | PSI |" in str(same["top_drifted_features"])

        _write_recent(lake, shift=2.0)
        shifted = _drift_metadata(instance)

        # the live journal, once it holds enough decisions of the champion, is "recent"
        _write_journal(settings, version, champion)
        live = _drift_metadata(instance)
    assert live["recent_source"] == JOURNAL_SOURCE
    assert "journal_not_used" not in live
    assert live["drifted"] is False, live["reasons"]
    assert live["recent_sessions"] == [f"2024-03-{d}" for d in (12, 13, 14, 15, 18)]
    assert live["n_recent"] == 400
    # realized returns from the stored bars after each decision: AAA's bars only, and none in
    # the last 15 bars of a session (the label horizon does not cross the close)
    assert live["n_ic_pairs"] == 5 * (40 - 15)

    assert shifted["drifted"] is True
    assert shifted["status"] == "drifted"
    assert set(shifted["drifted_features"]) == set(NAMES[:10])  # type: ignore[arg-type]
    assert shifted["prediction_psi"] > 0.25  # type: ignore[operator]
    assert any("10 of 50 features shifted" in r for r in shifted["reasons"])  # type: ignore[union-attr]


def _drift_event(instance: dg.DagsterInstance, *, drifted: bool) -> None:
    metadata: dict[str, object] = {
        "drifted": drifted,
        "champion_version": "7",
        "reasons": ["3 of 50 features shifted: rsi_14 (PSI 0.41)"] if drifted else [],
        "status": "drifted" if drifted else "ok",
    }
    instance.report_runless_asset_event(dg.AssetMaterialization("model_drift", metadata=metadata))


def _sense(instance: dg.DagsterInstance, cursor: str | None) -> tuple[object, str | None]:
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        return drift_retrain_sensor(context), context.cursor


def test_drift_sensor_requests_a_retraining_only_for_a_new_drifted_materialization() -> None:
    with dg.instance_for_test() as instance:
        result, cursor = _sense(instance, None)
        assert isinstance(result, dg.SkipReason)
        assert "has not materialized yet" in str(result.skip_message)

        _drift_event(instance, drifted=False)
        result, cursor = _sense(instance, cursor)
        assert isinstance(result, dg.SkipReason)
        assert str(result.skip_message).endswith(": ok")

        _drift_event(instance, drifted=True)
        result, cursor = _sense(instance, cursor)
        assert isinstance(result, dg.RunRequest)
        assert result.run_key == "drift-retrain:v7"
        assert result.tags[RETRAIN_TAG] == "drift"
        assert "rsi_14 (PSI 0.41)" in result.tags["robo/retrain_reason"]
        assert result.tags["robo/champion_version"] == "7"

        # the same materialization again: the cursor has it
        result, same_cursor = _sense(instance, cursor)
        assert isinstance(result, dg.SkipReason)
        assert same_cursor == cursor

        # a retraining under way: a new drifted materialization waits for it
        instance.create_run_for_job(
            defs.resolve_job_def("retrain_job"), status=dg.DagsterRunStatus.STARTED
        )
        _drift_event(instance, drifted=True)
        result, _ = _sense(instance, cursor)
    assert isinstance(result, dg.SkipReason)
    assert "already under way" in str(result.skip_message)
