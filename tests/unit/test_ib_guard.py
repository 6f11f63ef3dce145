"""The IB paper/live guard and the adapter's settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trader_runtime.brokers.ib.config import LIVE_PORTS, PAPER_PORTS, HistoricalPacing, IbConfig
from trader_runtime.brokers.ib.guard import IbGuardError, check_accounts, check_before_connect
from trader_runtime.errors import ConfigError


def live(**kw: object) -> IbConfig:
    return IbConfig.model_validate(
        {"mode": "live", "live_trading_enabled": True, "port": 4001, **kw}
    )


def test_defaults_are_a_paper_gateway_with_ibs_pacing() -> None:
    config = IbConfig()
    assert (config.mode, config.port, config.client_id, config.live_trading_enabled) == (
        "paper",
        4002,
        17,
        False,
    )
    assert config.historical == HistoricalPacing()
    assert config.historical.burst_max < 6
    assert config.historical.max_requests == 60
    assert PAPER_PORTS.isdisjoint(LIVE_PORTS)
    assert check_before_connect(config) == []


def test_config_is_frozen_strict_and_consistent() -> None:
    config = IbConfig()
    with pytest.raises(ValidationError):
        config.port = 4001  # type: ignore[misc]
    with pytest.raises(ValidationError):
        IbConfig.model_validate({"prot": 4001})
    with pytest.raises(ValidationError):
        IbConfig(backoff_initial_s=10.0, backoff_max_s=5.0)
    with pytest.raises(ValidationError):
        IbConfig.model_validate({"historical": {"burst_max": 0}})
    nested = IbConfig.model_validate({"historical": {"burst_max": 2, "window_s": 5.0}})
    assert (nested.historical.burst_max, nested.historical.window_s) == (2, 5.0)
    assert nested.historical.identical_window_s == 15.0


def test_live_mode_needs_the_second_flag() -> None:
    with pytest.raises(IbGuardError, match="live_trading_enabled"):
        check_before_connect(IbConfig(mode="live", port=4001))
    assert check_before_connect(live()) == []
    assert check_before_connect(live(port=7496)) == []


@pytest.mark.parametrize(
    ("mode", "port"), [("paper", 7496), ("paper", 4001), ("live", 4002), ("live", 7497)]
)
def test_a_port_of_the_other_mode_is_refused_unless_allowed(mode: str, port: int) -> None:
    base = {"mode": mode, "port": port, "live_trading_enabled": True}
    with pytest.raises(IbGuardError, match=str(port)):
        check_before_connect(IbConfig.model_validate(base))
    warnings = check_before_connect(IbConfig.model_validate({**base, "allow_port_mismatch": True}))
    assert len(warnings) == 1
    assert str(port) in warnings[0]


def test_an_unknown_port_is_a_warning() -> None:
    warnings = check_before_connect(IbConfig(port=45123))
    assert len(warnings) == 1
    assert "45123" in warnings[0]
    assert len(check_before_connect(live(port=45123))) == 1


def test_the_guard_error_is_a_config_error() -> None:
    assert issubclass(IbGuardError, ConfigError)


def test_paper_mode_trades_the_only_paper_account() -> None:
    assert check_accounts(IbConfig(), ["DU1234567"]) == "DU1234567"
    assert check_accounts(IbConfig(), [" DF555 "]) == "DF555"


@pytest.mark.parametrize("accounts", [["U1234567"], ["DU1", "U7654321"], ["F999"]])
def test_paper_mode_refuses_any_live_account(accounts: list[str]) -> None:
    live_account = next(a for a in accounts if not a.startswith("D"))
    with pytest.raises(IbGuardError, match=live_account):
        check_accounts(IbConfig(), accounts)


def test_live_mode_refuses_paper_accounts() -> None:
    assert check_accounts(live(), ["U1234567"]) == "U1234567"
    with pytest.raises(IbGuardError, match="DU1"):
        check_accounts(live(), ["U1234567", "DU1"])


def test_no_account_is_refused() -> None:
    with pytest.raises(IbGuardError, match="no managed account"):
        check_accounts(IbConfig(), [])
    with pytest.raises(IbGuardError):
        check_accounts(IbConfig(), [""])


def test_the_chosen_account_must_be_managed_and_several_need_a_choice() -> None:
    with pytest.raises(IbGuardError, match="several"):
        check_accounts(IbConfig(), ["DU1", "DU2"])
    assert check_accounts(IbConfig(account="DU2"), ["DU1", "DU2"]) == "DU2"
    with pytest.raises(IbGuardError, match="DU3 is not managed"):
        check_accounts(IbConfig(account="DU3"), ["DU1", "DU2"])
    with pytest.raises(ValidationError):
        IbConfig(account="  ")
