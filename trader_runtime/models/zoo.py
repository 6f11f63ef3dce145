"""The model zoo: every family is a scikit-learn pipeline ``impute -> scale -> model``.

The whole pipeline is fit per training fold, so the median imputer and the scaler only ever see
that fold's rows. ``predict_proba(X)[:, 1]`` is the probability of ``target == 1``; ``X`` is a
float numpy array or a pandas DataFrame with the feature columns (the walk-forward fits on a
DataFrame, so a fitted pipeline knows its feature names and MLflow's pandas input matches them).

Every estimator is seeded by ``seed`` (its ``random_state``): a refit on the same rows gives
identical probabilities. DEFAULT_PARAMS are sized so one family's 4-fold walk-forward over ~330k
rows x 50 features takes about a minute or less on 2 cores.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]
from sklearn.impute import SimpleImputer  # type: ignore[import-untyped]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]
from sklearn.utils.validation import check_is_fitted  # type: ignore[import-untyped]

Family = Literal["random_forest", "xgboost", "lightgbm", "mlp"]
FAMILIES: tuple[Family, ...] = get_args(Family)

DEFAULT_PARAMS: Mapping[Family, Mapping[str, object]] = MappingProxyType(
    {
        # shallow, heavily regularised models: the predictable part of minute returns is small,
        # and deeper trees or faster learning fit noise (worse out-of-sample log loss than a
        # constant); each tree of the forest sees a 10% bootstrap sample to bound its cost
        "random_forest": MappingProxyType(
            {
                "n_estimators": 100,
                "max_depth": 8,
                "max_features": "sqrt",
                "max_samples": 0.1,
                "min_samples_leaf": 500,
                "n_jobs": 2,
            }
        ),
        "xgboost": MappingProxyType(
            {
                "n_estimators": 200,
                "learning_rate": 0.02,
                "max_depth": 3,
                "min_child_weight": 500.0,
                "reg_lambda": 5.0,
                "subsample": 0.8,
                "colsample_bytree": 0.5,
                "tree_method": "hist",
                # one OpenMP thread: on 2 cores, a second busy process (a parallel test worker,
                # another partition run) makes 2-thread OpenMP spin-wait 30-50x slower
                "n_jobs": 1,
            }
        ),
        "lightgbm": MappingProxyType(
            {
                "n_estimators": 200,
                "learning_rate": 0.02,
                "num_leaves": 7,
                "min_child_samples": 2000,
                "reg_lambda": 5.0,
                "subsample": 0.8,
                "subsample_freq": 1,
                "colsample_bytree": 0.5,
                "n_jobs": 1,  # see xgboost: measured 0.8 s on 1 thread vs 26-44 s on 2 contended
            }
        ),
        "mlp": MappingProxyType(
            {
                "hidden_units": 64,
                "n_layers": 2,
                "dropout": 0.3,
                "learning_rate": 1e-3,
                "weight_decay": 1e-3,
                "batch_size": 2048,
                "max_epochs": 8,
                "patience": 2,
                "validation_fraction": 0.1,
            }
        ),
    }
)
"""Modest, fast defaults per family (``random_state`` is not here: it comes from ``seed``)."""


def resolve_params(family: Family, params: Mapping[str, object] | None = None) -> dict[str, object]:
    """The family's defaults overridden by ``params``."""
    if family not in DEFAULT_PARAMS:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    resolved = {**DEFAULT_PARAMS[family], **(params or {})}
    if "random_state" in resolved:
        raise ValueError(
            "pass the seed as make_model(..., seed=...), not as params['random_state']"
        )
    return resolved


class OrderedRandomForest(RandomForestClassifier):  # type: ignore[misc]
    """A RandomForestClassifier whose ``predict_proba`` adds the trees' votes in tree order.

    scikit-learn adds them in thread-completion order when ``n_jobs > 1``, so reruns can differ in
    the last bit; here predictions are bit-identical (fitting is already seeded and parallel)."""

    def predict_proba(self, X: Any) -> npt.NDArray[np.float64]:
        check_is_fitted(self)
        X = self._validate_X_predict(X)
        total = np.zeros((X.shape[0], self.n_classes_), dtype=np.float64)
        for tree in self.estimators_:
            total += tree.predict_proba(X, check_input=False)
        total /= len(self.estimators_)
        return total


def _estimator(family: Family, params: dict[str, Any], seed: int) -> Any:
    if family == "random_forest":
        return OrderedRandomForest(random_state=seed, **params)
    if family == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(random_state=seed, **params)
    if family == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(random_state=seed, verbose=-1, deterministic=True, **params)
    from trader_runtime.models.mlp import LightningMLPClassifier

    return LightningMLPClassifier(random_state=seed, **params)


def make_model(
    family: Family, params: Mapping[str, object] | None = None, *, seed: int = 0
) -> Pipeline:
    """An unfitted ``impute (median) -> scale (standard) -> model`` pipeline of ``family`` with
    DEFAULT_PARAMS overridden by ``params``, seeded by ``seed``."""
    estimator = _estimator(family, resolve_params(family, params), seed)
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("model", estimator),
        ]
    )
