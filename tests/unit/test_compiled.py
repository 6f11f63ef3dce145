"""The ahead-of-time compile step runs every live kernel with the signatures the code uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trader_runtime.compiled import clear_stale_kernels

# run in a fresh interpreter: in a test worker, other tests may have compiled the kernels already
_PROBE = """
import json
from trader_runtime import compiled
from trader_runtime.decision import kernels as decision_kernels, regime_kernels
from trader_runtime.features import streaming_kernels
from trader_runtime.live import market_kernels
from trader_runtime.models import inference, network_kernels
from trader_runtime.trading import kernels as trading_kernels

seconds = compiled.warm()
entry_points = {
    "streaming_kernels.step_bar": streaming_kernels.step_bar,
    "regime_kernels.step": regime_kernels.step,
    "market.step_instant": market_kernels.step_instant,
    "decision.decide": decision_kernels.decide,
    "decision.finish": decision_kernels.finish,
    "trading.mark_to": trading_kernels.mark_to,
    "trading.value_at": trading_kernels.value_at,
    "trading.track_closes": trading_kernels.track_closes,
    "trading.gross_without": trading_kernels.gross_without,
    "inference.forest": inference._forest_positive,
    "inference.lightgbm": inference._lightgbm_positive,
    "inference.xgboost": inference._xgboost_positive,
    "inference.network": inference._network_positive,
    "network.positive": network_kernels.positive,
}
print(json.dumps({"groups": sorted(seconds), "missing": [k for k, d in entry_points.items() if not d.signatures]}))
"""


def test_every_group_of_kernels_compiles_the_entry_points_the_live_path_calls() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=240
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["groups"] == sorted(
        [
            "streaming features",
            "streaming regime",
            "market state",
            "decision core",
            "book and risk",
            "native scoring",
        ]
    )
    assert report["missing"] == []  # each has a compiled signature after warm() alone


def _package(root: Path) -> tuple[Path, Path]:
    (root / "__pycache__").mkdir(parents=True)
    (root / "sub" / "__pycache__").mkdir(parents=True)
    (root / "callee.py").write_text("def f(): return 1\n")
    (root / "sub" / "caller.py").write_text("from callee import f\n")
    index = root / "sub" / "__pycache__" / "caller.caller-1.py311.nbi"
    data = root / "sub" / "__pycache__" / "caller.caller-1.py311.1.nbc"
    return index, data


def test_caches_are_dropped_when_any_source_changed_and_kept_otherwise(tmp_path: Path) -> None:
    index, data = _package(tmp_path)
    assert clear_stale_kernels(tmp_path) == 0  # nothing cached yet; the sources are recorded
    for path in (index, data):
        path.write_bytes(b"compiled")
    assert clear_stale_kernels(tmp_path) == 0  # unchanged sources: the cache stays
    assert index.exists()
    assert data.exists()
    # the callee changes in another module: numba would not notice, the caller's cache goes
    (tmp_path / "callee.py").write_text("def f(): return 2\n")
    assert clear_stale_kernels(tmp_path) == 2
    assert not index.exists()
    assert not data.exists()
    assert clear_stale_kernels(tmp_path) == 0
