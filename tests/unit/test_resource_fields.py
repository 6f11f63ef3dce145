from robo_assets.resources import RoboSettingsResource
from trader_runtime.settings import RoboSettings


def test_every_setting_can_be_set_from_dagster_config() -> None:
    assert set(RoboSettingsResource.model_fields) == set(RoboSettings.model_fields)


def test_resource_config_overrides_reach_the_settings() -> None:
    s = RoboSettingsResource(symbols=["X1", "X2"], label_horizon_bars=5).settings()
    assert s.symbols == ("X1", "X2")
    assert s.label_horizon_bars == 5
