"""The live twin of the backtest grid's inputs: one ``MarketInstant`` in, one grid row out.

``MarketState.update`` takes the bars of all symbols that closed at one instant and returns what
``backtest.grid.build_grid`` holds for that instant when built from the same bars: prices and
volumes, the feature rows the model scores (each symbol's ``streaming_kernels`` state, fed the
universe's market index as ``StreamingMarketIndex`` computes it), the confirmation trends, the
market regime (``regime_kernels`` fed a streaming breadth), and the impact inputs from earlier
sessions (``market.impact_inputs``, the functions the grid calls). The features, index, breadth,
trends and regime of an instant are one compiled call (``market_kernels.step_instant``).
``expected_volume`` gives the VWAP volume profile of the coming bars. Values are bit-identical to
the batch path when the stream starts at the first bar of the batch input and receives the same
bars.

Breadth: a symbol's SMA is a sliding Kahan sum replaying Polars' ``rolling_mean`` (subtract the
leaving value, then add the entering one, each with its own compensation), so ``close > sma``
agrees with ``regime.breadth`` even at ties.

Memory is bounded: per symbol the indicator state, the breadth window, the closes and volumes of
the last ``IMPACT_LOOKBACK_SESSIONS + 1`` sessions, the current session's bar volumes and, per
slot of the session, the last ``IMPACT_LOOKBACK_SESSIONS`` volumes.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from trader_runtime.backtest.grid import trend_column
from trader_runtime.decision.regime import RegimeConfig, regime_of_rule, regime_state
from trader_runtime.errors import RoboTraderError
from trader_runtime.features.spec import DEFAULT_FEATURE_SET, FeatureSetSpec
from trader_runtime.features.streaming import SessionBounds, epoch_us, feature_machine
from trader_runtime.live import market_kernels as mk
from trader_runtime.market.calendar import TradingCalendar
from trader_runtime.market.impact_inputs import (
    IMPACT_LOOKBACK_SESSIONS,
    daily_stats,
    session_volume,
    slot_mean,
)
from trader_runtime.market.instant import MarketInstant
from trader_runtime.market.regimes import Regime
from trader_runtime.market.timeframes import Timeframe

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NAN = math.nan
_NEW_YORK = ZoneInfo("America/New_York")
_HOUR_US = 3_600_000_000
_MINUTE_US = 60_000_000
_KEPT_CALENDAR_YEARS = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MarketStateError(RoboTraderError):
    """An instant the market state cannot take (out of order, unknown symbol, mismatched bar)."""


class MarketRow(NamedTuple):
    """One instant of the market, as ``MarketGrid`` holds it (NaN where a symbol has no bar)."""

    ts: datetime  # UTC close instant
    ts_us: int  # the same, in epoch microseconds
    open: FloatArray  # (n,)
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    features: FloatArray  # (n, n_features) in ``MarketState.feature_names`` order
    trends: FloatArray  # (n, k) as grid.trends[t]
    applicable: BoolArray  # (n, k) as grid.applicable (shared by every row: do not write)
    regime: Regime
    daily_vol: FloatArray  # (n,) as grid.daily_vol[t] (shared by the session's rows: do not write)
    adv_shares: FloatArray  # (n,) as grid.adv_shares[t] (the same)
    has_bar: BoolArray  # (n,)


class _Impact:
    """One symbol's impact inputs: completed sessions (closes, total volumes), the current
    session's bars, and the per-slot volume history with its means.

    The per-slot history is one array, a ring of the last ``IMPACT_LOOKBACK_SESSIONS`` volumes
    per slot (``seen[slot]`` counts every volume the slot took), not a deque per slot: the engine
    pickles this state into its checkpoint every bar, and 390 deques a symbol cost about 2 ms a
    symbol to pickle where an array costs microseconds."""

    __slots__ = (
        "adv_shares",
        "closes",
        "count",
        "daily_vol",
        "history",
        "last_close",
        "means",
        "seen",
        "session",
        "totals",
        "volumes",
    )

    def __init__(self) -> None:
        self.closes: deque[float] = deque(maxlen=IMPACT_LOOKBACK_SESSIONS + 1)
        self.totals: deque[float] = deque(maxlen=IMPACT_LOOKBACK_SESSIONS)
        self.history = np.zeros((0, IMPACT_LOOKBACK_SESSIONS))  # (slots, lookback) ring per slot
        self.seen = np.zeros(0, dtype=np.int64)  # volumes each slot took so far
        self.means: list[float | None] = []  # None: not taken since the slot's last volume
        self.session = -1  # New York date ordinal of the current session
        self.count = 0  # bars in the current session
        self.volumes: list[float] = []
        self.last_close = NAN
        self.daily_vol = self.adv_shares = NAN

    def roll(self, session: int) -> None:
        """Close the current session (if it had bars) and open ``session``."""
        if self.count:
            self.closes.append(self.last_close)
            self.totals.append(session_volume(self.volumes))
            self.daily_vol, self.adv_shares = daily_stats(self.closes, self.totals)
        self.session = session
        self.count = 0
        self.volumes = []
        slots = len(self.means)
        if self.seen.shape[0] > slots:  # the growth's spare rows: not pickled every bar
            self.history, self.seen = self.history[:slots].copy(), self.seen[:slots].copy()

    def on_bar(self, close: float, volume: float) -> None:
        slot = self.count
        if slot == len(self.means):
            if slot == self.seen.shape[0]:
                self._grow(slot + 1)
            self.means.append(None)
        else:
            self.means[slot] = None  # taken again when asked (``mean_at``), not on every bar
        seen = int(self.seen[slot])
        self.history[slot, seen % IMPACT_LOOKBACK_SESSIONS] = volume
        self.seen[slot] = seen + 1
        self.count = slot + 1
        self.volumes.append(volume)
        self.last_close = close

    def _grow(self, slots: int) -> None:
        capacity = max(slots, 2 * self.seen.shape[0], 64)
        history = np.zeros((capacity, IMPACT_LOOKBACK_SESSIONS))
        history[: self.history.shape[0]] = self.history
        seen = np.zeros(capacity, dtype=np.int64)
        seen[: self.seen.shape[0]] = self.seen
        self.history, self.seen = history, seen

    def slot_volumes(self, slot: int) -> list[float]:
        """The slot's last ``IMPACT_LOOKBACK_SESSIONS`` volumes, oldest first."""
        seen = int(self.seen[slot])
        ring = self.history[slot].tolist()
        kept = min(seen, IMPACT_LOOKBACK_SESSIONS)
        return [ring[k % IMPACT_LOOKBACK_SESSIONS] for k in range(seen - kept, seen)]

    def mean_at(self, slot: int) -> float:
        """Mean volume of ``slot`` over the sessions recorded so far (NaN if none)."""
        if slot >= len(self.means):
            return NAN
        mean = self.means[slot]
        if mean is None:
            mean = self.means[slot] = slot_mean(self.slot_volumes(slot))
        return mean


class _SessionCalendar:
    """Regular sessions as (open, close) in epoch microseconds, loaded a calendar year at a time
    (the last few years kept)."""

    __slots__ = ("_years",)

    def __init__(self) -> None:
        self._years: dict[int, tuple[list[int], list[int]]] = {}

    def _year(self, year: int) -> tuple[list[int], list[int]]:
        sessions = self._years.get(year)
        if sessions is None:
            sched = TradingCalendar(date(year, 1, 1), date(year, 12, 31)).schedule()
            sessions = (
                sched["open_ts"].dt.epoch("us").to_list(),
                sched["close_ts"].dt.epoch("us").to_list(),
            )
            if len(self._years) >= _KEPT_CALENDAR_YEARS:
                del self._years[min(self._years)]
            self._years[year] = sessions
        return sessions

    def following(self, ts_us: int) -> Iterator[tuple[int, int]]:
        """The sessions closing at or after ``ts_us``, in order (ends where the calendar does)."""
        year = _utc(ts_us).year
        opens, closes = self._year(year)
        i = bisect.bisect_left(closes, ts_us)
        while True:
            while i < len(closes):
                yield opens[i], closes[i]
                i += 1
            year += 1
            opens, closes = self._year(year)
            if not closes:
                return
            i = 0


class MarketState:
    """Per-instant market inputs for the live engine, equal to the backtest grid's rows.

    ``symbols`` is the universe in the order of the batch market index (``market_index`` sums
    returns in that order); ``confirmation`` the confirmation timeframes of the trading config
    (empty: no trends); ``regime`` the regime detector's config; ``base`` the bar timeframe.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        confirmation: Sequence[Timeframe],
        regime: RegimeConfig,
        spec: FeatureSetSpec = DEFAULT_FEATURE_SET,
        base: Timeframe = Timeframe.M1,
    ) -> None:
        self._symbols = tuple(symbols)
        if len(set(self._symbols)) != len(self._symbols):
            raise MarketStateError(f"duplicate symbols in {self._symbols}")
        self._position = {s: j for j, s in enumerate(self._symbols)}
        n = len(self._symbols)
        # every symbol's feature state for the spec's one program, a row each
        self._program, self._graphs, self._columns, f, fn = feature_machine(spec, base)
        self._feature_f = np.tile(f, (n, 1))
        self._feature_n = np.tile(fn, (n, 1))
        self._sessions = SessionBounds() if self._graphs.shape[0] > 1 else None
        self.feature_names: tuple[str, ...] = spec.feature_names(base)
        self._regime_f, self._regime_n = regime_state(regime, base)
        window = regime.window_bars(regime.breadth_window_sessions, base)
        self._symbol_f, self._symbol_i, self._breadth_values, self._index_f = mk.new_state(
            n, window
        )
        self._impact = [_Impact() for _ in self._symbols]
        order = list(Timeframe)
        k = len(confirmation)
        columns = {name: i for i, name in enumerate(self.feature_names)}
        applicable = [
            order.index(tf) >= order.index(base) and trend_column(tf, base) in columns
            for tf in confirmation
        ]
        # the feature column of each confirmation trend (-1: not applicable at this base)
        self._trend_columns = np.array(
            [
                columns[trend_column(confirmation[c], base)] if applicable[c] else -1
                for c in range(k)
            ],
            dtype=np.int64,
        )
        self._applicable = np.zeros((n, k), dtype=bool)
        self._applicable[:, self._trend_columns >= 0] = True
        self._step_us = None if base.minutes is None else base.minutes * _MINUTE_US
        self._calendar = _SessionCalendar()
        self._last_us = -(2**63)
        self._opened_us = -(2**63)
        self._opened: MarketInstant | None = None  # the instant ``open_instant`` last took
        self._hour = -1
        self._session = -1
        self._last_regime = Regime.RANGING
        self._blank_ohlcv = np.full((5, n), NAN)  # a row's prices, copied per instant
        self._daily_vol = np.full(n, NAN)  # the impact inputs, refreshed when a session opens
        self._adv_shares = np.full(n, NAN)

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    def _session_of(self, ts_us: int) -> int:
        """The New York date (ordinal) of an instant: the grid's session key."""
        hour = ts_us // _HOUR_US  # New York's UTC offsets are whole hours
        if hour != self._hour:
            self._hour = hour
            self._session = _ny_date(ts_us)
        return self._session

    def open_instant(self, instant: MarketInstant) -> None:
        """Check ``instant`` (strictly after the last one, known symbols, bars closing at its
        ``ts``) and open its session, so ``impact`` gives what the instant trades against.
        ``update`` does this itself when it was not done for the instant."""
        if instant is self._opened and self._opened_us > self._last_us:
            return  # opened, not updated yet
        ts = instant.ts
        ts_us = epoch_us(ts)
        if ts_us == self._opened_us and ts_us > self._last_us:
            self._opened = instant
            return  # an equal instant opened, not updated yet
        if ts_us <= self._last_us:
            raise MarketStateError(f"instants must arrive in increasing ts order; got {ts}")
        bars = instant.bars
        unknown = [s for s in bars if s not in self._position]
        if unknown:
            raise MarketStateError(f"instant {ts} has bars of unknown symbols {sorted(unknown)}")
        mismatched = [s for s, b in bars.items() if b.ts != ts]
        if mismatched:
            raise MarketStateError(f"bars of {sorted(mismatched)} do not close at {ts}")
        previous = self._session
        session = self._session_of(ts_us)
        if session != previous:
            for state in self._impact:
                state.roll(session)
            self._daily_vol = np.array([s.daily_vol for s in self._impact])
            self._adv_shares = np.array([s.adv_shares for s in self._impact])
        self._opened_us = ts_us
        self._opened = instant

    def impact(self, j: int) -> tuple[float, float]:
        """(daily volatility, average daily volume in shares) of symbol ``j`` from the sessions
        before the current one (NaN without history): the grid's ``daily_vol`` and
        ``adv_shares`` at the instant."""
        state = self._impact[j]
        return state.daily_vol, state.adv_shares

    def update(self, instant: MarketInstant) -> MarketRow:
        """Advance by one instant (strictly increasing ``ts``) and return its row."""
        self.open_instant(instant)
        ts = instant.ts
        ts_us = self._opened_us
        ohlcv = self._blank_ohlcv.copy()
        position = self._position
        bars = instant.bars
        for symbol, bar in bars.items():
            j = position[symbol]
            close = bar.close
            if not 0.0 < close < math.inf:
                raise MarketStateError(f"bar of {symbol} at {ts} has close {close}")
            ohlcv[0, j] = bar.open
            ohlcv[1, j] = bar.high
            ohlcv[2, j] = bar.low
            ohlcv[3, j] = close
            ohlcv[4, j] = bar.volume
        open_us, close_us = (-1, -1) if self._sessions is None else self._sessions.of(ts_us)
        features, trends, has_bar, rule = mk.step_instant(
            self._program,
            self._graphs,
            self._columns,
            self._feature_f,
            self._feature_n,
            ohlcv,
            ts_us,
            open_us,
            close_us,
            self._symbol_f,
            self._symbol_i,
            self._breadth_values,
            self._index_f,
            self._regime_f,
            self._regime_n,
            self._trend_columns,
        )
        self._last_us = ts_us
        self._opened = None  # taken: the checkpoint need not hold it
        impact = self._impact
        for symbol, bar in bars.items():  # a second pass: state moves once every bar passed
            impact[position[symbol]].on_bar(bar.close, bar.volume)
        if rule == mk.BAD_LEVEL:
            raise MarketStateError(f"the market index level at {ts} is not finite and positive")
        if rule != mk.NO_BARS:
            self._last_regime = regime_of_rule(rule)
        return MarketRow(
            ts=ts,
            ts_us=ts_us,
            open=ohlcv[0],
            high=ohlcv[1],
            low=ohlcv[2],
            close=ohlcv[3],
            volume=ohlcv[4],
            features=features,
            trends=trends,
            applicable=self._applicable,
            regime=self._last_regime,
            daily_vol=self._daily_vol,
            adv_shares=self._adv_shares,
            has_bar=has_bar,
        )

    def _slots(self, open_us: int, close_us: int) -> int:
        """Bars of the base timeframe in a session."""
        step = self._step_us
        return 1 if step is None else -(-(close_us - open_us) // step)

    def expected_volume(self, horizon_bars: int) -> FloatArray:
        """(horizon_bars, n): the expected volume of each symbol's k-th next bar instant, as
        ``grid.expected_volume[t + 1 + k]`` holds it (NaN without history).

        Slots continue in the current session from the symbol's bar count, then run through the
        next sessions' slots 0, 1, ... by the calendar. Equal to the grid where the symbol has
        every bar up to that instant; a slot of a later session that the current session has not
        reached yet lacks the current session's volume (horizons beyond one session)."""
        n = len(self._symbols)
        out = np.full((max(horizon_bars, 0), n), NAN)
        if horizon_bars <= 0 or self._last_us == -(2**63):
            return out
        ts_us = self._last_us
        sessions = self._calendar.following(ts_us)
        first = next(sessions, None)
        if first is None:
            return out
        open_us, close_us = first
        step = self._step_us
        position = -1  # the instant's bar index in the session (-1: before its open)
        if open_us < ts_us:
            position = 0 if step is None else -(-(ts_us - open_us) // step) - 1
        in_session = max(0, min(horizon_bars, self._slots(open_us, close_us) - position - 1))
        key = _ny_date(open_us + 1)
        for j, state in enumerate(self._impact):
            base = state.count if state.session == key else 0
            for k in range(in_session):
                out[k, j] = state.mean_at(base + k)
        k = in_session
        while k < horizon_bars:
            following = next(sessions, None)
            if following is None:
                break
            take = min(horizon_bars - k, self._slots(*following))
            for j, state in enumerate(self._impact):
                for slot in range(take):
                    out[k + slot, j] = state.mean_at(slot)
            k += take
        return out


def _ny_date(ts_us: int) -> int:
    """The New York calendar date (ordinal) of an instant in epoch microseconds."""
    return _utc(ts_us).astimezone(_NEW_YORK).date().toordinal()


def _utc(ts_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_us)
