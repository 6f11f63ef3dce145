"""Where the P&L came from: round trips grouped by symbol, regime, model and side; costs by kind.

Every group table sums to the totals of its inputs: ``n_trades``, ``pnl_usd``, ``gross_pnl_usd``
and ``costs_usd`` over the trades; ``n_fills``, ``traded_notional_usd`` and ``fill_costs_usd`` over
the fills (symbol and model tables). A missing key (null symbol, model, side or regime) is grouped
under ``"unknown"``.
"""

from __future__ import annotations

import math
from typing import Final

import polars as pl

from trader_runtime.performance.returns import (
    FILLS_COLUMNS,
    TRADES_COLUMNS,
    conform,
    conform_equity,
)

GROUPINGS: Final[dict[str, str]] = {
    "by_symbol": "symbol",
    "by_regime": "regime",
    "by_model": "model",
    "by_side": "side",
}
COST_COMPONENTS: Final[dict[str, str]] = {
    "commission": "commission_usd",
    "spread": "spread_cost_usd",
    "impact": "impact_cost_usd",
}
UNKNOWN: Final = "unknown"


def _trade_groups(trades: pl.DataFrame, key: str) -> pl.DataFrame:
    return (
        trades.with_columns(pl.col(key).fill_null(UNKNOWN))
        .group_by(key)
        .agg(
            pl.len().cast(pl.Int64).alias("n_trades"),
            pl.col("pnl_usd").sum(),
            pl.col("gross_pnl_usd").sum(),
            pl.col("costs_usd").sum(),
            (pl.col("pnl_usd") > 0).mean().alias("win_rate"),
            pl.col("pnl_usd").mean().alias("avg_pnl_usd"),
            pl.col("return_pct").mean().alias("avg_return_pct"),
        )
    )


def _fill_groups(fills: pl.DataFrame, key: str) -> pl.DataFrame:
    return (
        fills.with_columns(pl.col(key).fill_null(UNKNOWN))
        .group_by(key)
        .agg(
            pl.len().cast(pl.Int64).alias("n_fills"),
            pl.col("notional_usd").sum().alias("traded_notional_usd"),
            pl.sum_horizontal(*COST_COMPONENTS.values()).sum().alias("fill_costs_usd"),
        )
    )


def _regime_returns(equity: pl.DataFrame) -> pl.DataFrame:
    """Per regime: bars spent in it and the compounded bar-to-bar returns earned while in it.

    The return from bar ``t - 1`` to bar ``t`` belongs to the regime of bar ``t``, so the product of
    ``1 + strategy_return`` over regimes is the whole run's ``last / first equity``.
    """
    eq = conform_equity(equity).with_columns(pl.col("regime").fill_null(UNKNOWN))
    log_growth = [
        (pl.col(c) / pl.col(c).shift(1)).log().fill_null(0.0).alias(c)
        for c in ("equity_usd", "benchmark_equity_usd")
    ]
    n_bars = max(eq.height, 1)
    return (
        eq.with_columns(log_growth)
        .group_by("regime")
        .agg(
            pl.len().cast(pl.Int64).alias("n_bars"),
            (pl.col("equity_usd").sum().exp() - 1.0).alias("strategy_return"),
            (pl.col("benchmark_equity_usd").sum().exp() - 1.0).alias("benchmark_return"),
        )
        .with_columns((pl.col("n_bars") / n_bars).alias("time_share"))
    )


def _fill_zero(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).fill_null(0) for c in columns if c in frame.columns)


def cost_breakdown(fills: pl.DataFrame) -> pl.DataFrame:
    """Rows commission, spread, impact, total: ``cost_usd``, ``cost_bps`` of traded notional
    (NaN without fills) and ``share_of_costs`` (NaN when costs are 0)."""
    fl = conform(fills, FILLS_COLUMNS, name="fills")
    notional = float(fl["notional_usd"].sum())
    parts = {name: float(fl[col].sum()) for name, col in COST_COMPONENTS.items()}
    total = sum(parts.values())
    rows = {**parts, "total": total}
    return pl.DataFrame(
        {
            "component": list(rows),
            "cost_usd": list(rows.values()),
            "cost_bps": [v / notional * 1e4 if notional > 0 else math.nan for v in rows.values()],
            "share_of_costs": [v / total if total != 0 else math.nan for v in rows.values()],
        },
        schema={
            "component": pl.String(),
            "cost_usd": pl.Float64(),
            "cost_bps": pl.Float64(),
            "share_of_costs": pl.Float64(),
        },
    )


def attribution(
    trades: pl.DataFrame, fills: pl.DataFrame, equity: pl.DataFrame
) -> dict[str, pl.DataFrame]:
    """Tables ``by_symbol``, ``by_regime``, ``by_model``, ``by_side`` and ``costs``.

    Group tables have the key column, ``n_trades``, ``pnl_usd`` (net), ``gross_pnl_usd``,
    ``costs_usd``, ``win_rate``, ``avg_pnl_usd``, ``avg_return_pct``, sorted by ``pnl_usd``
    descending. ``by_symbol`` and ``by_model`` add ``n_fills``, ``traded_notional_usd`` and
    ``fill_costs_usd`` (fills of open positions included). ``by_regime`` (regime at entry) adds, from
    ``equity``, ``n_bars``, ``time_share`` and the compounded ``strategy_return`` and
    ``benchmark_return`` earned during that regime; regimes seen without trades have 0 trades.
    """
    tr = conform(trades, TRADES_COLUMNS, name="trades")
    fl = conform(fills, FILLS_COLUMNS, name="fills")
    zero_cols = ["n_trades", "pnl_usd", "gross_pnl_usd", "costs_usd"]
    out: dict[str, pl.DataFrame] = {}
    for name, key in GROUPINGS.items():
        table = _trade_groups(tr, key)
        if key in ("symbol", "model"):
            table = table.join(_fill_groups(fl, key), on=key, how="full", coalesce=True)
            table = _fill_zero(
                table, [*zero_cols, "n_fills", "traded_notional_usd", "fill_costs_usd"]
            )
        elif key == "regime":
            table = table.join(_regime_returns(equity), on=key, how="full", coalesce=True)
            table = _fill_zero(table, [*zero_cols, "n_bars", "time_share"])
        out[name] = table.sort(["pnl_usd", key], descending=[True, False], nulls_last=True)
    out["costs"] = cost_breakdown(fl)
    return out
