"""One ib_async connection kept alive: connect with retries, heartbeat, reconnect, IB's system codes.

I/O only; the decisions (which account, which port, how long to back off) come from ``guard`` and
``pacing``. The connection runs inside the runtime's own event loop with ib_async's async API (no
``util.startLoop``, no sync wrappers).

- connect: ``connect_attempts`` tries with exponential backoff. A refused socket, a timeout and
  326 (client id in use: ib_async only times out) are all retried; the last error is raised as a
  ``BrokerError`` naming host, port and client id. The paper/live guard runs before the socket
  opens (mode, flag, port) and after the handshake (managed accounts).
- heartbeat: ``reqCurrentTime`` every ``heartbeat_interval_s``; no answer within
  ``heartbeat_timeout_s`` drops the socket, which starts a reconnect.
- a dropped socket (TWS restart, nightly logoff, heartbeat failure): reconnect with backoff until it
  works or the connection is closed, then the ``reconnected`` handlers run (the broker reconciles,
  the feed resubscribes).
- 1100 (IB lost connectivity): ``paused`` until 1101/1102 — no new orders go out meanwhile.
  1101 (restored, data lost): the ``data_lost`` handlers run (resubscribe), then ``reconnected``
  ones (reconcile). 1102 (restored, data kept): ``reconnected`` handlers only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ib_async import IB, Stock

from trader_runtime.brokers.base import BrokerError
from trader_runtime.brokers.ib.config import IbConfig
from trader_runtime.brokers.ib.guard import check_accounts, check_before_connect
from trader_runtime.brokers.ib.pacing import backoff_s

log = logging.getLogger(__name__)

Handler = Callable[[], Awaitable[None]]
CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102
CLIENT_ID_IN_USE = 326


class IbConnection:
    """An ``ib_async.IB`` client connected as ``config.client_id`` and kept connected."""

    def __init__(self, config: IbConfig, *, client_id: int | None = None) -> None:
        self.config = config
        self.client_id = config.client_id if client_id is None else client_id
        self.ib = IB()
        self.account = ""
        self.paused = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_reconnected: list[Handler] = []
        self._on_data_lost: list[Handler] = []
        self._client_id_in_use = False
        self._contracts: dict[str, Any] = {}
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected

    # -- handlers ------------------------------------------------------------------------------

    def on_reconnected(self, handler: Handler) -> None:
        """Run ``handler`` after every reconnect and after 1101/1102."""
        self._on_reconnected.append(handler)

    def on_data_lost(self, handler: Handler) -> None:
        """Run ``handler`` when subscriptions must be made again (1101, reconnect)."""
        self._on_data_lost.append(handler)

    @property
    def connected(self) -> bool:
        return self.ib.isConnected()

    async def stock(self, symbol: str) -> Any:
        """The qualified stock ``symbol`` on ``config.exchange`` (cached: a conId outlives a
        reconnect); a symbol IB does not know raises ``BrokerError``."""
        found = self._contracts.get(symbol)
        if found is not None:
            return found
        contract = Stock(symbol, self.config.exchange, self.config.currency)
        qualified = await self.ib.qualifyContractsAsync(contract)
        if not qualified or qualified[0] is None or not contract.conId:
            raise BrokerError(f"IB does not know the stock {symbol} on {self.config.exchange}")
        self._contracts[symbol] = contract  # qualified in place (conId, primary exchange)
        return contract

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        events, self.events = self.events, []
        return events

    def _event(self, kind: str, **detail: Any) -> None:
        self.events.append((kind, detail))
        log.info("ib %s %s", kind, detail)

    # -- connect -------------------------------------------------------------------------------

    async def connect(self) -> str:
        """Connect (with retries) and return the account to trade; starts the heartbeat."""
        for warning in check_before_connect(self.config):
            self._event("guard_warning", message=warning)
        self.loop = asyncio.get_running_loop()
        self._closing = False
        await self._connect_with_retries(self.config.connect_attempts)
        self._heartbeat = asyncio.create_task(self._beat())
        return self.account

    async def _connect_with_retries(self, attempts: int | None) -> None:
        cfg = self.config
        attempt = 0
        last: BaseException | None = None
        while attempts is None or attempt < attempts:
            if self._closing:
                raise BrokerError("the IB connection was closed while connecting")
            self._client_id_in_use = False
            try:
                await self.ib.connectAsync(
                    cfg.host,
                    cfg.port,
                    clientId=self.client_id,
                    timeout=cfg.connect_timeout_s,
                    account=cfg.account or "",
                )
            except (TimeoutError, ConnectionError, OSError) as exc:
                last = exc
                reason = "client id in use (326)" if self._client_id_in_use else repr(exc)
                self._event("connect_failed", attempt=attempt + 1, reason=reason)
                attempt += 1
                await asyncio.sleep(backoff_s(attempt, cfg.backoff_initial_s, cfg.backoff_max_s))
                continue
            try:
                self.account = check_accounts(cfg, self.ib.managedAccounts())
            except Exception:
                self.ib.disconnect()  # refused: the client id is not held until a garbage collection
                raise
            self.paused = False
            self._event("connected", account=self.account, client_id=self.client_id)
            return
        self.ib.disconnect()
        hint = (
            "the client id is in use by another session (326)"
            if self._client_id_in_use
            else "is the gateway running with the API enabled on that port?"
        )
        raise BrokerError(
            f"could not connect to IB at {cfg.host}:{cfg.port} as client id {self.client_id} "
            f"after {attempt} attempts ({last!r}): {hint}"
        )

    async def close(self) -> None:
        self._closing = True
        for task in (self._heartbeat, self._reconnecting, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
        pending = [t for t in (self._heartbeat, self._reconnecting, *self._tasks) if t is not None]
        await asyncio.gather(*pending, return_exceptions=True)
        self.ib.disconnect()

    # -- staying connected ---------------------------------------------------------------------

    async def _beat(self) -> None:
        cfg = self.config
        while not self._closing:
            await asyncio.sleep(cfg.heartbeat_interval_s)
            if not self.ib.isConnected() or self._reconnecting is not None:
                continue
            try:
                await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), cfg.heartbeat_timeout_s)
            except (TimeoutError, ConnectionError) as exc:
                self._event("heartbeat_failed", error=repr(exc))
                self.ib.disconnect()  # emits disconnectedEvent: the reconnect starts there

    def _on_disconnected(self) -> None:
        if self._closing or self._reconnecting is not None:
            return
        self.paused = True
        self._event("disconnected")
        self._reconnecting = asyncio.get_event_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            started = time.monotonic()
            await asyncio.sleep(self.config.backoff_initial_s)
            await self._connect_with_retries(None)
            self._event("reconnected", after_s=round(time.monotonic() - started, 3))
            await self._run(self._on_data_lost)
            await self._run(self._on_reconnected)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a guard refusal after reconnect: stay paused, say why
            self._event("reconnect_failed", error=str(exc))
            self.paused = True
        finally:
            self._reconnecting = None

    async def _run(self, handlers: list[Handler]) -> None:
        for handler in handlers:
            try:
                await handler()
            except Exception as exc:
                self._event("handler_failed", handler=repr(handler), error=repr(exc))

    def _spawn(self, handlers: list[Handler]) -> None:
        task = asyncio.get_event_loop().create_task(self._run(handlers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if code == CLIENT_ID_IN_USE:
            self._client_id_in_use = True
        elif code == CONNECTIVITY_LOST:
            self.paused = True
            self._event("connectivity_lost", code=code)
        elif code == RESTORED_DATA_LOST:
            self.paused = False
            self._event("connectivity_restored", code=code, data="lost")
            self._spawn([*self._on_data_lost, *self._on_reconnected])
        elif code == RESTORED_DATA_KEPT:
            self.paused = False
            self._event("connectivity_restored", code=code, data="kept")
            self._spawn(list(self._on_reconnected))
