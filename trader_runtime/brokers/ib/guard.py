"""The paper/live guard: refuse to connect or trade when mode, port and accounts disagree.

Paper accounts start with ``D`` (``DU…`` individual, ``DF…`` FA master); live ones do not (``U…``,
``F…``). That is a community convention, not an IB guarantee, which is why the mode is also an
explicit setting and live trading needs a second flag. Ports are only a hint (users can change
them), so a port of the other mode is refused unless ``allow_port_mismatch`` and an unknown port
is a warning. Messages name only account ids, ports and settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from trader_runtime.brokers.ib.config import LIVE_PORTS, PAPER_PORTS, IbConfig
from trader_runtime.errors import ConfigError

PAPER_ACCOUNT_PREFIX = "D"


class IbGuardError(ConfigError):
    """The IB settings or the gateway's accounts contradict the requested mode."""


def is_paper_account(account_id: str) -> bool:
    """Whether ``account_id`` looks like a paper account (``DU…``, ``DF…``)."""
    return account_id.strip().upper().startswith(PAPER_ACCOUNT_PREFIX)


def check_before_connect(config: IbConfig) -> list[str]:
    """Check mode, live flag and port before the socket opens; return warnings, raise on refusal."""
    warnings: list[str] = []
    if config.mode == "live" and not config.live_trading_enabled:
        raise IbGuardError(
            "mode is live but live_trading_enabled is false: live trading needs both settings"
        )
    own, other, other_mode = (
        (PAPER_PORTS, LIVE_PORTS, "live")
        if config.mode == "paper"
        else (LIVE_PORTS, PAPER_PORTS, "paper")
    )
    if config.port in other:
        message = (
            f"port {config.port} is the default {other_mode} port but mode is {config.mode} "
            f"(expected one of {sorted(own)})"
        )
        if not config.allow_port_mismatch:
            raise IbGuardError(f"{message}; set allow_port_mismatch to connect anyway")
        warnings.append(f"{message}; connecting because allow_port_mismatch is set")
    elif config.port not in own:
        warnings.append(
            f"port {config.port} is not a default {config.mode} port {sorted(own)}; the managed "
            "accounts will decide"
        )
    return warnings


def check_accounts(config: IbConfig, managed_accounts: Sequence[str]) -> str:
    """The account to trade, given the gateway's managed accounts; raise ``IbGuardError`` when the
    accounts do not fit the mode or no single account is chosen."""
    accounts = [a.strip() for a in managed_accounts if a.strip()]
    if not accounts:
        raise IbGuardError("the gateway reported no managed account")
    if config.mode == "paper":
        for account in accounts:
            if not is_paper_account(account):
                raise IbGuardError(
                    f"mode is paper but the gateway manages {account}, which is not a paper "
                    "account (paper accounts start with D)"
                )
    else:
        for account in accounts:
            if is_paper_account(account):
                raise IbGuardError(
                    f"mode is live but the gateway manages {account}, a paper account"
                )
    if config.account is not None:
        chosen = config.account.strip()
        if chosen not in accounts:
            raise IbGuardError(
                f"account {chosen} is not managed by this session (managed: {', '.join(accounts)})"
            )
        return chosen
    if len(accounts) > 1:
        raise IbGuardError(
            f"the gateway manages several accounts ({', '.join(accounts)}): set account to one"
        )
    return accounts[0]
