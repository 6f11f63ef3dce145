"""IB bars -> our bars: 5-second real-time bars folded into 1-minute bars, historical bar rows,
and the historical requests that cover a set of sessions.

We key every bar by its CLOSE (``trader_runtime.market.bars``); IB dates bars by their start, so
``ts = start + bar length`` everywhere here. Times are aware UTC, volumes shares.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from trader_runtime.brokers.ib.mapping import IbParseError, parse_ib_time, to_utc
from trader_runtime.errors import UnknownSymbolError
from trader_runtime.market.bars import Bar

SLOT_S = 5
MINUTE_S = 60
SLOTS_PER_MINUTE = MINUTE_S // SLOT_S
MAX_SECONDS_DURATION = 86_400  # IB's largest duration in seconds ("86400 S")


@dataclass(frozen=True, slots=True)
class MinuteBarOut:
    """One minute of ``symbol`` made of ``parts`` 5-second bars; ``ts`` its close (aware UTC);
    ``complete`` when all 12 parts arrived. ``vwap`` is None when the minute traded nothing or IB
    gave no average price."""

    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None
    trade_count: int
    parts: int
    complete: bool

    def to_bar(self) -> Bar:
        return Bar(self.ts, self.open, self.high, self.low, self.close, self.volume)

    def to_row(self) -> dict[str, Any]:
        """A row of ``BAR_SCHEMA``."""
        return {
            "symbol": self.symbol,
            "ts": self.ts,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "vwap": self.vwap,
            "trade_count": self.trade_count,
        }


@dataclass(slots=True)
class _Minute:
    start_s: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap_volume: float
    wap_known: bool
    trade_count: int
    parts: int


@dataclass(slots=True)
class _SymbolState:
    current: _Minute | None = None
    floor_s: int | None = None  # 5-second bars starting before this are late or duplicates


class MinuteAggregator:
    """Folds 5-second real-time bars of ``symbols`` into 1-minute bars.

    A minute is emitted when its last slot (start % 60 == 55) arrives, complete if all 12 slots
    came; or, incomplete, when a bar of a later minute arrives or ``flush`` finds its end passed.
    A 5-second bar that starts at or before one already taken (a duplicate or out of order) or in
    a minute already emitted is ignored.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        self._states: dict[str, _SymbolState] = {s: _SymbolState() for s in symbols}

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._states)

    def add(
        self,
        symbol: str,
        start_epoch_s: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        wap: float,
        count: int,
    ) -> list[MinuteBarOut]:
        """Take the 5-second bar starting at ``start_epoch_s``; return the minutes it completes."""
        state = self._state(symbol)
        start = int(start_epoch_s)
        if state.floor_s is not None and start < state.floor_s:
            return []
        state.floor_s = start + 1
        minute_start = start - start % MINUTE_S
        out: list[MinuteBarOut] = []
        current = state.current
        if current is not None and minute_start > current.start_s:
            out.append(_emit(symbol, current))
            current = None
        vol = max(float(volume), 0.0)
        wap_ok = vol == 0.0 or (math.isfinite(wap) and wap > 0.0)
        if current is None:
            current = _Minute(
                start_s=minute_start,
                open=float(open),
                high=float(high),
                low=float(low),
                close=float(close),
                volume=vol,
                wap_volume=float(wap) * vol if vol > 0.0 else 0.0,
                wap_known=wap_ok,
                trade_count=max(int(count), 0),
                parts=1,
            )
        else:
            current.high = max(current.high, float(high))
            current.low = min(current.low, float(low))
            current.close = float(close)
            current.volume += vol
            current.wap_volume += float(wap) * vol if vol > 0.0 else 0.0
            current.wap_known = current.wap_known and wap_ok
            current.trade_count += max(int(count), 0)
            current.parts += 1
        state.current = current
        if start % MINUTE_S >= MINUTE_S - SLOT_S:
            out.append(_emit(symbol, current))
            state.current = None
            state.floor_s = minute_start + MINUTE_S
        return out

    def flush(self, symbol: str, now_epoch_s: float, *, grace_s: float = 0.0) -> list[MinuteBarOut]:
        """Emit ``symbol``'s open minute if it ended at least ``grace_s`` before ``now_epoch_s``
        (IB delivers the :55 bar a moment after the minute ends: pass a few seconds of grace)."""
        state = self._state(symbol)
        current = state.current
        if current is None or current.start_s + MINUTE_S + grace_s > now_epoch_s:
            return []
        state.current = None
        state.floor_s = max(state.floor_s or 0, current.start_s + MINUTE_S)
        return [_emit(symbol, current)]

    def flush_all(self, now_epoch_s: float, *, grace_s: float = 0.0) -> list[MinuteBarOut]:
        """``flush`` of every symbol."""
        out: list[MinuteBarOut] = []
        for symbol in self._states:
            out += self.flush(symbol, now_epoch_s, grace_s=grace_s)
        return out

    def _state(self, symbol: str) -> _SymbolState:
        state = self._states.get(symbol)
        if state is None:
            raise UnknownSymbolError(f"the minute aggregator does not follow {symbol}")
        return state


def _emit(symbol: str, m: _Minute) -> MinuteBarOut:
    vwap = m.wap_volume / m.volume if m.volume > 0.0 and m.wap_known else None
    return MinuteBarOut(
        symbol=symbol,
        ts=datetime.fromtimestamp(m.start_s + MINUTE_S, tz=UTC),
        open=m.open,
        high=m.high,
        low=m.low,
        close=m.close,
        volume=m.volume,
        vwap=vwap,
        trade_count=m.trade_count,
        parts=m.parts,
        complete=m.parts == SLOTS_PER_MINUTE,
    )


def historical_bar(
    date_text_or_datetime: str | int | datetime | date,
    open: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    wap: float,
    bar_count: int,
    *,
    bar_seconds: int = 60,
) -> dict[str, Any]:
    """A row of ``BAR_SCHEMA`` without ``symbol`` of one IB historical bar.

    IB dates a bar by its start (a string in any ``parse_ib_time`` form, epoch seconds, or the
    datetime / date ib_async makes of it; naive = UTC, a date = its midnight UTC); the row's ``ts``
    is its close, start + ``bar_seconds``. IB's "not available" (wap or barCount <= -1) and a zero
    wap become null ``vwap`` / ``trade_count``.
    """
    if bar_seconds <= 0:
        raise ValueError(f"bar_seconds must be positive, got {bar_seconds}")
    value = date_text_or_datetime
    if isinstance(value, int):
        start = datetime.fromtimestamp(value, tz=UTC)
    elif isinstance(value, str):
        start = parse_ib_time(value)
    elif isinstance(value, date):
        start = to_utc(value)
    else:
        raise IbParseError(f"not an IB bar date: {value!r}")
    wap_f = float(wap)
    return {
        "ts": start + timedelta(seconds=bar_seconds),
        "open": float(open),
        "high": float(high),
        "low": float(low),
        "close": float(close),
        "volume": float(volume),
        "vwap": wap_f if math.isfinite(wap_f) and wap_f > 0.0 else None,
        "trade_count": int(bar_count) if int(bar_count) >= 0 else None,
    }


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    """One ``reqHistoricalData`` call: ``end_datetime`` ("YYYYmmdd HH:MM:SS UTC"), ``duration``
    ("N S"), ``bar_size`` ("1 min"), regular hours only; covers ``session_open``..``session_close``."""

    end_datetime: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: int
    session_open: datetime
    session_close: datetime

    def pacing_key(self, contract: str) -> tuple[str, str, str]:
        """The request's identity for ``HistoricalPacer`` (identical requests are paced)."""
        return (contract, self.bar_size, f"{self.end_datetime}|{self.duration}")


def historical_requests(
    sessions: Sequence[tuple[datetime, datetime]],
    *,
    bar_size: str = "1 min",
    what_to_show: str = "TRADES",
) -> list[HistoricalRequest]:
    """One request per ``(open_utc, close_utc)`` session (aware datetimes): ending at the close
    (truncated to the second), lasting the session in seconds, regular trading hours only."""
    out: list[HistoricalRequest] = []
    for open_dt, close_dt in sessions:
        if open_dt.tzinfo is None or close_dt.tzinfo is None:
            raise IbParseError(f"session bounds must be timezone-aware: {open_dt}, {close_dt}")
        open_utc = open_dt.astimezone(UTC)
        end_utc = close_dt.astimezone(UTC).replace(microsecond=0)
        seconds = math.ceil((end_utc - open_utc).total_seconds())
        if seconds <= 0:
            raise IbParseError(f"session closes ({close_dt}) before it opens ({open_dt})")
        if seconds > MAX_SECONDS_DURATION:
            raise IbParseError(
                f"session {open_dt}..{close_dt} is longer than IB's {MAX_SECONDS_DURATION} s"
            )
        out.append(
            HistoricalRequest(
                end_datetime=end_utc.strftime("%Y%m%d %H:%M:%S") + " UTC",
                duration=f"{seconds} S",
                bar_size=bar_size,
                what_to_show=what_to_show,
                use_rth=1,
                session_open=open_utc,
                session_close=close_dt.astimezone(UTC),
            )
        )
    return out
