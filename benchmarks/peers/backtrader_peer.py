"""The strategy in backtrader, one ``Cerebro`` (one portfolio) per symbol.

Alignment with our engine: cheat-on-open mode, so ``next_open`` of bar ``t + 1`` sees the new
bar's open before the broker fills, and a market order placed there fills at that open (backtrader's
default would fill at the next bar's open and size from the previous close). A signal change seen
in ``next`` at bar ``t``'s close is applied in ``next_open`` at ``t + 1``: shares = signal x
(cash + position x open) / open - position, truncated toward zero. Slippage: ``set_slippage_perc``
with ``slip_match=True, slip_out=True`` (otherwise backtrader caps the slipped price at the bar's
high/low, or refuses the fill). Commission: ``setcommission(commission=rate)`` (percentage of
the filled value, stock-like). No observers (``stdstats=False``).

The bars come through :class:`_ArrayFeed` (plain Python lists, datetimes already as backtrader's
day numbers) rather than ``bt.feeds.PandasData``, whose per-cell ``iloc`` reads would otherwise take
about 60% of the run: the benchmark times backtrader's engine, not pandas indexing.
"""

from __future__ import annotations

import math
import time
from typing import Any

import backtrader as bt

from benchmarks.peers import BarPanel, EngineRun, StrategySpec

ENGINE = "backtrader"
_EPOCH_DAY_NUMBER = 719_163.0  # bt.date2num(datetime(1970, 1, 1))
_NS_PER_DAY = 86_400e9


class _ArrayFeed(bt.feed.DataBase):  # type: ignore[misc,unused-ignore]
    """Bars from prepared Python lists: (day number, open, high, low, close, volume) per bar."""

    params = (("rows", ()),)

    def start(self) -> None:
        super().start()
        self._rows = iter(self.p.rows)

    def _load(self) -> bool:
        row = next(self._rows, None)
        if row is None:
            return False
        lines = self.lines
        lines.datetime[0], lines.open[0], lines.high[0], lines.low[0], lines.close[0] = row[:5]
        lines.volume[0] = row[5]
        lines.openinterest[0] = 0.0
        return True


class _SmaCrossTargetWeight(bt.Strategy):  # type: ignore[misc,unused-ignore]
    params = (("fast_bars", 10), ("slow_bars", 50), ("weight", 0.5))

    def __init__(self) -> None:
        self.fast = bt.indicators.SimpleMovingAverage(self.data.close, period=self.p.fast_bars)
        self.slow = bt.indicators.SimpleMovingAverage(self.data.close, period=self.p.slow_bars)
        self.signal = 0.0  # flat before the first bar
        self.target_weight: float | None = None  # a changed signal waiting for the next open
        self.n_fills = 0

    def next(self) -> None:
        signal = self.p.weight if self.fast[0] > self.slow[0] else 0.0
        if signal != self.signal:
            self.signal = self.target_weight = signal

    def next_open(self) -> None:
        if self.target_weight is None:
            return
        weight, self.target_weight = self.target_weight, None
        open_usd = self.data.open[0]
        position = self.position.size
        equity_usd = self.broker.get_cash() + position * open_usd
        shares = math.trunc(weight * equity_usd / open_usd - position)
        if shares > 0:
            self.buy(size=shares)
        elif shares < 0:
            self.sell(size=-shares)

    def notify_order(self, order: Any) -> None:
        if order.status == order.Completed:
            self.n_fills += 1
        elif order.status in (order.Canceled, order.Margin, order.Rejected):
            raise RuntimeError(f"backtrader refused an order: {order.getstatusname()}")


def _rows(panel: BarPanel, column: int) -> list[tuple[float, ...]]:
    day_numbers = _EPOCH_DAY_NUMBER + panel.ts_close_ns / _NS_PER_DAY
    return list(
        zip(
            day_numbers.tolist(),
            panel.open_usd[:, column].tolist(),
            panel.high_usd[:, column].tolist(),
            panel.low_usd[:, column].tolist(),
            panel.close_usd[:, column].tolist(),
            panel.volume[:, column].tolist(),
            strict=True,
        )
    )


def _cerebro(rows: list[tuple[float, ...]], spec: StrategySpec) -> bt.Cerebro:
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
    cerebro.adddata(_ArrayFeed(rows=rows))
    cerebro.addstrategy(
        _SmaCrossTargetWeight,
        fast_bars=spec.fast_bars,
        slow_bars=spec.slow_bars,
        weight=spec.weight,
    )
    cerebro.broker.set_cash(spec.initial_cash_usd)
    cerebro.broker.setcommission(commission=spec.commission_rate, stocklike=True)
    cerebro.broker.set_slippage_perc(
        spec.slippage_rate, slip_open=True, slip_limit=True, slip_match=True, slip_out=True
    )
    return cerebro


def run(panel: BarPanel, spec: StrategySpec) -> EngineRun:
    """One timed ``cerebro.run()`` per symbol (backtrader's feed preload, indicators, strategy and
    broker); building the row lists is not timed."""
    per_symbol = [_rows(panel, j) for j in range(len(panel.symbols))]
    wall_s = 0.0
    equities: list[float] = []
    n_fills = 0
    for rows in per_symbol:
        cerebro = _cerebro(rows, spec)
        started = time.perf_counter()
        (strategy,) = cerebro.run()
        wall_s += time.perf_counter() - started
        equities.append(float(cerebro.broker.getvalue()))
        n_fills += strategy.n_fills
    return EngineRun(
        engine=ENGINE,
        version=bt.__version__,
        wall_s=wall_s,
        total_bars=panel.total_bars,
        final_equity_usd=tuple(equities),
        n_fills=n_fills,
        timed="cerebro.run() per symbol (feed preload + indicators + strategy + broker), one run (data as Python lists)",
    )
