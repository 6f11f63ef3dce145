from datetime import UTC, date, datetime

import polars as pl
import pytest

from tests.bars_kit import minute_bars
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.resample import expected_bar_closes, resample_bars
from trader_runtime.market.timeframes import Timeframe


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_five_minute_bars_match_hand_computed_aggregates() -> None:
    m1 = minute_bars(date(2024, 3, 1), date(2024, 3, 1))
    m5 = resample_bars(m1, Timeframe.M5)
    first = m5.row(0, named=True)
    # minutes 0..4 of the session: opens 100..104, closes 100.5..104.5
    assert first["ts"] == _utc(2024, 3, 1, 14, 35)
    assert first["open"] == 100.0
    assert first["close"] == 104.5
    assert first["high"] == 104.75
    assert first["low"] == 99.75
    assert first["volume"] == sum(10.0 + i for i in range(5))
    assert first["trade_count"] == sum(1 + i % 7 for i in range(5))
    vwaps = [((100 + i + 0.75) + (100 + i - 0.25) + (100 + i + 0.5)) / 3 for i in range(5)]
    expected_vwap = sum(v * (10 + i) for i, v in enumerate(vwaps)) / sum(10 + i for i in range(5))
    assert first["vwap"] == pytest.approx(expected_vwap)
    assert m5.height == 78


def test_hourly_bars_are_anchored_at_the_open_and_cut_at_the_close() -> None:
    m1 = minute_bars(date(2024, 3, 1), date(2024, 3, 1))
    h1 = resample_bars(m1, Timeframe.H1)
    assert h1["ts"].to_list() == [
        _utc(2024, 3, 1, 15, 30),
        _utc(2024, 3, 1, 16, 30),
        _utc(2024, 3, 1, 17, 30),
        _utc(2024, 3, 1, 18, 30),
        _utc(2024, 3, 1, 19, 30),
        _utc(2024, 3, 1, 20, 30),
        _utc(2024, 3, 1, 21, 0),
    ]
    last = h1.row(-1, named=True)
    # the last bucket holds minutes 360..389 (15:30-16:00 New York)
    assert last["open"] == 100.0 + 360
    assert last["close"] == 100.0 + 389 + 0.5
    assert last["volume"] == sum(10.0 + i for i in range(360, 390))


def test_daily_bar_covers_the_session_and_is_stamped_at_the_close() -> None:
    m1 = minute_bars(date(2024, 3, 1), date(2024, 3, 4))
    d1 = resample_bars(m1, Timeframe.D1)
    assert d1["ts"].to_list() == [_utc(2024, 3, 1, 21, 0), _utc(2024, 3, 4, 21, 0)]
    assert d1["open"].to_list() == [100.0, 100.0 + 390]
    assert d1["close"].to_list() == [100.0 + 389.5, 100.0 + 779.5]
    assert d1["high"].to_list() == [100.0 + 389.75, 100.0 + 779.75]
    assert d1["low"].to_list() == [99.75, 100.0 + 389.75]


def test_early_close_day_ends_its_last_bars_at_the_early_close() -> None:
    m1 = minute_bars(date(2024, 11, 29), date(2024, 11, 29))
    assert m1.height == 210
    h1 = resample_bars(m1, Timeframe.H1)
    assert h1["ts"].to_list()[-1] == _utc(2024, 11, 29, 18, 0)
    d1 = resample_bars(m1, Timeframe.D1)
    assert d1["ts"].to_list() == [_utc(2024, 11, 29, 18, 0)]
    assert resample_bars(m1, Timeframe.M15).height == 14


def test_a_bucket_the_input_has_not_reached_is_not_emitted() -> None:
    m1 = minute_bars(date(2024, 3, 1), date(2024, 3, 1)).head(62)  # up to 10:32 New York
    h1 = resample_bars(m1, Timeframe.H1)
    assert h1["ts"].to_list() == [_utc(2024, 3, 1, 15, 30)]
    m15 = resample_bars(m1, Timeframe.M15)
    assert m15["ts"].max() == _utc(2024, 3, 1, 15, 30)
    assert resample_bars(m1, Timeframe.D1).height == 0


@pytest.mark.parametrize("timeframe", list(Timeframe))
def test_resampled_bars_sit_exactly_on_the_expected_calendar_closes(timeframe: Timeframe) -> None:
    cal = TradingCalendar(date(2024, 11, 26), date(2024, 12, 3))
    m1 = minute_bars(cal.start, cal.end)
    out = resample_bars(m1, timeframe)
    assert out["ts"].to_list() == expected_bar_closes(cal, timeframe).to_list()
    assert out["volume"].sum() == pytest.approx(m1["volume"].sum())


def test_bars_without_vwap_or_trade_count_resample_to_nulls_not_zeros() -> None:
    m1 = minute_bars(date(2024, 3, 1), date(2024, 3, 1)).with_columns(
        vwap=pl.lit(None, dtype=pl.Float64), trade_count=pl.lit(None, dtype=pl.Int64)
    )
    m5 = resample_bars(m1, Timeframe.M5)
    assert m5["vwap"].null_count() == m5.height
    assert m5["trade_count"].null_count() == m5.height


def test_vwap_ignores_minutes_without_one() -> None:
    m1 = minute_bars(date(2024, 3, 1), date(2024, 3, 1)).head(5)
    partial = m1.with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("vwap")).alias("vwap")
    )
    expected = (partial["vwap"] * partial["volume"]).sum() / partial["volume"].tail(3).sum()
    assert resample_bars(partial, Timeframe.M5)["vwap"].item() == pytest.approx(expected)
