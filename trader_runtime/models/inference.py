"""Native scoring of the zoo's pipelines, for the live loop: same numbers, a fraction of the cost.

A zoo pipeline is ``impute (median) -> scale (standard) -> model``. Scoring one row through
scikit-learn costs about 1.4 ms of wrappers (input validation, feature-name checks, parameter
introspection) around the model; the libraries' own one-row calls cost 0.1-0.3 ms more of
wrappers. ``native_candidates`` reads the fitted statistics and the model's trees or module and
returns functions of a float64 array that do the same arithmetic in the same order, fastest
first:

- impute: ``NaN -> statistics_`` (what ``SimpleImputer.transform`` does);
- scale: ``(x - mean_) / scale_`` (what ``StandardScaler.transform`` does);
- the random forest: every tree walked in tree order on float32 features, the positive-class
  fractions added in that order (``OrderedRandomForest.predict_proba``);
- LightGBM: the trees of ``dump_model`` walked as ``Tree::NumericalDecision`` does, the leaf
  values added in double in tree order, then the binary sigmoid; then ``Booster.predict``;
- XGBoost: the trees of the JSON model walked in float32 (``value < condition`` goes left), the
  leaves added to the base margin in order, then its float32 sigmoid; then
  ``Booster.inplace_predict`` (what ``XGBClassifier.predict_proba`` calls for an array);
- the network: ``network_kernels.forward_row`` on the float32 of the scaled row, the forward
  pass ``LightningMLPClassifier.predict_proba`` itself runs.

The tree walks and the network, imputing and scaling included, are one numba call per batch of rows (a few
microseconds for one row). A candidate is not a promise: ``trader_runtime.live.scoring`` checks
each against the pipeline's ``predict_proba`` bit for bit at load time and takes the first that
agrees, else the pipeline. Every candidate gives NaN for an all-NaN row (a symbol without a bar).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from trader_runtime.models.network_kernels import forward_row, network_arrays, scratch

FloatArray = npt.NDArray[np.float64]
Predictor = Callable[[FloatArray], FloatArray]


@njit(cache=True)
def _prepared(
    x: FloatArray, i: int, fill: FloatArray, mean: FloatArray, scale: FloatArray, z: FloatArray
) -> bool:  # pragma: no cover - compiled
    """Row ``i`` of ``x`` imputed and scaled into ``z`` (``mean``/``scale`` empty: that step is
    off); False when the row is all NaN (a symbol without a bar)."""
    known = False
    for f in range(x.shape[1]):
        v = x[i, f]
        if v != v:
            v = fill[f]
        else:
            known = True
        if mean.shape[0]:
            v = v - mean[f]
        if scale.shape[0]:
            v = v / scale[f]
        z[f] = v
    return known


@njit(cache=True)
def _prepared32(
    x: FloatArray,
    i: int,
    fill: FloatArray,
    mean: FloatArray,
    scale: FloatArray,
    z: FloatArray,
    z32: npt.NDArray[np.float32],
) -> bool:  # pragma: no cover - compiled
    """``_prepared``, then the row cast to float32 into ``z32`` (as the models that score float32
    features cast the scaler's output)."""
    if not _prepared(x, i, fill, mean, scale, z):
        return False
    for f in range(z.shape[0]):
        z32[f] = np.float32(z[f])
    return True


@njit(cache=True)
def _network_positive(
    x: FloatArray,
    fill: FloatArray,
    mean: FloatArray,
    scale: FloatArray,
    weights: npt.NDArray[np.float32],
    biases: npt.NDArray[np.float32],
    shapes: npt.NDArray[np.int64],
) -> FloatArray:  # pragma: no cover - compiled
    """The network's probability of each row imputed, scaled and cast to float32 (as
    ``check_array(dtype=float32)`` casts the scaler's output)."""
    a, b = scratch(x.shape[1], shapes)
    out = np.empty(x.shape[0])
    z = np.empty(x.shape[1])
    z32 = np.empty(x.shape[1], dtype=np.float32)
    for i in range(x.shape[0]):
        if not _prepared32(x, i, fill, mean, scale, z, z32):
            out[i] = np.nan
            continue
        out[i] = forward_row(z32, weights, biases, shapes, a, b)
    return out


@njit(cache=True)
def _forest_positive(
    x: FloatArray,
    fill: FloatArray,
    mean: FloatArray,
    scale: FloatArray,
    feature: npt.NDArray[np.int64],
    threshold: FloatArray,
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    positive: FloatArray,
    roots: npt.NDArray[np.int64],
) -> FloatArray:  # pragma: no cover - compiled
    """The forest's mean positive fraction, trees walked in order on float32 features."""
    n_trees = roots.shape[0]
    out = np.empty(x.shape[0])
    z = np.empty(x.shape[1])
    z32 = np.empty(x.shape[1], dtype=np.float32)
    for i in range(x.shape[0]):
        if not _prepared32(x, i, fill, mean, scale, z, z32):
            out[i] = np.nan
            continue
        total = 0.0
        for t in range(n_trees):
            node = roots[t]
            while left[node] != -1:
                node = left[node] if z32[feature[node]] <= threshold[node] else right[node]
            total += positive[node]
        out[i] = total / n_trees
    return out


_NAN_MISSING, _ZERO_MISSING = 1, 2
_LIGHTGBM_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold


@njit(cache=True)
def _lightgbm_positive(
    x: FloatArray,
    fill: FloatArray,
    mean: FloatArray,
    scale: FloatArray,
    feature: npt.NDArray[np.int64],
    threshold: FloatArray,
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    default_left: npt.NDArray[np.bool_],
    missing: npt.NDArray[np.int64],
    value: FloatArray,
    roots: npt.NDArray[np.int64],
    sigmoid: float,
) -> FloatArray:  # pragma: no cover - compiled
    """LightGBM's binary probability: the trees' leaf values added in order (double), then
    ``1 / (1 + exp(-sigmoid * raw))``; a split as ``Tree::NumericalDecision``."""
    out = np.empty(x.shape[0])
    z = np.empty(x.shape[1])
    for i in range(x.shape[0]):
        if not _prepared(x, i, fill, mean, scale, z):
            out[i] = np.nan
            continue
        raw = 0.0
        for t in range(roots.shape[0]):
            node = roots[t]
            while left[node] != -1:
                v = z[feature[node]]
                kind = missing[node]
                if v != v and kind != _NAN_MISSING:
                    v = 0.0
                if (kind == _ZERO_MISSING and -_LIGHTGBM_ZERO <= v <= _LIGHTGBM_ZERO) or (
                    kind == _NAN_MISSING and v != v
                ):
                    node = left[node] if default_left[node] else right[node]
                else:
                    node = left[node] if v <= threshold[node] else right[node]
            raw += value[node]
        out[i] = 1.0 / (1.0 + np.exp(-sigmoid * raw))
    return out


@njit(cache=True)
def _xgboost_positive(
    x: FloatArray,
    fill: FloatArray,
    mean: FloatArray,
    scale: FloatArray,
    feature: npt.NDArray[np.int64],
    threshold: npt.NDArray[np.float32],
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    default_left: npt.NDArray[np.bool_],
    roots: npt.NDArray[np.int64],
    base_score: float,
) -> FloatArray:  # pragma: no cover - compiled
    """XGBoost's ``binary:logistic`` probability in float32: the base margin
    ``-log(1 / base_score - 1)``, the trees' leaves added in order (a split goes left when
    ``value < condition``, a missing value its default way), then the sigmoid
    ``1 / (exp(-margin) + 1 + 1e-16)``."""
    one = np.float32(1.0)
    base = np.float32(base_score)
    margin0 = -np.log(one / base - one)
    out = np.empty(x.shape[0])
    z = np.empty(x.shape[1])
    for i in range(x.shape[0]):
        if not _prepared(x, i, fill, mean, scale, z):
            out[i] = np.nan
            continue
        margin = margin0
        for t in range(roots.shape[0]):
            node = roots[t]
            while left[node] != -1:
                v = np.float32(z[feature[node]])
                if v != v:
                    node = left[node] if default_left[node] else right[node]
                else:
                    node = left[node] if v < threshold[node] else right[node]
            margin = margin + threshold[node]  # a leaf keeps its value in split_conditions
        out[i] = np.float64(one / (np.exp(-margin) + one + np.float32(1e-16)))
    return out


def _steps(
    fill: FloatArray, mean: FloatArray | None, scale: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    empty = np.empty(0)
    return (
        fill,
        empty if mean is None else np.asarray(mean, dtype=np.float64),
        empty if scale is None else np.asarray(scale, dtype=np.float64),
    )


def _forest(model: Any, prep: tuple[FloatArray, FloatArray, FloatArray]) -> Predictor | None:
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
    arrays: tuple[Any, ...] = (
        np.concatenate(features),
        np.concatenate(thresholds),
        np.concatenate(lefts),
        np.concatenate(rights),
        np.concatenate(positives),
        np.asarray(roots, dtype=np.int64),
    )

    def predict(x: FloatArray) -> FloatArray:
        return _forest_positive(np.ascontiguousarray(x, dtype=np.float64), *prep, *arrays)

    return predict


def _lightgbm_trees(
    model: Any, prep: tuple[FloatArray, FloatArray, FloatArray]
) -> Predictor | None:
    """The booster's trees (``dump_model``) flattened into arrays walked by
    ``_lightgbm_positive``; None for what it does not cover (categorical or linear trees,
    several classes, averaged output, another objective)."""
    if getattr(model, "n_classes_", 2) != 2:
        return None
    dump = model.booster_.dump_model()
    objective = str(dump.get("objective", "")).split()
    if (
        not objective
        or objective[0] != "binary"
        or dump.get("num_tree_per_iteration", 1) != 1
        or dump.get("average_output", False)
    ):
        return None
    sigmoid = 1.0
    for part in objective[1:]:
        if part.startswith("sigmoid:"):
            sigmoid = float(part.split(":", 1)[1])
    columns: dict[str, list[Any]] = {
        k: [] for k in ("feature", "threshold", "left", "right", "default", "missing", "value")
    }
    roots: list[int] = []
    for info in dump["tree_info"]:
        roots.append(len(columns["value"]))
        stack = [(info["tree_structure"], -1, False)]  # (node, parent, is the right child)
        while stack:
            node, parent, is_right = stack.pop()
            at = len(columns["value"])
            if parent >= 0:
                columns["right" if is_right else "left"][parent] = at
            if "leaf_value" in node:
                row = (0, 0.0, -1, -1, False, 0, float(node["leaf_value"]))
            else:
                if node.get("decision_type") != "<=":
                    return None
                kind = {"None": 0, "NaN": _NAN_MISSING, "Zero": _ZERO_MISSING}.get(
                    node.get("missing_type", "None")
                )
                if kind is None:
                    return None
                row = (
                    int(node["split_feature"]),
                    float(node["threshold"]),
                    -2,  # set when the children are placed
                    -2,
                    bool(node["default_left"]),
                    kind,
                    0.0,
                )
                stack.append((node["right_child"], at, True))
                stack.append((node["left_child"], at, False))
            for key, v in zip(columns, row, strict=True):
                columns[key].append(v)
    arrays: tuple[Any, ...] = (
        np.asarray(columns["feature"], dtype=np.int64),
        np.asarray(columns["threshold"], dtype=np.float64),
        np.asarray(columns["left"], dtype=np.int64),
        np.asarray(columns["right"], dtype=np.int64),
        np.asarray(columns["default"], dtype=np.bool_),
        np.asarray(columns["missing"], dtype=np.int64),
        np.asarray(columns["value"], dtype=np.float64),
        np.asarray(roots, dtype=np.int64),
    )

    kernel: Any = _lightgbm_positive  # numba's stub cannot count the starred arrays

    def predict(x: FloatArray) -> FloatArray:
        out: FloatArray = kernel(np.ascontiguousarray(x, dtype=np.float64), *prep, *arrays, sigmoid)
        return out  # the kernel's own array

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


def _network(model: Any, prep: tuple[FloatArray, FloatArray, FloatArray]) -> Predictor | None:
    """The network's compiled forward pass (``LightningMLPClassifier.predict_proba``'s own)
    after imputing and scaling, in one call."""
    arrays = network_arrays(model.module_)
    if arrays is None:
        return None
    fill, mean, scale = prep

    def predict(x: FloatArray) -> FloatArray:
        out: FloatArray = _network_positive(
            np.ascontiguousarray(x, dtype=np.float64), fill, mean, scale, *arrays
        )
        return out  # the kernel's own array

    return predict


def _xgboost_trees(model: Any, prep: tuple[FloatArray, FloatArray, FloatArray]) -> Predictor | None:
    """The booster's trees (its JSON model) flattened into arrays walked by
    ``_xgboost_positive``; None for what it does not cover (another objective or booster,
    several targets, categorical splits, a best iteration that drops trees)."""
    if getattr(model, "n_classes_", 2) != 2 or getattr(model, "best_iteration", None) is not None:
        return None
    learner = json.loads(model.get_booster().save_raw(raw_format="json"))["learner"]
    params = learner["learner_model_param"]
    booster = learner["gradient_booster"]
    if (
        learner["objective"]["name"] != "binary:logistic"
        or booster["name"] != "gbtree"
        or params.get("num_target", "1") != "1"
        or booster["model"]["gbtree_model_param"].get("num_parallel_tree", "1") != "1"
    ):
        return None
    base_score = float(str(params["base_score"]).strip("[]"))
    columns: dict[str, list[Any]] = {
        k: [] for k in ("feature", "split", "left", "right", "default")
    }
    roots: list[int] = []
    for tree in booster["model"]["trees"]:
        if any(tree.get("split_type", [])):
            return None
        offset = len(columns["split"])
        roots.append(offset)
        lefts, rights = tree["left_children"], tree["right_children"]
        columns["feature"] += tree["split_indices"]
        columns["split"] += tree["split_conditions"]
        columns["left"] += [-1 if c == -1 else c + offset for c in lefts]
        columns["right"] += [-1 if c == -1 else c + offset for c in rights]
        columns["default"] += tree["default_left"]
    arrays: tuple[Any, ...] = (
        np.asarray(columns["feature"], dtype=np.int64),
        np.asarray(columns["split"], dtype=np.float32),
        np.asarray(columns["left"], dtype=np.int64),
        np.asarray(columns["right"], dtype=np.int64),
        np.asarray(columns["default"], dtype=np.bool_),
        np.asarray(roots, dtype=np.int64),
    )
    kernel: Any = _xgboost_positive

    def predict(x: FloatArray) -> FloatArray:
        out: FloatArray = kernel(
            np.ascontiguousarray(x, dtype=np.float64), *prep, *arrays, base_score
        )
        return out  # the kernel's own array

    return predict


def _around(
    model: Predictor | None, prep: tuple[FloatArray, FloatArray, FloatArray]
) -> Predictor | None:
    """``model`` of the imputed and scaled rows, NaN for an all-NaN row (in NumPy)."""
    if model is None:
        return None
    fill, mean, scale = prep

    def predict(x: FloatArray) -> FloatArray:
        out = np.full(x.shape[0], np.nan)
        rows = np.flatnonzero(~np.all(np.isnan(x), axis=1))
        if rows.size:
            known = x[rows]
            z = np.where(np.isnan(known), fill, known)
            if mean.size:
                z -= mean
            if scale.size:
                z /= scale
            out[rows] = model(z)
        return out

    return predict


def native_candidates(pipeline: Any) -> list[Predictor]:
    """Native predictors of the positive-class probability for a fitted zoo pipeline, fastest
    first (empty when the pipeline is not one this module knows; see the module docstring).
    Each gives NaN for an all-NaN row."""
    steps = getattr(pipeline, "named_steps", None)
    if steps is None or list(steps) != ["impute", "scale", "model"]:
        return []
    imputer, scaler = steps["impute"], steps["scale"]
    if getattr(imputer, "add_indicator", False) or getattr(imputer, "keep_empty_features", False):
        return []
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(fill).any():  # an all-NaN training column is dropped by the imputer
        return []
    prep = _steps(
        fill,
        scaler.mean_ if scaler.with_mean else None,
        scaler.scale_ if scaler.with_std else None,
    )
    model = steps["model"]
    kind = type(model).__name__
    found: list[Predictor | None] = []
    if kind in ("OrderedRandomForest", "RandomForestClassifier"):
        found = [_forest(model, prep)]
    elif kind == "LGBMClassifier":
        found = [_lightgbm_trees(model, prep), _around(_lightgbm(model), prep)]
    elif kind == "XGBClassifier":
        found = [_xgboost_trees(model, prep), _around(_xgboost(model), prep)]
    elif kind == "LightningMLPClassifier":
        found = [_network(model, prep)]
    return [p for p in found if p is not None]


def compile_pipeline(pipeline: Any) -> Predictor | None:
    """The fastest native predictor of ``native_candidates``, or None."""
    found = native_candidates(pipeline)
    return found[0] if found else None
