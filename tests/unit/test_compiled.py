"""The ahead-of-time compile step runs every live kernel with the signatures the code uses."""

from __future__ import annotations

from trader_runtime import compiled


def test_every_group_of_kernels_compiles_and_runs() -> None:
    seconds = compiled.warm()
    assert set(seconds) == {
        "streaming features",
        "streaming regime",
        "decision core",
        "book and risk",
        "native scoring",
    }
    assert all(s >= 0.0 for s in seconds.values())
