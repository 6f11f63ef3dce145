"""Drift of a model's inputs and outputs between its training data and recent data.

Pure functions over samples (no Dagster, no I/O):

- ``psi``: the population stability index of one variable, on bins cut at the quantiles of the
  expected (training) sample; ties and constant columns collapse bins instead of creating empty
  ones, and an empty bin counts as a small epsilon share so the index stays finite.
- ``ks``: the two-sample Kolmogorov-Smirnov statistic and p-value (scipy).
- ``information_coefficient``: the Spearman rank correlation of predictions with realized returns.
- ``drift_report``: all of it per feature, for the predictions and for the realized IC, with a
  verdict (``drifted``) and the reasons behind it, judged against ``DriftConfig``.

A feature counts as drifted when its PSI reaches ``psi_alert`` *and* the KS test rejects equal
distributions at ``ks_pvalue_alert``: with a large training sample the KS test alone rejects
shifts too small to matter, and PSI alone can flag noise on a small recent sample. The
predictions count as drifted on their PSI alone; the IC when it falls below ``ic_floor`` on at
least ``min_samples`` pairs. Fewer than ``min_samples`` recent rows give no verdict.

``scipy.stats`` is imported on first use: ``trader_runtime.settings`` imports this module for
``DriftConfig`` and should stay quick to import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from trader_runtime.errors import RoboTraderError

FloatArray = npt.NDArray[np.float64]
EMPTY_BIN_SHARE: Final = 1e-4


class DriftInputError(RoboTraderError):
    """Samples that cannot be compared: empty, misaligned, or without a common feature."""


class DriftConfig(BaseModel):
    """Alert thresholds of drift monitoring (``ROBO_DRIFT__PSI_ALERT=0.2`` etc.).

    - ``psi_alert``: PSI at or above which a feature (or the predictions) has shifted; 0.1-0.25
      is the usual "watch" band, above 0.25 a material shift;
    - ``ks_pvalue_alert``: a feature's KS p-value must also fall below this to count;
    - ``ic_floor``: the realized information coefficient of recent predictions must stay at or
      above it (0: the model should not be ranking returns backwards);
    - ``min_samples``: recent rows (and prediction/return pairs for the IC) needed for a verdict;
    - ``recent_sessions``: how many of the latest sessions make up "recent".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    psi_alert: float = Field(default=0.25, gt=0.0)
    ks_pvalue_alert: float = Field(default=0.01, gt=0.0, lt=1.0)
    ic_floor: float = Field(default=0.0, ge=-1.0, le=1.0)
    min_samples: int = Field(default=200, ge=2)
    recent_sessions: int = Field(default=5, ge=1)


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's shift from training to recent data."""

    name: str
    psi: float
    ks_statistic: float
    ks_pvalue: float
    drifted: bool


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Per-feature drift (largest PSI first), the predictions' PSI, the realized IC and the
    verdict. ``ic`` is NaN when fewer than two finite prediction/return pairs exist."""

    features: tuple[FeatureDrift, ...]
    prediction_psi: float
    prediction_ks_pvalue: float
    ic: float
    n_train: int
    n_recent: int
    n_ic_pairs: int
    enough_samples: bool
    drifted: bool
    reasons: tuple[str, ...]

    @property
    def max_psi(self) -> float:
        """The largest feature PSI (0 when no feature was compared)."""
        return max((f.psi for f in self.features), default=0.0)

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.drifted)


def _finite(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (non-finite values dropped).

    Bin edges are the ``bins``-quantiles of ``expected`` (repeated edges merged, outer bins open);
    a bin's share is ``max(count / n, EMPTY_BIN_SHARE)``. Every term ``(a - e) * ln(a / e)`` is
    non-negative, so the index is >= 0, and 0 for identical samples.
    """
    if bins < 2:
        raise DriftInputError(f"psi needs at least 2 bins, got {bins}")
    exp = _finite(expected)
    act = _finite(actual)
    if exp.size == 0 or act.size == 0:
        raise DriftInputError(
            f"psi needs finite values in both samples (expected {exp.size}, actual {act.size})"
        )
    inner = np.quantile(exp, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(inner)
    # bin i holds edges[i-1] < x <= edges[i]; values equal to an edge fall on the same side in
    # both samples, so ties never split differently
    exp_share = _shares(np.searchsorted(edges, exp, side="left"), edges.size + 1)
    act_share = _shares(np.searchsorted(edges, act, side="left"), edges.size + 1)
    return float(np.sum((act_share - exp_share) * np.log(act_share / exp_share)))


def _shares(bin_index: npt.NDArray[np.intp], n_bins: int) -> FloatArray:
    counts = np.bincount(bin_index, minlength=n_bins).astype(np.float64)
    shares: FloatArray = np.maximum(counts / counts.sum(), EMPTY_BIN_SHARE)
    return shares


def ks(expected: npt.ArrayLike, actual: npt.ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov ``(statistic, pvalue)`` (non-finite values dropped)."""
    from scipy import stats

    exp = _finite(expected)
    act = _finite(actual)
    if exp.size == 0 or act.size == 0:
        raise DriftInputError(
            f"ks needs finite values in both samples (expected {exp.size}, actual {act.size})"
        )
    result: Any = stats.ks_2samp(exp, act)
    return float(result.statistic), float(result.pvalue)


def information_coefficient(prediction: npt.ArrayLike, realized_return: npt.ArrayLike) -> float:
    """Spearman rank correlation of predictions with the returns that followed them, over the
    pairs where both are finite; NaN with fewer than two pairs or a constant side."""
    pred = np.asarray(prediction, dtype=np.float64).ravel()
    ret = np.asarray(realized_return, dtype=np.float64).ravel()
    if pred.shape != ret.shape:
        raise DriftInputError(
            f"{pred.size} predictions but {ret.size} realized returns: they must be aligned"
        )
    both = np.isfinite(pred) & np.isfinite(ret)
    pred, ret = pred[both], ret[both]
    if pred.size < 2 or np.ptp(pred) == 0.0 or np.ptp(ret) == 0.0:
        return math.nan
    from scipy import stats

    result: Any = stats.spearmanr(pred, ret)
    return float(result.statistic)


def drift_report(
    train_features: pl.DataFrame,
    recent_features: pl.DataFrame,
    train_predictions: npt.ArrayLike,
    recent_predictions: npt.ArrayLike,
    recent_returns: npt.ArrayLike,
    config: DriftConfig | None = None,
) -> DriftReport:
    """Compare recent data with the training data (see the module docstring for the verdict).

    Features are the numeric columns the two frames share; ``recent_returns`` are the realized
    forward returns aligned with ``recent_predictions`` (NaN where not yet known).
    """
    cfg = config if config is not None else DriftConfig()
    names = _common_numeric(train_features, recent_features)
    train_pred = np.asarray(train_predictions, dtype=np.float64).ravel()
    recent_pred = np.asarray(recent_predictions, dtype=np.float64).ravel()
    returns = np.asarray(recent_returns, dtype=np.float64).ravel()
    if train_features.height == 0:
        raise DriftInputError("the training sample is empty")
    if recent_pred.size != recent_features.height:
        raise DriftInputError(
            f"{recent_pred.size} recent predictions for {recent_features.height} recent rows"
        )
    n_recent = recent_features.height
    enough = n_recent >= cfg.min_samples
    features = sorted(
        (_feature_drift(n, train_features[n], recent_features[n], cfg) for n in names),
        key=lambda f: (not math.isfinite(f.psi), -f.psi if math.isfinite(f.psi) else 0.0, f.name),
    )
    pred_psi, pred_p = _compare(train_pred, recent_pred)
    ic = information_coefficient(recent_pred, returns)
    n_pairs = int(np.sum(np.isfinite(recent_pred) & np.isfinite(returns)))
    reasons: list[str] = []
    if enough:
        shifted = [f for f in features if f.drifted]
        if shifted:
            top = ", ".join(f"{f.name} (PSI {f.psi:.2f})" for f in shifted[:5])
            more = f" and {len(shifted) - 5} more" if len(shifted) > 5 else ""
            reasons.append(f"{len(shifted)} of {len(features)} features shifted: {top}{more}")
        if math.isfinite(pred_psi) and pred_psi >= cfg.psi_alert:
            reasons.append(f"predictions shifted: PSI {pred_psi:.2f} >= {cfg.psi_alert}")
        if n_pairs >= cfg.min_samples and math.isfinite(ic) and ic < cfg.ic_floor:
            reasons.append(f"realized IC {ic:+.3f} < {cfg.ic_floor} over {n_pairs} predictions")
    return DriftReport(
        features=tuple(features),
        prediction_psi=pred_psi,
        prediction_ks_pvalue=pred_p,
        ic=ic,
        n_train=train_features.height,
        n_recent=n_recent,
        n_ic_pairs=n_pairs,
        enough_samples=enough,
        drifted=bool(reasons),
        reasons=tuple(reasons),
    )


def _common_numeric(train: pl.DataFrame, recent: pl.DataFrame) -> Sequence[str]:
    names = [
        n
        for n in train.columns
        if n in recent.columns and train[n].dtype.is_numeric() and recent[n].dtype.is_numeric()
    ]
    if not names:
        raise DriftInputError(
            "the training and recent samples share no numeric feature column "
            f"(training {train.columns[:5]}..., recent {recent.columns[:5]}...)"
        )
    return names


def _compare(expected: FloatArray, actual: FloatArray) -> tuple[float, float]:
    """(PSI, KS p-value), NaN for both when either side has no finite value."""
    if not (np.isfinite(expected).any() and np.isfinite(actual).any()):
        return math.nan, math.nan
    return psi(expected, actual), ks(expected, actual)[1]


def _feature_drift(
    name: str, expected: pl.Series, actual: pl.Series, cfg: DriftConfig
) -> FeatureDrift:
    exp = expected.cast(pl.Float64).to_numpy()
    act = actual.cast(pl.Float64).to_numpy()
    if not (np.isfinite(exp).any() and np.isfinite(act).any()):
        return FeatureDrift(name, math.nan, math.nan, math.nan, drifted=False)
    statistic, pvalue = ks(exp, act)
    value = psi(exp, act)
    return FeatureDrift(
        name=name,
        psi=value,
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        drifted=value >= cfg.psi_alert and pvalue < cfg.ks_pvalue_alert,
    )
