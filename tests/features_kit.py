"""Small synthetic universes for feature tests (cached: generation is deterministic)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import polars as pl

from trader_runtime.features.batch import compute_features, market_index
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.market.resample import resample_bars
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

SYMBOLS = ("AAA", "BBB", "CCC")
START, END = date(2024, 10, 1), date(2024, 12, 6)  # includes an early close and a holiday


@lru_cache(maxsize=4)
def minute_bars(symbol: str, start: date = START, end: date = END) -> pl.DataFrame:
    source = SyntheticSource(SyntheticMarketConfig(seed=11, signal_strength=0.1))
    return source.load(BarRequest(symbol, start, end))


def all_timeframes(m1: pl.DataFrame) -> dict[Timeframe, pl.DataFrame]:
    return {Timeframe.M1: m1} | {
        tf: resample_bars(m1, tf) for tf in DEFAULT_FEATURE_SET.higher_timeframes
    }


def features_up_to(cut_index: int | None, symbol: str = "AAA") -> pl.DataFrame:
    """Features of ``symbol`` computed only from bars up to row ``cut_index`` (all if None)."""
    frames = {s: minute_bars(s) for s in SYMBOLS}
    if cut_index is not None:
        cut_ts = frames[symbol]["ts"][cut_index]
        frames = {s: f.filter(pl.col("ts") <= cut_ts) for s, f in frames.items()}
    market = market_index(f.select("ts", "close") for f in frames.values())
    return compute_features(all_timeframes(frames[symbol]), market=market)


@lru_cache(maxsize=1)
def full_features() -> pl.DataFrame:
    return features_up_to(None)
