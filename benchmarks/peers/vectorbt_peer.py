"""The strategy in vectorbt: ``Portfolio.from_orders`` with target-percent orders at the open.

One column (and one independent portfolio) per symbol. Alignment with our engine:
``size_type="targetpercent"`` sizes the order from ``value = cash + position x val_price`` with
``val_price = np.inf`` (the order price, here the open), ``size_granularity=1`` truncates the
order toward zero to whole shares, ``slippage`` moves the fill price by the half-spread, ``fees``
is the commission as a fraction of the filled value. A signal change at bar ``t`` is an order at
bar ``t + 1``; NaN sizes (no order) elsewhere, so positions are held between changes.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import vectorbt as vbt

from benchmarks.peers import BarPanel, EngineRun, FloatArray, StrategySpec

ENGINE = "vectorbt"


def _frames(panel: BarPanel) -> tuple[pd.DataFrame, pd.DataFrame]:
    index = pd.DatetimeIndex(panel.ts_close_ns.astype("datetime64[ns]"), tz="UTC")
    columns = pd.Index(panel.symbols, name="symbol")
    return (
        pd.DataFrame(panel.open_usd, index=index, columns=columns),
        pd.DataFrame(panel.close_usd, index=index, columns=columns),
    )


def _simulate(open_df: pd.DataFrame, close_df: pd.DataFrame, spec: StrategySpec) -> vbt.Portfolio:
    fast = vbt.MA.run(close_df, spec.fast_bars, short_name="fast").ma.to_numpy()
    slow = vbt.MA.run(close_df, spec.slow_bars, short_name="slow").ma.to_numpy()
    signal: FloatArray = np.where(fast > slow, spec.weight, 0.0)  # NaN warm-up compares False
    before = np.vstack([np.zeros((1, signal.shape[1])), signal[:-1]])  # flat before the first bar
    orders = np.where(signal != before, signal, np.nan)
    size = np.full_like(orders, np.nan)
    size[1:] = orders[:-1]  # decided at bar t's close, placed at bar t + 1's open
    return vbt.Portfolio.from_orders(
        close=close_df,
        size=size,
        size_type="targetpercent",
        price=open_df,
        val_price=np.inf,
        fees=spec.commission_rate,
        slippage=spec.slippage_rate,
        size_granularity=1.0,
        init_cash=spec.initial_cash_usd,
        cash_sharing=False,
        direction="longonly",
        freq="1min",
    )


def run(panel: BarPanel, spec: StrategySpec, *, repeats: int = 3) -> EngineRun:
    """Best of ``repeats`` timed runs (indicators + portfolio simulation) after a warm-up run that
    compiles vectorbt's Numba functions."""
    open_df, close_df = _frames(panel)
    warm = 200 if panel.n_bars > 200 else panel.n_bars
    _simulate(open_df.iloc[:warm], close_df.iloc[:warm], spec)
    best_s = float("inf")
    portfolio = None
    for _ in range(repeats):
        started = time.perf_counter()
        portfolio = _simulate(open_df, close_df, spec)
        best_s = min(best_s, time.perf_counter() - started)
    if portfolio is None:
        raise ValueError("repeats must be >= 1")
    final_value = portfolio.final_value()
    return EngineRun(
        engine=ENGINE,
        version=vbt.__version__,
        wall_s=best_s,
        total_bars=panel.total_bars,
        final_equity_usd=tuple(float(v) for v in np.atleast_1d(final_value.to_numpy())),
        n_fills=int(portfolio.orders.count().sum()),
        timed=f"vbt.MA (fast, slow) + Portfolio.from_orders, best of {repeats}, after a Numba warm-up",
    )
