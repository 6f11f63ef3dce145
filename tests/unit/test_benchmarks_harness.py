"""Tests of the benchmark harness: CLI output, registry, docs writer. No speed thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import (
    DOCS_MARKER,
    BenchmarkError,
    MachineInfo,
    Measurement,
    RunContext,
    write_docs,
)
from benchmarks.ingest import QUICK
from trader_runtime.market.calendar import TradingCalendar

REPO = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = {"bench", "metric", "value", "unit", "size", "python", "cpus"}


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBO_")}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def quick_ingest() -> list[dict[str, Any]]:
    done = _run_cli("ingest", "--quick")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_quick_ingest_prints_one_json_measurement_per_line(
    quick_ingest: list[dict[str, Any]],
) -> None:
    assert quick_ingest
    for record in quick_ingest:
        assert set(record) >= REQUIRED_KEYS
        assert record["bench"] == "ingest"
        assert record["size"] == "quick"
        assert isinstance(record["value"], int | float)
        assert record["symbols"] == QUICK.n_symbols
    metrics = {r["metric"]: r for r in quick_ingest}
    expected = {"rows_per_s", "wall_s", "rows", "generate_s", "validate_resample_store_s"}
    assert expected <= set(metrics)
    assert len(metrics) == len(quick_ingest), "a metric is reported twice"
    assert metrics["rows_per_s"]["value"] > 0


def test_quick_ingest_counts_every_calendar_minute_of_every_symbol(
    quick_ingest: list[dict[str, Any]],
) -> None:
    minutes = TradingCalendar(QUICK.start, QUICK.end).minute_bar_closes().len()
    rows = next(r for r in quick_ingest if r["metric"] == "rows")
    assert rows["value"] == minutes * QUICK.n_symbols
    assert rows["start"] == QUICK.start.isoformat()
    assert rows["end"] == QUICK.end.isoformat()


def test_list_names_ingest() -> None:
    done = _run_cli("--list")
    assert done.returncode == 0, done.stderr
    assert "ingest" in [line.split("\t")[0] for line in done.stdout.splitlines()]


def test_unknown_benchmark_exits_non_zero_with_a_clear_message() -> None:
    done = _run_cli("no_such_bench")
    assert done.returncode != 0
    assert done.stdout == ""
    assert "unknown benchmark" in done.stderr
    assert "no_such_bench" in done.stderr
    assert "ingest" in done.stderr  # names the known ones


def _context() -> RunContext:
    machine = MachineInfo(cpus=2, python="3.11.7", platform="Linux-test", cpu_model=None)
    return RunContext(
        size="full",
        command="`make bench`",
        when=datetime(2024, 5, 6, 7, 8, tzinfo=UTC),
        machine=machine,
    )


def _results(value: float) -> list[Measurement]:
    return [
        Measurement("ingest", "rows_per_s", value, "rows/s", {"symbols": 20, "note": "headline"}),
        Measurement("ingest", "rows", 1_942_800, "rows", {"symbols": 20, "note": "a | b"}),
    ]


def test_docs_writer_replaces_the_tables_and_keeps_the_notes(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    notes = "\n## Notes\n\nHand-written: keep me.\n\n| my | table |\n|---|---|\n"
    docs.write_text(f"# old header\n\n| rows_per_s | 1.0 |\n{DOCS_MARKER}{notes}", encoding="utf-8")

    write_docs(docs, _results(123_456.7), _context())

    text = docs.read_text(encoding="utf-8")
    above, marker, below = text.partition(DOCS_MARKER)
    assert marker
    assert below == notes
    assert "old header" not in above
    assert "| rows_per_s | 123,457 | rows/s | headline |" in above
    assert "| rows | 1,942,800 | rows | a \\| b |" in above
    assert "`make bench`" in above
    assert "2024-05-06 07:08 UTC" in above
    assert "2 cores" in above
    assert "Python 3.11.7" in above

    write_docs(docs, _results(99.5), _context())
    again = docs.read_text(encoding="utf-8")
    assert again.count(DOCS_MARKER) == 1
    assert again.partition(DOCS_MARKER)[2] == notes
    assert "123,457" not in again
    assert "| rows_per_s | 99.50 | rows/s | headline |" in again


def test_docs_writer_creates_the_marker_and_a_notes_section(tmp_path: Path) -> None:
    docs = tmp_path / "new" / "benchmarks.md"
    write_docs(docs, _results(1.0), _context())
    above, marker, below = docs.read_text(encoding="utf-8").partition(DOCS_MARKER)
    assert marker
    assert "## ingest" in above
    assert "## Notes" in below


def test_docs_writer_keeps_a_file_without_marker_below_a_new_marker(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("Someone's text.\n", encoding="utf-8")
    write_docs(docs, _results(1.0), _context())
    assert docs.read_text(encoding="utf-8").partition(DOCS_MARKER)[2] == "\nSomeone's text.\n"


def test_measurement_extra_cannot_shadow_the_record_keys() -> None:
    with pytest.raises(BenchmarkError, match="reserved"):
        Measurement("ingest", "rows", 1, "rows", {"value": 2})


def test_quick_features_benchmark_reports_every_metric_side_by_side_with_talib() -> None:
    proc = _run_cli("features", "--quick")
    assert proc.returncode == 0, proc.stderr
    records = {r["metric"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(records) >= {
        "ours_s",
        "talib_raw_s",
        "ratio_vs_talib",
        "n_features",
        "incremental_p50_us",
        "incremental_p99_us",
    }
    assert records["n_features"]["value"] == 50
    assert records["ratio_vs_talib"]["value"] == pytest.approx(
        records["ours_s"]["value"] / records["talib_raw_s"]["value"]
    )
    assert 0 < records["incremental_p50_us"]["value"] <= records["incremental_p99_us"]["value"]


def test_docs_writer_keeps_the_tables_of_benchmarks_not_rerun(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    write_docs(docs, _results(123_456.7), _context())
    other = [Measurement("training", "xgboost_fit_s", 42.0, "s", {"note": "fit"})]
    write_docs(docs, other, _context())
    above = docs.read_text(encoding="utf-8").partition(DOCS_MARKER)[0]
    assert "## ingest" in above
    assert "| rows_per_s | 123,457 | rows/s | headline |" in above
    assert "| xgboost_fit_s | 42.00 | s | fit |" in above
    assert above.index("## ingest") < above.index("## training")
    assert above.count("# Benchmarks") == 1
