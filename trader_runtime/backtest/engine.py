"""The reference backtest: the decision core driven bar by bar with orders, fills, positions, cash.

Per bar instant ``t`` of a ``MarketGrid``:
1. at the open: working orders (decided at ``t - 1`` or earlier) fill child by child through the
   cost model (``trader_runtime.execution``), against one cash balance, symbols in column order;
2. at the close: positions are marked, and the decision core (``trader_runtime.decision``) sees
   the bar and returns new targets, which replace any working order of that symbol.

Deterministic: no randomness, no clock, no dict-order dependence. Fills are stamped with the bar
they filled in (its close instant ``ts``); their reference price is that bar's open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from trader_runtime.backtest.grid import MarketGrid
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.core import BarSnapshot, Decision, DecisionCore, PortfolioView
from trader_runtime.execution.costs import Fill, participation_limited, shares_for_weight
from trader_runtime.execution.schedules import child_schedule

FloatArray = npt.NDArray[np.float64]


class Policy(Protocol):
    """What decides: the decision core, or a fixed schedule of weights (parity tests, benchmarks)."""

    def step(self, bar: BarSnapshot, book: PortfolioView) -> Decision: ...


@dataclass(slots=True)
class _Order:
    """A working parent order: a target weight, fixed in shares at its first open."""

    weight: float
    reason: str
    target: float = math.nan
    children: FloatArray | None = None
    child: int = 0
    carry: float = 0.0


@dataclass(slots=True)
class _Trade:
    """An open round trip: its cash flows at fill and at reference prices."""

    side: float
    entry_ts: Any
    entry_bar: int
    regime: str
    max_qty: float = 0.0
    entry_qty: float = 0.0
    entry_value: float = 0.0
    exit_qty: float = 0.0
    exit_value: float = 0.0
    cash_flow: float = 0.0
    reference_flow: float = 0.0


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


@dataclass(slots=True)
class _Book:
    n: int
    cash: float
    position: FloatArray = field(init=False)
    avg_entry: FloatArray = field(init=False)
    mark: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.position = np.zeros(self.n)
        self.avg_entry = np.full(self.n, np.nan)
        self.mark = np.full(self.n, np.nan)

    def value_at(self, prices: FloatArray) -> float:
        px = np.where(prices > 0.0, prices, self.mark)
        held = self.position != 0.0
        return self.cash + float(np.sum(self.position[held] * px[held]))


class Backtest:
    """One run of the decision core over a grid; ``run()`` returns the ``BacktestResult``."""

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
        n = len(grid.symbols)
        self.core: Policy = policy if policy is not None else DecisionCore(n, config)
        self.book = _Book(n, config.initial_cash_usd)
        self.orders: list[_Order | None] = [None] * n
        self.trades: list[_Trade | None] = [None] * n
        self._fills: list[dict[str, Any]] = []
        self._trades: list[dict[str, Any]] = []
        self._decisions: list[dict[str, Any]] = []
        self._ts_us = grid.ts.astype("datetime64[us]").astype(np.int64).tolist()

    # -- execution ---------------------------------------------------------------------------

    def _child_quantity(self, j: int, t: int, order: _Order) -> float:
        g, execution = self.grid, self.config.execution
        remaining = order.target - self.book.position[j]
        if order.children is None:
            horizon = g.expected_volume[t : t + execution.slices, j]
            order.children = child_schedule(remaining, execution, horizon)
        if order.child < len(order.children):
            wanted = order.children[order.child] + order.carry
            order.child += 1
        else:
            wanted = remaining
        # never beyond the target, whatever the rounding of the schedule
        return float(np.clip(wanted, min(0.0, remaining), max(0.0, remaining)))

    def _execute(self, t: int) -> None:
        g, book, costs = self.grid, self.book, self.config.costs
        fractional = self.config.execution.fractional_shares
        opens = g.open[t]
        equity_open = book.value_at(opens)
        for j, order in enumerate(self.orders):
            price = float(opens[j])
            if order is None or not price > 0.0:
                continue
            if math.isnan(order.target):
                order.target = shares_for_weight(order.weight, equity_open, price, fractional)
            wanted = self._child_quantity(j, t, order)
            qty = participation_limited(wanted, float(g.volume[t, j]), costs.cap, fractional)
            order.carry = wanted - qty
            if qty == order.target - book.position[j]:
                self.orders[j] = None  # the target is reached with this fill
            if qty == 0.0:
                continue
            fill = costs.fill(
                qty,
                price,
                daily_vol=float(g.daily_vol[t, j]),
                adv_shares=float(g.adv_shares[t, j]),
            )
            self._book_fill(t, j, fill, order.reason)

    def _book_fill(self, t: int, j: int, fill: Fill, reason: str) -> None:
        book, g = self.book, self.grid
        book.cash += fill.cash_flow_usd
        old = book.position[j]
        new = old + fill.qty
        self._fills.append(
            {
                "ts": self._ts_us[t],
                "symbol": g.symbols[j],
                "model": self.model,
                "qty": fill.qty,
                "price_usd": fill.price_usd,
                "reference_usd": fill.reference_usd,
                "notional_usd": fill.notional_usd,
                "commission_usd": fill.commission_usd,
                "spread_cost_usd": fill.spread_cost_usd,
                "impact_cost_usd": fill.impact_cost_usd,
                "reason": reason,
            }
        )
        closing = (
            0.0 if old == 0.0 or np.sign(fill.qty) == np.sign(old) else min(abs(fill.qty), abs(old))
        )
        opening = abs(fill.qty) - closing
        if closing > 0.0:
            self._trade_flow(j, fill, closing / abs(fill.qty), exiting=True)
            if new == 0.0 or np.sign(new) != np.sign(old):
                self._close_trade(t, j, "reversal" if reason == "entry" else reason)
        if opening > 0.0:
            if self.trades[j] is None:
                self.trades[j] = _Trade(
                    side=float(np.sign(fill.qty)),
                    entry_ts=self._ts_us[t],
                    entry_bar=t,
                    regime=self.grid.regime(t).value,
                )
                book.avg_entry[j] = fill.price_usd
            else:
                held = abs(old)
                book.avg_entry[j] = (book.avg_entry[j] * held + fill.price_usd * opening) / (
                    held + opening
                )
            self._trade_flow(j, fill, opening / abs(fill.qty), exiting=False)
        book.position[j] = new
        if new == 0.0:
            book.avg_entry[j] = np.nan
        trade = self.trades[j]
        if trade is not None:
            trade.max_qty = max(trade.max_qty, abs(new))

    def _trade_flow(self, j: int, fill: Fill, share: float, *, exiting: bool) -> None:
        trade = self.trades[j]
        if trade is None:  # pragma: no cover - a closing fill always has an open trade
            raise RuntimeError("closing fill without an open trade")
        qty = abs(fill.qty) * share
        trade.cash_flow += fill.cash_flow_usd * share
        trade.reference_flow += -fill.qty * share * fill.reference_usd
        if exiting:
            trade.exit_qty += qty
            trade.exit_value += qty * fill.price_usd
        else:
            trade.entry_qty += qty
            trade.entry_value += qty * fill.price_usd

    def _close_trade(self, t: int, j: int, reason: str) -> None:
        trade = self.trades[j]
        if trade is None:  # pragma: no cover
            return
        entry_price = trade.entry_value / trade.entry_qty
        self._trades.append(
            {
                "symbol": self.grid.symbols[j],
                "model": self.model,
                "side": "long" if trade.side > 0 else "short",
                "entry_ts": trade.entry_ts,
                "exit_ts": self._ts_us[t],
                "qty": trade.max_qty,
                "entry_price_usd": entry_price,
                "exit_price_usd": trade.exit_value / trade.exit_qty,
                "gross_pnl_usd": trade.reference_flow,
                "costs_usd": trade.reference_flow - trade.cash_flow,
                "pnl_usd": trade.cash_flow,
                "return_pct": trade.cash_flow / trade.entry_value,
                "regime": trade.regime,
                "exit_reason": reason,
                "bars_held": t - trade.entry_bar,
            }
        )
        self.trades[j] = None

    # -- decisions ---------------------------------------------------------------------------

    def _committed(self, equity_usd: float) -> FloatArray:
        """Positions, with each working order's target in place of its symbol's position (an
        order not yet converted to shares counts at ``weight * equity / mark``)."""
        committed = self.book.position.copy()
        for j, order in enumerate(self.orders):
            if order is None:
                continue
            if not math.isnan(order.target):
                committed[j] = order.target
            else:
                price = self.book.mark[j]
                committed[j] = order.weight * equity_usd / price if price > 0 else 0.0
        return committed

    def _decide(self, t: int) -> Decision:
        g, book = self.grid, self.book
        bar = BarSnapshot(
            bar_index=t,
            close=g.close[t],
            high=g.high[t],
            low=g.low[t],
            probability=g.probability[t],
            trends=g.trends[t],
            applicable=g.applicable,
            regime=g.regime(t),
        )
        equity = book.value_at(g.close[t])
        view = PortfolioView(
            equity_usd=equity,
            committed_shares=self._committed(equity),
            position_shares=book.position.copy(),
            avg_entry_usd=book.avg_entry.copy(),
        )
        decision = self.core.step(bar, view)
        for j in decision.changed:
            weight = float(decision.target_weights[j])
            reason = decision.reasons[j] or "rebalance"
            self.orders[j] = _Order(weight=weight, reason=reason)
            self._decisions.append(
                {
                    "ts": self._ts_us[t],
                    "symbol": g.symbols[j],
                    "model": self.model,
                    "regime": decision.regime.value,
                    "probability": float(g.probability[t, j]),
                    "edge": float(decision.edge[j]),
                    "target_weight": weight,
                    "reason": reason,
                }
            )
        return decision

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> BacktestResult:
        g, book = self.grid, self.book
        n_bars = g.n_bars
        equity = np.empty(n_bars)
        cash = np.empty(n_bars)
        gross = np.empty(n_bars)
        net = np.empty(n_bars)
        for t in range(n_bars):
            if t > 0:
                self._execute(t)
            closes = g.close[t]
            book.mark = np.where(closes > 0.0, closes, book.mark)
            held = np.where(book.position != 0.0, book.position * book.mark, 0.0)
            equity[t] = book.cash + float(held.sum())
            cash[t] = book.cash
            gross[t] = float(np.abs(held).sum())
            net[t] = float(held.sum())
            self._decide(t)
        return self._result(equity, cash, gross, net)

    def _result(
        self, equity: FloatArray, cash: FloatArray, gross: FloatArray, net: FloatArray
    ) -> BacktestResult:
        g = self.grid
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
            fills=_frame(self._fills, FILL_SCHEMA),
            trades=_frame(self._trades, TRADE_SCHEMA),
            decisions=_frame(self._decisions, DECISION_SCHEMA),
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
