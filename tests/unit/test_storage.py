import multiprocessing
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from tests.bars_kit import minute_bars
from trader_runtime.errors import ConfigError, StorageError
from trader_runtime.storage.lake import ParquetLake
from trader_runtime.storage.warehouse import Warehouse, query_lake

DAY = date(2024, 3, 1)


def test_rewriting_a_partition_replaces_it_without_duplicates(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    bars = minute_bars(DAY, DAY, symbol="AAA")
    lake.write("bars", "1m", "AAA", bars)
    lake.write("bars", "1m", "AAA", bars.head(10))
    assert lake.read("bars", "1m", "AAA").equals(bars.head(10))
    assert list((tmp_path / "bars" / "1m" / "AAA").iterdir()) == [
        tmp_path / "bars" / "1m" / "AAA" / "data.parquet"
    ]


class _DiskPulledError(Exception):
    pass


class _ExplodingFrame(pl.DataFrame):
    def write_parquet(self, file: object, **kwargs: object) -> None:  # type: ignore[override]
        super().write_parquet(file, **kwargs)  # type: ignore[arg-type]
        raise _DiskPulledError("disk pulled mid-write")


def test_a_failed_write_leaves_the_old_partition_whole_and_no_temp_file(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    bars = minute_bars(DAY, DAY, symbol="AAA")
    lake.write("bars", "1m", "AAA", bars)
    with pytest.raises(_DiskPulledError):
        lake.write("bars", "1m", "AAA", _ExplodingFrame(bars.head(3)))
    assert lake.read("bars", "1m", "AAA").equals(bars)
    assert [p.name for p in (tmp_path / "bars" / "1m" / "AAA").iterdir()] == ["data.parquet"]


def test_reading_a_missing_partition_says_what_to_materialize(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no bars 1d partition for ZZZ"):
        ParquetLake(tmp_path).read("bars", "1d", "ZZZ")


@pytest.mark.parametrize("symbol", ["../etc", "a/b", "", "x" * 65, " A"])
def test_unsafe_names_are_refused(tmp_path: Path, symbol: str) -> None:
    with pytest.raises(ConfigError, match="not a valid name"):
        ParquetLake(tmp_path).path("bars", "1m", symbol)


def test_lake_lists_and_queries_partitions_with_duckdb(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    for sym in ("AAA", "BBB"):
        lake.write("bars", "1m", sym, minute_bars(DAY, DAY, symbol=sym))
    assert lake.symbols("bars", "1m") == ["AAA", "BBB"]
    assert lake.timeframes("bars", "AAA") == ["1m"]
    counts = query_lake(lake, "SELECT symbol, count(*) AS n FROM bars_1m GROUP BY 1 ORDER BY 1")
    assert counts.to_dicts() == [{"symbol": "AAA", "n": 390}, {"symbol": "BBB", "n": 390}]
    assert lake.scan("bars", "1m").select(pl.len()).collect().item() == 780


def _quarantine_rows(n: int) -> pl.DataFrame:
    return minute_bars(DAY, DAY).head(n).with_columns(pl.lit("close is not finite").alias("reason"))


def test_quarantine_keeps_row_values_and_replaces_per_partition(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.replace_quarantine(
        dataset="raw_bars", source="files", symbol="AAA", timeframe="1m", rows=_quarantine_rows(3)
    )
    wh.replace_quarantine(
        dataset="raw_bars", source="files", symbol="BBB", timeframe="1m", rows=_quarantine_rows(2)
    )
    wh.replace_quarantine(
        dataset="raw_bars", source="files", symbol="AAA", timeframe="1m", rows=_quarantine_rows(1)
    )
    everything = wh.quarantine()
    assert everything.group_by("symbol").len().sort("symbol").to_dicts() == [
        {"symbol": "AAA", "len": 1},
        {"symbol": "BBB", "len": 2},
    ]
    row = wh.quarantine(symbol="AAA").row(0, named=True)
    assert row["reason"] == "close is not finite"
    assert '"open": 100.0' in row["row_json"]
    assert row["source"] == "files"


def test_quarantine_of_an_empty_warehouse_is_empty(tmp_path: Path) -> None:
    assert Warehouse(tmp_path / "w.duckdb").quarantine().height == 0


def _write_quarantine(path: str, symbol: str) -> None:
    wh = Warehouse(Path(path))
    for _ in range(5):
        wh.replace_quarantine(
            dataset="raw_bars", source="s", symbol=symbol, timeframe="1m", rows=_quarantine_rows(2)
        )


def test_two_processes_writing_the_warehouse_wait_for_the_lock_instead_of_failing(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "w.duckdb")
    Warehouse(Path(path)).quarantine()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_quarantine, args=(path, s)) for s in ("AAA", "BBB")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert Warehouse(Path(path)).quarantine().height == 4
