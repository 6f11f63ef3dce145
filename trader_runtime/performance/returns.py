"""The backtest's frames as daily series: session closes, daily returns and drawdowns.

A session is an NYSE trading day labelled by the ``America/New_York`` date of the bar's ``ts`` (the
UTC bar close instant). A session's value is the equity at its **last** bar.

Daily returns are simple returns between consecutive session closes. The first return is anchored
at ``initial_equity_usd`` when given (the value before the first bar), otherwise at the first bar's
equity; in the latter case a first session with a single bar has no return of its own (it would span
no time), so a daily-bar backtest of ``n`` sessions yields ``n - 1`` returns. Either way the product
of ``1 + r`` equals ``last equity / anchor``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from trader_runtime.errors import RoboTraderError

NY_TZ: Final = "America/New_York"
TS_DTYPE: Final = pl.Datetime("us", "UTC")

EQUITY_COLUMNS: Final[dict[str, pl.DataType]] = {
    "ts": TS_DTYPE,
    "equity_usd": pl.Float64(),
    "cash_usd": pl.Float64(),
    "gross_exposure_usd": pl.Float64(),
    "net_exposure_usd": pl.Float64(),
    "benchmark_equity_usd": pl.Float64(),
    "regime": pl.String(),
}
FILLS_COLUMNS: Final[dict[str, pl.DataType]] = {
    "ts": TS_DTYPE,
    "symbol": pl.String(),
    "model": pl.String(),
    "qty": pl.Float64(),
    "price_usd": pl.Float64(),
    "notional_usd": pl.Float64(),
    "commission_usd": pl.Float64(),
    "spread_cost_usd": pl.Float64(),
    "impact_cost_usd": pl.Float64(),
    "reason": pl.String(),
}
TRADES_COLUMNS: Final[dict[str, pl.DataType]] = {
    "symbol": pl.String(),
    "model": pl.String(),
    "side": pl.String(),
    "entry_ts": TS_DTYPE,
    "exit_ts": TS_DTYPE,
    "qty": pl.Float64(),
    "entry_price_usd": pl.Float64(),
    "exit_price_usd": pl.Float64(),
    "gross_pnl_usd": pl.Float64(),
    "costs_usd": pl.Float64(),
    "pnl_usd": pl.Float64(),
    "return_pct": pl.Float64(),
    "regime": pl.String(),
    "exit_reason": pl.String(),
    "bars_held": pl.Int64(),
}

FloatArray = npt.NDArray[np.float64]
RECOVERY_RTOL: Final = 1e-12


class PerformanceInputError(RoboTraderError):
    """A backtest frame lacks a required column or holds non-finite equity."""


def conform(frame: pl.DataFrame, columns: dict[str, pl.DataType], *, name: str) -> pl.DataFrame:
    """``frame`` restricted to ``columns``, cast to their types; an empty frame may lack columns.

    Raises ``PerformanceInputError`` when a non-empty frame misses a required column.
    """
    if frame.height == 0:
        return pl.DataFrame(schema=columns)
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise PerformanceInputError(f"{name} frame lacks columns {missing}")
    return frame.select(pl.col(c).cast(t) for c, t in columns.items())


def session_date(ts: pl.Expr) -> pl.Expr:
    """The NYSE session date (New York calendar date) of a UTC instant."""
    return ts.dt.convert_time_zone(NY_TZ).dt.date()


def conform_equity(equity: pl.DataFrame) -> pl.DataFrame:
    """The equity frame conformed and sorted by ``ts``; raises on non-finite ``equity_usd``."""
    frame = conform(equity, EQUITY_COLUMNS, name="equity").sort("ts")
    bad = frame.filter(~pl.col("equity_usd").is_finite() | pl.col("equity_usd").is_null()).height
    if bad:
        raise PerformanceInputError(f"equity frame has {bad} non-finite equity_usd values")
    return frame


def session_closes(equity: pl.DataFrame) -> pl.DataFrame:
    """One row per session: ``session`` (date), ``ts``, ``equity_usd``, ``benchmark_equity_usd``,
    ``regime`` (at the session's last bar), ``n_bars``; ascending."""
    frame = conform_equity(equity)
    return (
        frame.with_columns(session=session_date(pl.col("ts")))
        .group_by("session", maintain_order=True)
        .agg(
            pl.col("ts").last(),
            pl.col("equity_usd").last(),
            pl.col("benchmark_equity_usd").last(),
            pl.col("regime").last(),
            pl.len().alias("n_bars"),
        )
        .with_columns(pl.col("n_bars").cast(pl.Int64))
        .sort("session")
    )


def daily_returns(equity: pl.DataFrame, *, initial_equity_usd: float | None = None) -> pl.DataFrame:
    """Daily simple returns of the strategy and the benchmark (anchor rule in the module doc).

    Columns ``session`` (date), ``strategy_return``, ``benchmark_return`` (fractions).
    """
    frame = conform_equity(equity)
    closes = session_closes(frame)
    schema = {
        "session": pl.Date(),
        "strategy_return": pl.Float64(),
        "benchmark_return": pl.Float64(),
    }
    if closes.height == 0:
        return pl.DataFrame(schema=schema)
    first = frame.row(0, named=True)
    if initial_equity_usd is not None:
        anchor_s, anchor_b, keep_first = initial_equity_usd, initial_equity_usd, True
    else:
        anchor_s, anchor_b = first["equity_usd"], first["benchmark_equity_usd"]
        keep_first = closes["n_bars"][0] > 1
    prev_s = closes["equity_usd"].shift(1, fill_value=anchor_s)
    prev_b = closes["benchmark_equity_usd"].shift(1, fill_value=anchor_b)
    out = pl.DataFrame(
        {
            "session": closes["session"],
            "strategy_return": _ratio(closes["equity_usd"], prev_s),
            "benchmark_return": _ratio(closes["benchmark_equity_usd"], prev_b),
        },
        schema=schema,
    )
    return out if keep_first else out.slice(1)


def _ratio(now: pl.Series, before: pl.Series) -> pl.Series:
    """``now / before - 1``, NaN where ``before`` is not positive (or missing)."""
    n = now.to_numpy().astype(np.float64)
    b = before.to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(b > 0, n / b - 1.0, np.nan)
    return pl.Series(r, dtype=pl.Float64)


def wealth_index(returns: FloatArray) -> FloatArray:
    """Cumulative wealth ``[1, (1+r0), (1+r0)(1+r1), ...]`` (length ``len(returns) + 1``)."""
    return np.concatenate(([1.0], np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))))


def drawdown(wealth: FloatArray) -> FloatArray:
    """Drawdown of a value path from its running peak, as a fraction in [-1, 0]."""
    w = np.asarray(wealth, dtype=np.float64)
    if w.size == 0:
        return w
    peak = np.maximum.accumulate(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, w / peak - 1.0, 0.0)
    return np.asarray(dd, dtype=np.float64)


def max_drawdown_duration(wealth: FloatArray) -> int:
    """Longest drawdown in steps: from a peak to the first step back at or above it (a dip of
    ``k`` steps below the peak lasts ``k + 1``), or to the last step if never recovered (``k``).
    0 for a path that never declines. A value within ``RECOVERY_RTOL`` of the peak counts as back
    at it (compounded returns rarely land on the peak to the last bit)."""
    w = np.asarray(wealth, dtype=np.float64)
    longest, peak, peak_i = 0, -np.inf, 0
    for i, v in enumerate(w):
        if v >= peak - abs(peak) * RECOVERY_RTOL:
            if i - peak_i > 1:  # the steps in between were all below the peak
                longest = max(longest, i - peak_i)
            peak, peak_i = max(peak, v), i
    if w.size:
        longest = max(longest, int(w.size - 1 - peak_i))
    return longest
