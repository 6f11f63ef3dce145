"""Research-data assets: ``market_index`` -> ``features``, ``labels`` (per symbol) ->
``training_set`` (pooled) -> ``walk_forward_splits``, and the leakage checks that guard them."""

import warnings
from datetime import timedelta

import dagster as dg
import polars as pl

from robo_assets.bars_assets import bars
from robo_assets.leakage import (
    future_correlated_features,
    truncation_mismatches,
    unexpected_columns,
)
from robo_assets.market_data import BARS
from robo_assets.metadata import correlation_plot, line_plot, table_preview
from robo_assets.partitions import symbol_partitions
from robo_assets.research_data import (
    FEATURES,
    FOLDS,
    MARKET_INDEX,
    MARKET_KEY,
    POOLED,
    SPLITS,
    TRAINING_SET,
    base_timeframe,
    build_features,
    build_labels,
    build_market_indices,
    build_splits,
    build_training_set,
    label_spec,
    walk_forward_spec,
)
from robo_assets.resources import RoboSettingsResource
from robo_assets.splits import leakage_violations
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.market.timeframes import Timeframe

warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")

GROUP = "research_data"
SPEC = DEFAULT_FEATURE_SET
ALL_SYMBOLS = dg.AllPartitionMapping()


@dg.asset(
    group_name=GROUP,
    deps=[dg.AssetDep(bars, partition_mapping=ALL_SYMBOLS)],
    kinds={"parquet", "polars"},
    # after new bars of any symbol, once no bars run is in progress; a symbol without bars yet
    # does not hold it back (the index is built from the symbols that have bars)
    automation_condition=dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .with_label("eager (missing symbols allowed)"),
    description="Equal-weighted index of the universe per base timeframe (mean one-bar log return "
    "of the symbols trading at each instant, and its level): the input of cross-asset features.",
)
def market_index(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    indices = build_market_indices(robo.settings(), robo.lake())
    plot_tf = Timeframe.M1 if Timeframe.M1 in indices else next(iter(indices))
    plot = indices[plot_tf].gather_every(max(1, indices[plot_tf].height // 2000))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(f.height for f in indices.values()),
            "rows_by_timeframe": {tf.value: f.height for tf, f in indices.items()},
            "level_plot": line_plot(
                plot, "ts", "market_level", title=f"EW index ({plot_tf.value})"
            ),
        }
    )


@dg.asset(
    partitions_def=symbol_partitions,
    group_name=GROUP,
    deps=[bars, market_index],
    kinds={"parquet", "talib", "polars"},
    # new bars of any symbol rebuild the market index first (its condition), and the index then
    # sets off every symbol's features once: they react to the index, never to bars alone, so
    # cross-asset features are never computed against a stale index (new partitions: when missing)
    automation_condition=dg.AutomationCondition.eager()
    .replace(
        "any_deps_updated",
        dg.AutomationCondition.any_deps_updated().allow(dg.AssetSelection.assets(market_index)),
    )
    .with_label("eager on market_index"),
    # expected after each session's data refresh: between 16:30 and 18:30 New York on weekdays
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="30 18 * * 1-5",
        lower_bound_delta=timedelta(hours=2),
        timezone="America/New_York",
    ),
    description="Causal technical features of one symbol on its base timeframe: TA-Lib indicators, "
    "higher-timeframe indicators joined only from closed bars, cross-asset correlation and beta.",
    code_version=SPEC.spec_hash,
)
def features(context: dg.AssetExecutionContext, robo: RoboSettingsResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings = robo.settings()
    frame = build_features(settings, context.partition_key, robo.lake(), SPEC)
    names = [c for c in frame.columns if c not in ("symbol", "ts")]
    warmup = frame.select((pl.col(c).is_nan() | pl.col(c).is_null()).sum() for c in names)
    warmup_rates = {
        c: round(v / max(frame.height, 1), 5) for c, v in warmup.row(0, named=True).items()
    }
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "n_features": len(names),
            "feature_set_hash": SPEC.spec_hash,
            "feature_set_version": SPEC.version,
            "base_timeframe": base_timeframe(settings, context.partition_key).value,
            "features": dg.MetadataValue.md(", ".join(f"`{n}`" for n in names)),
            "warmup_rates": warmup_rates,
            "preview": table_preview(frame.tail(5).select("ts", *names[:8])),
        }
    )


@dg.asset(
    partitions_def=symbol_partitions,
    group_name=GROUP,
    deps=[bars],
    kinds={"parquet", "polars"},
    automation_condition=dg.AutomationCondition.eager(),
    description="Forward-return labels of one symbol (net of a cost assumption), with the close "
    "of the last bar each label looks at (label_end_ts) for purging.",
)
def labels(context: dg.AssetExecutionContext, robo: RoboSettingsResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings = robo.settings()
    frame = build_labels(settings, context.partition_key, robo.lake())
    spec = label_spec(settings)
    labelled = frame.filter(pl.col("target").is_not_null())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "labelled_rows": labelled.height,
            "positive_rate": float(labelled["target"].mean() or 0.0) if labelled.height else 0.0,
            "label_kind": spec.kind,
            "horizon_bars": spec.horizon_bars,
            "cost_bps": spec.cost_bps,
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[
        dg.AssetDep(features, partition_mapping=ALL_SYMBOLS),
        dg.AssetDep(labels, partition_mapping=ALL_SYMBOLS),
    ],
    kinds={"parquet", "polars"},
    description="Features joined to labels for the research universe, pooled across symbols; rows "
    "in feature warm-up or without a label are dropped.",
)
def training_set(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings = robo.settings()
    result = build_training_set(settings, robo.lake(), SPEC)
    frame = result.frame
    null_table = (
        pl.DataFrame(
            {"column": list(result.null_rates), "null_rate": list(result.null_rates.values())}
        )
        .filter(pl.col("null_rate") > 0)
        .sort("null_rate", descending=True)
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "rows_before_dropping_warmup": result.rows_before_drop,
            "symbols": sorted(frame["symbol"].unique().to_list()),
            "first_ts": str(frame["ts"].min()),
            "last_ts": str(frame["ts"].max()),
            "n_features": len(result.feature_names),
            "feature_set_hash": SPEC.spec_hash,
            "features": dg.MetadataValue.md(", ".join(f"`{n}`" for n in result.feature_names)),
            "positive_rate": float(frame["target"].mean() or 0.0),
            "missing_rates_before_drop": table_preview(null_table, rows=60),
            "feature_correlation": correlation_plot(
                frame.select(result.feature_names).sample(min(frame.height, 50_000), seed=0),
                title="feature correlation (sample)",
            ),
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[training_set],
    kinds={"parquet", "polars"},
    description="Walk-forward folds over time, pooled across symbols: per row, train/test/unused "
    "for each fold, with purge (>= label horizon) and embargo.",
)
def walk_forward_splits(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings = robo.settings()
    frame = robo.lake().read(TRAINING_SET, Timeframe.M1.value, POOLED)
    _, table = build_splits(settings, robo.lake(), frame)
    spec = walk_forward_spec(settings)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frame.height,
            "n_folds": spec.n_folds,
            "scheme": spec.scheme,
            "purge_bars": spec.purge_bars,
            "embargo_bars": spec.embargo_bars,
            "label_horizon_bars": settings.label_horizon_bars,
            "folds": table_preview(table, rows=spec.n_folds),
        }
    )


@dg.asset_check(
    asset=features,
    blocking=True,
    partitions_def=symbol_partitions,
    description="Stored features have exactly the spec's columns and one row per base bar.",
)
def features_match_spec(
    context: dg.AssetCheckExecutionContext, robo: RoboSettingsResource
) -> dg.AssetCheckResult:  # type: ignore[type-arg]
    settings, lake, symbol = robo.settings(), robo.lake(), context.partition_key
    base = base_timeframe(settings, symbol)
    stored = lake.read(FEATURES, base.value, symbol)
    expected = ["symbol", "ts", *SPEC.feature_names(base)]
    n_bars = lake.read(BARS, base.value, symbol).height
    return dg.AssetCheckResult(
        passed=stored.columns == expected and stored.height == n_bars,
        metadata={"columns_ok": stored.columns == expected, "rows": stored.height, "bars": n_bars},
    )


@dg.asset_check(
    asset=training_set,
    blocking=True,
    description="No feature carries future information: exact columns, no feature implausibly "
    "correlated with the forward return, and features recomputed from truncated bars equal the "
    "stored ones (first research symbol, two cut points).",
)
def no_future_information(robo: RoboSettingsResource) -> dg.AssetCheckResult:
    settings, lake = robo.settings(), robo.lake()
    frame = lake.read(TRAINING_SET, Timeframe.M1.value, POOLED)
    names = SPEC.feature_names(Timeframe.M1)
    bad_columns = unexpected_columns(frame, names)
    numeric = [
        c
        for c in frame.columns
        if c
        not in ("symbol", "ts", "fwd_return", "net_return", "target", "barrier", "label_end_ts")
    ]
    correlated = future_correlated_features(frame, numeric)
    symbol = settings.symbols[0]
    bars_1m = lake.read(BARS, Timeframe.M1.value, symbol)
    stored = lake.read(FEATURES, Timeframe.M1.value, symbol)
    market = lake.read(MARKET_INDEX, Timeframe.M1.value, MARKET_KEY)
    cuts = [bars_1m["ts"][int(bars_1m.height * q)] for q in (0.45, 0.8)]
    mismatched = truncation_mismatches(bars_1m, market, stored, cuts, SPEC)
    return dg.AssetCheckResult(
        passed=not bad_columns and not correlated and not mismatched,
        metadata={
            "unexpected_columns": bad_columns,
            "features_correlated_with_future_return": correlated,
            "truncation_mismatches": mismatched,
            "truncation_symbol": symbol,
            "truncation_cuts": [str(c) for c in cuts],
        },
    )


@dg.asset_check(
    asset=walk_forward_splits,
    blocking=True,
    description="Per fold, no training row's label window reaches the test window, and training "
    "rows end at least purge + embargo before the first test bar.",
)
def splits_disjoint_including_label_windows(robo: RoboSettingsResource) -> dg.AssetCheckResult:
    settings, lake = robo.settings(), robo.lake()
    frame = lake.read(TRAINING_SET, Timeframe.M1.value, POOLED)
    assignment = lake.read(SPLITS, Timeframe.M1.value, POOLED)
    violations = leakage_violations(frame, assignment, min_gap=walk_forward_spec(settings).gap)
    return dg.AssetCheckResult(passed=not violations, metadata={"violations": violations})


@dg.asset_check(
    asset=walk_forward_splits,
    blocking=True,
    description="The purge is at least the label horizon, in bars and in the labels' actual span.",
)
def purge_covers_label_horizon(robo: RoboSettingsResource) -> dg.AssetCheckResult:
    settings, lake = robo.settings(), robo.lake()
    table = lake.read(FOLDS, Timeframe.M1.value, POOLED)
    frame = lake.read(TRAINING_SET, Timeframe.M1.value, POOLED)
    purge_bars = int(table["purge_bars"].min())  # type: ignore[arg-type]
    span_min = frame.select(
        ((pl.col("label_end_ts") - pl.col("ts")).dt.total_minutes()).max()
    ).item()
    passed = purge_bars >= settings.label_horizon_bars and span_min <= purge_bars
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "purge_bars": purge_bars,
            "label_horizon_bars": settings.label_horizon_bars,
            "longest_label_span_minutes": int(span_min),
        },
    )


ASSETS = (market_index, features, labels, training_set, walk_forward_splits)
CHECKS = (
    features_match_spec,
    no_future_information,
    splits_disjoint_including_label_windows,
    purge_covers_label_horizon,
)
