"""Model families behind one interface (``zoo.make_model``); the MLP lives in ``mlp``."""

from trader_runtime.models.zoo import DEFAULT_PARAMS, FAMILIES, Family, make_model, resolve_params

__all__ = ["DEFAULT_PARAMS", "FAMILIES", "Family", "make_model", "resolve_params"]
