"""Metadata helpers: preview tables and plots that the Dagster UI shows."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from datetime import datetime

import dagster as dg
import matplotlib
import polars as pl

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def table_preview(frame: pl.DataFrame, *, rows: int = 10) -> dg.MetadataValue:  # type: ignore[type-arg]
    """The first ``rows`` rows as a Dagster table (values rendered as text or numbers)."""
    head = frame.head(rows)
    columns = [
        dg.TableColumn(name, type="float" if dtype.is_float() else "string")
        for name, dtype in head.schema.items()
    ]
    records = [
        dg.TableRecord(
            {
                k: (round(v, 6) if isinstance(v, float) else (None if v is None else str(v)))
                for k, v in row.items()
            }
        )
        for row in head.iter_rows(named=True)
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def png_markdown(fig: plt.Figure, *, alt: str) -> dg.MetadataValue:  # type: ignore[type-arg]
    """A matplotlib figure as an inline PNG in a markdown metadata value (then closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def price_plot(bars: pl.DataFrame, *, title: str) -> dg.MetadataValue:  # type: ignore[type-arg]
    """Close price over time, with volume below."""
    fig, (ax_price, ax_volume) = plt.subplots(
        2, 1, figsize=(8, 4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ts = bars["ts"].to_list()
    ax_price.plot(ts, bars["close"].to_list(), linewidth=0.8)
    ax_price.set_title(title)
    ax_price.set_ylabel("close")
    ax_volume.fill_between(ts, bars["volume"].to_list(), step="pre", color="grey", linewidth=0)
    ax_volume.set_ylabel("volume")
    fig.autofmt_xdate()
    return png_markdown(fig, alt=title)


def time_range(first: datetime | None, last: datetime | None) -> Mapping[str, str]:
    return {
        "first_ts": "" if first is None else first.isoformat(),
        "last_ts": "" if last is None else last.isoformat(),
    }


def line_plot(frame: pl.DataFrame, x: str, y: str, *, title: str) -> dg.MetadataValue:  # type: ignore[type-arg]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(frame[x].to_list(), frame[y].to_list(), linewidth=0.8)
    ax.set_title(title)
    fig.autofmt_xdate()
    return png_markdown(fig, alt=title)


def correlation_plot(frame: pl.DataFrame, *, title: str) -> dg.MetadataValue:  # type: ignore[type-arg]
    """Heatmap of pairwise Pearson correlations between the columns of ``frame`` (a constant
    column has none: its cells are blank)."""
    import numpy as np

    data = frame.fill_null(strategy="zero").to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant column: NaN, not a warning
        corr = np.corrcoef(data, rowvar=False)
    fig, ax = plt.subplots(figsize=(9, 8))
    image = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(frame.columns)), frame.columns, rotation=90, fontsize=6)
    ax.set_yticks(range(len(frame.columns)), frame.columns, fontsize=6)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.7)
    return png_markdown(fig, alt=title)
