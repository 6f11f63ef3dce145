"""Command line: ``python -m benchmarks NAME ... | --all [--quick] [--write-docs PATH] | --list``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

# importing the package (done by any ``benchmarks.*`` import) registers every benchmark
from benchmarks.harness import (
    BenchmarkError,
    MachineInfo,
    RunContext,
    registered,
    resolve,
    run_benchmarks,
    size_name,
    write_docs,
)

DOCS_PATH = "docs/benchmarks.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run robo-trader benchmarks; prints one JSON object per measurement on stdout.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run")
    parser.add_argument("--all", action="store_true", help="run every registered benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--write-docs", metavar="PATH", help=f"rewrite PATH (e.g. {DOCS_PATH}) with the figures"
    )
    return parser


def reproduce_command(names: Sequence[str], *, run_all: bool, quick: bool, docs: str | None) -> str:
    """The command line that reproduces a run, as Markdown."""
    parts = ["python -m benchmarks", "--all" if run_all else " ".join(names)]
    if quick:
        parts.append("--quick")
    if docs is not None:
        parts.append(f"--write-docs {docs}")
    command = f"`{' '.join(parts)}`"
    if run_all and not quick and docs == DOCS_PATH:
        return f"`make bench` (runs {command})"
    return command


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for bench in registered().values():
            print(f"{bench.name}\t{bench.summary}")
        return 0
    if args.all == bool(args.names):
        parser.error("give benchmark names or --all (not both)")
    names = list(registered()) if args.all else list(args.names)
    try:
        selected = resolve(names)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    machine = MachineInfo.current()
    results = run_benchmarks(selected, quick=args.quick, machine=machine, out=sys.stdout)
    if args.write_docs is not None:
        context = RunContext(
            size=size_name(args.quick),
            command=reproduce_command(
                names, run_all=args.all, quick=args.quick, docs=args.write_docs
            ),
            when=datetime.now(UTC),
            machine=machine,
        )
        write_docs(Path(args.write_docs), results, context)
        print(f"[bench] wrote {args.write_docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
