from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import talib
from numpy.typing import NDArray

from trader_runtime.features import indicators
from trader_runtime.features.batch import compute_features, market_index
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.features.streaming import (
    KINDS,
    StreamingFeatures,
    StreamingMarketIndex,
    TaMachine,
    fma,
    fma_exact,
    measure_update_latency_us,
)
from trader_runtime.market.bars import Bar
from trader_runtime.market.resample import resample_bars
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

Array = NDArray[np.float64]
SMA = talib.MA_Type.SMA
FEATURES = DEFAULT_FEATURE_SET.feature_names()
UNIVERSE = ("AAA", "BBB", "CCC")
# four weeks around Thanksgiving: the 2024-11-28 holiday and the 2024-11-29 early close (18:00 UTC)
START, END = date(2024, 11, 4), date(2024, 12, 6)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@dataclass(frozen=True)
class Parity:
    batch: pl.DataFrame
    stream: dict[str, Array]
    market: pl.DataFrame
    market_stream: list[tuple[float, float]]
    dropped: frozenset[datetime]


def _closes_by_ts(frames: dict[str, pl.DataFrame]) -> dict[datetime, dict[str, float]]:
    by_ts: dict[datetime, dict[str, float]] = {}
    for symbol in UNIVERSE:
        for ts, close in frames[symbol].select("ts", "close").iter_rows():
            by_ts.setdefault(ts, {})[symbol] = close
    return {ts: by_ts[ts] for ts in sorted(by_ts)}


def _run_parity(frames: dict[str, pl.DataFrame], *, market_gaps: frozenset[datetime]) -> Parity:
    """Batch features of AAA next to the streamed ones; ``market_gaps`` are instants whose market
    row is withheld from both (the batch fills them, the stream gets None)."""
    closes = _closes_by_ts(frames)
    index = StreamingMarketIndex()
    market_at = {
        ts: index.update(ts, {s: c[s] for s in UNIVERSE if s in c}) for ts, c in closes.items()
    }
    market = market_index([frames[s] for s in UNIVERSE])
    aaa = frames["AAA"]
    batch = compute_features(
        {tf: resample_bars(aaa, tf) for tf in Timeframe},
        market=market.filter(~pl.col("ts").is_in(list(market_gaps))),
    )
    engine = StreamingFeatures()
    rows = []
    for ts, o, h, lo, c, v in aaa.select(
        "ts", "open", "high", "low", "close", "volume"
    ).iter_rows():
        market_return, market_level = (None, None) if ts in market_gaps else market_at[ts]
        rows.append(
            engine.update(
                Bar(ts, o, h, lo, c, v), market_return=market_return, market_level=market_level
            )
        )
    stream = {name: np.array([row[name] for row in rows]) for name in engine.feature_names}
    market_stream = [market_at[ts] for ts in market["ts"]]
    return Parity(batch, stream, market, market_stream, frozenset())


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    source = SyntheticSource(SyntheticMarketConfig(seed=3))
    return {s: source.load(BarRequest(s, START, END)) for s in UNIVERSE}


@pytest.fixture(scope="module")
def full(frames: dict[str, pl.DataFrame]) -> Parity:
    return _run_parity(frames, market_gaps=frozenset())


# bars of AAA removed in the gappy run: each closes a higher-timeframe bucket (so the bucket is
# completed by the next bar, possibly in the next session) plus 40 random minutes
BUCKET_CLOSES = (
    _utc(2024, 11, 5, 14, 35),  # 5m
    _utc(2024, 11, 6, 15, 45),  # 5m and 15m
    _utc(2024, 11, 12, 15, 30),  # 5m, 15m and 1h
    _utc(2024, 11, 18, 21, 0),  # last minute of a session: every timeframe, daily included
    _utc(2024, 11, 27, 21, 0),  # last minute before the holiday
    _utc(2024, 11, 29, 18, 0),  # last minute of the early close
)


@pytest.fixture(scope="module")
def gappy(frames: dict[str, pl.DataFrame]) -> Parity:
    aaa = frames["AAA"]
    rng = np.random.default_rng(11)
    random_ts = set(aaa["ts"].gather(rng.choice(aaa.height, 40, replace=False)).to_list())
    dropped = frozenset(random_ts | set(BUCKET_CLOSES))
    thinned = {**frames, "AAA": aaa.filter(~pl.col("ts").is_in(list(dropped)))}
    market_gaps = frozenset(thinned["AAA"]["ts"].gather(rng.choice(8000, 15, replace=False)))
    parity = _run_parity(thinned, market_gaps=market_gaps)
    return Parity(parity.batch, parity.stream, parity.market, parity.market_stream, dropped)


def _assert_identical(name: str, streamed: Array, batch: pl.Series) -> None:
    expected = batch.cast(pl.Float64).fill_null(np.nan).to_numpy()
    warmup = np.isnan(expected)
    assert np.array_equal(np.isnan(streamed), warmup), (
        f"{name}: null rows differ at {np.flatnonzero(np.isnan(streamed) != warmup)[:5]}"
    )
    differ = np.flatnonzero(streamed[~warmup] != expected[~warmup])
    assert differ.size == 0, (
        f"{name}: {differ.size} values differ, max |diff| "
        f"{np.max(np.abs(streamed[~warmup] - expected[~warmup]))}"
    )


def test_every_batch_indicator_kind_has_a_streaming_twin() -> None:
    assert set(KINDS) == set(indicators.KINDS)


def test_feature_names_are_the_batch_columns_in_order(full: Parity) -> None:
    assert StreamingFeatures().feature_names == FEATURES
    assert tuple(full.batch.columns[2:]) == FEATURES


def test_streaming_market_index_equals_the_batch_market_index(full: Parity) -> None:
    batch = list(full.market.select("market_return", "market_level").iter_rows())
    assert full.market_stream == batch


@pytest.mark.parametrize("name", FEATURES)
def test_streamed_feature_equals_the_batch_feature_bit_for_bit(full: Parity, name: str) -> None:
    _assert_identical(name, full.stream[name], full.batch[name])


@pytest.mark.parametrize("name", FEATURES)
def test_streamed_feature_equals_the_batch_with_missing_minutes_and_market_rows(
    gappy: Parity, name: str
) -> None:
    _assert_identical(name, gappy.stream[name], gappy.batch[name])


def test_the_gappy_run_really_misses_bucket_closing_minutes(gappy: Parity) -> None:
    assert set(BUCKET_CLOSES) <= gappy.dropped
    assert not set(BUCKET_CLOSES) & set(gappy.batch["ts"].to_list())


def test_a_row_sees_the_daily_bar_of_the_early_close_from_its_last_minute(
    frames: dict[str, pl.DataFrame], full: Parity
) -> None:
    daily = resample_bars(frames["AAA"], Timeframe.D1)
    closes = dict(daily.select("ts", "close").iter_rows())
    early_close, before = _utc(2024, 11, 29, 18, 0), _utc(2024, 11, 27, 21, 0)
    expected = math.log(closes[early_close]) - math.log(closes[before])
    ts = full.batch["ts"].to_list()
    streamed = full.stream["tf1d_ret_1"]
    assert streamed[ts.index(early_close)] == expected
    assert streamed[ts.index(early_close - timedelta(minutes=1))] != expected
    assert streamed[ts.index(_utc(2024, 12, 2, 14, 31))] == expected


def test_buffered_state_does_not_grow_with_the_number_of_bars() -> None:
    source = SyntheticSource(SyntheticMarketConfig(seed=5))
    bars = source.load(BarRequest("AAA", date(2024, 1, 2), date(2024, 3, 28)))
    assert bars.height >= 20_000
    engine = StreamingFeatures()
    index = StreamingMarketIndex()
    sizes = {}
    rows = bars.select("ts", "open", "high", "low", "close", "volume").iter_rows()
    for n, (ts, o, h, lo, c, v) in enumerate(rows, start=1):
        market_return, market_level = index.update(ts, {"AAA": c})
        engine.update(
            Bar(ts, o, h, lo, c, v), market_return=market_return, market_level=market_level
        )
        if n in (10_000, 20_000):
            sizes[n] = engine.buffered_values()
        if n == 20_000:
            break
    assert sizes[20_000] == sizes[10_000]
    assert sizes[10_000] < 3_000


def test_update_rejects_bars_that_do_not_move_forward_in_time() -> None:
    engine = StreamingFeatures()
    bar = Bar(_utc(2024, 3, 1, 14, 31), 100.0, 101.0, 99.0, 100.5, 1000.0)
    engine.update(bar)
    with pytest.raises(ValueError, match="increasing"):
        engine.update(bar)
    with pytest.raises(ValueError, match="timezone-aware"):
        engine.update(Bar(datetime(2024, 3, 1, 14, 33), 100.0, 101.0, 99.0, 100.5, 1000.0))


def test_update_into_writes_the_row_update_returns(frames: dict[str, pl.DataFrame]) -> None:
    aaa = frames["AAA"].select("ts", "open", "high", "low", "close", "volume").rows()[:2_000]
    index = StreamingMarketIndex()
    by_dict, by_array = StreamingFeatures(), StreamingFeatures()
    out = np.empty(len(FEATURES))
    for ts, o, h, lo, c, v in aaa:
        r, lvl = index.update(ts, {"AAA": c})
        bar = Bar(ts, o, h, lo, c, v)
        want = by_dict.update(bar, market_return=r, market_level=lvl)
        by_array.update_into(bar, out, market_return=r, market_level=lvl)
        assert np.array_equal(out, np.array(list(want.values())), equal_nan=True)
    later = Bar(aaa[-1][0] + timedelta(minutes=1), 100.0, 101.0, 99.0, 100.5, 1000.0)
    for wrong in (np.empty(3), np.empty(len(FEATURES), dtype=np.float32)):
        with pytest.raises(ValueError, match="out must be float64"):
            by_array.update_into(later, wrong)
    with pytest.raises(ValueError, match="out must be float64"):  # not the machine's byte order
        by_array.update_into(
            later, np.empty(len(FEATURES), dtype=np.dtype(np.float64).newbyteorder())
        )


def test_fused_multiply_add_is_correctly_rounded() -> None:
    rng = np.random.default_rng(0)
    for a, b, c in rng.standard_normal((200, 3)) * [1.0, 1e3, 1e-3]:
        assert fma(float(a), float(b), float(c)) == fma_exact(float(a), float(b), float(c))
    assert fma(0.1, 10.0, -1.0) == 2.0**-54  # the unfused 0.1 * 10.0 - 1.0 is 0.0


def test_latency_measurement_returns_ordered_percentiles_in_microseconds() -> None:
    p50, p99 = measure_update_latency_us(n_bars=400, seed=1)
    assert 0.0 < p50 <= p99


# --- each TA-Lib state machine against talib itself ---------------------------------------------


@dataclass(frozen=True)
class Walk:
    high: Array
    low: Array
    close: Array
    volume: Array
    other: Array  # a second price series (the market)


def _walk(seed: int, n: int = 5000) -> Walk:
    """Random-walk OHLCV with the awkward cases: flat stretches, price spikes, zero volume."""
    rng = np.random.default_rng(seed)

    def prices(level: float) -> Array:
        p = level * np.exp(np.cumsum(rng.standard_normal(n) * 1e-3))
        p[rng.integers(100, n - 100, 4)] *= rng.uniform(0.3, 3.0, 4)
        start = int(rng.integers(100, n - 300))
        p[start : start + 150] = p[start - 1]
        return p

    close, other = prices(100.0), prices(40.0)
    spread = np.abs(rng.standard_normal(n)) * 0.1
    volume = np.round(rng.lognormal(8.0, 1.0, n))
    volume[rng.integers(0, n, 200)] = 0.0
    return Walk(
        close + spread * rng.random(n), close - spread * rng.random(n), close, volume, other
    )


def _feed_parts(machine: TaMachine, *columns: Array) -> list[Array]:
    """Every output of the compiled machine, one row of ``columns`` per update."""
    rows = [machine.update(*row) for row in zip(*columns, strict=True)]
    return list(np.array(rows).T)


def _feed(machine: TaMachine, *columns: Array) -> Array:
    """The single output of the machine."""
    return _feed_parts(machine, *columns)[0]


def _macd(w: Walk, part: int) -> tuple[Array, Array]:
    streamed = _feed_parts(TaMachine("macd", 12, 26, 9), w.close)
    return streamed[part], talib.MACD(w.close, 12, 26, 9)[part]


def _stoch(w: Walk, part: int) -> tuple[Array, Array]:
    streamed = _feed_parts(TaMachine("stoch", 14, 3, 3), w.high, w.low, w.close)
    return streamed[part], talib.STOCH(w.high, w.low, w.close, 14, 3, SMA, 3, SMA)[part]


def _bbands(w: Walk, part: int) -> tuple[Array, Array]:
    streamed = _feed_parts(TaMachine("bbands", 20, 2.0, 2.0), w.close)  # upper, middle, lower
    return streamed[part], talib.BBANDS(w.close, 20, 2.0, 2.0, SMA)[part]


def _returns(p: Array) -> Array:
    return np.diff(np.log(p))


TALIB_CASES: dict[str, Callable[[Walk], tuple[Array, Array]]] = {
    "SMA": lambda w: (_feed(TaMachine("sma", 30), w.close), talib.SMA(w.close, 30)),
    "SUM": lambda w: (_feed(TaMachine("sum", 20), w.volume), talib.SUM(w.volume, 20)),
    "EMA": lambda w: (_feed(TaMachine("ema", 26), w.close), talib.EMA(w.close, 26)),
    "MACD": lambda w: _macd(w, 0),
    "MACD signal": lambda w: _macd(w, 1),
    "MACD hist": lambda w: _macd(w, 2),
    "RSI": lambda w: (_feed(TaMachine("rsi", 14), w.close), talib.RSI(w.close, 14)),
    "ATR": lambda w: (
        _feed(TaMachine("atr", 14), w.high, w.low, w.close),
        talib.ATR(w.high, w.low, w.close, 14),
    ),
    "ADX": lambda w: (
        _feed(TaMachine("adx", 14), w.high, w.low, w.close),
        talib.ADX(w.high, w.low, w.close, 14),
    ),
    "STOCH slow k": lambda w: _stoch(w, 0),
    "STOCH slow d": lambda w: _stoch(w, 1),
    "WILLR": lambda w: (
        _feed(TaMachine("willr", 14), w.high, w.low, w.close),
        talib.WILLR(w.high, w.low, w.close, 14),
    ),
    "CCI": lambda w: (
        _feed(TaMachine("cci", 20), w.high, w.low, w.close),
        talib.CCI(w.high, w.low, w.close, 20),
    ),
    "MFI": lambda w: (
        _feed(TaMachine("mfi", 14), w.high, w.low, w.close, w.volume),
        talib.MFI(w.high, w.low, w.close, w.volume, 14),
    ),
    "BBANDS upper": lambda w: _bbands(w, 0),
    "BBANDS middle": lambda w: _bbands(w, 1),
    "BBANDS lower": lambda w: _bbands(w, 2),
    "STDDEV": lambda w: (_feed(TaMachine("stddev", 60), w.close), talib.STDDEV(w.close, 60, 1.0)),
    "STDDEV of returns": lambda w: (
        _feed(TaMachine("stddev", 30), _returns(w.close)),
        talib.STDDEV(_returns(w.close), 30, 1.0),
    ),
    "OBV": lambda w: (_feed(TaMachine("obv"), w.close, w.volume), talib.OBV(w.close, w.volume)),
    "ROC": lambda w: (_feed(TaMachine("roc", 10), w.close), talib.ROC(w.close, 10)),
    "CORREL": lambda w: (
        _feed(TaMachine("correl", 120), _returns(w.close), _returns(w.other)),
        talib.CORREL(_returns(w.close), _returns(w.other), 120),
    ),
    "BETA": lambda w: (
        _feed(TaMachine("beta", 120), w.close, w.other),
        talib.BETA(w.close, w.other, 120),
    ),
    "BETA with the inputs swapped": lambda w: (
        _feed(TaMachine("beta", 20), w.other, w.close),
        talib.BETA(w.other, w.close, 20),
    ),
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", list(TALIB_CASES))
def test_streaming_state_machine_reproduces_talib_bit_for_bit(case: str, seed: int) -> None:
    streamed, expected = TALIB_CASES[case](_walk(seed))
    assert np.array_equal(np.isnan(streamed), np.isnan(expected))
    assert np.array_equal(streamed, expected, equal_nan=True), (
        f"{case}: {np.count_nonzero(streamed != expected)} values differ"
    )


def test_a_pickled_engine_resumes_exactly_where_it_left_off(
    frames: dict[str, pl.DataFrame],
) -> None:
    """The live checkpoint pickles the engine mid-stream (standard pickle, no closures): the
    restored copy and the original give identical values on every later bar."""
    aaa = frames["AAA"].select("ts", "open", "high", "low", "close", "volume").rows()
    index = StreamingMarketIndex()
    market = [index.update(ts, {"AAA": c}) for ts, _, _, _, c, _ in aaa]
    engine = StreamingFeatures()
    split = 2_000  # mid-session, with every higher timeframe's bucket part-built
    for (ts, o, h, lo, c, v), (r, lvl) in zip(aaa[:split], market[:split], strict=True):
        engine.update(Bar(ts, o, h, lo, c, v), market_return=r, market_level=lvl)
    restored = pickle.loads(pickle.dumps(engine))
    for (ts, o, h, lo, c, v), (r, lvl) in zip(aaa[split:], market[split:], strict=True):
        bar = Bar(ts, o, h, lo, c, v)
        want = engine.update(bar, market_return=r, market_level=lvl)
        got = restored.update(bar, market_return=r, market_level=lvl)
        assert list(got) == list(want)
        assert np.array_equal(
            np.array(list(got.values())), np.array(list(want.values())), equal_nan=True
        )
