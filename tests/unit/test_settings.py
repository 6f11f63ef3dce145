from datetime import date
from pathlib import Path

import pytest

from trader_runtime.brokers.ib.historical import IbHistoricalSource
from trader_runtime.errors import ConfigError
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.settings import DEFAULT_SYNTHETIC_SYMBOLS, RoboSettings
from trader_runtime.sources.files import FilesSource
from trader_runtime.sources.index_history import IndexHistorySource
from trader_runtime.sources.registry import build_source, source_for_symbol
from trader_runtime.sources.synthetic import SyntheticSource


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ROBO_"):
            monkeypatch.delenv(key)


def test_default_universe_is_eight_synthetic_symbols_and_two_real_indices() -> None:
    s = RoboSettings.from_overrides()
    assert s.universe == ("SP500", "NASDAQ", *DEFAULT_SYNTHETIC_SYMBOLS)
    assert s.source_for("SP500") == "index_history"
    assert s.source_for("SYNA") == "synthetic"
    assert isinstance(source_for_symbol("SYNA", s), SyntheticSource)
    assert isinstance(source_for_symbol("NASDAQ", s), IndexHistorySource)


def test_environment_variables_with_the_robo_prefix_configure_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ROBO_SYMBOLS", "AAA, BBB")
    monkeypatch.setenv("ROBO_INDEX_SYMBOLS", '["SP500"]')
    monkeypatch.setenv("ROBO_START", "2023-02-01")
    monkeypatch.setenv("ROBO_DATA_DIR", str(tmp_path / "d"))
    s = RoboSettings.from_overrides()
    assert s.symbols == ("AAA", "BBB")
    assert s.index_symbols == ("SP500",)
    assert s.start == date(2023, 2, 1)
    assert s.lake_dir == tmp_path / "d" / "lake"
    assert s.mlflow_tracking_uri.startswith("sqlite:////")


def test_explicit_overrides_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBO_SYNTHETIC_SEED", "1")
    assert RoboSettings.from_overrides(synthetic_seed=2).synthetic_seed == 2
    assert RoboSettings.from_overrides(synthetic_seed=None).synthetic_seed == 1


def test_settings_are_frozen() -> None:
    s = RoboSettings.from_overrides()
    with pytest.raises(ValueError, match="frozen"):
        s.source = "files"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"start": "2024-05-01", "end": "2024-01-01"}, "before start"),
        ({"symbols": ("A/B",)}, "not a valid name"),
        ({"symbols": ("A", "A")}, "repeat"),
        ({"index_symbols": ("DOW",)}, "not in index_history"),
        ({"symbols": ("SP500",)}, "both symbols and index_symbols"),
        ({"source": "files"}, "ROBO_FILES_DIR"),
        ({"source": "bloomberg"}, "source"),
        ({"signal_strength": 0.7}, "signal_strength"),
    ],
)
def test_invalid_settings_are_a_config_error_that_says_why(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        RoboSettings.from_overrides(**overrides)


def test_files_source_is_built_from_settings(tmp_path: Path) -> None:
    s = RoboSettings.from_overrides(source="files", files_dir=str(tmp_path))
    source = source_for_symbol("ACME", s)
    assert isinstance(source, FilesSource)
    assert source.directory == tmp_path


def test_the_ibkr_source_is_built_from_the_ib_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBO_IB__PORT", "4011")
    monkeypatch.setenv("ROBO_IB__CLIENT_ID", "41")
    source = build_source("ibkr", RoboSettings.from_overrides())
    assert isinstance(source, IbHistoricalSource)
    assert (source.config.port, source.config.client_id, source.config.mode) == (4011, 41, "paper")
    assert source.base_timeframe == Timeframe.M1
