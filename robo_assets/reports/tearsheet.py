"""The backtest tear sheet: one self-contained HTML file (inline CSS, PNGs as base64 data URIs,
tables as HTML, no script and no network resource), written atomically."""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import polars as pl
from matplotlib.figure import Figure

FIGURE_DPI: Final = 110

METRIC_SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "Returns": (
        "total_return",
        "cagr",
        "benchmark_total_return",
        "benchmark_cagr",
        "alpha",
        "beta",
        "start_equity_usd",
        "end_equity_usd",
        "n_days",
        "n_returns",
    ),
    "Risk-adjusted": (
        "sharpe",
        "sortino",
        "calmar",
        "information_ratio",
        "benchmark_sharpe",
        "probabilistic_sharpe",
        "deflated_sharpe",
    ),
    "Risk": (
        "annual_volatility",
        "max_drawdown",
        "max_drawdown_duration_days",
        "benchmark_max_drawdown",
        "var_95",
        "cvar_95",
        "tail_ratio",
        "skew",
        "kurtosis",
        "exposure",
        "net_exposure",
    ),
    "Trades": (
        "n_trades",
        "win_rate",
        "profit_factor",
        "expectancy_usd",
        "avg_win_usd",
        "avg_loss_usd",
        "trade_pnl_usd",
        "avg_trade_return",
        "avg_bars_held",
        "turnover",
    ),
    "Costs": (
        "n_fills",
        "traded_notional_usd",
        "costs_usd",
        "commission_usd",
        "spread_cost_usd",
        "impact_cost_usd",
        "costs_bps",
    ),
}
PERCENT_METRICS: Final = frozenset(
    {
        "total_return",
        "cagr",
        "benchmark_total_return",
        "benchmark_cagr",
        "alpha",
        "annual_volatility",
        "max_drawdown",
        "benchmark_max_drawdown",
        "var_95",
        "cvar_95",
        "exposure",
        "net_exposure",
        "win_rate",
        "avg_trade_return",
        "probabilistic_sharpe",
        "deflated_sharpe",
    }
)
PERCENT_COLUMNS: Final = frozenset(
    {
        "win_rate",
        "avg_return_pct",
        "share_of_costs",
        "time_share",
        "strategy_return",
        "benchmark_return",
    }
)

_CSS: Final = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; }
.subtitle { color: #555; margin: 0.1rem 0; }
.metrics { display: flex; flex-wrap: wrap; gap: 1.2rem; }
.metrics table { min-width: 240px; }
table { border-collapse: collapse; font-size: 0.85rem; margin-bottom: 1rem; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #e5e5e5; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { font-weight: 600; text-align: left; padding-bottom: 0.3rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.85rem; }
"""


def _is_int_metric(key: str) -> bool:
    return key.startswith("n_") or key.endswith("_days")


def format_metric(key: str, value: float) -> str:
    """A metric for display: n/a for NaN, percent, thousands-separated USD, integer counts."""
    if not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if key in PERCENT_METRICS:
        return f"{100.0 * value:.2f}%"
    if key.endswith("_usd"):
        return f"{value:,.2f}"
    if _is_int_metric(key) and value == int(value):
        return f"{int(value):d}"
    return f"{value:.4f}"


def _format_cell(column: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if column in PERCENT_COLUMNS:
            return f"{100.0 * value:.2f}%"
        if column.endswith("_usd"):
            return f"{value:,.2f}"
        return f"{value:.2f}" if column.endswith("_bps") else f"{value:.4f}"
    return str(value)


def _metrics_html(metrics: Mapping[str, float]) -> str:
    known = {k for keys in METRIC_SECTIONS.values() for k in keys}
    sections = {
        name: [k for k in keys if k in metrics] for name, keys in METRIC_SECTIONS.items()
    } | {"Other": [k for k in metrics if k not in known]}
    parts = ['<section class="metrics">']
    for name, keys in sections.items():
        if not keys:
            continue
        rows = "".join(
            f'<tr data-metric="{html.escape(k)}"><td>{html.escape(k)}</td>'
            f"<td>{html.escape(format_metric(k, float(metrics[k])))}</td></tr>"
            for k in keys
        )
        parts.append(f"<table><caption>{html.escape(name)}</caption>{rows}</table>")
    parts.append("</section>")
    return "".join(parts)


def frame_html(frame: pl.DataFrame, *, caption: str) -> str:
    """A Polars frame as an HTML table (text escaped)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_format_cell(c, v))}</td>"
            for c, v in zip(frame.columns, row, strict=True)
        )
        + "</tr>"
        for row in frame.iter_rows()
    )
    return (
        f'<table data-table="{html.escape(caption)}"><caption>{html.escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def figure_png(fig: Figure, *, dpi: int = FIGURE_DPI) -> bytes:
    """The figure as PNG bytes (no software metadata: identical figures give identical bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _figure_html(name: str, fig: Figure) -> str:
    encoded = base64.b64encode(figure_png(fig)).decode("ascii")
    label = html.escape(name)
    return (
        f'<figure><img data-figure="{label}" alt="{label}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{label}</figcaption></figure>"
    )


def render_tearsheet(
    *,
    title: str,
    metrics: Mapping[str, float],
    attribution: Mapping[str, pl.DataFrame],
    figures: Mapping[str, Figure],
    subtitle_lines: Sequence[str] = (),
) -> str:
    """The tear sheet's HTML text (see ``write_tearsheet``)."""
    subtitles = "".join(f'<p class="subtitle">{html.escape(s)}</p>' for s in subtitle_lines)
    plots = "".join(_figure_html(name, fig) for name, fig in figures.items())
    tables = "".join(frame_html(frame, caption=name) for name, frame in attribution.items())
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>{subtitles}</header>"
        f"<h2>Metrics</h2>{_metrics_html(metrics)}"
        f"<h2>Charts</h2>{plots}"
        f"<h2>Attribution</h2>{tables}"
        "</body></html>\n"
    )


def write_tearsheet(
    path: str | Path,
    *,
    title: str,
    metrics: Mapping[str, float],
    attribution: Mapping[str, pl.DataFrame],
    figures: Mapping[str, Figure],
    subtitle_lines: Sequence[str] = (),
) -> Path:
    """Write the tear sheet to ``path`` (parents created) through a temporary file in the same
    folder, fsynced and renamed over the target: readers see the old file or the new one, never
    half of it. Returns the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = render_tearsheet(
        title=title,
        metrics=metrics,
        attribution=attribution,
        figures=figures,
        subtitle_lines=subtitle_lines,
    )
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; a report is meant to be read
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
