"""The strategy's order manager: every working order and its state. Pure.

Each lifecycle is one table: `TRANSITIONS[(state, event)] -> state`. A report
for an order the manager does not know is counted in `untracked` (it would
mean the gateway and the strategy disagree: a bug or a lost message).

It sends only what the gateway's trading mode allows (`mode`, from the
gateway's heartbeat reports): nothing new while paused or halted, and while
reducing (after a flatten) only orders that bring a position toward zero,
counting what already works on that side. A held order is counted (`held`),
not sent: sending it would only make the gateway's risk refuse it, a storm
of rejects for the operator to read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hftd.gateway.positions import PositionBook
from hftd.msg import ids
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_NEW,
    CMD_REPLACE,
    EX_ACCEPTED,
    EX_CANCELED,
    EX_FILL,
    EX_REJECTED,
    EX_REPLACED,
    PRICE_SCALE,
    ExecutionReport,
    OrderCommand,
)

log = logging.getLogger("hftd.strategy")

SENT = "sent"  # on its way; no reply yet
LIVE = "live"  # acknowledged by the venue, nothing traded
PARTIAL = "partially filled"
CANCEL_PENDING = "cancel pending"
REPLACE_PENDING = "replace pending"
DONE = "done"  # filled, cancelled, rejected or replaced

# The gateway's trading modes (its heartbeat report's reason; hftd.gateway.core `mode`).
MODE_ACTIVE = "active"
MODE_PAUSED = "paused"  # new orders held by the gateway; working ones stay
MODE_REDUCING = "reducing"  # after a flatten: only orders that reduce a position
MODE_HALTED = "halted"  # nothing new until the operator resumes
MODES = (MODE_ACTIVE, MODE_PAUSED, MODE_REDUCING, MODE_HALTED)

# (state, event) -> state; events: accepted, fill, filled (leaves 0), cancel_req,
# replace_req, canceled (leaves > 0 left), done (cancelled out / rejected / replaced)
TRANSITIONS: dict[tuple[str, str], str] = {
    (SENT, "accepted"): LIVE,
    (SENT, "fill"): PARTIAL,
    (SENT, "filled"): DONE,
    (SENT, "done"): DONE,
    (SENT, "cancel_req"): CANCEL_PENDING,
    (LIVE, "fill"): PARTIAL,
    (LIVE, "filled"): DONE,
    (LIVE, "cancel_req"): CANCEL_PENDING,
    (LIVE, "replace_req"): REPLACE_PENDING,
    (LIVE, "canceled"): LIVE,
    (LIVE, "done"): DONE,
    (PARTIAL, "fill"): PARTIAL,
    (PARTIAL, "filled"): DONE,
    (PARTIAL, "cancel_req"): CANCEL_PENDING,
    (PARTIAL, "replace_req"): REPLACE_PENDING,
    (PARTIAL, "canceled"): PARTIAL,
    (PARTIAL, "done"): DONE,
    (CANCEL_PENDING, "accepted"): CANCEL_PENDING,
    (CANCEL_PENDING, "fill"): CANCEL_PENDING,
    (CANCEL_PENDING, "filled"): DONE,
    (CANCEL_PENDING, "canceled"): CANCEL_PENDING,
    (CANCEL_PENDING, "done"): DONE,
    (REPLACE_PENDING, "fill"): REPLACE_PENDING,
    (REPLACE_PENDING, "filled"): DONE,
    (REPLACE_PENDING, "canceled"): REPLACE_PENDING,
    (REPLACE_PENDING, "done"): DONE,
    (REPLACE_PENDING, "accepted"): LIVE,  # the replace was refused; the order lives on
}


class WorkingOrder:
    __slots__ = ("cl_id", "filled", "leaves", "price", "qty", "side", "state", "symbol", "tif")

    def __init__(self, cl_id: int, symbol: str, side: str, qty: int, price: int, tif: str) -> None:
        self.cl_id = cl_id
        self.symbol = symbol
        self.side = side
        self.qty = qty
        self.price = price
        self.tif = tif
        self.state = SENT
        self.filled = 0
        self.leaves = qty


class OrderManager:
    """Builds order commands and tracks every order until it is done."""

    def __init__(
        self,
        strategy: str,
        first_cl_id: int,
        send: Callable[[OrderCommand], bool],
        clock: Callable[[], int],
    ) -> None:
        self.strategy = strategy
        self.next_cl_id = first_cl_id
        self.last_cl_id = ids.last_id(first_cl_id)  # the run's last: past it, refused
        self.send = send  # False if the command could not be queued (ring full)
        self.clock = clock
        self.orders: dict[int, WorkingOrder] = {}
        self.positions: dict[str, int] = {}
        self.first_cl_id = first_cl_id
        self.untracked = 0  # reports for this run's orders that we do not know: a bug
        self.ids_exhausted = False  # every id of the run used (logged once)
        self.stale = 0  # reports for a previous run's orders (after a restart)
        self.invalid = 0  # reports the order's state could not take (ignored)
        self.refused = 0  # commands the gateway ring would not take
        self.counts = {
            "sent": 0,
            "fills": 0,
            "partial_fills": 0,
            "rejects": 0,
            "cancels": 0,
            "held": 0,  # not sent: the gateway's mode would refuse it (`allows`)
        }
        self.mode = MODE_ACTIVE  # the gateway's, from its heartbeats (StrategyEngine)
        # This strategy's own positions and P&L, from its own fills (`positions` above
        # is the account's, as the gateway reports it: several strategies may share a
        # symbol). Marked by the engine from its books.
        self.book = PositionBook()

    def allows(self, symbol: str, side: str, qty: int) -> bool:
        """May a new order of `qty` on `side` go out in the gateway's mode?"""
        mode = self.mode
        if mode == MODE_ACTIVE:
            return True
        if mode != MODE_REDUCING:
            return False  # paused, halted
        pos = self.positions.get(symbol, 0)
        buy = side == "B"
        working = sum(
            o.leaves for o in self.orders.values() if o.symbol == symbol and (o.side == "B") == buy
        )
        room = -pos if buy else pos  # how much of the position this side can close
        return qty + working <= room

    def _hold(self) -> None:
        self.counts["held"] += 1

    def _event(self, order: WorkingOrder, event: str) -> None:
        nxt = TRANSITIONS.get((order.state, event))
        if nxt is None:
            raise ValueError(f"order {order.cl_id}: {event!r} not valid in state {order.state!r}")
        order.state = nxt
        if nxt == DONE:
            del self.orders[order.cl_id]

    # --- commands -------------------------------------------------------------------

    def new(self, symbol: str, side: str, qty: int, price: int, tif: str, t1: int) -> int | None:
        """Send a new order; its cl_id, or None if it could not be queued or the
        gateway's mode does not allow it (`held`)."""
        _check_types(symbol, side, qty, price, tif)
        if not self.allows(symbol, side, qty):
            self._hold()
            return None
        cl_id = self.next_cl_id
        if cl_id > self.last_cl_id:
            self._out_of_ids()
            return None
        cmd = OrderCommand(
            CMD_NEW, cl_id, symbol, side, qty, price, tif, 0, self.strategy, t1, self.clock()
        )
        if not self.send(cmd):
            self.refused += 1
            return None
        self.next_cl_id += 1
        self.orders[cl_id] = WorkingOrder(cl_id, symbol, side, qty, price, tif)
        self.counts["sent"] += 1
        return cl_id

    def cancel(self, cl_id: int, t1: int = 0) -> bool:
        o = self.orders.get(cl_id)
        if o is None or o.state in (CANCEL_PENDING, REPLACE_PENDING):
            return False
        cmd = OrderCommand(
            CMD_CANCEL, cl_id, o.symbol, o.side, 0, 0, o.tif, cl_id, self.strategy, t1, self.clock()
        )
        if not self.send(cmd):
            self.refused += 1
            return False
        self._event(o, "cancel_req")
        return True

    def replace(self, cl_id: int, qty: int, price: int, t1: int = 0) -> int | None:
        _check_types("", "", qty, price, "")
        o = self.orders.get(cl_id)
        if o is None or o.state not in (LIVE, PARTIAL):
            return None
        if self.mode != MODE_ACTIVE and not (self.mode == MODE_REDUCING and qty <= o.leaves):
            self._hold()  # outside active: at most a size-down while reducing
            return None
        new_id = self.next_cl_id
        if new_id > self.last_cl_id:
            self._out_of_ids()
            return None
        cmd = OrderCommand(
            CMD_REPLACE,
            new_id,
            o.symbol,
            o.side,
            qty,
            price,
            o.tif,
            cl_id,
            self.strategy,
            t1,
            self.clock(),
        )
        if not self.send(cmd):
            self.refused += 1
            return None
        self.next_cl_id += 1
        self._event(o, "replace_req")
        return new_id

    def _out_of_ids(self) -> None:
        """Every order number of this run is used (2**32): refuse, never wrap into the
        run bits and reuse an id. A restart claims a new run."""
        self.refused += 1
        if not self.ids_exhausted:
            self.ids_exhausted = True
            log.error(
                "%s: all %d order ids of this run are used: no new orders until the "
                "strategy restarts (a new run)",
                self.strategy,
                ids.MAX_NUMBER + 1,
            )

    # --- reports --------------------------------------------------------------------

    def on_report(self, r: ExecutionReport) -> WorkingOrder | None:
        """Apply an execution report; returns the order it concerned.

        A report the order's state cannot take (a duplicate, say) is counted in
        `invalid` and logged, never raised: the gateway's word on positions
        still stands, and a strategy daemon must not die of one odd report.
        """
        try:
            return self._apply(r)
        except ValueError as exc:
            self.invalid += 1
            log.warning("%s: report ignored: %s", self.strategy, exc)
            return None

    def _apply(self, r: ExecutionReport) -> WorkingOrder | None:
        if r.symbol:
            self.positions[r.symbol] = r.position
        if r.kind == EX_REPLACED:
            old = self.orders.get(r.orig_cl_id)
            if old is None:
                self._unknown(r.orig_cl_id)
                return None
            new = WorkingOrder(r.cl_id, old.symbol, old.side, r.qty, r.price, old.tif)
            new.state = LIVE
            new.leaves = r.leaves
            self._event(old, "done")
            self.orders[r.cl_id] = new
            return new
        o = self.orders.get(r.cl_id)
        if o is None and r.kind == EX_REJECTED and r.orig_cl_id:
            o = self.orders.get(r.orig_cl_id)  # a refused replace: cl_id was the new id
        if o is None:
            self._unknown(r.cl_id)
            return None
        if r.kind == EX_ACCEPTED:
            self._event(o, "accepted")
        elif r.kind == EX_FILL:
            o.filled += r.qty
            o.leaves = r.leaves
            self.book.on_fill(o.symbol, "B" if o.side == "B" else "S", r.qty, r.price)
            self.counts["fills"] += 1
            if r.leaves:
                self.counts["partial_fills"] += 1
            self._event(o, "filled" if r.leaves == 0 else "fill")
        elif r.kind == EX_CANCELED:
            o.leaves = r.leaves
            self.counts["cancels"] += 1
            self._event(o, "done" if r.leaves == 0 else "canceled")
        elif r.kind == EX_REJECTED:
            self.counts["rejects"] += 1
            if o.state == REPLACE_PENDING:
                self._event(o, "accepted")  # the replace was refused; the order lives on
            else:
                self._event(o, "done")
        return o

    def _unknown(self, cl_id: int) -> None:
        if cl_id >= self.first_cl_id:
            self.untracked += 1
        else:
            self.stale += 1

    def adopt(
        self,
        cl_id: int,
        symbol: str,
        side: str,
        leaves: int,
        price: int,
        tif: str,
        pending_cancel: bool,
    ) -> None:
        """Take over an order a previous run of this strategy left working."""
        o = WorkingOrder(cl_id, symbol, side, leaves, price, tif)
        o.state = CANCEL_PENDING if pending_cancel else LIVE
        self.orders[cl_id] = o

    def working(self, symbol: str | None = None) -> list[WorkingOrder]:
        return [o for o in self.orders.values() if symbol is None or o.symbol == symbol]

    def position(self, symbol: str) -> int:
        """The account's net position in `symbol` (the gateway's word, whoever traded
        it): what the reducing mode measures against."""
        return self.positions.get(symbol, 0)

    def own_position(self, symbol: str) -> int:
        """This instance's own position (its fills only): what its `max_position`
        caps. Several instances on one symbol each keep to their own cap; the
        account's total is risk's to limit."""
        return self.book.qty(symbol)


def _check_types(symbol: object, side: object, qty: object, price: object, tif: object) -> None:
    """A strategy's order of the types an order command carries, or TypeError
    naming the field: the composite layout hands the command to the gateway as it
    is (no msgpack decoding to refuse a float size there)."""
    if (
        not (isinstance(qty, int) and isinstance(price, int))
        or isinstance(qty, bool)
        or isinstance(price, bool)
    ):
        raise TypeError(
            f"order qty and price must be int (price in 1/{PRICE_SCALE}s), "
            f"not qty {qty!r} and price {price!r}"
        )
    if not (isinstance(symbol, str) and isinstance(side, str) and isinstance(tif, str)):
        raise TypeError(f"order symbol, side and tif must be str: {symbol!r}, {side!r}, {tif!r}")
