"""Live = backtest: one simulated session through the live engine and the paper broker makes the
decisions, orders and fills the backtest makes on the same bars with the same model."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.live_kit import backtest_of, loaded_model
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.decision.config import TradingConfig
from trader_runtime.live.engine import LiveConfig, LiveEngine
from trader_runtime.live.feeds import Pacing, SyntheticFeed
from trader_runtime.live.journal import Journal
from trader_runtime.sources.synthetic import SyntheticMarketConfig

SYMBOLS = ("AAA", "BBB", "CCC")
LIVE_START = date(2024, 3, 4)
# lively enough to trade a lot in one session: short centring, low entry edge
CONFIG = TradingConfig(
    signal={"center_window_bars": 60, "center_min_bars": 10, "entry_edge": 0.01},
)


def _feed(sessions: int = 1) -> SyntheticFeed:
    return SyntheticFeed(
        SYMBOLS,
        config=SyntheticMarketConfig(seed=5, signal_strength=0.1),
        live_start=LIVE_START,
        live_sessions=sessions,
        warmup_sessions=6,
        pacing=Pacing(speed=0.0),
    )


def _live(tmp: Path, config: TradingConfig, **live: object):
    journal = Journal(tmp / "journal.duckdb")
    engine = LiveEngine(
        symbols=SYMBOLS,
        trading=config,
        live=LiveConfig(**live),
        feed=_feed(),
        broker=PaperBroker(
            tmp / "paper.json", costs=config.costs, initial_cash_usd=config.initial_cash_usd
        ),
        journal=journal,
        model=loaded_model(),
    )
    summary = asyncio.run(engine.run())
    return engine, journal, summary


@pytest.mark.parametrize("algo", ["immediate", "vwap"])
def test_live_session_equals_backtest(tmp_path: Path, algo: str) -> None:
    config = CONFIG.model_copy(
        update={"execution": CONFIG.execution.model_copy(update={"algo": algo})}
    )
    engine, journal, summary = _live(tmp_path, config)
    feed = _feed()
    live_bars = asyncio.run(_collect(feed))
    reference = backtest_of(list(feed.history()), live_bars, SYMBOLS, loaded_model(), config)

    decisions = journal.decisions(engine.session_id).sort("ts", "symbol")
    expected = reference.decisions.sort("ts", "symbol")
    assert decisions.height == expected.height > 10
    assert decisions["symbol"].to_list() == expected["symbol"].to_list()
    assert decisions["reason"].to_list() == expected["reason"].to_list()
    np.testing.assert_array_equal(decisions["target_weight"], expected["target_weight"])
    np.testing.assert_array_equal(decisions["probability"], expected["probability"])
    assert (decisions["ts"] == expected["ts"]).all()

    fills = journal.fills(engine.session_id)
    ref_fills = reference.fills
    assert fills.height == ref_fills.height > 10
    assert (fills["ts"] == ref_fills["ts"]).all()
    assert fills["symbol"].to_list() == ref_fills["symbol"].to_list()
    for column in ("qty", "price_usd", "commission_usd", "impact_cost_usd"):
        np.testing.assert_array_equal(fills[column], ref_fills[column])

    intents = journal.intents(engine.session_id)
    assert len({i.client_order_id for i in intents}) == len(intents) == summary.orders
    equity = journal.equity(engine.session_id)
    np.testing.assert_array_equal(
        equity["equity_usd"].to_numpy()[: reference.equity.height],
        reference.equity["equity_usd"].to_numpy(),
    )
    assert summary.status == "completed"
    assert summary.bars == reference.equity.height


async def _collect(feed: SyntheticFeed) -> list:
    return [instant async for instant in feed.stream()]


def test_every_decision_carries_its_features_and_model(tmp_path: Path) -> None:
    engine, journal, _ = _live(tmp_path, CONFIG, max_bars=120)
    decisions = journal.decisions(engine.session_id)
    assert decisions.height > 0
    assert set(decisions["model_version"]) == {"1"}
    first = decisions.row(0, named=True)
    assert "rsi_14" in first["features"] or "sma_ratio_10" in first["features"]
    intents = pl.DataFrame([i._asdict() for i in journal.intents(engine.session_id)])
    assert intents["decision_id"].is_in(decisions["decision_id"].implode()).all()
