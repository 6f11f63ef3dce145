"""Benchmark ``features``: the full feature set for a universe of one-minute bars, against the
bare TA-Lib calls for the same indicators, in the same run.

The three timings (raw TA-Lib, ours in one process, ours in worker processes) take turns in each
round and each keeps its best round, so a change in the load of the shared machine during the run
touches all three alike instead of whichever phase it falls on."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import talib
from talib._ta_lib import MA_Type

from benchmarks.harness import Measurement, progress, register
from robo_assets.market_data import build_bars, ingest_raw_bars
from robo_assets.research_data import load_bars
from trader_runtime.features.batch import bar_arrays, compute_features, market_index
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.features.streaming import measure_update_latency_us
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake
from trader_runtime.storage.warehouse import Warehouse

NAME = "features"
REPEATS = 5


@dataclass(frozen=True, slots=True)
class FeaturesSize:
    n_symbols: int
    start: date
    end: date

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(f"BENCH{i:02d}" for i in range(self.n_symbols))


FULL = FeaturesSize(20, date(2023, 1, 3), date(2023, 12, 29))
QUICK = FeaturesSize(2, date(2023, 1, 3), date(2023, 1, 31))


def _raw_talib(bars: dict[Timeframe, pl.DataFrame]) -> None:
    """The TA-Lib calls behind the default feature set, once each, nothing else."""
    a = bar_arrays(bars[Timeframe.M1])
    c, h, lo, v = a.close, a.high, a.low, a.volume
    ret = np.diff(np.log(c))
    for period in (10, 30, 60):
        talib.SMA(c, period)
    talib.SMA(v, 20)
    talib.SMA(v, 60)
    talib.EMA(c, 12)
    talib.EMA(c, 26)
    talib.MACD(c, 12, 26, 9)
    talib.ADX(h, lo, c, 14)
    talib.RSI(c, 14)
    talib.STOCH(h, lo, c, 14, 3, MA_Type.SMA, 3, MA_Type.SMA)
    talib.WILLR(h, lo, c, 14)
    talib.CCI(h, lo, c, 20)
    talib.ROC(c, 10)
    talib.MFI(h, lo, c, v, 14)
    talib.ATR(h, lo, c, 14)
    talib.BBANDS(c, 20, 2.0, 2.0, MA_Type.SMA)
    talib.STDDEV(ret, 30, 1.0)
    talib.STDDEV(ret, 120, 1.0)
    talib.STDDEV(v, 60, 1.0)
    talib.STDDEV(c, 60, 1.0)
    talib.OBV(c, v)
    talib.SUM(v, 20)
    talib.CORREL(ret, ret, 120)
    talib.BETA(c, c, 120)
    for tf in DEFAULT_FEATURE_SET.higher_timeframes:
        b = bar_arrays(bars[tf])
        talib.RSI(b.close, 14)
        talib.SMA(b.close, 10)
        talib.ATR(b.high, b.low, b.close, 14)


def _interleaved_best(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Best wall time (s) of each function over ``repeats`` rounds; within a round the functions
    run one after the other, in the order given."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def _load_average() -> str:
    """The 1, 5 and 15 minute load averages, for the context of a run on a shared machine."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


_WORKER_BARS: dict[str, dict[Timeframe, pl.DataFrame]] = {}
_WORKER_MARKET: list[pl.DataFrame] = []


def _load_worker(root: str, symbols: tuple[str, ...]) -> None:
    """Pool initializer (not timed): each worker holds every symbol's bars and the market index in
    memory, as the single-process run and the raw TA-Lib run do."""
    lake = ParquetLake(Path(root))
    _WORKER_BARS.update({s: load_bars(lake, s) for s in symbols})
    _WORKER_MARKET.append(lake.read("market_index", "1m", "EW"))


def _features_for(symbol: str) -> int:
    return compute_features(_WORKER_BARS[symbol], market=_WORKER_MARKET[0]).height


@register(NAME)
def run(quick: bool) -> list[Measurement]:
    """Full feature set (50 features: 1m indicators, 5m/15m/1h/1d joined as of closed bars, cross-asset) vs the bare TA-Lib calls for the same indicators."""
    size = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="robo-bench-features-") as tmp:
        settings = RoboSettings.from_overrides(
            data_dir=tmp,
            source="synthetic",
            symbols=size.symbols,
            index_symbols=(),
            start=size.start,
            end=size.end,
        )
        lake = ParquetLake(settings.lake_dir)
        warehouse = Warehouse(settings.warehouse_path)
        progress(f"{NAME}: generating {size.n_symbols} symbols of bars (not timed)")
        for symbol in size.symbols:
            ingest_raw_bars(settings, symbol, lake)
            build_bars(settings, symbol, lake, warehouse)
        bars = {s: load_bars(lake, s) for s in size.symbols}
        rows = sum(b[Timeframe.M1].height for b in bars.values())

        def raw_talib() -> None:
            for b in bars.values():
                _raw_talib(b)

        def ours_in_memory() -> None:
            market = market_index(b[Timeframe.M1].select("ts", "close") for b in bars.values())
            for b in bars.values():
                compute_features(b, market=market)

        market = market_index(b[Timeframe.M1].select("ts", "close") for b in bars.values())
        lake.write("market_index", "1m", "EW", market)
        workers = min(2, os.cpu_count() or 1)
        load_before = _load_average()
        # spawn, not fork: Polars' thread pool does not survive a fork; one Polars thread per
        # worker, since the workers already use every core
        spawn = multiprocessing.get_context("spawn")
        os.environ["POLARS_MAX_THREADS"] = "1"
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=spawn,
            initializer=_load_worker,
            initargs=(str(lake.root), size.symbols),
        ) as pool:

            def ours_parallel() -> None:
                market_index(b[Timeframe.M1].select("ts", "close") for b in bars.values())
                list(pool.map(_features_for, size.symbols))

            progress(f"{NAME}: warming up (compiled kernels loaded, workers started and loaded)")
            raw_talib()
            ours_in_memory()
            ours_parallel()
            progress(
                f"{NAME}: {REPEATS} rounds of raw TA-Lib calls, our pipeline in one process, "
                f"our pipeline in {workers} processes across symbols (bars in memory)"
            )
            best = _interleaved_best(
                {"raw": raw_talib, "single": ours_in_memory, "parallel": ours_parallel},
                REPEATS,
            )
        os.environ.pop("POLARS_MAX_THREADS", None)
        talib_s, single_s, parallel_s = best["raw"], best["single"], best["parallel"]

        p50_us, p99_us = measure_update_latency_us()

    context = {
        "symbols": size.n_symbols,
        "rows": rows,
        "start": str(size.start),
        "end": str(size.end),
        "feature_set_hash": DEFAULT_FEATURE_SET.spec_hash,
        "repeats": f"best of {REPEATS} interleaved rounds",
        "load_avg_1_5_15m": load_before,
    }

    def m(metric: str, value: float, unit: str, note: str) -> Measurement:
        return Measurement(NAME, metric, value, unit, {**context, "note": note})

    return [
        m(
            "ours_s",
            parallel_s,
            "s",
            f"market index + features of every symbol, {workers} processes across symbols, bars in memory",
        ),
        m(
            "ours_single_process_s",
            single_s,
            "s",
            "the same in one process with bars already in memory",
        ),
        m(
            "talib_raw_s",
            talib_s,
            "s",
            "only the TA-Lib calls behind the same indicators, one process, arrays in memory",
        ),
        m(
            "ratio_vs_talib",
            parallel_s / talib_s,
            "x",
            "ours_s / talib_raw_s (target <= 2.0, goal 1.0)",
        ),
        m(
            "ratio_single_process_vs_talib",
            single_s / talib_s,
            "x",
            "ours_single_process_s / talib_raw_s",
        ),
        m(
            "n_features",
            len(DEFAULT_FEATURE_SET.feature_names(Timeframe.M1)),
            "features",
            "columns per 1m row",
        ),
        m("rows_per_s", rows / parallel_s, "rows/s", "1m rows featurized per second (ours_s)"),
        m(
            "incremental_p50_us",
            p50_us,
            "us",
            "streaming update, one new bar, one symbol, full set",
        ),
        m("incremental_p99_us", p99_us, "us", "target <= 300"),
    ]
