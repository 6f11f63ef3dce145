from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.bars_kit import minute_bars
from trader_runtime.errors import EmptyInputError, InputSchemaError
from trader_runtime.market.bars import BAR_COLUMNS, empty_bars
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.market.validation import invariant_violations, validate_bars

DAY = date(2024, 3, 1)


def _bars(n: int = 20) -> pl.DataFrame:
    return minute_bars(DAY, DAY).head(n)


def _set(frame: pl.DataFrame, row: int, **values: object) -> pl.DataFrame:
    exprs = [
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(v)).otherwise(pl.col(k)).alias(k)
        for k, v in values.items()
    ]
    return frame.with_columns(exprs).cast(frame.schema)  # type: ignore[arg-type]


def test_clean_bars_are_all_kept() -> None:
    result = validate_bars(_bars(), timeframe=Timeframe.M1)
    assert result.good.height == 20
    assert result.quarantined.height == 0
    assert result.good.columns == list(BAR_COLUMNS)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"close": float("nan")}, "close is not finite"),
        ({"open": float("inf")}, "open is not finite"),
        ({"close": None}, "close is missing or not a number"),
        ({"low": -1.0}, "low is not positive"),
        ({"open": 0.0, "low": 0.0}, "open is not positive"),
        ({"high": 50.0}, "high < low"),
        ({"close": 300.0}, "close outside [low, high]"),
        ({"open": 1.0}, "open outside [low, high]"),
        ({"volume": -5.0}, "volume is negative"),
        ({"volume": None}, "volume is missing or not a number"),
        ({"vwap": float("nan")}, "vwap is not finite and positive"),
        ({"trade_count": -1}, "trade_count is negative"),
        ({"ts": None}, "ts is missing or not a timestamp"),
    ],
)
def test_a_bad_row_is_quarantined_with_its_reason_and_good_rows_are_kept(
    values: dict[str, object], reason: str
) -> None:
    frame = _set(_bars(), 7, **values)
    result = validate_bars(frame, timeframe=Timeframe.M1)
    assert result.good.height == 19
    assert result.quarantined.height == 1
    assert reason in result.quarantined["reason"][0]
    assert result.quarantined["open"][0] == frame["open"][7]


def test_a_row_breaking_several_rules_lists_every_reason() -> None:
    frame = _set(_bars(), 3, close=float("nan"), volume=-1.0)
    reason = validate_bars(frame, timeframe=Timeframe.M1).quarantined["reason"][0]
    assert "close is not finite" in reason
    assert "volume is negative" in reason


def test_a_duplicate_timestamp_keeps_the_first_and_quarantines_the_repeat() -> None:
    bars = _bars(5)
    frame = pl.concat([bars.head(3), bars.slice(2, 1), bars.tail(2)])
    result = validate_bars(frame, timeframe=Timeframe.M1)
    assert result.good["ts"].to_list() == bars["ts"].to_list()
    assert result.quarantined["reason"].to_list() == ["duplicate timestamp"]


def test_an_out_of_order_row_is_quarantined_and_does_not_hide_later_rows() -> None:
    bars = _bars(6)
    frame = pl.concat([bars.head(2), bars.slice(4, 1), bars.slice(2, 2), bars.tail(1)])
    # order: t0 t1 t4 t2 t3 t5 -> t2 and t3 are out of order; t5 is fine
    result = validate_bars(frame, timeframe=Timeframe.M1)
    assert result.quarantined["reason"].to_list() == ["out-of-order timestamp"] * 2
    assert result.good["ts"].to_list() == [bars["ts"][i] for i in (0, 1, 4, 5)]


def test_bars_outside_regular_hours_or_off_the_minute_grid_are_quarantined() -> None:
    bars = _bars(3)
    night = bars.head(1).with_columns(pl.col("ts") + pl.duration(hours=10))
    off_grid = bars.tail(1).with_columns(pl.col("ts") + pl.duration(seconds=30))
    frame = pl.concat([bars.head(2), off_grid, night])
    result = validate_bars(frame, timeframe=Timeframe.M1)
    assert sorted(result.quarantined["reason"].to_list()) == [
        "not a 1m bar close",
        "outside regular trading hours",
    ]


def test_daily_bars_must_be_stamped_at_the_session_close() -> None:
    daily = minute_bars(DAY, DAY).tail(1)  # 16:00 New York = the close
    early = daily.with_columns(pl.col("ts") - pl.duration(hours=1))
    assert validate_bars(daily, timeframe=Timeframe.D1).good.height == 1
    result = validate_bars(early, timeframe=Timeframe.D1)
    assert result.quarantined["reason"][0].startswith("not a session close")


def test_missing_minutes_are_reported_as_gaps_not_quarantined() -> None:
    bars = minute_bars(DAY, DAY)
    holey = pl.concat([bars.head(100), bars.slice(110)])
    result = validate_bars(holey, timeframe=Timeframe.M1)
    assert result.quarantined.height == 0
    assert result.gaps.expected_bars == 390
    assert result.gaps.missing_bars == 10
    assert result.gaps.first_missing[0] == str(bars["ts"][100])


def test_empty_input_is_a_clear_error() -> None:
    with pytest.raises(EmptyInputError, match="no rows"):
        validate_bars(empty_bars(), timeframe=Timeframe.M1)


def test_missing_columns_are_named_in_the_error() -> None:
    with pytest.raises(InputSchemaError, match=r"missing required column\(s\) close, volume"):
        validate_bars(_bars().drop("close", "volume"), timeframe=Timeframe.M1)


def test_reason_counts_split_combined_reasons() -> None:
    frame = _set(_set(_bars(), 1, close=float("nan"), volume=-1.0), 2, volume=-1.0)
    counts = validate_bars(frame, timeframe=Timeframe.M1).reason_counts()
    assert counts == {"close is not finite": 1, "volume is negative": 2}


def test_invariant_violations_finds_what_validation_would_quarantine() -> None:
    bad = _set(_bars(), 4, high=1.0)
    reversed_ts = _bars().reverse()
    assert invariant_violations(_bars()) == {}
    assert invariant_violations(bad)["high < low"] == 1
    assert invariant_violations(reversed_ts)["timestamp not strictly increasing"] == 19


_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.none(),
    st.floats(min_value=90, max_value=110),
)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(min_value=-3, max_value=40),  # minute offset into the session (may repeat)
            _values,
            _values,
            _values,
            _values,
            st.one_of(st.none(), st.floats(min_value=-10, max_value=1e6)),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_nothing_is_lost_and_every_kept_row_satisfies_the_invariants(
    data: list[tuple[int, float | None, float | None, float | None, float | None, float | None]],
) -> None:
    base = minute_bars(DAY, DAY)["ts"][0]
    frame = pl.DataFrame(
        {
            "symbol": ["X"] * len(data),
            "ts": [base + timedelta(minutes=m) for m, *_ in data],
            "open": [r[1] for r in data],
            "high": [r[2] for r in data],
            "low": [r[3] for r in data],
            "close": [r[4] for r in data],
            "volume": [r[5] for r in data],
            "vwap": [None] * len(data),
            "trade_count": [None] * len(data),
        },
        schema=minute_bars(DAY, DAY).schema,
    )
    result = validate_bars(frame, timeframe=Timeframe.M1)
    assert result.good.height + result.quarantined.height == frame.height
    assert invariant_violations(result.good) == {}
    assert result.quarantined["reason"].null_count() == 0
    assert all(r for r in result.quarantined["reason"].to_list())
