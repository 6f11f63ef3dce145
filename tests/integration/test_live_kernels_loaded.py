"""A session loads its numba kernels before its first bar: none is loaded from numba's cache
(5-40 ms each) while a bar is handled, at the first bar, the first order, the first fill or the
first correlation penalty."""

from __future__ import annotations

import json
import subprocess
import sys

# a fresh interpreter: in a test worker, other tests may have loaded the kernels already
_PROBE = """
import asyncio, json, tempfile
from pathlib import Path
from numba.core import dispatcher
from tests.integration.test_live_parity import CONFIG, SYMBOLS, _feed
from tests.live_kit import loaded_model
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.live.engine import LiveConfig, LiveEngine
from trader_runtime.live.journal import Journal

in_bar, loaded = [False], []
compile_ = dispatcher.Dispatcher.compile
def compile(self, sig):
    if in_bar[0]:
        loaded.append(self.py_func.__module__ + "." + self.py_func.__qualname__)
    return compile_(self, sig)
dispatcher.Dispatcher.compile = compile
on_instant = LiveEngine._on_instant
async def observed(self, instant):
    in_bar[0] = True
    try:
        await on_instant(self, instant)
    finally:
        in_bar[0] = False
LiveEngine._on_instant = observed

with tempfile.TemporaryDirectory() as tmp:
    broker = PaperBroker(
        Path(tmp) / "paper.json", costs=CONFIG.costs, initial_cash_usd=CONFIG.initial_cash_usd
    )
    engine = LiveEngine(
        symbols=SYMBOLS, trading=CONFIG, live=LiveConfig(max_bars=150), feed=_feed(),
        broker=broker, journal=Journal(Path(tmp) / "journal.duckdb"), model=loaded_model(),
    )
    summary = asyncio.run(engine.run())
    engine.journal.close()
print(json.dumps({"loaded": loaded, "orders": summary.orders, "fills": summary.fills}))
"""


def test_no_kernel_is_loaded_while_a_bar_is_handled() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=300
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["orders"] > 10  # the session trades, so the order and fill paths ran
    assert report["fills"] > 10
    assert report["loaded"] == []
