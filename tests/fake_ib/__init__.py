"""A fake Interactive Brokers gateway speaking the TWS API to the real ib_async client, for tests."""

from tests.fake_ib.gateway import (
    DEFAULT_CLOCK,
    SYSTEM_MESSAGES,
    FakeGateway,
    Script,
    ThreadedGateway,
)
from tests.fake_ib.log_guard import DecoderErrorGuard, DecoderErrorsFoundError
from tests.fake_ib.state import (
    FakeExecution,
    FakeGatewayError,
    HistoricalRequestLog,
    MinuteBar,
    PlacedOrder,
    five_second_bars,
    stable_con_id,
)

__all__ = [
    "DEFAULT_CLOCK",
    "SYSTEM_MESSAGES",
    "DecoderErrorGuard",
    "DecoderErrorsFoundError",
    "FakeExecution",
    "FakeGateway",
    "FakeGatewayError",
    "HistoricalRequestLog",
    "MinuteBar",
    "PlacedOrder",
    "Script",
    "ThreadedGateway",
    "five_second_bars",
    "stable_con_id",
]
