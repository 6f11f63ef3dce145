"""The champion reload sensor asks a running live session to reload when the alias moves."""

from __future__ import annotations

import dagster as dg
from mlflow.tracking import MlflowClient

from orchestration.sensors import champion_reload_sensor
from robo_assets.resources import RoboSettingsResource
from tests.conftest import RoboEnv
from tests.live_kit import register_model
from trader_runtime.live.session import control_dir
from trader_runtime.settings import RoboSettings


def _evaluate(instance: dg.DagsterInstance, cursor: str | None) -> tuple[str, str | None]:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"robo": RoboSettingsResource()}
    )
    result = champion_reload_sensor(context)
    return str(result.skip_message), context.cursor


def test_a_moved_alias_asks_the_running_session_to_reload(robo_env: RoboEnv) -> None:
    settings = RoboSettings.from_overrides()
    request = control_dir(settings) / "reload"
    first = register_model(settings.mlflow_tracking_uri)
    with dg.instance_for_test() as instance:
        message, cursor = _evaluate(instance, None)
        assert cursor == first
        assert not request.exists()  # the first look only remembers the version
        second = register_model(settings.mlflow_tracking_uri)
        message, cursor = _evaluate(instance, cursor)
        assert cursor == second
        assert "no live session" in message
        assert not request.exists()
        run = instance.create_run_for_job(
            dg.Definitions(jobs=[_noop_job]).resolve_job_def("live_trading")
        )
        instance.handle_run_event(
            run.run_id,
            dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_START.value,
                job_name="live_trading",
                message="started",
            ),
        )
        MlflowClient(settings.mlflow_tracking_uri).set_registered_model_alias(
            settings.registered_model, "champion", first
        )
        message, cursor = _evaluate(instance, cursor)
        assert cursor == first
        assert "asked the live session to reload" in message
        assert request.exists()


@dg.op
def _noop() -> None:
    return None


@dg.job(name="live_trading")
def _noop_job() -> None:
    _noop()
