"""Print the package sources pip is configured with as uv options: uv does not read pip's
configuration, and ``make install`` installs with uv (the same requirements, resolved and
installed several times faster than pip) from the same indexes and local wheel folders (the
machine's CPU build of torch is in one)."""

from __future__ import annotations

import shlex
import subprocess
import sys

_OPTIONS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url"}


def uv_args(pip_config_list: str) -> list[str]:
    """uv options for the ``index-url``, ``extra-index-url`` and ``find-links`` entries of
    ``pip config list`` output (any scope: global, user, site, environment; pip lists the
    environment's first, and it takes precedence)."""
    args: list[str] = []
    for line in pip_config_list.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        name = key.rsplit(".", 1)[-1]
        option = "--find-links" if name == "find-links" else _OPTIONS.get(name)
        if option is None:
            continue
        for value in raw.strip().strip("'\"").split():
            if option == "--index-url" and option in args:
                continue  # one default index: the first listed (the environment's) wins
            pair = [option, value]
            if not any(args[i : i + 2] == pair for i in range(0, len(args), 2)):
                args += pair
    return args


def main() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    print(shlex.join(uv_args(listed)))


if __name__ == "__main__":
    main()
