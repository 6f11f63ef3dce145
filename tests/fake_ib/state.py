"""The fake gateway's state without I/O: minute bars, historical queries, orders, fills, positions.

Plain data and pure functions; ``gateway.py`` turns changes into wire messages.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
RTH_OPEN_NY, RTH_CLOSE_NY = time(9, 30), time(16, 0)
ONE_MINUTE = timedelta(minutes=1)


class FakeGatewayError(Exception):
    """The test drove the fake gateway wrongly (bad bars, unknown order, unknown code)."""


class HistoricalQueryError(ValueError):
    """A historical request the fake cannot serve; the text becomes the 162 message."""


@dataclass(frozen=True)
class MinuteBar:
    """One 1-minute bar; ``ts_close`` is the UTC instant the bar CLOSED."""

    ts_close: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def ts_open(self) -> datetime:
        """The instant the bar opened (one minute before it closed)."""
        return self.ts_close - ONE_MINUTE


def utc(ts: datetime) -> datetime:
    """``ts`` in UTC; naive datetimes are refused (the fake never guesses a zone)."""
    if ts.tzinfo is None:
        raise FakeGatewayError(f"naive datetime {ts!r}: give the fake tz-aware UTC instants")
    return ts.astimezone(UTC)


def stable_con_id(symbol: str) -> int:
    """A contract id that depends only on the symbol (fits a signed 32-bit int)."""
    digest = hashlib.sha256(symbol.encode()).digest()
    return 100_000 + int.from_bytes(digest[:4], "big") % 900_000_000


# ----------------------------------------------------------------------------- bars


class BarStore:
    """Minute bars per symbol, sorted by close time; adding a bar at an existing time replaces it."""

    def __init__(self) -> None:
        self._bars: dict[str, dict[datetime, MinuteBar]] = {}
        self._closes: dict[str, list[datetime]] = {}

    def add(self, symbol: str, bars: Iterable[MinuteBar]) -> None:
        """Merge ``bars`` into the symbol's series."""
        series = self._bars.setdefault(symbol, {})
        for bar in bars:
            if bar.high < max(bar.open, bar.close) or bar.low > min(bar.open, bar.close):
                raise FakeGatewayError(f"{symbol}: inconsistent bar {bar}")
            series[utc(bar.ts_close)] = replace(bar, ts_close=utc(bar.ts_close))
        self._closes[symbol] = sorted(series)

    def symbols(self) -> frozenset[str]:
        """Symbols that have at least one bar."""
        return frozenset(self._bars)

    def closing_at(self, symbol: str, ts_close: datetime) -> MinuteBar | None:
        """The bar of the minute ending at ``ts_close``, if any."""
        return self._bars.get(symbol, {}).get(ts_close)

    def up_to(self, symbol: str, end: datetime) -> list[MinuteBar]:
        """All bars with ``ts_close <= end``, oldest first."""
        closes = self._closes.get(symbol, [])
        stop = bisect.bisect_right(closes, end)
        series = self._bars[symbol] if closes else {}
        return [series[ts] for ts in closes[:stop]]

    def last_close(self, symbol: str, at: datetime) -> float | None:
        """Close of the latest bar that closed at or before ``at``."""
        closes = self._closes.get(symbol, [])
        i = bisect.bisect_right(closes, at)
        return self._bars[symbol][closes[i - 1]].close if i else None


def five_second_bars(bar: MinuteBar) -> list[tuple[int, float, float, float, float, float]]:
    """The 12 five-second bars of a minute: (start epoch s, open, high, low, close, volume).

    The path runs open -> first extreme -> second extreme -> close (low first on an up minute), so
    the first bar opens at the open, the last closes at the close, and together they span exactly
    the minute's high and low; the volume is split evenly.
    """
    first, second = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
    anchors = [(0, bar.open), (4, first), (8, second), (12, bar.close)]
    points: list[float] = []
    for (i0, p0), (i1, p1) in itertools.pairwise(anchors):
        for k in range(i0, i1):
            points.append(p0 + (p1 - p0) * (k - i0) / (i1 - i0))
    points.append(bar.close)
    start_s = int(bar.ts_open.timestamp())
    volume_each = bar.volume / 12
    out = []
    for i in range(12):
        o, c = points[i], points[i + 1]
        volume = bar.volume - volume_each * 11 if i == 11 else volume_each
        out.append((start_s + 5 * i, o, max(o, c), min(o, c), c, volume))
    return out


# ----------------------------------------------------------------------------- historical


@dataclass(frozen=True)
class AggregatedBar:
    """A bar of any size built from minute bars; ``start`` is its first minute's open."""

    start: datetime
    is_daily: bool
    open: float
    high: float
    low: float
    close: float
    volume: float
    count: int

    @property
    def wap(self) -> float:
        """Typical price as the volume-weighted average stand-in."""
        return (self.high + self.low + self.close) / 3


_END_FORMATS = ("%Y%m%d %H:%M:%S", "%Y%m%d-%H:%M:%S")


def parse_end_datetime(text: str, clock: datetime) -> datetime:
    """endDateTime: ``""`` = the clock; ``YYYYmmdd HH:MM:SS [zone]`` or ``YYYYmmdd-HH:MM:SS``
    (UTC when no zone is given)."""
    text = text.strip()
    if not text:
        return clock
    parts = text.split(" ")
    zone: ZoneInfo | None = None
    if len(parts) == 3:
        text = " ".join(parts[:2])
        zone = ZoneInfo(parts[2])
    for fmt in _END_FORMATS:
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=zone or UTC).astimezone(UTC)
    raise HistoricalQueryError(f"cannot parse endDateTime {text!r}")


_DURATION = re.compile(r"^\s*(\d+)\s+([SDWMY])\s*$")
_BAR_SIZE = re.compile(r"^\s*(\d+)\s+(min|mins|hour|hours|day)\s*$")


def bar_size_minutes(bar_size: str) -> int | None:
    """Minutes per bar for ``"N min(s)"``/``"N hour(s)"``; None for ``"1 day"``."""
    match = _BAR_SIZE.match(bar_size)
    if match is None:
        raise HistoricalQueryError(f"unsupported bar size {bar_size!r}")
    n, unit = int(match.group(1)), match.group(2)
    if unit == "day":
        if n != 1:
            raise HistoricalQueryError(f"unsupported bar size {bar_size!r}")
        return None
    return n * 60 if unit.startswith("hour") else n


def in_regular_hours(bar: MinuteBar) -> bool:
    """Whether the minute lies inside 09:30-16:00 New York time."""
    opened = bar.ts_open.astimezone(NEW_YORK)
    return RTH_OPEN_NY <= opened.time() < RTH_CLOSE_NY


def ny_date(ts: datetime) -> date:
    """The New York calendar date of an instant."""
    return ts.astimezone(NEW_YORK).date()


def select_minutes(
    bars: Sequence[MinuteBar], *, end: datetime, duration: str, use_rth: bool
) -> list[MinuteBar]:
    """Minute bars of a request: ``N S``/``N W``/``N M``/``N Y`` are spans back from ``end``;
    ``N D`` is the last N New York dates that have bars (trading days, as IB counts them)."""
    match = _DURATION.match(duration)
    if match is None:
        raise HistoricalQueryError(f"unsupported duration {duration!r}")
    n, unit = int(match.group(1)), match.group(2)
    eligible = [b for b in bars if b.ts_close <= end and (not use_rth or in_regular_hours(b))]
    if unit == "D":
        dates = sorted({ny_date(b.ts_open) for b in eligible})[-n:] if n > 0 else []
        keep = set(dates)
        return [b for b in eligible if ny_date(b.ts_open) in keep]
    span_s = {"S": 1, "W": 7 * 86_400, "M": 31 * 86_400, "Y": 365 * 86_400}[unit] * n
    start = end - timedelta(seconds=span_s)
    return [b for b in eligible if b.ts_close > start]


def aggregate(bars: Sequence[MinuteBar], minutes: int | None) -> list[AggregatedBar]:
    """Minute bars into ``minutes``-minute buckets (UTC-aligned) or New York days (None)."""
    groups: dict[datetime | date, list[MinuteBar]] = {}
    for bar in bars:
        key: datetime | date
        if minutes is None:
            key = ny_date(bar.ts_open)
        else:
            epoch_min = int(bar.ts_open.timestamp()) // 60
            key = datetime.fromtimestamp((epoch_min - epoch_min % minutes) * 60, UTC)
        groups.setdefault(key, []).append(bar)
    out = []
    for key, members in groups.items():
        volume = sum(b.volume for b in members)
        out.append(
            AggregatedBar(
                start=key if isinstance(key, datetime) else members[0].ts_open,
                is_daily=minutes is None,
                open=members[0].open,
                high=max(b.high for b in members),
                low=min(b.low for b in members),
                close=members[-1].close,
                volume=volume,
                count=max(1, int(volume // 100)),
            )
        )
    return out


# ----------------------------------------------------------------------------- orders and fills


WORKING, FILLED, CANCELLED = "Submitted", "Filled", "Cancelled"


@dataclass
class PlacedOrder:
    """One order the fake accepted or rejected (a modify updates it in place).

    ``status`` is IB's: Submitted (working), Filled, Cancelled; rejected orders are Cancelled with
    a non-empty ``reject_reason`` (that is how ib_async shows a 201).
    """

    client_id: int
    order_id: int
    perm_id: int
    symbol: str
    action: str
    total_qty: float
    order_type: str
    order_ref: str
    account: str
    status: str
    filled_qty: float = 0.0
    avg_price: float = 0.0
    lmt_price: float | None = None
    tif: str = "DAY"
    slices_done: int = 0
    reject_reason: str = ""
    completed_time: datetime | None = None
    modify_count: int = 0

    @property
    def remaining_qty(self) -> float:
        """Shares still to fill."""
        return self.total_qty - self.filled_qty

    @property
    def is_working(self) -> bool:
        """Whether the order can still fill."""
        return self.status == WORKING

    @property
    def side(self) -> str:
        """Execution side: BOT for buys, SLD for sells."""
        return "BOT" if self.action == "BUY" else "SLD"


@dataclass(frozen=True)
class FakeExecution:
    """One execution as IB reports it; ``commission_usd`` is IBKR fixed pricing."""

    exec_id: str
    perm_id: int
    order_id: int
    client_id: int
    order_ref: str
    symbol: str
    side: str
    shares: float
    price: float
    time: datetime
    commission_usd: float
    account: str
    cum_qty: float
    avg_price: float
    realized_pnl_usd: float | None = None
    corrects: str | None = None
    """execId this execution corrects (same base, higher last component), if any."""

    @property
    def signed_shares(self) -> float:
        """Shares signed by side (+ bought, - sold)."""
        return self.shares if self.side == "BOT" else -self.shares


@dataclass(frozen=True)
class HistoricalRequestLog:
    """One reqHistoricalData as the fake saw it."""

    wall_time_s: float
    """``time.monotonic()`` when it arrived."""
    client_id: int
    req_id: int
    symbol: str
    bar_size: str
    duration: str
    end: str
    what_to_show: str
    use_rth: bool
    format_date: int
    refused_pacing: bool
    """Refused with 162 "pacing violation"."""
    bars_returned: int = 0


@dataclass
class PositionState:
    """Signed shares, average cost and realized PnL of one account/symbol."""

    shares: float = 0.0
    avg_cost: float = 0.0
    realized_pnl_usd: float = 0.0


def apply_to_position(pos: PositionState, signed_shares: float, price: float) -> float | None:
    """Book a trade into ``pos``; returns the realized PnL of the closed part (None if it only
    opened or added)."""
    before = pos.shares
    after = before + signed_shares
    if before == 0 or (before > 0) == (signed_shares > 0):
        total_cost = pos.avg_cost * abs(before) + price * abs(signed_shares)
        pos.shares = after
        pos.avg_cost = total_cost / abs(after) if after else 0.0
        return None
    closed = min(abs(signed_shares), abs(before))
    direction = 1.0 if before > 0 else -1.0
    realized = (price - pos.avg_cost) * closed * direction
    pos.realized_pnl_usd += realized
    pos.shares = after
    if after == 0:
        pos.avg_cost = 0.0
    elif (after > 0) != (before > 0):
        pos.avg_cost = price
    return realized


def ibkr_fixed_commission_usd(shares: float, per_share_usd: float, min_usd: float) -> float:
    """IBKR fixed pricing per execution: max(shares * per-share rate, minimum)."""
    return round(max(abs(shares) * per_share_usd, min_usd), 6)


def slice_target_qty(total_qty: float, fractions: Sequence[float], slices_done: int) -> float:
    """Cumulative quantity after slice ``slices_done`` (0-based); whole shares for whole orders."""
    cumulative = min(1.0, sum(fractions[: slices_done + 1]))
    target = total_qty * cumulative
    return float(round(target)) if float(total_qty).is_integer() else target


def limit_allows(order: PlacedOrder, price: float) -> bool:
    """Market orders always fill; limit orders only when marketable at ``price``."""
    if order.order_type != "LMT" or order.lmt_price is None:
        return True
    return price <= order.lmt_price if order.action == "BUY" else price >= order.lmt_price


def corrected_exec_id(exec_id: str, existing: Iterable[str]) -> str:
    """Next correction id: same base, last component bumped past every existing one."""
    base, _, last = exec_id.rpartition(".")
    if not base:
        raise FakeGatewayError(f"execId {exec_id!r} has no '.' component")
    taken = {e.rpartition(".")[2] for e in existing if e.rpartition(".")[0] == base}
    n = int(last) + 1
    while f"{n:02d}" in taken:
        n += 1
    return f"{base}.{n:02d}"


class Book:
    """Orders, executions, positions and cash of every account, with IB's id rules."""

    def __init__(
        self,
        *,
        accounts: tuple[str, ...],
        start_cash_usd: float,
        commission_per_share_usd: float,
        commission_min_usd: float,
    ) -> None:
        self.accounts = accounts
        self.start_cash_usd = start_cash_usd
        self.commission_per_share_usd = commission_per_share_usd
        self.commission_min_usd = commission_min_usd
        self.orders: list[PlacedOrder] = []
        self.executions: list[FakeExecution] = []
        self.positions: dict[tuple[str, str], PositionState] = {}
        self.cash_usd: dict[str, float] = dict.fromkeys(accounts, start_cash_usd)
        self.last_fill_price: dict[str, float] = {}
        self.superseded: set[str] = set()
        self._max_order_id: dict[int, int] = {}
        self._perm_ids = itertools.count(1_700_000_001)
        self._exec_numbers = itertools.count(0x6566B7C1)

    # ------------------------------------------------------------------------- orders

    def next_order_id(self, client_id: int) -> int:
        """nextValidId for a client: one past the highest order id it ever used."""
        return self._max_order_id.get(client_id, 0) + 1

    def is_fresh_order_id(self, client_id: int, order_id: int) -> bool:
        """Whether ``order_id`` is greater than every id the client used before."""
        return order_id > self._max_order_id.get(client_id, 0)

    def add_order(self, order: PlacedOrder) -> PlacedOrder:
        """Record a new order (its id becomes the client's highest) with a fresh permId."""
        order.perm_id = next(self._perm_ids)
        self._max_order_id[order.client_id] = order.order_id
        self.orders.append(order)
        return order

    def find_order(self, client_id: int, order_id: int) -> PlacedOrder | None:
        """The order a client placed under ``order_id``, if any."""
        for order in self.orders:
            if order.client_id == client_id and order.order_id == order_id:
                return order
        return None

    def order_by_perm_id(self, perm_id: int) -> PlacedOrder:
        """The order with ``perm_id``."""
        for order in self.orders:
            if order.perm_id == perm_id:
                return order
        raise FakeGatewayError(f"unknown permId {perm_id}")

    def finish(self, order: PlacedOrder, status: str, at: datetime, reason: str = "") -> None:
        """Move ``order`` to a final status (Filled, Cancelled; a reason marks a rejection)."""
        order.status, order.completed_time = status, at
        if reason:
            order.reject_reason = reason

    # ------------------------------------------------------------------------- executions

    def commission_usd(self, shares: float) -> float:
        """Commission of one execution of ``shares``."""
        return ibkr_fixed_commission_usd(
            shares, self.commission_per_share_usd, self.commission_min_usd
        )

    def execution(self, exec_id: str) -> FakeExecution:
        """The (latest) execution with ``exec_id``."""
        for execution in reversed(self.executions):
            if execution.exec_id == exec_id:
                return execution
        raise FakeGatewayError(f"unknown execId {exec_id!r}")

    def execute(
        self, order: PlacedOrder, shares: float, price: float, at: datetime
    ) -> FakeExecution:
        """Book one execution of ``order``: position, cash, the order's fill state."""
        signed = shares if order.action == "BUY" else -shares
        commission = self.commission_usd(shares)
        pos = self.positions.setdefault((order.account, order.symbol), PositionState())
        realized = apply_to_position(pos, signed, price)
        self.cash_usd[order.account] -= signed * price + commission
        self.last_fill_price[order.symbol] = price
        cum_qty = order.filled_qty + shares
        order.avg_price = (order.avg_price * order.filled_qty + price * shares) / cum_qty
        order.filled_qty = cum_qty
        if order.filled_qty >= order.total_qty - 1e-9:
            self.finish(order, FILLED, at)
        execution = FakeExecution(
            exec_id=f"0000e0d5.{next(self._exec_numbers):08x}.01.01",
            perm_id=order.perm_id,
            order_id=order.order_id,
            client_id=order.client_id,
            order_ref=order.order_ref,
            symbol=order.symbol,
            side=order.side,
            shares=shares,
            price=price,
            time=at,
            commission_usd=commission,
            account=order.account,
            cum_qty=order.filled_qty,
            avg_price=order.avg_price,
            realized_pnl_usd=None if realized is None else realized - commission,
        )
        self.executions.append(execution)
        return execution

    def correct(self, exec_id: str, *, shares: float | None, price: float | None) -> FakeExecution:
        """Supersede ``exec_id`` by a correction with new shares/price; rebuilds the book."""
        old = self.execution(exec_id)
        new_shares = old.shares if shares is None else float(shares)
        new_price = old.price if price is None else float(price)
        self.superseded.add(exec_id)
        kept = [
            e
            for e in self.executions
            if e.perm_id == old.perm_id and e.exec_id not in self.superseded
        ]
        cum_qty = sum(e.shares for e in kept) + new_shares
        notional = sum(e.shares * e.price for e in kept) + new_shares * new_price
        correction = replace(
            old,
            exec_id=corrected_exec_id(exec_id, (e.exec_id for e in self.executions)),
            shares=new_shares,
            price=new_price,
            commission_usd=self.commission_usd(new_shares),
            cum_qty=cum_qty,
            avg_price=notional / cum_qty if cum_qty else 0.0,
            realized_pnl_usd=None,
            corrects=exec_id,
        )
        self.executions.append(correction)
        order = self.order_by_perm_id(old.perm_id)
        order.filled_qty, order.avg_price = correction.cum_qty, correction.avg_price
        self._rebuild()
        return correction

    def _rebuild(self) -> None:
        """Recompute positions and cash from the executions not superseded by a correction."""
        self.positions.clear()
        self.cash_usd = dict.fromkeys(self.accounts, self.start_cash_usd)
        for e in self.executions:
            if e.exec_id in self.superseded:
                continue
            pos = self.positions.setdefault((e.account, e.symbol), PositionState())
            apply_to_position(pos, e.signed_shares, e.price)
            self.cash_usd[e.account] -= e.signed_shares * e.price + e.commission_usd

    def executions_matching(
        self,
        *,
        day: date,
        client_id: int = 0,
        account: str = "",
        symbol: str = "",
        side: str = "",
        since: datetime | None = None,
    ) -> list[FakeExecution]:
        """reqExecutions: the executions of New York ``day`` passing an ExecutionFilter
        (clientId 0 and empty strings match everything; side BUY/SELL or BOT/SLD)."""
        wanted_side = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        return [
            e
            for e in self.executions
            if (client_id == 0 or e.client_id == client_id)
            and (not account or e.account == account)
            and (not symbol or e.symbol == symbol)
            and (not wanted_side or e.side == wanted_side)
            and (since is None or e.time >= since)
            and ny_date(e.time) == day
        ]

    # ------------------------------------------------------------------------- accounts

    def held(self, account: str) -> list[tuple[str, PositionState]]:
        """(symbol, position) of the account's non-zero positions, by symbol."""
        return [
            (sym, pos)
            for (acct, sym), pos in sorted(self.positions.items())
            if acct == account and pos.shares != 0
        ]

    def account_values(
        self, account: str, mark_price: Callable[[str, PositionState], float]
    ) -> list[tuple[str, str, str]]:
        """(key, value, currency) of an account, positions marked with ``mark_price``."""
        cash = self.cash_usd[account]
        market_value = unrealized = realized = gross = 0.0
        for (acct, symbol), pos in self.positions.items():
            if acct != account:
                continue
            mark = mark_price(symbol, pos)
            market_value += pos.shares * mark
            gross += abs(pos.shares * mark)
            unrealized += (mark - pos.avg_cost) * pos.shares
            realized += pos.realized_pnl_usd
        net = cash + market_value
        money = {
            "NetLiquidation": net,
            "TotalCashValue": cash,
            "CashBalance": cash,
            "GrossPositionValue": gross,
            "EquityWithLoanValue": net,
            "AvailableFunds": net - 0.25 * gross,
            "BuyingPower": 4.0 * (net - 0.25 * gross),
            "UnrealizedPnL": unrealized,
            "RealizedPnL": realized,
        }
        values = [("AccountCode", account, ""), ("AccountType", "INDIVIDUAL", "")]
        values += [(key, f"{value:.2f}", "USD") for key, value in money.items()]
        return values
