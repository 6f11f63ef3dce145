"""Bars from the user's CSV or Parquet files.

One file per symbol in ``directory``: ``<SYMBOL>.csv`` or ``<SYMBOL>.parquet``. Schema:

| column | type | required | meaning |
|---|---|---|---|
| ts | timestamp | yes (intraday) | bar *close*; ISO-8601; an offset is converted to UTC, a naive time is read as UTC |
| date | date | instead of ts (daily) | session date; stamped at that session's close |
| open, high, low, close | number | yes | prices |
| volume | number | yes | shares traded in the bar, >= 0 |
| vwap | number | no | volume-weighted average price |
| trade_count | integer | no | trades in the bar |

Rows must be in ascending time. Values that are not numbers or timestamps become nulls and the row is
quarantined with the reason; a file without a required column, or without rows, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from trader_runtime.errors import EmptyInputError, InputSchemaError, UnknownSymbolError
from trader_runtime.market.bars import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, TS_DTYPE, conform
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.market.validation import require_columns
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.index_history import stamp_daily

SUFFIXES: tuple[str, ...] = (".parquet", ".csv")


@dataclass(frozen=True, slots=True)
class FilesSource:
    """Bars read from ``directory``; ``timeframe`` is what the files hold (1m or 1d)."""

    directory: Path
    timeframe: Timeframe = Timeframe.M1

    @property
    def name(self) -> str:
        return "files"

    @property
    def base_timeframe(self) -> Timeframe:
        return self.timeframe

    def file_for(self, symbol: str) -> Path | None:
        for suffix in SUFFIXES:
            candidate = self.directory / f"{symbol}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    def has_symbol(self, symbol: str) -> bool:
        return self.file_for(symbol) is not None

    def load(self, request: BarRequest) -> pl.DataFrame:
        path = self.file_for(request.symbol)
        if path is None:
            raise UnknownSymbolError(
                f"files: no {request.symbol}.csv or {request.symbol}.parquet in {self.directory}"
            )
        frame = read_bar_file(path)
        bars = conform(frame, symbol=request.symbol)
        start = pl.lit(request.start).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
        end = (
            pl.lit(request.end).cast(pl.Datetime("us")) + pl.duration(days=2)
        ).dt.replace_time_zone("UTC")
        in_range = (pl.col("ts") >= start) & (pl.col("ts") < end)
        # rows whose ts could not be read stay in, so validation quarantines them with a reason
        return bars.filter(in_range | pl.col("ts").is_null())


def read_bar_file(path: Path) -> pl.DataFrame:
    """Read one file into bar columns (``ts`` parsed to UTC); raises on a missing column or no rows."""
    what = str(path)
    try:
        if path.suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False)
        elif path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            raise InputSchemaError(f"{what}: unsupported file type (use .csv or .parquet)")
    except pl.exceptions.NoDataError as exc:
        raise EmptyInputError(f"{what}: file is empty") from exc
    except (pl.exceptions.ComputeError, OSError) as exc:
        raise InputSchemaError(f"{what}: cannot be read as {path.suffix[1:]}: {exc}") from exc
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    if "ts" not in frame.columns and "date" in frame.columns:
        frame = stamp_daily(frame.with_columns(_parse_date(pl.col("date"))), date_column="date")
    require_columns(frame.columns, what=what)
    if frame.height == 0:
        raise EmptyInputError(f"{what}: file has a header but no rows")
    known = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
    return frame.select([c for c in known if c in frame.columns]).with_columns(
        _parse_ts(frame.schema["ts"])
    )


def _parse_date(col: pl.Expr) -> pl.Expr:
    return col.cast(pl.String).str.to_date(strict=False)


def _parse_ts(dtype: pl.DataType) -> pl.Expr:
    col = pl.col("ts")
    if isinstance(dtype, pl.Datetime):
        parsed = col if dtype.time_zone else col.dt.replace_time_zone("UTC")
        return parsed.dt.convert_time_zone("UTC").cast(TS_DTYPE).alias("ts")
    text = col.cast(pl.String).str.strip_chars()
    with_offset = text.str.to_datetime(time_unit="us", strict=False, time_zone="UTC")
    return with_offset.cast(TS_DTYPE).alias("ts")
