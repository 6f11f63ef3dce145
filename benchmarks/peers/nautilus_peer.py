"""The strategy in nautilus-trader: one ``BacktestEngine`` (one cash account) per symbol.

Nautilus fills a market order submitted in ``on_bar`` at that bar's close, so "decided at the
close, traded at the next open" needs the open as its own event. Each bar becomes two events:

- a ``QuoteTick`` 1 ns after the previous bar's close (the instant the bar opens) with
  bid/ask = open x (1 -/+ half_spread): a pending signal change is traded there, and a market order
  fills at the ask (buy) or bid (sell), which is exactly our fill price ``open x (1 +/- half_spread)``;
- the ``Bar`` itself at its close, which updates the two ``SimpleMovingAverage`` indicators; a
  changed signal waits for the next open. ``bar_execution=False``: bars do not move the book.

Sells are ``reduce_only`` (they only ever reduce the long position): otherwise nautilus's risk
engine checks a cash account's SELL notional against the free balance and denies exits.

Other alignments: commission is the instrument's ``taker_fee`` (a fraction of the fill's notional,
``MakerTakerFeeModel``); whole shares (size precision 0); prices with 9 decimals. The account is
kept in ``USDB``, a USD-like currency with 9 decimals instead of 2: with cents, nautilus rounds
every commission and every cash movement to 0.01, which over thousands of fills moves the final
equity by more than the 1e-6 the comparison asks for (measured on two symbol-years: 8e-7 on the
sum, 3e-6 on one symbol, against 1e-10 with 9 decimals); our engine, vectorbt and backtrader keep
cash as a float. ``bars_per_s`` counts bars, so nautilus processes two events per counted bar.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal

import nautilus_trader
import numpy as np
from nautilus_trader.backtest.engine import BacktestEngine
from nautilus_trader.config import BacktestEngineConfig, LoggingConfig, StrategyConfig
from nautilus_trader.indicators import SimpleMovingAverage
from nautilus_trader.model.data import Bar, BarType, QuoteTick
from nautilus_trader.model.enums import AccountType, CurrencyType, OmsType, OrderSide
from nautilus_trader.model.events import OrderDenied, OrderFilled, OrderRejected
from nautilus_trader.model.identifiers import InstrumentId, Symbol, TraderId, Venue
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import Currency, Money, Price, Quantity
from nautilus_trader.trading.strategy import Strategy

from benchmarks.peers import BAR_NS, BarPanel, EngineRun, StrategySpec

ENGINE = "nautilus-trader"
PRICE_PRECISION = 9
CASH_PRECISION = 9
BOOK_SIZE_SHARES = 1e9  # top-of-book size far above any order: no partial fills
VENUE = Venue("SIM")
CASH = Currency("USDB", CASH_PRECISION, 0, "USD with 9 decimals (benchmark)", CurrencyType.FIAT)


class SmaCrossTargetWeightConfig(StrategyConfig, frozen=True):  # type: ignore[misc,call-arg,unused-ignore]
    instrument_id: InstrumentId
    bar_type: BarType
    fast_bars: int = 10
    slow_bars: int = 50
    weight: float = 0.5


class SmaCrossTargetWeight(Strategy):  # type: ignore[misc,unused-ignore]
    """A signal change seen on a bar (at its close) is traded on the next open quote."""

    def __init__(self, config: SmaCrossTargetWeightConfig) -> None:
        super().__init__(config)
        self.fast = SimpleMovingAverage(config.fast_bars)
        self.slow = SimpleMovingAverage(config.slow_bars)
        self.signal = 0.0  # flat before the first bar
        self.target_weight: float | None = None  # a changed signal waiting for the next open
        self.n_fills = 0
        self.refusals: list[str] = []

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.config.instrument_id)
        self.register_indicator_for_bars(self.config.bar_type, self.fast)
        self.register_indicator_for_bars(self.config.bar_type, self.slow)
        self.subscribe_bars(self.config.bar_type)
        self.subscribe_quote_ticks(self.config.instrument_id)

    def on_bar(self, bar: Bar) -> None:
        crossed = self.slow.initialized and self.fast.value > self.slow.value
        signal = self.config.weight if crossed else 0.0
        if signal != self.signal:
            self.signal = self.target_weight = signal

    def on_quote_tick(self, tick: QuoteTick) -> None:
        if self.target_weight is None:
            return
        weight, self.target_weight = self.target_weight, None
        open_usd = 0.5 * (tick.bid_price.as_double() + tick.ask_price.as_double())
        instrument_id = self.config.instrument_id
        cash_usd = self.portfolio.account(VENUE).balance_total(CASH).as_double()
        position = float(self.portfolio.net_position(instrument_id))
        equity_usd = cash_usd + position * open_usd
        shares = math.trunc(weight * equity_usd / open_usd - position)
        if shares == 0:
            return
        # sells only ever reduce the long position; without reduce_only, nautilus's risk engine
        # checks a cash account's SELL notional against the free balance and denies it
        side = OrderSide.BUY if shares > 0 else OrderSide.SELL
        order = self.order_factory.market(
            instrument_id, side, Quantity(abs(shares), 0), reduce_only=shares < 0
        )
        self.submit_order(order)

    def on_order_filled(self, event: OrderFilled) -> None:
        self.n_fills += 1

    def on_order_denied(self, event: OrderDenied) -> None:
        self.refusals.append(f"denied: {event.reason}")

    def on_order_rejected(self, event: OrderRejected) -> None:
        self.refusals.append(f"rejected: {event.reason}")


def _instrument(symbol: str, spec: StrategySpec) -> Equity:
    rate = Decimal(repr(spec.commission_rate))
    return Equity(
        instrument_id=InstrumentId(Symbol(symbol), VENUE),
        raw_symbol=Symbol(symbol),
        currency=CASH,
        price_precision=PRICE_PRECISION,
        price_increment=Price(10.0**-PRICE_PRECISION, PRICE_PRECISION),
        lot_size=Quantity(1, 0),
        ts_event=0,
        ts_init=0,
        maker_fee=rate,
        taker_fee=rate,
    )


def _engine(panel: BarPanel, column: int, spec: StrategySpec) -> tuple[BacktestEngine, Strategy]:
    """An engine loaded with one symbol's events and the strategy (not timed)."""
    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("BENCH-001"),
            logging=LoggingConfig(bypass_logging=True),
            run_analysis=False,
        )
    )
    engine.add_venue(
        venue=VENUE,
        oms_type=OmsType.NETTING,
        account_type=AccountType.CASH,
        base_currency=CASH,
        starting_balances=[Money(spec.initial_cash_usd, CASH)],
        bar_execution=False,
    )
    instrument = _instrument(panel.symbols[column], spec)
    engine.add_instrument(instrument)
    bar_type = BarType.from_str(f"{instrument.id}-1-MINUTE-LAST-EXTERNAL")
    ts_close = panel.ts_close_ns.astype(np.uint64)
    ts_open = ts_close - np.uint64(BAR_NS) + np.uint64(1)
    open_usd = np.ascontiguousarray(panel.open_usd[:, column])
    size = np.full_like(open_usd, BOOK_SIZE_SHARES)
    quotes = QuoteTick.from_raw_arrays_to_list(
        instrument.id,
        PRICE_PRECISION,
        0,
        open_usd * (1.0 - spec.slippage_rate),
        open_usd * (1.0 + spec.slippage_rate),
        size,
        size,
        ts_open,
        ts_open,
    )
    bars = Bar.from_raw_arrays_to_list(
        bar_type,
        PRICE_PRECISION,
        0,
        open_usd,
        np.ascontiguousarray(panel.high_usd[:, column]),
        np.ascontiguousarray(panel.low_usd[:, column]),
        np.ascontiguousarray(panel.close_usd[:, column]),
        np.ascontiguousarray(np.round(panel.volume[:, column])),
        ts_close,
        ts_close,
    )
    engine.add_data(quotes)
    engine.add_data(bars)
    strategy = SmaCrossTargetWeight(
        SmaCrossTargetWeightConfig(
            instrument_id=instrument.id,
            bar_type=bar_type,
            fast_bars=spec.fast_bars,
            slow_bars=spec.slow_bars,
            weight=spec.weight,
        )
    )
    engine.add_strategy(strategy)
    return engine, strategy


def run(panel: BarPanel, spec: StrategySpec) -> EngineRun:
    """One timed ``BacktestEngine.run()`` per symbol; building the events, the engine and adding
    the data (which sorts it) are not timed."""
    Currency.register(CASH, overwrite=True)  # nautilus resolves currencies by code
    wall_s = 0.0
    equities: list[float] = []
    n_fills = 0
    for column in range(len(panel.symbols)):
        engine, strategy = _engine(panel, column, spec)
        started = time.perf_counter()
        engine.run()
        wall_s += time.perf_counter() - started
        if strategy.refusals:
            raise RuntimeError(
                f"nautilus refused {len(strategy.refusals)} orders, first: {strategy.refusals[0]}"
            )
        instrument_id = strategy.config.instrument_id
        cash_usd = engine.portfolio.account(VENUE).balance_total(CASH).as_double()
        position = float(engine.portfolio.net_position(instrument_id))
        equities.append(cash_usd + position * float(panel.close_usd[-1, column]))
        n_fills += strategy.n_fills
        engine.dispose()
    return EngineRun(
        engine=ENGINE,
        version=nautilus_trader.__version__,
        wall_s=wall_s,
        total_bars=panel.total_bars,
        final_equity_usd=tuple(equities),
        n_fills=n_fills,
        timed="BacktestEngine.run() per symbol (2 events per bar: open quote + bar), one run",
    )
