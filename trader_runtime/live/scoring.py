"""The model the live engine trades: loaded from the MLflow registry, checked against the code.

``load_model`` resolves ``models:/<name>@<alias>`` (or an explicit version) to a registered
version, refuses it when its ``feature_set_hash`` tag differs from the feature set this code
computes (a model trained on other features would score garbage), and loads the scikit-learn
pipeline itself: ``predict_proba`` on a small frame costs far less than the pyfunc wrapper.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import sklearn  # type: ignore[import-untyped]

from trader_runtime.errors import RoboTraderError

FloatArray = npt.NDArray[np.float64]
FEATURE_SET_TAG = "feature_set_hash"


class ModelLoadError(RoboTraderError):
    """No usable model: no version under the alias, or the registry is unreachable."""


class FeatureSetMismatchError(ModelLoadError):
    """The model was trained on another feature set than this code computes."""


class Scorer(Protocol):
    """Probabilities of the label's positive class for rows of features."""

    @property
    def version(self) -> str: ...

    def predict(self, features: FloatArray) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A registered model version and what it was trained on."""

    name: str
    version: str
    uri: str
    family: str
    feature_set_hash: str
    alias: str | None


class LoadedModel:
    """A registered scikit-learn pipeline and its feature columns, ready to score."""

    def __init__(self, ref: ModelRef, model: Any, feature_names: tuple[str, ...]) -> None:
        self.ref = ref
        self.model = model
        self.feature_names = feature_names

    @property
    def version(self) -> str:
        return self.ref.version

    def predict(self, features: FloatArray) -> FloatArray:
        """Probabilities per row of ``features`` (NaN for an all-NaN row: a symbol without a bar)."""
        out = np.full(features.shape[0], np.nan)
        rows = np.flatnonzero(~np.all(np.isnan(features), axis=1))
        if rows.size == 0:
            return out
        # a plain array and no re-validation: the columns are checked once at load time, and
        # pandas plus scikit-learn's per-call checks cost more than the model itself
        with (
            warnings.catch_warnings(),
            sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
        ):
            warnings.simplefilter("ignore", UserWarning)
            proba = self.model.predict_proba(features[rows])
        out[rows] = np.asarray(proba, dtype=np.float64)[:, 1]
        return out


def resolve(
    tracking_uri: str, name: str, *, alias: str | None = "champion", version: str | None = None
) -> ModelRef:
    """The registered version under ``alias`` (or ``version``) of model ``name``."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        if version is not None:
            mv = client.get_model_version(name, version)
            alias = None
        elif alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            raise ModelLoadError("give an alias or a version")
    except MlflowException as exc:
        where = f"@{alias}" if version is None else f"version {version}"
        raise ModelLoadError(f"no model {name}{where} in {tracking_uri}: {exc}") from exc
    tags = dict(mv.tags or {})
    return ModelRef(
        name=name,
        version=str(mv.version),
        uri=f"models:/{name}/{mv.version}",
        family=tags.get("family", ""),
        feature_set_hash=tags.get(FEATURE_SET_TAG, ""),
        alias=alias,
    )


def load_model(
    tracking_uri: str,
    name: str,
    *,
    expected_feature_set_hash: str,
    expected_features: tuple[str, ...],
    alias: str | None = "champion",
    version: str | None = None,
) -> LoadedModel:
    """Load and check a registered version (see the module docstring)."""
    import mlflow

    ref = resolve(tracking_uri, name, alias=alias, version=version)
    if ref.feature_set_hash != expected_feature_set_hash:
        raise FeatureSetMismatchError(
            f"{ref.uri} was trained on feature set {ref.feature_set_hash or '(untagged)'}, "
            f"this code computes {expected_feature_set_hash}: retrain, or run the code it was "
            "trained with"
        )
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.sklearn.load_model(ref.uri)
    names = tuple(getattr(model, "feature_names_in_", expected_features))
    if names != expected_features:
        raise FeatureSetMismatchError(
            f"{ref.uri} expects columns {list(names)[:5]}..., the feature set gives "
            f"{list(expected_features)[:5]}..."
        )
    return LoadedModel(ref, model, expected_features)
