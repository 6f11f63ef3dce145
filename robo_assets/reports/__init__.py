"""Backtest reports: matplotlib figures and the self-contained HTML tear sheet."""

from robo_assets.reports.plots import (
    PlotStyle,
    drawdown_figure,
    equity_figure,
    monthly_returns_figure,
    regime_timeline_figure,
    report_figures,
    rolling_sharpe_figure,
)
from robo_assets.reports.tearsheet import render_tearsheet, write_tearsheet

__all__ = [
    "PlotStyle",
    "drawdown_figure",
    "equity_figure",
    "monthly_returns_figure",
    "regime_timeline_figure",
    "render_tearsheet",
    "report_figures",
    "rolling_sharpe_figure",
    "write_tearsheet",
]
