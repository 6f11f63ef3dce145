"""Seeded builders of the backtest's three frames (``equity``, ``fills``, ``trades``) for tests.

``make_backtest_frames`` gives a small, internally consistent run: real NYSE sessions, several bars
per session, round trips whose two fills carry the trade's costs, one position still open at the
end, and an equity curve that ends at ``initial + sum(trade pnl) - open fill costs``.
``equity_from_daily_returns`` turns known daily returns into an equity frame whose
``daily_returns`` are exactly those returns (hand-made cases, comparisons with empyrical).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.performance.returns import EQUITY_COLUMNS, FILLS_COLUMNS, TRADES_COLUMNS

REGIMES = ("bull", "bear", "volatile", "ranging", "crash")
EXIT_REASONS = ("exit", "stop", "target", "expiry", "rebalance", "flatten")
KIT_START = date(2024, 1, 2)


@dataclass(frozen=True)
class BacktestFrames:
    equity: pl.DataFrame
    fills: pl.DataFrame
    trades: pl.DataFrame


def sessions(n_sessions: int, start: date = KIT_START) -> pl.DataFrame:
    """The first ``n_sessions`` NYSE sessions from ``start``: ``session``, ``open_ts``, ``close_ts``."""
    end = start + timedelta(days=2 * n_sessions + 14)
    sched = TradingCalendar(start, end).schedule().head(n_sessions)
    if sched.height < n_sessions:
        raise ValueError("calendar window too short")
    return sched


def bar_closes(n_sessions: int, bars_per_session: int, start: date = KIT_START) -> list[datetime]:
    """``bars_per_session`` bar closes per session a whole number of minutes apart, the last at the
    session close."""
    out: list[datetime] = []
    for open_ts, close_ts in sched_pairs(sessions(n_sessions, start)):
        step = timedelta(minutes=(close_ts - open_ts) // timedelta(minutes=bars_per_session))
        out.extend(open_ts + step * k for k in range(1, bars_per_session))
        out.append(close_ts)
    return out


def sched_pairs(sched: pl.DataFrame) -> list[tuple[datetime, datetime]]:
    return list(zip(sched["open_ts"].to_list(), sched["close_ts"].to_list(), strict=True))


def _markov_regimes(rng: np.random.Generator, n: int, stay_probability: float = 0.85) -> list[str]:
    state = int(rng.integers(len(REGIMES)))
    out = []
    for _ in range(n):
        if rng.random() > stay_probability:
            state = int(rng.integers(len(REGIMES)))
        out.append(REGIMES[state])
    return out


def make_backtest_frames(
    *,
    seed: int = 0,
    n_sessions: int = 40,
    bars_per_session: int = 7,
    n_trades: int = 30,
    symbols: Sequence[str] = ("AAA", "BBB", "CCC"),
    models: Sequence[str] = ("lightgbm", "mlp"),
    initial_cash_usd: float = 100_000.0,
    start: date = KIT_START,
) -> BacktestFrames:
    """A seeded small backtest result (see the module doc)."""
    rng = np.random.default_rng(seed)
    ts = bar_closes(n_sessions, bars_per_session, start)
    n_bars = len(ts)
    session_regime = _markov_regimes(rng, n_sessions)
    regime = [session_regime[i // bars_per_session] for i in range(n_bars)]

    trade_rows: list[dict[str, object]] = []
    fill_rows: list[dict[str, object]] = []
    realised = np.zeros(n_bars)
    gross = np.zeros(n_bars)
    net = np.zeros(n_bars)

    def fill(i: int, symbol: str, model: str, qty: float, price: float, reason: str) -> float:
        notional = abs(qty) * price
        commission = max(1.0, 0.005 * abs(qty))
        spread = notional * 1e-4
        impact = notional * 0.5e-4 * float(rng.random())
        fill_rows.append(
            {
                "ts": ts[i],
                "symbol": symbol,
                "model": model,
                "qty": qty,
                "price_usd": price,
                "notional_usd": notional,
                "commission_usd": commission,
                "spread_cost_usd": spread,
                "impact_cost_usd": impact,
                "reason": reason,
            }
        )
        return commission + spread + impact

    for _ in range(n_trades):
        i = int(rng.integers(0, n_bars - 1))
        j = i + int(rng.integers(1, min(20, n_bars - 1 - i) + 1))
        symbol = str(rng.choice(list(symbols)))
        model = str(rng.choice(list(models)))
        side = "long" if rng.random() < 0.6 else "short"
        sign = 1.0 if side == "long" else -1.0
        qty = float(rng.integers(10, 200))
        entry = float(100.0 * np.exp(rng.normal(0.0, 0.1)))
        exit_ = entry * float(1.0 + rng.normal(0.002 * sign, 0.02))
        exit_reason = str(rng.choice(list(EXIT_REASONS)))
        costs = fill(i, symbol, model, sign * qty, entry, "entry")
        costs += fill(j, symbol, model, -sign * qty, exit_, exit_reason)
        gross_pnl = sign * qty * (exit_ - entry)
        pnl = gross_pnl - costs
        trade_rows.append(
            {
                "symbol": symbol,
                "model": model,
                "side": side,
                "entry_ts": ts[i],
                "exit_ts": ts[j],
                "qty": qty,
                "entry_price_usd": entry,
                "exit_price_usd": exit_,
                "gross_pnl_usd": gross_pnl,
                "costs_usd": costs,
                "pnl_usd": pnl,
                "return_pct": pnl / (qty * entry),
                "regime": regime[i],
                "exit_reason": exit_reason,
                "bars_held": j - i,
            }
        )
        realised[j:] += pnl
        gross[i:j] += qty * entry
        net[i:j] += sign * qty * entry

    # one position still open at the end: an entry fill without a round trip
    open_qty, open_price = 50.0, 100.0
    open_cost = fill(n_bars - 2, str(symbols[0]), str(models[0]), open_qty, open_price, "entry")
    realised[n_bars - 2 :] -= open_cost
    gross[n_bars - 2 :] += open_qty * open_price
    net[n_bars - 2 :] += open_qty * open_price

    bench_steps = rng.normal(0.0003, 0.004, n_bars)
    bench_steps[0] = 0.0
    benchmark = initial_cash_usd * np.cumprod(1.0 + bench_steps)
    noise = np.cumsum(0.5 * bench_steps * initial_cash_usd + rng.normal(0, 150.0, n_bars))
    noise -= noise[0] + np.linspace(0.0, 1.0, n_bars) * (
        noise[-1] - noise[0]
    )  # pinned at both ends
    equity = initial_cash_usd + realised + noise
    equity_frame = pl.DataFrame(
        {
            "ts": ts,
            "equity_usd": equity,
            "cash_usd": equity - net,
            "gross_exposure_usd": gross,
            "net_exposure_usd": net,
            "benchmark_equity_usd": benchmark,
            "regime": regime,
        },
        schema=EQUITY_COLUMNS,
    )
    fills = pl.DataFrame(fill_rows, schema=FILLS_COLUMNS, orient="row").sort("ts")
    trades = pl.DataFrame(trade_rows, schema=TRADES_COLUMNS, orient="row").sort("exit_ts")
    return BacktestFrames(equity=equity_frame, fills=fills, trades=trades)


def equity_from_daily_returns(
    returns: Sequence[float] | np.ndarray,
    benchmark_returns: Sequence[float] | np.ndarray | None = None,
    *,
    initial_cash_usd: float = 100_000.0,
    regimes: Sequence[str] | None = None,
    start: date = KIT_START,
) -> pl.DataFrame:
    """One bar per session close over ``len(returns) + 1`` sessions; the first holds the initial
    cash, so ``daily_returns`` gives back ``returns`` (and ``benchmark_returns``, default 0)."""
    r = np.asarray(returns, dtype=np.float64)
    b = np.zeros_like(r) if benchmark_returns is None else np.asarray(benchmark_returns, np.float64)
    n = r.size + 1
    closes = sessions(n, start)["close_ts"]
    equity = initial_cash_usd * np.concatenate(([1.0], np.cumprod(1.0 + r)))
    bench = initial_cash_usd * np.concatenate(([1.0], np.cumprod(1.0 + b)))
    return pl.DataFrame(
        {
            "ts": closes,
            "equity_usd": equity,
            "cash_usd": equity,
            "gross_exposure_usd": np.zeros(n),
            "net_exposure_usd": np.zeros(n),
            "benchmark_equity_usd": bench,
            "regime": list(regimes) if regimes is not None else ["bull"] * n,
        },
        schema=EQUITY_COLUMNS,
    )


def trades_with_pnls(pnls_usd: Sequence[float], *, start: date = KIT_START) -> pl.DataFrame:
    """Round trips with the given net P&L (no costs), one per session, alternating side."""
    closes = sessions(len(pnls_usd) + 1, start)["close_ts"].to_list()
    rows = [
        {
            "symbol": "AAA",
            "model": "m",
            "side": "long" if k % 2 == 0 else "short",
            "entry_ts": closes[k],
            "exit_ts": closes[k + 1],
            "qty": 100.0,
            "entry_price_usd": 100.0,
            "exit_price_usd": 100.0 + (pnl / 100.0 if k % 2 == 0 else -pnl / 100.0),
            "gross_pnl_usd": pnl,
            "costs_usd": 0.0,
            "pnl_usd": pnl,
            "return_pct": pnl / 10_000.0,
            "regime": "bull",
            "exit_reason": "exit",
            "bars_held": 1,
        }
        for k, pnl in enumerate(pnls_usd)
    ]
    return pl.DataFrame(rows, schema=TRADES_COLUMNS, orient="row")


def empty_fills() -> pl.DataFrame:
    return pl.DataFrame(schema=FILLS_COLUMNS)


def empty_trades() -> pl.DataFrame:
    return pl.DataFrame(schema=TRADES_COLUMNS)
