"""The venue's protocol logic: OUCH sessions and the ITCH stream around the engine.

Pure: the daemon hands it decoded OUCH messages (and synthetic flow) and a
clock; it appends encoded replies to each user's sequenced OUCH stream and
market data to the ITCH stream, and keeps each user's fills for
reconciliation snapshots. The daemon's clock (`journal.StepClock`) holds one
timestamp per input, journaled with the input, so that replaying the journal
into a new Venue reproduces every byte of every stream. Re-login from sequence N is served from the
streams, so nothing here depends on a connection being up.

OUCH rules this venue applies beyond the engine's:
- UserRefNum must strictly increase per user (Enter, and Replace's new one);
  otherwise the message is rejected (reason 8).
- Cancel/Replace name the order by UserRefNum; an unknown or dead one is
  rejected with reason 7 (hftd's choice: Rejected carries it).

Venue-side events a real venue sends on its own (a broken trade, an order
re-priced) have no cause in this simulator: `venue_event` puts one into a
user's stream on request. It is a test and drill hook (the exchange's
`Inject` control command), journaled like any other input.

A recorded day is played in one of two ways (`exchange.md_file_model`):
"book" (`play_file_message`): the file's orders rest in the engine's books
and ours trade with them; "queue" (`attach_paper`, `play_recorded`): the
file is published as it is and our orders go to the backtest's queue model
(hftd.exchange.paper), fed with every ITCH message the venue publishes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import msgspec

from hftd.config import HftdConfig
from hftd.exchange.denormalize import directory
from hftd.exchange.engine import (
    EngineEvent,
    Fill,
    MatchingEngine,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderReplaced,
    OrderRested,
    SymbolRules,
)
from hftd.exchange.paper import PaperVenue, Reply
from hftd.exchange.stream import MAX_PAYLOAD, MemoryStore, SequencedStream, StreamStore
from hftd.feed.normalize import normalize
from hftd.wire import itch, ouch
from hftd.wire.errors import RemoteProtocolError

SYNTHETIC = ""  # owner of background flow orders
FILE_COUNTERS = (  # Venue.file_counters: a played market-data file's messages
    "messages",  # played
    "published",  # put into the ITCH stream (clipped ones included)
    "clipped",  # applied with fewer shares than the file says (our orders took the rest)
    "traded",  # fills of the file's adds and replaces against our resting orders
    "skipped",  # not published: the order is gone, a system event, a reference in use
    #             (queue model: the file's own start of day, a LOBSTER cross trade)
    "other_symbols",  # for a symbol the venue does not list
    "unreadable",  # not ITCH 5.0, or the wrong size
)

# A recorded file's system events the venue does not publish in the queue model: its
# own start of day said them (start of messages, of system hours, of market hours).
OWN_SYSTEM_EVENTS = frozenset("OSQ")

# Venue-side events `Venue.venue_event` can put into a user's stream (test hook).
EVENT_BROKEN_TRADE = "broken_trade"
EVENT_PRIORITY_UPDATE = "priority_update"
EVENT_RAW = "raw"
EVENTS = (EVENT_BROKEN_TRADE, EVENT_PRIORITY_UPDATE, EVENT_RAW)


class OrderExtras(msgspec.Struct, gc=False):
    """OUCH fields the engine does not need but replies must echo."""

    user: str
    user_ref: int
    display: str
    capacity: str
    iso_eligibility: str
    cross_type: str
    cl_ord_id: str


# What a reply echoes for an order entered without them (background flow).
NO_EXTRAS = OrderExtras("", 0, "Y", "A", "N", "N", "")


class FillRecord(msgspec.Struct, frozen=True, gc=False):
    """One execution as the venue reported it to a user."""

    match_number: int
    user_ref: int
    order_ref: int
    symbol: str
    side: str
    quantity: int
    price: int
    liquidity: str  # A added, R removed
    timestamp: int
    cl_ord_id: str = ""  # the order's, as entered (a Broken Trade echoes it)


class OpenOrder(msgspec.Struct, frozen=True, gc=False):
    user_ref: int
    order_ref: int
    symbol: str
    side: str
    price: int
    open_qty: int
    time_in_force: str


class Snapshot(msgspec.Struct, frozen=True):
    """What the venue knows about one user: for reconciliation."""

    user: str
    next_sequence: int  # of the user's OUCH stream
    open_orders: list[OpenOrder]
    fills: list[FillRecord]


_StoredFill = tuple[int, int, int, str, str, int, int, str, int, str]  # FillRecord's fields
_encode_fill = msgspec.msgpack.Encoder().encode
_decode_fill = msgspec.msgpack.Decoder(_StoredFill).decode


class FillLog:
    """A user's fills, kept for reconciliation snapshots: in a sequenced stream (one
    msgpack array per fill), so with a file-backed store they are on disk like the
    user's OUCH stream, and the venue does not grow with the day's fills."""

    __slots__ = ("broken", "stream")

    def __init__(self, stream: SequencedStream) -> None:
        self.stream = stream
        self.broken: set[int] = set()  # match numbers of broken trades (left out)

    def append(self, fill: _StoredFill) -> None:
        self.stream.append(_encode_fill(fill))

    def __iter__(self) -> Iterator[FillRecord]:
        broken = self.broken
        for raw in self.stream.range(1, self.stream.next_sequence):
            f = FillRecord(*_decode_fill(raw))
            if f.match_number not in broken:
                yield f

    def with_match(self, match_number: int) -> list[FillRecord]:
        return [f for f in self if f.match_number == match_number]

    def break_trade(self, match_number: int) -> list[FillRecord]:
        """Leave out every fill with this match number from now on; returns them."""
        fills = self.with_match(match_number)
        self.broken.add(match_number)
        return fills


def stream_names(user: str) -> tuple[str, str]:
    """The names of a user's OUCH stream and fill log in a `StreamStore` (file names:
    usernames are any printable ASCII, so hex)."""
    key = user.encode().hex()
    return f"ouch-{key}", f"fills-{key}"


class UserState:
    """Per-user OUCH bookkeeping."""

    __slots__ = ("fills", "last_user_ref", "live", "stream")

    def __init__(self, store: StreamStore, name: str) -> None:
        ouch_name, fills_name = stream_names(name)
        self.stream = store.stream(ouch_name)
        self.last_user_ref = 0
        self.live: dict[int, int] = {}  # UserRefNum -> order reference
        self.fills = FillLog(store.stream(fills_name))


class Venue:
    """Engine + OUCH per-user streams + the ITCH stream."""

    def __init__(
        self, cfg: HftdConfig, clock_ns: Callable[[], int], store: StreamStore | None = None
    ) -> None:
        self.cfg = cfg
        self.clock_ns = clock_ns  # ns since midnight
        # Where the sequenced streams live (memory, or files: `JournaledVenue`'s choice).
        self.store: StreamStore = store if store is not None else MemoryStore()
        self.engine = MatchingEngine(
            {s.symbol: SymbolRules(tick=s.tick_fp) for s in cfg.symbols},
            max_order_size=cfg.exchange.max_order_size,
        )
        self.locate = {s.symbol: i + 1 for i, s in enumerate(cfg.symbols)}
        self.md = self.store.stream("md")
        self.users: dict[str, UserState] = {}
        self.extras: dict[int, OrderExtras] = {}  # live order reference -> echo fields
        self.last_trade: dict[str, int] = {}
        self.counters = {"orders": 0, "fills": 0, "cancels": 0, "replaces": 0, "rejects": 0}
        # A recorded market-data file played as background flow (`play_file_message`).
        self.file_locate: dict[int, str] = {}  # the file's stock locate -> symbol
        self.file_counters = dict.fromkeys(FILE_COUNTERS, 0)
        # The queue model (exchange.md_file_model = "queue"): our orders, not the engine.
        self.paper: PaperVenue | None = None

    # --- session-independent streams --------------------------------------------

    def user(self, name: str) -> UserState:
        st = self.users.get(name)
        if st is None:
            st = self.users[name] = UserState(self.store, name)
            st.stream.append(ouch.encode_outbound(ouch.SystemEventMsg(self.clock_ns(), "S")))
        return st

    def _md(self, msg: itch.ItchMessage) -> None:
        self.md.append(itch.encode(msg))
        if self.paper is not None:  # the queue model sees what the venue publishes
            replies = self.paper.market(normalize(msg, len(self.md), 0), self.clock_ns())
            if replies:
                self._replies(replies)

    def _out(self, user: str, msg: ouch.Outbound) -> None:
        if user != SYNTHETIC:
            self.user(user).stream.append(ouch.encode_outbound(msg))

    def start_of_day(self) -> None:
        """Publish the opening ITCH sequence (S O, R and H per symbol, S S, S Q) and
        open each configured user's OUCH stream (System Event S)."""
        ts = self.clock_ns()
        self._md(itch.SystemEvent(0, 0, ts, "O"))
        for s in self.cfg.symbols:
            loc = self.locate[s.symbol]
            self._md(directory(loc, ts, s.symbol, s.round_lot))
            self._md(itch.TradingAction(loc, 0, ts, s.symbol, "T", " ", ""))
        self._md(itch.SystemEvent(0, 0, ts, "S"))
        self._md(itch.SystemEvent(0, 0, ts, "Q"))
        # Every configured user's OUCH stream opens now, not at its first
        # login, so that logins and snapshots never change the venue's state.
        for u in self.cfg.exchange.users:
            self.user(u.username)

    def end_of_day(self) -> None:
        """Cancel day orders and publish end of market/system hours (the queue model
        cancels ours on the S M it is fed)."""
        self._publish(self.engine.end_of_day())
        ts = self.clock_ns()
        self._md(itch.SystemEvent(0, 0, ts, "M"))
        self._md(itch.SystemEvent(0, 0, ts, "E"))
        self._md(itch.SystemEvent(0, 0, ts, "C"))
        for name in self.users:
            self._out(name, ouch.SystemEventMsg(ts, "E"))

    # --- OUCH in ------------------------------------------------------------------

    def handle(self, user: str, msg: ouch.Inbound) -> None:
        """Apply one inbound OUCH message from `user`."""
        st = self.user(user)
        if self.paper is not None:
            self._paper_handle(user, st, msg, self.paper)
        elif isinstance(msg, ouch.EnterOrder):
            self._enter(user, st, msg)
        elif isinstance(msg, ouch.ReplaceOrder):
            self._replace(user, st, msg)
        else:
            self._cancel(user, st, msg)

    def _reject(self, user: str, user_ref: int, reason: int, cl_ord_id: str = "") -> None:
        self.counters["rejects"] += 1
        self._out(user, ouch.Rejected(self.clock_ns(), user_ref, reason, cl_ord_id))

    def _enter(self, user: str, st: UserState, m: ouch.EnterOrder) -> None:
        self.counters["orders"] += 1
        if m.user_ref <= st.last_user_ref:
            self._reject(user, m.user_ref, ouch.REJECT_DUPLICATE_USER_REF, m.cl_ord_id)
            return
        st.last_user_ref = m.user_ref
        events = self.engine.enter(
            owner=user,
            user_ref=m.user_ref,
            symbol=m.symbol,
            side=m.side,
            quantity=m.quantity,
            price=m.price,
            tif=m.time_in_force,
        )
        first = events[0]
        if isinstance(first, OrderAccepted):
            self.extras[first.order.order_ref] = OrderExtras(
                user,
                m.user_ref,
                m.display,
                m.capacity,
                m.iso_eligibility,
                m.cross_type,
                m.cl_ord_id,
            )
            st.live[m.user_ref] = first.order.order_ref
        self._publish(events, cl_ord_id=m.cl_ord_id)

    def _replace(self, user: str, st: UserState, m: ouch.ReplaceOrder) -> None:
        self.counters["replaces"] += 1
        ref = st.live.get(m.orig_user_ref)
        if ref is None:
            self._reject(user, m.new_user_ref, ouch.REJECT_UNKNOWN_ORDER, m.cl_ord_id)
            return
        if m.new_user_ref <= st.last_user_ref:
            self._reject(user, m.new_user_ref, ouch.REJECT_DUPLICATE_USER_REF, m.cl_ord_id)
            return
        st.last_user_ref = m.new_user_ref
        events = self.engine.replace(
            ref,
            new_user_ref=m.new_user_ref,
            quantity=m.quantity,
            price=m.price,
            tif=m.time_in_force,
        )
        first = events[0]
        if isinstance(first, OrderReplaced):
            old = self.extras.pop(ref)
            del st.live[m.orig_user_ref]
            new_ref = first.order.order_ref
            self.extras[new_ref] = OrderExtras(
                user,
                m.new_user_ref,
                m.display,
                old.capacity,
                m.iso_eligibility,
                old.cross_type,
                m.cl_ord_id,
            )
            st.live[m.new_user_ref] = new_ref
        self._publish(events, cl_ord_id=m.cl_ord_id)

    def _cancel(self, user: str, st: UserState, m: ouch.CancelOrder) -> None:
        self.counters["cancels"] += 1
        ref = st.live.get(m.user_ref)
        if ref is None:
            self._reject(user, m.user_ref, ouch.REJECT_UNKNOWN_ORDER)
            return
        self._publish(self.engine.cancel(ref, m.quantity))

    # --- the queue model (exchange.md_file_model = "queue") ---------------------------

    def attach_paper(self) -> None:
        """Match our orders with the backtest's queue model (hftd.exchange.paper) against
        the recorded market the venue publishes, not in the engine's books."""
        self.paper = PaperVenue([s.symbol for s in self.cfg.symbols], self.engine.check)

    def _paper_handle(self, user: str, st: UserState, msg: ouch.Inbound, paper: PaperVenue) -> None:
        """One OUCH message to the queue model, with the venue's own rules first: the
        UserRefNum order, and Cancel/Replace of a working order (as `_enter` & co.)."""
        ts = self.clock_ns()
        if isinstance(msg, ouch.EnterOrder):
            self.counters["orders"] += 1
            if msg.user_ref <= st.last_user_ref:
                self._reject(user, msg.user_ref, ouch.REJECT_DUPLICATE_USER_REF, msg.cl_ord_id)
                return
            st.last_user_ref = msg.user_ref
            self._replies(paper.enter(user, msg, ts))
        elif isinstance(msg, ouch.ReplaceOrder):
            self.counters["replaces"] += 1
            if paper.order(user, msg.orig_user_ref) is None:
                self._reject(user, msg.new_user_ref, ouch.REJECT_UNKNOWN_ORDER, msg.cl_ord_id)
                return
            if msg.new_user_ref <= st.last_user_ref:
                self._reject(user, msg.new_user_ref, ouch.REJECT_DUPLICATE_USER_REF, msg.cl_ord_id)
                return
            st.last_user_ref = msg.new_user_ref
            self._replies(paper.replace(user, msg, ts))
        else:
            self.counters["cancels"] += 1
            if paper.order(user, msg.user_ref) is None:
                self._reject(user, msg.user_ref, ouch.REJECT_UNKNOWN_ORDER)
                return
            self._replies(paper.cancel(user, msg, ts))

    def _replies(self, replies: list[Reply]) -> None:
        """The queue model's answers into the users' streams (fills into their logs)."""
        counters = self.counters
        for user, msg, fill in replies:
            self._out(user, msg)
            if fill is not None:
                counters["fills"] += 1
                self.last_trade[fill[3]] = fill[6]
                self.user(user).fills.append(fill)
            elif isinstance(msg, ouch.Rejected):
                counters["rejects"] += 1

    def play_recorded(self, msg: itch.ItchMessage | None) -> None:
        """Publish one message of a recorded day (queue model): the venue's stock locate
        and clock, every other field as recorded; the queue model sees it as published
        (`_md`). Left out: the file's system events of the start of the day (the venue
        said its own), messages for symbols the venue does not list, and unreadable
        ones (None: not ITCH 5.0, or a LOBSTER record ITCH cannot carry)."""
        fc = self.file_counters
        fc["messages"] += 1
        if msg is None or isinstance(msg, itch.Unknown):
            fc["unreadable" if msg is not None else "skipped"] += 1
            return
        if isinstance(msg, itch.SystemEvent) and msg.event_code in OWN_SYSTEM_EVENTS:
            fc["skipped"] += 1
            return
        symbol = self._file_symbol(msg)
        if symbol is None:
            fc["other_symbols"] += 1
            return
        loc = self.locate[symbol] if symbol else 0
        self._file_md(msgspec.structs.replace(msg, stock_locate=loc, timestamp=self.clock_ns()))

    def _file_symbol(self, msg: itch.ItchMessage) -> str | None:
        """The listed symbol a file message is for ("" market-wide), None if not listed;
        learns the file's stock locates from the messages that name the stock."""
        stock: str | None = getattr(msg, "stock", None)
        if stock is not None:
            self.file_locate[msg.stock_locate] = stock  # type: ignore[union-attr]
            symbol = stock
        elif msg.stock_locate == 0:  # type: ignore[union-attr]
            symbol = ""  # market-wide (S, V, W)
        else:
            symbol = self.file_locate.get(msg.stock_locate, "?")  # type: ignore[union-attr]
        return symbol if not symbol or symbol in self.locate else None

    def depth(
        self, symbol: str
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], dict[int, tuple[str, int, int]]]:
        """`symbol`'s full-depth book (bids, asks best first; orders by reference): the
        engine's, or with the queue model the recorded market's (ours are not in it).
        KeyError for a symbol the venue does not list."""
        if self.paper is None:
            book = self.engine.books[symbol]
            orders = {
                o.order_ref: ("B" if o.side == "B" else "S", o.price, o.open_qty)
                for o in book.orders()
            }
            return book.depth("B"), book.depth("S"), orders
        if symbol not in self.locate:
            raise KeyError(symbol)
        orders = self.paper.queue.real_orders(symbol)
        levels: dict[str, dict[int, int]] = {"B": {}, "S": {}}
        for side, price, qty in orders.values():
            at = levels[side]
            at[price] = at.get(price, 0) + qty
        bids = sorted(levels["B"].items(), reverse=True)
        asks = sorted(levels["S"].items())
        return bids, asks, orders

    # --- synthetic flow -----------------------------------------------------------

    def flow_enter(self, symbol: str, side: str, quantity: int, price: int, tif: str) -> int | None:
        """Enter a background order; returns its reference if it rests."""
        events = self.engine.enter(
            owner=SYNTHETIC,
            user_ref=0,
            symbol=symbol,
            side=side,
            quantity=quantity,
            price=price,
            tif=tif,
        )
        self._publish(events)
        last = events[-1]
        return last.order.order_ref if isinstance(last, OrderRested) else None

    def flow_cancel(self, order_ref: int) -> None:
        if order_ref in self.engine.orders:
            self._publish(self.engine.cancel(order_ref, 0))

    # --- engine events out ---------------------------------------------------------

    def _publish(self, events: list[EngineEvent], cl_ord_id: str = "") -> None:
        ts = self.clock_ns()
        for ev in events:
            if isinstance(ev, Fill):
                self._on_fill(ev, ts)
            elif isinstance(ev, OrderRested):
                o = ev.order
                self._md(
                    itch.AddOrder(
                        self.locate[o.symbol],
                        0,
                        ts,
                        o.order_ref,
                        "B" if o.side == "B" else "S",
                        o.open_qty,
                        o.symbol,
                        o.price,
                    )
                )
            elif isinstance(ev, OrderAccepted):
                o = ev.order
                x = self.extras.get(o.order_ref, NO_EXTRAS)
                self._out(
                    o.owner,
                    ouch.Accepted(
                        ts,
                        o.user_ref,
                        o.side,
                        o.open_qty,
                        o.symbol,
                        o.price,
                        o.tif,
                        x.display,
                        o.order_ref,
                        x.capacity,
                        x.iso_eligibility,
                        x.cross_type,
                        "L",
                        x.cl_ord_id or cl_ord_id,
                    ),
                )
            elif isinstance(ev, OrderCanceled):
                self._on_canceled(ev, ts)
            elif isinstance(ev, OrderReplaced):
                self._on_replaced(ev, ts)
            elif isinstance(ev, OrderRejected):
                self._reject(ev.owner, ev.user_ref, ev.reason, cl_ord_id)

    def _forget(self, order_ref: int) -> None:
        x = self.extras.pop(order_ref, None)
        if x is not None:
            self.users[x.user].live.pop(x.user_ref, None)

    def _on_fill(self, f: Fill, ts: int) -> None:
        self.counters["fills"] += 1
        self.last_trade[f.symbol] = f.price
        self._md(
            itch.OrderExecuted(
                self.locate[f.symbol], 0, ts, f.resting_ref, f.quantity, f.match_number
            )
        )
        aggressor_side = "S" if f.resting_side == "B" else "B"
        for owner, user_ref, ref, side, liq, left in (
            (
                f.resting_owner,
                f.resting_user_ref,
                f.resting_ref,
                f.resting_side,
                "A",
                f.resting_open_qty,
            ),
            (
                f.aggressor_owner,
                f.aggressor_user_ref,
                f.aggressor_ref,
                aggressor_side,
                "R",
                f.aggressor_open_qty,
            ),
        ):
            if owner == SYNTHETIC:
                continue
            self._out(owner, ouch.Executed(ts, user_ref, f.quantity, f.price, liq, f.match_number))
            x = self.extras.get(ref, NO_EXTRAS)
            self.users[owner].fills.append(
                (
                    f.match_number,
                    user_ref,
                    ref,
                    f.symbol,
                    side,
                    f.quantity,
                    f.price,
                    liq,
                    ts,
                    x.cl_ord_id,
                )
            )
            if left == 0:
                self._forget(ref)

    def _on_canceled(self, c: OrderCanceled, ts: int) -> None:
        if c.was_resting:
            loc = self.locate[c.symbol]
            if c.open_qty == 0:
                self._md(itch.OrderDelete(loc, 0, ts, c.order_ref))
            else:
                self._md(itch.OrderCancel(loc, 0, ts, c.order_ref, c.quantity))
        self._out(c.owner, ouch.Canceled(ts, c.user_ref, c.quantity, c.reason))
        if c.open_qty == 0:
            self._forget(c.order_ref)

    def _on_replaced(self, r: OrderReplaced, ts: int) -> None:
        o = r.order
        loc = self.locate[o.symbol]
        if r.kept_priority:
            if r.old_open_qty > o.open_qty:
                self._md(itch.OrderCancel(loc, 0, ts, r.old_ref, r.old_open_qty - o.open_qty))
        elif not r.crossed:
            self._md(itch.OrderReplace(loc, 0, ts, r.old_ref, o.order_ref, o.open_qty, o.price))
        else:
            self._md(itch.OrderDelete(loc, 0, ts, r.old_ref))
        x = self.extras.get(o.order_ref, NO_EXTRAS)
        self._out(
            o.owner,
            ouch.Replaced(
                ts,
                r.orig_user_ref,
                o.user_ref,
                o.side,
                o.open_qty,
                o.symbol,
                o.price,
                o.tif,
                x.display,
                o.order_ref,
                x.capacity,
                x.iso_eligibility,
                x.cross_type,
                "L",
                x.cl_ord_id,
            ),
        )

    # --- venue-side events (a test and drill hook) ----------------------------------

    def event_problem(self, user: str, kind: str, number: int, raw: bytes = b"") -> str:
        """Why `venue_event(user, kind, number, ...)` cannot be applied ("" if it can)."""
        st = self.users.get(user)
        if st is None:
            return f"no OUCH stream for user {user!r}"
        if kind == EVENT_BROKEN_TRADE:
            if number in st.fills.broken or not st.fills.with_match(number):
                return f"user {user} has no execution with match number {number}"
        elif kind == EVENT_PRIORITY_UPDATE:
            if self._working(user, number) is None:
                return f"user {user} has no live order with UserRefNum {number}"
        elif kind != EVENT_RAW:
            return f"unknown event {kind!r} (known: {', '.join(EVENTS)})"
        elif len(raw) > MAX_PAYLOAD:
            return f"a raw message of {len(raw)} bytes (a sequenced message holds {MAX_PAYLOAD})"
        return ""

    def venue_event(self, user: str, kind: str, number: int, raw: bytes = b"") -> None:
        """Put a venue-side message into `user`'s OUCH stream (check `event_problem` first):

        - "broken_trade": every fill of `user` with match number `number` is broken:
          it leaves the user's fills (the snapshot) and a Broken Trade is sent;
        - "priority_update": an Order Priority Update for the live order with
          UserRefNum `number` (its price, display and order reference as they are:
          the book is not re-priced);
        - "raw": `raw` as a sequenced message, whatever it is (hostile-input drills).
        """
        st = self.user(user)
        ts = self.clock_ns()
        if kind == EVENT_BROKEN_TRADE:
            for f in st.fills.break_trade(number):
                self._out(
                    user,
                    ouch.BrokenTrade(ts, f.user_ref, number, ouch.BROKEN_SUPERVISORY, f.cl_ord_id),
                )
        elif kind == EVENT_PRIORITY_UPDATE:
            working = self._working(user, number)
            assert working is not None
            ref, price, display = working
            self._out(user, ouch.OrderPriorityUpdate(ts, number, price, display, ref))
        else:
            st.stream.append(raw)

    def _working(self, user: str, user_ref: int) -> tuple[int, int, str] | None:
        """`user`'s live order `user_ref`: (order reference, price, display), or None."""
        if self.paper is not None:
            p = self.paper.order(user, user_ref)
            return None if p is None else (p.ref, p.price, p.display)
        st = self.users.get(user)
        ref = st.live.get(user_ref) if st is not None else None
        o = self.engine.order(ref) if ref is not None else None
        if ref is None or o is None:
            return None
        return ref, o.price, self.extras.get(ref, NO_EXTRAS).display

    # --- a recorded market-data file (exchange.md_file) --------------------------------

    def attach_file(self, max_order_ref: int, max_match_number: int) -> None:
        """Number the venue's own orders and trades above the file's (`MdFile`)."""
        self.engine.reserve(max_order_ref, max_match_number)

    def play_file_message(self, raw: bytes) -> None:
        """Apply one message of a recorded ITCH file to the books and the ITCH stream.

        The file's orders are background orders (owner SYNTHETIC) with the file's
        references; what the venue publishes carries the venue's stock locate and
        clock, everything else as in the file. Adds (A, F) and replaces (U) trade
        with the venue's orders they cross, then rest; executions (E, C), cancels
        (X) and deletes (D) apply to the order they name, clipped to what is left
        of it (an X that takes the rest is published as D), and are dropped when it
        is gone (our orders took it). Every other ITCH 5.0 type is published as it
        is, but system events (S: the venue has its own) and anything for a symbol
        the venue does not list. Unreadable messages are skipped. `file_counters`
        say what happened."""
        fc = self.file_counters
        fc["messages"] += 1
        try:
            msg = itch.decode(raw)
        except RemoteProtocolError:
            fc["unreadable"] += 1
            return
        if isinstance(msg, itch.Unknown):
            fc["unreadable"] += 1
            return
        if isinstance(msg, itch.SystemEvent):
            fc["skipped"] += 1
            return
        symbol = self._file_symbol(msg)
        if symbol is None:
            fc["other_symbols"] += 1
            return
        loc = self.locate[symbol] if symbol else 0
        ts = self.clock_ns()
        if isinstance(msg, itch.AddOrder | itch.AddOrderMPID):
            self._file_add(msg, loc, ts)
        elif isinstance(msg, itch.OrderExecuted | itch.OrderExecutedWithPrice | itch.OrderCancel):
            self._file_reduce(msg, loc, ts)
        elif isinstance(msg, itch.OrderDelete):
            if self._file_order(msg.order_ref) is None:
                fc["skipped"] += 1
                return
            self.engine.cancel(msg.order_ref, 0)
            self._file_md(msgspec.structs.replace(msg, stock_locate=loc, timestamp=ts))
        elif isinstance(msg, itch.OrderReplace):
            self._file_replace(msg, loc, ts)
        else:
            self._file_md(msgspec.structs.replace(msg, stock_locate=loc, timestamp=ts))

    def _file_order(self, order_ref: int) -> Order | None:
        o = self.engine.orders.get(order_ref)
        return o if o is not None and o.owner == SYNTHETIC else None

    def _file_md(self, msg: itch.ItchMessage) -> None:
        self.file_counters["published"] += 1
        self._md(msg)

    def _file_add(self, m: itch.AddOrder | itch.AddOrderMPID, loc: int, ts: int) -> None:
        events = self.engine.enter_as(
            m.order_ref,
            owner=SYNTHETIC,
            symbol=m.stock,
            side=m.side,
            quantity=m.shares,
            price=m.price,
        )
        if not events:
            self.file_counters["skipped"] += 1
            return
        self._file_events(events, loc, ts, m)

    def _file_events(
        self,
        events: list[EngineEvent],
        loc: int,
        ts: int,
        m: itch.AddOrder | itch.AddOrderMPID | itch.OrderReplace,
    ) -> None:
        """A file order's fills against ours, then its rest as an add."""
        fc = self.file_counters
        for ev in events:
            if isinstance(ev, Fill):
                fc["traded"] += 1
                self._on_fill(ev, ts)
            elif isinstance(ev, OrderRested):
                o = ev.order
                if isinstance(m, itch.AddOrderMPID):
                    add: itch.ItchMessage = itch.AddOrderMPID(
                        loc,
                        m.tracking_number,
                        ts,
                        o.order_ref,
                        o.side,
                        o.open_qty,
                        o.symbol,
                        o.price,
                        m.attribution,
                    )
                else:
                    add = itch.AddOrder(
                        loc,
                        m.tracking_number,
                        ts,
                        o.order_ref,
                        o.side,
                        o.open_qty,
                        o.symbol,
                        o.price,
                    )
                self._file_md(add)

    def _file_reduce(
        self,
        m: itch.OrderExecuted | itch.OrderExecutedWithPrice | itch.OrderCancel,
        loc: int,
        ts: int,
    ) -> None:
        fc = self.file_counters
        o = self._file_order(m.order_ref)
        shares = m.cancelled_shares if isinstance(m, itch.OrderCancel) else m.executed_shares
        take = min(shares, o.open_qty) if o is not None else 0
        if o is None or take <= 0:
            fc["skipped"] += 1
            return
        if take < shares:
            fc["clipped"] += 1
        left = o.open_qty - take
        self.engine.cancel(m.order_ref, left)
        out: itch.ItchMessage
        if isinstance(m, itch.OrderCancel):
            out = (
                itch.OrderDelete(loc, m.tracking_number, ts, m.order_ref)
                if left == 0
                else msgspec.structs.replace(m, stock_locate=loc, timestamp=ts)
            )
        elif isinstance(m, itch.OrderExecuted):
            out = msgspec.structs.replace(m, stock_locate=loc, timestamp=ts, executed_shares=take)
        else:
            out = msgspec.structs.replace(m, stock_locate=loc, timestamp=ts, executed_shares=take)
        self._file_md(out)

    def _file_replace(self, m: itch.OrderReplace, loc: int, ts: int) -> None:
        o = self._file_order(m.original_ref)
        if o is None or m.new_ref in self.engine.orders or m.shares <= 0:
            self.file_counters["skipped"] += 1
            return
        self.engine.cancel(m.original_ref, 0)
        events = self.engine.enter_as(
            m.new_ref,
            owner=SYNTHETIC,
            symbol=o.symbol,
            side=o.side,
            quantity=m.shares,
            price=m.price,
        )
        if len(events) == 1 and isinstance(events[0], OrderRested):
            self._file_md(msgspec.structs.replace(m, stock_locate=loc, timestamp=ts))
            return
        # It crossed our orders: as any crossing replace, the old one leaves first.
        self._file_md(itch.OrderDelete(loc, m.tracking_number, ts, m.original_ref))
        self._file_events(events, loc, ts, m)

    # --- reconciliation -----------------------------------------------------------

    def snapshot(self, user: str) -> Snapshot:
        st = self.user(user)
        opens = []
        if self.paper is not None:
            for p in self.paper.open_orders(user):
                opens.append(
                    OpenOrder(p.user_ref, p.ref, p.symbol, p.wire_side, p.price, p.leaves, p.tif)
                )
        for user_ref, ref in st.live.items():
            o = self.engine.order(ref)
            if o is not None:
                opens.append(OpenOrder(user_ref, ref, o.symbol, o.side, o.price, o.open_qty, o.tif))
        return Snapshot(user, st.stream.next_sequence, opens, list(st.fills))
