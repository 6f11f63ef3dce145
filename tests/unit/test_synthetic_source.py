"""Tests of the seeded, regime-switching synthetic market source."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from trader_runtime.errors import ConfigError, UnknownSymbolError
from trader_runtime.market.bars import BAR_SCHEMA
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest, MarketDataSource
from trader_runtime.sources.synthetic import (
    DEFAULT_TRANSITION_MATRIX,
    REGIME_ORDER,
    Regime,
    RegimeParams,
    SyntheticMarketConfig,
    SyntheticSource,
    stationary_distribution,
)

WINTER = (date(2024, 1, 2), date(2024, 2, 29))
HALF_YEAR = (date(2024, 1, 1), date(2024, 6, 30))
THREE_YEARS = (date(2021, 1, 1), date(2023, 12, 31))
LOOKBACK = 15


def _request(symbol: str, span: tuple[date, date]) -> BarRequest:
    return BarRequest(symbol=symbol, start=span[0], end=span[1])


def _log_returns(bars: pl.DataFrame) -> npt.NDArray[np.float64]:
    return np.asarray(np.log(bars["close"].to_numpy() / bars["open"].to_numpy()), dtype=np.float64)


def _past_sum_and_next(
    returns: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sum of the ``LOOKBACK`` returns before each bar, and that bar's return."""
    trailing = np.convolve(returns, np.ones(LOOKBACK))[: returns.size]
    return trailing[LOOKBACK - 1 : -1], returns[LOOKBACK:]


def _momentum_correlation(config: SyntheticMarketConfig, symbols: tuple[str, ...]) -> float:
    source = SyntheticSource(config)
    pasts, nexts = [], []
    for symbol in symbols:
        past, following = _past_sum_and_next(_log_returns(source.load(_request(symbol, HALF_YEAR))))
        pasts.append(past)
        nexts.append(following)
    return float(np.corrcoef(np.concatenate(pasts), np.concatenate(nexts))[0, 1])


# -- the source interface -----------------------------------------------------------------------


def test_synthetic_source_satisfies_the_market_data_source_protocol() -> None:
    source = SyntheticSource()
    assert isinstance(source, MarketDataSource)
    assert source.name == "synthetic"
    assert source.base_timeframe is Timeframe.M1
    assert source.has_symbol("ANYTHING")
    assert not source.has_symbol("")


def test_loading_an_empty_symbol_raises_unknown_symbol() -> None:
    with pytest.raises(UnknownSymbolError):
        SyntheticSource().load(_request("", WINTER))


def test_bars_have_exactly_the_bar_schema_and_are_sorted_by_ts() -> None:
    bars = SyntheticSource().load(_request("AAPL", WINTER))
    assert dict(bars.schema) == BAR_SCHEMA
    assert bars["symbol"].unique().to_list() == ["AAPL"]
    assert bars["ts"].is_sorted()
    assert bars["ts"].n_unique() == bars.height
    assert bars.null_count().sum_horizontal().item() == 0


def test_a_range_without_sessions_gives_an_empty_frame_with_the_bar_schema() -> None:
    weekend = (date(2024, 1, 6), date(2024, 1, 7))
    source = SyntheticSource()
    bars = source.load(_request("AAPL", weekend))
    assert bars.height == 0
    assert dict(bars.schema) == BAR_SCHEMA
    assert source.true_regimes(*weekend).height == 0
    assert source.planted_signal(_request("AAPL", weekend)).height == 0


# -- determinism --------------------------------------------------------------------------------


def test_the_same_config_and_request_give_identical_bars() -> None:
    first = SyntheticSource(SyntheticMarketConfig(seed=3)).load(_request("MSFT", WINTER))
    second = SyntheticSource(SyntheticMarketConfig(seed=3)).load(_request("MSFT", WINTER))
    assert_frame_equal(first, second)


def test_a_different_seed_gives_different_bars() -> None:
    first = SyntheticSource(SyntheticMarketConfig(seed=3)).load(_request("MSFT", WINTER))
    second = SyntheticSource(SyntheticMarketConfig(seed=4)).load(_request("MSFT", WINTER))
    assert first["ts"].equals(second["ts"])
    assert not np.allclose(first["close"].to_numpy(), second["close"].to_numpy())


def test_different_symbols_get_different_bars() -> None:
    source = SyntheticSource()
    first = source.load(_request("AAA", WINTER))
    second = source.load(_request("BBB", WINTER))
    assert not np.allclose(first["close"].to_numpy(), second["close"].to_numpy())


def test_a_symbol_generated_alone_equals_the_same_symbol_generated_after_another() -> None:
    config = SyntheticMarketConfig(signal_strength=0.2)
    alone = SyntheticSource(config).load(_request("AAA", WINTER))
    after_other = SyntheticSource(config)
    after_other.load(_request("BBB", WINTER))
    assert_frame_equal(after_other.load(_request("AAA", WINTER)), alone)


def test_extending_end_leaves_earlier_bars_regimes_and_signal_unchanged() -> None:
    config = SyntheticMarketConfig(signal_strength=0.2)
    short = _request("AAA", (date(2024, 1, 2), date(2024, 1, 31)))
    long = _request("AAA", (date(2024, 1, 2), date(2024, 3, 28)))
    short_source, long_source = SyntheticSource(config), SyntheticSource(config)

    short_bars = short_source.load(short)
    long_bars = long_source.load(long)
    assert long_bars.height > short_bars.height
    assert_frame_equal(long_bars.head(short_bars.height), short_bars)

    short_regimes = short_source.true_regimes(short.start, short.end)
    long_regimes = long_source.true_regimes(long.start, long.end)
    assert_frame_equal(long_regimes.head(short_regimes.height), short_regimes)

    short_signal = short_source.planted_signal(short)
    long_signal = long_source.planted_signal(long)
    assert_frame_equal(long_signal.head(short_signal.height), short_signal)


# -- calendar -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2024, 11, 25), date(2024, 12, 6)),  # Thanksgiving and the early close after it
        (date(2024, 7, 1), date(2024, 7, 8)),  # early close on 3 July, holiday on 4 July
        (date(2024, 3, 4), date(2024, 3, 15)),  # US daylight saving starts 10 March
    ],
)
def test_bars_lie_exactly_on_the_calendars_regular_hours_minute_closes(
    start: date, end: date
) -> None:
    bars = SyntheticSource().load(BarRequest("AAA", start, end))
    assert bars["ts"].equals(TradingCalendar(start, end).minute_bar_closes(), check_names=False)


def test_the_day_after_thanksgiving_closes_at_13_new_york_time() -> None:
    bars = SyntheticSource().load(BarRequest("AAA", date(2024, 11, 29), date(2024, 11, 29)))
    assert bars.height == 210
    assert bars["ts"].min() == datetime(2024, 11, 29, 14, 31, tzinfo=UTC)
    assert bars["ts"].max() == datetime(2024, 11, 29, 18, 0, tzinfo=UTC)


def test_there_are_no_bars_on_independence_day() -> None:
    bars = SyntheticSource().load(BarRequest("AAA", date(2024, 7, 1), date(2024, 7, 8)))
    days = set(bars["ts"].dt.convert_time_zone("America/New_York").dt.date().to_list())
    assert date(2024, 7, 4) not in days
    assert days == {date(2024, 7, d) for d in (1, 2, 3, 5, 8)}


# -- bar sanity ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    symbol=st.text(min_size=1, max_size=8),
    signal_strength=st.floats(min_value=0.0, max_value=0.49),
)
def test_bars_are_internally_consistent_for_any_seed_symbol_and_signal(
    seed: int, symbol: str, signal_strength: float
) -> None:
    config = SyntheticMarketConfig(seed=seed, signal_strength=signal_strength)
    bars = SyntheticSource(config).load(_request(symbol, (date(2020, 3, 9), date(2020, 3, 20))))
    open_, high, low, close = (bars[c].to_numpy() for c in ("open", "high", "low", "close"))
    prices = np.stack([open_, high, low, close])
    assert np.isfinite(prices).all()
    assert (prices > 0).all()
    assert (low <= np.minimum(open_, close)).all()
    assert (high >= np.maximum(open_, close)).all()
    volume = bars["volume"].to_numpy()
    assert (volume >= 1).all()
    assert np.array_equal(volume, np.round(volume))
    assert (bars["trade_count"].to_numpy() >= 1).all()
    vwap = bars["vwap"].to_numpy()
    assert (vwap >= low).all()
    assert (vwap <= high).all()


def test_each_bar_opens_at_the_previous_close_except_at_the_session_open() -> None:
    bars = SyntheticSource().load(_request("AAA", WINTER))
    session = bars["ts"].dt.convert_time_zone("America/New_York").dt.date().to_numpy()
    same_session = session[1:] == session[:-1]
    open_, close = bars["open"].to_numpy(), bars["close"].to_numpy()
    np.testing.assert_allclose(open_[1:][same_session], close[:-1][same_session], rtol=1e-12)
    gaps = np.abs(np.log(open_[1:][~same_session] / close[:-1][~same_session]))
    assert (gaps > 0).all()


# -- regimes ------------------------------------------------------------------------------------


def test_default_transition_matrix_gives_the_documented_expected_durations() -> None:
    stay = np.diag(np.asarray(DEFAULT_TRANSITION_MATRIX))
    durations = dict(zip(REGIME_ORDER, 1.0 / (1.0 - stay), strict=True))
    assert durations[Regime.BULL] == pytest.approx(40)
    assert durations[Regime.BEAR] == pytest.approx(20)
    assert durations[Regime.VOLATILE] == pytest.approx(10)
    assert durations[Regime.RANGING] == pytest.approx(20)
    assert durations[Regime.CRASH] == pytest.approx(3, abs=0.1)
    stationary = stationary_distribution(DEFAULT_TRANSITION_MATRIX)
    assert stationary.argmin() == REGIME_ORDER.index(Regime.CRASH)
    np.testing.assert_allclose(stationary @ np.asarray(DEFAULT_TRANSITION_MATRIX), stationary)


def test_all_five_regimes_occur_over_three_years_and_crash_is_rarest() -> None:
    regimes = SyntheticSource().true_regimes(*THREE_YEARS)
    counts = dict(regimes.group_by("regime").len().iter_rows())
    assert set(counts) == {r.value for r in Regime}
    assert min(counts, key=lambda r: counts[r]) == Regime.CRASH.value


def test_regimes_switch_only_between_sessions() -> None:
    regimes = SyntheticSource().true_regimes(*HALF_YEAR)
    per_session = regimes.group_by(
        pl.col("ts").dt.convert_time_zone("America/New_York").dt.date()
    ).agg(pl.col("regime").n_unique())
    assert per_session["regime"].max() == 1
    assert regimes["regime"].n_unique() > 1


def test_true_regimes_has_one_row_per_bar_whatever_the_symbol() -> None:
    source = SyntheticSource()
    regimes = source.true_regimes(*WINTER)
    assert regimes.columns == ["ts", "regime"]
    assert regimes.schema["regime"] == pl.String()
    for symbol in ("AAA", "ZZZ"):
        assert regimes["ts"].equals(source.load(_request(symbol, WINTER))["ts"])
    assert_frame_equal(SyntheticSource().true_regimes(*WINTER), regimes)


def test_realised_volatility_is_higher_in_crash_and_volatile_than_in_bull_and_ranging() -> None:
    source = SyntheticSource()
    frame = pl.DataFrame(
        {
            "regime": source.true_regimes(*THREE_YEARS)["regime"],
            "r": _log_returns(source.load(_request("AAA", THREE_YEARS))),
        }
    )
    vol = dict(frame.group_by("regime").agg(pl.col("r").std()).iter_rows())
    calm = max(vol["bull"], vol["ranging"])
    assert vol["crash"] > 1.5 * calm
    assert vol["volatile"] > 1.5 * calm


def test_mean_return_is_higher_in_bull_than_in_bear() -> None:
    # Quiet bull and bear regimes with opposite drifts, so three years measure the drift sharply.
    quiet = replace(
        SyntheticMarketConfig(),
        regime_params=(
            RegimeParams(drift_annual=0.5, vol_annual=0.05),
            RegimeParams(drift_annual=-0.5, vol_annual=0.05),
            RegimeParams(drift_annual=0.0, vol_annual=0.30),
            RegimeParams(drift_annual=0.0, vol_annual=0.10, mean_reversion_per_minute=0.002),
            RegimeParams(drift_annual=-3.0, vol_annual=0.60),
        ),
        idio_vol_annual_range=(0.01, 0.01),
    )
    source = SyntheticSource(quiet)
    frame = pl.DataFrame(
        {
            "regime": source.true_regimes(*THREE_YEARS)["regime"],
            "r": _log_returns(source.load(_request("AAA", THREE_YEARS))),
        }
    )
    mean = dict(frame.group_by("regime").agg(pl.col("r").mean()).iter_rows())
    assert mean["bull"] > 0 > mean["bear"]


# -- cross-section and dynamics -----------------------------------------------------------------


def test_two_symbols_minute_returns_are_positively_correlated() -> None:
    source = SyntheticSource()
    first = _log_returns(source.load(_request("AAA", HALF_YEAR)))
    second = _log_returns(source.load(_request("BBB", HALF_YEAR)))
    assert np.corrcoef(first, second)[0, 1] > 0.2


def test_absolute_returns_cluster() -> None:
    returns = np.abs(_log_returns(SyntheticSource().load(_request("AAA", HALF_YEAR))))
    # Measured ~0.23; without stochastic volatility (U-shape and regimes only) it is ~0.07.
    assert np.corrcoef(returns[:-1], returns[1:])[0, 1] > 0.15


def test_volume_is_u_shaped_within_the_day() -> None:
    bars = SyntheticSource().load(_request("AAA", WINTER))
    local = bars["ts"].dt.convert_time_zone("America/New_York")
    minutes_after_open = (local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute()) - (9 * 60 + 30)
    part = (
        pl.when(minutes_after_open <= 30)
        .then(pl.lit("open"))
        .when(minutes_after_open > 360)
        .then(pl.lit("close"))
        .when(minutes_after_open.is_between(150, 240))
        .then(pl.lit("middle"))
    )
    mean = dict(
        bars.group_by(part.alias("part")).agg(pl.col("volume").mean()).drop_nulls().iter_rows()
    )
    assert mean["open"] > 1.5 * mean["middle"]
    assert mean["close"] > 1.5 * mean["middle"]


# -- planted signal -----------------------------------------------------------------------------


def test_the_null_market_has_no_momentum_and_no_planted_signal() -> None:
    config = SyntheticMarketConfig(signal_strength=0.0)
    assert abs(_momentum_correlation(config, ("AAA", "BBB", "CCC", "DDD"))) < 0.02
    signal = SyntheticSource(config).planted_signal(_request("AAA", WINTER))
    assert signal.columns == ["ts", "expected_return"]
    assert (signal["expected_return"] == 0.0).all()


def test_a_planted_signal_makes_past_returns_predict_the_next_return() -> None:
    config = SyntheticMarketConfig(signal_strength=0.3)
    assert _momentum_correlation(config, ("AAA", "BBB", "CCC", "DDD")) > 0.03


def test_planted_signal_is_the_momentum_term_of_each_bars_log_return() -> None:
    strength = 0.3
    source = SyntheticSource(SyntheticMarketConfig(signal_strength=strength))
    request = _request("AAA", WINTER)
    bars = source.load(request)
    signal = source.planted_signal(request)
    assert signal["ts"].equals(bars["ts"])
    returns = _log_returns(bars)
    trailing, _ = _past_sum_and_next(returns)
    expected = signal["expected_return"].to_numpy()
    np.testing.assert_allclose(
        expected[LOOKBACK:], strength / LOOKBACK * trailing, rtol=1e-6, atol=1e-12
    )
    assert np.abs(expected).max() > 0


# -- configuration ------------------------------------------------------------------------------


def _rows_with(row: int, values: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    rows = list(DEFAULT_TRANSITION_MATRIX)
    rows[row] = values
    return tuple(rows)


@pytest.mark.parametrize(
    "overrides",
    [
        {"seed": -1},
        {"signal_strength": -0.1},
        {"signal_strength": 0.5},
        {"signal_lookback_bars": 0},
        {"regime_params": (RegimeParams(0.1, 0.2),) * 4},
        {"transition_matrix": _rows_with(0, (0.97, 0.005, 0.008, 0.010, 0.002))},
        {"transition_matrix": _rows_with(1, (1.1, -0.1, 0.0, 0.0, 0.0))},
        {"transition_matrix": DEFAULT_TRANSITION_MATRIX[:4]},
        {"start_regime_probs": (0.5, 0.5, 0.0, 0.0, 0.1)},
        {"factor_loading_range": (1.4, 0.6)},
        {"idio_vol_annual_range": (0.0, 0.2)},
        {"start_price_range": (-1.0, 10.0)},
        {"base_volume_shares_range": (1e5, float("inf"))},
        {"stoch_vol_persistence": 1.0},
        {"vol_of_vol": -0.1},
        {"intraday_decay_minutes": 0.0},
        {"mean_trade_size_shares": 0.0},
        {"volume_noise_sigma": float("nan")},
    ],
)
def test_an_invalid_config_raises_config_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SyntheticMarketConfig(**overrides)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"drift_annual": 0.1, "vol_annual": 0.0},
        {"drift_annual": float("nan"), "vol_annual": 0.2},
        {"drift_annual": 0.1, "vol_annual": 0.2, "mean_reversion_per_minute": 1.0},
        {"drift_annual": 0.1, "vol_annual": 0.2, "volume_multiplier": 0.0},
    ],
)
def test_invalid_regime_params_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RegimeParams(**kwargs)


def test_an_explicit_start_regime_is_honoured() -> None:
    config = SyntheticMarketConfig(start_regime_probs=(0.0, 0.0, 0.0, 0.0, 1.0))
    regimes = SyntheticSource(config).true_regimes(date(2024, 1, 2), date(2024, 1, 2))
    assert regimes["regime"].unique().to_list() == [Regime.CRASH.value]
