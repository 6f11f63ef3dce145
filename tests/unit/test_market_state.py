"""MarketState (live) against build_grid (batch) on the same bars: identical values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest

from tests.features_kit import all_timeframes
from trader_runtime.backtest.grid import MarketGrid, build_grid
from trader_runtime.decision.regime import RegimeConfig, breadth, classify_regimes
from trader_runtime.features.batch import compute_features, market_index
from trader_runtime.live import market_kernels as mk
from trader_runtime.live.market_state import MarketRow, MarketState, MarketStateError
from trader_runtime.market.bars import Bar
from trader_runtime.market.impact_inputs import (
    IMPACT_LOOKBACK_SESSIONS,
    daily_stats,
    slot_mean,
    slot_means_by_row,
)
from trader_runtime.market.instant import MarketInstant
from trader_runtime.market.regimes import REGIME_ORDER
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

SYMBOLS = ("AAA", "BBB", "CCC")
# 25 sessions: the 2024-11-28 holiday and the 2024-11-29 early close (210 bars) inside
START, END = date(2024, 10, 28), date(2024, 12, 2)
CONFIRMATION = (Timeframe.M1, Timeframe.M15, Timeframe.H1, Timeframe.D1)
CONFIG = RegimeConfig(breadth_window_sessions=2.0, trend_window_sessions=5.0)
HORIZON_BARS = 12
OHLCV = ("open", "high", "low", "close", "volume")


def _utc(month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


# bars of BBB missing: first and last minute of sessions, the early close's last minute, 30 more
DROPPED = (
    _utc(11, 4, 14, 31),
    _utc(11, 12, 21, 0),
    _utc(11, 29, 18, 0),
    _utc(11, 29, 17, 59),
)


@dataclass(frozen=True)
class Run:
    grid: MarketGrid
    features: dict[str, pl.DataFrame]
    rows: list[MarketRow]
    expected: np.ndarray  # (bars, HORIZON_BARS, symbols): expected_volume after each instant
    names: tuple[str, ...]


def _frames() -> dict[str, pl.DataFrame]:
    source = SyntheticSource(SyntheticMarketConfig(seed=5))
    frames = {s: source.load(BarRequest(s, START, END)) for s in SYMBOLS}
    bbb = frames["BBB"]
    rng = np.random.default_rng(3)
    dropped = set(bbb["ts"].gather(rng.choice(bbb.height, 30, replace=False)).to_list())
    dropped |= set(DROPPED)
    frames["BBB"] = bbb.filter(~pl.col("ts").is_in(list(dropped)))
    return frames


def _instants(frames: dict[str, pl.DataFrame]) -> list[MarketInstant]:
    by_ts: dict[datetime, dict[str, Bar]] = {}
    for symbol in reversed(SYMBOLS):  # the instant's dict order must not matter
        for ts, o, h, lo, c, v in frames[symbol].select("ts", *OHLCV).iter_rows():
            by_ts.setdefault(ts, {})[symbol] = Bar(ts, o, h, lo, c, v)
    return [MarketInstant(ts, by_ts[ts]) for ts in sorted(by_ts)]


@pytest.fixture(scope="module")
def run() -> Run:
    frames = _frames()
    market = market_index(frames[s].select("ts", "close") for s in SYMBOLS)
    features = {s: compute_features(all_timeframes(frames[s]), market=market) for s in SYMBOLS}
    regimes = classify_regimes(market, breadth(frames, CONFIG), CONFIG)
    predictions = pl.concat(
        f.select(pl.lit(s).alias("symbol"), "ts", pl.lit(0.5).alias("probability"))
        for s, f in frames.items()
    )
    grid = build_grid(SYMBOLS, frames, predictions, features, regimes, CONFIRMATION)
    state = MarketState(SYMBOLS, CONFIRMATION, CONFIG)
    rows, expected = [], []
    for instant in _instants(frames):
        rows.append(state.update(instant))
        expected.append(state.expected_volume(HORIZON_BARS))
    return Run(grid, features, rows, np.array(expected), state.feature_names)


def _stack(run: Run, name: str) -> np.ndarray:
    return np.array([getattr(row, name) for row in run.rows])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def test_the_rows_are_the_grid_instants(run: Run) -> None:
    assert [row.ts for row in run.rows] == [
        ts.replace(tzinfo=UTC) for ts in run.grid.ts.astype("datetime64[us]").tolist()
    ]
    has_bar = _stack(run, "has_bar")
    assert _same(has_bar, ~np.isnan(run.grid.close))
    assert (~has_bar[:, 1]).sum() >= 30
    assert has_bar[:, [0, 2]].all()


@pytest.mark.parametrize("name", OHLCV)
def test_prices_and_volumes_equal_the_grid(run: Run, name: str) -> None:
    assert _same(_stack(run, name), getattr(run.grid, name))


def test_feature_rows_equal_the_batch_features_bit_for_bit(run: Run) -> None:
    features = _stack(run, "features")
    has_bar = _stack(run, "has_bar")
    assert np.isnan(features[~has_bar]).all()
    for j, symbol in enumerate(SYMBOLS):
        batch = run.features[symbol].select(run.names).fill_null(np.nan).to_numpy()
        assert _same(features[has_bar[:, j], j], batch), symbol
    assert np.isfinite(features[-1]).all()  # warmed up: the comparison covers real values


def test_trends_and_applicability_equal_the_grid(run: Run) -> None:
    assert _same(_stack(run, "trends"), run.grid.trends)
    assert _same(_stack(run, "applicable")[-1], run.grid.applicable)
    assert run.grid.applicable.all()
    assert np.isfinite(run.grid.trends[-1]).all()


def test_regimes_equal_the_batch_classification(run: Run) -> None:
    codes = np.array([REGIME_ORDER.index(row.regime) for row in run.rows])
    assert _same(codes, run.grid.regime_codes)
    assert len(set(codes.tolist())) >= 2  # more than one regime: the labels really move


@pytest.mark.parametrize("name", ["daily_vol", "adv_shares"])
def test_impact_inputs_equal_the_grid(run: Run, name: str) -> None:
    live = _stack(run, name)
    assert _same(live, getattr(run.grid, name))
    assert np.isnan(live[0]).all()
    assert np.isfinite(live[-1]).all()


def test_expected_volume_equals_the_grid_rows_that_follow(run: Run) -> None:
    grid = run.grid.expected_volume
    n_bars = grid.shape[0]
    missing = np.cumsum(np.isnan(run.grid.close), axis=0)
    compared = finite = 0
    for t in range(n_bars - 1):
        ahead = min(HORIZON_BARS, n_bars - 1 - t)
        # a symbol missing a bar in between shifts its slots: the live state cannot foresee that
        complete = missing[t + 1 : t + 1 + ahead] == missing[t]
        live, batch = run.expected[t, :ahead], grid[t + 1 : t + 1 + ahead]
        assert _same(np.where(complete, live, 0.0), np.where(complete, batch, 0.0)), t
        compared += int(complete.sum())
        finite += int(np.isfinite(batch[complete]).sum())
    assert compared > 0.95 * (n_bars - 1) * HORIZON_BARS * len(SYMBOLS)
    assert finite > 0.9 * compared  # all but the first session have a history


def test_expected_volume_crosses_into_the_next_session(run: Run) -> None:
    ts = [row.ts for row in run.rows]
    last = ts.index(_utc(11, 27, 20, 55))  # five minutes before the close, then the early close
    assert _same(run.expected[last, 5:], run.grid.expected_volume[last + 6 : last + 6 + 7])
    assert np.isfinite(run.expected[last]).all()


def test_update_rejects_out_of_order_and_unknown_instants() -> None:
    state = MarketState(SYMBOLS, CONFIRMATION, CONFIG)
    ts = _utc(11, 4, 14, 31)
    bar = Bar(ts, 100.0, 101.0, 99.0, 100.5, 1000.0)
    state.update(MarketInstant(ts, {"AAA": bar}))
    with pytest.raises(MarketStateError, match="increasing"):
        state.update(MarketInstant(ts, {"AAA": bar}))
    later = _utc(11, 4, 14, 32)
    with pytest.raises(MarketStateError, match="unknown"):
        state.update(MarketInstant(later, {"ZZZ": Bar(later, 1.0, 1.0, 1.0, 1.0, 1.0)}))
    with pytest.raises(MarketStateError, match="do not close"):
        state.update(MarketInstant(later, {"AAA": bar}))


@pytest.mark.parametrize("close", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bar_without_a_positive_finite_close_is_refused_before_any_state_moves(
    close: float,
) -> None:
    state = MarketState(SYMBOLS, CONFIRMATION, CONFIG)
    twin = MarketState(SYMBOLS, CONFIRMATION, CONFIG)
    ts = _utc(11, 4, 14, 31)
    good = {s: Bar(ts, 100.0, 101.0, 99.0, 100.5, 1000.0) for s in SYMBOLS}
    with pytest.raises(MarketStateError, match="has close"):
        state.update(MarketInstant(ts, {**good, "BBB": Bar(ts, 100.0, 101.0, 99.0, close, 1.0)}))
    # the instant can be taken again once corrected, and goes on as a clean state does
    for minute in range(31, 41):
        at = _utc(11, 4, 14, minute)
        bars = {s: Bar(at, 100.0, 101.0, 99.0, 100.0 + minute / 10, 1000.0) for s in SYMBOLS}
        row = state.update(MarketInstant(at, bars))
        expected = twin.update(MarketInstant(at, bars))
        assert _same(row.features, expected.features)
        assert _same(row.trends, expected.trends)
        assert row.regime == expected.regime
    assert np.isfinite(row.features).any()


@pytest.mark.parametrize("window", [1, 2, 7, 390])
def test_streaming_sma_replays_polars_rolling_mean(window: int) -> None:
    rng = np.random.default_rng(window)
    x = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, 3000)))
    x[1000:1200] = x[999]  # a flat stretch: ties between close and SMA
    symbol_f, symbol_i, values, _ = mk.new_state(1, window)
    streamed = np.array(
        [mk.rolling_mean_step(values, symbol_f, symbol_i, 0, c) for c in x.tolist()]
    )
    batch = pl.Series(x).rolling_mean(window).fill_null(np.nan).to_numpy()
    assert _same(streamed, batch)


def test_vectorised_slot_means_equal_slot_mean_per_window() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 40)  # ragged sessions: not every session has every slot
    sessions = np.repeat(np.arange(40), lengths)
    volumes = rng.lognormal(8.0, 1.0, sessions.size)
    slots = np.concatenate([np.arange(n) for n in lengths])
    history: dict[int, list[float]] = {}
    expected = []
    for slot, volume in zip(slots.tolist(), volumes.tolist(), strict=True):
        seen = history.setdefault(slot, [])
        expected.append(slot_mean(seen))
        seen.append(volume)
    assert _same(slot_means_by_row(volumes, sessions.astype(np.int64)), np.array(expected))
    assert len(history[0]) > IMPACT_LOOKBACK_SESSIONS  # the window really slides


def test_daily_stats_keep_the_rolling_semantics() -> None:
    rng = np.random.default_rng(1)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 40)))
    volumes = rng.lognormal(14.0, 0.3, 40)
    frame = pl.DataFrame({"close": closes, "volume": volumes}).select(
        daily_vol=pl.col("close").log().diff().rolling_std(20, min_samples=2).shift(1),
        adv_shares=pl.col("volume").rolling_mean(20, min_samples=1).shift(1),
    )
    ours = np.array([daily_stats(closes[:s], volumes[:s]) for s in range(40)])
    reference = frame.fill_null(np.nan).to_numpy()
    assert _same(np.isnan(ours), np.isnan(reference))
    assert np.isnan(ours[:3, 0]).all()
    assert np.isnan(ours[0, 1])
    assert np.isfinite(ours[3]).all()
    np.testing.assert_allclose(ours, reference, rtol=1e-12, equal_nan=True)


def test_a_state_restored_from_its_pickle_goes_on_like_the_original() -> None:
    import pickle

    instants = _instants(_frames())
    original = MarketState(SYMBOLS, CONFIRMATION, CONFIG)
    for instant in instants[:500]:
        original.update(instant)
    restored = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))
    for instant in instants[500:700]:  # a live restart resumes from the checkpoint's pickle
        want, got = original.update(instant), restored.update(instant)
        assert _same(got.features, want.features)
        assert _same(got.close, want.close)
        assert got.regime == want.regime


def test_a_rows_arrays_are_c_contiguous_as_the_compiled_kernels_take_them(run: Run) -> None:
    # an array of another layout is another signature: numba would compile the decision
    # kernels again in the middle of a live session (10-20 s), for every new process
    assert len(SYMBOLS) >= 2
    for row in run.rows[-5:]:
        for name in ("open", "high", "low", "close", "volume", "features", "trends"):
            assert getattr(row, name).flags.c_contiguous, name
        assert row.applicable.flags.c_contiguous
