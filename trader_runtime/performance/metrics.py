"""Performance metrics of a backtest: returns, risk, trades, costs and Sharpe-ratio statistics.

Return and risk statistics are computed on the daily returns of ``returns.daily_returns`` (one per
session close) and follow empyrical's conventions (checked against empyrical-reloaded in the tests):

- ``sharpe`` = mean / std (ddof 1) * sqrt(periods_per_year), risk-free rate 0;
- ``sortino`` = mean * periods_per_year / (sqrt(mean(min(r, 0)^2)) * sqrt(periods_per_year));
- ``cagr`` = (prod(1 + r)) ** (periods_per_year / n) - 1 (empyrical's ``annual_return``);
- ``max_drawdown`` on the wealth path anchored at 1 before the first return (a fraction <= 0);
- ``var_95`` = 5th percentile of daily returns (linear interpolation, ``value_at_risk``);
  ``cvar_95`` = mean of the lowest ``floor((n - 1) * 0.05) + 1`` returns
  (``conditional_value_at_risk``); both are returns, negative for losses;
- ``alpha`` (annualised, compounded: (1 + mean(r - beta * b)) ** periods_per_year - 1) and ``beta``
  (cov / var, population moments) against the buy-and-hold benchmark;
- ``skew`` and ``kurtosis`` are the biased sample moments, kurtosis in excess of the normal's 3.

Degenerate inputs never raise. Counts and sums are 0 (``n_trades``, ``costs_usd``, ``turnover``
without fills). A statistic whose definition divides by zero or needs more data than given is NaN:
ratios of a flat equity curve (returns constant up to ``FLAT_RTOL`` or ``FLAT_ATOL``: ``sharpe``, ``sortino``, ``information_ratio``,
``skew``, ``kurtosis``, ``probabilistic_sharpe``), anything needing two returns with one, trade
averages and ``win_rate`` without trades, ``avg_win_usd`` without wins, ``avg_loss_usd`` and
``profit_factor`` without losses, ``calmar`` without a drawdown, ``tail_ratio`` with a zero 5th
percentile, ``beta`` and ``alpha`` with a flat benchmark. A backtest whose equity is a single point
has ``total_return`` and ``max_drawdown`` 0; an empty equity frame makes them NaN.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy.stats import kurtosis as _scipy_kurtosis
from scipy.stats import norm
from scipy.stats import skew as _scipy_skew

from trader_runtime.performance.returns import (
    FILLS_COLUMNS,
    TRADES_COLUMNS,
    FloatArray,
    conform,
    conform_equity,
    daily_returns,
    drawdown,
    max_drawdown_duration,
    session_closes,
    wealth_index,
)

EULER_GAMMA = 0.5772156649015329
VAR_CUTOFF = 0.05
FLAT_RTOL = 1e-10  # returns spread less than this, relative to their size, count as constant
FLAT_ATOL = 1e-14  # ... or less than this in absolute terms
_NAN = math.nan


# --- Sharpe ratio statistics ----------------------------------------------------------------


def probabilistic_sharpe_ratio(
    sharpe: float,
    *,
    n_obs: int,
    skew: float,
    excess_kurtosis: float,
    benchmark_sharpe: float = 0.0,
) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (Bailey & Lopez de
    Prado 2012):

        PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2))

    with ``g3`` the skewness and ``g4 = excess_kurtosis + 3`` the (Pearson) kurtosis of the
    returns. ``sharpe`` and ``benchmark_sharpe`` are **per period** (not annualised: divide an
    annualised ratio by sqrt(periods_per_year)); ``n_obs`` is the number of returns. NaN when
    ``n_obs < 2``, an input is not finite, or the variance term is not positive.
    """
    values = (sharpe, skew, excess_kurtosis, benchmark_sharpe)
    if n_obs < 2 or not all(math.isfinite(v) for v in values):
        return _NAN
    variance_term = 1.0 - skew * sharpe + (excess_kurtosis + 2.0) / 4.0 * sharpe**2
    if variance_term <= 0.0:
        return _NAN
    z = (sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(variance_term)
    return float(norm.cdf(z))


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios under the null of zero skill (Bailey &
    Lopez de Prado 2014, the False Strategy theorem):

        SR0 = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))

    ``gamma`` is the Euler-Mascheroni constant and ``V`` the variance of the trials' Sharpe
    ratios, in the units of the ratios (square them consistently: per-period variance for
    per-period ratios). 0 for a single trial or zero variance.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if trial_sharpe_variance < 0.0:
        raise ValueError(f"trial_sharpe_variance must be >= 0, got {trial_sharpe_variance}")
    if n_trials == 1 or trial_sharpe_variance == 0.0:
        return 0.0
    z1 = float(norm.ppf(1.0 - 1.0 / n_trials))
    z2 = float(norm.ppf(1.0 - 1.0 / (n_trials * math.e)))
    return math.sqrt(trial_sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(
    sharpe: float,
    *,
    n_obs: int,
    skew: float,
    excess_kurtosis: float,
    n_trials: int,
    trial_sharpe_variance: float,
) -> float:
    """The Deflated Sharpe Ratio (Bailey & Lopez de Prado 2014): the probabilistic Sharpe ratio
    against ``SR0 = expected_max_sharpe(n_trials, trial_sharpe_variance)``, the best Sharpe ratio
    expected from ``n_trials`` skill-less trials. All Sharpe quantities are **per period**:
    ``trial_sharpe_variance`` is the variance of the trials' per-period ratios (an annualised
    variance divided by periods_per_year). Equals the PSR for one trial; never above it.
    """
    sr0 = expected_max_sharpe(n_trials, trial_sharpe_variance)
    return probabilistic_sharpe_ratio(
        sharpe, n_obs=n_obs, skew=skew, excess_kurtosis=excess_kurtosis, benchmark_sharpe=sr0
    )


# --- statistics of a daily return series -----------------------------------------------------


def _is_flat(r: FloatArray) -> bool:
    """Constant up to rounding: the spread is at most ``FLAT_RTOL`` of the largest |return|, or
    below ``FLAT_ATOL`` (where the moments underflow)."""
    return bool(np.ptp(r) <= max(FLAT_RTOL * float(np.max(np.abs(r))), FLAT_ATOL))


def sharpe_per_period(r: FloatArray) -> float:
    """mean / std (ddof 1) of the returns; NaN with fewer than 2 or (nearly) constant returns."""
    if r.size < 2 or _is_flat(r):
        return _NAN
    return float(np.mean(r) / np.std(r, ddof=1))


def annualised_sharpe(r: FloatArray, periods_per_year: int) -> float:
    return sharpe_per_period(r) * math.sqrt(periods_per_year)


def strategy_sharpe(equity: pl.DataFrame, periods_per_year: int = 252) -> float:
    """The ``sharpe`` of ``performance_metrics`` alone (annualised, daily session returns)."""
    r = daily_returns(conform_equity(equity))["strategy_return"].to_numpy().astype(np.float64)
    return annualised_sharpe(r, periods_per_year)


def sortino_ratio(r: FloatArray, periods_per_year: int) -> float:
    """Annualised mean over annualised downside deviation (target 0)."""
    if r.size < 2:
        return _NAN
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2))) * math.sqrt(periods_per_year)
    if downside == 0.0 or not math.isfinite(downside):
        return _NAN
    return float(np.mean(r)) * periods_per_year / downside


def cagr(r: FloatArray, periods_per_year: int) -> float:
    """Compound annual growth rate over ``len(r) / periods_per_year`` years."""
    if r.size < 1:
        return _NAN
    ending = float(np.prod(1.0 + r))
    if not ending >= 0.0:
        return _NAN
    return float(ending ** (periods_per_year / r.size) - 1.0)


def annual_volatility(r: FloatArray, periods_per_year: int) -> float:
    if r.size < 2:
        return _NAN
    return float(np.std(r, ddof=1)) * math.sqrt(periods_per_year)


def skewness(r: FloatArray) -> float:
    """Biased sample skewness (scipy's default); NaN with fewer than 3 or constant returns."""
    if r.size < 3 or _is_flat(r):
        return _NAN
    with np.errstate(over="ignore"):  # scipy's precision check divides by a subnormal mean
        return float(_scipy_skew(r))


def excess_kurtosis(r: FloatArray) -> float:
    """Biased sample kurtosis minus 3 (Fisher); NaN with fewer than 4 or constant returns."""
    if r.size < 4 or _is_flat(r):
        return _NAN
    with np.errstate(over="ignore"):  # as in ``skewness``
        return float(_scipy_kurtosis(r))


def value_at_risk(r: FloatArray, cutoff: float = VAR_CUTOFF) -> float:
    """The ``cutoff`` percentile of returns (empyrical ``value_at_risk``)."""
    return float(np.percentile(r, 100.0 * cutoff)) if r.size else _NAN


def conditional_value_at_risk(r: FloatArray, cutoff: float = VAR_CUTOFF) -> float:
    """Mean of the lowest ``floor((n - 1) * cutoff) + 1`` returns (empyrical's rule)."""
    if r.size == 0:
        return _NAN
    k = int((r.size - 1) * cutoff)
    return float(np.mean(np.partition(r, k)[: k + 1]))


def tail_ratio(r: FloatArray) -> float:
    """|95th percentile| / |5th percentile|; NaN when the 5th percentile is 0."""
    if r.size == 0:
        return _NAN
    low = abs(float(np.percentile(r, 5)))
    return abs(float(np.percentile(r, 95))) / low if low > 0 else _NAN


def alpha_beta(r: FloatArray, b: FloatArray, periods_per_year: int) -> tuple[float, float]:
    """Annualised alpha and beta of ``r`` on the benchmark ``b`` (empyrical's definitions)."""
    if r.size < 2:
        return _NAN, _NAN
    b_res = b - np.mean(b)
    var_b = float(np.mean(b_res**2))
    if not var_b >= 1e-30:
        return _NAN, _NAN
    beta = float(np.mean(b_res * r)) / var_b
    alpha = (1.0 + float(np.mean(r - beta * b))) ** periods_per_year - 1.0
    return float(alpha), beta


def information_ratio(r: FloatArray, b: FloatArray, periods_per_year: int) -> float:
    """Annualised mean active return over tracking error (ddof 1): empyrical's ``excess_sharpe``
    times sqrt(periods_per_year)."""
    return annualised_sharpe(r - b, periods_per_year)


# --- the report --------------------------------------------------------------------------------


def _return_metrics(
    r: FloatArray,
    b: FloatArray,
    *,
    has_equity: bool,
    n_trials: int,
    trial_sharpe_variance: float,
    periods_per_year: int,
) -> dict[str, float]:
    wealth, b_wealth = wealth_index(r), wealth_index(b)
    dd = drawdown(wealth)
    mdd = float(dd.min()) if has_equity else _NAN
    growth = cagr(r, periods_per_year)
    alpha, beta = alpha_beta(r, b, periods_per_year)
    sr = sharpe_per_period(r)
    skew, kurt = skewness(r), excess_kurtosis(r)
    return {
        "total_return": float(wealth[-1] - 1.0) if has_equity else _NAN,
        "cagr": growth,
        "annual_volatility": annual_volatility(r, periods_per_year),
        "sharpe": sr * math.sqrt(periods_per_year),
        "sortino": sortino_ratio(r, periods_per_year),
        "calmar": growth / abs(mdd) if mdd < 0 else _NAN,
        "max_drawdown": mdd,
        "max_drawdown_duration_days": float(max_drawdown_duration(wealth)) if has_equity else _NAN,
        "tail_ratio": tail_ratio(r),
        "var_95": value_at_risk(r),
        "cvar_95": conditional_value_at_risk(r),
        "skew": skew,
        "kurtosis": kurt,
        "alpha": alpha,
        "beta": beta,
        "information_ratio": information_ratio(r, b, periods_per_year),
        "probabilistic_sharpe": probabilistic_sharpe_ratio(
            sr, n_obs=r.size, skew=skew, excess_kurtosis=kurt
        ),
        "deflated_sharpe": deflated_sharpe_ratio(
            sr,
            n_obs=r.size,
            skew=skew,
            excess_kurtosis=kurt,
            n_trials=n_trials,
            trial_sharpe_variance=trial_sharpe_variance / periods_per_year,
        ),
        "benchmark_total_return": float(b_wealth[-1] - 1.0) if has_equity else _NAN,
        "benchmark_cagr": cagr(b, periods_per_year),
        "benchmark_sharpe": annualised_sharpe(b, periods_per_year),
        "benchmark_max_drawdown": float(drawdown(b_wealth).min()) if has_equity else _NAN,
    }


def _trade_metrics(trades: pl.DataFrame) -> dict[str, float]:
    pnl = trades["pnl_usd"].to_numpy().astype(np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = float(-losses.sum())
    n = pnl.size
    return {
        "n_trades": float(n),
        "win_rate": wins.size / n if n else _NAN,
        "profit_factor": float(wins.sum()) / gross_loss if gross_loss > 0 else _NAN,
        "expectancy_usd": float(pnl.mean()) if n else _NAN,
        "avg_win_usd": float(wins.mean()) if wins.size else _NAN,
        "avg_loss_usd": float(losses.mean()) if losses.size else _NAN,
        "trade_pnl_usd": float(pnl.sum()),
        "avg_trade_return": float(trades["return_pct"].mean()) if n else _NAN,  # type: ignore[arg-type]
        "avg_bars_held": float(trades["bars_held"].mean()) if n else _NAN,  # type: ignore[arg-type]
    }


def _fill_metrics(fills: pl.DataFrame) -> dict[str, float]:
    notional = float(fills["notional_usd"].sum())
    commission = float(fills["commission_usd"].sum())
    spread = float(fills["spread_cost_usd"].sum())
    impact = float(fills["impact_cost_usd"].sum())
    costs = commission + spread + impact
    return {
        "n_fills": float(fills.height),
        "traded_notional_usd": notional,
        "costs_usd": costs,
        "commission_usd": commission,
        "spread_cost_usd": spread,
        "impact_cost_usd": impact,
        "costs_bps": costs / notional * 1e4 if notional > 0 else _NAN,
    }


def performance_metrics(
    equity: pl.DataFrame,
    fills: pl.DataFrame,
    trades: pl.DataFrame,
    *,
    n_trials: int = 1,
    trial_sharpe_variance: float = 0.0,
    periods_per_year: int = 252,
) -> dict[str, float]:
    """Every metric of a backtest, by name (conventions and degenerate values: module doc).

    ``n_trials`` is the number of configurations tried to arrive at this one and
    ``trial_sharpe_variance`` the variance of their **annualised** Sharpe ratios (as reported by
    ``sharpe``); they deflate ``deflated_sharpe``. ``turnover`` is the traded notional per year
    (``traded_notional_usd / n_days * periods_per_year``) over the mean session-close equity;
    ``exposure`` the mean over bars of gross exposure / equity (bars with positive equity);
    ``n_days`` the number of sessions in ``equity``, ``n_returns`` the daily returns used.
    Raises ``PerformanceInputError`` when a non-empty frame lacks a column.
    """
    eq = conform_equity(equity)
    fl = conform(fills, FILLS_COLUMNS, name="fills")
    tr = conform(trades, TRADES_COLUMNS, name="trades")
    rets = daily_returns(eq)
    r = rets["strategy_return"].to_numpy().astype(np.float64)
    b = rets["benchmark_return"].to_numpy().astype(np.float64)
    closes = session_closes(eq)
    n_days = closes.height

    out = _return_metrics(
        r,
        b,
        has_equity=eq.height > 0,
        n_trials=n_trials,
        trial_sharpe_variance=trial_sharpe_variance,
        periods_per_year=periods_per_year,
    )
    out |= _trade_metrics(tr)
    out |= _fill_metrics(fl)

    mean_equity = float(closes["equity_usd"].mean()) if n_days else _NAN  # type: ignore[arg-type]
    traded = out["traded_notional_usd"]
    if traded == 0.0:
        turnover = 0.0
    elif n_days and mean_equity > 0:
        turnover = traded / n_days * periods_per_year / mean_equity
    else:
        turnover = _NAN
    positive = eq.filter(pl.col("equity_usd") > 0)
    gross = (positive["gross_exposure_usd"] / positive["equity_usd"]).mean()
    net = (positive["net_exposure_usd"] / positive["equity_usd"]).mean()
    out |= {
        "turnover": turnover,
        "exposure": float(gross) if positive.height else _NAN,  # type: ignore[arg-type]
        "net_exposure": float(net) if positive.height else _NAN,  # type: ignore[arg-type]
        "start_equity_usd": float(eq["equity_usd"][0]) if eq.height else _NAN,
        "end_equity_usd": float(eq["equity_usd"][-1]) if eq.height else _NAN,
        "n_days": float(n_days),
        "n_returns": float(r.size),
    }
    return out
