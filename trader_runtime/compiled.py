"""Compile the live path's numba kernels once, ahead of time: ``python -m trader_runtime.compiled``.

The kernels are cached on disk (``njit(cache=True)``, next to their modules), but a fresh checkout
compiles them on first use: about half a minute that would otherwise land in the first bar of the
first session, or in every test process that starts at once. ``make run`` and ``make test`` run
this first; with a warm cache it only loads them (a second or two). The live engine calls
``warm`` too, before a session's first bar: numba loads a cached kernel at its first call (5-40
ms each), which would otherwise land in the session's first bar, first order and first
correlation penalty.

Each group runs the real entry points on a tiny input, with the types the live loop and the
backtest pass, so the compiled signatures are the ones used.

numba's cache checks only the source file of the function it compiled, not the kernels it calls
in other modules nor the constants it froze from them: after an edit or an upgrade, a caller's
cached code could keep the old callee. So the caches are dropped first whenever any source of
``trader_runtime`` differs from the sources they were compiled from (``clear_stale_kernels``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.core import BarSnapshot, DecisionCore, PortfolioView
from trader_runtime.decision.regime import RegimeConfig, StreamingRegime
from trader_runtime.features.streaming import StreamingFeatures
from trader_runtime.live.market_state import MarketState
from trader_runtime.market.bars import Bar
from trader_runtime.market.instant import MarketInstant
from trader_runtime.market.regimes import Regime
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.models import inference, network_kernels
from trader_runtime.trading.trader import Trader

_TS = datetime(2024, 7, 1, 14, 31, tzinfo=UTC)
PACKAGE_ROOT = Path(__file__).resolve().parent
STAMP_NAME = "numba-sources.sha256"


def sources_digest(root: Path) -> str:
    """SHA-256 of every ``.py`` file under ``root`` (relative paths and contents, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def clear_stale_kernels(root: Path = PACKAGE_ROOT) -> int:
    """Delete numba's cache files under ``root`` unless they were compiled from the sources as
    they are now; record the sources' digest. Returns the number of files deleted."""
    stamp = root / "__pycache__" / STAMP_NAME
    digest = sources_digest(root)
    if stamp.exists() and stamp.read_text().strip() == digest:
        return 0
    stale = [p for pattern in ("*.nbi", "*.nbc") for p in root.rglob(pattern)]
    for path in stale:
        path.unlink(missing_ok=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest + "\n")
    return len(stale)


def _features() -> None:
    out = np.empty(len(StreamingFeatures().feature_names))
    StreamingFeatures().update_into(Bar(_TS, 10.0, 10.5, 9.5, 10.0, 1000.0), out)


def _regime() -> None:
    StreamingRegime().update(_TS, 100.0, 0.5)


def _decision() -> None:
    config = TradingConfig(signal={"center_min_bars": 1, "center_window_bars": 2})
    core = DecisionCore(2, config)
    close = np.array([10.0, 20.0])
    held = np.array([100.0, 0.0])
    for t, regime in enumerate((Regime.BULL, Regime.CRASH)):
        bar = BarSnapshot(
            bar_index=t,
            close=close,
            high=close * 1.01,
            low=close * 0.99,
            probability=np.array([0.9, 0.1]),
            trends=np.ones((2, 1)),
            applicable=np.ones((2, 1), dtype=bool),
            regime=regime,
        )
        core.step(bar, PortfolioView(1e6, held, held, np.array([10.0, np.nan])))


def _market_state() -> None:
    state = MarketState(("A", "B"), (Timeframe.M5,), RegimeConfig())
    state.update(MarketInstant(_TS, {"A": Bar(_TS, 10.0, 10.5, 9.5, 10.0, 1000.0)}))


def _trading() -> None:
    trader = Trader(("A", "B"), TradingConfig())
    trader.book.position[0] = 10.0
    ts_us = int(_TS.timestamp() * 1_000_000)  # in trading hours: the checks run to the caps
    trader.mark(ts_us, np.array([10.0, 20.0]))
    trader.book.value_at(np.array([10.0, np.nan]))
    trader.risk.check(ts_us, 1, 5.0, 20.0, trader.book.position, trader.book.mark, 1e6)


def _scoring() -> None:
    x = np.zeros((1, 2))
    prep = (np.zeros(2), np.empty(0), np.ones(2))
    i64 = np.array([0, 0, 0], dtype=np.int64)
    links = (np.array([1, -1, -1]), np.array([2, -1, -1]))
    inference._forest_positive(
        x, *prep, i64, np.zeros(3), *links, np.zeros(3), np.zeros(1, dtype=np.int64)
    )
    inference._lightgbm_positive(
        x,
        *prep,
        i64,
        np.zeros(3),
        *links,
        np.zeros(3, dtype=np.bool_),
        i64,
        np.zeros(3),
        np.zeros(1, dtype=np.int64),
        1.0,
    )
    inference._xgboost_positive(
        x,
        *prep,
        i64,
        np.zeros(3, dtype=np.float32),
        *links,
        np.zeros(3, dtype=np.bool_),
        np.zeros(1, dtype=np.int64),
        0.5,
    )
    network = (np.ones(2, dtype=np.float32), np.zeros(1, dtype=np.float32), np.array([[1, 2]]))
    inference._network_positive(x, *prep, *network)
    network_kernels.positive(np.zeros((1, 2), dtype=np.float32), *network)


GROUPS: dict[str, Callable[[], None]] = {
    "streaming features": _features,
    "streaming regime": _regime,
    "market state": _market_state,
    "decision core": _decision,
    "book and risk": _trading,
    "native scoring": _scoring,
}


def warm() -> dict[str, float]:
    """Compile (or load from the cache) every group; seconds per group."""
    seconds = {}
    for name, run in GROUPS.items():
        started = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - started
    return seconds


if __name__ == "__main__":
    dropped = clear_stale_kernels()
    if dropped:
        print(
            f"numba kernels: sources changed since they were cached; {dropped} cache files dropped"
        )
    timings = warm()
    print("numba kernels ready: " + ", ".join(f"{name} {s:.1f} s" for name, s in timings.items()))
