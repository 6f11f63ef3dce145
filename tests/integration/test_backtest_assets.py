"""backtest -> performance_report -> champion_model on a small universe, through Dagster and a
real MLflow registry: reports on disk and in MLflow, gates that refuse and gates that promote,
the previous champion kept as `previous`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from tests.research_kit import build_research_data, research_environment, run_job
from trader_runtime.settings import RoboSettings

FAST = {"ROBO_TRAIN_MAX_ROWS": "5000"}
LENIENT = {
    "ROBO_PROMOTION__MIN_OOS_SESSIONS": "1",
    "ROBO_PROMOTION__MIN_TRADES": "0",
    "ROBO_PROMOTION__MIN_DEFLATED_SHARPE": "0",
    "ROBO_PROMOTION__MAX_DRAWDOWN": "1",
    "ROBO_PROMOTION__REGIME_TOLERANCE": "100",
    "ROBO_PROMOTION__MIN_SHARPE_MARGIN": "-1000",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dg.DagsterInstance]]:
    root = tmp_path_factory.mktemp("backtest")
    with research_environment(root) as instance, pytest.MonkeyPatch.context() as mp:
        for key, value in FAST.items():
            mp.setenv(key, value)
        build_research_data(instance)
        run_job("training_job", instance, "lightgbm")
        yield root, instance


def _meta(result: dg.ExecuteInProcessResult, key: str) -> dict[str, object]:
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _client() -> tuple[MlflowClient, str]:
    settings = RoboSettings()
    return MlflowClient(settings.mlflow_tracking_uri), settings.registered_model


def test_strict_gates_keep_no_champion_and_say_why(
    project: tuple[Path, dg.DagsterInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, instance = project
    monkeypatch.setenv("ROBO_PROMOTION__MIN_TRADES", "1000000")
    result = run_job("backtest_job", instance)
    backtest = _meta(result, "backtest")
    assert "lightgbm-v1" in str(backtest["candidates"])
    report = _meta(result, "performance_report")
    tearsheet = Path(str(report["best_tearsheet"]))
    assert tearsheet.is_file()
    assert tearsheet.parent == root / "data" / "reports"
    html = tearsheet.read_text()
    assert "deflated_sharpe" in html.lower().replace(" ", "_")
    assert "data:image/png;base64" in html
    champion = _meta(result, "champion_model")
    assert champion["promoted"] is False
    assert "trades" in str(champion["decision"])
    assert "1000000" in str(champion["decision"])
    client, name = _client()
    assert "champion" not in client.get_registered_model(name).aliases
    # every contender carries its gate results, and its run the backtest report
    versions = client.search_model_versions(f"name = '{name}'")
    assert all(v.tags.get("gates_passed") == "false" for v in versions)
    run_id = versions[0].tags["run_id"]
    names = {a.path for a in client.list_artifacts(run_id, "backtest")}
    assert any(n.endswith(".html") for n in names)
    assert any(n.endswith("equity.png") for n in names)


def test_passing_gates_promote_and_keep_the_previous_champion(
    project: tuple[Path, dg.DagsterInstance], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, instance = project
    for key, value in LENIENT.items():
        monkeypatch.setenv(key, value)
    result = run_job("backtest_job", instance)
    first = _meta(result, "champion_model")
    assert first["promoted"] is True, first["decision"]
    client, name = _client()
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["gates_passed"] == "true"
    # a new version appears; the champion is backtested with it and, once beaten, kept as previous
    run_job("training_job", instance, "lightgbm")
    result = run_job("backtest_job", instance)
    labels = str(_meta(result, "backtest")["candidates"])
    assert f"-v{champion.version}" in labels
    second = _meta(result, "champion_model")
    if second["promoted"]:
        assert client.get_model_version_by_alias(name, "previous").version == champion.version
        assert client.get_model_version_by_alias(name, "champion").version != champion.version
    else:  # the champion was the best: it stays, and the decision says so
        assert client.get_model_version_by_alias(name, "champion").version == champion.version
        assert "kept champion" in str(second["decision"])
