"""Walk-forward evaluation of one model family over a stored fold assignment, and the final refit.

For each fold ``k`` a fresh pipeline (``trader_runtime.models.zoo.make_model``) is fit on the rows
marked ``"train"`` in ``fold_k`` and predicts the rows marked ``"test"``; the imputer and scaler are
inside the pipeline, so they only see that fold's training rows.

Rows are joined to the assignment on ``(symbol, ts)`` and ordered by ``(ts, symbol)`` before
anything else, so every training matrix is in time order (the MLP's early-stopping slice is the
most recent part of the fold). Feature matrices are float64 pandas DataFrames with the feature
columns (NaN allowed: the pipeline's median imputer fills it), so a fitted pipeline knows its
feature names and accepts MLflow's pandas input as is.

``max_train_rows`` bounds the cost on big data: when a fold (or the final refit) has more training
rows, a uniform random subset of that many rows is drawn without replacement (seeded by ``seed``
and the fold number, so reruns are identical) and kept in time order. Test rows are never
subsampled. ``FoldResult.n_train`` is the number of rows actually fit on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]

from robo_assets.splits import TEST, TRAIN
from robo_assets.training.metrics import classification_metrics
from trader_runtime.models.zoo import Family, make_model, resolve_params

IntArray = npt.NDArray[np.int64]
PREDICTION_COLUMNS = ("symbol", "ts", "fold", "probability", "target", "fwd_return")
_FINAL_STREAM = 1_000_000  # subsampling stream of the final refit (folds use their number)


@dataclass(frozen=True)
class FoldResult:
    """One fold: rows fit on and predicted, test metrics, fit time and the test predictions
    (``symbol, ts, fold, probability, target, fwd_return``)."""

    fold: int
    n_train: int
    n_test: int
    metrics: dict[str, float]
    fit_seconds: float
    predictions: pl.DataFrame


@dataclass(frozen=True)
class WalkForwardResult:
    """All folds of one family: ``params`` are the effective hyper-parameters (defaults merged
    with overrides), ``predictions`` every fold's out-of-sample rows plus ``model``, ``metrics``
    computed on those rows pooled."""

    family: str
    params: dict[str, object]
    folds: tuple[FoldResult, ...]
    predictions: pl.DataFrame
    metrics: dict[str, float]

    def mean_fold_metric(self, name: str) -> float:
        """The unweighted mean of a metric over the folds."""
        return float(np.mean([f.metrics[name] for f in self.folds]))


def fold_columns(assignment: pl.DataFrame) -> list[str]:
    """``fold_0 .. fold_{k-1}`` in fold order."""
    names = [c for c in assignment.columns if c.startswith("fold_") and c[5:].isdigit()]
    if not names:
        raise ValueError("the fold assignment has no fold_<k> columns")
    return sorted(names, key=lambda c: int(c[5:]))


def _prepare(
    training_set: pl.DataFrame, assignment: pl.DataFrame, feature_names: Sequence[str]
) -> pl.DataFrame:
    """The training set with the fold columns, in (ts, symbol) order; checks keys and targets."""
    missing = [c for c in (*feature_names, "symbol", "ts", "target") if c not in training_set]
    if missing:
        raise ValueError(f"the training set lacks columns {missing}")
    if training_set.select(pl.struct("symbol", "ts").is_duplicated().any()).item():
        raise ValueError("the training set repeats (symbol, ts) rows")
    folds = fold_columns(assignment)
    frame = training_set.join(
        assignment.select("symbol", "ts", *folds), on=["symbol", "ts"], how="left"
    ).sort("ts", "symbol")
    if frame.height != training_set.height:
        raise ValueError("the fold assignment repeats (symbol, ts) rows")
    if frame["target"].null_count() or not frame["target"].is_in([0, 1]).all():
        raise ValueError("target must be 0/1 without nulls")
    return frame


def _features(frame: pl.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    return frame.select(pl.col(list(feature_names)).cast(pl.Float64)).to_pandas()


def _subsample(rows: IntArray, max_rows: int | None, seed: int, stream: int) -> IntArray:
    if max_rows is None or len(rows) <= max_rows:
        return rows
    if max_rows < 1:
        raise ValueError(f"max_train_rows must be >= 1, got {max_rows}")
    rng = np.random.default_rng([seed, stream])
    return np.sort(rng.choice(rows, size=max_rows, replace=False))


def _fit(
    family: Family,
    params: Mapping[str, object] | None,
    seed: int,
    X: pd.DataFrame,
    y: npt.NDArray[np.int8],
    rows: IntArray,
) -> Pipeline:
    if len(np.unique(y[rows])) < 2:
        raise ValueError("a training fold has a single target class")
    model = make_model(family, params, seed=seed)
    model.fit(X.iloc[rows], y[rows])
    return model


def _positive_probability(model: Pipeline, X: pd.DataFrame) -> npt.NDArray[np.float64]:
    column = list(model.classes_).index(1)
    return np.asarray(model.predict_proba(X)[:, column], dtype=np.float64)


def walk_forward(
    family: Family,
    training_set: pl.DataFrame,
    assignment: pl.DataFrame,
    feature_names: Sequence[str],
    *,
    params: Mapping[str, object] | None = None,
    seed: int = 0,
    max_train_rows: int | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> WalkForwardResult:
    """Fit and score ``family`` on every fold of ``assignment`` (``symbol, ts, fold_<k>``).

    ``on_fold`` is called with each ``FoldResult`` as soon as the fold is done, in fold order;
    whatever it raises (e.g. ``optuna.TrialPruned``) propagates and stops the walk-forward.
    """
    resolved = resolve_params(family, params)
    frame = _prepare(training_set, assignment, feature_names)
    X = _features(frame, feature_names)
    y = frame["target"].cast(pl.Int8).to_numpy()
    results: list[FoldResult] = []
    for column in fold_columns(assignment):
        k = int(column[5:])
        train = np.flatnonzero((frame[column] == TRAIN).fill_null(False).to_numpy())
        test = np.flatnonzero((frame[column] == TEST).fill_null(False).to_numpy())
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"{column} has {len(train)} train and {len(test)} test rows")
        train = _subsample(train, max_train_rows, seed, k)
        started = time.perf_counter()
        model = _fit(family, resolved, seed, X, y, train)
        fit_seconds = time.perf_counter() - started
        tested = frame[test]
        predictions = tested.select(
            "symbol",
            "ts",
            pl.lit(k, dtype=pl.Int32).alias("fold"),
            pl.Series("probability", _positive_probability(model, X.iloc[test])),
            pl.col("target").cast(pl.Int8),
            pl.col("fwd_return").cast(pl.Float64),
        )
        metrics = classification_metrics(
            predictions["target"], predictions["probability"], predictions["fwd_return"]
        )
        result = FoldResult(k, len(train), len(test), metrics, fit_seconds, predictions)
        results.append(result)
        if on_fold is not None:
            on_fold(result)
    pooled = pl.concat([r.predictions for r in results]).with_columns(model=pl.lit(family))
    return WalkForwardResult(
        family=family,
        params=resolved,
        folds=tuple(results),
        predictions=pooled,
        metrics=classification_metrics(
            pooled["target"], pooled["probability"], pooled["fwd_return"]
        ),
    )


def fit_final(
    family: Family,
    training_set: pl.DataFrame,
    assignment: pl.DataFrame,
    feature_names: Sequence[str],
    *,
    params: Mapping[str, object] | None = None,
    seed: int = 0,
    max_train_rows: int | None = None,
) -> Pipeline:
    """Refit ``family`` on every row up to the end of the last fold's test window (in practice
    all labelled rows), for deployment; ``max_train_rows`` subsamples as in ``walk_forward``."""
    frame = _prepare(training_set, assignment, feature_names)
    last = fold_columns(assignment)[-1]
    end = frame.filter(pl.col(last) == TEST)["ts"].max()
    if end is None:
        raise ValueError(f"{last} has no test rows")
    rows = np.flatnonzero((frame["ts"] <= end).to_numpy())
    rows = _subsample(rows, max_train_rows, seed, _FINAL_STREAM)
    X = _features(frame, feature_names)
    y = frame["target"].cast(pl.Int8).to_numpy()
    return _fit(family, resolve_params(family, params), seed, X, y, rows)
