"""Performance metrics: checked against empyrical-reloaded, hand-made cases and invariants."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import empyrical as ep  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.stats import norm

from tests.performance_kit import (
    empty_fills,
    empty_trades,
    equity_from_daily_returns,
    make_backtest_frames,
    trades_with_pnls,
)
from trader_runtime.performance.metrics import (
    deflated_sharpe_ratio,
    excess_kurtosis,
    expected_max_sharpe,
    performance_metrics,
    probabilistic_sharpe_ratio,
    sharpe_per_period,
    skewness,
)
from trader_runtime.performance.returns import (
    EQUITY_COLUMNS,
    FILLS_COLUMNS,
    RECOVERY_RTOL,
    PerformanceInputError,
    daily_returns,
    drawdown,
    max_drawdown_duration,
    wealth_index,
)

REQUIRED_KEYS = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration_days",
    "win_rate",
    "profit_factor",
    "expectancy_usd",
    "avg_win_usd",
    "avg_loss_usd",
    "n_trades",
    "turnover",
    "exposure",
    "tail_ratio",
    "var_95",
    "cvar_95",
    "skew",
    "kurtosis",
    "alpha",
    "beta",
    "information_ratio",
    "probabilistic_sharpe",
    "deflated_sharpe",
    "costs_usd",
    "commission_usd",
    "spread_cost_usd",
    "impact_cost_usd",
    "n_days",
)


def _seeded_returns(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bench = 0.0004 + 0.009 * rng.standard_t(5, n)
    strat = 0.0003 + 0.6 * bench + 0.007 * rng.standard_t(4, n)
    return strat, bench


def _metrics_of_returns(r: np.ndarray, b: np.ndarray | None = None, **kw: int) -> dict[str, float]:
    return performance_metrics(equity_from_daily_returns(r, b), empty_fills(), empty_trades(), **kw)


def _equity_frame(ts: list[datetime], values: list[float]) -> pl.DataFrame:
    n = len(ts)
    return pl.DataFrame(
        {
            "ts": ts,
            "equity_usd": values,
            "cash_usd": values,
            "gross_exposure_usd": [0.0] * n,
            "net_exposure_usd": [0.0] * n,
            "benchmark_equity_usd": values,
            "regime": ["bull"] * n,
        },
        schema=EQUITY_COLUMNS,
    )


# --- daily returns -----------------------------------------------------------------------------


def test_daily_returns_use_the_last_bar_of_each_new_york_session() -> None:
    ts = [
        datetime(2024, 3, 4, 15, 0, tzinfo=UTC),
        datetime(2024, 3, 4, 21, 0, tzinfo=UTC),  # 16:00 New York
        datetime(2024, 3, 5, 0, 30, tzinfo=UTC),  # 19:30 New York on the 4th: same session
        datetime(2024, 3, 5, 15, 0, tzinfo=UTC),
        datetime(2024, 3, 5, 21, 0, tzinfo=UTC),
    ]
    rets = daily_returns(_equity_frame(ts, [100.0, 104.0, 105.0, 90.0, 94.5]))
    assert rets["session"].to_list() == [
        datetime(2024, 3, 4).date(),
        datetime(2024, 3, 5).date(),
    ]
    assert rets["strategy_return"].to_list() == pytest.approx([0.05, -0.1])


def test_daily_bars_give_one_return_fewer_than_sessions_unless_anchored() -> None:
    eq = equity_from_daily_returns([0.01, -0.02, 0.03])
    assert daily_returns(eq)["strategy_return"].to_list() == pytest.approx([0.01, -0.02, 0.03])
    anchored = daily_returns(eq, initial_equity_usd=50_000.0)["strategy_return"].to_list()
    assert anchored == pytest.approx([1.0, 0.01, -0.02, 0.03])


# --- against empyrical -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_return_and_risk_metrics_match_empyrical(seed: int) -> None:
    r, b = _seeded_returns(seed)
    m = _metrics_of_returns(r, b)
    idx = pd.bdate_range("2020-01-01", periods=r.size)
    rs, bs = pd.Series(r, index=idx), pd.Series(b, index=idx)
    alpha, beta = ep.alpha_beta(rs, bs)
    expected = {
        "total_return": ep.cum_returns_final(rs),
        "cagr": ep.annual_return(rs),
        "annual_volatility": ep.annual_volatility(rs),
        "sharpe": ep.sharpe_ratio(rs),
        "sortino": ep.sortino_ratio(rs),
        "max_drawdown": ep.max_drawdown(rs),
        "calmar": ep.calmar_ratio(rs),
        "alpha": alpha,
        "beta": beta,
        "tail_ratio": ep.tail_ratio(rs),
        "var_95": ep.value_at_risk(rs),
        "cvar_95": ep.conditional_value_at_risk(rs),
        "information_ratio": ep.excess_sharpe(rs, bs) * math.sqrt(252),
        "benchmark_sharpe": ep.sharpe_ratio(bs),
        "benchmark_max_drawdown": ep.max_drawdown(bs),
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(float(value), rel=1e-8, abs=1e-12), key
    assert m["n_returns"] == r.size


def test_annualisation_follows_periods_per_year() -> None:
    r, b = _seeded_returns(7, n=104)
    m = _metrics_of_returns(r, b, periods_per_year=52)
    rs, bs = pd.Series(r), pd.Series(b)
    assert m["sharpe"] == pytest.approx(ep.sharpe_ratio(rs, annualization=52), rel=1e-9)
    assert m["cagr"] == pytest.approx(ep.annual_return(rs, annualization=52), rel=1e-9)
    assert m["alpha"] == pytest.approx(ep.alpha(rs, bs, annualization=52), rel=1e-8)
    assert m["sortino"] == pytest.approx(ep.sortino_ratio(rs, annualization=52), rel=1e-9)


def test_skew_and_kurtosis_are_biased_sample_moments_with_excess_kurtosis() -> None:
    r, _ = _seeded_returns(3)
    d = r - r.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    m = _metrics_of_returns(r)
    assert m["skew"] == pytest.approx(m3 / m2**1.5, rel=1e-9)
    assert m["kurtosis"] == pytest.approx(m4 / m2**2 - 3.0, rel=1e-9)


# --- hand-made cases ---------------------------------------------------------------------------


def _returns_of_path(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[1:] / v[:-1] - 1.0


def test_known_drawdown_depth_and_duration() -> None:
    # peak 110 on day 1, trough 88 on day 3, back to 110 on day 5: 20% deep, 4 sessions long
    m = _metrics_of_returns(_returns_of_path([100, 110, 99, 88, 99, 110, 121, 115]))
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["max_drawdown_duration_days"] == 4
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.2)


def test_an_unrecovered_drawdown_lasts_until_the_last_session() -> None:
    m = _metrics_of_returns(_returns_of_path([100, 101, 95, 90, 92, 93, 94]))
    assert m["max_drawdown"] == pytest.approx(90 / 101 - 1)
    assert m["max_drawdown_duration_days"] == 5


def test_known_trade_statistics() -> None:
    trades = trades_with_pnls([100.0, -50.0, 200.0, -25.0, 0.0])
    m = performance_metrics(equity_from_daily_returns([0.0] * 6), empty_fills(), trades)
    assert m["n_trades"] == 5
    assert m["profit_factor"] == pytest.approx(300.0 / 75.0)
    assert m["win_rate"] == pytest.approx(2 / 5)  # a zero P&L trade is not a win
    assert m["expectancy_usd"] == pytest.approx(45.0)
    assert m["avg_win_usd"] == pytest.approx(150.0)
    assert m["avg_loss_usd"] == pytest.approx(-37.5)


def test_turnover_exposure_and_costs_of_a_known_book() -> None:
    eq = equity_from_daily_returns([0.0] * 9).with_columns(
        gross_exposure_usd=pl.lit(50_000.0), net_exposure_usd=pl.lit(20_000.0)
    )
    fill = {
        "ts": eq["ts"][3],
        "symbol": "AAA",
        "model": "m",
        "qty": 250.0,
        "price_usd": 100.0,
        "notional_usd": 25_000.0,
        "commission_usd": 1.25,
        "spread_cost_usd": 2.5,
        "impact_cost_usd": 1.25,
        "reason": "entry",
    }
    fills = pl.DataFrame([fill, fill | {"qty": -250.0, "reason": "exit"}], schema=FILLS_COLUMNS)
    m = performance_metrics(eq, fills, empty_trades())
    assert m["n_days"] == 10
    assert m["turnover"] == pytest.approx(50_000.0 / 10 * 252 / 100_000.0)
    assert m["exposure"] == pytest.approx(0.5)
    assert m["net_exposure"] == pytest.approx(0.2)
    assert m["costs_usd"] == pytest.approx(10.0)
    assert (m["commission_usd"], m["spread_cost_usd"], m["impact_cost_usd"]) == pytest.approx(
        (2.5, 5.0, 2.5)
    )
    assert m["costs_bps"] == pytest.approx(10.0 / 50_000.0 * 1e4)


def test_kit_backtest_totals_are_consistent() -> None:
    f = make_backtest_frames(seed=3)
    m = performance_metrics(f.equity, f.fills, f.trades)
    assert m["n_trades"] == f.trades.height
    assert m["trade_pnl_usd"] == pytest.approx(f.trades["pnl_usd"].sum())
    assert m["costs_usd"] == pytest.approx(
        f.fills.select(pl.sum_horizontal("commission_usd", "spread_cost_usd", "impact_cost_usd"))
        .to_series()
        .sum()
    )
    first, last = f.equity["equity_usd"][0], f.equity["equity_usd"][-1]
    assert m["total_return"] == pytest.approx(last / first - 1.0)
    assert m["n_days"] == 40
    assert m["turnover"] > 0
    assert 0 < m["exposure"] < 1


# --- degenerate inputs -------------------------------------------------------------------------

_ONE_BAR = [datetime(2024, 3, 4, 21, 0, tzinfo=UTC)]
_ONE_SESSION = [datetime(2024, 3, 4, h, 0, tzinfo=UTC) for h in (15, 18, 21)]


@pytest.mark.parametrize(
    "equity",
    [
        pytest.param(equity_from_daily_returns([0.0] * 10), id="flat"),
        pytest.param(_equity_frame(_ONE_BAR, [100.0]), id="one-bar"),
        pytest.param(_equity_frame(_ONE_SESSION, [100.0, 99.0, 101.0]), id="one-session"),
        pytest.param(pl.DataFrame(), id="empty"),
    ],
)
def test_degenerate_inputs_give_floats_for_every_metric(equity: pl.DataFrame) -> None:
    m = performance_metrics(equity, pl.DataFrame(), pl.DataFrame(), n_trials=5)
    assert set(REQUIRED_KEYS) <= set(m)
    assert all(isinstance(v, float) for v in m.values())
    assert m["n_trades"] == 0
    assert m["costs_usd"] == 0
    assert m["turnover"] == 0
    assert math.isnan(m["win_rate"])
    assert math.isnan(m["profit_factor"])
    assert math.isnan(m["sharpe"])


def test_flat_equity_has_no_drawdown_and_undefined_ratios() -> None:
    m = performance_metrics(equity_from_daily_returns([0.0] * 10), empty_fills(), empty_trades())
    assert (m["total_return"], m["max_drawdown"], m["max_drawdown_duration_days"]) == (0, 0, 0)
    assert m["cagr"] == 0
    for key in ("sortino", "calmar", "tail_ratio", "skew", "kurtosis", "beta", "alpha"):
        assert math.isnan(m[key]), key
    assert math.isnan(m["probabilistic_sharpe"])


def test_single_bar_and_empty_equity() -> None:
    one = performance_metrics(_equity_frame(_ONE_BAR, [100.0]), empty_fills(), empty_trades())
    assert (one["total_return"], one["max_drawdown"], one["n_days"], one["n_returns"]) == (
        0,
        0,
        1,
        0,
    )
    assert math.isnan(one["cagr"])
    empty = performance_metrics(pl.DataFrame(), empty_fills(), empty_trades())
    assert empty["n_days"] == 0
    assert math.isnan(empty["total_return"])
    assert math.isnan(empty["max_drawdown"])


def test_one_session_of_bars_is_one_return() -> None:
    m = performance_metrics(
        _equity_frame(_ONE_SESSION, [100.0, 99.0, 101.0]), empty_fills(), empty_trades()
    )
    assert m["n_days"] == 1
    assert m["n_returns"] == 1
    assert m["total_return"] == pytest.approx(0.01)
    assert m["max_drawdown"] == 0  # daily closes only: the intraday dip is not a session close


def test_a_frame_missing_a_column_is_rejected() -> None:
    eq = equity_from_daily_returns([0.01, 0.02]).drop("regime")
    with pytest.raises(PerformanceInputError, match="regime"):
        performance_metrics(eq, empty_fills(), empty_trades())


def test_non_finite_equity_is_rejected() -> None:
    eq = equity_from_daily_returns([0.01, 0.02]).with_columns(
        equity_usd=pl.Series([1.0, float("nan"), 2.0])
    )
    with pytest.raises(PerformanceInputError, match="non-finite"):
        performance_metrics(eq, empty_fills(), empty_trades())


# --- probabilistic and deflated Sharpe ratios ----------------------------------------------------


def test_psr_is_one_half_when_the_sharpe_ratio_equals_the_benchmark() -> None:
    psr = probabilistic_sharpe_ratio(
        0.1, n_obs=250, skew=-0.5, excess_kurtosis=2.0, benchmark_sharpe=0.1
    )
    assert psr == pytest.approx(0.5)


def test_psr_matches_its_closed_form() -> None:
    sr, n, g3, g4 = 0.08, 500, -0.4, 5.0
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    psr = probabilistic_sharpe_ratio(sr, n_obs=n, skew=g3, excess_kurtosis=g4 - 3)
    assert psr == pytest.approx(norm.cdf(z), rel=1e-12)


def test_deflated_sharpe_reproduces_the_published_example() -> None:
    # Bailey & Lopez de Prado (2014), numerical example: annualised SR 2.5 over 1250 daily
    # returns (250 a year), skew -3, kurtosis 10, 100 trials whose annualised SRs vary by 1/2.
    dsr = deflated_sharpe_ratio(
        2.5 / math.sqrt(250),
        n_obs=1250,
        skew=-3.0,
        excess_kurtosis=7.0,
        n_trials=100,
        trial_sharpe_variance=0.5 / 250,
    )
    assert dsr == pytest.approx(0.9004, abs=5e-4)


@pytest.mark.parametrize("n_trials", [10, 100, 1000])
def test_expected_max_sharpe_approximates_the_mean_maximum_of_normals(n_trials: int) -> None:
    exact, _ = quad(
        lambda x: x * n_trials * norm.pdf(x) * norm.cdf(x) ** (n_trials - 1), -12, 12, limit=200
    )
    assert expected_max_sharpe(n_trials, 4.0) == pytest.approx(2.0 * exact, rel=0.03)


def test_one_trial_does_not_deflate_and_bad_trial_counts_are_refused() -> None:
    psr = probabilistic_sharpe_ratio(0.05, n_obs=300, skew=0.1, excess_kurtosis=1.0)
    one = deflated_sharpe_ratio(
        0.05, n_obs=300, skew=0.1, excess_kurtosis=1.0, n_trials=1, trial_sharpe_variance=0.3
    )
    assert one == psr
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 1.0)
    with pytest.raises(ValueError, match="variance"):
        expected_max_sharpe(3, -1.0)


def test_metrics_take_the_trials_variance_in_annualised_units() -> None:
    r, b = _seeded_returns(5, n=500)
    m = _metrics_of_returns(r, b)
    deflated = performance_metrics(
        equity_from_daily_returns(r, b),
        empty_fills(),
        empty_trades(),
        n_trials=50,
        trial_sharpe_variance=1.0,
    )
    expected = deflated_sharpe_ratio(
        sharpe_per_period(r),
        n_obs=r.size,
        skew=skewness(r),
        excess_kurtosis=excess_kurtosis(r),
        n_trials=50,
        trial_sharpe_variance=1.0 / 252,
    )
    assert deflated["deflated_sharpe"] == pytest.approx(expected, rel=1e-12)
    assert (
        deflated["deflated_sharpe"] < m["probabilistic_sharpe"] == deflated["probabilistic_sharpe"]
    )
    assert m["deflated_sharpe"] == m["probabilistic_sharpe"]


# --- invariants --------------------------------------------------------------------------------

_returns = st.lists(
    st.floats(min_value=-0.99, max_value=1.0, allow_nan=False), min_size=1, max_size=80
).map(lambda xs: np.asarray(xs, dtype=np.float64))


@given(_returns)
def test_max_drawdown_lies_in_minus_one_to_zero_and_duration_fits_the_path(r: np.ndarray) -> None:
    wealth = wealth_index(r)
    dd = drawdown(wealth)
    assert -1.0 <= dd.min() <= 0.0
    duration = max_drawdown_duration(wealth)
    assert 0 <= duration <= r.size
    never_below_peak = np.all(wealth >= np.maximum.accumulate(wealth) * (1 - RECOVERY_RTOL))
    assert (duration == 0) == bool(never_below_peak)


@pytest.mark.filterwarnings("error")
@settings(max_examples=200)
@given(_returns.filter(lambda r: r.size >= 4))
@example(np.asarray([0.0, 0.5, -0.5, 1.1125369292536007e-308]))  # a subnormal mean: no warning
def test_psr_is_a_probability_and_deflation_never_raises_it(r: np.ndarray) -> None:
    sr, g3, g4 = sharpe_per_period(r), skewness(r), excess_kurtosis(r)
    psr = probabilistic_sharpe_ratio(sr, n_obs=r.size, skew=g3, excess_kurtosis=g4)
    if math.isnan(psr):
        return
    assert 0.0 <= psr <= 1.0
    for n_trials in (2, 10, 1000):
        dsr = deflated_sharpe_ratio(
            sr,
            n_obs=r.size,
            skew=g3,
            excess_kurtosis=g4,
            n_trials=n_trials,
            trial_sharpe_variance=0.01,
        )
        assert 0.0 <= dsr <= psr
