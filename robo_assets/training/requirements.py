"""The pip requirements logged with a model: what unpickling and scoring it imports, pinned to the
installed versions.

MLflow infers them otherwise by loading the model in a fresh Python process (about 5 s a model
here, more with torch) and misses what the pickle names only by reference: our own estimator
classes (``trader_runtime``) and, for the MLP, torch and Lightning. Stated per family, they are
complete and cost nothing.
"""

from __future__ import annotations

import importlib.metadata
from functools import cache

from trader_runtime.models.zoo import Family

# every family: the pipeline (scikit-learn), our estimator classes, cloudpickle's format
COMMON_MODULES = ("trader_runtime", "sklearn", "numpy", "pandas", "scipy", "cloudpickle")
FAMILY_MODULES: dict[Family, tuple[str, ...]] = {
    "random_forest": (),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "mlp": ("torch", "pytorch_lightning"),
}


class RequirementError(Exception):
    """A module a model needs is not installed as a distribution."""


@cache
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def model_requirements(family: Family) -> list[str]:
    """``name==version`` of each distribution a ``family`` model imports (sorted, no repeats);
    MLflow adds its own pin."""
    pins: set[str] = set()
    for module in (*COMMON_MODULES, *FAMILY_MODULES[family]):
        names = _distributions().get(module)
        if not names:
            raise RequirementError(f"module {module!r} of a {family} model is not installed")
        name = names[0]
        pins.add(f"{name}=={importlib.metadata.version(name)}")
    return sorted(pins)
