"""`dagster job launch -j live_trading` on a temporary Dagster home: the session starts, reports
observations, stops cleanly when the run is terminated (or on its own at max_bars), and records a
final materialization."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT, RoboEnv
from tests.live_kit import register_model
from trader_runtime.live.journal import Journal
from trader_runtime.settings import RoboSettings

LIVE = dg.AssetKey("live_trading_session")
# start launched runs at once, without a daemon
IMMEDIATE = """
storage:
  sqlite:
    base_dir:
      env: DAGSTER_HOME
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""


def _launch(robo_env: RoboEnv, config: dict[str, object], log: Path) -> str:
    (robo_env.dagster_home / "dagster.yaml").write_text(IMMEDIATE)
    settings = RoboSettings.from_overrides()
    register_model(settings.mlflow_tracking_uri)
    run_id = str(uuid.uuid4())
    run_config = {"ops": {"live_trading_session": {"config": config}}}
    with log.open("w") as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dagster",
                "job",
                "launch",
                "-w",
                "workspace.yaml",
                "-j",
                "live_trading",
                "--run-id",
                run_id,
                "--config-json",
                json.dumps(run_config),
            ],
            cwd=REPO_ROOT,
            env={**os.environ},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=True,
        )
    return run_id


def _wait(instance: dg.DagsterInstance, run_id: str, done, timeout_s: float, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and done(run):
            return run
        time.sleep(0.5)
    raise AssertionError(f"timed out; launch log:\n{log.read_text()[-3000:]}")


def _observations(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogRecord]:
    records = instance.fetch_observations(LIVE, limit=1000).records
    return [r for r in records if r.run_id == run_id]


BASE = {
    "symbols": ["AAA"],
    "warmup_sessions": 3,
    "observation_interval_s": 1.0,
}


@pytest.mark.timeout(300)
def test_a_launched_session_reports_and_stops_cleanly_when_terminated(robo_env: RoboEnv) -> None:
    log = robo_env.root / "launch.log"
    run_id = _launch(robo_env, {**BASE, "speed": 60.0}, log)
    instance = dg.DagsterInstance.get()
    try:
        _wait(instance, run_id, lambda r: len(_observations(instance, run_id)) >= 3, 180, log)
        first = _observations(instance, run_id)[-1].asset_observation
        assert first is not None
        assert {"equity_usd", "positions", "regime", "fills", "slippage_vs_arrival_bps"} <= set(
            first.metadata
        )
    finally:
        instance.run_coordinator.cancel_run(run_id)
    run = _wait(instance, run_id, lambda r: r.is_finished, 120, log)
    assert run.status == dg.DagsterRunStatus.CANCELED
    materialization = instance.fetch_materializations(LIVE, limit=1).records
    assert materialization, "\n".join(
        f"{e.dagster_event_type} {e.user_message[:200]}" for e in instance.all_logs(run_id)
    )
    assert materialization[0].run_id == run_id
    meta = materialization[0].asset_materialization.metadata
    assert meta["status"].value == "stopped"
    assert meta["reason"].value == "run terminated"
    settings = RoboSettings.from_overrides()
    with Journal(settings.data_dir / "live" / "journal.duckdb") as journal:
        session = journal.session(meta["session_id"].value)
        assert session is not None
        assert session.status == "stopped"
        assert not journal.intents(session.session_id, ["pending", "sent"])


@pytest.mark.timeout(300)
def test_a_launched_session_trades_at_the_fake_ib_gateway(robo_env: RoboEnv) -> None:
    """Run config selects the ibkr broker and feed; the session trades through the real ib_async
    client at the project's fake gateway and ends in SUCCESS at max_bars (the bounded paper
    session is `make run`'s stage 8, tests/e2e/test_pipeline_cli.py)."""
    from tests.ib_kit import Clock, loaded_gateway, on, realtime_subscriptions

    log = robo_env.root / "launch.log"
    with loaded_gateway() as gw:
        config = {
            "symbols": ["AAA", "BBB"],
            "warmup_sessions": 3,
            "observation_interval_s": 1.0,
            "broker": "ibkr",
            "feed": "ibkr",
            "ib_port": gw.port,
            "ib_client_id": 21,
            "allow_port_mismatch": True,
            "max_bars": 30,
        }
        run_id = _launch(robo_env, config, log)
        instance = dg.DagsterInstance.get()
        clock: Clock | None = None
        try:
            deadline = time.monotonic() + 180
            while realtime_subscriptions(gw) < 2:
                run = instance.get_run_by_id(run_id)
                assert run is None or not run.is_finished, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
            clock = Clock(gw, interval_s=0.1).start()
            run = _wait(instance, run_id, lambda r: r.is_finished, 180, log)
        finally:
            if clock is not None:
                clock.stop()
        assert run.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
        meta = instance.fetch_materializations(LIVE, limit=1).records[0].asset_materialization
        assert meta is not None
        assert meta.metadata["bars"].value == 30
        assert meta.metadata["broker"].value == "ibkr"
        assert meta.metadata["status"].value == "stopped"
        assert meta.metadata["reason"].value == "max_bars 30 reached"
        assert on(gw, lambda g: g.connection_count) >= 1
        assert on(gw, lambda g: len(g.historical_requests)) >= 2 * 3  # the warm-up, per session
