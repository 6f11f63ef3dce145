"""Ingest and bar building as plain functions (no Dagster): what the data assets call.

``ingest_raw_bars`` lands a symbol's bars as the source gives them; ``build_bars`` validates them,
quarantines bad rows with reasons, resamples one-minute bars to the higher timeframes and writes
every timeframe to the lake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from trader_runtime.errors import EmptyInputError
from trader_runtime.market.resample import resample_bars
from trader_runtime.market.timeframes import HIGHER_TIMEFRAMES, Timeframe
from trader_runtime.market.validation import GapReport, validate_bars
from trader_runtime.settings import RoboSettings
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.registry import source_for_symbol
from trader_runtime.sources.synthetic import SyntheticSource
from trader_runtime.storage.lake import ParquetLake
from trader_runtime.storage.warehouse import Warehouse

RAW_BARS = "raw_bars"
BARS = "bars"
TRUE_REGIMES = "true_regimes"


@dataclass(frozen=True, slots=True)
class RawBarsResult:
    symbol: str
    source: str
    timeframe: Timeframe
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None


@dataclass(frozen=True, slots=True)
class BarsResult:
    symbol: str
    source: str
    base_timeframe: Timeframe
    rows_by_timeframe: dict[Timeframe, int]
    quarantined_rows: int
    quarantine_reasons: dict[str, int]
    gaps: GapReport
    first_ts: datetime | None
    last_ts: datetime | None


def ingest_raw_bars(settings: RoboSettings, symbol: str, lake: ParquetLake) -> RawBarsResult:
    """Load ``symbol`` from its source and replace its raw partition; synthetic symbols also land
    their true regimes (dataset ``true_regimes``) for evaluating regime detection."""
    source = source_for_symbol(symbol, settings)
    start, end = settings.date_range_for(symbol)
    frame = source.load(BarRequest(symbol=symbol, start=start, end=end))
    if frame.height == 0:
        raise EmptyInputError(
            f"{source.name} returned no bars for {symbol} between {start} and {end}"
        )
    timeframe = source.base_timeframe
    lake.write(RAW_BARS, timeframe.value, symbol, frame)
    if isinstance(source, SyntheticSource):
        regimes = source.true_regimes(start, end).with_columns(pl.lit(symbol).alias("symbol"))
        lake.write(TRUE_REGIMES, timeframe.value, symbol, regimes)
    ts = frame["ts"].drop_nulls()
    return RawBarsResult(
        symbol=symbol,
        source=source.name,
        timeframe=timeframe,
        rows=frame.height,
        first_ts=ts.min() if ts.len() else None,  # type: ignore[arg-type]
        last_ts=ts.max() if ts.len() else None,  # type: ignore[arg-type]
    )


def raw_timeframe(settings: RoboSettings, symbol: str) -> Timeframe:
    return source_for_symbol(symbol, settings).base_timeframe


def build_bars(
    settings: RoboSettings,
    symbol: str,
    lake: ParquetLake,
    warehouse: Warehouse,
    *,
    run_id: str | None = None,
) -> BarsResult:
    """Validate the raw partition, quarantine bad rows, write clean bars at every timeframe."""
    source = source_for_symbol(symbol, settings)
    base = source.base_timeframe
    raw = lake.read(RAW_BARS, base.value, symbol)
    result = validate_bars(raw, timeframe=base)
    quarantined = warehouse.replace_quarantine(
        dataset=RAW_BARS,
        source=source.name,
        symbol=symbol,
        timeframe=base.value,
        rows=result.quarantined,
        run_id=run_id,
    )
    if result.good.height == 0:
        raise EmptyInputError(
            f"every one of the {raw.height} raw bars of {symbol} was quarantined; "
            f"reasons: {result.reason_counts()}"
        )
    rows: dict[Timeframe, int] = {base: result.good.height}
    lake.write(BARS, base.value, symbol, result.good)
    if base is Timeframe.M1:
        for timeframe in HIGHER_TIMEFRAMES:
            resampled = resample_bars(result.good, timeframe)
            lake.write(BARS, timeframe.value, symbol, resampled)
            rows[timeframe] = resampled.height
    for stale in set(lake.timeframes(BARS, symbol)) - {tf.value for tf in rows}:
        lake.delete(BARS, stale, symbol)
    return BarsResult(
        symbol=symbol,
        source=source.name,
        base_timeframe=base,
        rows_by_timeframe=rows,
        quarantined_rows=quarantined,
        quarantine_reasons=result.reason_counts(),
        gaps=result.gaps,
        first_ts=result.good["ts"].min(),  # type: ignore[arg-type]
        last_ts=result.good["ts"].max(),  # type: ignore[arg-type]
    )
