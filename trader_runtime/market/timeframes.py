"""Bar timeframes and their lengths."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum


class Timeframe(StrEnum):
    """A bar length. Values are the names used in paths, partitions and config."""

    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    D1 = "1d"

    @property
    def minutes(self) -> int | None:
        """Length in minutes for intraday timeframes; None for the daily (session) bar."""
        return _INTRADAY_MINUTES.get(self)

    @property
    def is_intraday(self) -> bool:
        return self is not Timeframe.D1

    @property
    def duration(self) -> timedelta | None:
        """Length of an intraday bar; None for the daily bar, whose length is the session."""
        minutes = self.minutes
        return None if minutes is None else timedelta(minutes=minutes)


_INTRADAY_MINUTES: dict[Timeframe, int] = {
    Timeframe.M1: 1,
    Timeframe.M5: 5,
    Timeframe.M15: 15,
    Timeframe.H1: 60,
}

ALL_TIMEFRAMES: tuple[Timeframe, ...] = tuple(Timeframe)
HIGHER_TIMEFRAMES: tuple[Timeframe, ...] = (Timeframe.M5, Timeframe.M15, Timeframe.H1, Timeframe.D1)
