"""Report figures and the HTML tear sheet: self-contained, complete, written atomically."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure

from robo_assets.reports import (
    PlotStyle,
    equity_figure,
    monthly_returns_figure,
    regime_timeline_figure,
    report_figures,
    rolling_sharpe_figure,
    write_tearsheet,
)
from robo_assets.reports.plots import monthly_returns, regime_runs
from robo_assets.reports.tearsheet import format_metric
from tests.performance_kit import BacktestFrames, equity_from_daily_returns, make_backtest_frames
from trader_runtime.performance.attribution import attribution
from trader_runtime.performance.metrics import performance_metrics

FIGURE_NAMES = ("equity", "drawdown", "regime_timeline", "monthly_returns", "rolling_sharpe")
IMG_RE = re.compile(r'<img data-figure="([^"]+)" alt="[^"]*" src="data:image/png;base64,([^"]+)">')


@pytest.fixture(scope="module")
def frames() -> BacktestFrames:
    return make_backtest_frames(seed=11, n_sessions=45)


@pytest.fixture(scope="module")
def report_html(frames: BacktestFrames, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "nested" / "tearsheet.html"
    metrics = performance_metrics(frames.equity, frames.fills, frames.trades, n_trials=4)
    written = write_tearsheet(
        out,
        title="Backtest <kit> & co",
        metrics=metrics,
        attribution=attribution(frames.trades, frames.fills, frames.equity),
        figures=report_figures(frames.equity),
        subtitle_lines=("seed 11", "model lightgbm v3"),
    )
    assert written == out
    return out.read_text(encoding="utf-8")


# --- the tear sheet ----------------------------------------------------------------------------


def test_tearsheet_embeds_every_figure_as_a_decodable_png(report_html: str) -> None:
    images = IMG_RE.findall(report_html)
    assert [name for name, _ in images] == list(FIGURE_NAMES)
    for _, encoded in images:
        png = base64.b64decode(encoded, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 100
        assert pixels.shape[1] > 300


def test_tearsheet_is_self_contained(report_html: str) -> None:
    without_images = IMG_RE.sub("", report_html)
    for needle in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert needle not in without_images.lower()
    sources = re.findall(r'src="([^"]*)"', report_html)
    assert sources
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_tearsheet_lists_every_metric(frames: BacktestFrames, report_html: str) -> None:
    metrics = performance_metrics(frames.equity, frames.fills, frames.trades, n_trials=4)
    shown = dict(
        re.findall(r'<tr data-metric="([^"]+)"><td>[^<]*</td><td>([^<]*)</td>', report_html)
    )
    assert set(shown) == set(metrics)
    for key, value in metrics.items():
        assert shown[key] == format_metric(key, value)


def test_tearsheet_shows_every_attribution_table(frames: BacktestFrames, report_html: str) -> None:
    for name in ("by_symbol", "by_regime", "by_model", "by_side", "costs"):
        assert f'<table data-table="{name}">' in report_html
    for symbol in frames.trades["symbol"].unique():
        assert f"<td>{symbol}</td>" in report_html


def test_tearsheet_escapes_text(report_html: str) -> None:
    assert "<title>Backtest &lt;kit&gt; &amp; co</title>" in report_html
    assert '<p class="subtitle">model lightgbm v3</p>' in report_html


def test_metric_formatting() -> None:
    assert format_metric("sharpe", float("nan")) == "n/a"
    assert format_metric("total_return", 0.1234) == "12.34%"
    assert format_metric("costs_usd", 12345.678) == "12,345.68"
    assert format_metric("n_trades", 12.0) == "12"
    assert format_metric("profit_factor", 1.5) == "1.5000"


def _tiny_report(path: Path, title: str) -> Path:
    eq = equity_from_daily_returns([0.01, -0.01, 0.02])
    return write_tearsheet(
        path,
        title=title,
        metrics={"sharpe": 1.0},
        attribution={},
        figures={"equity": equity_figure(eq)},
    )


def test_tearsheet_replaces_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    _tiny_report(target, "first")
    _tiny_report(target, "second")
    assert "<title>second</title>" in target.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    _tiny_report(target, "old")

    def refuse(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("robo_assets.reports.tearsheet.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        _tiny_report(target, "new")
    assert "<title>old</title>" in target.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# --- the figures -------------------------------------------------------------------------------


def test_report_figures_are_matplotlib_figures(frames: BacktestFrames) -> None:
    figures = report_figures(frames.equity)
    assert tuple(figures) == FIGURE_NAMES
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        assert fig.axes, name
        assert fig.axes[0].get_title(), name


def test_regime_timeline_draws_one_band_per_regime_run(frames: BacktestFrames) -> None:
    fig = regime_timeline_figure(frames.equity)
    runs = regime_runs(frames.equity["regime"].to_list())
    assert len(runs) > 1
    assert len(fig.axes[0].patches) == len(runs)


def test_long_histories_are_drawn_from_session_closes(frames: BacktestFrames) -> None:
    bars = equity_figure(frames.equity).axes[0].lines[0]
    closes = equity_figure(frames.equity, style=PlotStyle(max_points=50)).axes[0].lines[0]
    assert np.asarray(bars.get_xdata()).size == frames.equity.height
    assert np.asarray(closes.get_xdata()).size == 45


def test_rolling_sharpe_window_fits_short_histories() -> None:
    r = np.random.default_rng(0).normal(0.001, 0.01, 12)
    fig = rolling_sharpe_figure(equity_from_daily_returns(r))
    assert "(5 sessions" in fig.axes[0].get_title()
    strategy = np.asarray(fig.axes[0].lines[0].get_ydata(), dtype=float)
    assert np.isnan(strategy[:4]).all()
    assert np.isfinite(strategy[4:]).all()
    too_short = rolling_sharpe_figure(equity_from_daily_returns(r[:3]))
    assert not too_short.axes[0].lines
    assert any("needs at least" in t.get_text() for t in too_short.axes[0].texts)


def test_monthly_returns_compound_the_days_of_each_month() -> None:
    # sessions from 2024-01-29: Jan 29, 30, 31 (anchor on the 29th), then February
    eq = equity_from_daily_returns([0.01, 0.02, -0.01, 0.03], start=datetime(2024, 1, 29).date())
    table = monthly_returns(eq)
    assert table["month"].to_list() == [1, 2]
    assert table["return"].to_list() == pytest.approx([1.01 * 1.02 - 1, 0.99 * 1.03 - 1])
    texts = [t.get_text() for t in monthly_returns_figure(eq).axes[0].texts]
    assert f"{100 * (1.01 * 1.02 - 1):.1f}" in texts


@pytest.mark.parametrize(
    "equity",
    [
        pytest.param(pl.DataFrame(), id="empty"),
        pytest.param(equity_from_daily_returns([]), id="one-bar"),
        pytest.param(
            equity_from_daily_returns([0.0, 0.0]).with_columns(
                ts=pl.Series([datetime(2024, 3, 4, h, tzinfo=UTC) for h in (15, 18, 21)])
            ),
            id="one-session",
        ),
    ],
)
def test_figures_of_degenerate_equity_do_not_fail(equity: pl.DataFrame, tmp_path: Path) -> None:
    figures = report_figures(equity)
    path = write_tearsheet(
        tmp_path / "r.html", title="degenerate", metrics={}, attribution={}, figures=figures
    )
    assert len(IMG_RE.findall(path.read_text(encoding="utf-8"))) == len(FIGURE_NAMES)
