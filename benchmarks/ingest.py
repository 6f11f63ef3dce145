"""Benchmark ``ingest``: synthetic one-minute bars generated, validated, resampled and stored."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from benchmarks.harness import Measurement, progress, register
from robo_assets.market_data import build_bars, ingest_raw_bars
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake
from trader_runtime.storage.warehouse import Warehouse

NAME = "ingest"


@dataclass(frozen=True, slots=True)
class IngestSize:
    n_symbols: int
    start: date
    end: date

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(f"BENCH{i:02d}" for i in range(self.n_symbols))


FULL = IngestSize(n_symbols=20, start=date(2023, 1, 3), end=date(2023, 12, 29))
QUICK = IngestSize(n_symbols=2, start=date(2023, 1, 3), end=date(2023, 1, 31))


@register(NAME)
def run(quick: bool) -> list[Measurement]:
    """Synthetic 1m bars per symbol, sequentially in one process: `ingest_raw_bars` then `build_bars` into a fresh lake and warehouse."""
    size = QUICK if quick else FULL
    # Load the exchange calendar once before timing: a one-off per process, not per row. A
    # different date range is used so the cached schedule of the benchmark window stays cold.
    t0 = time.perf_counter()
    TradingCalendar(date(2000, 1, 3), date(2000, 1, 3)).schedule()
    calendar_load_s = time.perf_counter() - t0

    generate_s = 0.0
    build_s = 0.0
    rows = 0
    quarantined = 0
    with tempfile.TemporaryDirectory(prefix="robo-bench-ingest-") as tmp:
        settings = RoboSettings.from_overrides(
            data_dir=Path(tmp),
            symbols=size.symbols,
            index_symbols=(),
            source="synthetic",
            start=size.start,
            end=size.end,
        )
        lake = ParquetLake(settings.lake_dir)
        warehouse = Warehouse(settings.warehouse_path)
        wall_start = time.perf_counter()
        for i, symbol in enumerate(size.symbols, start=1):
            t0 = time.perf_counter()
            raw = ingest_raw_bars(settings, symbol, lake)
            t1 = time.perf_counter()
            bars = build_bars(settings, symbol, lake, warehouse)
            t2 = time.perf_counter()
            generate_s += t1 - t0
            build_s += t2 - t1
            rows += raw.rows
            quarantined += bars.quarantined_rows
            progress(
                f"{NAME}: {symbol} {i}/{size.n_symbols}: {raw.rows:,} rows, "
                f"generate {t1 - t0:.2f}s, build {t2 - t1:.2f}s"
            )
        wall_s = time.perf_counter() - wall_start
        lake_bytes = sum(p.stat().st_size for p in settings.lake_dir.rglob("*.parquet"))
        warehouse_bytes = settings.warehouse_path.stat().st_size

    context = {
        "symbols": size.n_symbols,
        "start": size.start.isoformat(),
        "end": size.end.isoformat(),
        "sessions": len(TradingCalendar(size.start, size.end).sessions()),
        "rows": rows,
        "quarantined_rows": quarantined,
        "process": "single (symbols run sequentially)",
        "params": {"source": "synthetic", "base_timeframe": "1m", "timeframes": "1m,5m,15m,1h,1d"},
    }

    def measure(metric: str, value: float | int, unit: str, note: str) -> Measurement:
        return Measurement(NAME, metric, value, unit, {**context, "note": note})

    return [
        measure(
            "rows_per_s",
            rows / wall_s,
            "rows/s",
            "headline: 1m rows ingested end to end per second of wall time",
        ),
        measure("wall_s", wall_s, "s", "all symbols, generate + validate/resample/store"),
        measure("rows", rows, "rows", "1m rows ingested (symbols x calendar minutes)"),
        measure(
            "generate_s",
            generate_s,
            "s",
            "ingest_raw_bars: simulate bars, write raw bars and true regimes",
        ),
        measure(
            "validate_resample_store_s",
            build_s,
            "s",
            "build_bars: read raw, validate, quarantine, resample to 5m/15m/1h/1d, write all",
        ),
        measure(
            "calendar_load_s",
            calendar_load_s,
            "s",
            "one-off exchange calendar load, before and not part of wall_s",
        ),
        measure(
            "lake_mib", lake_bytes / 2**20, "MiB", "Parquet written (zstd): raw, regimes, bars"
        ),
        measure("warehouse_mib", warehouse_bytes / 2**20, "MiB", "DuckDB warehouse file"),
    ]
