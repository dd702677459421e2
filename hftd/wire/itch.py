"""NASDAQ TotalView-ITCH 5.0 messages (sans-IO).

Every message starts with the same 11-byte header::

    0      1             3                5                       11
    +------+-------------+----------------+------------------------+
    | type | stock_locate| tracking_number| timestamp (u48, ns)    |
    +------+-------------+----------------+------------------------+

Prices are u32 with 4 implied decimals. Alpha fields are space padded and
exposed here without their padding, so decode->encode is byte-exact for any
well-formed message. Every ITCH 5.0 message type is decoded (PROTOCOLS.md's
two tables: 23 types), those this venue never publishes too, so NASDAQ files
and real feeds round-trip; a type byte that is not ITCH 5.0 at all decodes to
`Unknown`, which keeps its bytes. A known type of the wrong size is a
`RemoteProtocolError`.

The types the book and the strategies do not use (``Y L V W K J h Q B I N O``)
still carry a sequence number: `hftd.feed.normalize` turns each into a
sequence-only record so that no consumer ever sees a false gap.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import msgspec

from hftd.wire.errors import RemoteProtocolError
from hftd.wire.layout import Codec, Layout

_HEADER = [("stock_locate", "u16"), ("tracking_number", "u16"), ("timestamp", "u48")]


class _Msg(msgspec.Struct, frozen=True, gc=False):
    stock_locate: int
    tracking_number: int
    timestamp: int


class SystemEvent(_Msg, frozen=True, gc=False):
    """S: O start of messages, S start of system hours, Q start of market hours,
    M end of market hours, E end of system hours, C end of messages."""

    event_code: str


class StockDirectory(_Msg, frozen=True, gc=False):
    """R: one per listed symbol at the start of the day."""

    stock: str
    market_category: str
    financial_status: str
    round_lot_size: int
    round_lots_only: str
    issue_classification: str
    issue_sub_type: str
    authenticity: str
    short_sale_threshold: str
    ipo_flag: str
    luld_tier: str
    etp_flag: str
    etp_leverage: int
    inverse: str


class TradingAction(_Msg, frozen=True, gc=False):
    """H: trading state H halted, P paused, Q quotation only, T trading."""

    stock: str
    trading_state: str
    reserved: str
    reason: str


class RegShoRestriction(_Msg, frozen=True, gc=False):
    """Y: short-sale price test restriction (Reg SHO): 0 none, 1 in effect, 2 remains."""

    stock: str
    action: str


class MarketParticipantPosition(_Msg, frozen=True, gc=False):
    """L: a market participant's status in a stock (primary MM, mode, state)."""

    mpid: str
    stock: str
    primary_market_maker: str
    market_maker_mode: str
    participant_state: str


class AddOrder(_Msg, frozen=True, gc=False):
    """A: a displayed order joined the book."""

    order_ref: int
    side: str
    shares: int
    stock: str
    price: int


class AddOrderMPID(_Msg, frozen=True, gc=False):
    """F: as A, with the member's attribution."""

    order_ref: int
    side: str
    shares: int
    stock: str
    price: int
    attribution: str


class OrderExecuted(_Msg, frozen=True, gc=False):
    """E: a resting order traded at its own price."""

    order_ref: int
    executed_shares: int
    match_number: int


class OrderExecutedWithPrice(_Msg, frozen=True, gc=False):
    """C: a resting order traded at a price other than its own."""

    order_ref: int
    executed_shares: int
    match_number: int
    printable: str
    execution_price: int


class OrderCancel(_Msg, frozen=True, gc=False):
    """X: part of a resting order was cancelled."""

    order_ref: int
    cancelled_shares: int


class OrderDelete(_Msg, frozen=True, gc=False):
    """D: the rest of an order left the book."""

    order_ref: int


class OrderReplace(_Msg, frozen=True, gc=False):
    """U: an order was replaced by a new one (new reference, priority lost)."""

    original_ref: int
    new_ref: int
    shares: int
    price: int


class Trade(_Msg, frozen=True, gc=False):
    """P: an execution against a non-displayed order."""

    order_ref: int
    side: str
    shares: int
    stock: str
    price: int
    match_number: int


class MwcbDeclineLevel(_Msg, frozen=True, gc=False):
    """V: the day's market-wide circuit breaker levels (prices with 8 implied decimals)."""

    level1: int
    level2: int
    level3: int


class MwcbStatus(_Msg, frozen=True, gc=False):
    """W: a market-wide circuit breaker level was breached (1, 2 or 3)."""

    breached_level: str


class IpoQuotingPeriod(_Msg, frozen=True, gc=False):
    """K: an IPO's anticipated quotation release time (s since midnight) and price."""

    stock: str
    release_time: int
    release_qualifier: str  # A anticipated, C cancelled/postponed
    ipo_price: int


class LuldAuctionCollar(_Msg, frozen=True, gc=False):
    """J: the collars within which a paused security may reopen."""

    stock: str
    reference_price: int
    upper_price: int
    lower_price: int
    extension: int


class OperationalHalt(_Msg, frozen=True, gc=False):
    """h: a market center halted (H) or resumed (T) the stock."""

    stock: str
    market_code: str  # Q Nasdaq, B BX, X PSX
    action: str


class CrossTrade(_Msg, frozen=True, gc=False):
    """Q: the opening, closing or halt cross printed (shares may be 0)."""

    shares: int
    stock: str
    cross_price: int
    match_number: int
    cross_type: str  # O opening, C closing, H halt/IPO, I intraday


class BrokenTrade(_Msg, frozen=True, gc=False):
    """B: an execution (by its match number) was broken."""

    match_number: int


class Noii(_Msg, frozen=True, gc=False):
    """I: net order imbalance indicator before a cross."""

    paired_shares: int
    imbalance_shares: int
    imbalance_direction: str
    stock: str
    far_price: int
    near_price: int
    reference_price: int
    cross_type: str
    variation_indicator: str


class RetailInterest(_Msg, frozen=True, gc=False):
    """N: retail price improvement interest on the bid, the ask, both or none."""

    stock: str
    interest_flag: str


class DirectListingPriceDiscovery(_Msg, frozen=True, gc=False):
    """O: direct listing with capital raise price discovery."""

    stock: str
    open_eligibility: str
    min_allowable_price: int
    max_allowable_price: int
    near_execution_price: int
    near_execution_time: int
    lower_price_collar: int
    upper_price_collar: int


class Unknown(msgspec.Struct, frozen=True, gc=False):
    """A message type this codec does not interpret; its bytes are kept."""

    raw: bytes


ItchMessage = (
    SystemEvent
    | StockDirectory
    | TradingAction
    | RegShoRestriction
    | MarketParticipantPosition
    | AddOrder
    | AddOrderMPID
    | OrderExecuted
    | OrderExecutedWithPrice
    | OrderCancel
    | OrderDelete
    | OrderReplace
    | Trade
    | MwcbDeclineLevel
    | MwcbStatus
    | IpoQuotingPeriod
    | LuldAuctionCollar
    | OperationalHalt
    | CrossTrade
    | BrokenTrade
    | Noii
    | RetailInterest
    | DirectListingPriceDiscovery
    | Unknown
)


def _layout(cls: type[Any], t: bytes, body: list[tuple[str, str]]) -> Layout:
    return Layout(cls, t, _HEADER + body)


LAYOUTS = [
    _layout(SystemEvent, b"S", [("event_code", "char")]),
    _layout(
        StockDirectory,
        b"R",
        [
            ("stock", "alpha8"),
            ("market_category", "char"),
            ("financial_status", "char"),
            ("round_lot_size", "u32"),
            ("round_lots_only", "char"),
            ("issue_classification", "char"),
            ("issue_sub_type", "alpha2"),
            ("authenticity", "char"),
            ("short_sale_threshold", "char"),
            ("ipo_flag", "char"),
            ("luld_tier", "char"),
            ("etp_flag", "char"),
            ("etp_leverage", "u32"),
            ("inverse", "char"),
        ],
    ),
    _layout(
        TradingAction,
        b"H",
        [
            ("stock", "alpha8"),
            ("trading_state", "char"),
            ("reserved", "char"),
            ("reason", "alpha4"),
        ],
    ),
    _layout(RegShoRestriction, b"Y", [("stock", "alpha8"), ("action", "char")]),
    _layout(
        MarketParticipantPosition,
        b"L",
        [
            ("mpid", "alpha4"),
            ("stock", "alpha8"),
            ("primary_market_maker", "char"),
            ("market_maker_mode", "char"),
            ("participant_state", "char"),
        ],
    ),
    _layout(
        AddOrder,
        b"A",
        [
            ("order_ref", "u64"),
            ("side", "char"),
            ("shares", "u32"),
            ("stock", "alpha8"),
            ("price", "u32"),
        ],
    ),
    _layout(
        AddOrderMPID,
        b"F",
        [
            ("order_ref", "u64"),
            ("side", "char"),
            ("shares", "u32"),
            ("stock", "alpha8"),
            ("price", "u32"),
            ("attribution", "alpha4"),
        ],
    ),
    _layout(
        OrderExecuted,
        b"E",
        [("order_ref", "u64"), ("executed_shares", "u32"), ("match_number", "u64")],
    ),
    _layout(
        OrderExecutedWithPrice,
        b"C",
        [
            ("order_ref", "u64"),
            ("executed_shares", "u32"),
            ("match_number", "u64"),
            ("printable", "char"),
            ("execution_price", "u32"),
        ],
    ),
    _layout(OrderCancel, b"X", [("order_ref", "u64"), ("cancelled_shares", "u32")]),
    _layout(OrderDelete, b"D", [("order_ref", "u64")]),
    _layout(
        OrderReplace,
        b"U",
        [("original_ref", "u64"), ("new_ref", "u64"), ("shares", "u32"), ("price", "u32")],
    ),
    _layout(
        Trade,
        b"P",
        [
            ("order_ref", "u64"),
            ("side", "char"),
            ("shares", "u32"),
            ("stock", "alpha8"),
            ("price", "u32"),
            ("match_number", "u64"),
        ],
    ),
    _layout(MwcbDeclineLevel, b"V", [("level1", "u64"), ("level2", "u64"), ("level3", "u64")]),
    _layout(MwcbStatus, b"W", [("breached_level", "char")]),
    _layout(
        IpoQuotingPeriod,
        b"K",
        [
            ("stock", "alpha8"),
            ("release_time", "u32"),
            ("release_qualifier", "char"),
            ("ipo_price", "u32"),
        ],
    ),
    _layout(
        LuldAuctionCollar,
        b"J",
        [
            ("stock", "alpha8"),
            ("reference_price", "u32"),
            ("upper_price", "u32"),
            ("lower_price", "u32"),
            ("extension", "u32"),
        ],
    ),
    _layout(
        OperationalHalt, b"h", [("stock", "alpha8"), ("market_code", "char"), ("action", "char")]
    ),
    _layout(
        CrossTrade,
        b"Q",
        [
            ("shares", "u64"),
            ("stock", "alpha8"),
            ("cross_price", "u32"),
            ("match_number", "u64"),
            ("cross_type", "char"),
        ],
    ),
    _layout(BrokenTrade, b"B", [("match_number", "u64")]),
    _layout(
        Noii,
        b"I",
        [
            ("paired_shares", "u64"),
            ("imbalance_shares", "u64"),
            ("imbalance_direction", "char"),
            ("stock", "alpha8"),
            ("far_price", "u32"),
            ("near_price", "u32"),
            ("reference_price", "u32"),
            ("cross_type", "char"),
            ("variation_indicator", "char"),
        ],
    ),
    _layout(RetailInterest, b"N", [("stock", "alpha8"), ("interest_flag", "char")]),
    _layout(
        DirectListingPriceDiscovery,
        b"O",
        [
            ("stock", "alpha8"),
            ("open_eligibility", "char"),
            ("min_allowable_price", "u32"),
            ("max_allowable_price", "u32"),
            ("near_execution_price", "u32"),
            ("near_execution_time", "u64"),
            ("lower_price_collar", "u32"),
            ("upper_price_collar", "u32"),
        ],
    ),
]

_CODEC = Codec("ITCH", LAYOUTS)
SIZES: dict[bytes, int] = {lay.type_byte: lay.fixed_size for lay in LAYOUTS}
TYPE_OF: dict[type[Any], str] = {lay.cls: lay.type_byte.decode() for lay in LAYOUTS}


def decode(buf: bytes | bytearray | memoryview) -> ItchMessage:
    """Decode one ITCH message (no length prefix); a type not in ITCH 5.0 -> Unknown,
    a known type of the wrong size -> RemoteProtocolError."""
    if buf and buf[0] not in _CODEC.by_type:
        return Unknown(bytes(buf))
    msg: ItchMessage = _CODEC.decode(buf)
    return msg


def encode(msg: ItchMessage) -> bytes:
    """Encode one ITCH message (no length prefix)."""
    if isinstance(msg, Unknown):
        return msg.raw
    return _CODEC.encode(msg)


_U16 = struct.Struct(">H")


def iter_binary_file(data: bytes | memoryview) -> Iterator[memoryview]:
    """Split NASDAQ BinaryFILE content (u16 length + message, repeated)."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        if pos + 2 > end:
            raise RemoteProtocolError(f"BinaryFILE: truncated length at byte {pos}")
        (n,) = _U16.unpack_from(view, pos)
        if pos + 2 + n > end:
            raise RemoteProtocolError(f"BinaryFILE: truncated message at byte {pos}")
        yield view[pos + 2 : pos + 2 + n]
        pos += 2 + n


def frame_binary_file(messages: list[bytes]) -> bytes:
    """Inverse of iter_binary_file."""
    return b"".join(_U16.pack(len(m)) + m for m in messages)
