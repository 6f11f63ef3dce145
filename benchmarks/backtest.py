"""Benchmark ``backtest``: one SMA-crossover strategy with the same costs on the same bars in our
compiled engine, vectorbt, backtrader and nautilus-trader, in one run.

The bars are synthetic one-minute bars (``SyntheticSource``), one independent portfolio per symbol
in every engine (vectorbt's per-column portfolios; our engine is called once per symbol). The
strategy and the cost alignment are in ``benchmarks/peers/__init__.py`` (``StrategySpec``) and in
each peer's module docstring. The peers live in ``.venv-bench`` (the ``bench`` extra: the main venv's
pandas 3 is too new for nautilus-trader); a peer that cannot be imported is reported as
unavailable, and the rest of the benchmark runs without it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np
import talib

from benchmarks.harness import Measurement, progress, register
from benchmarks.peers import BarPanel, EngineRun, FloatArray, StrategySpec
from trader_runtime.backtest.engine import run_backtest
from trader_runtime.backtest.fast import simulate_target_weights
from trader_runtime.backtest.grid import MarketGrid
from trader_runtime.backtest.policies import ScheduledWeights, unconstrained
from trader_runtime.decision.config import ExecutionConfig, TradingConfig
from trader_runtime.execution.costs import CostModel
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticSource

NAME = "backtest"
OURS_REPEATS = 10
PEER_MODULES: Mapping[str, str] = MappingProxyType(
    {
        "vectorbt": "benchmarks.peers.vectorbt_peer",
        "backtrader": "benchmarks.peers.backtrader_peer",
        "nautilus": "benchmarks.peers.nautilus_peer",
    }
)
"""Metric prefix -> module with ``run(panel, spec) -> EngineRun`` (imported lazily)."""
SPEED_TARGET_BARS_PER_S = 1_000_000
SPEEDUP_TARGET = 100.0
EQUITY_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class BacktestSize:
    """Symbols x sessions of bars; ``reference_bars`` caps the pure-Python reference run."""

    n_symbols: int
    start: date
    end: date
    reference_bars: int

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(f"BENCH{i:02d}" for i in range(self.n_symbols))


FULL = BacktestSize(4, date(2023, 1, 3), date(2023, 12, 29), reference_bars=20_000)
QUICK = BacktestSize(2, date(2023, 1, 3), date(2023, 1, 31), reference_bars=2_000)
SPEC = StrategySpec()


def load_panel(size: BacktestSize) -> BarPanel:
    """The synthetic bars of ``size`` as (bars, symbols) arrays; every symbol on one timeline."""
    source = SyntheticSource()
    frames = [source.load(BarRequest(s, size.start, size.end)) for s in size.symbols]
    ts = frames[0]["ts"].dt.epoch("ns").to_numpy()
    for symbol, frame in zip(size.symbols, frames, strict=True):
        if not np.array_equal(frame["ts"].dt.epoch("ns").to_numpy(), ts):
            raise ValueError(f"{symbol}'s bars are not on the first symbol's timeline")

    def column(name: str) -> FloatArray:
        return np.column_stack([f[name].to_numpy() for f in frames]).astype(np.float64)

    return BarPanel(
        symbols=size.symbols,
        ts_close_ns=ts.astype(np.int64),
        open_usd=column("open"),
        high_usd=column("high"),
        low_usd=column("low"),
        close_usd=column("close"),
        volume=column("volume"),
    )


def crossover_weights(close_usd: FloatArray, spec: StrategySpec) -> FloatArray:
    """Target weights for ``simulate_target_weights``: the signal (``spec.weight`` while
    SMA(fast) > SMA(slow), else 0) where it changes, NaN (hold) elsewhere; flat before bar 0."""
    weights = np.empty_like(close_usd)
    for j in range(close_usd.shape[1]):
        close = np.ascontiguousarray(close_usd[:, j])
        fast = talib.SMA(close, spec.fast_bars)
        slow = talib.SMA(close, spec.slow_bars)
        signal = np.where(fast > slow, spec.weight, 0.0)  # NaN warm-up compares False
        before = np.concatenate(([0.0], signal[:-1]))
        weights[:, j] = np.where(signal != before, signal, np.nan)
    return weights


def cost_model(spec: StrategySpec) -> CostModel:
    """Our cost model reduced to what every peer can express: a percentage commission and the
    half-spread; no per-share schedule, minimum or maximum, no impact, no participation cap."""
    return CostModel(
        commission_per_share_usd=0.0,
        commission_min_usd=0.0,
        commission_max_pct=0.0,
        commission_bps=spec.commission_bps,
        half_spread_bps=spec.half_spread_bps,
        impact_coefficient=0.0,
        participation_cap=None,
    )


@dataclass(frozen=True, slots=True)
class OursRun:
    """Our compiled engine's run, with its cost totals (summed over the symbols)."""

    run: EngineRun
    commission_usd: float
    spread_cost_usd: float
    traded_notional_usd: float


def _ours_once(panel: BarPanel, spec: StrategySpec, costs: CostModel) -> tuple[Any, ...]:
    weights = crossover_weights(panel.close_usd, spec)
    return tuple(
        simulate_target_weights(
            panel.open_usd[:, j],
            panel.close_usd[:, j],
            panel.volume[:, j],
            weights[:, j],
            costs=costs,
            initial_cash_usd=spec.initial_cash_usd,
            sizing_price="next_open",  # as vectorbt's target-percent orders and the other peers
        )
        for j in range(len(panel.symbols))
    )


def run_ours(panel: BarPanel, spec: StrategySpec, *, repeats: int = OURS_REPEATS) -> OursRun:
    """Best of ``repeats`` timed runs (signals + one ``simulate_target_weights`` call per symbol)
    after a warm-up call that compiles the numba kernel."""
    costs = cost_model(spec)
    warm = min(panel.n_bars, 200)
    simulate_target_weights(
        panel.open_usd[:warm, :1],
        panel.close_usd[:warm, :1],
        panel.volume[:warm, :1],
        np.full((warm, 1), spec.weight),
        costs=costs,
        initial_cash_usd=spec.initial_cash_usd,
        sizing_price="next_open",
    )
    best_s = float("inf")
    results: tuple[Any, ...] = ()
    for _ in range(repeats):
        started = time.perf_counter()
        results = _ours_once(panel, spec, costs)
        best_s = min(best_s, time.perf_counter() - started)
    run = EngineRun(
        engine="ours",
        version="trader_runtime.backtest.fast",
        wall_s=best_s,
        total_bars=panel.total_bars,
        final_equity_usd=tuple(float(r.equity_usd[-1]) for r in results),
        n_fills=sum(r.n_fills for r in results),
        timed=f"SMA signals (TA-Lib) + simulate_target_weights per symbol, best of {repeats}, after a numba warm-up",
    )
    return OursRun(
        run=run,
        commission_usd=sum(r.commission_usd for r in results),
        spread_cost_usd=sum(r.spread_cost_usd for r in results),
        traded_notional_usd=sum(r.traded_notional_usd for r in results),
    )


def _one_symbol_grid(panel: BarPanel, n_bars: int) -> MarketGrid:
    shape = (n_bars, 1)
    nan = np.full(shape, np.nan)
    return MarketGrid(
        symbols=panel.symbols[:1],
        ts=panel.ts_close_ns[:n_bars].astype("datetime64[ns]").astype("datetime64[us]"),
        open=panel.open_usd[:n_bars, :1].copy(),
        high=panel.high_usd[:n_bars, :1].copy(),
        low=panel.low_usd[:n_bars, :1].copy(),
        close=panel.close_usd[:n_bars, :1].copy(),
        volume=panel.volume[:n_bars, :1].copy(),
        probability=nan,
        trends=np.zeros((n_bars, 1, 0)),
        applicable=np.zeros((1, 0), dtype=bool),
        regime_codes=np.zeros(n_bars, dtype=np.int64),
        daily_vol=nan,
        adv_shares=nan,
        expected_volume=nan,
    )


@dataclass(frozen=True, slots=True)
class ReferenceRun:
    bars: int
    wall_s: float
    final_equity_usd: float
    compiled_final_equity_usd: float

    @property
    def equity_rel_diff(self) -> float:
        return _rel_diff(self.final_equity_usd, self.compiled_final_equity_usd)


def run_reference(panel: BarPanel, spec: StrategySpec, n_bars: int) -> ReferenceRun:
    """Our pure-Python reference engine (``run_backtest`` with ``ScheduledWeights``) on the first
    ``n_bars`` bars of the first symbol, one timed run, against the compiled path on the same."""
    n_bars = min(n_bars, panel.n_bars)
    costs = cost_model(spec)
    grid = _one_symbol_grid(panel, n_bars)
    config = unconstrained(
        TradingConfig(
            initial_cash_usd=spec.initial_cash_usd,
            costs=costs,
            execution=ExecutionConfig(algo="immediate", fractional_shares=False),
        )
    )
    weights = crossover_weights(grid.close, spec)
    started = time.perf_counter()
    result = run_backtest(grid, config, NAME, ScheduledWeights(weights))
    wall_s = time.perf_counter() - started
    compiled = simulate_target_weights(
        grid.open,
        grid.close,
        grid.volume,
        weights,
        costs=costs,
        initial_cash_usd=spec.initial_cash_usd,
    )
    return ReferenceRun(
        bars=n_bars,
        wall_s=wall_s,
        final_equity_usd=result.final_equity_usd,
        compiled_final_equity_usd=float(compiled.equity_usd[-1]),
    )


def load_peer(module_name: str) -> ModuleType | str:
    """The peer module, or why it cannot be used (its engine is missing or fails to import)."""
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # any import failure makes the peer unavailable, never the benchmark
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _rel_diff(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


def _max_rel_diff(run: EngineRun, reference: EngineRun) -> float:
    return max(
        _rel_diff(a, b)
        for a, b in zip(run.final_equity_usd, reference.final_equity_usd, strict=True)
    )


def measure(quick: bool, peers: Mapping[str, str] = PEER_MODULES) -> list[Measurement]:
    """Every measurement of the benchmark, running the ``peers`` that can be imported."""
    size = QUICK if quick else FULL
    spec = SPEC
    progress(f"{NAME}: generating {size.n_symbols} symbols of 1m bars (not timed)")
    panel = load_panel(size)
    context: dict[str, Any] = {
        "symbols": size.n_symbols,
        "bars": panel.total_bars,
        "start": str(size.start),
        "end": str(size.end),
        "strategy": f"SMA({spec.fast_bars})/SMA({spec.slow_bars}) cross, long-only, weight {spec.weight}",
        "costs": f"commission {spec.commission_bps} bps, half-spread {spec.half_spread_bps} bps",
        "cash_per_symbol_usd": spec.initial_cash_usd,
    }

    def m(metric: str, value: float, unit: str, note: str, **extra: Any) -> Measurement:
        return Measurement(NAME, metric, value, unit, {**context, **extra, "note": note})

    progress(f"{NAME}: ours (compiled)")
    ours = run_ours(panel, spec)
    out = [
        m(
            "ours_bars_per_s",
            ours.run.bars_per_s,
            "bars/s",
            f"{ours.run.timed} (target >= {SPEED_TARGET_BARS_PER_S:,})",
            wall_s=ours.run.wall_s,
            fills=ours.run.n_fills,
        ),
        m(
            "ours_final_equity_usd",
            ours.run.total_final_equity_usd,
            "USD",
            "final equity summed over the symbols' portfolios",
            commission_usd=ours.commission_usd,
            spread_cost_usd=ours.spread_cost_usd,
            traded_notional_usd=ours.traded_notional_usd,
        ),
    ]

    progress(f"{NAME}: ours (pure-Python reference), {size.reference_bars:,} bars of one symbol")
    reference = run_reference(panel, spec, size.reference_bars)
    out += [
        m(
            "reference_bars_per_s",
            reference.bars / reference.wall_s,
            "bars/s",
            "our reference engine (run_backtest + ScheduledWeights), one symbol, one run",
            reference_bars=reference.bars,
        ),
        m(
            "reference_equity_rel_diff_vs_ours",
            reference.equity_rel_diff,
            "ratio",
            "|reference - compiled| / compiled final equity on the reference's bars",
            reference_bars=reference.bars,
        ),
    ]

    runs: dict[str, EngineRun] = {}
    for prefix, module_name in peers.items():
        peer = load_peer(module_name)
        if isinstance(peer, str):
            progress(f"{NAME}: {prefix} unavailable ({peer})")
            out.append(
                m(
                    f"{prefix}_available",
                    0,
                    "bool",
                    f"not run: {peer}; the peers are in .venv-bench (`make bench`, `bench` extra)",
                )
            )
            continue
        progress(f"{NAME}: {prefix}")
        run = peer.run(panel, spec)
        runs[prefix] = run
        out.append(
            m(
                f"{prefix}_bars_per_s",
                run.bars_per_s,
                "bars/s",
                f"{run.engine} {run.version}: {run.timed}",
                wall_s=run.wall_s,
                fills=run.n_fills,
            )
        )

    vbt = runs.get("vectorbt")
    if vbt is not None:
        out += [
            m(
                "equity_rel_diff_vs_vectorbt",
                _rel_diff(ours.run.total_final_equity_usd, vbt.total_final_equity_usd),
                "ratio",
                f"|ours - vectorbt| / vectorbt, final equity summed over symbols (target <= {EQUITY_TOLERANCE:g})",
                max_symbol_rel_diff=_max_rel_diff(ours.run, vbt),
                fills=ours.run.n_fills,
                vectorbt_fills=vbt.n_fills,
            ),
            m(
                "ours_speed_vs_vectorbt",
                ours.run.bars_per_s / vbt.bars_per_s,
                "x",
                "ours_bars_per_s / vectorbt_bars_per_s (goal >= 1)",
            ),
        ]
    for prefix in ("backtrader", "nautilus"):
        run = runs.get(prefix)
        if run is None:
            continue
        out.append(
            m(
                f"ours_speed_vs_{prefix}",
                ours.run.bars_per_s / run.bars_per_s,
                "x",
                f"ours_bars_per_s / {prefix}_bars_per_s (target >= {SPEEDUP_TARGET:g})",
            )
        )
        if vbt is not None:
            out.append(
                m(
                    f"{prefix}_equity_rel_diff_vs_vectorbt",
                    _rel_diff(run.total_final_equity_usd, vbt.total_final_equity_usd),
                    "ratio",
                    f"|{prefix} - vectorbt| / vectorbt, final equity summed over symbols",
                    max_symbol_rel_diff=_max_rel_diff(run, vbt),
                    fills=run.n_fills,
                    vectorbt_fills=vbt.n_fills,
                )
            )
    return out


@register(NAME)
def run(quick: bool) -> list[Measurement]:
    """SMA(10)/SMA(50) crossover, same bars and costs, in our compiled engine vs vectorbt, backtrader and nautilus-trader (peers from the `bench` extra, reported unavailable without it)."""
    return measure(quick)
