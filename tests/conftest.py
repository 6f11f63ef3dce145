"""Shared fixtures: an isolated project environment (data dir, Dagster home) per test."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]

# no per-example deadline: the first example of a property may compile a numba kernel (half a
# second, seen in CI as a DeadlineExceeded "flaky" failure), and this 2-core VM shares its CPUs
settings.register_profile("robo", deadline=None)
settings.load_profile("robo")


@dataclass(frozen=True)
class RoboEnv:
    """Paths of one isolated project environment; its variables are set in ``os.environ``."""

    root: Path
    data_dir: Path
    dagster_home: Path
    env: dict[str, str]


SMALL_UNIVERSE = {
    "ROBO_SYMBOLS": "AAA",
    "ROBO_INDEX_SYMBOLS": "SP500",
    "ROBO_START": "2024-03-01",
    "ROBO_END": "2024-03-08",
    "ROBO_INDEX_START": "2018-01-01",
    "ROBO_INDEX_END": "2018-03-31",
}


@pytest.fixture
def robo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RoboEnv:
    """A fresh data dir and Dagster home (with the committed dagster.yaml) and a small universe."""
    for key in list(os.environ):
        if key.startswith("ROBO_"):
            monkeypatch.delenv(key)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **SMALL_UNIVERSE,
        "ROBO_DATA_DIR": str(tmp_path / "data"),
        "ROBO_MLRUNS_DIR": str(tmp_path / "mlruns"),
        "DAGSTER_HOME": str(home),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return RoboEnv(root=tmp_path, data_dir=tmp_path / "data", dagster_home=home, env=env)
