"""The decision core as a whole: whatever the bar, the book and the regime, targets respect caps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.core import BarSnapshot, DecisionCore, PortfolioView
from trader_runtime.market.regimes import Regime

N, K = 5, 3
prices = arrays(np.float64, N, elements=st.floats(0.01, 1e5) | st.just(float("nan")))
probabilities = arrays(np.float64, N, elements=st.floats(0, 1) | st.just(float("nan")))
holdings = arrays(np.float64, N, elements=st.integers(-100_000, 100_000).map(float))


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(prices, probabilities, st.sampled_from(list(Regime))), min_size=1, max_size=40
    ),
    held=holdings,
    equity=st.floats(1e3, 1e9),
    trend_sign=st.sampled_from([-1.0, 1.0]),
)
def test_no_bar_book_or_regime_breaks_a_cap(steps, held, equity, trend_sign) -> None:
    config = TradingConfig(signal={"center_min_bars": 1, "center_window_bars": 5})
    core = DecisionCore(N, config)
    sizing = config.sizing
    for t, (close, prob, regime) in enumerate(steps):
        bar = BarSnapshot(
            bar_index=t,
            close=close,
            high=close * 1.01,
            low=close * 0.99,
            probability=prob,
            trends=np.full((N, K), trend_sign),
            applicable=np.ones((N, K), dtype=bool),
            regime=regime,
        )
        book = PortfolioView(
            equity_usd=equity,
            committed_shares=held,
            position_shares=held,
            avg_entry_usd=np.where(held != 0, close, np.nan),
        )
        decision = core.step(bar, book)
        targets = decision.target_weights[np.isfinite(decision.target_weights)]
        assert np.all(np.abs(targets) <= sizing.max_position_fraction)
        # what the book holds after these targets, valued at this bar, for symbols with a bar
        has_bar = np.isfinite(close)
        current = np.where(has_bar, held * np.where(has_bar, close, 0.0) / equity, 0.0)
        after = np.where(np.isfinite(decision.target_weights), decision.target_weights, current)
        # targets never exceed a cap; a held position may drift within the rebalance band
        band = sizing.rebalance_min_fraction + 1e-12
        assert np.all(np.abs(after) <= sizing.max_position_fraction + band)
        if has_bar.all():
            assert np.abs(after).sum() <= sizing.max_gross_fraction + N * band
            assert abs(after.sum()) <= sizing.max_net_fraction + N * band
        if regime is Regime.CRASH:
            changed = np.isfinite(decision.target_weights)
            grows = np.abs(decision.target_weights[changed]) > np.abs(current[changed]) + 1e-12
            assert not grows.any(), "a crash opened or enlarged a position"
