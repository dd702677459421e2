"""OUCH 5.0 as a `VenueAdapter` (hftd.gateway.venue): everything OUCH-specific
the order core must not know.

- UserRefNum is the core's `ref`; the ClOrdID field carries the strategy's
  `cl_id` in base 36 (14 characters hold any 64-bit id), so an echo (Order
  Accepted, Replaced) names the strategy's order even for an order this run
  did not send (a replay after a crash).
- Our time-in-force codes and market price are OUCH's (hftd.msg.hot holds them
  equal; a test checks), so they pass through.
- OUCH cancel reasons and reject codes map to the core's CANCEL_* and
  REJECT_*; an AIQ Cancel is a cancel by self-match prevention; an Order
  Restated's display price is read from its appendage.
"""

from __future__ import annotations

from typing import Final

from hftd.gateway import venue as v
from hftd.msg import ids
from hftd.wire import ouch
from hftd.wire.errors import RemoteProtocolError

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_B36_2 = [a + b for a in _B36 for b in _B36]  # two digits at a time: half the divisions

CANCEL_REASONS: Final = {
    ouch.CANCEL_USER: v.CANCEL_USER,
    ouch.CANCEL_IOC: v.CANCEL_IOC,
    ouch.CANCEL_SUPERVISORY: v.CANCEL_VENUE,
    ouch.CANCEL_CLOSED: v.CANCEL_CLOSED,
    ouch.CANCEL_AIQ: v.CANCEL_SELF_MATCH,
}
REJECT_REASONS: Final = {
    ouch.REJECT_UNKNOWN_SYMBOL: v.REJECT_UNKNOWN_SYMBOL,
    ouch.REJECT_INVALID_QUANTITY: v.REJECT_INVALID_QUANTITY,
    ouch.REJECT_QUANTITY_EXCEEDS_MAX: v.REJECT_QUANTITY_EXCEEDS_MAX,
    ouch.REJECT_INVALID_PRICE: v.REJECT_INVALID_PRICE,
    ouch.REJECT_INVALID_SIDE: v.REJECT_INVALID_SIDE,
    ouch.REJECT_INVALID_TIF: v.REJECT_INVALID_TIF,
    ouch.REJECT_UNKNOWN_ORDER: v.REJECT_UNKNOWN_ORDER,
    ouch.REJECT_DUPLICATE_USER_REF: v.REJECT_DUPLICATE_REF,
    ouch.REJECT_INVALID_TICK: v.REJECT_INVALID_TICK,
}
TAG_DISPLAY_PRICE: Final = 23  # Order Restated appendage: display price (i64)


def to_b36(n: int) -> str:
    """`n` >= 0 in base 36 (every order's ClOrdID: on the hot path)."""
    parts = []
    while n >= 1296:
        n, r = divmod(n, 1296)
        parts.append(_B36_2[r])
    parts.append(_B36[n] if n < 36 else _B36_2[n])
    parts.reverse()
    return "".join(parts)


def from_b36(text: str) -> int:
    """A ClOrdID read back: our base-36 text of an id in range, else 0 (not ours:
    no sign, spaces, underscores or ids past hftd.msg.ids.MAX_CL_ID)."""
    if not text or len(text) > 14 or not (text.isascii() and text.isalnum()):
        return 0
    n = int(text, 36)
    return n if n <= ids.MAX_CL_ID else 0


def restated_display_price(appendage: bytes) -> int:
    """The display price in an Order Restated appendage (TLVs: length including the
    tag byte, tag, value), 0 if it has none or is malformed."""
    i = 0
    while i + 2 <= len(appendage):
        length, tag = appendage[i], appendage[i + 1]
        if length < 1 or i + 1 + length > len(appendage):
            return 0
        if tag == TAG_DISPLAY_PRICE and length == 9:
            return int.from_bytes(appendage[i + 2 : i + 10], "big", signed=True)
        i += 1 + length
    return 0


def _cancel_reason(code: str) -> str:
    return CANCEL_REASONS.get(code, v.CANCEL_OTHER)


class OuchAdapter:
    """OUCH 5.0 order entry (hftd.wire.ouch) for the order core."""

    name = "OUCH 5.0"

    def enter(
        self, ref: int, cl_id: int, symbol: str, side: str, qty: int, price: int, tif: str
    ) -> bytes:
        return ouch.encode_inbound(
            ouch.EnterOrder(ref, side, qty, symbol, price, tif, cl_ord_id=to_b36(cl_id))
        )

    def cancel(self, ref: int) -> bytes:
        return ouch.encode_inbound(ouch.CancelOrder(ref, 0))

    def replace(self, orig_ref: int, ref: int, cl_id: int, qty: int, price: int, tif: str) -> bytes:
        return ouch.encode_inbound(
            ouch.ReplaceOrder(orig_ref, ref, qty, price, tif, cl_ord_id=to_b36(cl_id))
        )

    def decode_sent(self, payload: bytes) -> v.Sent:
        m = ouch.decode_inbound(payload)
        if type(m) is ouch.EnterOrder:
            return v.SentNew(m.user_ref, m.symbol, m.side, m.quantity, m.price, m.time_in_force)
        if type(m) is ouch.ReplaceOrder:
            return v.SentReplace(m.orig_user_ref, m.new_user_ref, m.quantity, m.price)
        assert type(m) is ouch.CancelOrder  # the only other message we send
        return v.SentCancel(m.user_ref)

    def decode(self, payload: bytes) -> v.VenueEvent:
        try:
            m = ouch.decode_outbound(payload)
        except RemoteProtocolError as exc:
            raise v.UnreadableMessage(str(exc)) from exc
        t = type(m)
        # the common ones first, by exact type (the hot part of the reply path)
        if t is ouch.Executed:
            e: ouch.Executed = m  # type: ignore[assignment]
            if e.quantity <= 0 or e.price <= 0:  # would corrupt positions: not applied
                raise v.UnreadableMessage(f"execution of {e.quantity} @ {e.price}")
            return v.Executed(e.user_ref, e.quantity, e.price, e.match_number, e.liquidity_flag)
        if t is ouch.Accepted:
            a: ouch.Accepted = m  # type: ignore[assignment]
            return v.Accepted(
                a.user_ref,
                from_b36(a.cl_ord_id),
                a.symbol,
                a.side,
                a.quantity,
                a.price,
                a.time_in_force,
            )
        if t is ouch.Canceled:
            c: ouch.Canceled = m  # type: ignore[assignment]
            return v.Canceled(c.user_ref, c.quantity, _cancel_reason(c.reason))
        if t is ouch.Replaced:
            r: ouch.Replaced = m  # type: ignore[assignment]
            return v.Replaced(
                r.orig_user_ref,
                r.new_user_ref,
                from_b36(r.cl_ord_id),
                r.symbol,
                r.side,
                r.quantity,
                r.price,
                r.time_in_force,
            )
        if t is ouch.Rejected:
            j: ouch.Rejected = m  # type: ignore[assignment]
            reason = REJECT_REASONS.get(j.reason, v.REJECT_OTHER)
            text = reason if reason != v.REJECT_OTHER else f"reject code {j.reason}"
            return v.Rejected(j.user_ref, reason, text)
        if isinstance(m, ouch.CancelPending):
            return v.CancelHeld(m.user_ref)
        if isinstance(m, ouch.CancelReject):
            return v.CancelRefused(m.user_ref)
        if isinstance(m, ouch.AiqCanceled):
            return v.Canceled(m.user_ref, m.decrement, v.CANCEL_SELF_MATCH)
        if isinstance(m, ouch.BrokenTrade):
            return v.TradeBroken(m.user_ref, m.match_number, m.reason)
        if isinstance(m, ouch.TradeCorrection):
            if m.quantity <= 0 or m.price <= 0:
                raise v.UnreadableMessage(f"trade correction to {m.quantity} @ {m.price}")
            return v.TradeCorrected(m.user_ref, m.match_number, m.quantity, m.price, m.reason)
        if isinstance(m, ouch.OrderPriorityUpdate):
            return v.PriorityUpdate(m.user_ref, m.price, m.display, m.order_ref)
        if isinstance(m, ouch.OrderModified):
            return v.Modified(m.user_ref, m.side, m.quantity)
        if isinstance(m, ouch.OrderRestated):
            why = "display refreshed" if m.reason == ouch.RESTATED_REFRESH else m.reason
            return v.Restated(m.user_ref, restated_display_price(m.appendage), why)
        if isinstance(m, ouch.SystemEventMsg):
            return v.SystemEvent(m.event_code)
        if isinstance(m, ouch.AccountQueryResponse):
            return v.NextRef(m.next_user_ref)
        return v.Unhandled(type(m).__name__)  # a type added to the codec and not here
