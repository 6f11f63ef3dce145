"""Live market feeds: the synthetic market on an accelerated clock, and replay of stored bars.

A feed delivers :class:`~trader_runtime.market.instant.MarketInstant` s: ``history()`` is the
warm-up before the live part (oldest first, no waiting), ``stream()`` the live part, paced by
:class:`Pacing`. Instants are the union of the symbols' bar timestamps, ascending; a symbol without
a bar at an instant is absent from its ``bars``, which follow the feed's ``symbols`` order.

Every input row goes through the project's bar rules (``validate_bars``, without the calendar
check) once, at construction; a refused row never reaches the engine and is listed in
``quarantined`` with its reason. Accepted bars are kept as compact NumPy arrays; ``MarketInstant``
objects are built one at a time as they are consumed.

Continuity with research data: ``SyntheticSource`` output for ``[start, X]`` is an exact prefix of
its output for ``[start, Y]`` (every random stream is drawn in time order and every transform is
causal or session-local; checked bit for bit in ``tests/unit/test_feeds.py``), while a different
``start`` is a different realisation. So a ``SyntheticFeed`` given ``research_start`` equal to the
research period's first day continues the research data exactly; without it the simulation starts
at the first warm-up session and is a fresh path of the same market model.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import polars as pl

from trader_runtime.errors import ConfigError, RoboTraderError, StorageError
from trader_runtime.market.bars import BAR_COLUMNS, Bar, conform, empty_bars
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.instant import MarketInstant
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.market.validation import REASON_COLUMN, require_columns, validate_bars
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource
from trader_runtime.storage.lake import ParquetLake

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_S = 1_000_000
_DEFAULT_BAR_INTERVAL_US = 60 * _US_PER_S
_VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
_NEW_YORK = ZoneInfo("America/New_York")
_MAX_CALENDAR_SPAN_DAYS = 366 * 40
NAIVE_TS_REASON = "ts is not a timezone-aware timestamp"


class FeedError(RoboTraderError):
    """A feed cannot be built from what it was given (no sessions, no bars, bad ranges)."""


class Feed(Protocol):
    """What the live engine consumes."""

    @property
    def symbols(self) -> tuple[str, ...]: ...

    def history(self) -> Iterator[MarketInstant]:
        """Warm-up instants before the live part, oldest first."""
        ...

    def stream(self, after: datetime | None = None) -> AsyncIterator[MarketInstant]:
        """Live instants, paced; instants at or before ``after`` are skipped (resume)."""
        ...

    @property
    def quarantined(self) -> list[QuarantinedBar]:
        """Input rows refused by validation, with the reason."""
        ...


@dataclass(frozen=True, slots=True)
class QuarantinedBar:
    """One refused input row: its symbol, timestamp (None if unreadable), reason(s) joined with
    ``"; "`` and the row's bar columns as given after conforming."""

    symbol: str
    ts: datetime | None
    reason: str
    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast ``stream()`` plays market time.

    Market time runs ``speed`` times faster than wall time (60: a one-minute bar every second);
    ``0`` means no waiting. One wait is capped at ``max_gap_s`` wall seconds after scaling
    (overnight and weekend gaps); ``None`` caps it at one bar interval. Waits are measured from the
    stream's start (sleep until start + cumulative scaled gap), so they do not drift.
    """

    speed: float = 60.0
    max_gap_s: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed >= 0.0):
            raise ConfigError(f"speed must be a non-negative finite number, got {self.speed}")
        if self.max_gap_s is not None and not (
            math.isfinite(self.max_gap_s) and self.max_gap_s > 0.0
        ):
            raise ConfigError(f"max_gap_s must be positive and finite, got {self.max_gap_s}")


# -- the tape: accepted bars as compact arrays --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tape:
    """Accepted bars of a universe: instant ``k`` closes at ``ts_us[k]`` (UTC microseconds);
    ``values[k, j]`` is symbol ``j``'s open, high, low, close, volume, valid where
    ``present[k, j]``."""

    symbols: tuple[str, ...]
    ts_us: IntArray
    values: FloatArray  # (instants, symbols, 5)
    present: BoolArray  # (instants, symbols)

    @property
    def size(self) -> int:
        return int(self.ts_us.size)

    def index_after(self, ts: datetime) -> int:
        """Index of the first instant strictly after ``ts``."""
        return int(np.searchsorted(self.ts_us, _to_us(ts, what="ts"), side="right"))

    def instant(self, k: int) -> MarketInstant:
        ts = _EPOCH + timedelta(microseconds=int(self.ts_us[k]))
        rows: list[list[float]] = self.values[k].tolist()
        mask: list[bool] = self.present[k].tolist()
        bars = {
            symbol: Bar(ts, row[0], row[1], row[2], row[3], row[4])
            for symbol, row, here in zip(self.symbols, rows, mask, strict=True)
            if here
        }
        return MarketInstant(ts=ts, bars=bars)

    def bar_interval_us(self) -> int:
        """The most common spacing of consecutive instants (one minute if it cannot be told)."""
        if self.size < 2:
            return _DEFAULT_BAR_INTERVAL_US
        diffs = np.diff(self.ts_us)
        diffs = diffs[diffs > 0]
        if diffs.size == 0:
            return _DEFAULT_BAR_INTERVAL_US
        values, counts = np.unique(diffs, return_counts=True)
        return int(values[int(np.argmax(counts))])


def _build_tape(symbols: tuple[str, ...], good: Mapping[str, pl.DataFrame]) -> _Tape:
    """Align validated per-symbol frames (ascending, unique ``ts``) on the union of their ts."""
    stamps: list[IntArray] = []
    blocks: list[FloatArray] = []
    for symbol in symbols:
        frame = good[symbol]
        stamps.append(frame["ts"].dt.epoch("us").to_numpy().astype(np.int64))
        blocks.append(frame.select(_VALUE_COLUMNS).to_numpy().astype(np.float64))
    union = np.unique(np.concatenate(stamps)).astype(np.int64) if stamps else np.zeros(0, np.int64)
    values = np.full((union.size, len(symbols), len(_VALUE_COLUMNS)), np.nan, dtype=np.float64)
    present = np.zeros((union.size, len(symbols)), dtype=np.bool_)
    for j, (ts_us, block) in enumerate(zip(stamps, blocks, strict=True)):
        rows = np.searchsorted(union, ts_us)
        values[rows, j, :] = block
        present[rows, j] = True
    return _Tape(symbols=symbols, ts_us=union, values=values, present=present)


# -- validation ---------------------------------------------------------------------------------


def validate_symbol_bars(
    symbol: str, frame: pl.DataFrame
) -> tuple[pl.DataFrame, list[QuarantinedBar]]:
    """Split one symbol's rows into accepted bars (bar schema, ascending ts) and refused rows.

    Rows are ordered by ``ts`` first (stable, so of two rows with one ``ts`` the first given is
    kept and the other is a ``duplicate timestamp``). A ``ts`` column that is not a
    timezone-aware datetime refuses every row: its instants cannot be placed in UTC.
    """
    require_columns(frame.columns, what=f"bars of {symbol}")
    ts_dtype = frame.schema["ts"]
    if not (isinstance(ts_dtype, pl.Datetime) and ts_dtype.time_zone is not None):
        reason = f"{NAIVE_TS_REASON} (dtype {ts_dtype})"
        rest = conform(frame.drop("ts"), symbol=symbol)
        refused = [
            QuarantinedBar(symbol, None, reason, {**row, "ts": raw})
            for row, raw in zip(rest.iter_rows(named=True), frame["ts"].to_list(), strict=True)
        ]
        return empty_bars(), refused
    bars = conform(frame, symbol=symbol).sort("ts", nulls_last=True, maintain_order=True)
    if bars.height == 0:
        return bars, []
    result = validate_bars(bars, timeframe=Timeframe.M1, check_calendar=False)
    refused_rows = [
        QuarantinedBar(
            symbol=symbol,
            ts=row["ts"],
            reason=row[REASON_COLUMN],
            row={c: row[c] for c in BAR_COLUMNS},
        )
        for row in result.quarantined.iter_rows(named=True)
    ]
    return result.good, refused_rows


def _validate_all(
    symbols: tuple[str, ...], frames: Mapping[str, pl.DataFrame]
) -> tuple[_Tape, list[QuarantinedBar]]:
    good: dict[str, pl.DataFrame] = {}
    refused: list[QuarantinedBar] = []
    for symbol in symbols:
        kept, bad = validate_symbol_bars(symbol, frames[symbol])
        good[symbol] = kept
        refused += bad
    return _build_tape(symbols, good), refused


# -- pacing -------------------------------------------------------------------------------------


async def _paced(
    tape: _Tape, lo: int, hi: int, after: datetime | None, pacing: Pacing
) -> AsyncIterator[MarketInstant]:
    """Yield instants ``lo..hi-1`` (those after ``after``), each when its scaled gap has passed.

    The gap before the first yielded instant is measured from the instant before it (one bar
    interval when there is none). Every step awaits, so cancellation is prompt.
    """
    start = lo if after is None else max(lo, min(tape.index_after(after), hi))
    if start >= hi:
        return
    speed = pacing.speed
    interval_us = tape.bar_interval_us()
    if pacing.max_gap_s is not None:
        cap_s = pacing.max_gap_s
    else:
        cap_s = interval_us / _US_PER_S / speed if speed > 0.0 else 0.0
    ts_us = tape.ts_us
    prev_us = int(ts_us[start - 1]) if start > 0 else int(ts_us[start]) - interval_us
    loop = asyncio.get_running_loop()
    t0_s = loop.time()
    elapsed_s = 0.0
    for k in range(start, hi):
        if speed > 0.0:
            now_us = int(ts_us[k])
            elapsed_s += min((now_us - prev_us) / _US_PER_S / speed, cap_s)
            prev_us = now_us
            await asyncio.sleep(max(t0_s + elapsed_s - loop.time(), 0.0))
        else:
            await asyncio.sleep(0)  # let other tasks (stop requests, watchdog) run
        yield tape.instant(k)


# -- calendar helpers ---------------------------------------------------------------------------


def _to_us(ts: datetime, *, what: str) -> int:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ConfigError(f"{what} must be timezone-aware, got {ts!r}")
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _sessions_before(day: date, count: int) -> pl.DataFrame:
    """Schedule rows of the last ``count`` sessions strictly before ``day`` (fewer if the calendar
    runs out)."""
    span_days = count * 3 // 2 + 14
    while True:
        schedule = TradingCalendar(day - timedelta(days=span_days), day - timedelta(days=1))
        rows = schedule.schedule()
        if rows.height >= count or span_days > _MAX_CALENDAR_SPAN_DAYS:
            return rows.tail(count)
        span_days *= 2


def _sessions_from(day: date, count: int) -> pl.DataFrame:
    """Schedule rows of the first ``count`` sessions on or after ``day``."""
    span_days = count * 3 // 2 + 14
    while True:
        rows = TradingCalendar(day, day + timedelta(days=span_days)).schedule()
        if rows.height >= count or span_days > _MAX_CALENDAR_SPAN_DAYS:
            return rows.head(count)
        span_days *= 2


def _require_count(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")


# -- feeds --------------------------------------------------------------------------------------


class SyntheticFeed:
    """The seeded synthetic market on an accelerated clock.

    One path covers [first warm-up session, last live session] (or [``research_start``, last live
    session], which continues the research data exactly, see the module docstring).
    ``history()`` is the ``warmup_sessions`` trading sessions before ``live_start``; ``stream()``
    the ``live_sessions`` sessions from ``live_start`` (the next session if it is not one).
    """

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        config: SyntheticMarketConfig,
        live_start: date,
        live_sessions: int = 1,
        warmup_sessions: int = 25,
        pacing: Pacing = Pacing(),
        research_start: date | None = None,
    ) -> None:
        universe = tuple(symbols)
        if not universe or len(set(universe)) != len(universe):
            raise ConfigError(f"symbols must be non-empty and distinct, got {universe}")
        _require_count("live_sessions", live_sessions, minimum=1)
        _require_count("warmup_sessions", warmup_sessions, minimum=0)
        live = _sessions_from(live_start, live_sessions)
        if live.height < live_sessions:
            raise FeedError(
                f"the calendar has fewer than {live_sessions} sessions from {live_start}"
            )
        first_live: date = live["session"][0]
        warmup = _sessions_before(first_live, warmup_sessions)
        sim_first: date = warmup["session"][0] if warmup.height else first_live
        if research_start is not None:
            if research_start > sim_first:
                raise ConfigError(
                    f"research_start {research_start} is after the first warm-up session "
                    f"{sim_first}; give an earlier research_start or fewer warmup_sessions"
                )
            sim_start = research_start
        else:
            sim_start = sim_first
        last_live: date = live["session"][-1]
        # bars close after their session's open: history starts after the first warm-up open
        history_from = warmup["open_ts"][0] if warmup.height else live["open_ts"][0]
        source = SyntheticSource(config)
        frames = {
            s: source.load(BarRequest(s, sim_start, last_live)).filter(pl.col("ts") > history_from)
            for s in universe
        }
        self._symbols = universe
        self._pacing = pacing
        self._sessions = (
            tuple(warmup["session"].to_list()),
            tuple(live["session"].to_list()),
        )
        self._tape, self._quarantined = _validate_all(universe, frames)
        live_open_us = _to_us(live["open_ts"][0], what="live open")
        self._live_from = int(np.searchsorted(self._tape.ts_us, live_open_us, side="right"))

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def warmup_session_dates(self) -> tuple[date, ...]:
        """The warm-up sessions (New York dates), oldest first."""
        return self._sessions[0]

    @property
    def live_session_dates(self) -> tuple[date, ...]:
        """The live sessions (New York dates), oldest first."""
        return self._sessions[1]

    @property
    def quarantined(self) -> list[QuarantinedBar]:
        return list(self._quarantined)

    def history(self) -> Iterator[MarketInstant]:
        tape = self._tape
        return (tape.instant(k) for k in range(self._live_from))

    def stream(self, after: datetime | None = None) -> AsyncIterator[MarketInstant]:
        return _paced(self._tape, self._live_from, self._tape.size, after, self._pacing)


class ReplayFeed:
    """Stored bars played back: the live part is every instant after ``live_start`` (a bar closing
    exactly at ``live_start`` finished before it and belongs to history); history is the
    ``warmup_sessions`` complete calendar sessions before ``live_start`` plus any part of the
    session in progress at ``live_start``. Rows before the warm-up are ignored."""

    def __init__(
        self,
        frames: Mapping[str, pl.DataFrame],
        *,
        live_start: datetime,
        warmup_sessions: int = 25,
        pacing: Pacing = Pacing(speed=0.0),
    ) -> None:
        universe = tuple(frames)
        if not universe:
            raise ConfigError("a replay feed needs at least one symbol's frame")
        _require_count("warmup_sessions", warmup_sessions, minimum=0)
        live_us = _to_us(live_start, what="live_start")
        history_from_us = _history_start_us(live_start, warmup_sessions)
        tape, refused = _validate_all(universe, frames)
        lo = int(np.searchsorted(tape.ts_us, history_from_us, side="right"))
        self._tape = _Tape(
            symbols=tape.symbols,
            ts_us=tape.ts_us[lo:],
            values=tape.values[lo:],
            present=tape.present[lo:],
        )
        self._live_from = int(np.searchsorted(self._tape.ts_us, live_us, side="right"))
        self._symbols = universe
        self._pacing = pacing
        self._quarantined = refused

    @classmethod
    def from_lake(
        cls,
        lake: ParquetLake,
        symbols: Sequence[str],
        *,
        timeframe: str = "1m",
        dataset: str = "bars",
        live_start: datetime,
        live_end: datetime | None = None,
        warmup_sessions: int = 25,
        pacing: Pacing = Pacing(speed=0.0),
    ) -> ReplayFeed:
        """Replay the lake's ``dataset``/``timeframe`` partitions of ``symbols``, reading only rows
        from the warm-up to ``live_end`` (inclusive; None: to the end of the data)."""
        universe = tuple(symbols)
        if not universe or len(set(universe)) != len(universe):
            raise ConfigError(f"symbols must be non-empty and distinct, got {universe}")
        _require_count("warmup_sessions", warmup_sessions, minimum=0)
        _to_us(live_start, what="live_start")
        if live_end is not None and _to_us(live_end, what="live_end") <= _to_us(
            live_start, what="live_start"
        ):
            raise ConfigError(f"live_end {live_end} must be after live_start {live_start}")
        lower = _EPOCH + timedelta(microseconds=_history_start_us(live_start, warmup_sessions))
        frames: dict[str, pl.DataFrame] = {}
        for symbol in universe:
            path = lake.path(dataset, timeframe, symbol)
            if not path.is_file():
                raise StorageError(
                    f"no {dataset} {timeframe} partition for {symbol} at {path}; materialize it "
                    "first"
                )
            scan = pl.scan_parquet(path)
            ts_dtype = scan.collect_schema().get("ts")
            if isinstance(ts_dtype, pl.Datetime) and ts_dtype.time_zone is not None:
                window = pl.col("ts").is_null() | (pl.col("ts") > lower)
                if live_end is not None:
                    window = window & (pl.col("ts").is_null() | (pl.col("ts") <= live_end))
                scan = scan.filter(window)
            frames[symbol] = scan.collect()
        return cls(frames, live_start=live_start, warmup_sessions=warmup_sessions, pacing=pacing)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def quarantined(self) -> list[QuarantinedBar]:
        return list(self._quarantined)

    def history(self) -> Iterator[MarketInstant]:
        tape = self._tape
        return (tape.instant(k) for k in range(self._live_from))

    def stream(self, after: datetime | None = None) -> AsyncIterator[MarketInstant]:
        return _paced(self._tape, self._live_from, self._tape.size, after, self._pacing)


def _history_start_us(live_start: datetime, warmup_sessions: int) -> int:
    """Bars closing strictly after this instant (UTC µs) and up to ``live_start`` are history:
    the open of the earliest of the last ``warmup_sessions`` sessions closed by ``live_start``,
    else the open of the session in progress at ``live_start``, else ``live_start`` itself."""
    live_us = _to_us(live_start, what="live_start")
    day = live_start.astimezone(_NEW_YORK).date()
    schedule = _sessions_before(day + timedelta(days=1), warmup_sessions + 1)  # up to ``day``
    opens_us = schedule["open_ts"].dt.epoch("us").to_numpy().astype(np.int64)
    closes_us = schedule["close_ts"].dt.epoch("us").to_numpy().astype(np.int64)
    closed = np.flatnonzero(closes_us <= live_us)
    if warmup_sessions > 0 and closed.size:
        return int(opens_us[closed[-warmup_sessions:]][0])
    in_progress = np.flatnonzero((opens_us < live_us) & (closes_us > live_us))
    return int(opens_us[in_progress[0]]) if in_progress.size else live_us
