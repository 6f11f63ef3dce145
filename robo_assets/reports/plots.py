"""Figures of a backtest's ``equity`` frame: equity vs benchmark, drawdown, monthly returns,
rolling Sharpe ratio and the regime timeline.

Every function returns a fresh ``matplotlib.figure.Figure`` built without pyplot (no global state,
nothing to close; PNG output through the Agg canvas). Times are shown in New York time. Bar-level
curves fall back to session closes above ``PlotStyle.max_points`` bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from trader_runtime.performance.returns import (
    NY_TZ,
    conform_equity,
    daily_returns,
    drawdown,
    session_closes,
)

MONTH_LABELS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class PlotStyle:
    """Sizes and colours of the report figures."""

    width_in: float = 9.0
    height_in: float = 3.4
    max_points: int = 5_000
    strategy_color: str = "#1f77b4"
    benchmark_color: str = "#7f7f7f"
    regime_colors: tuple[tuple[str, str], ...] = (
        ("bull", "#2ca02c"),
        ("bear", "#d62728"),
        ("volatile", "#ff7f0e"),
        ("ranging", "#9e9e9e"),
        ("crash", "#6a0dad"),
    )
    unknown_regime_color: str = "#d9d9d9"

    def regime_color(self, regime: str) -> str:
        return dict(self.regime_colors).get(regime, self.unknown_regime_color)


DEFAULT_STYLE = PlotStyle()


def _figure(style: PlotStyle, *, height_in: float | None = None) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(style.width_in, height_in or style.height_in), layout="constrained")
    return fig, fig.add_subplot()


def _date_axis(ax: Axes) -> None:
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")


def _curve(equity: pl.DataFrame, style: PlotStyle) -> pl.DataFrame:
    """``x`` (New York wall time), ``equity_usd``, ``benchmark_equity_usd``, ``regime``: every bar,
    or the session closes when there are more than ``style.max_points`` bars."""
    frame = conform_equity(equity)
    if frame.height > style.max_points:
        frame = session_closes(frame)
    return frame.select(
        pl.col("ts").dt.convert_time_zone(NY_TZ).dt.replace_time_zone(None).alias("x"),
        "equity_usd",
        "benchmark_equity_usd",
        pl.col("regime").fill_null("unknown"),
    )


def equity_figure(equity: pl.DataFrame, *, style: PlotStyle = DEFAULT_STYLE) -> Figure:
    """Strategy equity and the buy-and-hold benchmark, in USD."""
    fig, ax = _figure(style)
    curve = _curve(equity, style)
    ax.set_title("Equity vs buy-and-hold benchmark")
    if curve.height == 0:
        _no_data(ax, "no equity")
        return fig
    x = curve["x"].to_numpy()
    ax.plot(x, curve["equity_usd"].to_numpy(), color=style.strategy_color, lw=1.2, label="strategy")
    ax.plot(
        x,
        curve["benchmark_equity_usd"].to_numpy(),
        color=style.benchmark_color,
        lw=1.0,
        label="benchmark",
    )
    ax.set_ylabel("equity (USD)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    _date_axis(ax)
    return fig


def drawdown_figure(equity: pl.DataFrame, *, style: PlotStyle = DEFAULT_STYLE) -> Figure:
    """Underwater curve: the fall from the running peak, in percent (benchmark as a line)."""
    fig, ax = _figure(style)
    curve = _curve(equity, style)
    ax.set_title("Drawdown (underwater)")
    if curve.height == 0:
        _no_data(ax, "no equity")
        return fig
    x = curve["x"].to_numpy()
    dd_pct = 100.0 * drawdown(curve["equity_usd"].to_numpy().astype(np.float64))
    bench_pct = 100.0 * drawdown(curve["benchmark_equity_usd"].to_numpy().astype(np.float64))
    ax.fill_between(x, dd_pct, 0.0, color="#d62728", alpha=0.35, lw=0, label="strategy")
    ax.plot(x, bench_pct, color=style.benchmark_color, lw=0.9, label="benchmark")
    ax.set_ylabel("drawdown (%)")
    ax.set_ylim(top=0.5)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    _date_axis(ax)
    return fig


def monthly_returns(equity: pl.DataFrame) -> pl.DataFrame:
    """Compounded strategy return per calendar month: ``year``, ``month``, ``return`` (fraction)."""
    return (
        daily_returns(equity)
        .group_by(
            pl.col("session").dt.year().alias("year"), pl.col("session").dt.month().alias("month")
        )
        .agg(((pl.col("strategy_return") + 1.0).product() - 1.0).alias("return"))
        .sort("year", "month")
    )


def monthly_returns_figure(equity: pl.DataFrame, *, style: PlotStyle = DEFAULT_STYLE) -> Figure:
    """Heatmap of monthly returns (rows years, columns months, then the year), in percent."""
    table = monthly_returns(equity)
    years = sorted(set(table["year"].to_list()))
    fig, ax = _figure(style, height_in=max(1.6, 0.9 + 0.45 * len(years)))
    ax.set_title("Monthly returns (%)")
    if not years:
        _no_data(ax, "no daily returns")
        ax.set_axis_off()
        return fig
    grid = np.full((len(years), 13), np.nan)
    for year, month, ret in table.iter_rows():
        grid[years.index(year), month - 1] = ret
    for k, year in enumerate(years):
        months = table.filter(pl.col("year") == year)["return"].to_numpy()
        grid[k, 12] = float(np.prod(1.0 + months) - 1.0)
    pct = 100.0 * grid
    finite = pct[np.isfinite(pct)]
    bound = max(float(np.abs(finite).max()) if finite.size else 0.0, 0.1)
    ax.imshow(pct, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto")
    for (i, j), value in np.ndenumerate(pct):
        if math.isfinite(value):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(13), [*MONTH_LABELS, "Year"])
    ax.set_yticks(range(len(years)), [str(y) for y in years])
    ax.axvline(11.5, color="white", lw=2)
    return fig


def default_sharpe_window(n_returns: int) -> int:
    """A rolling window (sessions) that fits short histories: a third of them, within [5, 63]."""
    return max(5, min(63, n_returns // 3))


def rolling_sharpe(
    returns: npt.NDArray[np.float64], window: int, periods_per_year: int = 252
) -> npt.NDArray[np.float64]:
    """Annualised Sharpe ratio over each trailing ``window`` (NaN before it fills or when flat)."""
    out = np.full(returns.size, np.nan)
    if window < 2 or returns.size < window:
        return out
    views = np.lib.stride_tricks.sliding_window_view(returns, window)
    std = views.std(axis=1, ddof=1)
    flat = np.ptp(views, axis=1) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(flat, np.nan, views.mean(axis=1) / std * math.sqrt(periods_per_year))
    out[window - 1 :] = sharpe
    return out


def rolling_sharpe_figure(
    equity: pl.DataFrame,
    *,
    window_sessions: int | None = None,
    periods_per_year: int = 252,
    style: PlotStyle = DEFAULT_STYLE,
) -> Figure:
    """Rolling annualised Sharpe ratio of daily returns, strategy and benchmark."""
    rets = daily_returns(equity)
    window = window_sessions or default_sharpe_window(rets.height)
    fig, ax = _figure(style)
    ax.set_title(f"Rolling Sharpe ratio ({window} sessions, annualised)")
    if rets.height < window:
        _no_data(ax, f"needs at least {window} daily returns, has {rets.height}")
        return fig
    x = rets["session"].to_numpy()
    for column, color, label in (
        ("strategy_return", style.strategy_color, "strategy"),
        ("benchmark_return", style.benchmark_color, "benchmark"),
    ):
        series = rolling_sharpe(
            rets[column].to_numpy().astype(np.float64), window, periods_per_year
        )
        ax.plot(x, series, color=color, lw=1.1, label=label)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_ylabel("Sharpe ratio")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    _date_axis(ax)
    return fig


def regime_runs(regimes: list[str]) -> list[tuple[int, int, str]]:
    """Contiguous runs of equal regime as ``(first index, last index, regime)``."""
    runs: list[tuple[int, int, str]] = []
    for i, regime in enumerate(regimes):
        if runs and runs[-1][2] == regime:
            runs[-1] = (runs[-1][0], i, regime)
        else:
            runs.append((i, i, regime))
    return runs


def regime_timeline_figure(equity: pl.DataFrame, *, style: PlotStyle = DEFAULT_STYLE) -> Figure:
    """The equity curve over coloured bands, one per contiguous run of the market regime."""
    fig, ax = _figure(style)
    curve = _curve(equity, style)
    ax.set_title("Market regime and equity")
    if curve.height == 0:
        _no_data(ax, "no equity")
        return fig
    x = curve["x"].to_numpy()
    runs = regime_runs(curve["regime"].to_list())
    for k, (first, last, regime) in enumerate(runs):
        end = x[runs[k + 1][0]] if k + 1 < len(runs) else x[last]
        ax.axvspan(x[first], end, color=style.regime_color(regime), alpha=0.25, lw=0)
    ax.plot(x, curve["equity_usd"].to_numpy(), color="black", lw=1.0)
    present = sorted({r for _, _, r in runs})
    ax.legend(
        handles=[Patch(color=style.regime_color(r), alpha=0.5, label=r) for r in present],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        title="regime",
    )
    ax.set_ylabel("equity (USD)")
    _date_axis(ax)
    return fig


def report_figures(
    equity: pl.DataFrame,
    *,
    periods_per_year: int = 252,
    window_sessions: int | None = None,
    style: PlotStyle = DEFAULT_STYLE,
) -> dict[str, Figure]:
    """Every report figure by name, in reading order."""
    return {
        "equity": equity_figure(equity, style=style),
        "drawdown": drawdown_figure(equity, style=style),
        "regime_timeline": regime_timeline_figure(equity, style=style),
        "monthly_returns": monthly_returns_figure(equity, style=style),
        "rolling_sharpe": rolling_sharpe_figure(
            equity, window_sessions=window_sessions, periods_per_year=periods_per_year, style=style
        ),
    }
