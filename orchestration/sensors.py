"""Sensors: the symbol universe, the live session's model reload, declarative automation and
drift-triggered retraining."""

from datetime import UTC, datetime

import dagster as dg

from orchestration.jobs import RETRAIN_TAG, retrain_job
from robo_assets.drift_assets import model_drift
from robo_assets.live_assets import ask_reload, champion_version
from robo_assets.partitions import SYMBOL_PARTITIONS_NAME, symbol_partitions
from robo_assets.resources import RoboSettingsResource


@dg.sensor(
    name="universe_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a symbol partition for every symbol of the universe (ROBO_SYMBOLS).",
)
def universe_sensor(
    context: dg.SensorEvaluationContext, robo: RoboSettingsResource
) -> dg.SensorResult:
    existing = set(context.instance.get_dynamic_partitions(SYMBOL_PARTITIONS_NAME))
    new = [s for s in robo.settings().universe if s not in existing]
    requests = [symbol_partitions.build_add_request(new)] if new else []
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    name="champion_reload_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When the `champion` alias moves to another version while a live_trading run is "
    "in progress, asks the session to reload its model at the next safe point (between bars).",
)
def champion_reload_sensor(
    context: dg.SensorEvaluationContext, robo: RoboSettingsResource
) -> dg.SkipReason:
    settings = robo.settings()
    version = champion_version(settings) or ""
    previous = context.cursor
    context.update_cursor(version)
    if previous is None or version == previous:
        return dg.SkipReason(f"champion is version {version or '(none)'}")
    running = context.instance.get_runs(
        filters=dg.RunsFilter(job_name="live_trading", statuses=[dg.DagsterRunStatus.STARTED])
    )
    if not version or not running:
        return dg.SkipReason(
            f"champion moved {previous or '(none)'} -> {version or '(none)'}; "
            "no live session to reload"
        )
    ask_reload(settings)
    return dg.SkipReason(
        f"champion moved {previous or '(none)'} -> {version}: asked the live session to reload"
    )


# on every run (and backfill) the automation sensor launches; the backtest's condition reads it
AUTOMATION_RUN_TAGS = {"robo/launched_by": "automation_condition_sensor"}

automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=dg.AssetSelection.all(),
    run_tags=AUTOMATION_RUN_TAGS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' automation conditions: new bars -> market index, "
    "features, labels, market regimes; a retrain_job run -> every model family (one backfill), "
    "then backtest, performance report and champion; model_drift on weekdays at 19:00 New York.",
)

DRIFT_KEY = model_drift.key
_RETRAIN_UNDER_WAY = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _value(metadata: dict[str, dg.MetadataValue], key: str, default: object) -> object:
    found = metadata.get(key)
    return default if found is None else found.value


@dg.sensor(
    name="drift_retrain_sensor",
    job=retrain_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a new model_drift materialization says drifted, requests a retraining "
    "(a retrain_job run, like weekly_retrain_schedule) tagged with the reason; at most one per "
    "champion version (run key), none while a retraining is under way.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    records = context.instance.fetch_materializations(DRIFT_KEY, limit=1).records
    if not records:
        return dg.SkipReason("model_drift has not materialized yet")
    record = records[0]
    seen = int(context.cursor) if context.cursor else None
    if seen is not None and record.storage_id <= seen:
        return dg.SkipReason(f"no model_drift materialization after event {seen}")
    context.update_cursor(str(record.storage_id))
    at = datetime.fromtimestamp(record.timestamp, tz=UTC).isoformat(timespec="seconds")
    materialization = record.asset_materialization
    metadata = dict(materialization.metadata) if materialization is not None else {}
    if _value(metadata, "drifted", False) is not True:
        status = _value(metadata, "status", "no drift")
        return dg.SkipReason(f"model_drift of {at}: {status}")
    version = str(_value(metadata, "champion_version", "unknown"))
    reasons = _value(metadata, "reasons", [])
    reason = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons)
    under_way = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=retrain_job.name, statuses=_RETRAIN_UNDER_WAY), limit=1
    )
    if under_way:
        return dg.SkipReason(
            f"champion v{version} drifted ({reason}), but retraining run "
            f"{under_way[0].run_id} is already under way"
        )
    return dg.RunRequest(
        run_key=f"drift-retrain:v{version}",
        tags={
            RETRAIN_TAG: "drift",
            "robo/retrain_reason": f"drift of champion v{version} at {at}: {reason}"[:500],
            "robo/champion_version": version,
        },
    )


SENSORS = (
    universe_sensor,
    champion_reload_sensor,
    automation_condition_sensor,
    drift_retrain_sensor,
)
