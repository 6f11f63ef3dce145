from datetime import date
from pathlib import Path

import polars as pl
import pytest

from tests.bars_kit import minute_bars
from trader_runtime.errors import EmptyInputError, InputSchemaError, UnknownSymbolError
from trader_runtime.market.bars import BAR_SCHEMA
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.market.validation import validate_bars
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.files import FilesSource

DAY = date(2024, 3, 1)
REQUEST = BarRequest("ACME", DAY, DAY)


def _write_csv(tmp_path: Path, text: str, name: str = "ACME.csv") -> FilesSource:
    (tmp_path / name).write_text(text)
    return FilesSource(tmp_path)


def test_parquet_file_round_trips_to_bar_schema(tmp_path: Path) -> None:
    bars = minute_bars(DAY, DAY, symbol="ACME").drop("symbol")
    bars.write_parquet(tmp_path / "ACME.parquet")
    loaded = FilesSource(tmp_path).load(REQUEST)
    assert loaded.schema == pl.Schema(BAR_SCHEMA)
    assert loaded.drop("symbol").equals(bars)


def test_csv_with_offsets_is_read_in_utc(tmp_path: Path) -> None:
    source = _write_csv(
        tmp_path,
        "ts,open,high,low,close,volume\n"
        "2024-03-01T09:31:00-05:00,10,11,9,10.5,100\n"
        "2024-03-01T14:32:00Z,10.5,11,10,10.8,50\n",
    )
    loaded = source.load(REQUEST)
    assert [str(t) for t in loaded["ts"].to_list()] == [
        "2024-03-01 14:31:00+00:00",
        "2024-03-01 14:32:00+00:00",
    ]
    assert validate_bars(loaded, timeframe=Timeframe.M1).quarantined.height == 0


def test_daily_csv_with_a_date_column_is_stamped_at_the_session_close(tmp_path: Path) -> None:
    source = FilesSource(tmp_path, Timeframe.D1)
    (tmp_path / "ACME.csv").write_text(
        "date,open,high,low,close,volume\n2024-11-29,10,11,9,10.5,100\n2024-12-02,10,11,9,10,1\n"
    )
    loaded = source.load(BarRequest("ACME", date(2024, 11, 1), date(2024, 12, 31)))
    assert [str(t) for t in loaded["ts"].to_list()] == [
        "2024-11-29 18:00:00+00:00",  # early close
        "2024-12-02 21:00:00+00:00",
    ]


def test_values_of_the_wrong_type_are_quarantined_with_the_reason(tmp_path: Path) -> None:
    source = _write_csv(
        tmp_path,
        "ts,open,high,low,close,volume\n"
        "2024-03-01T14:31:00Z,10,11,9,10.5,100\n"
        "2024-03-01T14:32:00Z,10,11,9,abc,100\n"
        "not-a-time,10,11,9,10.5,100\n"
        "2024-03-01T14:34:00Z,10,11,9,10.5,lots\n",
    )
    result = validate_bars(source.load(REQUEST), timeframe=Timeframe.M1)
    assert result.good.height == 1
    assert result.quarantined["reason"].to_list() == [
        "close is missing or not a number",
        "ts is missing or not a timestamp",
        "volume is missing or not a number",
    ]


def test_missing_required_columns_are_a_clear_error(tmp_path: Path) -> None:
    source = _write_csv(tmp_path, "ts,open,high,close\n2024-03-01T14:31:00Z,1,2,1.5\n")
    with pytest.raises(
        InputSchemaError, match=r"ACME.csv: missing required column\(s\) low, volume"
    ):
        source.load(REQUEST)


@pytest.mark.parametrize("text", ["", "ts,open,high,low,close,volume\n"])
def test_an_empty_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    source = _write_csv(tmp_path, text)
    with pytest.raises(EmptyInputError, match=r"ACME\.csv"):
        source.load(REQUEST)


def test_an_unknown_symbol_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(UnknownSymbolError, match=r"no NOPE\.csv or NOPE\.parquet"):
        FilesSource(tmp_path).load(BarRequest("NOPE", DAY, DAY))
