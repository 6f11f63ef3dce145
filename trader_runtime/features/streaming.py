"""Incremental twin of the batch feature engine, for the live loop.

``StreamingFeatures.update`` takes one bar at a time and returns the row ``batch.compute_features``
gives for that bar, from bounded state (ring buffers and running sums, never the history). Every
TA-Lib indicator is a state machine replaying the arithmetic of the TA-Lib build in use, in its
order: seeds, running sums, Wilder steps, the shifted-data variance with its reseeds, and the fused
multiply-adds of EMA, MACD, ATR and BBANDS. The numpy running-sum features replay ``np.cumsum``.
Higher-timeframe bars are built with the bucket rule of ``market.resample``; a row sees the last
completed bucket, as the batch as-of join does. ``StreamingMarketIndex`` is the incremental
``batch.market_index``.

The machines are compiled (``streaming_kernels``). Construction walks the spec once: each node (a
machine, memoised by kind, inputs and parameters) takes its state in two shared arrays (floats and
ints) and appends an instruction to the program of its bar series, each feature a reader
instruction after every node. One numba call then runs a whole bar: the base series, the buckets
and series of the higher timeframes, and the feature row. The state is a few numpy arrays, which
pickle fast and exactly.

Values equal the batch bit for bit when the stream starts at the first bar of the batch input and
receives the same bars: running sums carry their floating-point history. Inputs must be finite with
positive prices (validated bars).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from trader_runtime.features import streaming_kernels as sk
from trader_runtime.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec, IndicatorSpec
from trader_runtime.features.streaming_kernels import fma
from trader_runtime.market.bars import Bar
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.timeframes import Timeframe

__all__ = [
    "KINDS",
    "SessionBounds",
    "StreamingFeatures",
    "StreamingMarketIndex",
    "TaMachine",
    "epoch_us",
    "fma",
    "fma_exact",
    "measure_update_latency_us",
    "safe_ratio",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NAN = math.nan
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FLOAT64 = np.dtype(np.float64)  # compared as a dtype: comparing with ``np.float64`` converts it
_EPOCH_DATE = date(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_MINUTE_US = 60_000_000
_NO_SESSION = (-1, -1)  # the kernels' (open_us, close_us) outside a session


def fma_exact(a: float, b: float, c: float) -> float:
    """Correctly rounded ``a * b + c`` (exact rational arithmetic; the reference for ``fma``)."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        return a * b + c  # keeps IEEE's sign of zero
    return float(exact)


def safe_ratio(num: float, den: float, fallback: float) -> float:
    """Scalar ``indicators.safe_ratio``: num/den, ``fallback`` where den <= 0, NaN where either is NaN."""
    if num != num or den != den:
        return NAN
    if den > 0.0:
        return num / den
    return fallback


# --------------------------------------------------------------------------------------------------
# State layout of the compiled machines (see each kernel's docstring for its F and N blocks).


class _Layout:
    """The float and int state being laid out: slots handed out in order, with initial values."""

    __slots__ = ("floats", "ints")

    def __init__(self) -> None:
        self.floats: list[float] = []
        self.ints: list[int] = []

    def f(self, *values: float) -> int:
        """Append float slots; the first one's index."""
        at = len(self.floats)
        self.floats.extend(values)
        return at

    def i(self, *values: int) -> int:
        """Append int slots; the first one's index."""
        at = len(self.ints)
        self.ints.extend(values)
        return at

    def arrays(self) -> tuple[FloatArray, IntArray]:
        return np.array(self.floats, dtype=np.float64), np.array(self.ints, dtype=np.int64)


State = tuple[int, int]  # (fo, no): a machine's float and int blocks


def _zeros(size: int) -> list[float]:
    return [0.0] * size


def _window(lay: _Layout, period: int) -> State:
    return lay.f(NAN, 0.0, *_zeros(period)), lay.i(period, 0)


def _ema(lay: _Layout, period: int, lookback: int | None = None) -> State:
    lookback = period - 1 if lookback is None else lookback
    return lay.f(NAN, 2.0 / float(period + 1), NAN, *_zeros(period)), lay.i(period, lookback, 0)


def _macd(lay: _Layout, fast: int, slow: int, signal: int) -> State:
    if slow < fast:
        fast, slow = slow, fast
    slow_ema = _ema(lay, slow)
    fast_ema = _ema(lay, fast, lookback=slow - 1)
    k = 2.0 / float(signal + 1)
    return lay.f(NAN, NAN, NAN, k, 0.0), lay.i(signal, 0, *slow_ema, *fast_ema)


def _rsi(lay: _Layout, period: int) -> State:
    return lay.f(NAN, 1.0 / float(period), float(period - 1), 0.0, 0.0, 0.0), lay.i(period, 0)


def _atr(lay: _Layout, period: int) -> State:
    beta = float(period - 1) / float(period)
    return lay.f(NAN, beta, 1.0 - beta, 0.0, 0.0), lay.i(period, 0)


def _adx(lay: _Layout, period: int) -> State:
    return lay.f(NAN, float(period), *_zeros(8)), lay.i(period, 0)


def _stoch(lay: _Layout, fastk: int, slowk: int, slowd: int) -> State:
    k, d = _window(lay, slowk), _window(lay, slowd)
    return lay.f(NAN, NAN, *_zeros(2 * fastk)), lay.i(fastk, 0, *k, *d)


def _willr(lay: _Layout, period: int) -> State:
    return lay.f(NAN, *_zeros(2 * period)), lay.i(period, 0)


def _cci(lay: _Layout, period: int) -> State:
    return lay.f(NAN, *_zeros(period)), lay.i(period, 0, 0)


def _mfi(lay: _Layout, period: int) -> State:
    return lay.f(NAN, 0.0, 0.0, 0.0, *_zeros(2 * period)), lay.i(period, 0, 0, 0)


def _var(lay: _Layout, period: int) -> State:
    fo = lay.f(NAN, 1.0 / float(period), 0.0, 0.0, 0.0, *_zeros(period))
    return fo, lay.i(period, 0, 32 * period)


def _stddev(lay: _Layout, period: int, nbdev: float = 1.0) -> State:
    var = _var(lay, period)
    return lay.f(NAN, nbdev), lay.i(*var)


def _bbands(lay: _Layout, period: int, nbdev_up: float, nbdev_dn: float) -> State:
    sma, var = _window(lay, period), _var(lay, period)
    return lay.f(NAN, NAN, NAN, nbdev_up, nbdev_dn), lay.i(*sma, *var)


def _obv(lay: _Layout) -> State:
    return lay.f(NAN, NAN), lay.i()


def _roc(lay: _Layout, period: int) -> State:
    return lay.f(NAN, *_zeros(period + 1)), lay.i(period, 0)


def _correl(lay: _Layout, period: int) -> State:
    fo = lay.f(NAN, 1.0 / float(period), *_zeros(9), *_zeros(2 * period))
    return fo, lay.i(period, 0, 32 * period)


def _beta(lay: _Layout, period: int) -> State:
    fo = lay.f(NAN, float(period), *_zeros(9), *_zeros(2 * (period + 1)))
    return fo, lay.i(period, 0, 32 * period)


def _log_value(lay: _Layout) -> State:
    return lay.f(NAN), lay.i()


def _lagged(lay: _Layout, lag: int) -> State:
    return lay.f(NAN, *_zeros(lag + 1)), lay.i(lag + 1, 0)


def _obv_flow(lay: _Layout, period: int) -> State:
    obv, total = _obv(lay), _window(lay, period)
    return lay.f(NAN, *_zeros(period + 1)), lay.i(period + 1, 0, *obv, *total)


def _skew(lay: _Layout, period: int) -> State:
    sums = [s for _ in range(3) for s in (lay.f(0.0, *_zeros(period + 1)), lay.i(period, 0, 0))]
    return lay.f(NAN), lay.i(period, 0, *sums)


# kind -> (opcode, inputs, outputs, state)
_MACHINES: Mapping[str, tuple[int, int, int, Callable[..., State]]] = {
    "sma": (sk.SMA, 1, 1, _window),
    "sum": (sk.SUM, 1, 1, _window),
    "ema": (sk.EMA, 1, 1, _ema),
    "macd": (sk.MACD, 1, 3, _macd),
    "rsi": (sk.RSI, 1, 1, _rsi),
    "atr": (sk.ATR, 3, 1, _atr),
    "adx": (sk.ADX, 3, 1, _adx),
    "stoch": (sk.STOCH, 3, 2, _stoch),
    "willr": (sk.WILLR, 3, 1, _willr),
    "cci": (sk.CCI, 3, 1, _cci),
    "mfi": (sk.MFI, 4, 1, _mfi),
    "stddev": (sk.STDDEV, 1, 1, _stddev),
    "bbands": (sk.BBANDS, 1, 3, _bbands),
    "obv": (sk.OBV, 2, 1, _obv),
    "roc": (sk.ROC, 1, 1, _roc),
    "correl": (sk.CORREL, 2, 1, _correl),
    "beta": (sk.BETA, 2, 1, _beta),
    "log": (sk.LOG, 1, 1, _log_value),
    "lagged": (sk.LAGGED, 1, 1, _lagged),
    "obv_flow": (sk.OBV_FLOW, 2, 1, _obv_flow),
    "skew": (sk.SKEW, 1, 1, _skew),
}


def _row(op: int, from_row: int, fo: int, no: int, *operands: int) -> list[int]:
    return [op, from_row, fo, no, *operands, *[0] * (sk.WIDTH - 4 - len(operands))]


# --------------------------------------------------------------------------------------------------
# Feature graph of one bar series: shared state machines (memoised like ``BarArrays.memo``) run
# once per bar in creation order (so after their inputs), then one reader per feature.


class _Graph:
    """Builds the program and state of one bar series: its tick (``sk.TICK_FIELDS``), its nodes and
    its readers."""

    __slots__ = ("_caps", "_lay", "_memo", "_nodes", "_readers", "pending", "row", "step", "tick")

    def __init__(self, lay: _Layout, step_us: int = 0) -> None:
        self._lay = lay
        self.tick = lay.f(*[NAN] * len(sk.TICK_FIELDS))
        self.row = lay.i(-1)
        self.pending = lay.i(-1)
        self.step = step_us
        self._memo: dict[Hashable, State] = {}
        self._nodes: list[list[int]] = []
        self._readers: list[list[int]] = []
        self._caps: dict[int, int] = {}  # history no -> ring size

    def field(self, name: str) -> int:
        """The slot of a tick field."""
        return self.tick + sk.TICK_FIELDS.index(name)

    def node(self, kind: str, inputs: tuple[int, ...], *params: float, from_row: int = 0) -> int:
        """The first output slot of the ``kind`` machine on ``inputs``, made on first use; it runs
        from graph row ``from_row`` on."""
        key = (kind, inputs, params, from_row)
        found = self._memo.get(key)
        if found is None:
            op, _, _, state = _MACHINES[kind]
            found = self._memo[key] = state(self._lay, *params)
            self._nodes.append(_row(op, from_row, *found, *inputs))
        return found[0]

    def history(self, field: str, lag: int) -> State:
        """The log history of a tick field, keeping at least ``lag + 1`` values (its value slot is
        the one-bar log return)."""
        key = ("history", field)
        found = self._memo.get(key)
        if found is None:
            logs = self.node("log", (self.field(field),))
            found = self._memo[key] = (self._lay.f(NAN), self._lay.i(0, 0, -1))
            self._nodes.append(_row(sk.HISTORY, 0, *found, logs))
        self._caps[found[1]] = max(self._caps.get(found[1], 2), lag + 1)
        return found

    def read(self, op: int, *operands: int) -> int:
        """A reader writing a new slot (NaN until first run); the slot."""
        slot = self._lay.f(NAN)
        self._readers.append(_row(op, 0, slot, 0, *operands))
        return slot

    def program(self) -> list[list[int]]:
        """The rows of the nodes then the readers; lays out the log histories' rings."""
        for no, cap in self._caps.items():
            self._lay.ints[no] = cap
            self._lay.ints[no + 2] = self._lay.f(*_zeros(cap))
        return self._nodes + self._readers


class _Linked(NamedTuple):
    """The program rows of some graphs, their table (graph 0 the base series, laid out first: its
    tick is ``f[0:7]``), the slots of the outputs, and the initial state."""

    program: IntArray
    graphs: IntArray
    columns: IntArray
    f: FloatArray
    n: IntArray


def _link(lay: _Layout, graphs: list[_Graph], columns: list[int]) -> _Linked:
    program: list[list[int]] = []
    table: list[list[int]] = []
    for g in graphs:
        rows = g.program()
        table.append([len(program), len(program) + len(rows), g.tick, g.row, g.step, g.pending])
        program += rows
    f, n = lay.arrays()
    return _Linked(
        np.array(program, dtype=np.int64).reshape(-1, sk.WIDTH),
        np.array(table, dtype=np.int64),
        np.array(columns, dtype=np.int64),
        f,
        n,
    )


class TaMachine:
    """One compiled state machine (a ``_MACHINES`` kind: ``"sma"``, ``"macd"``, ...) on its own,
    in a graph whose tick holds its inputs; the checks against talib drive the code the feature
    graph runs."""

    __slots__ = ("_linked", "_out")

    def __init__(self, kind: str, *params: float) -> None:
        _, inputs, outputs, _ = _MACHINES[kind]
        lay = _Layout()
        graph = _Graph(lay)
        first = graph.node(kind, tuple(range(graph.tick, graph.tick + inputs)), *params)
        self._linked = _link(lay, [graph], list(range(first, first + outputs)))
        self._out = np.empty(outputs)

    def update(self, *inputs: float) -> tuple[float, ...]:
        """Feed one row of inputs; the outputs (NaN in the lookback)."""
        program, graphs, columns, f, n = self._linked
        f[: len(inputs)] = inputs
        sk.step(program, graphs, columns, f, n, 0, -1, -1, self._out)
        return tuple(self._out.tolist())


# --------------------------------------------------------------------------------------------------
# Feature kinds: each builds its nodes in a graph and returns the slot its reader writes.

Build = Callable[[_Graph, IndicatorSpec], int]


def _p(spec: IndicatorSpec, key: str) -> int:
    return int(spec.param(key))


def _sma(g: _Graph, field: str, period: int) -> int:
    return g.node("sma", (g.field(field),), period)


def _log_returns(g: _Graph) -> int:
    return g.history("close", 1)[0]


def _sma_ratio(g: _Graph, s: IndicatorSpec) -> int:
    return g.read(sk.RATIO_M1, g.field("close"), _sma(g, "close", _p(s, "period")))


def _sma_slope(g: _Graph, s: IndicatorSpec) -> int:
    sma = _sma(g, "close", _p(s, "period"))
    return g.read(sk.VALUE, g.node("lagged", (sma,), _p(s, "lag")))


def _ema_ratio(g: _Graph, s: IndicatorSpec) -> int:
    close = g.field("close")
    return g.read(sk.RATIO_M1, close, g.node("ema", (close,), _p(s, "period")))


def _macd_part(part: int) -> Build:
    def build(g: _Graph, s: IndicatorSpec) -> int:
        close = g.field("close")
        macd = g.node("macd", (close,), _p(s, "fast"), _p(s, "slow"), _p(s, "signal"))
        return g.read(sk.RATIO, macd + part, close)

    return build


def _hlc(kind: str) -> Build:
    def build(g: _Graph, s: IndicatorSpec) -> int:
        hlc = (g.field("high"), g.field("low"), g.field("close"))
        return g.read(sk.VALUE, g.node(kind, hlc, _p(s, "period")))

    return build


def _close_only(kind: str) -> Build:
    def build(g: _Graph, s: IndicatorSpec) -> int:
        return g.read(sk.VALUE, g.node(kind, (g.field("close"),), _p(s, "period")))

    return build


def _stoch_part(part: int) -> Build:
    def build(g: _Graph, s: IndicatorSpec) -> int:
        hlc = (g.field("high"), g.field("low"), g.field("close"))
        stoch = g.node("stoch", hlc, _p(s, "fastk"), _p(s, "slowk"), _p(s, "slowd"))
        return g.read(sk.VALUE, stoch + part)

    return build


def _mfi_kind(g: _Graph, s: IndicatorSpec) -> int:
    hlcv = (g.field("high"), g.field("low"), g.field("close"), g.field("volume"))
    return g.read(sk.VALUE, g.node("mfi", hlcv, _p(s, "period")))


def _atr_ratio(g: _Graph, s: IndicatorSpec) -> int:
    hlc = (g.field("high"), g.field("low"), g.field("close"))
    return g.read(sk.RATIO, g.node("atr", hlc, _p(s, "period")), g.field("close"))


def _bands(g: _Graph, s: IndicatorSpec) -> int:
    dev = float(s.param("nbdev"))
    return g.node("bbands", (g.field("close"),), _p(s, "period"), dev, dev)


def _bb_position(g: _Graph, s: IndicatorSpec) -> int:
    bands = _bands(g, s)  # upper, middle, lower
    return g.read(sk.BAND_POSITION, g.field("close"), bands, bands + 2)


def _bb_width(g: _Graph, s: IndicatorSpec) -> int:
    bands = _bands(g, s)
    return g.read(sk.SPREAD_RATIO, bands, bands + 2, bands + 1)


def _realized_vol(g: _Graph, s: IndicatorSpec) -> int:
    """STDDEV of the one-bar log returns from row 1 (``_from_row(..., 1)``)."""
    std = g.node("stddev", (_log_returns(g),), _p(s, "period"), 1.0, from_row=1)
    return g.read(sk.VALUE, std)


def _range_ratio(g: _Graph, s: IndicatorSpec) -> int:
    return g.read(sk.SPREAD_RATIO, g.field("high"), g.field("low"), g.field("close"))


def _obv_flow_kind(g: _Graph, s: IndicatorSpec) -> int:
    inputs = (g.field("close"), g.field("volume"))
    return g.read(sk.VALUE, g.node("obv_flow", inputs, _p(s, "period")))


def _volume_ratio(g: _Graph, s: IndicatorSpec) -> int:
    volume = g.field("volume")
    return g.read(sk.RATIO_OR_ONE, volume, _sma(g, "volume", _p(s, "period")))


def _zscore(field: str) -> Build:
    def build(g: _Graph, s: IndicatorSpec) -> int:
        period, x = _p(s, "period"), g.field(field)
        std = g.node("stddev", (x,), period, 1.0)
        return g.read(sk.ZSCORE, x, _sma(g, field, period), std)

    return build


def _log_return(g: _Graph, s: IndicatorSpec) -> int:
    lag = _p(s, "lag")
    return g.read(sk.LOG_DIFF, g.history("close", lag)[1], lag)


def _return_skew(g: _Graph, s: IndicatorSpec) -> int:
    return g.read(sk.VALUE, g.node("skew", (_log_returns(g),), _p(s, "period")))


def _market_correl(g: _Graph, s: IndicatorSpec) -> int:
    """CORREL of the log returns with the market returns, both from row 1."""
    inputs = (_log_returns(g), g.field("market_return"))
    return g.read(sk.VALUE, g.node("correl", inputs, _p(s, "period"), from_row=1))


def _market_beta(g: _Graph, s: IndicatorSpec) -> int:
    inputs = (g.field("market_level"), g.field("close"))  # TA-Lib: index first
    return g.read(sk.VALUE, g.node("beta", inputs, _p(s, "period")))


def _market_relative_return(g: _Graph, s: IndicatorSpec) -> int:
    lag = _p(s, "lag")
    closes, levels = g.history("close", lag), g.history("market_level", lag)
    return g.read(sk.LOG_DIFF_SPREAD, closes[1], levels[1], lag)


KINDS: Mapping[str, Build] = {
    "sma_ratio": _sma_ratio,
    "sma_slope": _sma_slope,
    "ema_ratio": _ema_ratio,
    "macd": _macd_part(0),
    "macd_signal": _macd_part(1),
    "macd_hist": _macd_part(2),
    "adx": _hlc("adx"),
    "rsi": _close_only("rsi"),
    "stoch_k": _stoch_part(0),
    "stoch_d": _stoch_part(1),
    "willr": _hlc("willr"),
    "cci": _hlc("cci"),
    "roc": _close_only("roc"),
    "mfi": _mfi_kind,
    "atr_ratio": _atr_ratio,
    "bb_position": _bb_position,
    "bb_width": _bb_width,
    "realized_vol": _realized_vol,
    "range_ratio": _range_ratio,
    "obv_flow": _obv_flow_kind,
    "volume_ratio": _volume_ratio,
    "volume_zscore": _zscore("volume"),
    "log_return": _log_return,
    "close_zscore": _zscore("close"),
    "return_skew": _return_skew,
    "market_correl": _market_correl,
    "market_beta": _market_beta,
    "market_relative_return": _market_relative_return,
}


def _reader(g: _Graph, spec: IndicatorSpec) -> int:
    build = KINDS.get(spec.kind)
    if build is None:
        raise KeyError(f"unknown indicator kind {spec.kind!r} ({spec.name})")
    return build(g, spec)


# --------------------------------------------------------------------------------------------------
# Sessions of the higher timeframes' buckets.


def epoch_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch of a timezone-aware instant."""
    if ts.tzinfo is None:
        raise ValueError(f"bar timestamps must be timezone-aware (UTC), got {ts!r}")
    return (ts - _EPOCH) // _ONE_US


@functools.lru_cache(maxsize=4)
def _load_sessions(year: int) -> dict[int, tuple[int, int]]:
    """Sessions of one calendar year: UTC day number -> (open, close) in epoch microseconds. One
    dict per year, shared by every ``_Sessions`` (so a checkpoint of many engines holds it once);
    never mutated."""
    sched = TradingCalendar(date(year, 1, 1), date(year, 12, 31)).schedule()
    opens = sched["open_ts"].dt.epoch("us").to_list()
    closes = sched["close_ts"].dt.epoch("us").to_list()
    return {close // _DAY_US: (open_, close) for open_, close in zip(opens, closes, strict=True)}


class _Sessions:
    """Session bounds by UTC day (an XNYS session lies within one UTC day), loaded a calendar
    year at a time from ``TradingCalendar``; at most two years are kept."""

    __slots__ = ("_bounds", "_day", "_years")

    def __init__(self) -> None:
        self._years: dict[int, dict[int, tuple[int, int]]] = {}
        self._day = -1
        self._bounds: tuple[int, int] | None = None

    def of(self, ts_us: int) -> tuple[int, int]:
        """(open, close) of the session with ``open < ts <= close``, or ``(-1, -1)``: the
        kernels' ``open_us, close_us`` (one call on the live path)."""
        day = ts_us // _DAY_US
        if day != self._day:
            self._day = day
            year = (_EPOCH_DATE + timedelta(days=day)).year
            sessions = self._years.get(year)
            if sessions is None:
                sessions = _load_sessions(year)
                self._years = {y: s for y, s in self._years.items() if y == year - 1}
                self._years[year] = sessions
            self._bounds = sessions.get(day)
        bounds = self._bounds
        if bounds is None or not bounds[0] < ts_us <= bounds[1]:
            return _NO_SESSION
        return bounds

    def bounds(self, ts_us: int) -> tuple[int, int] | None:
        """(open, close) of the session with ``open < ts <= close``, or None."""
        bounds = self.of(ts_us)
        return None if bounds is _NO_SESSION else bounds


# --------------------------------------------------------------------------------------------------
# Public engines.


@functools.lru_cache(maxsize=8)
def _compile(spec: FeatureSetSpec, base: Timeframe) -> _Linked:
    """The linked graphs of a spec: the base series, then one per higher timeframe. Shared by the
    engines of that spec (a checkpoint of many engines holds the program once); only ``f`` and
    ``n`` are theirs, as copies."""
    lay = _Layout()
    graphs = [_Graph(lay)]
    columns = [_reader(graphs[0], s) for s in spec.base]
    cross = [_reader(graphs[0], s) for s in spec.cross_asset]
    for tf in spec.higher_timeframes_for(base):
        minutes = tf.minutes
        graph = _Graph(lay, 0 if minutes is None else minutes * _MINUTE_US)
        columns += [_reader(graph, s) for s in spec.higher]
        graphs.append(graph)
    return _link(lay, graphs, columns + cross)


def feature_machine(
    spec: FeatureSetSpec = DEFAULT_FEATURE_SET, base: Timeframe = Timeframe.M1
) -> tuple[IntArray, IntArray, IntArray, FloatArray, IntArray]:
    """``(program, graphs, columns, f, n)``: the compiled program of a spec and a fresh state
    (``f``, ``n``: copies) for one symbol, for a caller that steps many symbols in its own
    compiled loop (``streaming_kernels.step_bar`` per symbol, as ``StreamingFeatures`` does).
    The program arrays are shared: do not write them."""
    program, graphs, columns, f, n = _compile(spec, base)
    return program, graphs, columns, f.copy(), n.copy()


class StreamingFeatures:
    """Every feature of ``spec`` for one symbol, one base bar at a time, with bounded memory.

    ``update`` returns the values right after the bar closed, in ``feature_names`` order (NaN where
    the batch frame has null); ``update_into`` writes them into an array. Cross-asset features need
    ``market_return`` and ``market_level`` of the market index at the bar (see
    ``StreamingMarketIndex``); a missing return counts as 0.0 and a missing level repeats the last
    one, as the batch alignment does.
    """

    __slots__ = (
        "_columns",
        "_f",
        "_graphs",
        "_last_us",
        "_level",
        "_n",
        "_names",
        "_program",
        "_sessions",
    )

    def __init__(
        self, spec: FeatureSetSpec = DEFAULT_FEATURE_SET, base: Timeframe = Timeframe.M1
    ) -> None:
        self._names = spec.feature_names(base)
        self._program, self._graphs, self._columns, self._f, self._n = feature_machine(spec, base)
        self._sessions = _Sessions() if self._graphs.shape[0] > 1 else None
        self._last_us = -(2**63)
        self._level = NAN

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns, in the order of ``spec.feature_names(base)`` (as the batch)."""
        return self._names

    def update_into(
        self,
        bar: Bar,
        out: FloatArray,
        *,
        market_return: float | None = None,
        market_level: float | None = None,
    ) -> None:
        """Advance by one bar (timestamps strictly increasing) and write its feature values into
        ``out`` (float64, one per feature, in ``feature_names`` order)."""
        ts_us = epoch_us(bar.ts)
        if ts_us <= self._last_us:
            raise ValueError(
                f"bars must arrive in increasing ts order; got {bar.ts} after the last"
            )
        if out.dtype != _FLOAT64 or out.shape != self._columns.shape:
            raise ValueError(
                f"out must be float64 of shape {self._columns.shape}, got {out.dtype} {out.shape}"
            )
        self._last_us = ts_us
        if market_level is not None:
            self._level = market_level
        open_us, close_us = _NO_SESSION if self._sessions is None else self._sessions.of(ts_us)
        sk.step_bar(  # the base tick (sk.TICK_FIELDS) as float64 values, then the step
            self._program,
            self._graphs,
            self._columns,
            self._f,
            self._n,
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
            float(bar.volume),
            0.0 if market_return is None else float(market_return),
            float(self._level),
            ts_us,
            open_us,
            close_us,
            out,
        )

    def update(
        self,
        bar: Bar,
        *,
        market_return: float | None = None,
        market_level: float | None = None,
    ) -> dict[str, float]:
        """Advance by one bar (timestamps strictly increasing) and return its feature values."""
        row = np.empty(len(self._names))
        self.update_into(bar, row, market_return=market_return, market_level=market_level)
        return dict(zip(self._names, row.tolist(), strict=False))  # same length by construction

    def buffered_values(self) -> int:
        """How many values the indicator state holds (ring buffers, windows, running sums): the
        state arrays, sized by the spec's periods at construction whatever the number of bars
        seen. The session cache is not counted."""
        return int(self._f.size + self._n.size)


class StreamingMarketIndex:
    """Incremental ``batch.market_index``: the mean one-bar log return of the symbols that have a
    bar at each instant (each against its own previous bar) and its cumulative level
    (``streaming_kernels.market_index_step``, which the live market state steps too).

    Pass the closes of one instant in the universe's order (the order of the frames given to
    ``market_index``): the mean sums them in that order.
    """

    __slots__ = ("_has_prev", "_index", "_last_us", "_prev_log", "_slots")

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}  # symbol -> its slot in the state arrays
        self._prev_log = np.zeros(0)
        self._has_prev = np.zeros(0, dtype=np.int64)
        self._index = np.zeros(2)  # cumulative log return, started
        self._last_us = -(2**63)

    def update(self, ts: datetime, closes: Mapping[str, float]) -> tuple[float, float]:
        """(market_return, market_level) at ``ts``; timestamps strictly increasing."""
        ts_us = epoch_us(ts)
        if ts_us <= self._last_us:
            raise ValueError(f"instants must arrive in increasing order; got {ts} after the last")
        self._last_us = ts_us
        known = self._slots
        for symbol in closes:
            known.setdefault(symbol, len(known))
        if len(known) > self._prev_log.shape[0]:
            grow = len(known) - self._prev_log.shape[0]
            self._prev_log = np.concatenate([self._prev_log, np.zeros(grow)])
            self._has_prev = np.concatenate([self._has_prev, np.zeros(grow, dtype=np.int64)])
        m = len(closes)
        values = np.fromiter(closes.values(), dtype=np.float64, count=m)
        slots = np.fromiter((known[s] for s in closes), dtype=np.int64, count=m)
        market_return, level = sk.market_index_step(
            values, slots, self._prev_log, self._has_prev, self._index
        )
        return float(market_return), float(level)


def measure_update_latency_us(n_bars: int = 20000, seed: int = 7) -> tuple[float, float]:
    """(p50, p99) in microseconds of one ``StreamingFeatures.update`` with the default spec (base,
    every higher timeframe, cross-asset) over ``n_bars`` synthetic one-minute bars, timed after a
    warm-up session whose first call loads the calendar."""
    from trader_runtime.sources.base import BarRequest
    from trader_runtime.sources.synthetic import SyntheticMarketConfig, SyntheticSource

    warmup = 390
    start = date(2024, 1, 2)
    end = start + timedelta(days=(n_bars + warmup) // 390 * 7 // 5 + 30)
    source = SyntheticSource(SyntheticMarketConfig(seed=seed))
    frames = [source.load(BarRequest(symbol, start, end)) for symbol in ("AAA", "BBB")]
    rows = [frame.select("ts", "open", "high", "low", "close", "volume").rows() for frame in frames]
    if len(rows[0]) < n_bars + warmup or len(rows[0]) != len(rows[1]):
        raise ValueError(f"not enough synthetic bars for {n_bars} timed updates")
    index = StreamingMarketIndex()
    engine = StreamingFeatures()
    samples: list[int] = []
    for i, (row, other) in enumerate(zip(rows[0][: n_bars + warmup], rows[1], strict=False)):
        market_return, market_level = index.update(row[0], {"AAA": row[4], "BBB": other[4]})
        bar = Bar(row[0], row[1], row[2], row[3], row[4], row[5])
        began = time.perf_counter_ns()
        engine.update(bar, market_return=market_return, market_level=market_level)
        elapsed = time.perf_counter_ns() - began
        if i >= warmup:
            samples.append(elapsed)
    samples.sort()
    return samples[len(samples) // 2] / 1000.0, samples[(len(samples) * 99) // 100] / 1000.0


SessionBounds = _Sessions
"""Public name of the session-bounds lookup (``bounds(ts_us) -> (open_us, close_us) | None``)."""
