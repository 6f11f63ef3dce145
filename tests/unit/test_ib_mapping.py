"""IB values <-> our records: orders, order states, executions, times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trader_runtime.brokers.base import OrderRequest
from trader_runtime.brokers.ib.mapping import (
    IbParseError,
    RawExecution,
    exec_base_id,
    exec_revision,
    order_spec,
    order_state,
    parse_ib_time,
    signed_qty,
    to_execution,
)

T0 = datetime(2024, 1, 2, 14, 31, tzinfo=UTC)


def request(qty: float, coid: str = "s1-000001-AAA") -> OrderRequest:
    return OrderRequest(coid, "AAA", qty, 100.0, T0)


def raw(**kw: object) -> RawExecution:
    fields: dict[str, object] = {
        "exec_id": "0001.abc.01",
        "order_ref": "s1-000001-AAA",
        "perm_id": 99,
        "symbol": "AAA",
        "side": "BOT",
        "shares": 10.0,
        "price": 101.0,
        "time": T0,
        "commission_usd": None,
    }
    fields.update(kw)
    return RawExecution(**fields)  # type: ignore[arg-type]


def test_an_order_becomes_a_day_market_order_with_our_id_as_order_ref() -> None:
    buy = order_spec(request(25.0), "DU1")
    assert (buy.action, buy.total_quantity, buy.order_type, buy.tif) == ("BUY", 25.0, "MKT", "DAY")
    assert (buy.order_ref, buy.account) == ("s1-000001-AAA", "DU1")
    sell = order_spec(request(-7.0), "DU1")
    assert (sell.action, sell.total_quantity) == ("SELL", 7.0)


@pytest.mark.parametrize("qty", [0.0, float("nan"), float("inf")])
def test_an_order_without_a_quantity_is_refused(qty: float) -> None:
    with pytest.raises(ValueError, match="quantity"):
        order_spec(request(qty), "DU1")


@pytest.mark.parametrize(
    ("status", "code", "state"),
    [
        ("PendingSubmit", None, "submitted"),
        ("PreSubmitted", None, "submitted"),
        ("Submitted", None, "submitted"),
        ("ApiPending", None, "submitted"),
        ("PendingCancel", None, "submitted"),
        ("ValidationError", 399, "submitted"),
        ("Filled", None, "filled"),
        ("Filled", 10148, "filled"),
        ("Cancelled", None, "cancelled"),
        ("Cancelled", 202, "cancelled"),
        ("ApiCancelled", None, "cancelled"),
        ("Cancelled", 201, "rejected"),
        ("Cancelled", 103, "rejected"),
        ("Inactive", None, "rejected"),
        ("Cancelled", 10147, None),
        ("Cancelled", 10148, None),
        ("ApiCancelled", 10148, None),
        ("SomethingNew", None, None),
        ("", None, None),
    ],
)
def test_ib_statuses_map_to_our_states(status: str, code: int | None, state: str | None) -> None:
    assert order_state(status, error_code=code) == state


def test_execution_sides_sign_the_quantity() -> None:
    assert signed_qty("BOT", 10.0) == 10.0
    assert signed_qty("SLD", 10.0) == -10.0
    with pytest.raises(ValueError, match="BOT or SLD"):
        signed_qty("BUY", 10.0)


@pytest.mark.parametrize(
    ("exec_id", "base"),
    [
        ("0000e0d5.6582d6b5.01.01", "0000e0d5.6582d6b5.01"),
        ("0000e0d5.6582d6b5.01.02", "0000e0d5.6582d6b5.01"),
        ("x.01", "x"),
        ("plain", "plain"),
    ],
)
def test_a_correction_keeps_the_base_id(exec_id: str, base: str) -> None:
    assert exec_base_id(exec_id) == base


def test_correction_numbers_order_versions() -> None:
    assert exec_revision("x.01") < exec_revision("x.02") < exec_revision("x.10")


def test_a_buy_above_the_reference_costs_a_positive_amount() -> None:
    buy = to_execution(
        raw(side="BOT", shares=10.0, price=101.0), reference_usd=100.0, commission_usd=1.0
    )
    assert (buy.qty, buy.price_usd, buy.commission_usd) == (10.0, 101.0, 1.0)
    assert buy.impact_cost_usd == pytest.approx(10.0)
    assert buy.spread_cost_usd == 0.0
    assert (buy.exec_id, buy.client_order_id, buy.symbol, buy.ts) == (
        "0001.abc.01",
        "s1-000001-AAA",
        "AAA",
        T0,
    )
    sell_below = to_execution(
        raw(side="SLD", shares=10.0, price=99.0), reference_usd=100.0, commission_usd=1.0
    )
    assert sell_below.qty == -10.0
    assert sell_below.impact_cost_usd == pytest.approx(10.0)
    sell_above = to_execution(
        raw(side="SLD", shares=10.0, price=100.5), reference_usd=100.0, commission_usd=1.0
    )
    assert sell_above.impact_cost_usd == pytest.approx(-5.0)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"side": "BUY"}, "side"),
        ({"shares": 0.0}, "shares"),
        ({"shares": -5.0}, "shares"),
        ({"price": 0.0}, "price"),
        ({"time": datetime(2024, 1, 2, 14, 31)}, "timezone"),
        ({"exec_id": ""}, "exec_id"),
    ],
)
def test_a_malformed_execution_is_refused(bad: dict[str, object], match: str) -> None:
    with pytest.raises(IbParseError, match=match):
        raw(**bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240102 14:30:00", datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        ("20240102  14:30:00", datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        ("20240102 09:30:00 US/Eastern", datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        ("20240702 09:30:00 US/Eastern", datetime(2024, 7, 2, 13, 30, tzinfo=UTC)),
        ("20240102 15:30:00 Europe/Amsterdam", datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        ("20240102 14:30:00 UTC", datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        ("20240102-14:30:00", datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        ("1704205800", datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
        ("20240102", datetime(2024, 1, 2, tzinfo=UTC)),
    ],
)
def test_ib_times_parse_to_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_ib_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "2024-01-02 14:30:00", "20240102 25:30:00", "20240102 14:30:00 Mars/Base"],
)
def test_bad_ib_times_are_refused(text: str) -> None:
    with pytest.raises(IbParseError):
        parse_ib_time(text)
