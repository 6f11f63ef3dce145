"""The runtime killed with SIGKILL mid-session and restarted against the same gateway: zero
duplicate orders, zero lost fills, positions equal to the gateway's, the journal complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, RoboEnv
from tests.fake_ib import Script
from tests.fake_ib.log_guard import DECODER_ERROR_PREFIXES
from tests.ib_kit import Clock, loaded_gateway, on, realtime_subscriptions
from tests.integration.test_ib_broker import assert_books_agree
from tests.live_kit import register_model
from trader_runtime.live.journal import Journal
from trader_runtime.settings import RoboSettings

SESSION = """
import sys
from trader_runtime.live.session import SessionSpec, run_session
from trader_runtime.settings import RoboSettings

spec = SessionSpec(
    broker="ibkr", feed="ibkr", ib_port=int(sys.argv[1]), max_bars=int(sys.argv[2]),
    warmup_sessions=3, allow_port_mismatch=True,
)
print(run_session(RoboSettings.from_overrides(), spec), flush=True)
"""
ENV = {
    "ROBO_SYMBOLS": "AAA,BBB",
    "ROBO_IB__CLIENT_ID": "9",
    "ROBO_IB__COMMISSION_WAIT_S": "0.5",
    "ROBO_IB__BACKOFF_INITIAL_S": "0.05",
    "ROBO_IB__HEARTBEAT_INTERVAL_S": "1.0",
    "ROBO_TRADING__SIGNAL__CENTER_WINDOW_BARS": "60",
    "ROBO_TRADING__SIGNAL__CENTER_MIN_BARS": "10",
    "ROBO_TRADING__SIGNAL__ENTRY_EDGE": "0.01",
}


def _start(port: int, max_bars: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SESSION, str(port), str(max_bars)],
            cwd=REPO_ROOT,
            env={**os.environ, **ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.timeout(240)
def test_sigkill_mid_session_then_restart_keeps_every_book_whole(robo_env: RoboEnv) -> None:
    for key, value in ENV.items():
        os.environ[key] = value
    settings = RoboSettings.from_overrides()
    register_model(settings.mlflow_tracking_uri)
    log = robo_env.root / "session.log"
    with loaded_gateway(script=Script(partial_fill_fractions=(0.6, 0.4))) as gw:
        first = _start(gw.port, 50, log)
        clock: Clock | None = None
        try:
            deadline = time.monotonic() + 120
            # the clock starts when the session has subscribed to real-time bars (warm-up read)
            while realtime_subscriptions(gw) < 2:
                assert first.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            clock = Clock(gw, interval_s=0.05).start()
            while len(on(gw, lambda g: list(g.orders))) < 3:
                assert first.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.02)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            time.sleep(0.5)  # the market goes on: working orders fill while nobody listens
            second = _start(gw.port, 50, log)
            assert second.wait(150) == 0, log.read_text()[-3000:]
        finally:
            if clock is not None:
                clock.stop()
            first.kill()
        with Journal(settings.data_dir / "live" / "journal.duckdb") as journal:
            sessions = journal.sessions()
            assert len(sessions) == 1, "the restart resumed the killed session"
            session = sessions[0]
            assert session.status == "stopped"
            assert_books_agree(gw, journal, session.session_id)
            assert not journal.intents(session.session_id, ["pending"])
            kinds = journal.events(session.session_id)["kind"].to_list()
            assert "resumed" in kinds
    # the sessions ran in subprocesses: their ib_async decoder errors went to the log (stderr)
    text = log.read_text()
    assert not any(prefix in text for prefix in DECODER_ERROR_PREFIXES), text[-3000:]
