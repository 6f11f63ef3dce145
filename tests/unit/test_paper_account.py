"""The paper account tells the engine what it holds and at what average cost, across restarts."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.live_kit import paper_trades
from trader_runtime.brokers.base import AccountState, BarQuote, OrderRequest
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.decision.config import TradingConfig

CONFIG = TradingConfig()
T0 = datetime(2024, 7, 1, 14, 0, tzinfo=UTC)


def _broker(path: Path) -> PaperBroker:
    return PaperBroker(path, costs=CONFIG.costs, initial_cash_usd=1_000_000.0)


def _account(broker: PaperBroker) -> AccountState:
    return asyncio.run(broker.connect())


def test_an_enlarged_position_averages_its_fills_and_a_reduced_one_keeps_its_cost(
    tmp_path: Path,
) -> None:
    broker = _broker(tmp_path / "paper.json")
    p = paper_trades(broker, "AAA", [(100.0, 50.0), (300.0, 60.0), (-200.0, 70.0)], start=T0)
    account = _account(broker)
    assert account.positions == {"AAA": 200.0}
    assert account.avg_cost_usd["AAA"] == pytest.approx((100 * p[0] + 300 * p[1]) / 400)
    assert p[0] != 50.0  # the fill prices carry the costs: the average is not the quotes'


def test_a_flipped_position_costs_its_flipping_fill_and_a_flat_one_has_no_cost(
    tmp_path: Path,
) -> None:
    broker = _broker(tmp_path / "paper.json")
    p = paper_trades(broker, "AAA", [(100.0, 50.0), (-150.0, 40.0)], start=T0)
    paper_trades(broker, "BBB", [(10.0, 20.0), (-10.0, 21.0)], start=T0)
    account = _account(broker)
    assert account.positions == {"AAA": -50.0}
    assert account.avg_cost_usd == {"AAA": p[1]}


def test_the_cost_survives_a_restart_of_the_broker(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    p = paper_trades(_broker(path), "AAA", [(100.0, 50.0)], start=T0)
    account = _account(_broker(path))
    assert account.positions == {"AAA": 100.0}
    assert account.avg_cost_usd == {"AAA": p[0]}
    assert not math.isnan(p[0])


def test_bars_with_nothing_working_write_nothing_and_a_restart_after_them_fills_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "paper.json"
    quote = {"AAA": BarQuote(50.0, 50.0, 1e9, 0.01, 1e9)}

    def minute(k: int) -> datetime:
        return T0 + timedelta(minutes=k)

    async def first_process() -> None:
        broker = _broker(path)
        await broker.on_bar(minute(0), quote)
        assert not path.exists()  # nothing working: nothing written
        await broker.submit(OrderRequest("c1", "AAA", 100.0, 50.0, minute(1)))
        await broker.on_bar(minute(2), quote)  # fills: written
        assert len(broker.drain()[0]) == 1
        written = path.read_bytes()
        await broker.on_bar(minute(3), quote)
        await broker.on_bar(minute(4), quote)
        assert path.read_bytes() == written  # idle bars: the file is as the fill left it

    async def after_a_restart() -> None:
        broker = _broker(path)
        assert broker.last_bar == minute(2)  # the idle bars were not written
        await broker.on_bar(minute(3), quote)  # replayed: nothing to fill again
        assert broker.drain() == ([], [])
        await broker.submit(OrderRequest("c2", "AAA", -40.0, 50.0, minute(5)))
        await broker.on_bar(minute(5), quote)  # the bar it was decided at: not yet
        await broker.on_bar(minute(6), quote)
        (execution,), _ = broker.drain()
        assert execution.qty == -40.0
        assert [e.client_order_id for e in broker.executions] == ["c1", "c2"]
        assert broker.positions == {"AAA": 60.0}

    asyncio.run(first_process())
    asyncio.run(after_a_restart())
