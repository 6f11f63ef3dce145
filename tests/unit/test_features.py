from datetime import timedelta

import numpy as np
import polars as pl
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.features_kit import all_timeframes, features_up_to, full_features, minute_bars
from trader_runtime.features.batch import bar_arrays, compute_features, market_index
from trader_runtime.features.indicators import compute_indicator, rolling_skew
from trader_runtime.features.spec import DEFAULT_FEATURE_SET, IndicatorSpec, ind
from trader_runtime.market.timeframes import Timeframe

SPEC = DEFAULT_FEATURE_SET


def test_the_default_set_has_at_least_25_base_indicators_and_50_features() -> None:
    assert len(SPEC.base) >= 25
    names = SPEC.feature_names(Timeframe.M1)
    assert len(names) == 50
    assert len(set(names)) == len(names)
    assert "tf1h_rsi_14" in names
    assert "mkt_beta_120" in names


def test_daily_bars_get_no_higher_timeframe_features() -> None:
    assert SPEC.higher_timeframes_for(Timeframe.D1) == ()
    assert not any(n.startswith("tf") for n in SPEC.feature_names(Timeframe.D1))


def test_the_spec_hash_is_stable_and_changes_with_any_parameter() -> None:
    # Changing this literal means every stored model no longer matches: bump SPEC.version with it.
    assert SPEC.spec_hash == "9d380799b7afd62f"
    assert ind("x", "rsi", a=1, b=2) == ind("x", "rsi", b=2, a=1)
    changed = type(SPEC)(
        version=SPEC.version,
        base=(*SPEC.base[:-1], ind("ret_skew_60", "return_skew", period=61)),
        higher_timeframes=SPEC.higher_timeframes,
        higher=SPEC.higher,
        cross_asset=SPEC.cross_asset,
    )
    assert changed.spec_hash != SPEC.spec_hash


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ind("r", "rsi", period=14), lambda b: talib.RSI(b.close, 14)),
        (ind("a", "adx", period=14), lambda b: talib.ADX(b.high, b.low, b.close, 14)),
        (
            ind("m", "macd_hist", fast=12, slow=26, signal=9),
            lambda b: talib.MACD(b.close)[2] / b.close,
        ),
        (ind("w", "willr", period=14), lambda b: talib.WILLR(b.high, b.low, b.close, 14)),
        (ind("s", "sma_ratio", period=10), lambda b: b.close / talib.SMA(b.close, 10) - 1),
        (
            ind("l", "log_return", lag=5),
            lambda b: np.r_[[np.nan] * 5, np.log(b.close[5:] / b.close[:-5])],
        ),
    ],
)
def test_indicators_are_the_talib_values(spec: IndicatorSpec, expected: object) -> None:
    arrays = bar_arrays(minute_bars("AAA").head(3000))
    ours = compute_indicator(arrays, spec)
    theirs = expected(arrays)  # type: ignore[operator]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15, equal_nan=True)


def test_rolling_skew_matches_the_textbook_moment_formula() -> None:
    rng = np.random.default_rng(0)
    x = np.r_[np.nan, rng.standard_t(4, size=500) * 1e-3]
    ours = rolling_skew(x, 60)
    for t in (60, 200, 500):
        w = x[t - 59 : t + 1]
        d = w - w.mean()
        assert ours[t] == pytest.approx((d**3).mean() / (d**2).mean() ** 1.5, rel=1e-6)
    assert np.isnan(ours[:60]).all()


def test_warm_up_rows_are_nan_and_later_rows_are_complete() -> None:
    feats = full_features().fill_nan(None)
    first_complete = feats.drop_nulls().select(pl.col("ts").min()).item()
    assert feats.filter(pl.col("ts") >= first_complete).null_count().sum_horizontal().item() == 0
    assert feats["rsi_14"].head(14).null_count() == 14


def test_a_minute_row_sees_only_higher_timeframe_bars_that_had_closed() -> None:
    m1 = minute_bars("AAA")
    by_tf = all_timeframes(m1)
    feats = compute_features(by_tf, market=market_index([m1.select("ts", "close")]))
    m5 = by_tf[Timeframe.M5].with_columns(
        r=(pl.col("close").log() - pl.col("close").log().shift(1))
    )
    # 1m rows closing at :31..:34 must carry the 5m bar that closed at :30, not the one at :35
    row = feats.filter(pl.col("ts").dt.minute() == 33).row(40, named=True)
    expected_bar = m5.filter(pl.col("ts") <= row["ts"]).tail(1)
    assert expected_bar["ts"].item().minute == 30
    assert row["tf5m_ret_1"] == pytest.approx(expected_bar["r"].item(), rel=1e-12)
    # a row closing exactly at a 5m close sees that bar (it is complete at that instant)
    next_close = expected_bar["ts"].item() + timedelta(minutes=5)
    on_close = feats.filter(pl.col("ts") == next_close).row(0, named=True)
    newer = m5.filter(pl.col("ts") == next_close)
    assert on_close["tf5m_ret_1"] == pytest.approx(newer["r"].item(), rel=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=50, max_value=len(minute_bars("AAA")) - 2))
def test_features_computed_up_to_any_cut_equal_the_full_history_features(cut: int) -> None:
    full = full_features()
    truncated = features_up_to(cut)
    assert truncated.height == cut + 1
    head = full.head(cut + 1)
    for name in SPEC.feature_names(Timeframe.M1):
        a = truncated[name].to_numpy().astype(np.float64)
        b = head[name].to_numpy().astype(np.float64)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=name)


def test_the_market_index_is_the_mean_one_bar_return_of_the_symbols_trading() -> None:
    ts = pl.Series([1, 2, 3]).cast(pl.Datetime("us", "UTC"))
    a = pl.DataFrame({"ts": ts, "close": [100.0, 110.0, 121.0]})
    b = pl.DataFrame({"ts": ts[1:], "close": [50.0, 25.0]})
    mkt = market_index([a, b])
    r = mkt["market_return"].to_list()
    assert r[0] == 0.0
    assert r[1] == pytest.approx(np.log(1.1))  # b has no previous bar at ts=2
    assert r[2] == pytest.approx((np.log(1.1) + np.log(0.5)) / 2)
    assert mkt["market_level"][-1] == pytest.approx(np.exp(sum(r)))


def test_market_beta_is_the_regression_of_the_stock_on_the_market() -> None:
    rng = np.random.default_rng(5)
    market_r = rng.normal(0, 1e-3, 2000)
    stock_r = 1.7 * market_r + rng.normal(0, 2e-4, 2000)
    close = 50 * np.exp(np.cumsum(stock_r))
    level = np.exp(np.cumsum(market_r))
    ts = pl.Series(range(2000)).cast(pl.Datetime("us", "UTC"))
    bars = pl.DataFrame(
        {
            "symbol": "X",
            "ts": ts,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 1.0,
        }
    )
    market = pl.DataFrame(
        {"ts": ts, "market_return": np.r_[0.0, np.diff(np.log(level))], "market_level": level}
    )
    beta = compute_indicator(bar_arrays(bars, market), ind("b", "market_beta", period=500))
    assert beta[-1] == pytest.approx(1.7, abs=0.05)


def test_a_ratio_with_an_undefined_numerator_stays_undefined() -> None:
    from trader_runtime.features.indicators import safe_ratio

    out = safe_ratio(np.array([np.nan, 1.0, 1.0]), np.array([0.0, 0.0, 2.0]), 9.0)
    assert np.isnan(out[0])
    assert out[1:].tolist() == [9.0, 0.5]
