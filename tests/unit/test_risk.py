"""Every pre-trade guard trips when it should, and only then."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from tests.backtest_kit import random_grid
from trader_runtime.backtest.engine import run_backtest
from trader_runtime.decision.config import RiskConfig, SizingConfig, TradingConfig
from trader_runtime.trading.risk import RiskEngine

OPEN_US = int(datetime(2024, 3, 4, 15, 0, tzinfo=UTC).timestamp() * 1e6)  # 10:00 New York
NIGHT_US = int(datetime(2024, 3, 4, 23, 0, tzinfo=UTC).timestamp() * 1e6)
SIZING = SizingConfig(max_position_fraction=0.05, max_gross_fraction=1.0)
MARKS = np.array([100.0, 50.0])


def _engine(**risk: object) -> RiskEngine:
    engine = RiskEngine(RiskConfig(**risk), SIZING, 2)
    engine.on_bar(OPEN_US, MARKS, 1e6)
    return engine


def _check(engine: RiskEngine, qty: float, j: int = 0, positions=(0.0, 0.0), **kw) -> str | None:
    return engine.check(OPEN_US, j, qty, float(MARKS[j]), np.array(positions), MARKS, 1e6, **kw)


def test_a_normal_order_passes() -> None:
    assert _check(_engine(), 400.0) is None  # 4% of equity


def test_position_cap() -> None:
    engine = _engine(cap_tolerance_fraction=0.01)
    assert _check(engine, 590.0) is None  # 5.9% <= 5% + 1%
    assert _check(engine, 700.0) == "position_cap"
    # reducing an oversized position always passes
    assert _check(engine, -100.0, positions=(900.0, 0.0)) is None


def test_gross_cap() -> None:
    engine = RiskEngine(
        RiskConfig(cap_tolerance_fraction=0.0),
        SizingConfig(max_position_fraction=1.0, max_gross_fraction=0.5),
        2,
    )
    engine.on_bar(OPEN_US, MARKS, 1e6)
    held = (4000.0, 0.0)  # $400k
    assert _check(engine, 1000.0, j=1, positions=held) is None  # + $50k = 45%
    assert _check(engine, 3000.0, j=1, positions=held) == "gross_cap"  # + $150k = 55%


def test_trading_hours() -> None:
    engine = _engine()
    args = (0, 10.0, 100.0, np.zeros(2), MARKS, 1e6)
    assert engine.check(NIGHT_US, *args) == "outside_hours"
    assert engine.check(OPEN_US, *args) is None
    assert _engine(trading_hours_only=False).check(NIGHT_US, *args) is None


def test_rate_limit_counts_a_rolling_minute() -> None:
    engine = _engine(max_orders_per_minute=3)
    for _ in range(3):
        assert _check(engine, 10.0) is None
        engine.record_order(OPEN_US)
    assert _check(engine, 10.0) == "rate_limit"
    later = OPEN_US + 61_000_000
    assert engine.check(later, 0, 10.0, 100.0, np.zeros(2), MARKS, 1e6) is None


def test_price_band_against_the_previous_close() -> None:
    engine = _engine(price_band_fraction=0.05)
    engine.on_bar(OPEN_US + 60_000_000, np.array([108.0, 50.0]), 1e6)  # +8% in one bar
    assert _check(engine, 10.0) == "price_band"
    assert _check(engine, 10.0, j=1) is None
    assert _check(engine, 10.0, flatten=True) is None


def test_daily_loss_halts_until_the_next_session() -> None:
    engine = _engine(daily_loss_limit_fraction=0.02)
    assert engine.on_bar(OPEN_US + 60_000_000, MARKS, 985_000.0) is None  # -1.5%
    event = engine.on_bar(OPEN_US + 120_000_000, MARKS, 979_000.0)  # -2.1%
    assert event is not None
    assert event.detail["reason"] == "daily_loss"
    assert engine.halted
    assert _check(engine, 10.0) == "halted"
    assert _check(engine, -10.0, positions=(10.0, 0.0), flatten=True) is None
    next_day = int(datetime(2024, 3, 5, 15, 0, tzinfo=UTC).timestamp() * 1e6)
    engine.on_bar(next_day, MARKS, 979_000.0)
    assert not engine.halted
    assert engine.session_open_equity_usd == 979_000.0


def test_a_kill_switch_halt_lasts() -> None:
    engine = _engine()
    engine.halt("kill_switch")
    next_day = int(datetime(2024, 3, 5, 15, 0, tzinfo=UTC).timestamp() * 1e6)
    engine.on_bar(next_day, MARKS, 1e6)
    assert engine.halted
    assert _check(engine, 10.0) == "halted"


def test_the_backtest_stops_trading_for_the_day_after_the_loss_limit() -> None:
    grid = random_grid(1500, 4, 11)
    limit = 0.0002
    result = run_backtest(grid, TradingConfig(risk={"daily_loss_limit_fraction": limit}), "m")
    loose = run_backtest(grid, TradingConfig(), "m")
    assert result.fills.height < loose.fills.height
    equity = result.equity.with_columns(session=_session(pl.col("ts")))
    fills = result.fills.with_columns(session=_session(pl.col("ts")))
    halts = 0
    for (session,), day in equity.group_by("session", maintain_order=True):
        start = day["equity_usd"][0]
        breached = day.filter((start - pl.col("equity_usd")) / start >= limit)
        if breached.height == 0:
            continue
        halts += 1
        halt_ts = breached["ts"][0]
        later = fills.filter((pl.col("session") == session) & (pl.col("ts") > halt_ts))
        assert later.height == 0, f"fills after the halt at {halt_ts}"
    assert halts >= 1


def _session(ts: pl.Expr) -> pl.Expr:
    return ts.dt.convert_time_zone("America/New_York").dt.date()
