"""Sensors."""

import dagster as dg

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


SENSORS = (universe_sensor,)
