"""The benchmark registry, the runner and the Markdown writer for ``docs/benchmarks.md``.

A benchmark is a function ``run(quick: bool) -> list[Measurement]`` registered under a name with
``@register("name")``. The runner prints each measurement as one JSON object per line on stdout
(progress goes to stderr); the docs writer regenerates everything above ``DOCS_MARKER`` in the docs
file and keeps everything below it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

DOCS_MARKER = "<!-- generated above; notes below are kept -->"
DEFAULT_NOTES = """
## Notes

Hand-written notes go here; `python -m benchmarks --write-docs` keeps everything below the marker.
"""
RESERVED_KEYS = frozenset(
    {"bench", "metric", "value", "unit", "size", "python", "cpus", "platform"}
)
NOTE_KEY = "note"

RunFn = Callable[[bool], "list[Measurement]"]


class BenchmarkError(Exception):
    """A benchmark is unknown, registered twice, or returned malformed measurements."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One figure of one benchmark. ``extra`` holds context (sizes, parameters, a ``note``)."""

    bench: str
    metric: str
    value: float | int
    unit: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = RESERVED_KEYS & set(self.extra)
        if clash:
            raise BenchmarkError(
                f"{self.bench}.{self.metric}: extra keys {sorted(clash)} are reserved"
            )


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    run: RunFn
    summary: str


@dataclass(frozen=True, slots=True)
class MachineInfo:
    cpus: int
    python: str
    platform: str
    cpu_model: str | None

    @classmethod
    def current(cls) -> MachineInfo:
        return cls(
            cpus=os.cpu_count() or 1,
            python=platform.python_version(),
            platform=platform.platform(),
            cpu_model=_cpu_model(),
        )


@dataclass(frozen=True, slots=True)
class RunContext:
    """What the docs say about a run: its size, the command that reproduces it, when and where."""

    size: str
    command: str
    when: datetime
    machine: MachineInfo


_REGISTRY: dict[str, Benchmark] = {}


def register(name: str) -> Callable[[RunFn], RunFn]:
    """Register ``run(quick) -> list[Measurement]`` as benchmark ``name``."""

    def decorate(run: RunFn) -> RunFn:
        if name in _REGISTRY:
            raise BenchmarkError(f"benchmark {name!r} is registered twice")
        doc = (run.__doc__ or "").strip()
        _REGISTRY[name] = Benchmark(name=name, run=run, summary=doc.splitlines()[0] if doc else "")
        return run

    return decorate


def registered() -> dict[str, Benchmark]:
    """Registered benchmarks, in registration order."""
    return dict(_REGISTRY)


def resolve(names: Iterable[str]) -> list[Benchmark]:
    """The benchmarks called ``names`` (duplicates dropped); raises for unknown names."""
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in _REGISTRY]
    if unknown:
        raise BenchmarkError(
            f"unknown benchmark(s) {', '.join(repr(n) for n in unknown)}; "
            f"known: {', '.join(_REGISTRY) or '(none)'}"
        )
    return [_REGISTRY[n] for n in wanted]


def progress(message: str) -> None:
    """A progress line on stderr (stdout carries only measurements)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def size_name(quick: bool) -> str:
    return "quick" if quick else "full"


def to_record(m: Measurement, *, size: str, machine: MachineInfo) -> dict[str, Any]:
    """The JSON object printed for ``m``."""
    return {
        "bench": m.bench,
        "metric": m.metric,
        "value": m.value,
        "unit": m.unit,
        "size": size,
        **m.extra,
        "python": machine.python,
        "cpus": machine.cpus,
        "platform": machine.platform,
    }


def run_benchmarks(
    selected: Sequence[Benchmark], *, quick: bool, machine: MachineInfo, out: TextIO
) -> list[Measurement]:
    """Run ``selected`` in order, writing each measurement to ``out`` as soon as it exists."""
    size = size_name(quick)
    results: list[Measurement] = []
    for bench in selected:
        progress(f"{bench.name} ({size}) ...")
        measurements = bench.run(quick)
        wrong = [m for m in measurements if m.bench != bench.name]
        if wrong:
            raise BenchmarkError(
                f"benchmark {bench.name!r} returned measurements of {sorted({m.bench for m in wrong})}"
            )
        for m in measurements:
            out.write(json.dumps(to_record(m, size=size, machine=machine), default=str) + "\n")
        out.flush()
        results.extend(measurements)
        progress(f"{bench.name} done: {len(measurements)} measurements")
    return results


# -- docs -----------------------------------------------------------------------------------------


def write_docs(path: Path, results: Sequence[Measurement], context: RunContext) -> None:
    """Rewrite ``path``: generated Markdown above ``DOCS_MARKER``, the old text below it kept.

    A file without the marker keeps its whole old text below a new marker; a missing file gets a
    short notes section. Sections of benchmarks that this run did not include are kept as they
    were (each section says when and how it was measured).
    """
    kept = DEFAULT_NOTES
    previous: dict[str, str] = {}
    if path.exists():
        old = path.read_text(encoding="utf-8")
        head, marker, tail = old.partition(DOCS_MARKER)
        kept = tail if marker else "\n" + old
        if marker:
            previous = _sections(head)[1]
    header, fresh = _sections(render_docs(results, context))
    merged = {**previous, **fresh}  # benchmarks not rerun keep their last tables
    body = "".join(merged[name].rstrip("\n") + "\n\n" for name in sorted(merged))
    text = header.rstrip("\n") + "\n\n" + body + DOCS_MARKER + kept
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _sections(generated: str) -> tuple[str, dict[str, str]]:
    """Split generated Markdown into its header and its ``## <bench>`` sections."""
    header, sections, name = [], {}, None
    for line in generated.splitlines(keepends=True):
        if line.startswith("## "):
            name = line[3:].strip()
            sections[name] = ""
        if name is None:
            header.append(line)
        else:
            sections[name] += line
    return "".join(header), sections


def render_docs(results: Sequence[Measurement], context: RunContext) -> str:
    """The generated part of the docs: header, reproduction command, machine, one table per bench."""
    machine = context.machine
    cpu = f" ({machine.cpu_model})" if machine.cpu_model else ""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks`; edit the notes below the marker, not the tables.",
        "",
        "- Reproduce every table: `make bench`; each section says when and how it was measured.",
        f"- Machine: {machine.cpus} cores{cpu}, Python {machine.python}, {machine.platform}",
    ]
    by_bench: dict[str, list[Measurement]] = {}
    for m in results:
        by_bench.setdefault(m.bench, []).append(m)
    for name, measurements in by_bench.items():
        lines += ["", f"## {name}", ""]
        lines += [
            f"Measured {context.when.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({context.size} size) "
            f"with {context.command}.",
            "",
        ]
        summary = _REGISTRY[name].summary if name in _REGISTRY else ""
        if summary:
            lines += [summary, ""]
        shared = _shared_context(measurements)
        if shared:
            lines += ["Context: " + ", ".join(f"{k} = {_cell(v)}" for k, v in shared.items()), ""]
        lines += ["| metric | value | unit | notes |", "|---|---:|---|---|"]
        for m in measurements:
            note = m.extra.get(NOTE_KEY, "")
            lines.append(f"| {m.metric} | {format_value(m.value)} | {m.unit} | {_cell(note)} |")
    return "\n".join(lines) + "\n"


def format_value(value: float | int) -> str:
    """Readable figures: thousands separators for large values, 3 significant digits for small."""
    if isinstance(value, int):
        return f"{value:,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _shared_context(measurements: Sequence[Measurement]) -> dict[str, Any]:
    """Extra keys (other than the note) with the same value in every measurement."""
    first = measurements[0].extra
    return {
        k: v
        for k, v in first.items()
        if k != NOTE_KEY and all(m.extra.get(k, object()) == v for m in measurements[1:])
    }


def _cell(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_value(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
