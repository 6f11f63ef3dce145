"""Native scoring of the zoo's pipelines, for the live loop: same numbers, a fraction of the cost.

A zoo pipeline is ``impute (median) -> scale (standard) -> model``. Scoring one row through
scikit-learn costs about 1.4 ms of wrappers (input validation, feature-name checks, parameter
introspection) around a model call of about 0.1 ms. ``compile_pipeline`` reads the fitted
statistics and the model's own native predictor and returns a function of a float64 array that
does the same arithmetic in the same order:

- impute: ``NaN -> statistics_`` (what ``SimpleImputer.transform`` does);
- scale: ``(x - mean_) / scale_`` (what ``StandardScaler.transform`` does);
- LightGBM: ``Booster.predict`` (the classifier wrapper's own call); XGBoost:
  ``Booster.inplace_predict`` (what ``XGBClassifier.predict_proba`` calls for an array);
  the random forest: every tree walked in tree order on float32 features, the positive-class
  fractions added in that order (``OrderedRandomForest.predict_proba``), compiled with numba;
  the network: its torch module's forward and a sigmoid, as ``LightningMLPClassifier`` does.

The function is a candidate, not a promise: ``trader_runtime.live.scoring`` checks it against the
pipeline's ``predict_proba`` bit for bit at load time and keeps the pipeline when they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
Predictor = Callable[[FloatArray], FloatArray]


@njit(cache=True)
def _forest_positive(
    x: npt.NDArray[np.float32],
    feature: npt.NDArray[np.int64],
    threshold: FloatArray,
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    positive: FloatArray,
    roots: npt.NDArray[np.int64],
) -> FloatArray:  # pragma: no cover - compiled
    n_trees = roots.shape[0]
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        total = 0.0
        for t in range(n_trees):
            node = roots[t]
            while left[node] != -1:
                node = left[node] if x[i, feature[node]] <= threshold[node] else right[node]
            total += positive[node]
        out[i] = total / n_trees
    return out


def _forest(model: Any) -> Predictor | None:
    """Flatten the forest's trees into arrays walked by ``_forest_positive``."""
    if list(getattr(model, "classes_", [])) != [0, 1] or getattr(model, "n_outputs_", 1) != 1:
        return None
    features, thresholds, lefts, rights, positives, roots = [], [], [], [], [], []
    offset = 0
    for estimator in model.estimators_:
        tree = estimator.tree_
        n = int(tree.node_count)
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        leaf = left == -1
        features.append(tree.feature.astype(np.int64))
        thresholds.append(tree.threshold.astype(np.float64))
        lefts.append(np.where(leaf, -1, left + offset))
        rights.append(np.where(leaf, -1, right + offset))
        positives.append(tree.value[:, 0, 1].astype(np.float64))
        roots.append(offset)
        offset += n
    arrays = (
        np.concatenate(features),
        np.concatenate(thresholds),
        np.concatenate(lefts),
        np.concatenate(rights),
        np.concatenate(positives),
        np.asarray(roots, dtype=np.int64),
    )

    def predict(x: FloatArray) -> FloatArray:
        return _forest_positive(np.ascontiguousarray(x, dtype=np.float32), *arrays)

    return predict


def _lightgbm(model: Any) -> Predictor | None:
    booster = model.booster_
    if getattr(model, "n_classes_", 2) != 2:
        return None

    def predict(x: FloatArray) -> FloatArray:
        return np.asarray(booster.predict(x, num_threads=1), dtype=np.float64)

    return predict


def _xgboost(model: Any) -> Predictor | None:
    booster = model.get_booster()
    if getattr(model, "n_classes_", 2) != 2:
        return None

    def predict(x: FloatArray) -> FloatArray:
        return np.asarray(booster.inplace_predict(x), dtype=np.float64)

    return predict


def _network(model: Any) -> Predictor | None:
    import torch

    module = model.module_
    module.eval()

    def predict(x: FloatArray) -> FloatArray:
        with torch.inference_mode():
            logits = module(torch.from_numpy(x.astype(np.float32))).squeeze(1)
            return np.asarray(torch.sigmoid(logits).double().numpy(), dtype=np.float64)

    return predict


def _model_predictor(model: Any) -> Predictor | None:
    kind = type(model).__name__
    if kind in ("OrderedRandomForest", "RandomForestClassifier"):
        return _forest(model)
    if kind == "LGBMClassifier":
        return _lightgbm(model)
    if kind == "XGBClassifier":
        return _xgboost(model)
    if kind == "LightningMLPClassifier":
        return _network(model)
    return None


def compile_pipeline(pipeline: Any) -> Predictor | None:
    """A native predictor of the positive-class probability for a fitted zoo pipeline, or None
    when the pipeline is not one this module knows (see the module docstring)."""
    steps = getattr(pipeline, "named_steps", None)
    if steps is None or list(steps) != ["impute", "scale", "model"]:
        return None
    imputer, scaler = steps["impute"], steps["scale"]
    if getattr(imputer, "add_indicator", False) or getattr(imputer, "keep_empty_features", False):
        return None
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(fill).any():  # an all-NaN training column is dropped by the imputer
        return None
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    model = _model_predictor(steps["model"])
    if model is None:
        return None

    def predict(x: FloatArray) -> FloatArray:
        z = np.where(np.isnan(x), fill, x)
        if mean is not None:
            z -= mean
        if scale is not None:
            z /= scale
        return model(z)

    return predict
