"""Market data assets: ``raw_bars`` (as the source gives them) and ``bars`` (validated, resampled),
per symbol partition, with the checks that guard the boundary to everything downstream."""

import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta

import dagster as dg
import polars as pl

from robo_assets.market_data import (
    BARS,
    RAW_BARS,
    build_bars,
    ingest_raw_bars,
    raw_timeframe,
)
from robo_assets.metadata import price_plot, table_preview, time_range
from robo_assets.partitions import symbol_partitions
from robo_assets.resources import RoboSettingsResource
from trader_runtime.market.bars import BAR_SCHEMA
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.market.validation import find_gaps, invariant_violations

# Partitioned asset checks are a Dagster preview feature; we rely on it knowingly (the check results
# must carry the symbol partition).
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")

GROUP = "market_data"
MAX_MISSING_BAR_FRACTION = 0.01
MAX_QUARANTINED_FRACTION = 0.01


@dg.asset(
    partitions_def=symbol_partitions,
    group_name=GROUP,
    kinds={"parquet", "polars"},
    description="Bars of one symbol as its source gives them (not yet validated), in the lake.",
)
def raw_bars(context: dg.AssetExecutionContext, robo: RoboSettingsResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings = robo.settings()
    symbol = context.partition_key
    result = ingest_raw_bars(settings, symbol, robo.lake())
    context.log.info(
        f"{symbol}: {result.rows} raw {result.timeframe.value} bars from {result.source}"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.rows,
            "source": result.source,
            "timeframe": result.timeframe.value,
            "path": dg.MetadataValue.path(
                str(robo.lake().path(RAW_BARS, result.timeframe.value, symbol))
            ),
            **time_range(result.first_ts, result.last_ts),
        }
    )


@dg.asset(
    partitions_def=symbol_partitions,
    group_name=GROUP,
    deps=[raw_bars],
    kinds={"parquet", "duckdb", "polars"},
    # refreshed by market_data_schedule at 16:30 New York after each session: expected between
    # 16:30 and 18:00 on weekdays (an exchange holiday shows as a miss that evening)
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 18 * * 1-5",
        lower_bound_delta=timedelta(hours=1, minutes=30),
        timezone="America/New_York",
    ),
    description=(
        "Validated bars of one symbol at every timeframe (1m, 5m, 15m, 1h, 1d; daily-only sources "
        "stay daily), stamped at bar close in UTC. Bad rows are quarantined in DuckDB with a reason."
    ),
)
def bars(context: dg.AssetExecutionContext, robo: RoboSettingsResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings = robo.settings()
    symbol = context.partition_key
    lake = robo.lake()
    result = build_bars(settings, symbol, lake, robo.warehouse(), run_id=context.run.run_id)
    if result.quarantined_rows:
        context.log.warning(
            f"{symbol}: quarantined {result.quarantined_rows} rows: {result.quarantine_reasons}"
        )
    plot_tf = Timeframe.D1 if Timeframe.D1 in result.rows_by_timeframe else result.base_timeframe
    plot_bars = lake.read(BARS, plot_tf.value, symbol)
    base_bars = lake.read(BARS, result.base_timeframe.value, symbol)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(result.rows_by_timeframe.values()),
            "rows_by_timeframe": {tf.value: n for tf, n in result.rows_by_timeframe.items()},
            "source": result.source,
            "base_timeframe": result.base_timeframe.value,
            "quarantined_rows": result.quarantined_rows,
            "quarantine_reasons": dict(result.quarantine_reasons),
            "missing_bars": result.gaps.missing_bars,
            **time_range(result.first_ts, result.last_ts),
            "preview": table_preview(base_bars.tail(10)),
            "price_plot": price_plot(plot_bars, title=f"{symbol} close ({plot_tf.value})"),
        }
    )


def _stored_bars(robo: RoboSettingsResource, symbol: str) -> dict[str, pl.DataFrame]:
    lake = robo.lake()
    return {tf: lake.read(BARS, tf, symbol) for tf in lake.timeframes(BARS, symbol)}


def _invariant_check(
    name: str, description: str, applies: Callable[[str], bool]
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=bars,
        name=name,
        description=description,
        blocking=True,
        partitions_def=symbol_partitions,
    )
    def _check(
        context: dg.AssetCheckExecutionContext, robo: RoboSettingsResource
    ) -> dg.AssetCheckResult:  # type: ignore[type-arg]
        stored = _stored_bars(robo, context.partition_key)
        failing: dict[str, int] = {}
        for timeframe, frame in stored.items():
            bad = {r: n for r, n in invariant_violations(frame).items() if applies(r)}
            if bad:
                failing[timeframe] = sum(bad.values())
        return dg.AssetCheckResult(
            passed=bool(stored) and not failing,
            metadata={
                "timeframes_checked": sorted(stored),
                "failing_rows_by_timeframe": failing,
            },
        )

    return _check


INVARIANT_CHECKS: Sequence[dg.AssetChecksDefinition] = (
    _invariant_check(
        "timestamps_unique_increasing",
        "Bar-close timestamps are present, unique and strictly increasing at every timeframe.",
        lambda r: r.startswith("ts ") or "timestamp" in r,
    ),
    _invariant_check(
        "prices_finite_positive",
        "open, high, low, close (and vwap where given) are finite and > 0.",
        lambda r: (
            r.split(" ")[0] in {"open", "high", "low", "close", "vwap"} and "outside" not in r
        ),
    ),
    _invariant_check(
        "ohlc_consistent",
        "low <= open <= high and low <= close <= high.",
        lambda r: r == "high < low" or "outside [low, high]" in r,
    ),
    _invariant_check(
        "volume_non_negative",
        "volume is finite and >= 0; trade_count >= 0.",
        lambda r: r.startswith(("volume", "trade_count")),
    ),
)


@dg.asset_check(
    asset=bars,
    description=(
        f"Bars the exchange calendar expects but the data lacks, per timeframe; warns above "
        f"{MAX_MISSING_BAR_FRACTION:.0%} missing."
    ),
    partitions_def=symbol_partitions,
)
def calendar_gaps(
    context: dg.AssetCheckExecutionContext, robo: RoboSettingsResource
) -> dg.AssetCheckResult:  # type: ignore[type-arg]
    stored = _stored_bars(robo, context.partition_key)
    missing: dict[str, int] = {}
    expected: dict[str, int] = {}
    worst = 0.0
    examples: list[str] = []
    for timeframe, frame in stored.items():
        report = find_gaps(frame, Timeframe(timeframe))
        missing[timeframe] = report.missing_bars
        expected[timeframe] = report.expected_bars
        worst = max(worst, report.missing_fraction)
        examples.extend(f"{timeframe} {t}" for t in report.first_missing)
    return dg.AssetCheckResult(
        passed=worst <= MAX_MISSING_BAR_FRACTION,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "missing_bars": missing,
            "expected_bars": expected,
            "worst_missing_fraction": worst,
            "first_missing": ", ".join(examples[:10]),
        },
    )


@dg.asset_check(
    asset=bars,
    description=f"Share of raw rows quarantined; warns above {MAX_QUARANTINED_FRACTION:.0%}.",
    partitions_def=symbol_partitions,
)
def quarantine_rate(
    context: dg.AssetCheckExecutionContext, robo: RoboSettingsResource
) -> dg.AssetCheckResult:  # type: ignore[type-arg]
    symbol = context.partition_key
    settings = robo.settings()
    raw_rows = robo.lake().read(RAW_BARS, raw_timeframe(settings, symbol).value, symbol).height
    quarantined = robo.warehouse().quarantine(dataset=RAW_BARS, symbol=symbol)
    share = quarantined.height / raw_rows if raw_rows else 0.0
    reasons = (
        quarantined.group_by("reason").len().sort("len", descending=True).head(10).to_dicts()
        if quarantined.height
        else []
    )
    return dg.AssetCheckResult(
        passed=share <= MAX_QUARANTINED_FRACTION,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "raw_rows": raw_rows,
            "quarantined_rows": quarantined.height,
            "quarantined_fraction": share,
            "top_reasons": {str(r["reason"]): int(r["len"]) for r in reasons},
        },
    )


@dg.asset_check(
    asset=raw_bars,
    description="The raw partition has rows and exactly the bar columns and types.",
    blocking=True,
    partitions_def=symbol_partitions,
)
def raw_bars_schema(
    context: dg.AssetCheckExecutionContext, robo: RoboSettingsResource
) -> dg.AssetCheckResult:  # type: ignore[type-arg]
    symbol = context.partition_key
    timeframe = raw_timeframe(robo.settings(), symbol)
    frame = robo.lake().read(RAW_BARS, timeframe.value, symbol)
    expected = {name: str(dtype) for name, dtype in BAR_SCHEMA.items()}
    actual = {name: str(dtype) for name, dtype in frame.schema.items()}
    return dg.AssetCheckResult(
        passed=frame.height > 0 and actual == expected,
        metadata={"rows": frame.height, "columns": actual, "expected_columns": expected},
    )


ASSETS = (raw_bars, bars)
CHECKS = (*INVARIANT_CHECKS, calendar_gaps, quarantine_rate, raw_bars_schema)
