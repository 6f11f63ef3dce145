"""Benchmark ``training``: wall time per model family and stage on the default universe."""

from __future__ import annotations

import tempfile
import time

from benchmarks.harness import Measurement, progress, register
from robo_assets.market_data import build_bars, ingest_raw_bars
from robo_assets.research_data import (
    build_features,
    build_labels,
    build_market_indices,
    build_splits,
    build_training_set,
)
from robo_assets.training.walk_forward import fit_final, walk_forward
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.models.zoo import FAMILIES
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake
from trader_runtime.storage.warehouse import Warehouse

NAME = "training"


@register(NAME)
def run(quick: bool) -> list[Measurement]:
    """Per family on the default universe (8 synthetic symbols, Jan-Jun 2024, 4 expanding folds): walk-forward fit and predict, final refit."""
    with tempfile.TemporaryDirectory(prefix="robo-bench-training-") as tmp:
        overrides: dict[str, object] = {"data_dir": tmp, "source": "synthetic", "index_symbols": ()}
        if quick:
            overrides |= {
                "symbols": ("SYNA", "SYNB"),
                "end": "2024-03-28",
                "split_n_folds": 2,
                "split_test_sessions": 5,
                "split_train_sessions": 10,
            }
        settings = RoboSettings.from_overrides(**overrides)
        lake, warehouse = ParquetLake(settings.lake_dir), Warehouse(settings.warehouse_path)
        progress(f"{NAME}: building the training set (not timed)")
        for symbol in settings.symbols:
            ingest_raw_bars(settings, symbol, lake)
            build_bars(settings, symbol, lake, warehouse)
        build_market_indices(settings, lake)
        for symbol in settings.symbols:
            build_features(settings, symbol, lake)
            build_labels(settings, symbol, lake)
        frame = build_training_set(settings, lake).frame
        assignment, _ = build_splits(settings, lake, frame)
        names = DEFAULT_FEATURE_SET.feature_names(Timeframe.M1)
        context = {
            "rows": frame.height,
            "features": len(names),
            "folds": settings.split_n_folds,
            "symbols": len(settings.symbols),
        }
        out: list[Measurement] = []
        for family in FAMILIES:
            progress(f"{NAME}: {family}")
            started = time.perf_counter()
            result = walk_forward(family, frame, assignment, names, seed=settings.model_seed)
            wf_s = time.perf_counter() - started
            started = time.perf_counter()
            fit_final(family, frame, assignment, names, seed=settings.model_seed)
            final_s = time.perf_counter() - started
            fit_s = sum(f.fit_seconds for f in result.folds)
            train_rows = sum(f.n_train for f in result.folds)
            extra = {**context, "family": family}
            out += [
                Measurement(
                    NAME,
                    f"{family}_walk_forward_s",
                    wf_s,
                    "s",
                    {**extra, "note": "all folds: fit, predict, metrics"},
                ),
                Measurement(
                    NAME, f"{family}_fit_s", fit_s, "s", {**extra, "note": "sum of the fold fits"}
                ),
                Measurement(
                    NAME,
                    f"{family}_final_refit_s",
                    final_s,
                    "s",
                    {**extra, "note": "refit on all folds"},
                ),
                Measurement(
                    NAME,
                    f"{family}_fit_rows_per_s",
                    train_rows / fit_s,
                    "rows/s",
                    {**extra, "note": "training rows fitted per second over the folds"},
                ),
                Measurement(
                    NAME,
                    f"{family}_oos_auc",
                    result.metrics["auc"],
                    "auc",
                    {**extra, "note": "pooled out-of-sample AUC (context, not speed)"},
                ),
            ]
    return out
