"""Small seeded market grids for decision-core and backtest tests."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from trader_runtime.backtest.grid import MarketGrid
from trader_runtime.market.calendar import TradingCalendar


def random_grid(
    n_bars: int = 2000,
    n_symbols: int = 4,
    seed: int = 0,
    *,
    n_timeframes: int = 3,
    missing: float = 0.0,
    regime_codes: np.ndarray | None = None,
) -> MarketGrid:
    """A random-walk market with noisy probabilities, trends and volumes; ``missing`` is the
    share of bars a symbol lacks (NaN prices)."""
    rng = np.random.default_rng(seed)
    shape = (n_bars, n_symbols)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, shape), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0.0, 2e-4, shape))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 1e-3, shape))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 1e-3, shape))
    volume = rng.uniform(2e3, 5e4, shape)
    probability = np.clip(0.45 + rng.normal(0.0, 0.05, shape), 0.0, 1.0)
    if missing > 0.0:
        gone = rng.random(shape) < missing
        for array in (open_, high, low, close, volume, probability):
            array[gone] = np.nan
    closes = TradingCalendar(date(2024, 1, 2), date(2024, 12, 31)).minute_bar_closes()
    ts = closes[:n_bars].cast(pl.Datetime("us")).to_numpy()  # minutes of real sessions, UTC
    codes = rng.integers(0, 5, n_bars) if regime_codes is None else regime_codes
    return MarketGrid(
        symbols=tuple(f"S{i}" for i in range(n_symbols)),
        ts=ts,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        probability=probability,
        trends=rng.normal(0.0, 1.0, (n_bars, n_symbols, n_timeframes)),
        applicable=np.ones((n_symbols, n_timeframes), dtype=bool),
        regime_codes=np.asarray(codes, dtype=np.int64),
        daily_vol=np.full(shape, 0.02),
        adv_shares=np.full(shape, 1e6),
        expected_volume=volume.copy(),
    )
