"""TWS API wire format for the fake gateway: framing, field encoding and message builders.

Everything here is pure: builders return the field list of one server->client message (message id
first) exactly as ib_async 2.1's decoder reads it at the negotiated server version; ``frame`` turns
it into bytes. Layouts follow /work/shared/ibkr-wire-facts.md and ib_async's ``decoder.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

Field = str | int | float | bool | None
"""One wire field before encoding."""

API_PREFIX = b"API\x00"
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
"""IB's 'no value' double (ib_async maps it to 0.0 in commission reports)."""

# server -> client message ids
TICK_PRICE, ERR_MSG, OPEN_ORDER, ORDER_STATUS = 1, 4, 5, 3
ACCT_VALUE, PORTFOLIO_VALUE, ACCT_UPDATE_TIME, NEXT_VALID_ID = 6, 7, 8, 9
CONTRACT_DATA, EXECUTION_DATA, MANAGED_ACCTS, HISTORICAL_DATA = 10, 11, 15, 17
CURRENT_TIME, REAL_TIME_BARS, CONTRACT_DATA_END, OPEN_ORDER_END = 49, 50, 52, 53
ACCT_DOWNLOAD_END, EXECUTION_DATA_END, COMMISSION_REPORT = 54, 55, 59
POSITION_DATA, POSITION_END, ACCOUNT_SUMMARY, ACCOUNT_SUMMARY_END = 61, 62, 63, 64
ACCOUNT_UPDATE_MULTI, ACCOUNT_UPDATE_MULTI_END = 73, 74
COMPLETED_ORDER, COMPLETED_ORDERS_END = 101, 102

# server versions at which layouts change (ib_async decoder)
SV_NO_FA_PROFILE = 177
SV_PENDING_PRICE_REVISION = 178
SV_ADVANCED_REJECT_JSON = 166
SV_MANUAL_CANCEL_TIME = 169


class WireFormatError(ValueError):
    """Bytes from the client do not follow the TWS framing."""


# ----------------------------------------------------------------------------- encoding


def encode_field(value: Field) -> str:
    """One field as TWS text: bools as 1/0, None as empty, floats via ``str``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def encode_payload(fields: Sequence[Field]) -> bytes:
    """Fields joined as NUL-terminated UTF-8 text (the payload of one frame)."""
    return "".join(encode_field(f) + "\0" for f in fields).encode()


def frame(fields: Sequence[Field]) -> bytes:
    """One complete message: 4-byte big-endian length, then the payload."""
    payload = encode_payload(fields)
    return struct.pack(">I", len(payload)) + payload


def decode_payload(payload: bytes) -> list[str]:
    """Fields of one payload; the empty string after the last NUL is dropped (as ib_async does)."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


def read_length(header: bytes) -> int:
    """Payload length from the 4-byte frame header."""
    if len(header) != 4:
        raise WireFormatError(f"frame header must be 4 bytes, got {len(header)}")
    return int(struct.unpack(">I", header)[0])


def parse_version_range(text: str) -> tuple[int, int]:
    """``"v157..178"`` (optionally followed by ``" +PACEAPI"``) -> (min, max) client versions."""
    head = text.strip().split(" ", 1)[0]
    if not head.startswith("v") or ".." not in head:
        raise WireFormatError(f"bad client version string {text!r}")
    low, high = head[1:].split("..", 1)
    return int(low), int(high)


def ib_datetime_text(ts: datetime) -> str:
    """``YYYYmmdd HH:MM:SS UTC`` for an aware datetime (ib_async parses it as tz-aware UTC)."""
    return ts.astimezone(UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"


def epoch_seconds(ts: datetime) -> int:
    """Whole POSIX seconds of an aware datetime."""
    return int(ts.timestamp())


# ----------------------------------------------------------------------------- contract


@dataclass(frozen=True)
class StockContract:
    """The fake's one instrument kind: a US stock routed SMART in USD."""

    con_id: int
    symbol: str
    exchange: str = "SMART"
    primary_exchange: str = "NASDAQ"
    currency: str = "USD"
    trading_class: str = "NMS"

    def decoder_fields(self, exchange: str | None = None) -> list[Field]:
        """The 11 contract fields of openOrder/execDetails/completedOrder/position."""
        return [
            self.con_id,
            self.symbol,
            "STK",
            "",
            0.0,
            "",
            "",
            self.exchange if exchange is None else exchange,
            self.currency,
            self.symbol,
            self.trading_class,
        ]


# ----------------------------------------------------------------------------- handshake


def server_version_fields(server_version: int, connection_time: datetime) -> list[Field]:
    """Handshake reply: exactly two fields, server version and connection time."""
    return [server_version, ib_datetime_text(connection_time)]


def next_valid_id_fields(order_id: int) -> list[Field]:
    """nextValidId (9): strictly 3 fields."""
    return [NEXT_VALID_ID, 1, order_id]


def managed_accounts_fields(accounts: Sequence[str]) -> list[Field]:
    """managedAccounts (15): strictly 3 fields, comma-separated list."""
    return [MANAGED_ACCTS, 1, ",".join(accounts)]


def error_fields(req_id: int, code: int, message: str, server_version: int) -> list[Field]:
    """error (4); the advancedOrderRejectJson field is required from server version 166."""
    fields: list[Field] = [ERR_MSG, 2, req_id, code, message]
    if server_version >= SV_ADVANCED_REJECT_JSON:
        fields.append("")
    return fields


def current_time_fields(epoch_s: int) -> list[Field]:
    """currentTime (49)."""
    return [CURRENT_TIME, 1, epoch_s]


# ----------------------------------------------------------------------------- contracts


def contract_details_fields(req_id: int, contract: StockContract) -> list[Field]:
    """contractDetails (10) at server version >= 164 (no version field, no secIds)."""
    return [
        CONTRACT_DATA,
        req_id,
        contract.symbol,
        "STK",
        "",  # lastTradeDateOrContractMonth
        0.0,  # strike
        "",  # right
        contract.exchange,
        contract.currency,
        contract.symbol,  # localSymbol
        contract.trading_class,  # marketName
        contract.trading_class,
        contract.con_id,
        0.01,  # minTick
        "",  # multiplier
        "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,LMT,MKT,MOC,MOO,STP",  # orderTypes
        f"SMART,{contract.primary_exchange}",  # validExchanges
        1,  # priceMagnifier
        0,  # underConId
        f"{contract.symbol} FAKE INC",  # longName
        contract.primary_exchange,
        "",  # contractMonth
        "Technology",
        "Software",
        "Applications",
        "US/Eastern",
        "",  # tradingHours
        "",  # liquidHours
        "",  # evRule
        "",  # evMultiplier (int field: empty, never "1.0")
        0,  # numSecIds
        1,  # aggGroup
        "",  # underSymbol
        "",  # underSecType
        "26",  # marketRuleIds
        "",  # realExpirationDate
        "COMMON",  # stockType
        0.0001,  # minSize
        0.0001,  # sizeIncrement
        100.0,  # suggestedSizeIncrement
    ]


def contract_details_end_fields(req_id: int) -> list[Field]:
    """contractDetailsEnd (52)."""
    return [CONTRACT_DATA_END, 1, req_id]


# ----------------------------------------------------------------------------- orders


@dataclass(frozen=True)
class OrderView:
    """The order fields the fake echoes back in openOrder and completedOrder."""

    order_id: int
    client_id: int
    perm_id: int
    action: str
    total_qty: float
    order_type: str
    lmt_price: float | None
    tif: str
    account: str
    order_ref: str
    status: str
    filled_qty: float = 0.0
    completed_time: str = ""
    completed_status: str = ""


def open_order_fields(
    order: OrderView, contract: StockContract, server_version: int
) -> list[Field]:
    """openOrder (5): 127 fields at server version 178, 128 at 176 (faProfile)."""
    fields: list[Field] = [OPEN_ORDER, order.order_id]
    fields += contract.decoder_fields()
    fields += [
        order.action,
        order.total_qty,
        order.order_type,
        order.lmt_price,
        None,  # auxPrice
        order.tif,
        "",  # ocaGroup
        order.account,
        "O",  # openClose
        0,  # origin
        order.order_ref,
        order.client_id,
        order.perm_id,
        0,  # outsideRth
        0,  # hidden
        None,  # discretionaryAmt
        "",  # goodAfterTime
        "",  # sharesAllocation (skipped by the decoder)
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
    ]
    if server_version < SV_NO_FA_PROFILE:
        fields.append("")  # faProfile
    fields += [""] * 29  # modelCode ... deltaNeutralAuxPrice (deltaNeutralOrderType empty)
    fields += [""] * 7  # continuousUpdate ... comboLegsDescrip
    fields += [0, 0, 0]  # numComboLegs, numOrderComboLegs, numSmartComboRoutingParams
    fields += ["", "", ""]  # scale: init, subs, increment (empty: no scale block)
    fields += [""]  # hedgeType
    fields += ["", "", "", "", 0]  # optOutSmartRouting ... notHeld, dncPresent
    fields += [""]  # algoStrategy
    fields += ["", 0, order.status]  # solicited, whatIf, orderState.status
    fields += [""] * 16  # initMarginBefore ... warningText, randomizeSize, randomizePrice
    fields += [0]  # numConditions
    fields += [""] * 16  # adjustedOrderType ... usePriceMgmtAlgo
    fields += ["", "", ""]  # duration, postToAts, autoCancelParent
    fields += [""] * 5  # minTradeQty ... midOffsetAtHalf
    return fields


def open_order_end_fields() -> list[Field]:
    """openOrderEnd (53)."""
    return [OPEN_ORDER_END, 1]


def order_status_fields(
    *,
    order_id: int,
    status: str,
    filled: float,
    remaining: float,
    avg_fill_price: float,
    perm_id: int,
    last_fill_price: float,
    client_id: int,
) -> list[Field]:
    """orderStatus (3): no version field; clientId must be the owning connection's."""
    return [
        ORDER_STATUS,
        order_id,
        status,
        filled,
        remaining,
        avg_fill_price,
        perm_id,
        0,  # parentId
        last_fill_price,
        client_id,
        "",  # whyHeld
        0.0,  # mktCapPrice
    ]


def completed_order_fields(
    order: OrderView, contract: StockContract, server_version: int
) -> list[Field]:
    """completedOrder (101), laid out as ib_async's ``Decoder.completedOrder`` reads it."""
    fields: list[Field] = [COMPLETED_ORDER]
    fields += contract.decoder_fields()
    fields += [
        order.action,
        order.total_qty,
        order.order_type,
        order.lmt_price,
        None,  # auxPrice
        order.tif,
        "",  # ocaGroup
        order.account,
        "O",  # openClose
        0,  # origin
        order.order_ref,
        order.perm_id,
        0,  # outsideRth
        0,  # hidden
        None,  # discretionaryAmt
        "",  # goodAfterTime
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
    ]
    if server_version < SV_NO_FA_PROFILE:
        fields.append("")  # faProfile
    fields += [""] * 23  # modelCode ... deltaNeutralAuxPrice (deltaNeutralOrderType empty)
    fields += [
        ""
    ] * 5  # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent, comboLegsDescrip
    fields += [0, 0, 0]  # numComboLegs, numOrderComboLegs, numSmartComboRoutingParams
    fields += ["", "", ""]  # scale: init, subs, increment
    fields += [""]  # hedgeType
    fields += ["", "", "", 0]  # clearingAccount, clearingIntent, notHeld, dncPresent
    fields += [""]  # algoStrategy
    fields += ["", order.status, "", ""]  # solicited, status, randomizeSize, randomizePrice
    fields += [0]  # numConditions
    fields += [
        "",  # trailStopPrice
        "",  # lmtPriceOffset
        "",  # cashQty
        "",  # dontUseAutoPriceForHedge
        "",  # isOmsContainer
        "",  # autoCancelDate
        order.filled_qty,
        "",  # refFuturesConId
        "",  # autoCancelParent
        "",  # shareholder
        "",  # imbalanceOnly
        "",  # routeMarketableToBbo
        "",  # parentPermId
        order.completed_time,
        order.completed_status,
    ]
    fields += [""] * 5  # minTradeQty ... midOffsetAtHalf (server version >= 170)
    return fields


def completed_orders_end_fields() -> list[Field]:
    """completedOrdersEnd (102): no further fields."""
    return [COMPLETED_ORDERS_END]


# ----------------------------------------------------------------------------- executions


@dataclass(frozen=True)
class ExecutionView:
    """The execution fields of one execDetails message."""

    order_id: int
    client_id: int
    perm_id: int
    exec_id: str
    time: datetime
    account: str
    side: str
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    order_ref: str
    execution_exchange: str = "ISLAND"


def exec_details_fields(
    req_id: int, execution: ExecutionView, contract: StockContract, server_version: int
) -> list[Field]:
    """execDetails (11): 31 fields, plus pendingPriceRevision from server version 178."""
    fields: list[Field] = [EXECUTION_DATA, req_id, execution.order_id]
    fields += contract.decoder_fields(exchange=execution.execution_exchange)
    fields += [
        execution.exec_id,
        ib_datetime_text(execution.time),
        execution.account,
        execution.execution_exchange,
        execution.side,
        execution.shares,
        execution.price,
        execution.perm_id,
        execution.client_id,
        0,  # liquidation
        execution.cum_qty,
        execution.avg_price,
        execution.order_ref,
        "",  # evRule
        "",  # evMultiplier
        "",  # modelCode
        1,  # lastLiquidity (added liquidity)
    ]
    if server_version >= SV_PENDING_PRICE_REVISION:
        fields.append(0)
    return fields


def exec_details_end_fields(req_id: int) -> list[Field]:
    """execDetailsEnd (55)."""
    return [EXECUTION_DATA_END, 1, req_id]


def commission_report_fields(
    exec_id: str, commission_usd: float, realized_pnl_usd: float | None
) -> list[Field]:
    """commissionReport (59): strictly 8 fields; realized PnL unset for opening fills."""
    realized: Field = UNSET_DOUBLE_TEXT if realized_pnl_usd is None else realized_pnl_usd
    return [COMMISSION_REPORT, 1, exec_id, commission_usd, "USD", realized, "", ""]


# ----------------------------------------------------------------------------- account


def position_fields(
    account: str, contract: StockContract, position: float, avg_cost: float
) -> list[Field]:
    """position (61): strictly 16 fields."""
    return [
        POSITION_DATA,
        3,
        account,
        *contract.decoder_fields(exchange=contract.primary_exchange),
        position,
        avg_cost,
    ]


def position_end_fields() -> list[Field]:
    """positionEnd (62)."""
    return [POSITION_END, 1]


def update_account_value_fields(key: str, value: str, currency: str, account: str) -> list[Field]:
    """updateAccountValue (6)."""
    return [ACCT_VALUE, 2, key, value, currency, account]


def update_portfolio_fields(
    *,
    contract: StockContract,
    position: float,
    market_price: float,
    market_value: float,
    average_cost: float,
    unrealized_pnl: float,
    realized_pnl: float,
    account: str,
) -> list[Field]:
    """updatePortfolio (7): strictly 20 fields (primaryExchange where others have exchange)."""
    contract_fields = contract.decoder_fields(exchange=contract.primary_exchange)
    return [
        PORTFOLIO_VALUE,
        8,
        *contract_fields,
        position,
        market_price,
        market_value,
        average_cost,
        unrealized_pnl,
        realized_pnl,
        account,
    ]


def update_account_time_fields(hh_mm: str) -> list[Field]:
    """updateAccountTime (8)."""
    return [ACCT_UPDATE_TIME, 1, hh_mm]


def account_download_end_fields(account: str) -> list[Field]:
    """accountDownloadEnd (54)."""
    return [ACCT_DOWNLOAD_END, 1, account]


def account_update_multi_fields(
    req_id: int, account: str, model_code: str, key: str, value: str, currency: str
) -> list[Field]:
    """accountUpdateMulti (73)."""
    return [ACCOUNT_UPDATE_MULTI, 1, req_id, account, model_code, key, value, currency]


def account_update_multi_end_fields(req_id: int) -> list[Field]:
    """accountUpdateMultiEnd (74)."""
    return [ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def account_summary_fields(
    req_id: int, account: str, tag: str, value: str, currency: str
) -> list[Field]:
    """accountSummary (63)."""
    return [ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end_fields(req_id: int) -> list[Field]:
    """accountSummaryEnd (64)."""
    return [ACCOUNT_SUMMARY_END, 1, req_id]


# ----------------------------------------------------------------------------- market data


@dataclass(frozen=True)
class HistoricalRow:
    """One bar of a historicalData reply; ``date`` already formatted."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    bar_count: int


def historical_data_fields(
    req_id: int, start_text: str, end_text: str, rows: Sequence[HistoricalRow]
) -> list[Field]:
    """historicalData (17): no version field; barCount an int."""
    fields: list[Field] = [HISTORICAL_DATA, req_id, start_text, end_text, len(rows)]
    for row in rows:
        fields += [
            row.date,
            row.open,
            row.high,
            row.low,
            row.close,
            row.volume,
            row.wap,
            int(row.bar_count),
        ]
    return fields


def realtime_bar_fields(
    req_id: int,
    *,
    time_epoch_s: int,
    open_: float,
    high: float,
    low: float,
    close: float,
    volume: float,
    wap: float,
    count: int,
) -> list[Field]:
    """realtimeBar (50): time is the 5-second bar's START in epoch seconds; count an int."""
    return [
        REAL_TIME_BARS,
        3,
        req_id,
        time_epoch_s,
        open_,
        high,
        low,
        close,
        volume,
        wap,
        int(count),
    ]
