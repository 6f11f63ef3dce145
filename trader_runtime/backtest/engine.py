"""The reference backtest: the decision core driven bar by bar with orders, fills, positions, cash.

Per bar instant ``t`` of a ``MarketGrid``:
1. at the open: the child orders sent at ``t - 1``'s close fill through the cost model
   (``trader_runtime.execution``), against one cash balance, symbols in column order;
2. at the close: positions are marked, the decision core (``trader_runtime.decision``) sees the
   bar and returns new targets, which become parent orders fixed in shares at this close
   (replacing any working one of that symbol), and each working parent sends its next child
   through the risk checks (``trader_runtime.trading``).

Deterministic: no randomness, no clock, no dict-order dependence. Fills are stamped with the bar
they filled in (its close instant ``ts``); their reference price is that bar's open.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from trader_runtime.backtest.grid import MarketGrid
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.core import BarSnapshot
from trader_runtime.execution.fills import simulate_fill
from trader_runtime.trading.orders import ChildOrder
from trader_runtime.trading.trader import Policy, Trader

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Frames documented in ``docs/ARCHITECTURE.md`` (Backtest): ``equity`` per bar, ``fills``,
    ``trades`` (round trips) and ``decisions`` (one row per target change)."""

    model: str
    equity: pl.DataFrame
    fills: pl.DataFrame
    trades: pl.DataFrame
    decisions: pl.DataFrame
    initial_cash_usd: float

    @property
    def final_equity_usd(self) -> float:
        return float(self.equity["equity_usd"][-1]) if self.equity.height else self.initial_cash_usd


class Backtest:
    """One run of the decision core over a grid; ``run()`` returns the ``BacktestResult``.

    The ``Trader`` (``trader_runtime.trading``) decides, sizes, checks and books; this loop only
    plays the market: each child sent at a close fills at the next bar's open through
    ``execution.fills.simulate_fill``, the paper broker's own fill model."""

    def __init__(
        self,
        grid: MarketGrid,
        config: TradingConfig,
        model: str = "",
        policy: Policy | None = None,
    ) -> None:
        self.grid = grid
        self.config = config
        self.model = model
        self.trader = Trader(grid.symbols, config, model=model, policy=policy)
        self._ts_us = grid.ts.astype("datetime64[us]").astype(np.int64).tolist()

    def _execute(self, t: int, working: list[ChildOrder]) -> None:
        g, trader, cfg = self.grid, self.trader, self.config
        regime = g.regime(t).value
        for child in working:
            j = child.j
            fill = simulate_fill(
                child.qty,
                float(g.open[t, j]),
                float(g.volume[t, j]),
                costs=cfg.costs,
                fractional_shares=cfg.execution.fractional_shares,
                daily_vol=float(g.daily_vol[t, j]),
                adv_shares=float(g.adv_shares[t, j]),
            )
            if fill is not None:
                trader.book_fill(t, self._ts_us[t], child, fill, regime)
            trader.child_done(child, 0.0 if fill is None else fill.qty)

    def _horizon(self, start: int, slices: int) -> FloatArray:
        """Expected volume of bars ``start .. start + slices - 1`` (NaN past the grid's end)."""
        rows = self.grid.expected_volume[start : start + slices]
        if rows.shape[0] == slices:
            return rows
        pad = np.full((slices - rows.shape[0], rows.shape[1]), np.nan)
        return np.vstack([rows, pad])

    def _snapshot(self, t: int) -> BarSnapshot:
        g = self.grid
        return BarSnapshot(
            bar_index=t,
            close=g.close[t],
            high=g.high[t],
            low=g.low[t],
            probability=g.probability[t],
            trends=g.trends[t],
            applicable=g.applicable,
            regime=g.regime(t),
        )

    def run(self) -> BacktestResult:
        g, trader = self.grid, self.trader
        book = trader.book
        n_bars = g.n_bars
        slices = self.config.execution.slices
        equity = np.empty(n_bars)
        cash = np.empty(n_bars)
        gross = np.empty(n_bars)
        net = np.empty(n_bars)
        working: list[ChildOrder] = []
        for t in range(n_bars):
            ts_us = self._ts_us[t]
            self._execute(t, working)
            equity[t] = trader.mark(ts_us, g.close[t])
            held = book.holdings_usd()
            cash[t] = book.cash
            gross[t] = float(np.abs(held).sum())
            net[t] = float(held.sum())
            trader.decide(ts_us, self._snapshot(t))
            working = trader.children(t, ts_us, partial(self._horizon, t + 1, slices), equity[t])
        return self._result(equity, cash, gross, net)

    def _result(
        self, equity: FloatArray, cash: FloatArray, gross: FloatArray, net: FloatArray
    ) -> BacktestResult:
        g, trader = self.grid, self.trader
        ts = pl.Series("ts", g.ts).cast(pl.Datetime("us", "UTC"))
        names = [r.value for r in _regimes(g)]
        frame = pl.DataFrame(
            {
                "ts": ts,
                "equity_usd": equity,
                "cash_usd": cash,
                "gross_exposure_usd": gross,
                "net_exposure_usd": net,
                "benchmark_equity_usd": buy_and_hold(g, self.config.initial_cash_usd),
                "regime": names,
            }
        )
        return BacktestResult(
            model=self.model,
            equity=frame,
            fills=_frame(trader.ledger.fills, FILL_SCHEMA),
            trades=_frame(trader.ledger.trades, TRADE_SCHEMA),
            decisions=_frame(trader.decisions, DECISION_SCHEMA),
            initial_cash_usd=self.config.initial_cash_usd,
        )


def _regimes(g: MarketGrid) -> list[Any]:
    return [g.regime(t) for t in range(g.n_bars)]


def buy_and_hold(grid: MarketGrid, initial_cash_usd: float) -> FloatArray:
    """Equal-weight buy-and-hold of the grid's symbols from their first close (no costs)."""
    close = grid.close
    filled = pl.DataFrame(close).select(pl.all().fill_nan(None).forward_fill()).to_numpy()
    first = filled[np.argmax(np.isfinite(filled), axis=0), np.arange(filled.shape[1])]
    valid = np.isfinite(first) & (first > 0)
    if not valid.any():
        return np.full(close.shape[0], initial_cash_usd)
    growth = np.where(np.isfinite(filled[:, valid]), filled[:, valid] / first[valid], 1.0)
    return np.asarray(initial_cash_usd * growth.mean(axis=1), dtype=np.float64)


_TS = pl.Datetime("us", "UTC")
FILL_SCHEMA: dict[str, Any] = {
    "ts": _TS,
    "symbol": pl.String,
    "model": pl.String,
    "qty": pl.Float64,
    "price_usd": pl.Float64,
    "reference_usd": pl.Float64,
    "notional_usd": pl.Float64,
    "commission_usd": pl.Float64,
    "spread_cost_usd": pl.Float64,
    "impact_cost_usd": pl.Float64,
    "reason": pl.String,
}
TRADE_SCHEMA: dict[str, Any] = {
    "symbol": pl.String,
    "model": pl.String,
    "side": pl.String,
    "entry_ts": _TS,
    "exit_ts": _TS,
    "qty": pl.Float64,
    "entry_price_usd": pl.Float64,
    "exit_price_usd": pl.Float64,
    "gross_pnl_usd": pl.Float64,
    "costs_usd": pl.Float64,
    "pnl_usd": pl.Float64,
    "return_pct": pl.Float64,
    "regime": pl.String,
    "exit_reason": pl.String,
    "bars_held": pl.Int64,
}
DECISION_SCHEMA: dict[str, Any] = {
    "ts": _TS,
    "symbol": pl.String,
    "model": pl.String,
    "regime": pl.String,
    "probability": pl.Float64,
    "edge": pl.Float64,
    "target_weight": pl.Float64,
    "reason": pl.String,
}


def _frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=schema)
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        pl.from_epoch(c, time_unit="us").dt.replace_time_zone("UTC")
        if d == _TS
        else pl.col(c).cast(d)
        for c, d in schema.items()
    ).select(list(schema))


def run_backtest(
    grid: MarketGrid, config: TradingConfig, model: str = "", policy: Policy | None = None
) -> BacktestResult:
    """The reference backtest of ``model``'s probabilities in ``grid`` under ``config`` (or of
    ``policy``'s decisions)."""
    return Backtest(grid, config, model, policy).run()
