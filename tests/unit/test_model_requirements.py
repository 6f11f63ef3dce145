"""The pip requirements logged with each family's model: complete, pinned to what is installed."""

from __future__ import annotations

import importlib.metadata

import pytest

from robo_assets.training import requirements
from robo_assets.training.requirements import RequirementError, model_requirements
from trader_runtime.models.zoo import FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_every_pin_is_the_installed_version_and_our_package_is_named(family: str) -> None:
    pins = model_requirements(family)  # type: ignore[arg-type]
    assert pins == sorted(set(pins))
    names = [p.split("==")[0] for p in pins]
    assert {"robo-trader", "scikit-learn", "numpy", "pandas", "scipy", "cloudpickle"} <= set(names)
    for pin in pins:
        name, version = pin.split("==")
        assert version == importlib.metadata.version(name)


def test_each_family_adds_its_own_library() -> None:
    base = set(model_requirements("random_forest"))
    extra = {
        family: {p.split("==")[0] for p in set(model_requirements(family)) - base}
        for family in ("xgboost", "lightgbm", "mlp")
    }
    assert extra == {
        "xgboost": {"xgboost-cpu"},
        "lightgbm": {"lightgbm"},
        "mlp": {"torch", "pytorch-lightning"},
    }


def test_a_module_that_is_not_installed_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(requirements.FAMILY_MODULES, "lightgbm", ("no_such_module_here",))
    with pytest.raises(RequirementError, match=r"no_such_module_here.*lightgbm"):
        model_requirements("lightgbm")
