"""NASDAQ OUCH 5.0 order-entry messages (sans-IO).

Inbound messages travel in SoupBinTCP ``U`` packets, outbound ones in ``S``
packets. Integers are big-endian; prices are i64 with 4 implied decimals;
timestamps are u64 nanoseconds since midnight. Messages that carry an
appendage end with ``u16 length`` + that many bytes (this venue ignores the
optional TLV fields inside but keeps them for echoing).

Enter Order (47 bytes with an empty appendage)::

    0  'O'   1 UserRefNum u32   5 side   6 quantity u32   10 symbol alpha8
    18 price i64   26 TIF   27 display   28 capacity   29 ISO   30 cross type
    31 ClOrdID alpha14   45 appendage length u16   47 appendage

Every outbound (venue -> client) type of OUCH 5.0 is decoded: a client must
apply or at least record every sequenced message, never drop its session for
one. Offsets from the type byte (sizes with an empty appendage)::

    S system event      1 ts u64  9 event code                                   = 10
    A accepted          1 ts  9 UserRefNum u32  13 side  14 qty u32  18 symbol alpha8
                        26 price i64  34 TIF  35 display  36 order ref u64  44 capacity
                        45 ISO  46 cross type  47 order state  48 ClOrdID alpha14
                        62 appendage length u16                               = 64
    U replaced          as A with orig UserRefNum u32 at 9 (the rest +4)     = 68
    C canceled          1 ts  9 UserRefNum  13 qty u32 (taken off)  17 reason    = 18
    D AIQ canceled      1 ts  9 UserRefNum  13 decrement qty u32  17 reason
                        18 qty prevented from trading u32  22 execution price i64
                        30 liquidity flag  [31 AIQ strategy]                = 31 (32)
    E executed          1 ts  9 UserRefNum  13 qty u32  17 price i64  25 liquidity flag
                        26 match number u64  34 appendage length u16         = 36
    B broken trade      1 ts  9 UserRefNum  13 match number u64  21 reason
                        22 ClOrdID alpha14                                    = 36
    F trade correction  1 ts  9 UserRefNum  13 qty u32  17 price i64  25 liquidity flag
                        26 match number u64  34 reason  35 ClOrdID alpha14    = 49
    J rejected          1 ts  9 UserRefNum  13 reason u16  15 ClOrdID alpha14    = 29
    P cancel pending    1 ts  9 UserRefNum                                       = 13
    I cancel reject     1 ts  9 UserRefNum                                       = 13
    T priority update   1 ts  9 UserRefNum  13 price i64  21 display  22 order ref u64 = 30
    M order modified    1 ts  9 UserRefNum  13 side  14 qty u32 (open now)       = 18
    R order restated    1 ts  9 UserRefNum  13 reason  14 appendage length u16   = 16
    Q account query     1 ts  9 next UserRefNum u32                              = 13
      response

AIQ Canceled's last byte (AIQ Strategy) is written by `ouch-connect` but not
by the rendering of the specification this codec follows (31 bytes); both
are decoded, and it is written only when set. Trade Correction (``F``) is in
the specification's rendering, not in `ouch-connect` 5.0.1.
"""

from __future__ import annotations

import msgspec

from hftd.wire.layout import Codec, Layout

# Special price meaning "market order" (NASDAQ's 214748.3647 sentinel).
MARKET_PRICE = 2_147_483_647

# Time in force codes (OUCH 5.0). GTX is kept until cancelled: this venue has
# no extended session, so it is hftd's good-till-cancel.
TIF_DAY = "0"
TIF_IOC = "3"
TIF_GTX = "5"
TIF_CODES = (TIF_DAY, TIF_IOC, TIF_GTX)

SIDES = ("B", "S", "T", "E")  # buy, sell, sell short, sell short exempt

# Canceled reasons.
CANCEL_USER = "U"  # the client asked
CANCEL_IOC = "I"  # immediate-or-cancel remainder
CANCEL_SUPERVISORY = "S"  # removed by the venue (end of day, operator)
CANCEL_CLOSED = "E"  # market closed

CANCEL_AIQ = "Q"  # AIQ Canceled: self-match (anti-internalization) prevention

# Broken Trade reasons.
BROKEN_ERRONEOUS = "E"
BROKEN_CONSENT = "C"
BROKEN_SUPERVISORY = "S"
BROKEN_EXTERNAL = "X"

# Order Restated reasons.
RESTATED_REFRESH = "R"  # refresh of display (reserve order)
RESTATED_PRICE = "P"  # update of displayed price

# Rejected reasons (u16). hftd's numbering, documented in docs/venue.md.
REJECT_UNKNOWN_SYMBOL = 1
REJECT_INVALID_QUANTITY = 2
REJECT_QUANTITY_EXCEEDS_MAX = 3
REJECT_INVALID_PRICE = 4
REJECT_INVALID_SIDE = 5
REJECT_INVALID_TIF = 6
REJECT_UNKNOWN_ORDER = 7
REJECT_DUPLICATE_USER_REF = 8  # UserRefNum not strictly increasing
REJECT_INVALID_TICK = 10
REJECT_REASONS = {
    REJECT_UNKNOWN_SYMBOL: "unknown symbol",
    REJECT_INVALID_QUANTITY: "invalid quantity",
    REJECT_QUANTITY_EXCEEDS_MAX: "quantity exceeds maximum order size",
    REJECT_INVALID_PRICE: "invalid price",
    REJECT_INVALID_SIDE: "invalid side",
    REJECT_INVALID_TIF: "invalid time in force",
    REJECT_UNKNOWN_ORDER: "unknown order",
    REJECT_DUPLICATE_USER_REF: "UserRefNum not increasing",
    REJECT_INVALID_TICK: "price not a multiple of the tick size",
}


class _Msg(msgspec.Struct, frozen=True, gc=False):
    pass


# client -> venue


class EnterOrder(_Msg, frozen=True, gc=False):
    """O: a new order."""

    user_ref: int
    side: str
    quantity: int
    symbol: str
    price: int
    time_in_force: str = TIF_DAY
    display: str = "Y"
    capacity: str = "A"
    iso_eligibility: str = "N"
    cross_type: str = "N"
    cl_ord_id: str = ""
    appendage: bytes = b""


class ReplaceOrder(_Msg, frozen=True, gc=False):
    """U: replace a live order (quantity is the new open size)."""

    orig_user_ref: int
    new_user_ref: int
    quantity: int
    price: int
    time_in_force: str = TIF_DAY
    display: str = "Y"
    iso_eligibility: str = "N"
    cl_ord_id: str = ""
    appendage: bytes = b""


class CancelOrder(_Msg, frozen=True, gc=False):
    """X: reduce an order to `quantity` open shares (0 cancels it)."""

    user_ref: int
    quantity: int = 0


# venue -> client


class SystemEventMsg(_Msg, frozen=True, gc=False):
    """S: S start of day, E end of day."""

    timestamp: int
    event_code: str


class Accepted(_Msg, frozen=True, gc=False):
    """A: the order is live (L) or was accepted dead (D)."""

    timestamp: int
    user_ref: int
    side: str
    quantity: int
    symbol: str
    price: int
    time_in_force: str
    display: str
    order_ref: int
    capacity: str
    iso_eligibility: str
    cross_type: str
    order_state: str
    cl_ord_id: str
    appendage: bytes = b""


class Replaced(_Msg, frozen=True, gc=False):
    """U: the replacement is in force; `order_ref` is the (possibly new) venue id."""

    timestamp: int
    orig_user_ref: int
    new_user_ref: int
    side: str
    quantity: int
    symbol: str
    price: int
    time_in_force: str
    display: str
    order_ref: int
    capacity: str
    iso_eligibility: str
    cross_type: str
    order_state: str
    cl_ord_id: str
    appendage: bytes = b""


class Canceled(_Msg, frozen=True, gc=False):
    """C: `quantity` shares were taken off the order."""

    timestamp: int
    user_ref: int
    quantity: int
    reason: str


class Executed(_Msg, frozen=True, gc=False):
    """E: `quantity` shares traded at `price`; liquidity A added, R removed."""

    timestamp: int
    user_ref: int
    quantity: int
    price: int
    liquidity_flag: str
    match_number: int
    appendage: bytes = b""


class Rejected(_Msg, frozen=True, gc=False):
    """J: the request was refused; `reason` is one of REJECT_*."""

    timestamp: int
    user_ref: int
    reason: int
    cl_ord_id: str


class AiqCanceled(_Msg, frozen=True, gc=False):
    """D: `decrement` shares were cancelled by anti-internalization (self-match
    prevention); `prevented` shares would have traded at `execution_price`."""

    timestamp: int
    user_ref: int
    decrement: int
    reason: str
    prevented: int
    execution_price: int
    liquidity_flag: str
    aiq_strategy: str = ""  # ouch-connect's extra byte; "" = not sent


class BrokenTrade(_Msg, frozen=True, gc=False):
    """B: the execution `match_number` of this order is broken: it never happened."""

    timestamp: int
    user_ref: int
    match_number: int
    reason: str
    cl_ord_id: str


class TradeCorrection(_Msg, frozen=True, gc=False):
    """F: the execution `match_number` now stands at `quantity` shares and `price`."""

    timestamp: int
    user_ref: int
    quantity: int
    price: int
    liquidity_flag: str
    match_number: int
    reason: str
    cl_ord_id: str


class CancelPending(_Msg, frozen=True, gc=False):
    """P: the cancel was received; the order leaves the book later (a cross)."""

    timestamp: int
    user_ref: int


class CancelReject(_Msg, frozen=True, gc=False):
    """I: the cancel was refused (the order cannot be cancelled now); it stays live."""

    timestamp: int
    user_ref: int


class OrderPriorityUpdate(_Msg, frozen=True, gc=False):
    """T: the venue re-priced the order (new price, display, order reference)."""

    timestamp: int
    user_ref: int
    price: int
    display: str
    order_ref: int


class OrderModified(_Msg, frozen=True, gc=False):
    """M: the order's side or size was changed; `quantity` is its open size now."""

    timestamp: int
    user_ref: int
    side: str
    quantity: int


class OrderRestated(_Msg, frozen=True, gc=False):
    """R: values in the appendage (display quantity/price) changed; see `reason`."""

    timestamp: int
    user_ref: int
    reason: str
    appendage: bytes = b""


class AccountQueryResponse(_Msg, frozen=True, gc=False):
    """Q: the next UserRefNum this account may use."""

    timestamp: int
    next_user_ref: int


Inbound = EnterOrder | ReplaceOrder | CancelOrder
Outbound = (
    SystemEventMsg
    | Accepted
    | Replaced
    | Canceled
    | AiqCanceled
    | Executed
    | BrokenTrade
    | TradeCorrection
    | Rejected
    | CancelPending
    | CancelReject
    | OrderPriorityUpdate
    | OrderModified
    | OrderRestated
    | AccountQueryResponse
)

INBOUND_LAYOUTS = [
    Layout(
        EnterOrder,
        b"O",
        [
            ("user_ref", "u32"),
            ("side", "char"),
            ("quantity", "u32"),
            ("symbol", "alpha8"),
            ("price", "i64"),
            ("time_in_force", "char"),
            ("display", "char"),
            ("capacity", "char"),
            ("iso_eligibility", "char"),
            ("cross_type", "char"),
            ("cl_ord_id", "alpha14"),
        ],
        appendage=True,
    ),
    Layout(
        ReplaceOrder,
        b"U",
        [
            ("orig_user_ref", "u32"),
            ("new_user_ref", "u32"),
            ("quantity", "u32"),
            ("price", "i64"),
            ("time_in_force", "char"),
            ("display", "char"),
            ("iso_eligibility", "char"),
            ("cl_ord_id", "alpha14"),
        ],
        appendage=True,
    ),
    Layout(CancelOrder, b"X", [("user_ref", "u32"), ("quantity", "u32")]),
]

# What Accepted and Replaced echo of the order, after their own references.
_ORDER_ECHO = [
    ("side", "char"),
    ("quantity", "u32"),
    ("symbol", "alpha8"),
    ("price", "i64"),
    ("time_in_force", "char"),
    ("display", "char"),
    ("order_ref", "u64"),
    ("capacity", "char"),
    ("iso_eligibility", "char"),
    ("cross_type", "char"),
    ("order_state", "char"),
    ("cl_ord_id", "alpha14"),
]

OUTBOUND_LAYOUTS = [
    Layout(SystemEventMsg, b"S", [("timestamp", "u64"), ("event_code", "char")]),
    Layout(
        Accepted,
        b"A",
        [("timestamp", "u64"), ("user_ref", "u32"), *_ORDER_ECHO],
        appendage=True,
    ),
    Layout(
        Replaced,
        b"U",
        [("timestamp", "u64"), ("orig_user_ref", "u32"), ("new_user_ref", "u32"), *_ORDER_ECHO],
        appendage=True,
    ),
    Layout(
        Canceled,
        b"C",
        [("timestamp", "u64"), ("user_ref", "u32"), ("quantity", "u32"), ("reason", "char")],
    ),
    Layout(
        Executed,
        b"E",
        [
            ("timestamp", "u64"),
            ("user_ref", "u32"),
            ("quantity", "u32"),
            ("price", "i64"),
            ("liquidity_flag", "char"),
            ("match_number", "u64"),
        ],
        appendage=True,
    ),
    Layout(
        AiqCanceled,
        b"D",
        [
            ("timestamp", "u64"),
            ("user_ref", "u32"),
            ("decrement", "u32"),
            ("reason", "char"),
            ("prevented", "u32"),
            ("execution_price", "i64"),
            ("liquidity_flag", "char"),
            ("aiq_strategy", "char"),
        ],
        short_ok=True,
    ),
    Layout(
        BrokenTrade,
        b"B",
        [
            ("timestamp", "u64"),
            ("user_ref", "u32"),
            ("match_number", "u64"),
            ("reason", "char"),
            ("cl_ord_id", "alpha14"),
        ],
    ),
    Layout(
        TradeCorrection,
        b"F",
        [
            ("timestamp", "u64"),
            ("user_ref", "u32"),
            ("quantity", "u32"),
            ("price", "i64"),
            ("liquidity_flag", "char"),
            ("match_number", "u64"),
            ("reason", "char"),
            ("cl_ord_id", "alpha14"),
        ],
    ),
    Layout(
        Rejected,
        b"J",
        [("timestamp", "u64"), ("user_ref", "u32"), ("reason", "u16"), ("cl_ord_id", "alpha14")],
    ),
    Layout(CancelPending, b"P", [("timestamp", "u64"), ("user_ref", "u32")]),
    Layout(CancelReject, b"I", [("timestamp", "u64"), ("user_ref", "u32")]),
    Layout(
        OrderPriorityUpdate,
        b"T",
        [
            ("timestamp", "u64"),
            ("user_ref", "u32"),
            ("price", "i64"),
            ("display", "char"),
            ("order_ref", "u64"),
        ],
    ),
    Layout(
        OrderModified,
        b"M",
        [("timestamp", "u64"), ("user_ref", "u32"), ("side", "char"), ("quantity", "u32")],
    ),
    Layout(
        OrderRestated,
        b"R",
        [("timestamp", "u64"), ("user_ref", "u32"), ("reason", "char")],
        appendage=True,
    ),
    Layout(AccountQueryResponse, b"Q", [("timestamp", "u64"), ("next_user_ref", "u32")]),
]

_IN = Codec("OUCH inbound", INBOUND_LAYOUTS)
_OUT = Codec("OUCH outbound", OUTBOUND_LAYOUTS)


def decode_inbound(buf: bytes | bytearray | memoryview) -> Inbound:
    """Decode a client message; RemoteProtocolError if it is not valid OUCH 5.0."""
    msg: Inbound = _IN.decode(buf)
    return msg


def encode_inbound(msg: Inbound) -> bytes:
    return _IN.encode(msg)


def decode_outbound(buf: bytes | bytearray | memoryview) -> Outbound:
    """Decode a venue message; RemoteProtocolError if it is not valid OUCH 5.0."""
    msg: Outbound = _OUT.decode(buf)
    return msg


def encode_outbound(msg: Outbound) -> bytes:
    return _OUT.encode(msg)


INBOUND_SIZES = {
    lay.type_byte: lay.fixed_size + (2 if lay.appendage else 0) for lay in INBOUND_LAYOUTS
}
OUTBOUND_SIZES = {  # AIQ Canceled: without ouch-connect's optional last byte
    lay.type_byte: (lay.short.size if lay.short_ok else lay.fixed_size)
    + (2 if lay.appendage else 0)
    for lay in OUTBOUND_LAYOUTS
}
