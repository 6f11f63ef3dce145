"""The backtest's compiled path: target weights to fills, cash and equity in one numba loop.

It supports the subset of the reference engine (``trader_runtime/backtest/engine.py``) that a
precomputed target-weight matrix can express: no stops, immediate execution at the next bar's open,
the full cost model (commission schedule, half-spread, square-root impact, participation cap). The
cost functions are the very functions of ``trader_runtime/execution/costs.py``, compiled; a parity
test (``tests/unit/test_backtest_fast.py``) shows both paths give the same results.

Timing: ``target_weights[t]`` is decided at bar ``t``'s close and traded from bar ``t + 1``'s
open; NaN means no new decision. By default its target shares are fixed at that close as
``weight * equity_at_close / close`` (the reference engine's rule); with
``sizing_price="next_open"`` they are fixed at the first open the symbol trades as
``weight * equity_at_open / open``, where ``equity_at_open`` is cash plus the positions valued at
the open, computed once before any symbol trades. The order works (limited by the participation
cap) until the position reaches the target or a new weight replaces it. The compiled path has no
risk checks: it equals the reference engine when the risk limits do not bind. Symbols trade in column order
against one shared cash balance. Equity at bar ``t`` is cash plus positions at the close
(the last known close when a symbol has no bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numba import njit

from trader_runtime.execution import costs as _costs
from trader_runtime.execution.costs import CostModel

FloatArray = npt.NDArray[np.float64]

_commission = njit(cache=True)(_costs.commission_usd)
_impact = njit(cache=True)(_costs.impact_bps)
_fill_price = njit(cache=True)(_costs.fill_price_usd)
_shares = njit(cache=True)(_costs.shares_for_weight)
_limited = njit(cache=True)(_costs.participation_limited)


@dataclass(frozen=True, slots=True)
class FastBacktest:
    """Per-bar equity and cash (USD), positions (shares) and cost totals of one compiled run."""

    equity_usd: FloatArray
    cash_usd: FloatArray
    positions: FloatArray
    n_fills: int
    commission_usd: float
    spread_cost_usd: float
    impact_cost_usd: float
    traded_notional_usd: float


@njit(cache=True)
def _run(
    open_: Any,
    close: Any,
    volume: Any,
    weights: Any,
    daily_vol: Any,
    adv: Any,
    per_share: float,
    min_usd: float,
    max_pct: float,
    extra_bps: float,
    half_spread_bps: float,
    impact_coefficient: float,
    cap: float,
    fractional: bool,
    cash0: float,
    size_at_close: bool,
    equity_out: Any,
    cash_out: Any,
    pos_out: Any,
    stats: Any,
) -> int:
    n, m = open_.shape
    cash = cash0
    pos = np.zeros(m)
    mark = np.full(m, np.nan)
    pending_w = np.full(m, np.nan)  # a decided weight not yet converted to shares
    pending = np.full(m, np.nan)  # target shares still being worked
    n_fills = 0
    for t in range(n):
        if t > 0:
            equity_open = cash
            for j in range(m):
                if pos[j] != 0.0:
                    p = open_[t, j]
                    equity_open += pos[j] * (p if p > 0.0 else mark[j])
            for j in range(m):
                w = weights[t - 1, j]
                p = open_[t, j]
                if not size_at_close and math.isfinite(w):
                    pending_w[j] = w
                    pending[j] = np.nan
                if not (p > 0.0) or not (math.isfinite(pending_w[j]) or math.isfinite(pending[j])):
                    continue
                if math.isfinite(pending_w[j]):
                    pending[j] = _shares(pending_w[j], equity_open, p, fractional)
                    pending_w[j] = np.nan
                remaining = pending[j] - pos[j]
                q = _limited(remaining, volume[t, j], cap, fractional)
                if q == remaining:
                    pending[j] = np.nan
                if q == 0.0:
                    continue
                qa = abs(q)
                side = 1.0 if q > 0.0 else -1.0
                imp = _impact(qa, daily_vol[t, j], adv[t, j], impact_coefficient)
                price = _fill_price(p, side, half_spread_bps, imp)
                fee = _commission(qa, price, per_share, min_usd, max_pct, extra_bps)
                cash -= q * price + fee
                pos[j] += q
                n_fills += 1
                stats[0] += fee
                stats[1] += qa * p * half_spread_bps / 1e4
                stats[2] += qa * p * imp / 1e4
                stats[3] += qa * price
        equity = cash
        for j in range(m):
            c = close[t, j]
            if c > 0.0:
                mark[j] = c
            if pos[j] != 0.0:
                equity += pos[j] * mark[j]
            pos_out[t, j] = pos[j]
        if size_at_close:
            for j in range(m):
                w = weights[t, j]
                if math.isfinite(w):
                    c = mark[j]  # this close, or the last one without a bar now
                    if c > 0.0:
                        pending[j] = _shares(w, equity, c, fractional)
        equity_out[t] = equity
        cash_out[t] = cash
    return n_fills


def _matrix(name: str, values: Any, shape: tuple[int, int] | None) -> FloatArray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-d (bars, symbols), got shape {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    return array


def simulate_target_weights(
    open_usd: Any,
    close_usd: Any,
    volume: Any,
    target_weights: Any,
    *,
    costs: CostModel,
    initial_cash_usd: float,
    fractional_shares: bool = False,
    daily_vol: Any = None,
    adv_shares: Any = None,
    sizing_price: Literal["decision_close", "next_open"] = "decision_close",
) -> FastBacktest:
    """Run target weights (decided at each close, traded at the next open) through the cost model.

    Arrays are ``(n_bars, n_symbols)`` (1-d means one symbol); a NaN weight means "no decision"
    (the position is kept). ``daily_vol`` and ``adv_shares`` feed the impact model; without them
    impact is zero. ``sizing_price`` says where a weight becomes shares: at the deciding close
    (as the reference engine and the live runtime do) or at the next open (as vectorbt's
    target-percent orders do; the benchmark uses it)."""
    if sizing_price not in ("decision_close", "next_open"):
        raise ValueError(f"sizing_price must be decision_close or next_open, got {sizing_price!r}")
    opens = _matrix("open_usd", open_usd, None)
    shape = (int(opens.shape[0]), int(opens.shape[1]))
    closes = _matrix("close_usd", close_usd, shape)
    volumes = _matrix("volume", volume, shape)
    weights = _matrix("target_weights", target_weights, shape)
    nan = np.full(shape, np.nan)
    vols = nan if daily_vol is None else _matrix("daily_vol", daily_vol, shape)
    advs = nan if adv_shares is None else _matrix("adv_shares", adv_shares, shape)
    equity = np.empty(shape[0])
    cash = np.empty(shape[0])
    positions = np.empty(shape)
    stats = np.zeros(4)
    n_fills = _run(
        opens,
        closes,
        volumes,
        weights,
        vols,
        advs,
        costs.commission_per_share_usd,
        costs.commission_min_usd,
        costs.commission_max_pct,
        costs.commission_bps,
        costs.half_spread_bps,
        costs.impact_coefficient,
        costs.cap,
        fractional_shares,
        float(initial_cash_usd),
        sizing_price == "decision_close",
        equity,
        cash,
        positions,
        stats,
    )
    return FastBacktest(
        equity_usd=equity,
        cash_usd=cash,
        positions=positions,
        n_fills=int(n_fills),
        commission_usd=float(stats[0]),
        spread_cost_usd=float(stats[1]),
        impact_cost_usd=float(stats[2]),
        traded_notional_usd=float(stats[3]),
    )
