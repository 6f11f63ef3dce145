"""Settings of the Interactive Brokers adapter (``ROBO_IB__*``): where the gateway is, which mode,
how long to wait, and IB's historical pacing rules.

The API socket needs no secret (the login happens in TWS or IB Gateway), so nothing here is
sensitive. Durations are seconds (``*_s``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

IbMode = Literal["paper", "live"]

PAPER_PORTS: frozenset[int] = frozenset({7497, 4002})
"""Default API ports of paper sessions: TWS 7497, IB Gateway 4002."""
LIVE_PORTS: frozenset[int] = frozenset({7496, 4001})
"""Default API ports of live sessions: TWS 7496, IB Gateway 4001."""


class HistoricalPacing(BaseModel):
    """IB's historical-data pacing rules, enforced on our side (``pacing.HistoricalPacer``).

    - no identical request (same contract, end, duration, bar size) within ``identical_window_s``;
    - at most ``burst_max`` requests for one contract within ``burst_window_s`` (IB: fewer than 6
      in 2 s);
    - at most ``max_requests`` requests within ``window_s`` (IB: 60 in 10 minutes);
    - at most ``max_open`` requests waiting for an answer (IB: 50);
    - a request refused for pacing (162) is retried up to ``retries`` times, the first after
      ``retry_backoff_s``, doubling each time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    identical_window_s: float = Field(default=15.0, ge=0.0)
    burst_max: int = Field(default=5, ge=1)
    burst_window_s: float = Field(default=2.0, ge=0.0)
    max_requests: int = Field(default=60, ge=1)
    window_s: float = Field(default=600.0, ge=0.0)
    max_open: int = Field(default=50, ge=1)
    retries: int = Field(default=5, ge=0)
    retry_backoff_s: float = Field(default=15.0, gt=0.0)


class IbConfig(BaseModel):
    """How to reach the gateway and trade through it.

    ``mode`` says which kind of account we expect; live trading also needs
    ``live_trading_enabled`` (a second, explicit flag). ``client_id`` must stay stable: IB binds
    API orders to the client id that placed them. ``account`` None means the only managed account.
    A port that belongs to the other mode is refused unless ``allow_port_mismatch``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=4002, ge=1, le=65535)
    client_id: int = Field(default=17, ge=0)
    mode: IbMode = "paper"
    live_trading_enabled: bool = False
    allow_port_mismatch: bool = False
    account: str | None = None
    connect_timeout_s: float = Field(default=10.0, gt=0.0)
    connect_attempts: int = Field(default=5, ge=1)
    backoff_initial_s: float = Field(default=1.0, gt=0.0)
    backoff_max_s: float = Field(default=60.0, gt=0.0)
    heartbeat_interval_s: float = Field(default=30.0, gt=0.0)
    heartbeat_timeout_s: float = Field(default=10.0, gt=0.0)
    order_ack_timeout_s: float = Field(default=10.0, gt=0.0)
    commission_wait_s: float = Field(default=5.0, ge=0.0)
    exchange: str = Field(default="SMART", min_length=1)
    currency: str = Field(default="USD", min_length=3, max_length=3)
    historical: HistoricalPacing = HistoricalPacing()

    @model_validator(mode="after")
    def _consistent(self) -> IbConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s {self.backoff_max_s} is below backoff_initial_s "
                f"{self.backoff_initial_s}"
            )
        if self.account is not None and not self.account.strip():
            raise ValueError("account must be an account id or None, not blank")
        return self
