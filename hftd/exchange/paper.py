"""Paper trading on recorded data: our OUCH orders in the backtest's queue model (pure).

With `exchange.md_file_model = "queue"` the venue publishes a recorded day
unchanged and matches our orders with `hftd.backtest.queue.QueueVenue`, the
backtest's model, fed with every market-data message the venue publishes, in
the order it publishes them (`Venue._md`). `PaperVenue` is the OUCH side of
that: it turns our Enter, Cancel and Replace into the model's `enter`,
`cancel` and `replace`, and the model's events (hftd.gateway.venue) into the
OUCH 5.0 replies a venue sends, for the user whose order it is. Nothing of
ours reaches the market data: the queue model assumes no market impact.

- Order references (OUCH's "order reference number", the model's `ref`) are
  the venue's, from 1, one per accepted Enter and per Replace: strictly
  increasing, as the model requires. The strategy's ClOrdID and the OUCH
  fields the model does not know (display, capacity, ...) are echoed.
- An order is refused by the venue's own rules first (`check`: the matching
  engine's, so the reasons are the same as in the book model: symbol, side,
  size, `max_order_size`, time in force, price, tick), so the model only ever
  sees valid orders.
- Sides T and E (sell short) are sells for the model, echoed as entered.
- Replace: the model's rule (OUCH 5.0: a replace always gets a new timestamp,
  so the replacement joins the tail of its level); it keeps the order's time
  in force. Cancel to 0 is the model's cancel. A cancel down to a smaller
  open size (the gateway never sends one) is the model's replace at the same
  price: the order keeps its UserRefNum but loses its place in the queue,
  which the model cannot reduce in place (conservative); the client sees a
  Canceled of the shares taken off, as from any venue.
- Fills: Executed with the model's match number (from 1) and liquidity flag
  (A: ours rested and the data traded through it; R: ours took the data's
  displayed liquidity). Cancels: reason U (asked), I (IOC remainder), E (the
  market closed: ITCH S M, a DAY order).

`state` / `restore` carry it through the exchange's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

import msgspec

from hftd.backtest.queue import QueueState, QueueVenue
from hftd.gateway import venue as v
from hftd.gateway.ouch_adapter import CANCEL_REASONS, REJECT_REASONS
from hftd.msg.hot import MARKET_PRICE, MarketDataUpdate
from hftd.wire import ouch

# The model's reasons as OUCH codes: the gateway's adapter read backwards.
OUCH_CANCEL: Final = {ours: code for code, ours in CANCEL_REASONS.items()}
OUCH_REJECT: Final = {ours: code for code, ours in REJECT_REASONS.items()}

# A fill as the venue keeps it for a user's snapshot (venue.FillRecord's fields):
# match number, UserRefNum, order reference, symbol, side (B/S), quantity, price,
# liquidity, timestamp, ClOrdID.
FillFields = tuple[int, int, int, str, str, int, int, str, int, str]
# (symbol, side, quantity, price, tif) -> why the venue refuses it (reason, detail) or None
Check = Callable[[str, str, int, int, str], tuple[int, str] | None]


class Reply(NamedTuple):
    """One OUCH message for `user`'s stream; `fill` for an Executed."""

    user: str
    msg: ouch.Outbound
    fill: FillFields | None = None


class PaperOrder(msgspec.Struct, array_like=True, gc=False):
    """One of our working orders at the paper venue (mutable)."""

    ref: int  # the venue's order reference: the model's ref
    user: str
    user_ref: int
    symbol: str
    side: str  # B or S, as the model holds it
    wire_side: str  # as entered: B, S, T or E
    price: int
    tif: str
    leaves: int
    display: str
    capacity: str
    iso_eligibility: str
    cross_type: str
    cl_ord_id: str


class PaperState(msgspec.Struct, frozen=True, array_like=True):
    """A `PaperVenue`'s whole state (a checkpoint)."""

    queue: QueueState
    orders: list[PaperOrder]  # working, oldest first
    next_ref: int


class PaperVenue:
    """Our OUCH orders against the recorded market through `QueueVenue`."""

    def __init__(self, symbols: list[str], check: Check) -> None:
        self.queue = QueueVenue(symbols)
        self.check = check
        self.orders: dict[int, PaperOrder] = {}  # working, by ref
        self.live: dict[tuple[str, int], int] = {}  # (user, UserRefNum) -> ref
        self.next_ref = 1

    # --- our orders ------------------------------------------------------------------

    def order(self, user: str, user_ref: int) -> PaperOrder | None:
        """`user`'s working order `user_ref`, if any."""
        ref = self.live.get((user, user_ref))
        return None if ref is None else self.orders[ref]

    def open_orders(self, user: str) -> list[PaperOrder]:
        return [o for o in self.orders.values() if o.user == user]

    def enter(self, user: str, m: ouch.EnterOrder, ts: int) -> list[Reply]:
        """A new order (its UserRefNum already checked by the venue)."""
        why = self.check(m.symbol, m.side, m.quantity, m.price, m.time_in_force)
        if why is not None:
            return [Reply(user, ouch.Rejected(ts, m.user_ref, why[0], m.cl_ord_id))]
        side = "B" if m.side == "B" else "S"
        ref = self._ref()
        o = PaperOrder(
            ref,
            user,
            m.user_ref,
            m.symbol,
            side,
            m.side,
            m.price,
            m.time_in_force,
            m.quantity,
            m.display,
            m.capacity,
            m.iso_eligibility,
            m.cross_type,
            m.cl_ord_id,
        )
        events = self.queue.enter(ref, 0, m.symbol, side, m.quantity, m.price, m.time_in_force)
        first = events[0]
        if not isinstance(first, v.Accepted):
            return self._refused(user, m.user_ref, first, m.cl_ord_id, ts)
        self._keep(o)
        accepted = ouch.Accepted(
            ts,
            m.user_ref,
            m.side,
            m.quantity,
            m.symbol,
            m.price,
            m.time_in_force,
            m.display,
            ref,
            m.capacity,
            m.iso_eligibility,
            m.cross_type,
            "L",
            m.cl_ord_id,
        )
        return [Reply(user, accepted), *self._replies(events[1:], ts)]

    def cancel(self, user: str, m: ouch.CancelOrder, ts: int) -> list[Reply]:
        """Reduce `user`'s working order to `m.quantity` open shares (0: cancel it);
        an open size at or above the current one changes nothing. The venue checked
        that the order is working (`order`)."""
        o = self.orders[self.live[(user, m.user_ref)]]
        if m.quantity >= o.leaves:
            return []
        if m.quantity == 0:
            return self._replies(self.queue.cancel(o.ref), ts)
        # Down to a smaller size: the model's replace at the same price (to the tail).
        new = self._ref()
        events = self.queue.replace(o.ref, new, 0, m.quantity, o.price)
        first = events[0]
        if not isinstance(first, v.Replaced):
            return self._refused(user, m.user_ref, first, "", ts)
        cut = o.leaves - m.quantity
        del self.orders[o.ref]
        o.ref, o.leaves = new, m.quantity
        self._keep(o)
        canceled = ouch.Canceled(ts, o.user_ref, cut, ouch.CANCEL_USER)
        return [Reply(user, canceled), *self._replies(events[1:], ts)]

    def replace(self, user: str, m: ouch.ReplaceOrder, ts: int) -> list[Reply]:
        """Replace `user`'s working order (checked by the venue, as the new UserRefNum)
        by a new one of `m.quantity` at `m.price`, at the tail of its level."""
        old = self.orders[self.live[(user, m.orig_user_ref)]]
        if m.price == MARKET_PRICE:
            why: tuple[int, str] | None = (ouch.REJECT_INVALID_PRICE, "into a market order")
        else:
            why = self.check(old.symbol, old.wire_side, m.quantity, m.price, m.time_in_force)
        if why is not None:
            return [Reply(user, ouch.Rejected(ts, m.new_user_ref, why[0], m.cl_ord_id))]
        ref = self._ref()
        events = self.queue.replace(old.ref, ref, 0, m.quantity, m.price)
        first = events[0]
        if not isinstance(first, v.Replaced):
            return self._refused(user, m.new_user_ref, first, m.cl_ord_id, ts)
        self._forget(old)
        o = PaperOrder(
            ref,
            user,
            m.new_user_ref,
            old.symbol,
            old.side,
            old.wire_side,
            m.price,
            old.tif,
            m.quantity,
            m.display,
            old.capacity,
            m.iso_eligibility,
            old.cross_type,
            m.cl_ord_id,
        )
        self._keep(o)
        replaced = ouch.Replaced(
            ts,
            m.orig_user_ref,
            m.new_user_ref,
            o.wire_side,
            o.leaves,
            o.symbol,
            o.price,
            o.tif,
            o.display,
            ref,
            o.capacity,
            o.iso_eligibility,
            o.cross_type,
            "L",
            o.cl_ord_id,
        )
        return [Reply(user, replaced), *self._replies(events[1:], ts)]

    # --- the recorded market -----------------------------------------------------------

    def market(self, u: MarketDataUpdate, ts: int) -> list[Reply]:
        """One market-data message as the venue published it: what it does to ours."""
        events = self.queue.on_market(u)
        return self._replies(events, ts) if events else []

    # --- state -----------------------------------------------------------------------

    def state(self) -> PaperState:
        return PaperState(self.queue.state(), list(self.orders.values()), self.next_ref)

    def restore(self, st: PaperState) -> None:
        """Take `st`'s state (`state`); ValueError if it does not add up."""
        queue = QueueVenue.restore(st.queue)
        working = queue.open_orders()
        if set(working) != {o.ref for o in st.orders}:
            raise ValueError("the checkpoint's orders are not its queue model's")
        self.queue = queue
        self.orders, self.live = {}, {}
        for o in st.orders:
            self._keep(o)
        self.next_ref = st.next_ref

    # --- internals -------------------------------------------------------------------

    def _ref(self) -> int:
        ref = self.next_ref
        self.next_ref += 1
        return ref

    def _keep(self, o: PaperOrder) -> None:
        self.orders[o.ref] = o
        self.live[(o.user, o.user_ref)] = o.ref

    def _forget(self, o: PaperOrder) -> None:
        del self.orders[o.ref]
        del self.live[(o.user, o.user_ref)]

    def _refused(
        self, user: str, user_ref: int, ev: v.VenueEvent, cl_ord_id: str, ts: int
    ) -> list[Reply]:
        """The model refused (the venue's checks make that unreachable; kept honest)."""
        reason = ev.reason if isinstance(ev, v.Rejected) else v.REJECT_OTHER
        code = OUCH_REJECT.get(reason, ouch.REJECT_UNKNOWN_ORDER)
        return [Reply(user, ouch.Rejected(ts, user_ref, code, cl_ord_id))]

    def _replies(self, events: list[v.VenueEvent], ts: int) -> list[Reply]:
        """The model's fills and cancels of working orders, as OUCH."""
        out: list[Reply] = []
        for ev in events:
            if isinstance(ev, v.Executed):
                o = self.orders[ev.ref]
                o.leaves -= ev.qty
                msg: ouch.Outbound = ouch.Executed(
                    ts, o.user_ref, ev.qty, ev.price, ev.liquidity, ev.match
                )
                fill = (
                    ev.match,
                    o.user_ref,
                    o.ref,
                    o.symbol,
                    o.side,
                    ev.qty,
                    ev.price,
                    ev.liquidity,
                    ts,
                    o.cl_ord_id,
                )
                out.append(Reply(o.user, msg, fill))
            elif isinstance(ev, v.Canceled):
                o = self.orders[ev.ref]
                o.leaves -= ev.qty
                code = OUCH_CANCEL.get(ev.reason, ouch.CANCEL_SUPERVISORY)
                out.append(Reply(o.user, ouch.Canceled(ts, o.user_ref, ev.qty, code)))
            else:
                continue
            if o.leaves <= 0:
                self._forget(o)
        return out
