"""Backtests of registered model versions on their out-of-sample predictions.

Candidates are the newest registered version of each family (plain and tuned) trained on the
current data; the current champion is found by its registry alias. Each version's out-of-sample
predictions were logged with its MLflow run (``training/tracked.py``), so every one is replayed
through the same decision core, execution and cost model (``trader_runtime.backtest``) on the
same bars, features and market regimes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from mlflow.exceptions import MlflowException

from robo_assets.market_data import BARS
from robo_assets.research_data import FEATURES, MARKET_KEY, MARKET_REGIMES
from robo_assets.tracking import Tracking
from robo_assets.training.tracked import load_logged_predictions
from trader_runtime.backtest.engine import BacktestResult, run_backtest
from trader_runtime.backtest.grid import build_grid, trend_column
from trader_runtime.decision.config import TradingConfig
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.storage.lake import ParquetLake

CHAMPION_ALIAS = "champion"
PREVIOUS_ALIAS = "previous"
BASE = Timeframe.M1
RESULT_DATASETS = ("backtest_equity", "backtest_fills", "backtest_trades", "backtest_decisions")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A registered model version to backtest."""

    version: str
    family: str
    tuned: bool
    run_id: str
    is_champion: bool = False

    @property
    def label(self) -> str:
        """A path-safe name: ``<family>[-tuned]-v<version>``."""
        return f"{self.family}{'-tuned' if self.tuned else ''}-v{self.version}"


def _candidate(version: Any, *, is_champion: bool = False) -> Candidate:
    tags = version.tags or {}
    return Candidate(
        version=str(version.version),
        family=tags.get("family", "unknown"),
        tuned=tags.get("tuned", "false") == "true",
        run_id=tags.get("run_id") or version.run_id,
        is_champion=is_champion,
    )


def find_candidates(tracking: Tracking, data_fingerprint: str) -> list[Candidate]:
    """The newest version per (family, tuned) whose data fingerprint is ``data_fingerprint``."""
    client = tracking.client()
    newest: dict[tuple[str, bool], Candidate] = {}
    for version in client.search_model_versions(f"name = '{tracking.registered_model}'"):
        if (version.tags or {}).get("data_fingerprint") != data_fingerprint:
            continue
        found = _candidate(version)
        key = (found.family, found.tuned)
        if key not in newest or int(found.version) > int(newest[key].version):
            newest[key] = found
    return sorted(newest.values(), key=lambda c: int(c.version))


def current_champion(tracking: Tracking) -> Candidate | None:
    """The version the ``champion`` alias points at, if any."""
    try:
        version = tracking.client().get_model_version_by_alias(
            tracking.registered_model, CHAMPION_ALIAS
        )
    except MlflowException:
        return None
    return _candidate(version, is_champion=True)


@dataclass(frozen=True, slots=True)
class MarketInputs:
    symbols: tuple[str, ...]
    bars: Mapping[str, pl.DataFrame]
    features: Mapping[str, pl.DataFrame]
    regimes: pl.DataFrame | None


def load_market_inputs(
    lake: ParquetLake, symbols: Sequence[str], config: TradingConfig
) -> MarketInputs:
    """Bars, the confirmation features and the market regimes of ``symbols`` (base 1m)."""
    columns = {trend_column(tf, BASE) for tf in config.confirmation.timeframes}
    bars = {s: lake.read(BARS, BASE.value, s) for s in symbols}
    features: dict[str, pl.DataFrame] = {}
    for symbol in symbols:
        if lake.exists(FEATURES, BASE.value, symbol):
            frame = lake.read(FEATURES, BASE.value, symbol)
            features[symbol] = frame.select("ts", *sorted(columns & set(frame.columns)))
    regimes = (
        lake.read(MARKET_REGIMES, BASE.value, MARKET_KEY)
        if lake.exists(MARKET_REGIMES, BASE.value, MARKET_KEY)
        else None
    )
    return MarketInputs(tuple(symbols), bars, features, regimes)


def load_predictions(tracking: Tracking, candidate: Candidate) -> pl.DataFrame | None:
    predictions = load_logged_predictions(tracking, candidate.run_id)
    if predictions is None:
        return None
    return predictions.select("symbol", "ts", "probability")


def common_period(predictions: Sequence[pl.DataFrame]) -> tuple[Any, Any] | None:
    """The span every prediction set covers (None when they do not overlap)."""
    if not predictions:
        return None
    start = max(p["ts"].min() for p in predictions)  # type: ignore[type-var]
    end = min(p["ts"].max() for p in predictions)  # type: ignore[type-var]
    return (start, end) if start <= end else None


def backtest_predictions(
    label: str,
    predictions: pl.DataFrame,
    inputs: MarketInputs,
    config: TradingConfig,
    period: tuple[Any, Any],
) -> BacktestResult:
    """One version's predictions in ``period`` through the reference backtest."""
    within = predictions.filter(pl.col("ts").is_between(period[0], period[1]))
    symbols = [s for s in inputs.symbols if s in set(within["symbol"].unique())]
    grid = build_grid(
        symbols,
        inputs.bars,
        within,
        inputs.features,
        inputs.regimes,
        config.confirmation.timeframes,
        BASE,
    )
    return run_backtest(grid, config, label)


def store_result(lake: ParquetLake, label: str, result: BacktestResult) -> None:
    frames = (result.equity, result.fills, result.trades, result.decisions)
    for dataset, frame in zip(RESULT_DATASETS, frames, strict=True):
        lake.write(dataset, BASE.value, label, frame)


def load_result(lake: ParquetLake, label: str, initial_cash_usd: float) -> BacktestResult:
    equity, fills, trades, decisions = (
        lake.read(dataset, BASE.value, label) for dataset in RESULT_DATASETS
    )
    return BacktestResult(label, equity, fills, trades, decisions, initial_cash_usd)


def candidate_table(candidates: Sequence[Candidate]) -> pl.DataFrame:
    return pl.DataFrame([{**dataclasses.asdict(c), "label": c.label} for c in candidates])
