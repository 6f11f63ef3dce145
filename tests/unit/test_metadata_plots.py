"""Plots attached to Dagster materializations."""

from __future__ import annotations

import warnings

import polars as pl

from robo_assets.metadata import correlation_plot


def test_a_constant_column_gets_blank_correlations_without_a_warning() -> None:
    frame = pl.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "flat": [5.0] * 4, "b": [2.0, 1.0, 4.0, 3.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's "invalid value encountered in divide" would raise
        plot = correlation_plot(frame, title="features")
    assert "data:image/png;base64," in str(plot.value)
