"""The versioned feature-set spec: which indicators, with which parameters, on which timeframes.

Its ``spec_hash`` is a stable digest of the canonical JSON of the spec (not of Python object ids or
dict order), including the TA-Lib build, whose arithmetic changed between releases. Models carry
it; the runtime refuses a model whose hash differs from the code's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from trader_runtime.market.timeframes import Timeframe

ParamValue = int | float


def _engine() -> str:
    """The indicator library build: its arithmetic is part of what a feature value means."""
    import talib

    version = getattr(talib, "__ta_version__", b"unknown")
    c_version = version.decode() if isinstance(version, bytes) else str(version)
    return f"ta-lib {talib.__version__} (C {c_version.split(' ')[0]})"


INDICATOR_ENGINE = _engine()


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """One indicator ``kind`` with its parameters; ``name`` is its feature column."""

    name: str
    kind: str
    params: tuple[tuple[str, ParamValue], ...] = ()

    def param(self, key: str) -> ParamValue:
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(f"{self.name}: no parameter {key!r}")

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "params": dict(self.params)}


def ind(name: str, kind: str, **params: ParamValue) -> IndicatorSpec:
    return IndicatorSpec(name=name, kind=kind, params=tuple(sorted(params.items())))


@dataclass(frozen=True, slots=True)
class FeatureSetSpec:
    """Base-timeframe indicators, a subset repeated on higher timeframes, and cross-asset windows."""

    version: str
    base: tuple[IndicatorSpec, ...]
    higher_timeframes: tuple[Timeframe, ...]
    higher: tuple[IndicatorSpec, ...]
    cross_asset: tuple[IndicatorSpec, ...] = field(default=())

    def higher_name(self, timeframe: Timeframe, spec: IndicatorSpec) -> str:
        return f"tf{timeframe.value}_{spec.name}"

    def higher_timeframes_for(self, base: Timeframe) -> tuple[Timeframe, ...]:
        """The higher timeframes that exist above ``base`` (none above daily bars)."""
        order = list(Timeframe)
        return tuple(tf for tf in self.higher_timeframes if order.index(tf) > order.index(base))

    def feature_names(self, base: Timeframe = Timeframe.M1) -> tuple[str, ...]:
        names = [s.name for s in self.base]
        for tf in self.higher_timeframes_for(base):
            names += [self.higher_name(tf, s) for s in self.higher]
        names += [s.name for s in self.cross_asset]
        return tuple(names)

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "engine": INDICATOR_ENGINE,
            "base": [s.to_json() for s in self.base],
            "higher_timeframes": [tf.value for tf in self.higher_timeframes],
            "higher": [s.to_json() for s in self.higher],
            "cross_asset": [s.to_json() for s in self.cross_asset],
        }

    @property
    def spec_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


DEFAULT_FEATURE_SET = FeatureSetSpec(
    version="1",
    base=(
        # trend
        ind("sma_ratio_10", "sma_ratio", period=10),
        ind("sma_ratio_30", "sma_ratio", period=30),
        ind("sma_slope_30_5", "sma_slope", period=30, lag=5),
        ind("ema_ratio_12", "ema_ratio", period=12),
        ind("ema_ratio_26", "ema_ratio", period=26),
        ind("macd", "macd", fast=12, slow=26, signal=9),
        ind("macd_signal", "macd_signal", fast=12, slow=26, signal=9),
        ind("macd_hist", "macd_hist", fast=12, slow=26, signal=9),
        ind("adx_14", "adx", period=14),
        # momentum
        ind("rsi_14", "rsi", period=14),
        ind("stoch_k", "stoch_k", fastk=14, slowk=3, slowd=3),
        ind("stoch_d", "stoch_d", fastk=14, slowk=3, slowd=3),
        ind("willr_14", "willr", period=14),
        ind("cci_20", "cci", period=20),
        ind("roc_10", "roc", period=10),
        ind("mfi_14", "mfi", period=14),
        # volatility
        ind("atr_ratio_14", "atr_ratio", period=14),
        ind("bb_position_20", "bb_position", period=20, nbdev=2.0),
        ind("bb_width_20", "bb_width", period=20, nbdev=2.0),
        ind("realized_vol_30", "realized_vol", period=30),
        ind("realized_vol_120", "realized_vol", period=120),
        ind("range_ratio", "range_ratio"),
        # volume
        ind("obv_flow_20", "obv_flow", period=20),
        ind("volume_ratio_20", "volume_ratio", period=20),
        ind("volume_zscore_60", "volume_zscore", period=60),
        # statistics
        ind("ret_1", "log_return", lag=1),
        ind("ret_5", "log_return", lag=5),
        ind("ret_15", "log_return", lag=15),
        ind("ret_60", "log_return", lag=60),
        ind("close_zscore_60", "close_zscore", period=60),
        ind("ret_skew_60", "return_skew", period=60),
    ),
    higher_timeframes=(Timeframe.M5, Timeframe.M15, Timeframe.H1, Timeframe.D1),
    higher=(
        ind("ret_1", "log_return", lag=1),
        ind("rsi_14", "rsi", period=14),
        ind("sma_ratio_10", "sma_ratio", period=10),
        ind("atr_ratio_14", "atr_ratio", period=14),
    ),
    cross_asset=(
        ind("mkt_corr_120", "market_correl", period=120),
        ind("mkt_beta_120", "market_beta", period=120),
        ind("mkt_rel_ret_15", "market_relative_return", lag=15),
    ),
)
