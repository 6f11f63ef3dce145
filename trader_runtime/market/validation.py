"""Bar validation: every row is either kept or quarantined with a reason; nothing is dropped.

Row rules (a row may break several; its reasons are joined with ``"; "``):
- ``ts`` present; prices present, finite and positive; ``low <= open, close <= high``;
  ``volume`` present, finite and >= 0; ``vwap`` (when given) finite and positive;
  ``trade_count`` (when given) >= 0;
- the timestamp is a bar close of the timeframe inside a regular-hours session of the calendar;
- timestamps strictly increase: a row whose timestamp equals an earlier kept row's is a
  ``duplicate timestamp``, one earlier than a kept row's is an ``out-of-order timestamp``; the first
  occurrence is kept.
Missing sessions or minutes are not bad rows: they are reported as gaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from trader_runtime.errors import EmptyInputError, InputSchemaError
from trader_runtime.market.bars import BAR_COLUMNS, PRICE_COLUMNS, REQUIRED_COLUMNS
from trader_runtime.market.calendar import TradingCalendar, session_bounds
from trader_runtime.market.resample import expected_bar_closes
from trader_runtime.market.timeframes import Timeframe

REASON_COLUMN = "reason"


@dataclass(frozen=True, slots=True)
class GapReport:
    """Bars the calendar expects between the first and last kept bar, and how many are missing."""

    expected_bars: int
    present_bars: int
    missing_bars: int
    first_missing: tuple[str, ...]

    @property
    def missing_fraction(self) -> float:
        return self.missing_bars / self.expected_bars if self.expected_bars else 0.0


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Kept rows (bar schema, ascending ``ts``) and quarantined rows (bar schema plus ``reason``)."""

    good: pl.DataFrame
    quarantined: pl.DataFrame
    gaps: GapReport

    def reason_counts(self) -> dict[str, int]:
        """How many quarantined rows carry each single reason."""
        if self.quarantined.height == 0:
            return {}
        exploded = self.quarantined.select(pl.col(REASON_COLUMN).str.split("; ")).explode(
            REASON_COLUMN
        )
        counts = exploded.group_by(REASON_COLUMN).len().sort(REASON_COLUMN)
        return dict(zip(counts[REASON_COLUMN].to_list(), counts["len"].to_list(), strict=True))


def require_columns(columns: Iterable[str], *, what: str) -> None:
    """Raise ``InputSchemaError`` naming every required bar column absent from ``columns``."""
    present = set(columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        raise InputSchemaError(
            f"{what}: missing required column(s) {', '.join(missing)}; "
            f"expected {', '.join(REQUIRED_COLUMNS)} (optional: vwap, trade_count)"
        )


def value_reasons() -> list[pl.Expr]:
    """One expression per value rule, each a reason string or null for a row that passes it."""
    rules: list[pl.Expr] = [
        pl.when(pl.col("ts").is_null()).then(pl.lit("ts is missing or not a timestamp")),
    ]
    for col in PRICE_COLUMNS:
        c = pl.col(col)
        rules.append(
            pl.when(c.is_null())
            .then(pl.lit(f"{col} is missing or not a number"))
            .when(~c.is_finite())
            .then(pl.lit(f"{col} is not finite"))
            .when(c <= 0)
            .then(pl.lit(f"{col} is not positive"))
        )
    high, low = pl.col("high"), pl.col("low")
    # consistency is judged only between finite prices (NaN compares as the greatest in Polars)
    finite = pl.all_horizontal([pl.col(c).is_finite().fill_null(False) for c in PRICE_COLUMNS])
    rules += [
        pl.when(finite & (high < low)).then(pl.lit("high < low")),
        pl.when(finite & ((pl.col("open") < low) | (pl.col("open") > high))).then(
            pl.lit("open outside [low, high]")
        ),
        pl.when(finite & ((pl.col("close") < low) | (pl.col("close") > high))).then(
            pl.lit("close outside [low, high]")
        ),
        pl.when(pl.col("volume").is_null())
        .then(pl.lit("volume is missing or not a number"))
        .when(~pl.col("volume").is_finite())
        .then(pl.lit("volume is not finite"))
        .when(pl.col("volume") < 0)
        .then(pl.lit("volume is negative")),
        pl.when(
            pl.col("vwap").is_not_null() & (~pl.col("vwap").is_finite() | (pl.col("vwap") <= 0))
        ).then(pl.lit("vwap is not finite and positive")),
        pl.when(pl.col("trade_count") < 0).then(pl.lit("trade_count is negative")),
    ]
    return rules


def _calendar_reason(frame: pl.DataFrame, timeframe: Timeframe) -> pl.Series:
    bounds = session_bounds(frame["ts"])
    ts, open_ts, close_ts = bounds["ts"], bounds["open_ts"], bounds["close_ts"]
    outside = open_ts.is_null() & ts.is_not_null()
    minutes = timeframe.minutes
    if minutes is None:
        misaligned = open_ts.is_not_null() & (ts != close_ts)
        label = "not a session close (daily bars are stamped at the session close)"
    else:
        step_us = minutes * 60_000_000
        offset_us = (ts - open_ts).dt.total_microseconds()
        misaligned = open_ts.is_not_null() & (offset_us % step_us != 0) & (ts != close_ts)
        label = f"not a {timeframe.value} bar close"
    reasons = (
        pl.DataFrame({"outside": outside, "misaligned": misaligned})
        .select(
            pl.when(pl.col("outside"))
            .then(pl.lit("outside regular trading hours"))
            .when(pl.col("misaligned"))
            .then(pl.lit(label))
            .alias("r")
        )
        .to_series()
    )
    return reasons


def validate_bars(
    frame: pl.DataFrame, *, timeframe: Timeframe, check_calendar: bool = True
) -> ValidationResult:
    """Split conformed bars (``trader_runtime.market.bars.conform``) into kept and quarantined rows.

    Raises ``EmptyInputError`` for a frame without rows and ``InputSchemaError`` for one without the
    bar columns.
    """
    require_columns(frame.columns, what="bars")
    if frame.height == 0:
        raise EmptyInputError("bars: input has no rows")
    missing_optional = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing_optional:
        raise InputSchemaError(f"bars: not conformed, missing {', '.join(missing_optional)}")

    rules = value_reasons()
    work = frame.with_row_index("_row").with_columns(
        pl.concat_list(rules).list.drop_nulls().alias("_reasons")
    )
    if check_calendar:
        cal = _calendar_reason(work, timeframe)
        work = work.with_columns(
            pl.when(cal.is_not_null())
            .then(pl.col("_reasons").list.concat(pl.concat_list(pl.lit(cal))))
            .otherwise(pl.col("_reasons"))
            .alias("_reasons")
        )
    clean = work.filter(pl.col("_reasons").list.len() == 0)
    order = clean.select(
        "_row",
        pl.when(~pl.col("ts").is_first_distinct())
        .then(pl.lit("duplicate timestamp"))
        .when(pl.col("ts") < pl.col("ts").cum_max().shift(1))
        .then(pl.lit("out-of-order timestamp"))
        .alias("_order"),
    )
    # a row that is out of order must not raise the running maximum for the rows after it
    order = _settle_order(clean.select("_row", "ts"), order)
    work = work.join(order, on="_row", how="left").with_columns(
        pl.when(pl.col("_order").is_not_null())
        .then(pl.col("_reasons").list.concat(pl.concat_list(pl.col("_order"))))
        .otherwise(pl.col("_reasons"))
        .alias("_reasons")
    )
    bad_mask = pl.col("_reasons").list.len() > 0
    good = work.filter(~bad_mask).select(BAR_COLUMNS)
    quarantined = work.filter(bad_mask).select(
        *BAR_COLUMNS, pl.col("_reasons").list.join("; ").alias(REASON_COLUMN)
    )
    gaps = find_gaps(good, timeframe) if check_calendar else GapReport(0, good.height, 0, ())
    return ValidationResult(good=good, quarantined=quarantined, gaps=gaps)


def _settle_order(rows: pl.DataFrame, first_pass: pl.DataFrame) -> pl.DataFrame:
    """Mark duplicates and out-of-order rows against the running maximum of *kept* rows only."""
    if first_pass["_order"].null_count() == first_pass.height:
        return first_pass  # strictly increasing already: nothing to settle
    ts_values: list[datetime] = rows["ts"].to_list()
    row_ids = rows["_row"].to_list()
    seen: set[datetime] = set()
    running_max: datetime | None = None
    verdicts: list[str | None] = []
    for ts in ts_values:
        if ts in seen:
            verdicts.append("duplicate timestamp")
        elif running_max is not None and ts < running_max:
            verdicts.append("out-of-order timestamp")
        else:
            verdicts.append(None)
            seen.add(ts)
            running_max = ts
    return pl.DataFrame(
        {"_row": row_ids, "_order": verdicts}, schema={"_row": pl.UInt32, "_order": pl.String}
    )


def find_gaps(good: pl.DataFrame, timeframe: Timeframe, *, sample: int = 5) -> GapReport:
    """Compare kept bars with the bar closes the calendar expects over the same sessions."""
    if good.height == 0:
        return GapReport(0, 0, 0, ())
    bounds = session_bounds(good["ts"].sort())
    sessions = bounds["session"].drop_nulls()
    calendar = TradingCalendar(sessions.min(), sessions.max())  # type: ignore[arg-type]
    expected = expected_bar_closes(calendar, timeframe)
    missing = expected.filter(~expected.is_in(good["ts"].implode()))
    return GapReport(
        expected_bars=expected.len(),
        present_bars=good.height,
        missing_bars=missing.len(),
        first_missing=tuple(str(t) for t in missing.head(sample).to_list()),
    )


def invariant_violations(bars: pl.DataFrame) -> dict[str, int]:
    """Count stored rows breaking each row rule (value rules plus strict time order).

    Used by the asset checks to verify what was written, independently of how it was produced.
    """
    if bars.height == 0:
        return {}
    reasons = bars.select(pl.concat_list(value_reasons()).list.drop_nulls().alias("r")).explode("r")
    counts: dict[str, int] = {}
    for reason in reasons["r"].drop_nulls().to_list():
        counts[reason] = counts.get(reason, 0) + 1
    ts = bars["ts"]
    not_increasing = int((ts.diff().dt.total_microseconds() <= 0).sum())
    if not_increasing:
        counts["timestamp not strictly increasing"] = not_increasing
    return counts
