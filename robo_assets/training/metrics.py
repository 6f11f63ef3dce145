"""Out-of-sample classification and ranking metrics of predicted probabilities."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

ArrayLike = npt.ArrayLike
_EPS = float(np.finfo(np.float64).eps)

METRIC_NAMES = ("auc", "log_loss", "accuracy", "brier", "ic", "rank_ic")


def _pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(da @ da) * float(db @ db))
    return float(da @ db) / denom if denom > 0 else math.nan


def auc_score(target: npt.NDArray[np.float64], probability: npt.NDArray[np.float64]) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties count one half); NaN with a single class."""
    n_pos = float(target.sum())
    n_neg = float(len(target) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(probability)
    return (float(ranks[target == 1].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def classification_metrics(
    target: ArrayLike, probability: ArrayLike, fwd_return: ArrayLike
) -> dict[str, float]:
    """``auc``, ``log_loss`` (probabilities clipped to [eps, 1 - eps]), ``accuracy`` (threshold
    0.5), ``brier``, ``ic`` (Pearson of probability and forward return) and ``rank_ic``
    (Spearman). ``target`` is 0/1. Undefined values (one class, constant input) are NaN."""
    y = np.asarray(target, dtype=np.float64).ravel()
    p = np.asarray(probability, dtype=np.float64).ravel()
    r = np.asarray(fwd_return, dtype=np.float64).ravel()
    if not len(y) == len(p) == len(r):
        raise ValueError(f"lengths differ: target {len(y)}, probability {len(p)}, fwd {len(r)}")
    if len(y) == 0:
        raise ValueError("classification_metrics needs at least one row")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("target must be 0/1 without nulls")
    if not (np.isfinite(p).all() and np.isfinite(r).all()):
        raise ValueError("probability and fwd_return must be finite")
    clipped = np.clip(p, _EPS, 1 - _EPS)
    return {
        "auc": auc_score(y, p),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))),
        "accuracy": float(np.mean((p > 0.5) == (y == 1))),
        "brier": float(np.mean((p - y) ** 2)),
        "ic": _pearson(p, r),
        "rank_ic": _pearson(rankdata(p), rankdata(r)),
    }


def clustered_auc_se(target: ArrayLike, probability: ArrayLike, cluster: ArrayLike) -> float:
    """Standard error of the ROC AUC when rows are dependent within clusters (e.g. sessions:
    overlapping labels and a shared market make neighbouring rows far from independent).

    DeLong's placement values summed per cluster (Obuchowski's clustered AUC): with every row
    its own cluster this is the usual DeLong standard error. NaN with a single class or cluster.
    """
    y = np.asarray(target, dtype=np.float64).ravel()
    p = np.asarray(probability, dtype=np.float64).ravel()
    _, groups = np.unique(np.asarray(cluster).ravel(), return_inverse=True)
    if not len(y) == len(p) == len(groups):
        raise ValueError("target, probability and cluster lengths differ")
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    n_clusters = int(groups.max()) + 1 if len(groups) else 0
    if n_pos == 0 or n_neg == 0 or n_clusters < 2:
        return math.nan
    ranks = rankdata(p)
    placement = np.empty(len(y))
    # a positive's share of negatives ranked below it; a negative's share of positives above it
    placement[pos] = (ranks[pos] - rankdata(p[pos])) / n_neg
    placement[~pos] = (n_pos - (ranks[~pos] - rankdata(p[~pos]))) / n_pos
    auc = float(placement[pos].mean())
    weights = np.where(pos, 1.0 / n_pos, 1.0 / n_neg)
    per_cluster = np.bincount(groups, weights=weights * (placement - auc), minlength=n_clusters)
    return math.sqrt(n_clusters / (n_clusters - 1) * float(per_cluster @ per_cluster))
