"""Schedules on the New York Stock Exchange calendar (``exchange_calendars`` XNYS).

``market_data_schedule`` (weekdays 16:30 New York) ingests what the session that just closed
added; ``weekly_retrain_schedule`` (Saturdays 06:00 New York) retrains after the last session of
the week. Both start RUNNING: a trader expects the data to refresh and the models to follow the
data without switching anything on; both skip, with the reason, when there is nothing to do.

What "new" means here. Symbols are dynamic partitions (``symbols``); time is not a partition: a
source serves a symbol's whole configured date range (``ROBO_START``..``ROBO_END``, index symbols
``ROBO_INDEX_START``..``ROBO_INDEX_END``) and ``raw_bars``/``bars`` replace the symbol's files
with it. So the refresh works per symbol: a symbol is *due* when its stored bars end before the
last session its range should hold by now (the session that just closed, or the range's end if
that came earlier), including a partition with no bars at all (a symbol just added). A due
symbol gets one ``market_data_job`` run whose range ends at the session that just closed (run
config ``end``/``index_end``, never past the configured end). A symbol whose source was asked
after that session closed and still ends earlier (an index history that stops in 2018, a files
folder not yet updated) is not asked again. Run keys are ``<session>:<symbol>`` and a symbol
that already has a run for the session (queued, running or done) is not requested twice, so a
re-evaluation is idempotent. New bars then flow to features, labels, the market index and the
market regimes through declarative automation (the assets' automation conditions).

The retraining cannot be one job: features and labels are partitioned by symbol, the model
assets by family, the rest not at all, and an asset job needs one partitioning. Schedules launch
runs of one job, never backfills (the scheduler has no backfill path; sensors and the automation
condition sensor do). So ``weekly_retrain_schedule`` starts ``retrain_job`` (the pooled training
set and walk-forward splits, leakage checks blocking), and the automation condition sensor
carries on in one backfill, in dependency order: ``trained_models`` and ``tuned_models`` for
every family, then ``backtest``, ``performance_report`` and ``champion_model`` (see
``orchestration/definitions.py``). Features and labels are already current: new bars refresh
them every session.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import dagster as dg
import exchange_calendars as xcals
import pandas as pd
import polars as pl

from orchestration.jobs import RETRAIN_TAG, market_data_job, retrain_job
from robo_assets.market_data import BARS, RAW_BARS
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME
from robo_assets.research_data import base_timeframe
from robo_assets.resources import RoboSettingsResource
from trader_runtime.errors import RoboTraderError
from trader_runtime.market.calendar import EXCHANGE, TradingCalendar
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake

NEW_YORK = ZoneInfo("America/New_York")
TIMEZONE = "America/New_York"
SCHEDULE_TAG = "robo/schedule"
SESSION_TAG = "robo/session"
PARTITION_TAG = "dagster/partition"
MARKET_DATA_CRON = "30 16 * * 1-5"  # weekdays 16:30: after the regular close (early closes: 13:00)
WEEKLY_RETRAIN_CRON = "0 6 * * 6"  # Saturdays 06:00: after the last session of the week
_LOOKBACK = timedelta(days=15)  # longer than any run of exchange holidays
_NOT_AGAIN = frozenset({dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})


@dataclass(frozen=True, slots=True)
class Session:
    """One exchange session: its New York date and its open and close instants (UTC)."""

    day: date
    open_ts: datetime
    close_ts: datetime


def session_on(day: date) -> Session | None:
    """The session held on ``day``, or None (weekend, holiday)."""
    sched = TradingCalendar(day, day).schedule()
    if sched.height == 0:
        return None
    row = sched.row(0, named=True)
    return Session(row["session"], row["open_ts"], row["close_ts"])


def last_closed_session(at: datetime) -> Session:
    """The latest session whose close is at or before ``at``."""
    day = at.astimezone(NEW_YORK).date()
    sched = TradingCalendar(day - _LOOKBACK, day).schedule()
    closed = sched.filter(pl.col("close_ts") <= at.astimezone(UTC))
    if closed.height == 0:
        raise ValueError(f"no NYSE session closed in the {_LOOKBACK.days} days up to {at}")
    row = closed.row(closed.height - 1, named=True)
    return Session(row["session"], row["open_ts"], row["close_ts"])


def last_session_through(day: date) -> date | None:
    """The latest session on or before ``day`` (None if none in the two weeks before it)."""
    sessions = TradingCalendar(day - _LOOKBACK, day).sessions()
    return sessions[-1] if sessions else None


@cache
def _holidays_calendar() -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange_calendars trips a pandas deprecation inside its own constructor
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar(EXCHANGE)


def closed_day_reason(day: date) -> str:
    """Why the exchange has no session on ``day``: the weekend, or the holiday's name."""
    weekday = day.strftime("%A")
    if day.weekday() >= 5:
        return f"{day} is a {weekday}: no NYSE session"
    names = _holidays_calendar().regular_holidays.holidays(
        pd.Timestamp(day), pd.Timestamp(day), return_name=True
    )
    if len(names):
        return f"{day} ({weekday}) is an NYSE holiday: {names.iloc[0]}"
    return f"{day} ({weekday}) is an NYSE holiday (closed)"


def stored_through(settings: RoboSettings, lake: ParquetLake, symbol: str) -> date | None:
    """The session of the symbol's last stored bar (its base timeframe), or None."""
    timeframe = base_timeframe(settings, symbol)
    if not lake.exists(BARS, timeframe.value, symbol):
        return None
    path = lake.path(BARS, timeframe.value, symbol)
    last = pl.scan_parquet(path).select(pl.col("ts").max()).collect().item()
    return None if last is None else last.astimezone(NEW_YORK).date()


@dataclass(frozen=True, slots=True)
class SymbolRefresh:
    """What the refresh does with one symbol after one session."""

    symbol: str
    due: bool
    why: str
    stored_through: date | None
    target: date | None  # the last session the symbol's range should hold now
    run_config: Mapping[str, object]


def plan_refresh(
    settings: RoboSettings,
    lake: ParquetLake,
    symbols: Sequence[str],
    session: Session,
    last_ingested: Mapping[str, datetime],
) -> list[SymbolRefresh]:
    """Per symbol partition: due or not, and why (see the module docstring).

    ``last_ingested`` holds, per symbol, when ``raw_bars`` last materialized (a source asked
    after the session closed that still ends before it has nothing newer).
    """
    plans = []
    for symbol in symbols:
        is_index = settings.source_for(symbol) == "index_history"
        start, end = settings.date_range_for(symbol)
        try:
            through = stored_through(settings, lake, symbol)
        except RoboTraderError as exc:  # a source that cannot be built: let its run say why
            plans.append(SymbolRefresh(symbol, True, f"stored bars unknown: {exc}", None, None, {}))
            continue
        if start > session.day:
            plans.append(
                SymbolRefresh(symbol, False, f"its range starts {start}", through, None, {})
            )
            continue
        target = last_session_through(min(end, session.day))
        if target is None or target < start:
            plans.append(
                SymbolRefresh(symbol, False, "no session in its range yet", through, target, {})
            )
            continue
        config: dict[str, object] = {}
        if end > session.day:
            key = "index_end" if is_index else "end"
            config = {"resources": {"robo": {"config": {key: session.day.isoformat()}}}}
        asked = last_ingested.get(symbol)
        if through is not None and through >= target:
            why, due = f"up to date through {through}", False
        elif through is not None and asked is not None and asked >= session.close_ts:
            why, due = (
                f"its source had nothing after {through} when asked at {asked:%Y-%m-%d %H:%M}",
                False,
            )
        elif through is None:
            why, due = "no stored bars yet", True
        else:
            why, due = f"stored through {through}, its range reaches {target}", True
        plans.append(SymbolRefresh(symbol, due, why, through, target, config))
    return plans


def _last_ingested(instance: dg.DagsterInstance, symbols: Sequence[str]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for symbol in symbols:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(RAW_BARS), asset_partitions=[symbol]),
            limit=1,
        ).records
        if records:
            out[symbol] = datetime.fromtimestamp(records[0].timestamp, tz=NEW_YORK)
    return out


def _already_requested(instance: dg.DagsterInstance, schedule: str, session: date) -> set[str]:
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={SCHEDULE_TAG: schedule, SESSION_TAG: session.isoformat()})
    )
    return {
        r.tags[PARTITION_TAG]
        for r in runs
        if PARTITION_TAG in r.tags and r.status not in _NOT_AGAIN
    }


def _evaluation_time(context: dg.ScheduleEvaluationContext) -> datetime:
    when = context.scheduled_execution_time or datetime.now(tz=NEW_YORK)
    return when.astimezone(NEW_YORK)


@dg.schedule(
    name="market_data_schedule",
    job=market_data_job,
    cron_schedule=MARKET_DATA_CRON,
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="After each NYSE session (weekdays 16:30 New York; holidays skipped with their "
    "name): one market_data_job run per symbol whose stored bars end before the session that "
    "just closed (new symbols included). Features, labels, the market index and regimes follow "
    "through declarative automation.",
)
def market_data_schedule(
    context: dg.ScheduleEvaluationContext, robo: RoboSettingsResource
) -> list[dg.RunRequest] | dg.SkipReason:
    when = _evaluation_time(context)
    session = session_on(when.date())
    if session is None:
        return dg.SkipReason(closed_day_reason(when.date()))
    if when < session.close_ts:
        return dg.SkipReason(
            f"the {session.day} session closes at "
            f"{session.close_ts.astimezone(NEW_YORK):%H:%M} New York: nothing to ingest yet"
        )
    symbols = sorted(context.instance.get_dynamic_partitions(SYMBOL_PARTITIONS_NAME))
    if not symbols:
        return dg.SkipReason("no symbol partitions yet (universe_sensor or make run adds them)")
    settings = robo.settings()
    plans = plan_refresh(
        settings, robo.lake(), symbols, session, _last_ingested(context.instance, symbols)
    )
    requested = _already_requested(context.instance, "market_data_schedule", session.day)
    due = [p for p in plans if p.due and p.symbol not in requested]
    if not due:
        waiting = [p.symbol for p in plans if p.due]
        detail = "; ".join(f"{p.symbol}: {p.why}" for p in plans if not p.due)
        return dg.SkipReason(
            f"after the {session.day} session nothing new to ingest"
            + (f" (already requested: {', '.join(waiting)})" if waiting else "")
            + (f": {detail}" if detail else "")
        )
    tags = {SCHEDULE_TAG: "market_data_schedule", SESSION_TAG: session.day.isoformat()}
    return [
        dg.RunRequest(
            run_key=f"{session.day.isoformat()}:{p.symbol}",
            partition_key=p.symbol,
            run_config=p.run_config,
            tags={**tags, "robo/refresh": p.why[:200]},
        )
        for p in due
    ]


def _latest_materialization(instance: dg.DagsterInstance, key: str) -> datetime | None:
    records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
    return datetime.fromtimestamp(records[0].timestamp, tz=NEW_YORK) if records else None


def retraining_inputs_changed(instance: dg.DagsterInstance) -> tuple[bool, str]:
    """Whether features or labels (any symbol) changed after the latest champion decision, and
    why: a week without new data retrains nothing."""
    inputs = [t for k in ("features", "labels") if (t := _latest_materialization(instance, k))]
    if not inputs:
        return False, "no features or labels yet: materialize the research pipeline first"
    latest_input = max(inputs)
    decided = _latest_materialization(instance, "champion_model")
    if decided is not None and decided >= latest_input:
        return False, (
            f"the champion decision of {decided:%Y-%m-%d %H:%M} already used the latest features "
            f"and labels ({latest_input:%Y-%m-%d %H:%M} New York)"
        )
    return True, f"features or labels changed at {latest_input:%Y-%m-%d %H:%M} New York"


@dg.schedule(
    name="weekly_retrain_schedule",
    job=retrain_job,
    cron_schedule=WEEKLY_RETRAIN_CRON,
    execution_timezone=TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Saturdays 06:00 New York, after the last session of the week: a retrain_job run "
    "(training set and splits); the automation condition sensor then trains and tunes every "
    "family, backtests, reports and decides on the champion in one backfill. Skipped when no "
    "features or labels changed since the last champion decision.",
)
def weekly_retrain_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason:
    when = _evaluation_time(context)
    session = last_closed_session(when)
    changed, why = retraining_inputs_changed(context.instance)
    if not changed:
        return dg.SkipReason(f"week ending {session.day}: {why}")
    return dg.RunRequest(
        run_key=f"weekly-retrain:{session.day.isoformat()}",
        tags={
            SCHEDULE_TAG: "weekly_retrain_schedule",
            SESSION_TAG: session.day.isoformat(),
            RETRAIN_TAG: "weekly",
            "robo/retrain_reason": why,
        },
    )


SCHEDULES = (market_data_schedule, weekly_retrain_schedule)
