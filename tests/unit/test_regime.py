"""Tests of market regime detection: rules, streaming == batch, causality, evaluation, config."""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, astuple
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from pydantic import ValidationError
from sklearn.metrics import confusion_matrix, f1_score  # type: ignore[import-untyped]

from trader_runtime.decision import regime_kernels as rk
from trader_runtime.decision.regime import (
    INPUT_COLUMNS,
    RegimeConfig,
    RegimeInputs,
    StreamingRegime,
    bars_per_session,
    breadth,
    classify_regimes,
    evaluate_regimes,
)
from trader_runtime.errors import InputSchemaError
from trader_runtime.features.batch import market_index
from trader_runtime.market.regimes import REGIME_ORDER, Regime
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

FloatArray = npt.NDArray[np.float64]
T0 = datetime(2020, 1, 1, 21, tzinfo=UTC)
REGIMES = [r.value for r in REGIME_ORDER]
SMALL = RegimeConfig(
    vol_window_sessions=4,
    fast_vol_window_sessions=2,
    burst_vol_window_sessions=1,
    trend_window_sessions=6,
    range_window_sessions=5,
    drawdown_window_sessions=3,
    breadth_window_sessions=3,
    min_window_bars=1,
)
"""Windows of a few daily bars, so short Hypothesis paths exercise full and partial windows."""

HELD_OUT_SEED = 100  # not a tuning seed (11-22); the first seed >= 100 whose 2023 has all regimes
HELD_OUT_SPAN = (date(2023, 1, 3), date(2023, 12, 29))
HELD_OUT_MACRO_F1_FLOOR = 0.45


def _daily(levels: FloatArray | list[float]) -> pl.DataFrame:
    values = np.asarray(levels, dtype=np.float64)
    ts = [T0 + timedelta(days=i) for i in range(values.size)]
    return pl.DataFrame({"ts": ts, "market_level": values}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))
    )


def _levels(log_returns: FloatArray) -> FloatArray:
    return np.asarray(100.0 * np.exp(np.cumsum(log_returns)), dtype=np.float64)


def _segment(
    rng: np.random.Generator, n: int, vol_annual: float, drift_annual: float
) -> FloatArray:
    """Daily log returns with a given annualised volatility and drift."""
    return np.asarray(
        drift_annual / 252 + vol_annual / math.sqrt(252) * rng.standard_normal(n),
        dtype=np.float64,
    )


def _synthetic(
    seed: int, span: tuple[date, date], symbols: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Index, breadth and true regimes of a synthetic market (1m bars)."""
    source = SyntheticSource(SyntheticMarketConfig(seed=seed, signal_strength=0.1))
    bars = {s: source.load(BarRequest(symbol=s, start=span[0], end=span[1])) for s in symbols}
    index = market_index(b.select("ts", "close") for b in bars.values())
    return index, breadth(bars), source.true_regimes(*span)


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeframe", "bars"),
    [
        (Timeframe.M1, 390),
        (Timeframe.M5, 78),
        (Timeframe.M15, 26),
        (Timeframe.H1, 7),
        (Timeframe.D1, 1),
    ],
)
def test_bars_per_session_covers_a_full_session(timeframe: Timeframe, bars: int) -> None:
    assert bars_per_session(timeframe) == bars


def test_windows_in_sessions_become_bars_per_timeframe_with_a_floor() -> None:
    config = RegimeConfig(min_window_bars=10)
    assert config.window_bars(3.0, Timeframe.M1) == 1170
    assert config.window_bars(0.125, Timeframe.M1) == 49
    assert config.window_bars(3.0, Timeframe.M5) == 234
    assert config.window_bars(3.0, Timeframe.D1) == 10  # 3 daily bars raised to the floor
    assert config.window_bars(20.0, Timeframe.D1) == 20


@pytest.mark.parametrize(
    "bad",
    [
        {"bear_vol_percentile": 0.9, "volatile_vol_percentile": 0.8},
        {"volatile_vol_percentile": 0.995, "crash_vol_percentile": 0.99},
        {"crash_vol_percentile": 1.2},
        {"crash_drawdown": -0.01},
        {"vol_window_sessions": 0.0},
        {"min_window_bars": 0},
        {"vol_reference": ((0.0, 0.0),)},
        {"vol_reference": ((0.0, 0.0), (0.2, 0.5), (0.1, 1.0))},
        {"vol_reference": ((0.0, 0.0), (0.2, 0.7), (0.3, 0.5), (0.4, 1.0))},
        {"vol_reference": ((0.0, 0.1), (0.4, 1.0))},
        {"vol_reference": ((0.0, 0.0), (0.4, 0.9))},
        {"unknown_field": 1.0},
    ],
)
def test_config_rejects_inconsistent_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RegimeConfig(**bad)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    config = RegimeConfig()
    with pytest.raises(ValidationError):
        config.crash_drawdown = 0.5  # type: ignore[misc]


def test_regime_moved_to_market_and_is_still_importable_from_synthetic() -> None:
    from trader_runtime.sources import synthetic

    assert synthetic.Regime is Regime
    assert synthetic.REGIME_ORDER is REGIME_ORDER


# -- classification ------------------------------------------------------------------------------


def test_each_regime_is_recognised_on_paths_built_to_have_it() -> None:
    """Daily paths of 120 sessions per regime; after a window's warm-up each segment is mostly
    labelled as built (the ranging path mean-reverts around a level)."""
    rng = np.random.default_rng(3)
    n = 120
    ranging_level = np.zeros(n)
    for t in range(1, n):
        ranging_level[t] = (
            0.6 * ranging_level[t - 1] + 0.05 / math.sqrt(252) * rng.standard_normal()
        )
    segments = {
        Regime.BULL: _segment(rng, n, 0.12, 1.5),
        Regime.RANGING: np.diff(ranging_level, prepend=0.0),
        Regime.VOLATILE: _segment(rng, n, 0.42, 0.0),
        Regime.BEAR: _segment(rng, n, 0.27, -0.5),
        Regime.CRASH: _segment(rng, n, 1.0, -3.0),
    }
    index = _daily(_levels(np.concatenate(list(segments.values()))))
    labels = classify_regimes(index, None, RegimeConfig(), Timeframe.D1)["regime"].to_list()
    for k, regime in enumerate(segments):
        settled = labels[k * n + 25 : (k + 1) * n]
        share = settled.count(regime.value) / len(settled)
        assert share >= 0.6, (regime, share)


def test_a_crash_is_detected_within_minutes_on_one_minute_bars() -> None:
    """A calm session, then returns at 150 % annualised volatility falling 5 % a session."""
    rng = np.random.default_rng(5)
    per_year = 252 * 390
    calm = 0.12 / math.sqrt(per_year) * rng.standard_normal(3 * 390)
    crash = -0.05 / 390 + 1.5 / math.sqrt(per_year) * rng.standard_normal(390)
    levels = _levels(np.concatenate([calm, crash]))
    ts = [T0 + timedelta(minutes=i) for i in range(levels.size)]
    index = pl.DataFrame({"ts": ts, "close": levels}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))
    )
    labels = classify_regimes(index, None, RegimeConfig(), Timeframe.M1)["regime"].to_list()
    assert Regime.CRASH.value not in labels[: 3 * 390]
    first = labels.index(Regime.CRASH.value)
    assert first - 3 * 390 <= 60  # within an hour of the first crash bar


def test_breadth_decides_bear_for_a_volatile_uptrend() -> None:
    """Elevated volatility (25 % a year) in a strong uptrend is bull when breadth is broad and
    bear when narrow. Returns alternate around a drift, so volatility and trend are exact."""
    drift, swing = 0.008, math.sqrt((0.25 / math.sqrt(252)) ** 2 - 0.008**2)
    returns = drift + swing * np.resize([1.0, -1.0], 60)
    index = _daily(_levels(returns))
    config = RegimeConfig()
    last = index.height - 1

    def label(breadth_value: float) -> tuple[str, float, float]:
        frame = index.select("ts").with_columns(breadth=pl.lit(breadth_value))
        out = classify_regimes(index, frame, config, Timeframe.D1).row(last, named=True)
        return out["regime"], out["trend"], out["vol_percentile"]

    broad, trend, vol_pct = label(0.9)
    assert trend > config.bear_trend_max
    assert config.bear_vol_percentile <= vol_pct < config.volatile_vol_percentile
    assert broad == Regime.BULL.value
    assert label(0.3)[0] == Regime.BEAR.value


def test_output_has_the_regime_and_every_input_per_bar() -> None:
    rng = np.random.default_rng(1)
    index = _daily(_levels(_segment(rng, 50, 0.2, 0.0)))
    out = classify_regimes(index, None, SMALL, Timeframe.D1)
    assert out.columns == ["ts", "regime", *INPUT_COLUMNS]
    assert out.height == index.height
    assert set(out["regime"]) <= set(REGIMES)
    assert out["breadth"].is_nan().all()
    first = out.row(0, named=True)
    assert first["regime"] == Regime.BULL.value  # no return yet: every rule needs one
    assert math.isnan(first["vol_annual"])
    assert first["drawdown"] == 0.0
    assert out["drawdown"].max() <= 0.0  # type: ignore[operator]


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pl.DataFrame({"ts": [T0], "level": [1.0]}), "market_level or close"),
        (pl.DataFrame({"ts": [T0, T0], "close": [1.0, 2.0]}), "strictly increasing"),
        (pl.DataFrame({"ts": [T0, T0 + timedelta(days=1)], "close": [1.0, 0.0]}), "positive"),
    ],
)
def test_bad_index_input_is_rejected(frame: pl.DataFrame, match: str) -> None:
    with pytest.raises(InputSchemaError, match=match):
        classify_regimes(frame)


def test_streaming_rejects_bars_out_of_order() -> None:
    stream = StreamingRegime(SMALL, Timeframe.D1)
    stream.update(T0, 100.0)
    with pytest.raises(InputSchemaError, match="not after"):
        stream.update(T0, 101.0)
    with pytest.raises(InputSchemaError, match="positive"):
        stream.update(T0 + timedelta(days=1), -1.0)


# -- breadth -------------------------------------------------------------------------------------


def test_breadth_is_the_share_of_symbols_above_their_moving_average() -> None:
    config = RegimeConfig(breadth_window_sessions=2, min_window_bars=1)
    ts = [T0 + timedelta(days=i) for i in range(4)]
    closes = {
        "UP": pl.DataFrame({"ts": ts, "close": [1.0, 2.0, 3.0, 4.0]}),
        "DOWN": pl.DataFrame({"ts": ts, "close": [4.0, 3.0, 2.0, 5.0]}),
        "LATE": pl.DataFrame({"ts": ts[2:], "close": [1.0, 2.0]}),
    }
    out = breadth(closes, config, Timeframe.D1)
    # SMA(2) needs two bars: none at ts0; UP above, DOWN below at ts1, ts2; all three above at ts3
    assert out["breadth"].to_list() == [None, 0.5, 0.5, 1.0]
    long = pl.concat([f.with_columns(symbol=pl.lit(s)) for s, f in closes.items()])
    assert_frame_equal(breadth(long, config, Timeframe.D1), out)


# -- streaming == batch --------------------------------------------------------------------------


def test_streaming_equals_batch_bit_for_bit_over_a_synthetic_crash() -> None:
    """Seven sessions of 1m bars (2730; seed 576: four bull sessions, then a crash), with
    breadth: labels and every input identical, windows partly and wholly filled."""
    span = (date(2024, 1, 2), date(2024, 1, 10))
    index, breadth_frame, _ = _synthetic(576, span, ("SYNA", "SYNB"))
    config = RegimeConfig(trend_window_sessions=4.0)
    batch = classify_regimes(index, breadth_frame, config, Timeframe.M1)
    joined = index.join(breadth_frame, on="ts", how="left")
    stream = StreamingRegime(config, Timeframe.M1)
    rows = []
    for ts, level, b in joined.select("ts", "market_level", "breadth").iter_rows():
        regime = stream.update(ts, level, b)
        assert stream.inputs is not None
        rows.append({"ts": ts, "regime": regime.value, **asdict(stream.inputs)})
    streamed = pl.DataFrame(rows, schema=batch.schema)
    assert batch.height == 2730
    assert set(batch["regime"]) >= {Regime.CRASH.value, Regime.VOLATILE.value}
    assert_frame_equal(streamed, batch, check_exact=True)


@settings(max_examples=40, deadline=None)
@given(
    returns=st.lists(
        st.floats(-0.15, 0.15, allow_nan=False, allow_subnormal=False), min_size=1, max_size=80
    ),
    breadth_values=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), min_size=80, max_size=80),
)
def test_streaming_equals_batch_on_arbitrary_daily_paths(
    returns: list[float], breadth_values: list[float | None]
) -> None:
    index = _daily(_levels(np.asarray(returns)))
    frame = index.select("ts").with_columns(
        breadth=pl.Series(breadth_values[: index.height], dtype=pl.Float64)
    )
    batch = classify_regimes(index, frame, SMALL, Timeframe.D1)
    stream = StreamingRegime(SMALL, Timeframe.D1)
    labels = [
        stream.update(ts, level, b).value
        for (ts, level), b in zip(index.iter_rows(), breadth_values[: index.height], strict=True)
    ]
    assert labels == batch["regime"].to_list()


def test_streaming_memory_is_bounded_by_the_longest_window() -> None:
    """The state arrays never grow: rings of the longest window (trend, 6 bars) + 1, and the
    rolling extremes (range 5 bars, drawdown 3) hold at most window + 1 entries between bars."""
    stream = StreamingRegime(SMALL, Timeframe.D1)
    sizes = (stream._f.size, stream._n.size)
    n = stream._n
    assert n[rk.N_TOTALS_CAP] == n[rk.N_TREND] + 1 == 7
    extremes = [n[rk.N_RANGE_MAX], n[rk.N_RANGE_MIN], n[rk.N_PEAK]]
    rng = np.random.default_rng(2)
    for i, level in enumerate(_levels(_segment(rng, 500, 0.3, 0.0))):
        stream.update(T0 + timedelta(days=i), float(level))
        assert all(n[at + rk.E_SIZE] <= n[at + rk.E_WINDOW] + 1 <= 6 for at in extremes)
    assert (stream._f.size, stream._n.size) == sizes


def _hex(inputs: RegimeInputs | None) -> tuple[str, ...]:
    assert inputs is not None
    return tuple(float.hex(v) for v in astuple(inputs))


def test_a_pickled_stream_continues_identically() -> None:
    """The live engine checkpoints its state with pickle every bar and resumes from it."""
    rng = np.random.default_rng(4)
    levels = _levels(_segment(rng, 120, 0.6, -1.0)).tolist()
    breadths = [None if u < 0.3 else u for u in rng.uniform(size=120).tolist()]
    bars = [(T0 + timedelta(days=i), levels[i], breadths[i]) for i in range(120)]
    stream = StreamingRegime(SMALL, Timeframe.D1)
    assert pickle.loads(pickle.dumps(stream)).inputs is None
    for bar in bars[:60]:
        stream.update(*bar)
    restored = pickle.loads(pickle.dumps(stream, protocol=pickle.HIGHEST_PROTOCOL))
    assert _hex(restored.inputs) == _hex(stream.inputs)
    with pytest.raises(InputSchemaError, match="not after"):
        restored.update(*bars[59])
    resumed = [(restored.update(*bar), _hex(restored.inputs)) for bar in bars[60:]]
    continued = [(stream.update(*bar), _hex(stream.inputs)) for bar in bars[60:]]
    assert resumed == continued  # and the restored copy shares no state with the original
    assert {regime for regime, _ in continued} >= {Regime.CRASH, Regime.VOLATILE}


# -- causality -----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    returns=st.lists(
        st.floats(-0.15, 0.15, allow_nan=False, allow_subnormal=False), min_size=2, max_size=80
    ),
    symbol_noise=st.lists(st.floats(-0.05, 0.05), min_size=80, max_size=80),
    cut=st.integers(1, 79),
)
def test_labels_up_to_a_cut_do_not_depend_on_later_bars(
    returns: list[float], symbol_noise: list[float], cut: int
) -> None:
    """Labels and inputs computed from data truncated at a cut equal the full-history ones up to
    the cut (breadth recomputed from the truncated closes too)."""
    levels = _levels(np.asarray(returns))
    n = levels.size
    cut = min(cut, n)
    noise = np.asarray(symbol_noise[:n])
    closes = pl.concat(
        [
            _daily(levels * np.exp(sign * noise)).select(
                pl.lit(symbol).alias("symbol"), "ts", pl.col("market_level").alias("close")
            )
            for symbol, sign in (("A", 1.0), ("B", -1.0), ("C", 0.5))
        ]
    )
    index = _daily(levels)
    full = classify_regimes(index, breadth(closes, SMALL, Timeframe.D1), SMALL, Timeframe.D1)
    cut_ts = index["ts"][cut - 1]
    truncated = classify_regimes(
        index.head(cut),
        breadth(closes.filter(pl.col("ts") <= cut_ts), SMALL, Timeframe.D1),
        SMALL,
        Timeframe.D1,
    )
    assert_frame_equal(truncated, full.head(cut), check_exact=True)


# -- evaluation ----------------------------------------------------------------------------------


def _frame(labels: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": [T0 + timedelta(minutes=i) for i in range(len(labels))], "regime": labels}
    )


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(REGIMES), st.sampled_from(REGIMES)), min_size=1, max_size=200
    )
)
def test_evaluation_matches_scikit_learn(pairs: list[tuple[str, str]]) -> None:
    truth = [t for t, _ in pairs]
    predicted = [p for _, p in pairs]
    result = evaluate_regimes(_frame(predicted), _frame(truth))
    assert result.n_bars == len(pairs)
    assert result.macro_f1 == pytest.approx(
        f1_score(truth, predicted, average="macro", zero_division=0.0)
    )
    per_class = f1_score(truth, predicted, labels=REGIMES, average=None, zero_division=0.0)
    assert list(result.f1_by_regime.values()) == pytest.approx(list(per_class))
    expected = confusion_matrix(truth, predicted, labels=REGIMES)
    assert result.confusion["true_regime"].to_list() == REGIMES
    assert result.confusion.select(REGIMES).to_numpy().tolist() == expected.tolist()
    assert sum(result.support_by_regime.values()) == len(pairs)


def test_evaluation_joins_on_ts_and_measures_crash_detection_lags() -> None:
    truth = ["bull", "crash", "crash", "crash", "bear", "crash", "crash", "bull"]
    predicted = ["bull", "volatile", "crash", "crash", "bear", "bear", "bear", "bull"]
    result = evaluate_regimes(_frame(predicted), _frame(truth).head(7))
    assert result.n_bars == 7
    assert result.crash_lags_bars == (1, None)
    assert result.f1_by_regime["bull"] == 1.0
    perfect = evaluate_regimes(_frame(truth), _frame(truth))
    assert perfect.macro_f1 == 1.0
    assert perfect.accuracy == 1.0


def test_evaluation_rejects_unknown_regimes_and_disjoint_frames() -> None:
    with pytest.raises(InputSchemaError, match="unknown regimes"):
        evaluate_regimes(_frame(["sideways"]), _frame(["bull"]))
    later = _frame(["bull"]).with_columns(pl.col("ts") + timedelta(days=1))
    with pytest.raises(InputSchemaError, match="share no ts"):
        evaluate_regimes(later, _frame(["bull"]))


# -- held-out accuracy ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def held_out() -> tuple[pl.DataFrame, pl.DataFrame]:
    index, breadth_frame, truth = _synthetic(
        HELD_OUT_SEED, HELD_OUT_SPAN, ("SYNA", "SYNB", "SYNC", "SYND")
    )
    return classify_regimes(index, breadth_frame), truth


def test_macro_f1_on_a_held_out_seed_is_far_above_chance(
    held_out: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    """The defaults were tuned on seeds 11-22. On the 23 seeds in 100-137 whose 2023 has all five
    regimes (four symbols), macro-F1 had median 0.60, minimum 0.35 and two below 0.45; this seed
    (the first of them, chosen before scoring) scores 0.55. The floor 0.45 is more than twice
    chance (0.2) and catches a detector that lost a regime or its volatility calibration."""
    predicted, truth = held_out
    assert set(truth["regime"]) == set(REGIMES)
    result = evaluate_regimes(predicted, truth)
    assert result.macro_f1 >= HELD_OUT_MACRO_F1_FLOOR


def test_every_held_out_crash_is_flagged_within_half_a_session(
    held_out: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    predicted, truth = held_out
    lags = evaluate_regimes(predicted, truth).crash_lags_bars
    assert lags
    assert all(lag is not None and lag <= 195 for lag in lags), lags
