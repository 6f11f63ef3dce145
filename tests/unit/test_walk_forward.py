"""Walk-forward training: which rows each fold fits on and predicts, callbacks, metrics."""

from datetime import timedelta
from functools import lru_cache
from typing import ClassVar

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy import stats
from sklearn import metrics as skm

import robo_assets.training.walk_forward as wf
from robo_assets.labels import LabelSpec, compute_labels
from robo_assets.splits import TEST, TRAIN, WalkForwardSpec, assign_folds, walk_forward_folds
from robo_assets.training.metrics import auc_score, classification_metrics, clustered_auc_se
from robo_assets.training.walk_forward import FoldResult, fit_final, walk_forward
from tests.features_kit import minute_bars

FEATURES = ("row_id", "ret_1", "ret_5", "noise")
N_FOLDS = 3


@lru_cache(maxsize=1)
def _dataset() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two symbols of synthetic minute bars with labels, a few causal features and a unique
    ``row_id``; the assignment comes from the real splitter."""
    frames = []
    for symbol in ("AAA", "BBB"):
        bars = minute_bars(symbol)
        labels = compute_labels(bars, LabelSpec())
        feats = bars.select(
            "symbol",
            "ts",
            ret_1=pl.col("close").log().diff(),
            ret_5=pl.col("close").log().diff(5),
        )
        frames.append(feats.join(labels, on=["symbol", "ts"]))
    pooled = pl.concat(frames).drop_nulls(["target", "label_end_ts"]).sort("ts", "symbol")
    rng = np.random.default_rng(0)
    pooled = pooled.with_columns(
        row_id=pl.int_range(pl.len()).cast(pl.Float64),
        noise=pl.Series(rng.normal(size=pooled.height)),
    ).select("symbol", "ts", *FEATURES, "label_end_ts", "fwd_return", "net_return", "target")
    spec = WalkForwardSpec(n_folds=N_FOLDS, test_sessions=5, train_sessions=10)
    return pooled, assign_folds(pooled, walk_forward_folds(pooled["ts"], spec))


class Memorizer:
    """Remembers every training row by ``row_id``; predicts a remembered row's target exactly
    and 0.5 for anything it has not seen."""

    fits: ClassVar[list[pd.DataFrame]] = []

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "Memorizer":
        Memorizer.fits.append(X)
        self.memory = dict(zip(X["row_id"].to_numpy(), y, strict=True))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.array([float(self.memory.get(r, 0.5)) for r in X["row_id"].to_numpy()])
        return np.column_stack([1 - p, p])


@pytest.fixture
def memorizer(monkeypatch: pytest.MonkeyPatch) -> type[Memorizer]:
    Memorizer.fits = []
    monkeypatch.setattr(wf, "make_model", lambda *a, **k: Memorizer())
    return Memorizer


def _ids(frame: pl.DataFrame, column: str, value: str) -> np.ndarray:
    return np.sort(frame.filter(pl.col(column) == value)["row_id"].to_numpy())


def test_each_fold_fits_exactly_its_train_rows_in_time_order(memorizer: type[Memorizer]) -> None:
    data, assignment = _dataset()
    joined = data.join(assignment, on=["symbol", "ts"])
    result = walk_forward("lightgbm", data, assignment, FEATURES)
    assert len(memorizer.fits) == N_FOLDS
    for k, (fitted, fold) in enumerate(zip(memorizer.fits, result.folds, strict=True)):
        ids = fitted["row_id"].to_numpy()
        assert np.all(np.diff(ids) > 0)  # row_id follows (ts, symbol): time order
        np.testing.assert_array_equal(ids, _ids(joined, f"fold_{k}", TRAIN))
        assert not set(ids) & set(_ids(joined, f"fold_{k}", TEST))
        assert list(fitted.columns) == list(FEATURES)
        assert fold.n_train == len(ids)


def test_no_test_row_is_ever_seen_by_its_own_fold(memorizer: type[Memorizer]) -> None:
    data, assignment = _dataset()
    result = walk_forward("lightgbm", data, assignment, FEATURES)
    # a memorizer that had trained on a test row would predict its target exactly
    assert (result.predictions["probability"] == 0.5).all()
    assert result.metrics["auc"] == 0.5


def test_predictions_cover_exactly_the_test_rows_once_per_fold() -> None:
    data, assignment = _dataset()
    result = walk_forward("lightgbm", data, assignment, FEATURES)
    preds = result.predictions
    assert preds.columns == [*wf.PREDICTION_COLUMNS, "model"]
    assert (preds["model"] == "lightgbm").all()
    assert not preds.select(pl.struct("symbol", "ts").is_duplicated().any()).item()
    for k, fold in enumerate(result.folds):
        assert fold.fold == k
        expected = assignment.filter(pl.col(f"fold_{k}") == TEST).select("symbol", "ts")
        got = fold.predictions.select("symbol", "ts")
        assert got.sort("ts", "symbol").equals(expected.sort("ts", "symbol"))
        assert fold.n_test == expected.height
        assert (fold.predictions["fold"] == k).all()
        truth = fold.predictions.join(data, on=["symbol", "ts"])
        assert (truth["target"] == truth["target_right"]).all()
        assert (truth["fwd_return"] == truth["fwd_return_right"]).all()
        assert fold.fit_seconds > 0
    assert preds.height == sum(f.n_test for f in result.folds)
    assert result.params["n_estimators"] == 200


def test_metrics_are_those_of_the_predictions() -> None:
    data, assignment = _dataset()
    result = walk_forward("xgboost", data, assignment, FEATURES, params={"n_estimators": 20})
    for fold in result.folds:
        p = fold.predictions
        assert fold.metrics == classification_metrics(
            p["target"], p["probability"], p["fwd_return"]
        )
        assert fold.metrics["auc"] == pytest.approx(
            skm.roc_auc_score(p["target"], p["probability"])
        )
    pooled = result.predictions
    assert result.metrics == classification_metrics(
        pooled["target"], pooled["probability"], pooled["fwd_return"]
    )
    assert result.mean_fold_metric("auc") == pytest.approx(
        np.mean([f.metrics["auc"] for f in result.folds])
    )
    assert result.params["n_estimators"] == 20


def test_on_fold_is_called_in_order_and_what_it_raises_propagates() -> None:
    data, assignment = _dataset()
    seen: list[int] = []
    walk_forward("lightgbm", data, assignment, FEATURES, on_fold=lambda f: seen.append(f.fold))
    assert seen == list(range(N_FOLDS))

    class StopError(Exception):
        pass

    calls: list[FoldResult] = []

    def stop_after_second(fold: FoldResult) -> None:
        calls.append(fold)
        if fold.fold == 1:
            raise StopError

    with pytest.raises(StopError):
        walk_forward("lightgbm", data, assignment, FEATURES, on_fold=stop_after_second)
    assert [f.fold for f in calls] == [0, 1]


def test_max_train_rows_subsamples_train_rows_reproducibly_in_time_order(
    memorizer: type[Memorizer],
) -> None:
    data, assignment = _dataset()
    joined = data.join(assignment, on=["symbol", "ts"])
    first = walk_forward("lightgbm", data, assignment, FEATURES, max_train_rows=500, seed=1)
    walk_forward("lightgbm", data, assignment, FEATURES, max_train_rows=500, seed=1)
    other = walk_forward("lightgbm", data, assignment, FEATURES, max_train_rows=500, seed=2)
    fits = [f["row_id"].to_numpy() for f in memorizer.fits]
    for k in range(N_FOLDS):
        ids = fits[k]
        assert len(ids) == 500 == first.folds[k].n_train
        assert np.all(np.diff(ids) > 0)
        assert set(ids) <= set(_ids(joined, f"fold_{k}", TRAIN))
        np.testing.assert_array_equal(ids, fits[N_FOLDS + k])
        assert not np.array_equal(ids, fits[2 * N_FOLDS + k])
    assert first.folds[0].n_test == other.folds[0].n_test  # test rows are never subsampled


def test_fit_final_uses_every_row_up_to_the_last_test_window(memorizer: type[Memorizer]) -> None:
    data, assignment = _dataset()
    last_test_end = data["ts"].max()
    later = data.tail(10).with_columns(
        ts=pl.col("ts") + timedelta(days=1), row_id=pl.col("row_id") + 1e6
    )
    fit_final("random_forest", pl.concat([data, later]), assignment, FEATURES)
    (fitted,) = memorizer.fits
    np.testing.assert_array_equal(fitted["row_id"].to_numpy(), data["row_id"].to_numpy())
    assert data.filter(pl.col("ts") > last_test_end).height == 0


def test_fit_final_returns_a_working_pipeline() -> None:
    data, assignment = _dataset()
    model = fit_final("lightgbm", data, assignment, FEATURES, max_train_rows=2000)
    example = data.select(FEATURES).head(5).to_pandas()
    assert model.predict_proba(example).shape == (5, 2)
    assert list(model.feature_names_in_) == list(FEATURES)


def test_bad_inputs_are_refused() -> None:
    data, assignment = _dataset()
    with pytest.raises(ValueError, match="lacks columns"):
        walk_forward("lightgbm", data.drop("noise"), assignment, FEATURES)
    with pytest.raises(ValueError, match="repeats"):
        walk_forward("lightgbm", pl.concat([data, data.head(1)]), assignment, FEATURES)
    with pytest.raises(ValueError, match="single target class"):
        walk_forward("lightgbm", data.with_columns(target=pl.lit(1, pl.Int8)), assignment, FEATURES)
    with pytest.raises(ValueError, match="fold_<k>"):
        walk_forward("lightgbm", data, assignment.select("symbol", "ts"), FEATURES)
    with pytest.raises(ValueError, match="0/1"):
        walk_forward(
            "lightgbm", data.with_columns(target=pl.lit(None, pl.Int8)), assignment, FEATURES
        )


def test_classification_metrics_match_scikit_learn_and_scipy() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    fwd = rng.normal(size=n)
    y = (fwd + rng.normal(size=n) > 0).astype(int)
    p = 1 / (1 + np.exp(-(0.5 * fwd + rng.normal(size=n))))
    p[:50] = p[50:100]  # ties
    m = classification_metrics(y, p, fwd)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p), abs=1e-12)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p > 0.5), abs=1e-12)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    assert m["ic"] == pytest.approx(stats.pearsonr(p, fwd)[0], abs=1e-12)
    assert m["rank_ic"] == pytest.approx(stats.spearmanr(p, fwd)[0], abs=1e-12)
    assert set(m) == {"auc", "log_loss", "accuracy", "brier", "ic", "rank_ic"}


def test_classification_metrics_edge_cases() -> None:
    m = classification_metrics([1, 1], [0.2, 0.7], [0.1, 0.3])
    assert np.isnan(m["auc"])
    assert np.isnan(classification_metrics([0, 1], [0.5, 0.5], [0.1, 0.3])["ic"])
    assert classification_metrics([0, 1], [0.0, 1.0], [0.0, 1.0])["log_loss"] < 1e-10
    with pytest.raises(ValueError, match="0/1"):
        classification_metrics([0, 2], [0.1, 0.2], [0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        classification_metrics([0, 1], [0.1, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError, match="lengths"):
        classification_metrics([0, 1], [0.1], [0.0, 0.0])


def test_clustered_auc_se_is_delong_for_singletons_and_grows_with_clustering() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    y = rng.integers(0, 2, n)
    p = rng.random(n) + 0.2 * y
    auc = auc_score(y.astype(float), p)
    # DeLong's variance: var(V10)/n1 + var(V01)/n0 with placement values from pairwise counts
    pos, neg = p[y == 1], p[y == 0]
    v10 = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean(axis=1)
    v01 = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean(axis=0)
    delong = np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    singletons = clustered_auc_se(y, p, np.arange(n))
    assert v10.mean() == pytest.approx(auc)
    assert singletons == pytest.approx(delong, rel=2e-3)
    # whole clusters that share one outcome and one score: far fewer independent observations
    clusters = np.repeat(np.arange(n // 20), 20)
    yc, pc = y[clusters * 20], p[clusters * 20] + 1e-6 * rng.random(n)
    assert clustered_auc_se(yc, pc, clusters) > 3 * clustered_auc_se(yc, pc, np.arange(n))
