"""`make install` hands uv the package sources pip is configured with (uv does not read them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pip_sources_for_uv.py"
_spec = importlib.util.spec_from_file_location("pip_sources_for_uv", _SCRIPT)
assert _spec is not None
assert _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
uv_args = _module.uv_args


def test_indexes_and_wheel_folders_of_every_scope_become_uv_options_once() -> None:
    listed = "\n".join(
        [
            ":env:.index-url='http://mirror/simple'",
            ":env:.find-links='/opt/wheels'",
            "global.cert='/etc/ssl/certs/ca.crt'",
            "global.index-url='http://other/simple'",
            "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'",
            "global.find-links='/opt/wheels'",
            "user.timeout='60'",
        ]
    )
    assert uv_args(listed) == [
        "--index-url",
        "http://mirror/simple",  # the environment's: pip lists it first and it wins
        "--find-links",
        "/opt/wheels",  # given twice, passed once
        "--extra-index-url",
        "file:///opt/a/simple",
        "--extra-index-url",
        "file:///opt/b/simple",
    ]


def test_no_configured_sources_means_no_options() -> None:
    assert uv_args("") == []
    assert uv_args("global.cert='/etc/ssl/certs/ca.crt'\nnot a setting") == []
