from datetime import date

import numpy as np
import polars as pl
import pytest

from robo_assets.labels import LabelSpec, compute_labels
from tests.bars_kit import minute_bars
from trader_runtime.errors import ConfigError

DAY = date(2024, 3, 1)


def _bars_with_closes(closes: list[float]) -> pl.DataFrame:
    bars = minute_bars(DAY, DAY).head(len(closes))
    return bars.with_columns(pl.Series("close", closes))


def test_fixed_horizon_label_is_the_forward_log_return_and_beats_cost_to_be_up() -> None:
    closes = [100.0, 100.0, 100.05, 101.0, 99.0, 100.0]
    labels = compute_labels(_bars_with_closes(closes), LabelSpec(horizon_bars=2, cost_bps=10))
    fwd = labels["fwd_return"].to_list()
    assert fwd[0] == pytest.approx(np.log(100.05 / 100.0))
    assert fwd[1] == pytest.approx(np.log(101.0 / 100.0))
    assert labels["target"].to_list()[:4] == [0, 1, 0, 0]  # 5 bps < 10 bps cost; +1% > cost
    assert labels["net_return"][1] == pytest.approx(np.log(1.01) - 0.001)
    assert labels["label_end_ts"][0] == labels["ts"][2]
    assert fwd[4:] == [None, None]  # the horizon runs past the data


def test_intraday_labels_never_reach_into_the_next_session() -> None:
    bars = minute_bars(date(2024, 3, 1), date(2024, 3, 4))
    labels = compute_labels(bars, LabelSpec(horizon_bars=15))
    first_day = labels.filter(pl.col("ts") <= bars["ts"][389])
    assert first_day["target"].tail(15).null_count() == 15
    assert first_day["target"].head(375).null_count() == 0
    assert (labels["label_end_ts"] - labels["ts"]).max().total_seconds() == 15 * 60  # type: ignore[union-attr]


def test_triple_barrier_marks_the_barrier_touched_first() -> None:
    rng = np.random.default_rng(3)
    base = list(100 * np.exp(np.cumsum(rng.normal(0, 1e-3, 80))))
    closes = [*base, base[-1] * 1.05, base[-1] * 0.9, *([base[-1]] * 10)]
    spec = LabelSpec(horizon_bars=5, kind="triple_barrier", vol_window_bars=60, upper_sigmas=2.0)
    labels = compute_labels(_bars_with_closes(closes), spec)
    row = labels.row(79, named=True)  # next bar jumps +5%: upper barrier first
    assert row["barrier"] == 1
    assert row["target"] == 1
    assert row["label_end_ts"] == labels["ts"][80]
    assert labels.row(80, named=True)["barrier"] == -1  # next bar falls 14%
    assert labels["barrier"].head(59).null_count() == 59  # no volatility estimate yet


def test_invalid_label_specs_are_refused() -> None:
    with pytest.raises(ConfigError, match="horizon_bars"):
        LabelSpec(horizon_bars=0)
    with pytest.raises(ConfigError, match="cost_bps"):
        LabelSpec(cost_bps=-1)
