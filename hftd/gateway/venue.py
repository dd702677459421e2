"""What the gateway's order core says to a venue and hears back, in its own terms.

The order core (hftd.gateway.core) keeps orders, risk, positions and the
lifecycle table; it never reads or writes a venue's bytes. A `VenueAdapter`
does: it encodes our new orders, cancels and replaces for its venue, and maps
every message the venue sends to one of the events below (or raises
`UnreadableMessage` for bytes it cannot read, which the core counts as
unusable and never acts on). Our identifiers travel through it unchanged:
`user_ref` is the session's order number (strictly increasing per session, as
OUCH's UserRefNum and FIX's ClOrdID sequence both want), `cl_id` the
strategy's order id (hftd.msg.ids), which the adapter carries in the venue's
client-order-id field so that a venue's echo names the strategy's order.

The OUCH 5.0 adapter (hftd.gateway.ouch_adapter) is the first. A FIX 4.4
adapter would plug in the same way:

- `enter` -> NewOrderSingle (35=D): ClOrdID(11) = `user_ref` in the session's
  own format, the strategy's `cl_id` in a custom tag or in the ClOrdID text,
  Side(54) from "B"/"S", OrderQty(38), Price(44) (OrdType(40)=1 market for
  `MARKET_PRICE`), TimeInForce(59) from TIF_DAY/TIF_IOC/TIF_GTX;
- `cancel` -> OrderCancelRequest (35=F), OrigClOrdID(41) = the order's ref;
  `replace` -> OrderCancelReplaceRequest (35=G);
- ExecutionReport (35=8) by ExecType(150): 0 New -> `Accepted`, F Trade ->
  `Executed` (LastQty, LastPx, ExecID as the match number), 4 Canceled ->
  `Canceled`, 5 Replaced -> `Replaced`, 8 Rejected -> `Rejected` (OrdRejReason
  mapped to `RejectReason`), 6 Pending Cancel -> `CancelHeld`, D Restated ->
  `Restated`, H Trade Cancel -> `TradeBroken`, G Trade Correct ->
  `TradeCorrected`; OrderCancelReject (35=9) -> `CancelRefused`.

Sessions (logon, heartbeats, sequence numbers, resend) stay with the link
(hftd.ipc.souplink for SoupBinTCP); the adapter sees application messages only.
"""

from __future__ import annotations

from typing import Final, Protocol

import msgspec

# Why an order (or part of one) left the venue's book without trading.
CANCEL_USER: Final = "user"  # we asked
CANCEL_IOC: Final = "ioc"  # an immediate-or-cancel order's remainder
CANCEL_VENUE: Final = "venue"  # removed by the venue (supervisory, end of day)
CANCEL_CLOSED: Final = "closed"  # the market closed
CANCEL_SELF_MATCH: Final = "self match"  # self-match prevention took it off
CANCEL_MODIFIED: Final = "modified"  # the venue cut its size (Modified)
CANCEL_OTHER: Final = "other"

# Why the venue refused an order or a request.
REJECT_UNKNOWN_SYMBOL: Final = "unknown symbol"
REJECT_INVALID_QUANTITY: Final = "invalid quantity"
REJECT_QUANTITY_EXCEEDS_MAX: Final = "quantity exceeds maximum order size"
REJECT_INVALID_PRICE: Final = "invalid price"
REJECT_INVALID_SIDE: Final = "invalid side"
REJECT_INVALID_TIF: Final = "invalid time in force"
REJECT_UNKNOWN_ORDER: Final = "unknown order"  # (a cancel that crossed the last fill)
REJECT_DUPLICATE_REF: Final = "order number not increasing"
REJECT_INVALID_TICK: Final = "price not a multiple of the tick size"
REJECT_OTHER: Final = "other"


class UnreadableMessage(Exception):
    """Bytes from the venue that are not a message of its protocol (the adapter says
    why); the core counts and logs it, never acts on it."""


class _Event(msgspec.Struct, frozen=True, gc=False):
    """A venue message, in the order core's terms."""


class Accepted(_Event, frozen=True, gc=False):
    """The order is working at the venue (as the venue echoes it)."""

    ref: int
    cl_id: int  # the strategy's id, from the venue's echo of our client order id
    symbol: str
    side: str
    qty: int
    price: int
    tif: str


class Executed(_Event, frozen=True, gc=False):
    ref: int
    qty: int
    price: int
    match: int  # the venue's execution id (a later break or correction names it)
    liquidity: str  # the venue's liquidity flag, passed on in the strategy's report


class Canceled(_Event, frozen=True, gc=False):
    """`qty` shares of the order came off the book (all that was left, or part)."""

    ref: int
    qty: int
    reason: str  # CANCEL_*


class Replaced(_Event, frozen=True, gc=False):
    """Order `orig_ref` is gone, order `ref` (its replacement) works for `qty`."""

    orig_ref: int
    ref: int
    cl_id: int
    symbol: str
    side: str
    qty: int
    price: int
    tif: str


class Rejected(_Event, frozen=True, gc=False):
    """The venue refused the order (or a cancel or replace of it) numbered `ref`."""

    ref: int
    reason: str  # REJECT_*
    text: str  # what the venue said, for the log and the strategy's report


class CancelHeld(_Event, frozen=True, gc=False):
    """The venue has our cancel but cannot act on it yet (do not send it again)."""

    ref: int


class CancelRefused(_Event, frozen=True, gc=False):
    """The venue will not cancel the order: it works on."""

    ref: int


class PriorityUpdate(_Event, frozen=True, gc=False):
    """The venue re-priced the order (its place in the queue changed)."""

    ref: int
    price: int
    display: str  # the venue's display instruction, for the log
    venue_order_id: int


class Modified(_Event, frozen=True, gc=False):
    """The venue changed the order's side or size (e.g. a cancel-down)."""

    ref: int
    side: str
    qty: int


class Restated(_Event, frozen=True, gc=False):
    ref: int
    display_price: int  # 0: the venue did not say
    why: str  # for the log


class TradeBroken(_Event, frozen=True, gc=False):
    ref: int
    match: int
    reason: str


class TradeCorrected(_Event, frozen=True, gc=False):
    ref: int
    match: int
    qty: int
    price: int
    reason: str


class SystemEvent(_Event, frozen=True, gc=False):
    code: str


class NextRef(_Event, frozen=True, gc=False):
    """The venue says which order number it expects next (OUCH Account Query)."""

    next_ref: int


class Unhandled(_Event, frozen=True, gc=False):
    """A message the adapter reads but the core has no use for (counted)."""

    what: str


VenueEvent = (
    Accepted
    | Executed
    | Canceled
    | Replaced
    | Rejected
    | CancelHeld
    | CancelRefused
    | PriorityUpdate
    | Modified
    | Restated
    | TradeBroken
    | TradeCorrected
    | SystemEvent
    | NextRef
    | Unhandled
)


class SentNew(msgspec.Struct, frozen=True, gc=False):
    """A journaled new order, read back (replay)."""

    ref: int
    symbol: str
    side: str
    qty: int
    price: int
    tif: str


class SentReplace(msgspec.Struct, frozen=True, gc=False):
    orig_ref: int
    ref: int
    qty: int
    price: int


class SentCancel(msgspec.Struct, frozen=True, gc=False):
    ref: int


Sent = SentNew | SentReplace | SentCancel


class VenueAdapter(Protocol):
    """One venue protocol's order messages (see the module docstring)."""

    name: str  # "OUCH 5.0": in log lines about what it could not read

    def enter(
        self, ref: int, cl_id: int, symbol: str, side: str, qty: int, price: int, tif: str
    ) -> bytes: ...

    def cancel(self, ref: int) -> bytes: ...

    def replace(
        self, orig_ref: int, ref: int, cl_id: int, qty: int, price: int, tif: str
    ) -> bytes: ...

    def decode(self, payload: bytes) -> VenueEvent:
        """One venue message as an event; UnreadableMessage if it is not one."""
        ...

    def decode_sent(self, payload: bytes) -> Sent:
        """One of our own messages (from the journal) read back."""
        ...
