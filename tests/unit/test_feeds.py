"""Live feeds: history/stream split on the calendar, resume, pacing, cancellation, quarantine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.bars_kit import minute_bars
from trader_runtime.errors import ConfigError
from trader_runtime.live.feeds import (
    NAIVE_TS_REASON,
    Feed,
    Pacing,
    ReplayFeed,
    SyntheticFeed,
)
from trader_runtime.market.instant import MarketInstant
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource
from trader_runtime.storage.lake import ParquetLake

SYMBOLS = ("AAA", "BBB")
CONFIG = SyntheticMarketConfig(seed=3, signal_strength=0.1)
# Monday 15 January 2024 is Martin Luther King Jr. Day: the exchange is closed
HOLIDAY = date(2024, 1, 15)
DAY = date(2024, 3, 5)
OPEN = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)  # 09:30 New York


def _collect(stream: AsyncIterator[MarketInstant]) -> list[MarketInstant]:
    async def run() -> list[MarketInstant]:
        return [instant async for instant in stream]

    return asyncio.run(run())


def _synthetic(**kwargs: object) -> SyntheticFeed:
    options: dict[str, object] = {
        "config": CONFIG,
        "live_start": HOLIDAY,
        "warmup_sessions": 3,
        "pacing": Pacing(speed=0.0),
    }
    options.update(kwargs)
    return SyntheticFeed(SYMBOLS, **options)  # type: ignore[arg-type]


def _frames(n: int = 5, *, day: date = DAY) -> dict[str, pl.DataFrame]:
    """``n`` one-minute bars from the open of ``day`` for each symbol."""
    return {
        s: minute_bars(day, day, symbol=s, base=10.0 * (i + 1)).head(n)
        for i, s in enumerate(SYMBOLS)
    }


def _as_frame(instants: list[MarketInstant], symbol: str) -> pl.DataFrame:
    rows = [
        (i.ts, b.open, b.high, b.low, b.close, b.volume)
        for i in instants
        if (b := i.bars.get(symbol)) is not None
    ]
    return pl.DataFrame(
        rows, schema=["ts", "open", "high", "low", "close", "volume"], orient="row"
    ).with_columns(pl.col("ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC"))


def _sessions(instants: list[MarketInstant]) -> list[date]:
    return sorted({(i.ts - timedelta(hours=5)).date() for i in instants})


# -- split on the calendar ---------------------------------------------------------------------


def test_history_is_the_warmup_sessions_before_live_start_and_skips_the_holiday() -> None:
    feed = _synthetic()
    history = list(feed.history())
    live = _collect(feed.stream())

    assert feed.warmup_session_dates == (date(2024, 1, 10), date(2024, 1, 11), date(2024, 1, 12))
    assert feed.live_session_dates == (date(2024, 1, 16),)  # live_start itself is a holiday
    assert _sessions(history) == list(feed.warmup_session_dates)
    assert len(history) == 3 * 390
    assert len(live) == 390
    assert live[0].ts == datetime(2024, 1, 16, 14, 31, tzinfo=UTC)
    assert live[-1].ts == datetime(2024, 1, 16, 21, 0, tzinfo=UTC)
    assert history[-1].ts < live[0].ts
    assert all(tuple(i.bars) == SYMBOLS for i in history + live)
    assert all(b.ts == i.ts for i in live for b in i.bars.values())
    assert feed.quarantined == []


def test_several_live_sessions_stream_in_order() -> None:
    feed = _synthetic(live_start=date(2024, 1, 16), live_sessions=2, warmup_sessions=1)
    live = _collect(feed.stream())
    assert _sessions(live) == [date(2024, 1, 16), date(2024, 1, 17)]
    stamps = [i.ts for i in live]
    assert stamps == sorted(set(stamps))


def test_replay_history_and_live_split_at_live_start_across_a_holiday() -> None:
    # sessions 11, 12, (15 closed), 16 January; live from the open of the 16th
    frames = {s: minute_bars(date(2024, 1, 11), date(2024, 1, 16), symbol=s) for s in SYMBOLS}
    live_start = datetime(2024, 1, 16, 14, 30, tzinfo=UTC)
    feed = ReplayFeed(frames, live_start=live_start, warmup_sessions=1)
    history = list(feed.history())
    live = _collect(feed.stream())
    assert _sessions(history) == [date(2024, 1, 12)]
    assert _sessions(live) == [date(2024, 1, 16)]
    assert len(live) == 390
    assert live[0].ts == live_start + timedelta(minutes=1)


def test_replay_mid_session_start_keeps_the_session_so_far_in_history() -> None:
    frames = _frames(10)
    feed = ReplayFeed(frames, live_start=OPEN + timedelta(minutes=4), warmup_sessions=0)
    assert [i.ts for i in feed.history()] == [OPEN + timedelta(minutes=m) for m in range(1, 5)]
    assert [i.ts for i in _collect(feed.stream())] == [
        OPEN + timedelta(minutes=m) for m in range(5, 11)
    ]


# -- resume ------------------------------------------------------------------------------------


def test_stream_after_resumes_exactly_after_that_instant() -> None:
    feed = ReplayFeed(_frames(8), live_start=OPEN, warmup_sessions=0)
    everything = _collect(feed.stream())
    resumed = _collect(feed.stream(after=everything[2].ts))
    assert [i.ts for i in resumed] == [i.ts for i in everything[3:]]
    assert _collect(feed.stream(after=everything[-1].ts)) == []
    between = everything[2].ts + timedelta(seconds=30)
    assert [i.ts for i in _collect(feed.stream(after=between))] == [i.ts for i in everything[3:]]


def test_stream_after_needs_a_timezone_aware_instant() -> None:
    feed = ReplayFeed(_frames(3), live_start=OPEN, warmup_sessions=0)
    with pytest.raises(ConfigError, match="timezone-aware"):
        _collect(feed.stream(after=datetime(2024, 3, 5, 14, 31)))


# -- pacing ------------------------------------------------------------------------------------


def test_speed_600_plays_five_minute_bars_in_about_half_a_second() -> None:
    feed = ReplayFeed(_frames(5), live_start=OPEN, warmup_sessions=0, pacing=Pacing(speed=600.0))
    started = time.perf_counter()
    instants = _collect(feed.stream())
    took_s = time.perf_counter() - started
    assert len(instants) == 5
    assert 0.3 <= took_s <= 2.0


def test_speed_zero_does_not_wait() -> None:
    frames = {s: minute_bars(DAY, DAY, symbol=s) for s in SYMBOLS}
    feed = ReplayFeed(frames, live_start=OPEN, warmup_sessions=0, pacing=Pacing(speed=0.0))
    started = time.perf_counter()
    instants = _collect(feed.stream())
    assert len(instants) == 390
    assert time.perf_counter() - started < 0.5


def _waits(feed: Feed, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the stream asks asyncio.sleep for, without sleeping."""
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        asked.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    _collect(feed.stream())
    return asked


def _overnight_frames() -> dict[str, pl.DataFrame]:
    """The last two bars of 4 March and the first two of 5 March."""
    two_days = minute_bars(date(2024, 3, 4), DAY, symbol="AAA")
    return {"AAA": two_days.slice(388, 4)}


def test_overnight_gap_is_capped_at_one_bar_interval_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed = ReplayFeed(
        _overnight_frames(),
        live_start=datetime(2024, 3, 4, 20, 58, tzinfo=UTC),
        warmup_sessions=0,
        pacing=Pacing(speed=60.0),
    )
    waits = _waits(feed, monkeypatch)
    # cumulative targets from the stream start: 1 s per minute bar, the 17.5 h gap capped at 1 s
    np.testing.assert_allclose(waits, [1.0, 2.0, 3.0, 4.0], atol=0.05)


def test_max_gap_s_caps_every_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    feed = ReplayFeed(
        _overnight_frames(),
        live_start=datetime(2024, 3, 4, 20, 58, tzinfo=UTC),
        warmup_sessions=0,
        pacing=Pacing(speed=30.0, max_gap_s=0.5),
    )
    np.testing.assert_allclose(_waits(feed, monkeypatch), [0.5, 1.0, 1.5, 2.0], atol=0.05)


def test_waits_do_not_drift_when_the_consumer_is_slow() -> None:
    feed = ReplayFeed(_frames(6), live_start=OPEN, warmup_sessions=0, pacing=Pacing(speed=600.0))

    async def run() -> float:
        started = time.perf_counter()
        async for _ in feed.stream():
            time.sleep(0.09)  # a consumer busy for most of a bar interval (0.1 s)
        return time.perf_counter() - started

    took_s = asyncio.run(run())
    # six targets 0.1 s apart from the start (about 0.7 s), not 6 x (0.1 + 0.09) = 1.14 s
    assert took_s < 1.0


def test_cancelling_a_paced_stream_stops_it_mid_wait() -> None:
    feed = ReplayFeed(_frames(5), live_start=OPEN, warmup_sessions=0, pacing=Pacing(speed=1.0))

    async def run() -> tuple[float, bool]:
        got: list[MarketInstant] = []

        async def consume() -> None:
            async for instant in feed.stream():
                got.append(instant)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return time.perf_counter() - started, task.cancelled() and not got

    took_s, cancelled = asyncio.run(run())
    assert cancelled
    assert took_s < 0.2


@pytest.mark.parametrize(
    "kwargs", [{"speed": -1.0}, {"speed": float("nan")}, {"max_gap_s": 0.0}, {"max_gap_s": -2.0}]
)
def test_bad_pacing_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Pacing(**kwargs)


# -- validation --------------------------------------------------------------------------------


def test_bad_rows_are_quarantined_with_their_reason_and_never_streamed() -> None:
    frames = _frames(6)
    good = frames["AAA"]
    negative = good.slice(1, 1).with_columns(open=pl.lit(-5.0))
    high_below_close = good.slice(3, 1).with_columns(high=pl.col("close") - 0.1)
    duplicate = good.slice(4, 1).with_columns(close=pl.lit(999.0), high=pl.lit(1000.0))
    frames["AAA"] = pl.concat(
        [
            good.slice(0, 1),
            negative,
            good.slice(2, 1),
            high_below_close,
            good.slice(4, 2),
            duplicate,
        ]
    )
    feed = ReplayFeed(frames, live_start=OPEN, warmup_sessions=0)
    live = _collect(feed.stream())

    reasons = {(q.ts, q.reason) for q in feed.quarantined}
    ts = [OPEN + timedelta(minutes=m) for m in range(1, 7)]
    assert {q.symbol for q in feed.quarantined} == {"AAA"}
    assert len(feed.quarantined) == 3
    assert any(t == ts[1] and "open is not positive" in r for t, r in reasons)
    assert (ts[3], "close outside [low, high]") in reasons
    assert (ts[4], "duplicate timestamp") in reasons
    assert (
        next(q for q in feed.quarantined if q.reason == "duplicate timestamp").row["close"] == 999.0
    )

    aaa = {i.ts: i.bars["AAA"] for i in live if "AAA" in i.bars}
    assert sorted(aaa) == [ts[0], ts[2], ts[4], ts[5]]
    assert aaa[ts[4]].close == good["close"][4]  # the first of the duplicates is kept
    assert all(b.open > 0 and b.high >= b.close for b in aaa.values())
    assert [tuple(i.bars) for i in live] == [SYMBOLS if t in aaa else ("BBB",) for t in ts]


def test_naive_timestamps_are_quarantined_not_read_as_utc() -> None:
    frames = _frames(3)
    frames["BBB"] = frames["BBB"].with_columns(pl.col("ts").dt.replace_time_zone(None))
    feed = ReplayFeed(frames, live_start=OPEN, warmup_sessions=0)
    assert [q.symbol for q in feed.quarantined] == ["BBB"] * 3
    assert all(q.reason.startswith(NAIVE_TS_REASON) for q in feed.quarantined)
    assert all(tuple(i.bars) == ("AAA",) for i in _collect(feed.stream()))


def test_instants_hold_only_the_symbols_with_a_bar() -> None:
    frames = _frames(5)
    frames["AAA"] = frames["AAA"].filter(pl.int_range(pl.len()) != 2)
    frames["BBB"] = frames["BBB"].head(4)
    feed = ReplayFeed(frames, live_start=OPEN, warmup_sessions=0)
    live = _collect(feed.stream())
    assert [tuple(i.bars) for i in live] == [SYMBOLS, SYMBOLS, ("BBB",), SYMBOLS, ("AAA",)]
    assert live[2].bars["BBB"].close == frames["BBB"]["close"][2]
    assert feed.quarantined == []


def test_replay_from_lake_reads_the_window_and_validates(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    days = {s: minute_bars(date(2024, 3, 1), DAY, symbol=s) for s in SYMBOLS}
    days["BBB"] = days["BBB"].with_columns(
        volume=pl.when(pl.col("ts") == OPEN + timedelta(minutes=2)).then(-1.0).otherwise("volume")
    )
    for symbol, frame in days.items():
        lake.write("bars", "1m", symbol, frame)
    feed = ReplayFeed.from_lake(
        lake,
        ["BBB", "AAA"],
        live_start=OPEN,
        live_end=OPEN + timedelta(minutes=10),
        warmup_sessions=1,
    )
    live = _collect(feed.stream())
    assert feed.symbols == ("BBB", "AAA")
    assert _sessions(list(feed.history())) == [date(2024, 3, 4)]
    assert [i.ts for i in live] == [OPEN + timedelta(minutes=m) for m in range(1, 11)]
    assert tuple(live[0].bars) == ("BBB", "AAA")
    assert tuple(live[1].bars) == ("AAA",)
    assert [(q.symbol, q.reason) for q in feed.quarantined] == [("BBB", "volume is negative")]


# -- the synthetic market ----------------------------------------------------------------------


def test_synthetic_feed_is_deterministic_for_a_seed() -> None:
    one, two = _synthetic(), _synthetic()
    assert list(one.history()) == list(two.history())
    assert _collect(one.stream()) == _collect(two.stream())
    other = _synthetic(config=SyntheticMarketConfig(seed=4, signal_strength=0.1))
    assert _collect(other.stream())[0] != _collect(one.stream())[0]


def test_synthetic_warmup_equals_the_source_for_the_same_sessions() -> None:
    feed = _synthetic()
    history = list(feed.history())
    source = SyntheticSource(CONFIG)
    first, last = feed.warmup_session_dates[0], feed.warmup_session_dates[-1]
    for symbol in SYMBOLS:
        expected = source.load(BarRequest(symbol, first, last)).select(
            "ts", "open", "high", "low", "close", "volume"
        )
        assert _as_frame(history, symbol).equals(expected)


def test_with_research_start_the_feed_continues_the_research_path_exactly() -> None:
    research_start = date(2024, 1, 2)
    feed = _synthetic(research_start=research_start)
    source = SyntheticSource(CONFIG)
    research = source.load(BarRequest("AAA", research_start, date(2024, 1, 12)))
    whole = source.load(BarRequest("AAA", research_start, date(2024, 1, 16)))
    # the source's output for a later end extends, never changes, the earlier bars
    assert whole.head(research.height).equals(research)

    cols = ("ts", "open", "high", "low", "close", "volume")
    warm = whole.filter(pl.col("ts") > datetime(2024, 1, 10, 14, 30, tzinfo=UTC)).select(cols)
    played = pl.concat(
        [_as_frame(list(feed.history()), "AAA"), _as_frame(_collect(feed.stream()), "AAA")]
    )
    assert played.equals(warm)
    assert not _as_frame(list(_synthetic().history()), "AAA").equals(
        _as_frame(list(feed.history()), "AAA")
    )  # a different start is a different realisation


def test_research_start_after_the_warmup_is_refused() -> None:
    with pytest.raises(ConfigError, match="research_start"):
        _synthetic(research_start=date(2024, 1, 11))


def test_an_unsorted_replay_frame_is_played_in_time_order() -> None:
    frames = _frames(5)
    frames["AAA"] = frames["AAA"].reverse()
    feed = ReplayFeed(frames, live_start=OPEN, warmup_sessions=0)
    live = _collect(feed.stream())
    assert [i.ts for i in live] == [OPEN + timedelta(minutes=m) for m in range(1, 6)]
    assert [i.bars["AAA"].close for i in live] == frames["AAA"]["close"].reverse().to_list()
    assert feed.quarantined == []
