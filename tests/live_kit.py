"""A small real model and the backtest of a feed's bars, for the live runtime's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache

import mlflow
import numpy as np
import polars as pl
from mlflow.tracking import MlflowClient
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from tests.features_kit import all_timeframes
from trader_runtime.backtest.engine import BacktestResult, run_backtest
from trader_runtime.backtest.grid import build_grid
from trader_runtime.brokers.base import BarQuote, OrderRequest
from trader_runtime.brokers.paper import PaperBroker
from trader_runtime.decision.config import TradingConfig
from trader_runtime.decision.regime import breadth, classify_regimes
from trader_runtime.features.batch import compute_features, market_index
from trader_runtime.features.spec import DEFAULT_FEATURE_SET
from trader_runtime.live.scoring import FEATURE_SET_TAG, LoadedModel, ModelRef
from trader_runtime.market.bars import BAR_SCHEMA, conform
from trader_runtime.market.instant import MarketInstant
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

NAMES = DEFAULT_FEATURE_SET.feature_names(Timeframe.M1)
SEED = 11


@lru_cache(maxsize=2)
def trained_pipeline(seed: int = SEED) -> Pipeline:
    """A small random forest on real synthetic features: up over the next 15 bars or not."""
    source = SyntheticSource(SyntheticMarketConfig(seed=seed, signal_strength=0.1))
    frames = {s: source.load(BarRequest(s, date(2024, 2, 1), date(2024, 2, 29))) for s in "PQ"}
    market = market_index(f.select("ts", "close") for f in frames.values())
    rows = []
    for frame in frames.values():
        feats = compute_features(all_timeframes(frame), market=market)
        forward = frame["close"].shift(-15) / frame["close"] - 1.0
        rows.append(feats.with_columns(target=(forward > 0).cast(pl.Int8)).drop_nulls("target"))
    data = pl.concat(rows)
    x = data.select(NAMES).to_pandas()
    pipeline = Pipeline(
        [
            ("impute", SimpleImputer(keep_empty_features=True)),
            ("model", RandomForestClassifier(n_estimators=20, max_depth=6, random_state=seed)),
        ]
    )
    pipeline.fit(x, data["target"].to_numpy())
    return pipeline


def loaded_model(version: str = "1") -> LoadedModel:
    ref = ModelRef("robo-trader", version, f"models:/robo-trader/{version}", "rf", "", None)
    return LoadedModel(ref, trained_pipeline(), NAMES)


def register_model(
    tracking_uri: str,
    name: str = "robo-trader",
    *,
    alias: str | None = "champion",
    feature_set_hash: str = DEFAULT_FEATURE_SET.spec_hash,
) -> str:
    """Log and register the small model; tag its feature set; point ``alias`` at it."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("live-kit")  # not an experiment id left active by another store
    pipeline = trained_pipeline()
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            registered_model_name=name,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=["scikit-learn"],  # not inferred in a subprocess: 5 s a model
        )
    version = str(info.registered_model_version)
    client = MlflowClient(tracking_uri)
    client.set_model_version_tag(name, version, FEATURE_SET_TAG, feature_set_hash)
    client.set_model_version_tag(name, version, "family", "rf")
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return version


def frames_of(instants: Sequence[MarketInstant], symbols: Sequence[str]) -> dict[str, pl.DataFrame]:
    """Per-symbol bar frames of ``instants``."""
    rows: dict[str, list[tuple[object, ...]]] = {s: [] for s in symbols}
    for instant in instants:
        for symbol, bar in instant.bars.items():
            rows[symbol].append((bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume))
    schema = {k: BAR_SCHEMA[k] for k in ("ts", "open", "high", "low", "close", "volume")}
    return {
        s: conform(pl.DataFrame(r, schema=schema, orient="row"), symbol=s) for s, r in rows.items()
    }


def backtest_of(
    history: Sequence[MarketInstant],
    live: Sequence[MarketInstant],
    symbols: Sequence[str],
    model: LoadedModel,
    config: TradingConfig,
) -> BacktestResult:
    """The research path on the same bars: batch features, regimes, the model's predictions on
    the live bars, ``build_grid`` and ``run_backtest``."""
    frames = frames_of([*history, *live], symbols)
    market = market_index(frames[s].select("ts", "close") for s in symbols)
    features: Mapping[str, pl.DataFrame] = {
        s: compute_features(all_timeframes(frames[s]), market=market) for s in symbols
    }
    cfg = config.regime
    regimes = classify_regimes(market, breadth({s: frames[s] for s in symbols}, cfg), cfg)
    first = live[0].ts
    predictions = []
    for s in symbols:
        rows = features[s].filter(pl.col("ts") >= first)
        proba = model.predict(rows.select(NAMES).to_numpy().astype(np.float64))
        predictions.append(pl.DataFrame({"symbol": s, "ts": rows["ts"], "probability": proba}))
    grid = build_grid(
        symbols,
        frames,
        pl.concat(predictions),
        features,
        regimes,
        config.confirmation.timeframes,
    )
    return run_backtest(grid, config, model.version)


def paper_trades(
    broker: PaperBroker, symbol: str, fills: list[tuple[float, float]], *, start: datetime
) -> list[float]:
    """Fill each (qty, open price) of ``symbol`` at the paper broker, a bar each from ``start``
    (or after the broker's last bar); returns the fill prices."""

    first = start if broker.last_bar is None else max(start, broker.last_bar)

    async def run() -> list[float]:
        prices = []
        for k, (qty, open_usd) in enumerate(fills):
            ts = first + timedelta(minutes=2 * k + 1)
            await broker.submit(OrderRequest(f"c{k}-{symbol}", symbol, qty, open_usd, ts))
            quote = BarQuote(open_usd, open_usd, 1e9, 0.01, 1e9)
            await broker.on_bar(ts + timedelta(minutes=1), {symbol: quote})
            (execution,), _ = broker.drain()
            assert execution.qty == qty
            prices.append(execution.price_usd)
        return prices

    return asyncio.run(run())
