"""Control of a running session: model reload at a safe point, the kill switch, the stale-data
watchdog, and the model's feature-set check."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tests.integration.test_live_parity import CONFIG, SYMBOLS, _feed
from tests.live_kit import loaded_model, paper_trades, register_model
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.live.engine import LiveConfig, LiveEngine
from trader_runtime.live.feeds import Pacing, SyntheticFeed
from trader_runtime.live.journal import Journal
from trader_runtime.live.scoring import FeatureSetMismatchError, load_model
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.synthetic import SyntheticMarketConfig


def _engine(tmp: Path, feed: SyntheticFeed | None = None, **live: object) -> LiveEngine:
    return LiveEngine(
        symbols=SYMBOLS,
        trading=CONFIG,
        live=LiveConfig(control_dir=tmp / "control", watchdog_period_s=0.05, **live),
        feed=feed or _feed(),
        broker=PaperBroker(
            tmp / "paper.json", costs=CONFIG.costs, initial_cash_usd=CONFIG.initial_cash_usd
        ),
        journal=Journal(tmp / "journal.duckdb"),
        model=loaded_model("1"),
        model_loader=lambda: loaded_model("2"),
    )


def test_a_reload_request_swaps_the_model_between_bars(tmp_path: Path) -> None:
    engine = _engine(tmp_path, max_bars=200)
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "reload").touch()
    summary = asyncio.run(engine.run())
    assert summary.model_version == "2"
    events = engine.journal.events(engine.session_id, "model_reloaded")
    assert events.height == 1
    decisions = engine.journal.decisions(engine.session_id)
    assert set(decisions["model_version"]) <= {"1", "2"}
    assert decisions["model_version"][-1] == "2"
    assert not (tmp_path / "control" / "reload").exists()  # consumed


def test_the_kill_switch_halts_cancels_and_stops(tmp_path: Path) -> None:
    slow = SyntheticFeed(
        SYMBOLS,
        config=SyntheticMarketConfig(seed=5, signal_strength=0.1),
        live_start=_feed().live_session_dates[0],
        warmup_sessions=6,
        pacing=Pacing(speed=600.0),
    )
    engine = _engine(tmp_path, slow, flatten_on_stop=True)

    async def run_and_kill() -> object:
        task = asyncio.create_task(engine.run())
        await asyncio.sleep(4.0)
        (tmp_path / "control").mkdir(exist_ok=True)
        (tmp_path / "control" / "kill").touch()
        return await task

    summary = asyncio.run(run_and_kill())
    assert summary.status == "killed"
    assert engine.state.trader.risk.halted
    journal = engine.journal
    assert journal.events(engine.session_id, "halt").height == 1
    assert not journal.intents(engine.session_id, ["pending", "sent"])
    assert (engine.state.trader.book.position == 0.0).all()  # flattened per config


def test_stale_data_cancels_working_orders_and_is_journaled(tmp_path: Path) -> None:
    slow = SyntheticFeed(
        SYMBOLS,
        config=SyntheticMarketConfig(seed=5, signal_strength=0.1),
        live_start=_feed().live_session_dates[0],
        warmup_sessions=6,
        pacing=Pacing(speed=60.0),  # a bar a second
    )
    # the watchdog expects a bar every 0.1 s: three silent intervals are stale
    engine = _engine(tmp_path, slow, bar_interval_s=0.1, max_bars=3)
    asyncio.run(engine.run())
    events = engine.journal.events(engine.session_id)
    kinds = events["kind"].to_list()
    assert "stale_data" in kinds
    assert "data_resumed" in kinds


def test_a_model_trained_on_other_features_is_refused(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    names = DEFAULT_FEATURE_SET.feature_names(Timeframe.M1)
    register_model(uri, feature_set_hash="0123456789ab")
    with pytest.raises(FeatureSetMismatchError, match="0123456789ab"):
        load_model(
            uri,
            "robo-trader",
            expected_feature_set_hash=DEFAULT_FEATURE_SET.spec_hash,
            expected_features=names,
        )
    register_model(uri)
    model = load_model(
        uri,
        "robo-trader",
        expected_feature_set_hash=DEFAULT_FEATURE_SET.spec_hash,
        expected_features=names,
    )
    assert model.version == "2"


def test_garbage_is_collected_between_bars_never_inside_one(tmp_path: Path) -> None:
    import gc
    import threading

    from trader_runtime.live import engine as engine_module

    engine = _engine(tmp_path, max_bars=150)
    inside = threading.Event()  # set while the worker runs a bar's decision
    collections: list[bool] = []  # per collection during the session: inside a bar?
    automatic: list[bool] = []
    original = engine._bar

    def bar(*args: object) -> object:
        automatic.append(gc.isenabled())
        inside.set()
        try:
            return original(*args)  # type: ignore[arg-type]
        finally:
            inside.clear()

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(inside.is_set())

    engine._bar = bar  # type: ignore[method-assign]
    enabled_before = gc.isenabled()
    gc.callbacks.append(on_gc)
    try:
        asyncio.run(engine.run())
    finally:
        gc.callbacks.remove(on_gc)
    assert len(automatic) == 150
    assert not any(automatic)
    assert gc.isenabled() == enabled_before  # and as it was after the session
    assert collections
    assert not any(collections)
    # the wall time of each bar's decision and its CPU time, which in sum cannot exceed it (one
    # bar's can, by tens of microseconds of the kernel's accounting when both cores are busy)
    wall, cpu = list(engine.latencies_us), list(engine.latencies_cpu_us)
    assert len(wall) == len(cpu) == 150
    assert min(cpu) >= 0.0
    assert 0.0 < sum(cpu) <= 1.02 * sum(wall)
    # the policy: nothing below the young generation's threshold, a collection above it
    gc.disable()
    try:
        gc.collect()
        seen: list[int] = []
        gc.callbacks.append(lambda phase, info: seen.append(info["generation"]))
        engine_module._collect_garbage()
        assert seen == []
        _garbage = [[] for _ in range(gc.get_threshold()[0] + 10)]
        engine_module._collect_garbage()
        assert seen
        assert seen[0] == 0
        del _garbage
    finally:
        gc.callbacks.pop()
        if enabled_before:
            gc.enable()


def test_a_position_carried_in_from_the_account_is_stopped_out_at_its_cost(
    tmp_path: Path,
) -> None:
    # one share bought far above this market: any bar of the session is below its stop
    broker = PaperBroker(
        tmp_path / "paper.json", costs=CONFIG.costs, initial_cash_usd=CONFIG.initial_cash_usd
    )
    [cost] = paper_trades(broker, "AAA", [(1.0, 100_000.0)], start=datetime(2024, 1, 2, tzinfo=UTC))
    engine = _engine(tmp_path, max_bars=1)
    asyncio.run(engine.run())
    book = engine.state.trader.book
    assert book.position[0] == 1.0  # the exit is decided at the first bar, filled at the next
    assert book.avg_entry[0] == cost
    decisions = engine.journal.decisions(engine.session_id)
    [reason] = decisions.filter(pl.col("symbol") == "AAA")["reason"].to_list()
    assert reason == "stop"  # without the account's cost: "expiry", or held by a signal
