"""One bar instant across a universe: what a live feed delivers and the live engine consumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from trader_runtime.market.bars import Bar


@dataclass(frozen=True, slots=True)
class MarketInstant:
    """The bars that closed at ``ts`` (UTC), by symbol; a symbol without a bar is absent.

    Every bar's own ``ts`` equals ``ts``."""

    ts: datetime
    bars: Mapping[str, Bar]
