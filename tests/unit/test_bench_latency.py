"""The ``latency`` benchmark's choice among repeated one-symbol sessions. No speed thresholds."""

from __future__ import annotations

import pytest

from benchmarks.latency import OneSymbolSession, _one_symbol_measurements, quietest


def _session(p99_us: float, steal_pct: float | None) -> OneSymbolSession:
    # 100 bars: 98 at 100 us, two at p99_us (numpy's p99 of them is p99_us)
    wall = [100.0] * 98 + [p99_us, p99_us]
    return OneSymbolSession(wall, [w / 2 for w in wall], [50.0] * 100, steal_pct, [30.0] * 100)


def test_the_session_with_the_least_steal_is_chosen_not_the_best_result() -> None:
    noisy_fast = _session(400.0, 9.0)
    quiet_slow = _session(700.0, 0.5)
    assert quietest([noisy_fast, quiet_slow]) is quiet_slow


def test_equal_or_unknown_steal_falls_back_to_the_lower_p99() -> None:
    a, b = _session(800.0, 1.0), _session(600.0, 1.0)
    assert quietest([a, b]) is b
    unknown_a, unknown_b = _session(800.0, None), _session(600.0, None)
    assert quietest([unknown_a, unknown_b]) is unknown_b
    known = _session(900.0, 5.0)
    assert quietest([unknown_b, known]) is known  # a measured steal beats an unknown one


def test_no_sessions_is_an_error() -> None:
    with pytest.raises(ValueError, match="no sessions"):
        quietest([])


def test_the_figures_are_the_chosen_sessions_and_every_session_is_in_the_note() -> None:
    sessions = [_session(1500.0, 12.0), _session(650.0, 1.5), _session(900.0, 4.0)]
    by_metric = {m.metric: m for m in _one_symbol_measurements("mlp", sessions)}
    p99 = by_metric["decision_p99_us"]
    assert p99.value == pytest.approx(650.0)
    assert p99.extra["steal_pct"] == 1.5
    assert p99.extra["session_p99_us"] == [1500.0, 650.0, 900.0]
    assert p99.extra["session_steal_pct"] == [12.0, 1.5, 4.0]
    assert "1,500 us at 12.0%" in p99.extra["note"]
    assert by_metric["decision_cpu_p99_us"].value == pytest.approx(325.0)
    assert by_metric["decision_cpu_p99_us"].extra["bars_over_1ms"] == 0
    assert by_metric["decision_p50_us"].value == pytest.approx(100.0)
    assert by_metric["journal_commit_p50_us"].value == pytest.approx(50.0)
    assert by_metric["arrival_to_worker_p50_us"].value == pytest.approx(30.0)
