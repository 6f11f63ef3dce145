"""The ``ibkr`` live feed: warm-up from historical bars, then 5-second real-time bars made minutes.

``history()`` (called by the engine in a worker thread while the loop serves the socket) asks the
gateway's clock, downloads the ``warmup_sessions`` sessions before it and today's bars so far
(``HistoricalFetcher``: paced), and yields them as instants. ``stream()`` subscribes to 5-second
real-time bars per symbol, folds them into 1-minute bars (``MinuteAggregator``) and yields an
instant when every symbol has closed the minute or ``instant_wait_s`` after the first did. A
minute missing some of its 5-second bars (a gap in the subscription) is quarantined with its
reason, never traded on. After 1101 or a reconnect every subscription is made again. The stream
ends after the close of the last live session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from trader_runtime.brokers.base import BrokerError
from trader_runtime.brokers.ib.bars import MinuteAggregator, MinuteBarOut
from trader_runtime.brokers.ib.config import IbConfig
from trader_runtime.brokers.ib.connection import IbConnection
from trader_runtime.brokers.ib.historical import HistoricalFetcher, session_bounds, warmup_sessions
from trader_runtime.live.feeds import QuarantinedBar, validate_symbol_bars
from trader_runtime.market.bars import Bar
from trader_runtime.market.instant import MarketInstant


class IbFeed:
    """Live minutes of ``symbols`` from the connection the broker also uses."""

    def __init__(
        self,
        connection: IbConnection,
        config: IbConfig,
        symbols: tuple[str, ...],
        *,
        warmup_sessions: int,
        live_sessions: int = 1,
        instant_wait_s: float = 2.0,
    ) -> None:
        self.conn = connection
        self.config = config
        self._symbols = symbols
        self.warmup = warmup_sessions
        self.live_sessions = live_sessions
        self.instant_wait_s = instant_wait_s
        self._quarantined: list[QuarantinedBar] = []
        self._subscriptions: list[Any] = []
        self._queue: asyncio.Queue[MinuteBarOut] = asyncio.Queue()
        self._aggregator = MinuteAggregator(symbols)
        self._end: datetime | None = None
        self._last_history: datetime | None = None
        self._resubscribe_hooked = False

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def quarantined(self) -> list[QuarantinedBar]:
        return self._quarantined

    # -- warm-up -------------------------------------------------------------------------------

    def history(self) -> Iterator[MarketInstant]:
        loop = self.conn.loop
        if loop is None:
            raise BrokerError("the IB feed needs a connected IB connection (connect the broker)")
        frame = asyncio.run_coroutine_threadsafe(self._history(), loop).result()
        if frame.height == 0:
            return iter(())
        return _instants(frame, self._symbols)

    async def _history(self) -> pl.DataFrame:
        now = await self.conn.ib.reqCurrentTimeAsync()
        now = now.astimezone(UTC)
        done, current = warmup_sessions(now, self.warmup)
        sessions = list(done)
        if current is not None and now > current[0]:
            sessions.append((current[0], now))
        day = now.date()
        upcoming = [b for b in session_bounds(day, day + timedelta(days=40)) if b[1] > now]
        self._end = upcoming[min(self.live_sessions, len(upcoming)) - 1][1] if upcoming else now
        fetcher = HistoricalFetcher(self.conn, self.config)
        frames = []
        for symbol in self._symbols:
            raw = await fetcher.minutes(await self.conn.stock(symbol), sessions)
            good, refused = validate_symbol_bars(symbol, raw.drop("symbol"))
            self._quarantined += refused
            frames.append(good.with_columns(symbol=pl.lit(symbol)))
        frame = pl.concat(frames, how="diagonal_relaxed").filter(pl.col("ts") <= now)
        frame = frame.sort("ts", "symbol")
        if frame.height:
            self._last_history = frame["ts"].max()  # type: ignore[assignment]
        return frame

    # -- live ----------------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        if self.conn.connected:  # 1101 on a live socket: the old subscriptions still exist
            for old in self._subscriptions:
                with contextlib.suppress(ConnectionError):
                    self.conn.ib.cancelRealTimeBars(old)
        self._subscriptions = []
        for symbol in self._symbols:
            bars = self.conn.ib.reqRealTimeBars(await self.conn.stock(symbol), 5, "TRADES", False)
            bars.updateEvent += self._on_bars
            self._subscriptions.append(bars)

    def _on_bars(self, bars: Any, has_new_bar: bool) -> None:
        if not has_new_bar or not bars:
            return
        b = bars[-1]
        start = int(b.time.timestamp())
        for minute in self._aggregator.add(
            bars.contract.symbol, start, b.open_, b.high, b.low, b.close, b.volume, b.wap, b.count
        ):
            self._queue.put_nowait(minute)

    async def _resubscribe(self) -> None:
        await self._subscribe()

    async def stream(self, after: datetime | None = None) -> AsyncIterator[MarketInstant]:
        if not self._resubscribe_hooked:
            self.conn.on_data_lost(self._resubscribe)
            self._resubscribe_hooked = True
        await self._subscribe()
        floor = max((t for t in (after, self._last_history) if t is not None), default=None)
        pending: dict[datetime, dict[str, Bar]] = {}
        while True:
            if self._end is not None and floor is not None and floor >= self._end:
                return
            timeout = self.instant_wait_s if pending else None
            try:
                minute = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                minute = None
            if minute is not None:
                if not minute.complete:
                    self._quarantine(
                        minute, f"incomplete minute: {minute.parts} of 12 five-second bars"
                    )
                elif floor is None or minute.ts > floor:
                    pending.setdefault(minute.ts, {})[minute.symbol] = Bar(
                        minute.ts, minute.open, minute.high, minute.low, minute.close, minute.volume
                    )
            for ts in sorted(pending):
                ready = len(pending[ts]) == len(self._symbols) or minute is None
                if not ready and ts == max(pending):
                    break
                bars = pending.pop(ts)
                floor = ts
                yield MarketInstant(ts, {s: bars[s] for s in self._symbols if s in bars})

    def _quarantine(self, minute: MinuteBarOut, reason: str) -> None:
        self._quarantined.append(
            QuarantinedBar(
                minute.symbol,
                minute.ts,
                reason,
                {
                    "open": minute.open,
                    "high": minute.high,
                    "low": minute.low,
                    "close": minute.close,
                    "volume": minute.volume,
                },
            )
        )


def _instants(frame: pl.DataFrame, symbols: tuple[str, ...]) -> Iterator[MarketInstant]:
    by_ts: dict[datetime, dict[str, Bar]] = {}
    for symbol, ts, o, h, lo, c, v in frame.select(
        "symbol", "ts", "open", "high", "low", "close", "volume"
    ).iter_rows():
        by_ts.setdefault(ts, {})[symbol] = Bar(ts, o, h, lo, c, v)
    for ts in sorted(by_ts):
        bars = by_ts[ts]
        yield MarketInstant(ts, {s: bars[s] for s in symbols if s in bars})
