"""The book (cash, positions, average entry, marks) and its ledger of fills and round trips.

One implementation for the backtest and the live runtime: a fill is booked the same way whichever
broker or simulator produced it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from trader_runtime.execution.costs import Fill
from trader_runtime.trading import kernels

FloatArray = npt.NDArray[np.float64]


@dataclass(slots=True)
class Book:
    """Cash (USD), positions (shares), average entry prices (USD, NaN when flat) and the last
    marks (USD) of ``n`` symbols."""

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
        """Cash plus positions valued at ``prices`` (the last mark where a price is missing)."""
        return float(kernels.value_at(prices, self.mark, self.position, self.cash))

    def mark_to(self, closes: FloatArray) -> float:
        """Mark at the positive ``closes`` and return the equity (cash plus positions, USD)."""
        return float(kernels.mark_to(closes, self.mark, self.position, self.cash))

    def holdings_usd(self) -> FloatArray:
        """Signed market value of each position at the marks (0 where flat)."""
        return np.where(self.position != 0.0, self.position * self.mark, 0.0)


@dataclass(slots=True)
class _Trade:
    """An open round trip: its cash flows at fill and at reference prices."""

    side: float
    entry_ts: int
    entry_bar: int
    regime: str
    max_qty: float = 0.0
    entry_qty: float = 0.0
    entry_value: float = 0.0
    exit_qty: float = 0.0
    exit_value: float = 0.0
    cash_flow: float = 0.0
    reference_flow: float = 0.0


class Ledger:
    """Books fills into a ``Book`` and records them, with the round trips they open and close.

    ``fills`` and ``trades`` are row dicts in the schemas of ``backtest.engine`` (``FILL_SCHEMA``,
    ``TRADE_SCHEMA``); timestamps are epoch microseconds."""

    def __init__(self, symbols: tuple[str, ...], book: Book, model: str = "") -> None:
        self.symbols = symbols
        self.book = book
        self.model = model
        self.open_trades: list[_Trade | None] = [None] * len(symbols)
        self.fills: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []

    def book_fill(self, bar: int, ts_us: int, j: int, fill: Fill, reason: str, regime: str) -> None:
        """Apply ``fill`` of symbol ``j`` (bar index ``bar``, instant ``ts_us``) to the book."""
        book = self.book
        book.cash += fill.cash_flow_usd
        old = book.position[j]
        new = old + fill.qty
        self.fills.append(
            {
                "ts": ts_us,
                "symbol": self.symbols[j],
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
        closing = 0.0 if old == 0.0 or sign(fill.qty) == sign(old) else min(abs(fill.qty), abs(old))
        opening = abs(fill.qty) - closing
        if closing > 0.0:
            self._flow(j, fill, closing / abs(fill.qty), exiting=True)
            if new == 0.0 or sign(new) != sign(old):
                self._close(bar, ts_us, j, "reversal" if reason == "entry" else reason)
        if opening > 0.0:
            if self.open_trades[j] is None:
                self.open_trades[j] = _Trade(
                    side=sign(fill.qty), entry_ts=ts_us, entry_bar=bar, regime=regime
                )
            self._flow(j, fill, opening / abs(fill.qty), exiting=False)
        book.avg_entry[j] = average_entry(old, float(book.avg_entry[j]), fill.qty, fill.price_usd)
        book.position[j] = new
        trade = self.open_trades[j]
        if trade is not None:
            trade.max_qty = max(trade.max_qty, abs(new))

    def _flow(self, j: int, fill: Fill, share: float, *, exiting: bool) -> None:
        trade = self.open_trades[j]
        if trade is None:
            # a position the ledger did not open (carried in from the broker's account when a
            # session starts): its fills move the book and the cash, with no round trip to record
            return
        qty = abs(fill.qty) * share
        trade.cash_flow += fill.cash_flow_usd * share
        trade.reference_flow += -fill.qty * share * fill.reference_usd
        if exiting:
            trade.exit_qty += qty
            trade.exit_value += qty * fill.price_usd
        else:
            trade.entry_qty += qty
            trade.entry_value += qty * fill.price_usd

    def _close(self, bar: int, ts_us: int, j: int, reason: str) -> None:
        trade = self.open_trades[j]
        if trade is None:  # a carried-in position (see ``_flow``)
            return
        self.trades.append(
            {
                "symbol": self.symbols[j],
                "model": self.model,
                "side": "long" if trade.side > 0 else "short",
                "entry_ts": trade.entry_ts,
                "exit_ts": ts_us,
                "qty": trade.max_qty,
                "entry_price_usd": trade.entry_value / trade.entry_qty,
                "exit_price_usd": trade.exit_value / trade.exit_qty,
                "gross_pnl_usd": trade.reference_flow,
                "costs_usd": trade.reference_flow - trade.cash_flow,
                "pnl_usd": trade.cash_flow,
                "return_pct": trade.cash_flow / trade.entry_value,
                "regime": trade.regime,
                "exit_reason": reason,
                "bars_held": bar - trade.entry_bar,
            }
        )
        self.open_trades[j] = None


def average_entry(old_qty: float, old_avg_usd: float, fill_qty: float, price_usd: float) -> float:
    """A position's average entry price (USD) after a fill of ``fill_qty`` at ``price_usd``: a
    position opened or flipped enters at the fill price, one enlarged averages by shares, one
    reduced keeps its entry, a flat one has none (NaN). An unknown entry (NaN) stays unknown
    until the position is flat or flipped."""
    new = old_qty + fill_qty
    if new == 0.0:
        return math.nan
    if old_qty == 0.0 or sign(new) != sign(old_qty):
        return price_usd
    if sign(fill_qty) != sign(old_qty):
        return old_avg_usd
    held, opening = abs(old_qty), abs(fill_qty)
    return (old_avg_usd * held + price_usd * opening) / (held + opening)


def sign(x: float) -> float:
    """``np.sign`` of a float (1, -1, 0 for either zero, NaN) without a NumPy call."""
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0 if x == 0.0 else x
