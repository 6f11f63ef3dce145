"""Labels: what the models learn to predict, from future bars (research only, never live).

- ``fixed_horizon``: the log return from this bar's close to the close ``horizon_bars`` later,
  ``net_return`` = that minus the round-trip cost, ``target`` = 1 when the return beats the cost.
- ``triple_barrier``: walk the next ``horizon_bars`` closes; +1 if the return first reaches
  ``upper_sigmas`` x sigma x sqrt(horizon), -1 if it first reaches minus ``lower_sigmas`` x the same,
  0 at the vertical barrier; sigma is the causal std of one-bar log returns over ``vol_window_bars``.
  ``target`` = 1 for an upper touch.

``label_end_ts`` is the close of the last bar a label looks at: splits purge on it. For intraday
bars a label must end in the bar's own session (no overnight gap), else it is null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from trader_runtime.errors import ConfigError
from trader_runtime.market.calendar import session_bounds

LabelKind = Literal["fixed_horizon", "triple_barrier"]
LABEL_COLUMNS = ("label_end_ts", "fwd_return", "net_return", "target", "barrier")


@dataclass(frozen=True, slots=True)
class LabelSpec:
    horizon_bars: int = 15
    cost_bps: float = 2.0
    kind: LabelKind = "fixed_horizon"
    vol_window_bars: int = 60
    upper_sigmas: float = 1.0
    lower_sigmas: float = 1.0
    within_session: bool = True

    def __post_init__(self) -> None:
        if self.horizon_bars < 1:
            raise ConfigError(f"label horizon_bars must be >= 1, got {self.horizon_bars}")
        if self.cost_bps < 0:
            raise ConfigError(f"label cost_bps must be >= 0, got {self.cost_bps}")
        if self.upper_sigmas <= 0 or self.lower_sigmas <= 0 or self.vol_window_bars < 2:
            raise ConfigError("triple-barrier sigmas must be > 0 and vol_window_bars >= 2")

    @property
    def cost_log(self) -> float:
        return self.cost_bps * 1e-4


def compute_labels(bars: pl.DataFrame, spec: LabelSpec, *, intraday: bool = True) -> pl.DataFrame:
    """Labels for every bar of one symbol: ``symbol, ts`` and ``LABEL_COLUMNS`` (null where the
    horizon runs past the data or, intraday, past the session close)."""
    n = bars.height
    h = spec.horizon_bars
    close = bars["close"].to_numpy().astype(np.float64)
    log_c = np.log(close)
    ts = bars["ts"]
    idx = np.arange(n)
    end = idx + h
    valid = end < n
    if intraday and spec.within_session and n:
        session = session_bounds(ts)["session"].to_physical().to_numpy()
        same = np.zeros(n, dtype=bool)
        same[valid] = session[end[valid]] == session[idx[valid]]
        valid &= same
    end_c = np.minimum(end, n - 1)

    if spec.kind == "fixed_horizon":
        fwd = np.where(valid, log_c[end_c] - log_c, np.nan)
        end_idx = end_c
        barrier = np.full(n, np.nan)
        target = np.where(valid, (fwd > spec.cost_log).astype(np.float64), np.nan)
    else:
        fwd, end_idx, barrier = _triple_barrier(log_c, valid, spec)
        target = np.where(valid, (barrier == 1).astype(np.float64), np.nan)

    end_ts = ts.gather(end_idx) if n else ts
    out = pl.DataFrame(
        {
            "symbol": bars["symbol"],
            "ts": ts,
            "label_end_ts": end_ts,
            "fwd_return": fwd,
            "net_return": fwd - spec.cost_log,
            "target": target,
            "barrier": barrier,
        }
    ).fill_nan(None)
    return out.with_columns(
        pl.when(pl.Series(valid)).then(pl.col("label_end_ts")).alias("label_end_ts"),
        pl.col("target").cast(pl.Int8),
        pl.col("barrier").cast(pl.Int8),
    )


def _triple_barrier(
    log_c: np.ndarray,  # type: ignore[type-arg]
    valid: np.ndarray,  # type: ignore[type-arg]
    spec: LabelSpec,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    n, h = len(log_c), spec.horizon_bars
    ret1 = np.diff(log_c, prepend=np.nan)
    sigma = (
        pl.Series(ret1)
        .rolling_std(spec.vol_window_bars, min_samples=spec.vol_window_bars)
        .to_numpy()
    )
    padded = np.concatenate([log_c, np.full(h, np.nan)])
    path = sliding_window_view(padded[1:], h)[:n] - log_c[:, None]  # returns after 1..h bars
    scale = sigma * np.sqrt(h)
    upper = path >= (spec.upper_sigmas * scale)[:, None]
    lower = path <= (-spec.lower_sigmas * scale)[:, None]
    first_up = np.where(upper.any(axis=1), upper.argmax(axis=1), h)
    first_dn = np.where(lower.any(axis=1), lower.argmax(axis=1), h)
    barrier = np.where(first_up < first_dn, 1.0, np.where(first_dn < first_up, -1.0, 0.0))
    hit = np.minimum(first_up, first_dn)
    step = np.where(hit < h, hit, h - 1)  # index into path of the exit
    ok = valid & ~np.isnan(sigma)
    fwd = np.where(ok, path[np.arange(n), step], np.nan)
    end_idx = np.minimum(np.arange(n) + step + 1, n - 1)
    return fwd, end_idx, np.where(ok, barrier, np.nan)
