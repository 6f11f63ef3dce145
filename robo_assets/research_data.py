"""Features, labels, the pooled training set and splits as plain functions over the lake."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from robo_assets.labels import LABEL_COLUMNS, LabelSpec, compute_labels
from robo_assets.market_data import BARS
from robo_assets.splits import WalkForwardSpec, assign_folds, fold_table, walk_forward_folds
from trader_runtime.features.batch import compute_features, market_index
from trader_runtime.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.settings import RoboSettings
from trader_runtime.sources.registry import source_for_symbol
from trader_runtime.storage.lake import ParquetLake

MARKET_INDEX = "market_index"
MARKET_REGIMES = "market_regimes"
FEATURES = "features"
LABELS = "labels"
TRAINING_SET = "training_set"
SPLITS = "walk_forward_splits"
FOLDS = "walk_forward_folds"
MARKET_KEY = "EW"  # the equal-weighted index of the symbols sharing a base timeframe
POOLED = "pooled"


def label_spec(settings: RoboSettings) -> LabelSpec:
    return LabelSpec(
        horizon_bars=settings.label_horizon_bars,
        cost_bps=settings.label_cost_bps,
        kind=settings.label_kind,
    )


def walk_forward_spec(settings: RoboSettings) -> WalkForwardSpec:
    return WalkForwardSpec(
        n_folds=settings.split_n_folds,
        scheme=settings.split_scheme,
        test_sessions=settings.split_test_sessions,
        train_sessions=settings.split_train_sessions,
        purge_bars=settings.split_purge_bars,
        embargo_bars=settings.split_embargo_bars,
    )


def base_timeframe(settings: RoboSettings, symbol: str) -> Timeframe:
    return source_for_symbol(symbol, settings).base_timeframe


def universe_by_timeframe(settings: RoboSettings) -> dict[Timeframe, list[str]]:
    groups: dict[Timeframe, list[str]] = {}
    for symbol in settings.universe:
        groups.setdefault(base_timeframe(settings, symbol), []).append(symbol)
    return groups


def build_market_indices(
    settings: RoboSettings, lake: ParquetLake
) -> dict[Timeframe, pl.DataFrame]:
    """One equal-weighted index per base timeframe, over the universe symbols with bars."""
    out = {}
    for tf, symbols in universe_by_timeframe(settings).items():
        present = [s for s in symbols if lake.exists(BARS, tf.value, s)]
        if not present:
            continue
        index = market_index(lake.read(BARS, tf.value, s).select("ts", "close") for s in present)
        lake.write(MARKET_INDEX, tf.value, MARKET_KEY, index)
        out[tf] = index
    return out


def load_bars(lake: ParquetLake, symbol: str) -> dict[Timeframe, pl.DataFrame]:
    return {Timeframe(tf): lake.read(BARS, tf, symbol) for tf in lake.timeframes(BARS, symbol)}


def build_features(
    settings: RoboSettings,
    symbol: str,
    lake: ParquetLake,
    spec: FeatureSetSpec = DEFAULT_FEATURE_SET,
) -> pl.DataFrame:
    base = base_timeframe(settings, symbol)
    market = lake.read(MARKET_INDEX, base.value, MARKET_KEY) if spec.cross_asset else None
    features = compute_features(load_bars(lake, symbol), base=base, market=market, spec=spec)
    lake.write(FEATURES, base.value, symbol, features)
    return features


def build_labels(settings: RoboSettings, symbol: str, lake: ParquetLake) -> pl.DataFrame:
    base = base_timeframe(settings, symbol)
    labels = compute_labels(
        lake.read(BARS, base.value, symbol), label_spec(settings), intraday=base.is_intraday
    )
    lake.write(LABELS, base.value, symbol, labels)
    return labels


@dataclass(frozen=True, slots=True)
class TrainingSetResult:
    frame: pl.DataFrame
    rows_before_drop: int
    null_rates: dict[str, float]
    feature_names: tuple[str, ...]


def build_training_set(
    settings: RoboSettings, lake: ParquetLake, spec: FeatureSetSpec = DEFAULT_FEATURE_SET
) -> TrainingSetResult:
    """Features joined to labels for the research universe (``settings.symbols``), pooled, with
    rows that have any null feature (warm-up) or no label dropped."""
    frames = []
    timeframes = {base_timeframe(settings, s) for s in settings.symbols}
    if len(timeframes) != 1:
        raise ValueError(f"the research universe mixes base timeframes {sorted(timeframes)}")
    (tf,) = timeframes
    names = spec.feature_names(tf)
    for symbol in settings.symbols:
        feats = lake.read(FEATURES, tf.value, symbol)
        labels = lake.read(LABELS, tf.value, symbol)
        frames.append(feats.join(labels, on=["symbol", "ts"], how="inner"))
    pooled = pl.concat(frames).sort("ts", "symbol")
    missing = pooled.select(
        *[(pl.col(c).is_nan() | pl.col(c).is_null()).sum().alias(c) for c in names],
        *[pl.col(c).is_null().sum() for c in LABEL_COLUMNS],
    )
    null_rates = {c: v / max(pooled.height, 1) for c, v in missing.row(0, named=True).items()}
    complete = pl.all_horizontal(pl.col(c).is_not_nan() for c in names)
    kept = pooled.drop_nulls([*names, "target", "label_end_ts"]).filter(complete)
    kept = kept.select("symbol", "ts", *names, *LABEL_COLUMNS)
    lake.write(TRAINING_SET, tf.value, POOLED, kept)
    return TrainingSetResult(kept, pooled.height, null_rates, names)


def build_splits(
    settings: RoboSettings, lake: ParquetLake, training_set: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The per-row fold assignment and the fold table, both written to the lake."""
    spec = walk_forward_spec(settings)
    spec.check_purge(settings.label_horizon_bars)
    folds = walk_forward_folds(training_set["ts"], spec)
    assignment = assign_folds(training_set, folds)
    table = fold_table(training_set, folds, spec)
    tf = Timeframe.M1.value
    lake.write(SPLITS, tf, POOLED, assignment)
    lake.write(FOLDS, tf, POOLED, table)
    return assignment, table
