"""Walk-forward splits over time, pooled across symbols, with purge and embargo.

The last ``n_folds * test_sessions`` sessions of the data are cut into consecutive test windows.
Fold k trains on rows before its test window (all of them: ``expanding``; the last
``train_sessions``: ``rolling``) minus:
- the purge: rows whose label window ends at or after the test start (``label_end_ts >= test_start``),
  and rows within ``purge_bars`` of the test start;
- the embargo: a further ``embargo_bars`` before the test start.
``purge_bars`` must be at least the label horizon.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import polars as pl

from trader_runtime.errors import ConfigError

Scheme = Literal["expanding", "rolling"]


@dataclass(frozen=True, slots=True)
class WalkForwardSpec:
    n_folds: int = 4
    scheme: Scheme = "expanding"
    test_sessions: int = 15
    train_sessions: int = 40  # minimum history (expanding) or window length (rolling)
    purge_bars: int = 15
    embargo_bars: int = 30
    bar_minutes: int = 1

    def __post_init__(self) -> None:
        if self.n_folds < 1 or self.test_sessions < 1 or self.train_sessions < 1:
            raise ConfigError("walk-forward n_folds, test_sessions and train_sessions must be >= 1")
        if self.purge_bars < 0 or self.embargo_bars < 0:
            raise ConfigError("walk-forward purge_bars and embargo_bars must be >= 0")

    def check_purge(self, label_horizon_bars: int) -> None:
        """Refuse a purge shorter than the label horizon: labels would leak into the test window."""
        if self.purge_bars < label_horizon_bars:
            raise ConfigError(
                f"purge_bars ({self.purge_bars}) must be >= the label horizon "
                f"({label_horizon_bars} bars), or training labels overlap the test window"
            )

    @property
    def gap(self) -> timedelta:
        return timedelta(minutes=(self.purge_bars + self.embargo_bars) * self.bar_minutes)


@dataclass(frozen=True, slots=True)
class Fold:
    fold: int
    train_start: datetime
    train_end: datetime  # rows with ts < train_end (exclusive), after purge and embargo
    test_start: datetime
    test_end: datetime  # inclusive


def sessions_of(ts: pl.Series) -> pl.Series:
    """Sorted unique New York session dates of bar-close instants."""
    return sessions_of_each(ts).unique().sort()


def walk_forward_folds(ts: pl.Series, spec: WalkForwardSpec) -> list[Fold]:
    """Fold boundaries for the pooled timestamps ``ts`` (any order, repeats allowed)."""
    sessions = sessions_of(ts)
    needed = spec.train_sessions + spec.n_folds * spec.test_sessions
    if sessions.len() < needed:
        raise ConfigError(
            f"walk-forward needs {needed} sessions ({spec.train_sessions} train + "
            f"{spec.n_folds} x {spec.test_sessions} test), the data has {sessions.len()}"
        )
    frame = pl.DataFrame({"ts": ts}).with_columns(session=sessions_of_each(ts))
    bounds = frame.group_by("session").agg(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    first = dict(zip(bounds["session"].to_list(), bounds["first"].to_list(), strict=True))
    last = dict(zip(bounds["session"].to_list(), bounds["last"].to_list(), strict=True))
    days = sessions.to_list()
    start = len(days) - spec.n_folds * spec.test_sessions
    folds = []
    for k in range(spec.n_folds):
        test_days = days[start + k * spec.test_sessions : start + (k + 1) * spec.test_sessions]
        test_start = first[test_days[0]]
        train_from = (
            0
            if spec.scheme == "expanding"
            else start + k * spec.test_sessions - spec.train_sessions
        )
        folds.append(
            Fold(
                fold=k,
                train_start=first[days[train_from]],
                train_end=test_start - spec.gap,
                test_start=test_start,
                test_end=last[test_days[-1]],
            )
        )
    return folds


def sessions_of_each(ts: pl.Series) -> pl.Series:
    """The New York date of each bar close (a bar closing at midnight belongs to the day before)."""
    return (ts.dt.convert_time_zone("America/New_York") - timedelta(microseconds=1)).dt.date()


def fold_masks(frame: pl.DataFrame, fold: Fold) -> tuple[pl.Series, pl.Series]:
    """Boolean train and test masks over ``frame`` (needs ``ts`` and ``label_end_ts``)."""
    ts, end = frame["ts"], frame["label_end_ts"]
    train = ((ts >= fold.train_start) & (ts < fold.train_end) & (end < fold.test_start)).fill_null(
        False
    )
    test = ((ts >= fold.test_start) & (ts <= fold.test_end)).fill_null(False)
    return train.alias("train"), test.alias("test")


def fold_table(frame: pl.DataFrame, folds: list[Fold], spec: WalkForwardSpec) -> pl.DataFrame:
    """One row per fold: boundaries, row counts, purge and embargo (for metadata and checks)."""
    rows = []
    for fold in folds:
        train, test = fold_masks(frame, fold)
        rows.append(
            {
                "fold": fold.fold,
                "scheme": spec.scheme,
                "train_start": fold.train_start,
                "train_end": fold.train_end,
                "test_start": fold.test_start,
                "test_end": fold.test_end,
                "n_train": int(train.sum()),
                "n_test": int(test.sum()),
                "purge_bars": spec.purge_bars,
                "embargo_bars": spec.embargo_bars,
            }
        )
    return pl.DataFrame(rows)


TRAIN, TEST = "train", "test"


def fold_column(k: int) -> str:
    return f"fold_{k}"


def assign_folds(frame: pl.DataFrame, folds: list[Fold]) -> pl.DataFrame:
    """``symbol, ts`` and one column per fold: ``"train"``, ``"test"`` or null (unused)."""
    columns = []
    for fold in folds:
        train, test = fold_masks(frame, fold)
        columns.append(
            pl.when(train)
            .then(pl.lit(TRAIN))
            .when(test)
            .then(pl.lit(TEST))
            .otherwise(None)
            .alias(fold_column(fold.fold))
        )
    return frame.select("symbol", "ts").with_columns(columns)


def leakage_violations(
    labelled: pl.DataFrame, assignment: pl.DataFrame, *, min_gap: timedelta
) -> dict[str, dict[str, int]]:
    """Check a stored fold assignment against the labels, independently of how it was built.

    Per fold: train rows whose label window ends at or after the first test bar, train rows closer
    than ``min_gap`` (purge + embargo) to the first test bar, and folds without train or test rows.
    Empty when every fold is clean.
    """
    joined = assignment.join(
        labelled.select("symbol", "ts", "label_end_ts"), on=["symbol", "ts"], how="left"
    )
    found: dict[str, dict[str, int]] = {}
    for col in (c for c in assignment.columns if c.startswith("fold_")):
        train = joined.filter(pl.col(col) == TRAIN)
        test = joined.filter(pl.col(col) == TEST)
        issues: dict[str, int] = {}
        if train.height == 0 or test.height == 0:
            issues["empty_side"] = 1
        else:
            first_test = test["ts"].min()
            issues["label_reaches_test"] = int(
                (train["label_end_ts"].is_null() | (train["label_end_ts"] >= first_test)).sum()
            )
            issues["inside_purge_or_embargo"] = int(
                (train["ts"] > first_test - min_gap).sum()  # type: ignore[operator]
            )
        issues = {k: v for k, v in issues.items() if v}
        if issues:
            found[col] = issues
    return found
