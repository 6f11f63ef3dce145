"""Native scoring gives the zoo pipelines' own probabilities, bit for bit, and falls back."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from trader_runtime.live.scoring import LoadedModel, ModelRef
from trader_runtime.models.inference import compile_pipeline, native_candidates
from trader_runtime.models.zoo import FAMILIES, Family, make_model

N_FEATURES = 6
SMALL: dict[str, dict[str, object]] = {
    "random_forest": {"n_estimators": 15, "min_samples_leaf": 5, "max_samples": 0.5},
    "xgboost": {"n_estimators": 20, "min_child_weight": 1.0},
    "lightgbm": {"n_estimators": 20, "min_child_samples": 10},
    "mlp": {"max_epochs": 2, "batch_size": 128},
}


def _data(n: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)) * [1.0, 2.0, 0.5, 10.0, 1.0, 3.0] + [0, 1, 2, 50, 0, -4]
    y = (X[:, 0] - X[:, 1] / 2 + rng.normal(size=n) > 0).astype(np.int64)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


def _ref(family: str) -> ModelRef:
    return ModelRef("test", "1", "", family, "hash", None)


@pytest.fixture(scope="module", params=FAMILIES)
def fitted(request: pytest.FixtureRequest) -> tuple[Family, Pipeline]:
    family: Family = request.param
    X, y = _data()
    return family, make_model(family, SMALL[family], seed=0).fit(X, y)


def test_native_scoring_equals_the_pipeline_bit_for_bit(fitted: tuple[Family, Pipeline]) -> None:
    family, pipeline = fitted
    X, _ = _data(n=300, seed=1)
    native = compile_pipeline(pipeline)
    assert native is not None, family
    expected = pipeline.predict_proba(X)[:, 1]
    assert np.array_equal(native(X), expected)
    for row in X[:20]:  # one row at a time, as the live loop scores
        assert np.array_equal(native(row[None, :]), pipeline.predict_proba(row[None, :])[:, 1])


def test_every_native_candidate_equals_the_pipeline_and_trees_are_walked_in_numba(
    fitted: tuple[Family, Pipeline],
) -> None:
    family, pipeline = fitted
    X, _ = _data(n=200, seed=3)
    X[7] = np.nan  # a symbol without a bar: NaN, whichever candidate scores
    candidates = native_candidates(pipeline)
    # the tree families are walked by our compiled kernels first, the library's call second;
    # the network has one: its own compiled forward pass, imputing and scaling included
    assert len(candidates) == {"random_forest": 1, "xgboost": 2, "lightgbm": 2, "mlp": 1}[family]
    keep = np.arange(len(X)) != 7
    expected = pipeline.predict_proba(X[keep])[:, 1]
    for native in candidates:
        got = native(X)
        assert np.isnan(got[7])
        assert np.array_equal(got[keep], expected)


def test_a_loaded_zoo_model_scores_natively_and_leaves_empty_rows_nan(
    fitted: tuple[Family, Pipeline],
) -> None:
    family, pipeline = fitted
    names = tuple(f"f{i}" for i in range(N_FEATURES))
    model = LoadedModel(_ref(family), pipeline, names)
    assert model.native
    X, _ = _data(n=5, seed=2)
    X[2] = np.nan  # a symbol without a bar
    got = model.predict(X)
    assert np.isnan(got[2])
    keep = [0, 1, 3, 4]
    assert np.array_equal(got[keep], pipeline.predict_proba(X[keep])[:, 1])


def test_a_pipeline_the_compiler_does_not_know_is_scored_by_scikit_learn() -> None:
    X, y = _data()
    X = np.nan_to_num(X)
    pipeline = Pipeline([("model", LogisticRegression())]).fit(X, y)
    assert compile_pipeline(pipeline) is None
    model = LoadedModel(_ref("logistic"), pipeline, tuple(f"f{i}" for i in range(N_FEATURES)))
    assert not model.native
    assert np.array_equal(model.predict(X[:7]), pipeline.predict_proba(X[:7])[:, 1])


def test_a_native_predictor_that_disagrees_is_refused(fitted: tuple[Family, Pipeline]) -> None:
    family, pipeline = fitted
    imputer = pipeline.named_steps["impute"]
    saved = imputer.statistics_.copy()
    model = LoadedModel(_ref(family), pipeline, tuple(f"f{i}" for i in range(N_FEATURES)))
    assert model.native

    # a pipeline whose predict_proba no longer matches what compile_pipeline reads: refused
    class Drifted(Pipeline):  # type: ignore[misc]
        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return super().predict_proba(X) * 0.5

    drifted = Drifted(pipeline.steps)
    assert not LoadedModel(_ref(family), drifted, model.feature_names).native
    np.testing.assert_array_equal(imputer.statistics_, saved)
