"""Historical 1-minute bars from IB within its pacing rules: the ``ibkr`` source and the feed's warm-up.

One request per session (regular hours, ``formatDate=2``), sent only when ``HistoricalPacer``
says the request may go (identical requests 15 s apart, fewer than six per contract in 2 s, at most
60 in 10 min, at most 50 open). ib_async answers a request that IB refused with an empty list; a
162 "pacing violation" seen during the request makes it a retry after ``retry_delay_s``, other
162s ("query returned no data") an empty session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from trader_runtime.brokers.base import BrokerError
from trader_runtime.brokers.ib.bars import historical_bar, historical_requests
from trader_runtime.brokers.ib.config import IbConfig
from trader_runtime.brokers.ib.connection import IbConnection
from trader_runtime.brokers.ib.pacing import HistoricalPacer, retry_delay_s
from trader_runtime.market.bars import BAR_COLUMNS, conform, empty_bars
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest

PACING_CODE = 162


def session_bounds(start: date, end: date) -> list[tuple[datetime, datetime]]:
    """(open, close) UTC of every exchange session from ``start`` to ``end``."""
    schedule = TradingCalendar(start, end).schedule()
    return list(zip(schedule["open_ts"].to_list(), schedule["close_ts"].to_list(), strict=True))


class HistoricalFetcher:
    """Sends historical requests on a connected ``IbConnection``, paced and retried."""

    def __init__(self, connection: IbConnection, config: IbConfig) -> None:
        self.conn = connection
        self.rules = config.historical
        self.pacer = HistoricalPacer(self.rules)
        self.requests_sent = 0
        self.pacing_retries = 0

    async def minutes(
        self, contract: Any, sessions: Sequence[tuple[datetime, datetime]]
    ) -> pl.DataFrame:
        """1-minute bars (``BAR_SCHEMA``, bar-close timestamps) of ``sessions`` for ``contract``."""
        frames = []
        for req in historical_requests(sessions):
            rows = await self._one(contract, req.end_datetime, req.duration, req.bar_size)
            if rows:
                frames.append(pl.DataFrame(rows))
        if not frames:
            return empty_bars()
        frame = pl.concat(frames, how="diagonal_relaxed")
        return conform(frame, symbol=contract.symbol).select(BAR_COLUMNS)

    async def _one(
        self, contract: Any, end: str, duration: str, bar_size: str
    ) -> list[dict[str, Any]]:
        ib = self.conn.ib
        key = (contract.symbol, bar_size, f"{end}|{duration}")
        for attempt in range(self.rules.retries + 1):
            while (delay := self.pacer.delay_s(key, contract.symbol, time.monotonic())) > 0:
                await asyncio.sleep(delay)
            seen: list[tuple[int, str]] = []

            def on_error(req_id: int, code: int, message: str, _c: Any = None) -> None:
                if code == PACING_CODE:
                    seen.append((code, message))  # noqa: B023 - the current attempt's list

            ib.errorEvent += on_error
            self.pacer.started(key, contract.symbol, time.monotonic())
            self.requests_sent += 1
            try:
                bars = await ib.reqHistoricalDataAsync(
                    contract,
                    endDateTime=end,
                    durationStr=duration,
                    barSizeSetting=bar_size,
                    whatToShow="TRADES",
                    useRTH=True,
                    formatDate=2,
                )
            finally:
                ib.errorEvent -= on_error
                self.pacer.finished(key)
            if bars:
                return [
                    historical_bar(
                        b.date, b.open, b.high, b.low, b.close, b.volume, b.average, b.barCount
                    )
                    for b in bars
                ]
            if not any("pacing" in message.lower() for _, message in seen):
                return []
            self.pacing_retries += 1
            await asyncio.sleep(retry_delay_s(attempt, self.rules))
        raise BrokerError(
            f"IB kept refusing historical bars of {contract.symbol} for pacing after "
            f"{self.rules.retries} retries"
        )


class IbHistoricalSource:
    """The ``ibkr`` market data source: 1-minute bars downloaded from a gateway (its own client id,
    ``client_id + 1``, so it can run next to a live session)."""

    def __init__(self, config: IbConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return "ibkr"

    @property
    def base_timeframe(self) -> Timeframe:
        return Timeframe.M1

    def has_symbol(self, symbol: str) -> bool:
        return True  # the gateway says otherwise when asked (error 200)

    def load(self, request: BarRequest) -> pl.DataFrame:
        return asyncio.run(self._load(request))

    async def _load(self, request: BarRequest) -> pl.DataFrame:
        conn = IbConnection(self.config, client_id=self.config.client_id + 1)
        await conn.connect()
        try:
            contract = await conn.stock(request.symbol)
            sessions = session_bounds(request.start, request.end)
            return await HistoricalFetcher(conn, self.config).minutes(contract, sessions)
        finally:
            await conn.close()


def warmup_sessions(
    now: datetime, n: int
) -> tuple[list[tuple[datetime, datetime]], tuple[datetime, datetime] | None]:
    """The ``n`` sessions that closed before ``now``, and the session open at ``now`` (or None)."""
    day = now.date()
    bounds = session_bounds(day - timedelta(days=max(14, n * 2 + 10)), day + timedelta(days=7))
    done = [b for b in bounds if b[1] <= now]
    current = next((b for b in bounds if b[0] <= now < b[1]), None)
    return done[-n:], current
