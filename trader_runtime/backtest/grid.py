"""The backtest's inputs as dense arrays: one row per bar instant, one column per symbol.

Built from the stored bars, features, market regimes and a model's out-of-sample predictions.
Everything in it is known at the bar's close: impact inputs (daily volatility, average daily
volume) and the VWAP volume profile come from earlier sessions only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from trader_runtime.market.impact_inputs import (
    IMPACT_LOOKBACK_SESSIONS as IMPACT_LOOKBACK_SESSIONS,  # re-exported: it lived here
)
from trader_runtime.market.impact_inputs import daily_stats, session_volume, slot_means_by_row
from trader_runtime.market.regimes import REGIME_ORDER, Regime
from trader_runtime.market.timeframes import Timeframe

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

NEW_YORK = "America/New_York"


@dataclass(frozen=True, slots=True)
class MarketGrid:
    """Dense, time-aligned arrays of a backtest (NaN where a symbol has no bar or value)."""

    symbols: tuple[str, ...]
    ts: npt.NDArray[np.datetime64]  # bar close instants, UTC, microseconds
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    probability: FloatArray
    trends: FloatArray  # (bars, symbols, confirmation timeframes)
    applicable: BoolArray  # (symbols, confirmation timeframes)
    regime_codes: IntArray  # index into REGIME_ORDER per bar
    daily_vol: FloatArray
    adv_shares: FloatArray
    expected_volume: FloatArray

    @property
    def n_bars(self) -> int:
        return int(self.close.shape[0])

    def regime(self, t: int) -> Regime:
        return REGIME_ORDER[int(self.regime_codes[t])]


def _order(timeframe: Timeframe) -> int:
    return list(Timeframe).index(timeframe)


def trend_column(timeframe: Timeframe, base: Timeframe) -> str:
    """The feature whose sign is a timeframe's trend: close / SMA(10) - 1 of its last closed bar."""
    return "sma_ratio_10" if timeframe == base else f"tf{timeframe.value}_sma_ratio_10"


def _with_session(frame: pl.DataFrame) -> pl.DataFrame:
    """Adds ``session``: the New York date of ``ts``."""
    return frame.with_columns(session=pl.col("ts").dt.convert_time_zone(NEW_YORK).dt.date())


def _session_keys(bars: pl.DataFrame) -> IntArray:
    """The ``session`` column (dates, non-decreasing in ``ts`` order) as day numbers."""
    return bars["session"].cast(pl.Int64).to_numpy()


def _session_stats(bars: pl.DataFrame) -> pl.DataFrame:
    """Per session: daily volatility and ADV from the previous sessions only (``bars`` sorted by
    ``ts``, carrying ``session``), by ``impact_inputs.daily_stats``."""
    keys = _session_keys(bars)
    n_rows = keys.shape[0]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if n_rows else keys[:0]
    ends = np.r_[starts[1:], n_rows] if n_rows else keys[:0]
    closes = bars["close"].cast(pl.Float64).to_list()
    volumes = bars["volume"].cast(pl.Float64).to_list()
    session_closes = [closes[e - 1] for e in ends.tolist()]
    session_volumes = [
        session_volume(volumes[a:e]) for a, e in zip(starts.tolist(), ends.tolist(), strict=True)
    ]
    n = IMPACT_LOOKBACK_SESSIONS
    stats = [
        daily_stats(session_closes[max(0, s - n - 1) : s], session_volumes[max(0, s - n) : s])
        for s in range(len(starts))
    ]
    return pl.DataFrame(
        {
            "session": bars["session"].gather(starts),
            "daily_vol": [v for v, _ in stats],
            "adv_shares": [a for _, a in stats],
        },
        schema_overrides={"daily_vol": pl.Float64, "adv_shares": pl.Float64},
    )


def _expected_volume(bars: pl.DataFrame) -> pl.DataFrame:
    """Mean volume of the same bar of the session over the previous sessions (``bars`` sorted by
    ``ts``, carrying ``session``), by ``impact_inputs.slot_means_by_row``."""
    volumes = bars["volume"].cast(pl.Float64).to_numpy().astype(np.float64)
    return pl.DataFrame(
        {"ts": bars["ts"], "expected_volume": slot_means_by_row(volumes, _session_keys(bars))}
    )


def build_grid(
    symbols: Sequence[str],
    bars: Mapping[str, pl.DataFrame],
    predictions: pl.DataFrame,
    features: Mapping[str, pl.DataFrame],
    regimes: pl.DataFrame | None,
    confirmation: Sequence[Timeframe],
    base: Timeframe = Timeframe.M1,
) -> MarketGrid:
    """Arrays over the instants of ``predictions`` (columns ``symbol, ts, probability``).

    ``bars`` and ``features`` are per symbol (base timeframe, all history: earlier sessions feed
    the impact inputs); ``regimes`` has ``ts, regime`` (None: every bar is ``ranging``)."""
    timeline = _with_session(predictions.select(pl.col("ts").unique().sort()))
    n_bars, n_sym, k = timeline.height, len(symbols), len(confirmation)
    arrays = {
        name: np.full((n_bars, n_sym), np.nan)
        for name in (
            "open",
            "high",
            "low",
            "close",
            "volume",
            "probability",
            "daily_vol",
            "adv_shares",
            "expected_volume",
        )
    }
    trends = np.full((n_bars, n_sym, k), np.nan)
    applicable = np.zeros((n_sym, k), dtype=bool)
    for j, symbol in enumerate(symbols):
        sym_bars = _with_session(bars[symbol].sort("ts"))
        stats = _session_stats(sym_bars)
        frame = (
            timeline.join(
                sym_bars.select("ts", "open", "high", "low", "close", "volume"), on="ts", how="left"
            )
            .join(
                predictions.filter(pl.col("symbol") == symbol).select("ts", "probability"),
                on="ts",
                how="left",
            )
            .join(_expected_volume(sym_bars), on="ts", how="left")
            .join(stats, on="session", how="left")
        )
        for name in arrays:
            arrays[name][:, j] = frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        feats = features.get(symbol)
        for c, tf in enumerate(confirmation):
            column = trend_column(tf, base)
            if _order(tf) < _order(base) or feats is None or column not in feats.columns:
                continue
            applicable[j, c] = True
            joined = timeline.join(feats.select("ts", column), on="ts", how="left")
            trends[:, j, c] = joined[column].cast(pl.Float64).fill_null(np.nan).to_numpy()
    codes = np.full(n_bars, REGIME_ORDER.index(Regime.RANGING), dtype=np.int64)
    if regimes is not None and regimes.height:
        lookup = {r.value: i for i, r in enumerate(REGIME_ORDER)}
        joined = timeline.join_asof(
            regimes.select("ts", "regime").sort("ts"), on="ts", strategy="backward"
        )
        names = joined["regime"].fill_null(Regime.RANGING.value).to_list()
        codes = np.array([lookup[name] for name in names], dtype=np.int64)
    return MarketGrid(
        symbols=tuple(symbols),
        ts=timeline["ts"].to_numpy(),
        trends=trends,
        applicable=applicable,
        regime_codes=codes,
        **arrays,
    )
