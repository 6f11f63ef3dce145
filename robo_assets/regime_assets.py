"""The ``market_regimes`` asset: the regime of every bar of each equal-weighted market index, and
``load_regimes`` for the backtest.

Per base timeframe, the regime detector (``trader_runtime.decision.regime``) reads the
``market_index`` level and the breadth of the symbols sharing that timeframe, and writes lake
dataset ``market_regimes/<tf>/EW`` (``ts``, ``regime`` and the inputs behind it). Where the
symbols are synthetic, the labels are scored against the market's true regimes.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from robo_assets.bars_assets import bars
from robo_assets.feature_assets import market_index
from robo_assets.market_data import BARS, TRUE_REGIMES
from robo_assets.metadata import png_markdown, table_preview
from robo_assets.research_data import (
    MARKET_INDEX,
    MARKET_KEY,
    MARKET_REGIMES,
    universe_by_timeframe,
)
from robo_assets.resources import RoboSettingsResource
from trader_runtime.decision.regime import (
    RegimeConfig,
    RegimeEvaluation,
    breadth,
    classify_regimes,
    evaluate_regimes,
)
from trader_runtime.market.regimes import REGIME_ORDER
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.settings import RoboSettings
from trader_runtime.storage.lake import ParquetLake

GROUP = "research_data"
REGIME_COLORS: Mapping[str, str] = {
    "bull": "#2ca02c",
    "bear": "#d62728",
    "volatile": "#ff7f0e",
    "ranging": "#7f7f7f",
    "crash": "#000000",
}
_PLOT_POINTS = 3000


@dataclass(frozen=True, slots=True)
class RegimeResult:
    """One timeframe's labels and, where the truth is known, their evaluation."""

    timeframe: Timeframe
    regimes: pl.DataFrame
    index: pl.DataFrame
    truth: pl.DataFrame | None
    evaluation: RegimeEvaluation | None


def build_market_regimes(
    settings: RoboSettings, lake: ParquetLake, config: RegimeConfig | None = None
) -> dict[Timeframe, RegimeResult]:
    """Label every base timeframe that has a market index; write ``market_regimes/<tf>/EW``."""
    cfg = config if config is not None else settings.trading.regime
    out: dict[Timeframe, RegimeResult] = {}
    for tf, symbols in universe_by_timeframe(settings).items():
        if not lake.exists(MARKET_INDEX, tf.value, MARKET_KEY):
            continue
        index = lake.read(MARKET_INDEX, tf.value, MARKET_KEY)
        present = [s for s in symbols if lake.exists(BARS, tf.value, s)]
        closes = {s: lake.read(BARS, tf.value, s).select("ts", "close") for s in present}
        regimes = classify_regimes(index, breadth(closes, cfg, tf), cfg, tf)
        lake.write(MARKET_REGIMES, tf.value, MARKET_KEY, regimes)
        truth = _truth(lake, tf, [s for s in present if settings.source_for(s) == "synthetic"])
        evaluation = evaluate_regimes(regimes, truth) if truth is not None else None
        out[tf] = RegimeResult(tf, regimes, index, truth, evaluation)
    return out


def load_regimes(lake: ParquetLake, timeframe: Timeframe | str) -> pl.DataFrame:
    """The stored regimes of one base timeframe: ``ts``, ``regime`` and the inputs."""
    return lake.read(MARKET_REGIMES, Timeframe(timeframe).value, MARKET_KEY)


def _truth(lake: ParquetLake, tf: Timeframe, symbols: list[str]) -> pl.DataFrame | None:
    """True regimes of the synthetic market (identical for every symbol of it), if stored."""
    for symbol in symbols:
        if lake.exists(TRUE_REGIMES, tf.value, symbol):
            return lake.read(TRUE_REGIMES, tf.value, symbol).select("ts", "regime")
    return None


def regime_counts(regimes: pl.DataFrame) -> dict[str, int]:
    counts = dict(regimes["regime"].value_counts().iter_rows())
    return {r.value: int(counts.get(r.value, 0)) for r in REGIME_ORDER}


def regime_timeline_plot(result: RegimeResult) -> dg.MetadataValue:
    """The index level above a strip of the detected regimes (and of the true ones, if known)."""
    frame = result.index.select("ts", "market_level").join(
        result.regimes.select("ts", "regime"), on="ts", how="left"
    )
    strips = [("detected", "regime")]
    if result.truth is not None:
        frame = frame.join(
            result.truth.select("ts", pl.col("regime").alias("true_regime")), on="ts", how="left"
        )
        strips.append(("true", "true_regime"))
    frame = frame.gather_every(max(1, frame.height // _PLOT_POINTS))
    names = [r.value for r in REGIME_ORDER]
    colormap = ListedColormap([REGIME_COLORS[n] for n in names])
    fig, axes = plt.subplots(
        1 + len(strips),
        1,
        figsize=(9, 3 + 0.5 * len(strips)),
        sharex=True,
        gridspec_kw={"height_ratios": [6] + [1] * len(strips)},
    )
    x = np.arange(frame.height)
    axes[0].plot(x, frame["market_level"].to_numpy(), linewidth=0.8, color="black")
    axes[0].set_ylabel("EW index")
    axes[0].set_title(f"market regimes ({result.timeframe.value})")
    axes[0].legend(
        handles=[Patch(color=REGIME_COLORS[n], label=n) for n in names],
        loc="upper left",
        fontsize=7,
        ncols=len(names),
    )
    for ax, (label, column) in zip(axes[1:], strips, strict=True):
        codes = frame[column].replace_strict(
            {n: i for i, n in enumerate(names)}, default=None, return_dtype=pl.Float64
        )
        ax.imshow(
            codes.fill_null(np.nan).to_numpy()[None, :],
            aspect="auto",
            cmap=colormap,
            vmin=0,
            vmax=len(names) - 1,
            interpolation="nearest",
            extent=(-0.5, frame.height - 0.5, 0, 1),
        )
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    ticks = x[:: max(1, frame.height // 6)]
    axes[-1].set_xticks(ticks, [str(frame["ts"][int(i)])[:10] for i in ticks])
    return png_markdown(fig, alt=f"market regimes {result.timeframe.value}")


@dg.asset(
    group_name=GROUP,
    deps=[market_index, dg.AssetDep(bars, partition_mapping=dg.AllPartitionMapping())],
    kinds={"parquet", "polars"},
    # after the market index that new bars rebuild (never before it: it reads both); a symbol
    # without bars does not hold it back
    automation_condition=dg.AutomationCondition.eager()
    .without(~dg.AutomationCondition.any_deps_missing())
    .replace(
        "any_deps_updated",
        dg.AutomationCondition.any_deps_updated().allow(dg.AssetSelection.assets(market_index)),
    )
    .with_label("eager on market_index"),
    description="Regime of every bar of each equal-weighted index (bull, bear, volatile, ranging, "
    "crash) from causal trend, volatility percentile, drawdown and breadth; scored against the "
    "true regimes where the market is synthetic.",
)
def market_regimes(
    context: dg.AssetExecutionContext, robo: RoboSettingsResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    results = build_market_regimes(robo.settings(), robo.lake())
    if not results:
        raise dg.Failure("no market index to label: materialize market_index first")
    metadata: dict[str, Any] = {
        "dagster/row_count": sum(r.regimes.height for r in results.values()),
        "rows_by_timeframe": {tf.value: r.regimes.height for tf, r in results.items()},
        "regime_counts": {tf.value: regime_counts(r.regimes) for tf, r in results.items()},
        "regime_shares": {
            tf.value: {
                k: round(v / max(r.regimes.height, 1), 4)
                for k, v in regime_counts(r.regimes).items()
            }
            for tf, r in results.items()
        },
    }
    for tf, result in results.items():
        metadata[f"timeline_{tf.value}"] = regime_timeline_plot(result)
        evaluation = result.evaluation
        if evaluation is None:
            continue
        metadata[f"macro_f1_{tf.value}"] = round(evaluation.macro_f1, 4)
        metadata[f"accuracy_{tf.value}"] = round(evaluation.accuracy, 4)
        metadata[f"f1_by_regime_{tf.value}"] = {
            k: round(v, 4) for k, v in evaluation.f1_by_regime.items()
        }
        metadata[f"confusion_{tf.value}"] = table_preview(evaluation.confusion)
        metadata[f"crash_lags_bars_{tf.value}"] = [
            -1 if lag is None else lag for lag in evaluation.crash_lags_bars
        ]
        context.log.info(f"{tf.value}: macro-F1 {evaluation.macro_f1:.3f} against true regimes")
    return dg.MaterializeResult(metadata=metadata)


ASSETS = (market_regimes,)
