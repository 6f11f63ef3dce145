"""Leakage checks over stored research data, independent of the code that produced it.

- ``unexpected_columns``: the training set has exactly the spec's features plus keys and labels.
- ``future_correlated_features``: features whose rank correlation with the forward return is too
  high to be honest (real features sit at |IC| ~ 0.01-0.1; a leaked future return is ~1).
- ``truncation_mismatches``: features recomputed from bars cut at a point equal the stored features
  up to that point (a feature that peeks ahead changes when the future is removed).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import numpy as np
import polars as pl

from robo_assets.labels import LABEL_COLUMNS
from trader_runtime.features.batch import compute_features
from trader_runtime.features.spec import FeatureSetSpec
from trader_runtime.market.resample import resample_bars
from trader_runtime.market.timeframes import Timeframe

KEY_COLUMNS = ("symbol", "ts")
MAX_HONEST_ABS_IC = 0.3


def unexpected_columns(frame: pl.DataFrame, feature_names: Iterable[str]) -> list[str]:
    expected = [*KEY_COLUMNS, *feature_names, *LABEL_COLUMNS]
    extra = [c for c in frame.columns if c not in expected]
    missing = [f"missing:{c}" for c in expected if c not in frame.columns]
    return extra + missing


def future_correlated_features(
    frame: pl.DataFrame,
    columns: Iterable[str],
    *,
    target: str = "fwd_return",
    max_abs_ic: float = MAX_HONEST_ABS_IC,
    sample_rows: int = 200_000,
) -> dict[str, float]:
    """Columns whose Spearman correlation with ``target`` exceeds ``max_abs_ic`` in magnitude."""
    sample = frame if frame.height <= sample_rows else frame.sample(sample_rows, seed=0)
    suspicious = {}
    cols = [c for c in columns if c != target and sample[c].dtype.is_numeric()]
    ranked = sample.select(
        pl.col(target).rank().alias("_t"), *[pl.col(c).rank().alias(c) for c in cols]
    ).drop_nulls()
    t = ranked["_t"].to_numpy()
    for c in cols:
        x = ranked[c].to_numpy()
        if np.std(x) == 0 or np.std(t) == 0:
            continue
        ic = float(np.corrcoef(x, t)[0, 1])
        if abs(ic) > max_abs_ic:
            suspicious[c] = round(ic, 4)
    return suspicious


def truncation_mismatches(
    bars_1m: pl.DataFrame,
    market: pl.DataFrame | None,
    stored: pl.DataFrame,
    cuts: Iterable[datetime],
    spec: FeatureSetSpec,
    *,
    rows_to_compare: int = 200,
) -> dict[str, int]:
    """Per feature, how many of the last ``rows_to_compare`` rows before each cut differ between
    features recomputed from bars up to the cut (higher timeframes resampled from the cut bars)
    and the stored features."""
    mismatches: dict[str, int] = {}
    names = spec.feature_names(Timeframe.M1)
    for cut in cuts:
        head = bars_1m.filter(pl.col("ts") <= cut)
        by_tf = {Timeframe.M1: head} | {
            tf: resample_bars(head, tf) for tf in spec.higher_timeframes_for(Timeframe.M1)
        }
        cut_market = market.filter(pl.col("ts") <= cut) if market is not None else None
        recomputed = compute_features(by_tf, market=cut_market, spec=spec).tail(rows_to_compare)
        expected = stored.filter(pl.col("ts") <= cut).tail(rows_to_compare)
        for name in names:
            a = recomputed[name].to_numpy().astype(np.float64)
            b = expected[name].to_numpy().astype(np.float64)
            same = (np.isnan(a) & np.isnan(b)) | np.isclose(a, b, rtol=1e-12, atol=0.0)
            bad = int((~same).sum()) if len(a) == len(b) else len(a)
            if bad:
                mismatches[name] = mismatches.get(name, 0) + bad
    return mismatches
