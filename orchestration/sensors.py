"""Sensors."""

import dagster as dg

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


SENSORS = (universe_sensor, champion_reload_sensor)
