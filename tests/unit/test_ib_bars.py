"""IB bars: 5-second real-time bars to minutes, historical rows, one request per session."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trader_runtime.brokers.ib.bars import (
    MinuteAggregator,
    MinuteBarOut,
    historical_bar,
    historical_requests,
)
from trader_runtime.brokers.ib.mapping import IbParseError
from trader_runtime.errors import UnknownSymbolError
from trader_runtime.market.bars import BAR_SCHEMA

M0 = int(datetime(2024, 1, 2, 14, 30, tzinfo=UTC).timestamp())  # a minute start


def five_s(
    agg: MinuteAggregator,
    start: int,
    price: float = 100.0,
    volume: float = 10.0,
    symbol: str = "AAA",
) -> list[MinuteBarOut]:
    return agg.add(
        symbol, start, price, price + 1.0, price - 1.0, price + 0.5, volume, price + 0.2, 3
    )


def test_twelve_five_second_bars_make_one_complete_minute() -> None:
    agg = MinuteAggregator(["AAA"])
    out: list[MinuteBarOut] = []
    for i in range(12):
        out += five_s(agg, M0 + 5 * i, price=100.0 + i, volume=10.0 * (i + 1))
    [m] = out
    assert m.ts == datetime(2024, 1, 2, 14, 31, tzinfo=UTC)
    assert (m.symbol, m.parts, m.complete) == ("AAA", 12, True)
    assert (m.open, m.high, m.low, m.close) == (100.0, 112.0, 99.0, 111.5)
    assert m.volume == pytest.approx(780.0)
    assert m.trade_count == 36
    want_vwap = sum((100.2 + i) * 10.0 * (i + 1) for i in range(12)) / 780.0
    assert m.vwap == pytest.approx(want_vwap)
    assert m.to_bar().ts == m.ts
    assert m.to_bar().close == 111.5
    assert set(m.to_row()) == set(BAR_SCHEMA)


def test_only_the_last_slot_or_a_later_minute_closes_a_minute() -> None:
    agg = MinuteAggregator(["AAA"])
    for i in range(11):  # :00 .. :50 -- no :55
        assert five_s(agg, M0 + 5 * i) == []
    [m] = five_s(agg, M0 + 60)  # the next minute's first bar
    assert (m.parts, m.complete, m.ts) == (11, False, datetime(2024, 1, 2, 14, 31, tzinfo=UTC))
    # the :55 bar alone closes its minute, incomplete
    [gap] = five_s(agg, M0 + 60 + 55)
    assert (gap.parts, gap.complete) == (2, False)


def test_duplicates_and_late_bars_are_ignored() -> None:
    agg = MinuteAggregator(["AAA"])
    five_s(agg, M0, volume=1.0)
    five_s(agg, M0 + 10, volume=1.0)
    assert five_s(agg, M0 + 10, volume=50.0) == []  # duplicate
    assert five_s(agg, M0 + 5, volume=50.0) == []  # out of order
    out = []
    for i in range(3, 12):
        out += five_s(agg, M0 + 5 * i, volume=1.0)
    [m] = out
    assert (m.parts, m.volume) == (11, 11.0)
    assert five_s(agg, M0 + 30, volume=50.0) == []  # a bar of a minute already emitted


def test_flush_emits_a_minute_whose_end_has_passed_and_nothing_twice() -> None:
    agg = MinuteAggregator(["AAA", "BBB"])
    five_s(agg, M0)
    five_s(agg, M0 + 5, symbol="BBB")
    assert agg.flush("AAA", M0 + 59.9) == []
    assert agg.flush("AAA", M0 + 61, grace_s=2.0) == []
    [m] = agg.flush("AAA", M0 + 62, grace_s=2.0)
    assert (m.symbol, m.parts, m.complete) == ("AAA", 1, False)
    assert agg.flush("AAA", M0 + 1000) == []
    assert five_s(agg, M0 + 55) == []  # its :55 bar after the flush is ignored
    [b] = agg.flush_all(M0 + 60)
    assert b.symbol == "BBB"


def test_symbols_are_independent_and_unknown_ones_refused() -> None:
    agg = MinuteAggregator(["AAA", "BBB"])
    five_s(agg, M0 + 50, symbol="BBB")
    assert five_s(agg, M0, symbol="AAA") == []  # not "out of order": another symbol
    with pytest.raises(UnknownSymbolError):
        five_s(agg, M0, symbol="ZZZ")


def test_a_minute_without_volume_has_no_vwap() -> None:
    agg = MinuteAggregator(["AAA"])
    [m] = five_s(agg, M0 + 55, volume=0.0)
    assert m.volume == 0.0
    assert m.vwap is None


@settings(max_examples=100, deadline=None)
@given(
    slots=st.sets(st.integers(0, 12 * 5 - 1), min_size=1, max_size=60),
    replays=st.lists(st.integers(0, 12 * 5 - 1), max_size=20),
)
def test_every_minute_with_bars_is_emitted_once_with_all_its_volume(
    slots: set[int], replays: list[int]
) -> None:
    agg = MinuteAggregator(["AAA"])
    out: list[MinuteBarOut] = []
    order = sorted(slots)
    for n, slot in enumerate(order):
        out += five_s(agg, M0 + 5 * slot, volume=float(slot + 1))
        if n < len(replays):  # a replayed or late bar now and then
            out += five_s(agg, M0 + 5 * min(replays[n], slot), volume=1000.0)
    out += agg.flush("AAA", M0 + 10_000)
    minutes = {s // 12 for s in slots}
    assert [m.ts for m in out] == [
        datetime.fromtimestamp(M0 + 60 * (k + 1), tz=UTC) for k in sorted(minutes)
    ]
    for m in out:
        k = (int(m.ts.timestamp()) - M0) // 60 - 1
        mine = [s for s in slots if s // 12 == k]
        assert m.parts == len(mine)
        assert m.complete == (len(mine) == 12)
        assert m.volume == pytest.approx(sum(s + 1 for s in mine))


@pytest.mark.parametrize(
    "start",
    [
        "20240102 14:30:00",
        "20240102  14:30:00",
        "20240102 09:30:00 US/Eastern",
        str(M0),
        M0,
        datetime(2024, 1, 2, 14, 30, tzinfo=UTC),
        datetime(2024, 1, 2, 9, 30, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2024, 1, 2, 14, 30),
    ],
)
def test_a_historical_bar_is_keyed_by_its_close(start: str | int | datetime) -> None:
    row = historical_bar(start, 100.0, 101.0, 99.5, 100.5, 1200, 100.25, 37)
    assert row == {
        "ts": datetime(2024, 1, 2, 14, 31, tzinfo=UTC),
        "open": 100.0,
        "high": 101.0,
        "low": 99.5,
        "close": 100.5,
        "volume": 1200.0,
        "vwap": 100.25,
        "trade_count": 37,
    }
    assert set(row) == set(BAR_SCHEMA) - {"symbol"}


def test_historical_bar_lengths_and_missing_fields() -> None:
    five = historical_bar("20240102 14:30:00", 1.0, 1.0, 1.0, 1.0, 10, 1.0, 2, bar_seconds=5)
    assert five["ts"] == datetime(2024, 1, 2, 14, 30, 5, tzinfo=UTC)
    day = historical_bar(date(2024, 1, 2), 1.0, 1.0, 1.0, 1.0, 10, -1.0, -1, bar_seconds=86_400)
    assert day["ts"] == datetime(2024, 1, 3, tzinfo=UTC)
    assert day["vwap"] is None
    assert day["trade_count"] is None
    with pytest.raises(IbParseError):
        historical_bar("last tuesday", 1.0, 1.0, 1.0, 1.0, 10, 1.0, 2)


def test_one_historical_request_per_session_ending_at_its_close() -> None:
    regular = (datetime(2024, 1, 2, 14, 30, tzinfo=UTC), datetime(2024, 1, 2, 21, 0, tzinfo=UTC))
    eastern = timezone(timedelta(hours=-5))
    half_day = (
        datetime(2024, 11, 29, 9, 30, tzinfo=eastern),
        datetime(2024, 11, 29, 13, 0, tzinfo=eastern),
    )
    first, second = historical_requests([regular, half_day])
    assert (first.end_datetime, first.duration, first.bar_size, first.use_rth) == (
        "20240102 21:00:00 UTC",
        "23400 S",
        "1 min",
        1,
    )
    assert first.what_to_show == "TRADES"
    assert (second.end_datetime, second.duration) == ("20241129 18:00:00 UTC", "12600 S")
    assert second.session_open == datetime(2024, 11, 29, 14, 30, tzinfo=UTC)
    assert first.pacing_key("AAA") != second.pacing_key("AAA")
    assert first.pacing_key("AAA")[0] == "AAA"
    # a session still open: up to now, truncated to the second
    now = datetime(2024, 1, 2, 15, 0, 0, 700_000, tzinfo=UTC)
    [partial] = historical_requests([(regular[0], now)])
    assert (partial.end_datetime, partial.duration) == ("20240102 15:00:00 UTC", "1800 S")
    assert historical_requests([]) == []


@pytest.mark.parametrize(
    "session",
    [
        (datetime(2024, 1, 2, 14, 30), datetime(2024, 1, 2, 21, 0)),
        (datetime(2024, 1, 2, 21, 0, tzinfo=UTC), datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)),
    ],
)
def test_impossible_sessions_are_refused(session: tuple[datetime, datetime]) -> None:
    with pytest.raises(IbParseError):
        historical_requests([session])
