"""While a session trades, its event loop and worker run on one CPU (``pin_threads``); both get
their CPUs back when it ends."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.integration.test_live_parity import CONFIG, SYMBOLS, _feed
from tests.live_kit import loaded_model
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.live.engine import LiveConfig, LiveEngine, Observation
from trader_runtime.live.journal import Journal

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and two CPUs (this project's machines have both)",
)


def _session(tmp: Path, pin: bool) -> tuple[LiveEngine, list[tuple[set[int], set[int]]]]:
    seen: list[tuple[set[int], set[int]]] = []
    engine: LiveEngine

    def observe(_: Observation) -> None:  # on the loop's thread, between bars
        worker = engine._pool.submit(os.sched_getaffinity, 0).result()
        seen.append((os.sched_getaffinity(0), worker))

    engine = LiveEngine(
        symbols=SYMBOLS,
        trading=CONFIG,
        live=LiveConfig(max_bars=20, pin_threads=pin, observation_interval_s=1e-6),
        feed=_feed(),
        broker=PaperBroker(
            tmp / "paper.json", costs=CONFIG.costs, initial_cash_usd=CONFIG.initial_cash_usd
        ),
        journal=Journal(tmp / "journal.duckdb"),
        model=loaded_model(),
        on_observation=observe,
    )
    asyncio.run(engine.run())
    engine.journal.close()
    return engine, seen


def test_a_session_trades_on_one_cpu_and_gives_the_cpus_back(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    engine, seen = _session(tmp_path, pin=True)
    assert engine.pinned_cpu == max(before)
    *trading, final = seen  # an observation after each bar, and the session's last one
    assert len(trading) >= 20
    assert all(loop == worker == {engine.pinned_cpu} for loop, worker in trading)
    assert final == (before, before)  # trading over: both threads have their CPUs back
    assert os.sched_getaffinity(0) == before  # asyncio.run ran on this thread


def test_without_pinning_the_threads_keep_their_cpus(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    engine, seen = _session(tmp_path, pin=False)
    assert engine.pinned_cpu is None
    assert seen
    assert all(loop == worker == before for loop, worker in seen)
