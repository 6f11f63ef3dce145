"""Typed, frozen configuration of the decision core and execution, with the design's defaults.

``TradingConfig`` is one field of ``RoboSettings`` (``ROBO_TRADING__SIZING__BASE_FRACTION=0.01``
sets a nested value), so research backtests and the live runtime read the same object.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trader_runtime.decision.regime import RegimeConfig
from trader_runtime.execution.costs import CostModel
from trader_runtime.market.regimes import Regime
from trader_runtime.market.timeframes import Timeframe


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SignalConfig(_Frozen):
    """From a model probability to a direction and a confidence.

    The models predict "up by more than the cost within the horizon", whose base rate is not 0.5,
    so a probability is read against the symbol's own recent predictions: ``edge`` is the
    probability minus the mean of the last ``center_window_bars`` probabilities of that symbol
    (a causal centring; no decision until ``center_min_bars`` are known). Long when
    ``edge >= entry_edge``, short when ``edge <= -entry_edge`` (if ``allow_short``).
    Confidence scales size linearly in ``|edge| / full_confidence_edge`` up to
    ``max_confidence_multiple``. A position lives ``holding_bars`` after its last confirming
    signal, then exits (reason ``expiry``).
    """

    center_window_bars: int = Field(default=390, ge=1)
    center_min_bars: int = Field(default=30, ge=1)
    entry_edge: float = Field(default=0.02, ge=0.0, le=0.5)
    full_confidence_edge: float = Field(default=0.05, gt=0.0, le=0.5)
    max_confidence_multiple: float = Field(default=2.0, gt=0.0, le=10.0)
    allow_short: bool = True
    holding_bars: int = Field(default=15, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SignalConfig:
        if self.center_min_bars > self.center_window_bars:
            raise ValueError("center_min_bars must be <= center_window_bars")
        return self


class ConfirmationConfig(_Frozen):
    """Multi-timeframe confirmation: a signal trades only when the trend of every configured
    timeframe (the sign of close / SMA(10) - 1 on that timeframe's completed bars) agrees with its
    direction. Timeframes below a symbol's base timeframe are ignored for that symbol."""

    enabled: bool = True
    timeframes: tuple[Timeframe, ...] = (Timeframe.M1, Timeframe.M5, Timeframe.M15)

    @model_validator(mode="after")
    def _some(self) -> ConfirmationConfig:
        if self.enabled and not self.timeframes:
            raise ValueError("confirmation is enabled but lists no timeframes")
        if len(set(self.timeframes)) != len(self.timeframes):
            raise ValueError(f"confirmation timeframes repeat: {self.timeframes}")
        return self


def _default_multipliers() -> dict[Regime, float]:
    return {
        Regime.BULL: 1.5,
        Regime.RANGING: 1.0,
        Regime.BEAR: 0.7,
        Regime.VOLATILE: 0.5,
        Regime.CRASH: 0.3,
    }


class SizingConfig(_Frozen):
    """Target weights (fractions of equity): ``base_fraction`` x regime multiplier x confidence,
    capped per position, then a correlation penalty and gross/net caps. No new or larger
    positions in a crash (its multiplier only applies to what is already held). The penalty uses
    a Ledoit-Wolf covariance of the last ``covariance_window_bars`` one-bar returns, refreshed
    every ``covariance_refresh_bars``. A held position is re-targeted only when its weight would
    change by at least ``rebalance_min_fraction`` of equity (or close, or flip); a position (or the
    book) that drifted beyond a cap by more than that band is trimmed back to it."""

    base_fraction: float = Field(default=0.02, gt=0.0, le=1.0)
    regime_multipliers: dict[Regime, float] = Field(default_factory=_default_multipliers)
    max_position_fraction: float = Field(default=0.05, gt=0.0, le=1.0)
    max_gross_fraction: float = Field(default=1.0, gt=0.0, le=10.0)
    max_net_fraction: float = Field(default=0.5, ge=0.0, le=10.0)
    correlation_penalty: float = Field(default=0.5, ge=0.0, le=1.0)
    covariance_window_bars: int = Field(default=1950, ge=10)
    covariance_min_bars: int = Field(default=120, ge=3)
    covariance_refresh_bars: int = Field(default=390, ge=1)
    rebalance_min_fraction: float = Field(default=0.005, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _multipliers(self) -> SizingConfig:
        missing = [r.value for r in Regime if r not in self.regime_multipliers]
        if missing:
            raise ValueError(f"regime_multipliers lacks {missing}")
        for regime, value in self.regime_multipliers.items():
            if not 0.3 <= value <= 1.5:
                raise ValueError(f"regime multiplier of {regime.value} must be in [0.3, 1.5]")
        if self.covariance_min_bars > self.covariance_window_bars:
            raise ValueError("covariance_min_bars must be <= covariance_window_bars")
        return self


class StopTarget(_Frozen):
    """A stop loss and a profit target, in percent of the entry price."""

    stop_pct: float = Field(gt=0.0, le=100.0)
    target_pct: float = Field(gt=0.0, le=1000.0)


def _default_stops() -> dict[Regime, StopTarget]:
    return {
        Regime.BULL: StopTarget(stop_pct=2.5, target_pct=7.0),
        Regime.BEAR: StopTarget(stop_pct=1.5, target_pct=3.0),
        Regime.VOLATILE: StopTarget(stop_pct=4.0, target_pct=8.0),
        Regime.RANGING: StopTarget(stop_pct=2.0, target_pct=4.0),
        Regime.CRASH: StopTarget(stop_pct=1.0, target_pct=2.0),
    }


class StopsConfig(_Frozen):
    """Stops and targets by the regime at entry, checked against each bar's low and high; a hit
    exits at the next bar's open."""

    enabled: bool = True
    by_regime: dict[Regime, StopTarget] = Field(default_factory=_default_stops)

    @model_validator(mode="after")
    def _complete(self) -> StopsConfig:
        missing = [r.value for r in Regime if r not in self.by_regime]
        if missing:
            raise ValueError(f"stops lack {missing}")
        return self


class ExecutionConfig(_Frozen):
    """How a parent order (target - position) is worked: ``immediate`` (one order at the next
    bar), ``twap`` (equal child orders over ``slices`` bars) or ``vwap`` (child orders in
    proportion to the expected intraday volume profile). Every child is limited by the cost
    model's participation cap; what a cap leaves unfilled rolls into the next child."""

    algo: Literal["immediate", "twap", "vwap"] = "immediate"
    slices: int = Field(default=5, ge=1, le=390)
    fractional_shares: bool = False


class RiskConfig(_Frozen):
    """Pre-trade checks and guards, applied to every child order in backtest and live alike.

    - ``daily_loss_limit_fraction``: when equity falls this fraction below the session's
      opening equity, trading halts for the rest of the session: working orders are cancelled,
      no new order goes out, and positions are flattened if ``flatten_on_halt``.
    - ``max_orders_per_minute``: orders in any 60 s of market time; the excess waits a bar.
    - ``price_band_fraction``: no order in a symbol whose last close moved more than this from
      the close before it (a suspect print).
    - ``cap_tolerance_fraction``: an order may not take a position beyond the sizing's
      per-position cap, or the book beyond its gross cap, by more than this (of equity).
    - ``trading_hours_only``: orders only inside the exchange session.
    - ``stale_after_bars``: live only; with no new bar for this many bar intervals (of market
      time) the runtime stops sending orders until data resumes.
    """

    daily_loss_limit_fraction: float = Field(default=0.03, gt=0.0, le=1.0)
    flatten_on_halt: bool = False
    max_orders_per_minute: int = Field(default=240, ge=1)
    price_band_fraction: float = Field(default=0.1, gt=0.0, le=10.0)
    cap_tolerance_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    trading_hours_only: bool = True
    stale_after_bars: float = Field(default=3.0, gt=0.0)


class TradingConfig(_Frozen):
    """Everything between a model probability and an order."""

    initial_cash_usd: float = Field(default=1_000_000.0, gt=0.0)
    regime: RegimeConfig = RegimeConfig()
    signal: SignalConfig = SignalConfig()
    confirmation: ConfirmationConfig = ConfirmationConfig()
    sizing: SizingConfig = SizingConfig()
    stops: StopsConfig = StopsConfig()
    execution: ExecutionConfig = ExecutionConfig()
    risk: RiskConfig = RiskConfig()
    costs: CostModel = CostModel()
