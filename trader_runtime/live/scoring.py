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
from trader_runtime.models.inference import Predictor, native_candidates

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
    """A registered scikit-learn pipeline and its feature columns, ready to score.

    Scoring goes through the first of ``trader_runtime.models.inference.native_candidates`` whose
    predictor gives the pipeline's own probabilities bit for bit on a probe of rows (checked
    here, once); otherwise through the pipeline. ``native`` says which."""

    def __init__(self, ref: ModelRef, model: Any, feature_names: tuple[str, ...]) -> None:
        self.ref = ref
        self.model = model
        self.feature_names = feature_names
        self._native = _checked_native(model, len(feature_names))

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def native(self) -> bool:
        return self._native is not None

    def predict(self, features: FloatArray) -> FloatArray:
        """Probabilities per row of ``features`` (NaN for an all-NaN row: a symbol without a bar)."""
        if self._native is not None:
            return self._native(features)
        out = np.full(features.shape[0], np.nan)
        rows = np.flatnonzero(~np.all(np.isnan(features), axis=1))
        if rows.size:
            out[rows] = _pipeline_positive(self.model, features[rows])
        return out


def _pipeline_positive(model: Any, features: FloatArray) -> FloatArray:
    # a plain array and no re-validation: the columns are checked once at load time, and
    # pandas plus scikit-learn's per-call checks cost more than the model itself
    with (
        warnings.catch_warnings(),
        sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
    ):
        warnings.simplefilter("ignore", UserWarning)
        proba = model.predict_proba(features)
    return np.asarray(proba, dtype=np.float64)[:, 1]


def _probe(model: Any, n_features: int, n_rows: int = 64) -> FloatArray:
    """Rows spread around the training statistics (some values missing), seeded."""
    rng = np.random.default_rng(20240102)
    scaler = getattr(model, "named_steps", {}).get("scale")
    mean = getattr(scaler, "mean_", np.zeros(n_features))
    scale = getattr(scaler, "scale_", np.ones(n_features))
    rows = mean + scale * rng.standard_normal((n_rows, n_features)) * 1.5
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return np.asarray(rows, dtype=np.float64)


def _checked_native(model: Any, n_features: int) -> Predictor | None:
    """The first native predictor that equals the pipeline bit for bit, row by row and in a
    batch (None: the pipeline scores)."""
    try:
        candidates = native_candidates(model)
        probe = _probe(model, n_features) if candidates else None
    except Exception:  # any surprise in a model's internals: keep the pipeline
        return None
    for native in candidates:
        try:
            if _equal(native, model, probe):
                return native
        except Exception:
            continue
    return None


def _equal(native: Predictor, model: Any, probe: FloatArray | None) -> bool:
    if probe is None or not np.array_equal(native(probe), _pipeline_positive(model, probe)):
        return False
    return all(
        np.array_equal(native(row[None, :]), _pipeline_positive(model, row[None, :]))
        for row in probe[:8]
    )


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
