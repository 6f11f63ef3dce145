"""The ``model_drift`` asset: has the world moved away from what the champion learned?

Training distribution: the pooled ``training_set`` (a seeded sample of ``TRAIN_SAMPLE_ROWS``
rows) and the champion's probabilities on that sample. Recent distribution, in this order:

1. the live journal (``data/live/journal.duckdb``): decisions of the champion's version in the
   latest ``recent_sessions`` sessions, each with the feature snapshot it was made on and the
   model's probability; the realized forward return of each decision is the label's
   ``fwd_return`` computed on the stored bars after it (none yet when the lake does not hold those
   bars, e.g. the synthetic paper feed past the research period: the IC is then undefined).
   Used when it holds at least ``min_samples`` such decisions. The journal is read from a copy,
   so a live session starting meanwhile never finds its file locked.
2. otherwise the latest ``recent_sessions`` sessions of the research ``features`` of the research
   universe, scored by the champion, with the stored labels' ``fwd_return``.

``trader_runtime.monitoring.drift_report`` turns the two into per-feature PSI and KS, the
predictions' PSI, the realized IC and a verdict; the metadata carries all of it, and
``orchestration/sensors.py::drift_retrain_sensor`` requests a retraining when ``drifted`` is true.
Without a champion the asset says so and materializes ``drifted = False``.
"""

import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from robo_assets.backtest_assets import champion_model
from robo_assets.backtesting import current_champion
from robo_assets.feature_assets import ALL_SYMBOLS, SPEC, features, labels, training_set
from robo_assets.labels import compute_labels
from robo_assets.market_data import BARS
from robo_assets.research_data import (
    FEATURES,
    LABELS,
    POOLED,
    TRAINING_SET,
    base_timeframe,
    label_spec,
)
from robo_assets.resources import RoboSettingsResource
from robo_assets.tracking import Tracking, data_fingerprint
from trader_runtime.live.journal import Journal, JournalError
from trader_runtime.live.scoring import FeatureSetMismatchError, LoadedModel, load_model
from trader_runtime.live.session import live_dir
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.monitoring import DriftConfig, DriftReport, drift_report
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake

GROUP = "monitoring"
NEW_YORK = "America/New_York"
# weekdays 19:00 New York: after the 16:30 data refresh and the features it sets off
DRIFT_CRON = "0 19 * * 1-5"
# requested once per tick of DRIFT_CRON (whatever its inputs did), never while it runs
DAILY_AFTER_THE_CLOSE = (
    dg.AutomationCondition.cron_tick_passed(DRIFT_CRON, NEW_YORK).since_last_handled()  # type: ignore[misc]
    & ~dg.AutomationCondition.in_progress()
).with_label("weekdays 19:00 New York")
TRAIN_SAMPLE_ROWS = 20_000
TOP_FEATURES = 10
JOURNAL_SOURCE = "live journal"
RESEARCH_SOURCE = "research features"
BASE = Timeframe.M1


@dataclass(frozen=True, slots=True)
class RecentSample:
    """Recent feature rows, the champion's probabilities on them and the realized returns."""

    source: str
    features: pl.DataFrame
    predictions: np.ndarray
    returns: np.ndarray
    sessions: tuple[date, ...]


def training_sample(
    lake: ParquetLake, names: tuple[str, ...], model: LoadedModel, *, rows: int, seed: int
) -> tuple[pl.DataFrame, np.ndarray, str]:
    """A seeded sample of the training set's features, the model's probabilities on it, and the
    training set's data fingerprint."""
    frame = lake.read(TRAINING_SET, BASE.value, POOLED)
    fingerprint = data_fingerprint(frame)
    sample = frame.sample(min(rows, frame.height), seed=seed).select(names)
    return sample, model.predict(_matrix(sample, names)), fingerprint


def _matrix(frame: pl.DataFrame, names: tuple[str, ...]) -> np.ndarray:
    return frame.select(pl.col(n).cast(pl.Float64) for n in names).to_numpy()


def _ny_session(ts: pl.Expr) -> pl.Expr:
    """The New York date of a bar-close instant: its session."""
    return ts.dt.convert_time_zone(NEW_YORK).dt.date()


def _latest_sessions(frame: pl.DataFrame, n: int) -> tuple[date, ...]:
    dates = frame.select(_ny_session(pl.col("ts")).alias("d"))["d"].unique().sort()
    return tuple(dates.tail(n).to_list())


def journal_decisions(path: Path, version: str) -> tuple[pl.DataFrame | None, str]:
    """Decisions of model ``version`` in the journal at ``path`` (read from a copy), or None and
    why not."""
    if not path.is_file():
        return None, "no live journal yet"
    with tempfile.TemporaryDirectory(prefix="robo-drift-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copy2(path, copy)
        wal = path.with_name(path.name + ".wal")
        if wal.is_file():
            shutil.copy2(wal, copy.with_name(copy.name + ".wal"))
        try:
            with Journal(copy) as journal:
                frames = [journal.decisions(s.session_id) for s in journal.sessions()]
        except JournalError as exc:
            return None, f"the live journal could not be read ({exc})"
    frames = [f for f in frames if f.height]
    if not frames:
        return None, "the live journal holds no decisions"
    decisions = pl.concat(frames, how="vertical_relaxed").filter(
        (pl.col("model_version") == version) & pl.col("probability").is_not_null()
    )
    if decisions.height == 0:
        return None, f"the live journal holds no decision of version {version}"
    return decisions, ""


def _journal_recent(
    settings: RoboSettings, lake: ParquetLake, names: tuple[str, ...], decisions: pl.DataFrame
) -> RecentSample:
    cfg = settings.drift
    sessions = _latest_sessions(decisions, cfg.recent_sessions)
    rows = decisions.filter(_ny_session(pl.col("ts")).is_in(sessions)).sort("ts", "symbol")
    snapshot = rows.select(
        pl.col("features").str.json_decode(pl.Struct([pl.Field(n, pl.Float64) for n in names]))
    ).unnest("features")
    returns = _realized_returns(settings, lake, rows.select("symbol", "ts"))
    return RecentSample(
        source=JOURNAL_SOURCE,
        features=snapshot.select(names),
        predictions=rows["probability"].cast(pl.Float64).to_numpy(),
        returns=returns,
        sessions=sessions,
    )


def _realized_returns(settings: RoboSettings, lake: ParquetLake, keys: pl.DataFrame) -> np.ndarray:
    """The label's forward return after each (symbol, ts), from the stored bars (NaN where the
    lake does not hold the bars that followed)."""
    spec = label_spec(settings)
    found = []
    for symbol in keys["symbol"].unique().sort():
        tf = base_timeframe(settings, symbol)
        if not lake.exists(BARS, tf.value, symbol):
            continue
        future = compute_labels(lake.read(BARS, tf.value, symbol), spec, intraday=tf.is_intraday)
        found.append(future.select("symbol", "ts", "fwd_return"))
    if not found:
        return np.full(keys.height, np.nan)
    joined = keys.join(pl.concat(found), on=["symbol", "ts"], how="left", maintain_order="left")
    return joined["fwd_return"].cast(pl.Float64).fill_null(np.nan).to_numpy()


def research_recent(
    settings: RoboSettings, lake: ParquetLake, names: tuple[str, ...], model: LoadedModel
) -> RecentSample:
    """The latest ``recent_sessions`` sessions of the research universe's stored features,
    scored by ``model``, with the stored labels' forward returns."""
    frames = []
    for symbol in settings.symbols:
        if not lake.exists(FEATURES, BASE.value, symbol):
            continue
        feats = lake.read(FEATURES, BASE.value, symbol)
        if lake.exists(LABELS, BASE.value, symbol):
            future = lake.read(LABELS, BASE.value, symbol).select("symbol", "ts", "fwd_return")
            feats = feats.join(future, on=["symbol", "ts"], how="left")
        else:
            feats = feats.with_columns(pl.lit(None, dtype=pl.Float64).alias("fwd_return"))
        frames.append(feats)
    if not frames:
        raise dg.Failure("no research features to compare with: materialize features first")
    pooled = pl.concat(frames, how="vertical_relaxed")
    sessions = _latest_sessions(pooled, settings.drift.recent_sessions)
    rows = pooled.filter(_ny_session(pl.col("ts")).is_in(sessions)).sort("ts", "symbol")
    recent = rows.select(names)
    return RecentSample(
        source=RESEARCH_SOURCE,
        features=recent,
        predictions=model.predict(_matrix(recent, names)),
        returns=rows["fwd_return"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        sessions=sessions,
    )


def recent_sample(
    settings: RoboSettings, lake: ParquetLake, names: tuple[str, ...], model: LoadedModel
) -> tuple[RecentSample, str]:
    """The live journal's sample if it has ``min_samples`` rows of the model's version, else the
    research features'; and a note on why the journal was not used ("" if it was)."""
    decisions, why = journal_decisions(live_dir(settings) / "journal.duckdb", model.version)
    if decisions is not None:
        live = _journal_recent(settings, lake, names, decisions)
        if live.features.height >= settings.drift.min_samples:
            return live, ""
        why = (
            f"the live journal holds {live.features.height} decisions of version "
            f"{model.version} in its latest sessions (< min_samples {settings.drift.min_samples})"
        )
    return research_recent(settings, lake, names, model), why


def features_table(report: DriftReport, rows: int = TOP_FEATURES) -> str:
    """The features with the largest PSI as a markdown table."""
    lines = [
        "| feature | PSI | KS statistic | KS p-value | drifted |",
        "|---|---:|---:|---:|:---:|",
    ]
    lines += [
        f"| `{f.name}` | {f.psi:.4f} | {f.ks_statistic:.4f} | {f.ks_pvalue:.2e} | "
        f"{'yes' if f.drifted else ''} |"
        for f in report.features[:rows]
    ]
    return "\n".join(lines)


def _number(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


def drift_metadata(
    report: DriftReport, recent: RecentSample, config: DriftConfig
) -> dict[str, Any]:
    return {
        "drifted": report.drifted,
        "reasons": list(report.reasons),
        "enough_samples": report.enough_samples,
        "max_psi": _number(report.max_psi),
        "prediction_psi": _number(report.prediction_psi),
        "prediction_ks_pvalue": _number(report.prediction_ks_pvalue),
        "ic": _number(report.ic),
        "drifted_features": list(report.drifted_features),
        "top_drifted_features": dg.MetadataValue.md(features_table(report)),
        "n_train": report.n_train,
        "n_recent": report.n_recent,
        "n_ic_pairs": report.n_ic_pairs,
        "recent_source": recent.source,
        "recent_sessions": [d.isoformat() for d in recent.sessions],
        "thresholds": config.model_dump(),
    }


@dg.asset(
    group_name=GROUP,
    deps=[
        champion_model,
        training_set,
        dg.AssetDep(features, partition_mapping=ALL_SYMBOLS),
        dg.AssetDep(labels, partition_mapping=ALL_SYMBOLS),
    ],
    kinds={"polars", "mlflow", "duckdb"},
    automation_condition=DAILY_AFTER_THE_CLOSE,
    description="Drift of the champion's inputs and outputs: per-feature PSI and KS, the "
    "predictions' PSI and the realized IC of recent data (the live journal, else the latest "
    "research sessions) against its training data; `drifted` sets off a retraining "
    "(drift_retrain_sensor).",
)
def model_drift(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    settings, lake = robo.settings(), robo.lake()
    tracking = Tracking.from_settings(settings)
    champion = current_champion(tracking)
    if champion is None:
        context.log.info("no champion yet: nothing to monitor")
        return dg.MaterializeResult(
            metadata={"status": "no champion yet: nothing to monitor", "drifted": False}
        )
    names = SPEC.feature_names(BASE)
    try:
        model = load_model(
            settings.mlflow_tracking_uri,
            settings.registered_model,
            expected_feature_set_hash=SPEC.spec_hash,
            expected_features=names,
            version=champion.version,
        )
    except FeatureSetMismatchError as exc:
        raise dg.Failure(f"the champion cannot score this code's features: {exc}") from exc
    train, train_pred, fingerprint = training_sample(
        lake, names, model, rows=TRAIN_SAMPLE_ROWS, seed=settings.model_seed
    )
    recent, journal_note = recent_sample(settings, lake, names, model)
    report = drift_report(
        train, recent.features, train_pred, recent.predictions, recent.returns, settings.drift
    )
    version_tags = (
        tracking.client().get_model_version(tracking.registered_model, champion.version).tags
    )
    context.log.info(
        f"champion {champion.label}: {'DRIFTED' if report.drifted else 'no drift'} "
        f"({recent.source}, {report.n_recent} rows)"
        + (f": {'; '.join(report.reasons)}" if report.reasons else "")
    )
    return dg.MaterializeResult(
        metadata={
            "status": "drifted" if report.drifted else "ok",
            "champion": champion.label,
            "champion_version": champion.version,
            "champion_trained_on_current_data": (version_tags or {}).get("data_fingerprint")
            == fingerprint,
            **drift_metadata(report, recent, settings.drift),
            **({"journal_not_used": journal_note} if journal_note else {}),
        }
    )


ASSETS = (model_drift,)
