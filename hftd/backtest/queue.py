"""The backtest's venue: our orders in the recorded real book at their queue position.

`QueueVenue` replays the real market-data stream (`on_market`) into its own
order-level book and matches our orders (`enter`, `cancel`, `replace`)
against it as if they had been there, answering in the gateway's neutral
venue events (hftd.gateway.venue), which the order core consumes unchanged.
Pure logic: no I/O, no clock (latency is the runner's business).

It follows hftbacktest's L3 FIFO queue model (`L3FIFOQueueModel`): every price
level is a FIFO of real orders and ours, and a real execution of an order at
a level fills every order of ours ahead of it there.

Rules
-----
- A real execution of resting order X (its price p, the level's): each of our
  orders on X's side AHEAD of X at p fills, and each at a better price than p
  (a buy above, a sell below) fills: the aggressor reached X, so it passed
  through us first. At our own limit price, liquidity "A".
- A real order arriving (add, or a replace's new order) at a price that
  crosses one of our resting orders would have traded with it: ours fill, best
  price first then FIFO, up to the arrival's size, at our price, liquidity "A";
  the arrival's shares we traded with are marked consumed (below).
- A hidden execution (MD_TRADE, ITCH P) at p: our buys above p and our sells
  below p fill in full (the market traded through them); at exactly p nothing
  fills (the hidden order may have had priority: hftbacktest's conservative
  choice). ITCH P's side is always "B" since 2014, so both sides are checked.
- A real cancel or delete of an order ahead of us moves us up; a real add at
  our price joins behind us; a real partial cancel (ITCH X) keeps its place; a
  real replace (ITCH U) is a delete and an add at the tail of its new level.
- Our new order takes the visible real liquidity best level first up to its
  limit (`MARKET_PRICE`: any price), one `Executed` per real level at that
  level's price, liquidity "R"; the rest of an IOC or a market order is
  cancelled (CANCEL_IOC), the rest of a DAY or GTX order rests at the tail.
- Replace (OUCH 5.0: "Replacing an order always gives it a new timestamp for its
  time priority"; to keep priority one sends a partial Cancel instead): the new
  order always goes to the tail, even for a size decrease at the same price.
  (hftd.exchange.engine keeps priority for that case: it is not OUCH 5.0's rule.)
  An invalid replace is refused for the new reference and the old order works
  on (as hftd.exchange.engine does; OUCH 5.0 would cancel the old order).
- Halted (ITCH H, any state but "T"): nothing fills; a new order is accepted
  but does not match, so an IOC or market order is cancelled and a DAY or GTX
  order rests, even when it crosses. When trading resumes, our resting orders
  that cross the visible real book take from it (liquidity "R").
- End of market hours (ITCH S "M"): our DAY orders are cancelled
  (CANCEL_CLOSED); GTX orders work on (as the exchange simulator does).

Assumptions (what the model cannot know)
----------------------------------------
- No market impact: the real order flow is replayed unchanged. Our fills never
  remove real orders; liquidity we take is only hidden from our own later
  orders, as a per-real-order `consumed` shadow quantity. When the real order
  later shrinks (execution, cancel) its shadow becomes min(shadow, shares
  left): what others took or cancelled in the data comes off what we did not
  take first (the order then holds what it would have held with us there). A
  real replace carries min(shadow, new size) to its new order (conservative:
  our later orders do not retake shares that may be the same).
- Fill all on an execution behind (or through) us: the data does not say how
  large the aggressor was, so our whole leaves fill (hftbacktest does the
  same). Optimistic when our order is larger than the flow that reached it.
- Hidden liquidity is not seen: our takers see displayed orders only, and a
  hidden execution at our price does not fill us.
- Our resting orders fill at their own limit price, even on an ITCH C execution
  whose price differs from the display (a cross): conservative for us.
- Our own orders never trade with each other (the taker sees real orders only).
- MD_RESET never appears in a recorded file; it is ignored.
- Bad data never raises: an update naming an order the book does not hold
  counts in `unknown_refs`, any other inconsistency (an add of a live
  reference, a size <= 0, an execution larger than the order, a side that is
  neither B nor S) in `bad_updates`; either is skipped.

Representation (why it is cheap)
--------------------------------
`on_market` runs for every real message (the target: ~1 us each with no
orders of ours). Per symbol, `orders` maps a real reference to (side, price,
level) and a level is an insertion-ordered dict real ref -> shares: dict order
is FIFO order (a partial cancel rewrites the value in place, a replace deletes
and re-adds at the tail) and a delete is O(1). No sorted price lists are kept:
only a marketable order of ours needs the levels in order, and it sorts the
candidate prices then (rare next to the message rate). The real best bid and
ask are kept as far as that is free (a new level better than them moves them;
their level emptying makes them unknown until one of our orders asks, which
finds them again with one min or max), so an order of ours that crosses
nothing, most of them, learns it in one comparison. The symbol keeps our
best resting bid and ask (`top_bid`, `top_ask`): when an event's price is
beyond them it cannot touch an order of ours, so the common path is two or
three dict operations and one comparison. ADD and DELETE (nine messages in ten)
are inline in `on_market`.

Our order keeps the set of real refs that were ahead of it when it joined its
level (`ahead`); anything added later is behind it. So a real execution of X
at our level fills our order iff X is not in that set (one set lookup per
order of ours there), refs leaving the level are discarded from it, and
`queue_ahead` sums the set's live shares on demand. No `ahead` counter has to
be kept up to date on every cancel.

State (a checkpoint)
--------------------
`state()` is the whole model as a `QueueState` (msgspec, so it encodes as it
is) and `QueueVenue.restore(state)` a model that answers every later input
exactly as the one it was taken from: each level's FIFO, our orders in their
queues with the real refs ahead of them, the consumed shadows, the halts,
the locate codes and the counters. The exchange's paper venue
(hftd.exchange.paper) checkpoints it; a restart does not replay the day.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from hftd.gateway.venue import (
    CANCEL_CLOSED,
    CANCEL_IOC,
    CANCEL_USER,
    REJECT_DUPLICATE_REF,
    REJECT_INVALID_PRICE,
    REJECT_INVALID_QUANTITY,
    REJECT_INVALID_SIDE,
    REJECT_INVALID_TIF,
    REJECT_QUANTITY_EXCEEDS_MAX,
    REJECT_UNKNOWN_ORDER,
    REJECT_UNKNOWN_SYMBOL,
    Accepted,
    Canceled,
    Executed,
    Rejected,
    Replaced,
    VenueEvent,
)
from hftd.msg.hot import (
    MARKET_PRICE,
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_REPLACE,
    MD_SYSTEM,
    MD_TRADE,
    MD_TRADING,
    TIF_DAY,
    TIF_GTX,
    TIF_IOC,
    MarketDataUpdate,
)

MAX_QTY: Final = 1_000_000  # the largest order (hftd.exchange.engine's default)
TIFS: Final = frozenset((TIF_DAY, TIF_IOC, TIF_GTX))
TRADING: Final = "T"  # ITCH H trading state: anything else (H, P, Q) is halted
END_OF_MARKET_HOURS: Final = "M"  # ITCH S event code: DAY orders expire
NO_BID: Final = -1  # below every price
NO_ASK: Final = 1 << 62  # above every price (MARKET_PRICE included)

# A real order in the book: (side, price, its level: real ref -> shares, FIFO).
_Real = tuple[str, int, dict[int, int]]
# A side's levels as a state holds them: (price, [(real ref, shares), FIFO]).
_Levels = list[tuple[int, list[tuple[int, int]]]]


class MineState(msgspec.Struct, frozen=True, array_like=True):
    """One of our working orders (`QueueState`); `ahead` sorted."""

    ref: int
    cl_id: int
    symbol: str
    side: str
    leaves: int
    price: int
    tif: str
    ahead: list[int]


class BookState(msgspec.Struct, frozen=True, array_like=True):
    """One symbol of a `QueueState`: its real levels (FIFO kept), shadows, halt."""

    symbol: str
    halted: bool
    bids: _Levels
    asks: _Levels
    consumed: list[tuple[int, int]]


class QueueState(msgspec.Struct, frozen=True, array_like=True):
    """A `QueueVenue`'s whole state (`QueueVenue.state`, `QueueVenue.restore`)."""

    wanted: list[str] | None
    books: list[BookState]
    locates: list[tuple[int, str | None]]  # locate -> symbol (None: not wanted)
    mine: list[MineState]  # our working orders, oldest first (each level's FIFO too)
    last_ref: int
    match: int
    unknown_refs: int
    bad_updates: int


class _Mine:
    """One of our orders resting (or being matched) at the venue."""

    __slots__ = ("ahead", "book", "cl_id", "leaves", "price", "ref", "side", "tif")

    def __init__(
        self, book: _Book, ref: int, cl_id: int, side: str, leaves: int, price: int, tif: str
    ) -> None:
        self.book = book
        self.ref = ref
        self.cl_id = cl_id
        self.side = side
        self.leaves = leaves
        self.price = price
        self.tif = tif
        self.ahead: set[int] = set()  # real refs ahead of it at its level


class _Book:
    """One symbol: the real orders by level, ours by price, the consumed shadows."""

    __slots__ = (
        "asks",
        "best_ask",
        "best_bid",
        "bids",
        "consumed",
        "halted",
        "mine_asks",
        "mine_bids",
        "orders",
        "symbol",
        "top_ask",
        "top_bid",
    )

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.orders: dict[int, _Real] = {}
        self.bids: dict[int, dict[int, int]] = {}  # price -> level (ref -> shares, FIFO)
        self.asks: dict[int, dict[int, int]] = {}
        self.consumed: dict[int, int] = {}  # real ref -> shares of it we traded with
        self.mine_bids: dict[int, list[_Mine]] = {}  # price -> our resting orders, FIFO
        self.mine_asks: dict[int, list[_Mine]] = {}
        # Our best resting prices (NO_BID / NO_ASK when none): one comparison tells
        # the hot path that a real event cannot touch any order of ours.
        self.top_bid = NO_BID
        self.top_ask = NO_ASK
        # The real book's best prices, None when unknown (its level went: found again
        # when one of our orders needs it): one comparison tells most of ours that
        # they cross nothing, without a pass over the levels.
        self.best_bid: int | None = NO_BID
        self.best_ask: int | None = NO_ASK
        self.halted = False

    def new_level(self, side: str, price: int) -> None:
        """A real level was made at `price` (after its dict is in place)."""
        if side == "B":
            if self.best_bid is not None and price > self.best_bid:
                self.best_bid = price
        elif self.best_ask is not None and price < self.best_ask:
            self.best_ask = price

    def drop_level(self, side: str, price: int) -> None:
        """The real level at `price` is empty: gone."""
        if side == "B":
            del self.bids[price]
            if price == self.best_bid:
                self.best_bid = None
        else:
            del self.asks[price]
            if price == self.best_ask:
                self.best_ask = None

    def retop(self) -> None:
        """Recompute our best resting prices (after one of ours left)."""
        self.top_bid = max(self.mine_bids, default=NO_BID)
        self.top_ask = min(self.mine_asks, default=NO_ASK)


class QueueVenue:
    """The venue model of a backtest (see the module docstring for its rules)."""

    def __init__(self, symbols: Iterable[str] | None = None) -> None:
        self.wanted = frozenset(symbols) if symbols is not None else None
        self.books: dict[str, _Book] = {s: _Book(s) for s in self.wanted or ()}
        self._by_locate: dict[int, _Book | None] = {}  # None: a symbol not wanted
        self._mine: dict[int, _Mine] = {}
        self._last_ref = 0  # our order numbers must increase (OUCH's UserRefNum rule)
        self._match = 1  # the next match number
        self.unknown_refs = 0  # real updates naming an order (or locate) not held
        self.bad_updates = 0  # other inconsistent real updates (skipped)

    # --- real market data ------------------------------------------------------------

    def on_market(self, u: MarketDataUpdate) -> list[VenueEvent]:
        """Apply one real update; the events it causes for our orders (fills, closes)."""
        kind = u.kind
        if kind == MD_ADD:  # the commonest two, inline: no call on the common path
            b = self._by_locate.get(u.locate)
            if b is None:
                b = self._locate(u.locate, u.symbol)
                if b is None:
                    return []
            ref, side, qty, price = u.order_ref, u.side, u.qty, u.price
            if side == "B":
                levels = b.bids
            elif side == "S":
                levels = b.asks
            else:
                self.bad_updates += 1
                return []
            orders = b.orders
            if qty <= 0 or ref in orders:
                self.bad_updates += 1
                return []
            level = levels.get(price)
            if level is None:
                level = levels[price] = {}
                b.new_level(side, price)
            level[ref] = qty
            orders[ref] = (side, price, level)
            if (price >= b.top_ask if side == "B" else price <= b.top_bid) and not b.halted:
                return self._arrival(b, ref, side, price, qty)
            return []
        if kind == MD_DELETE:
            b = self._by_locate.get(u.locate)
            if b is None:
                if u.locate not in self._by_locate:
                    self.unknown_refs += 1
                return []
            ref = u.order_ref
            o = b.orders.pop(ref, None)
            if o is None:
                self.unknown_refs += 1
                return []
            side, price, level = o
            del level[ref]
            if not level:
                b.drop_level(side, price)
            if b.consumed:
                b.consumed.pop(ref, None)
            if b.top_bid >= price if side == "B" else b.top_ask <= price:
                self._left_level(b, ref, side, price)
            return []
        if kind == MD_EXECUTE:
            return self._execute(u)
        if kind == MD_TRADE:
            return self._hidden_trade(u)
        if kind == MD_CANCEL:
            return self._cancel_real(u)
        if kind == MD_REPLACE:
            return self._replace_real(u)
        if kind == MD_DIRECTORY:
            self._locate(u.locate, u.symbol)
        elif kind == MD_TRADING:
            return self._trading(u)
        elif kind == MD_SYSTEM and u.side == END_OF_MARKET_HOURS:
            return self._close_day_orders()
        return []

    def _locate(self, locate: int, symbol: str) -> _Book | None:
        """The book of a locate code, made on its first naming with a symbol."""
        if locate in self._by_locate:
            return self._by_locate[locate]
        if not symbol or (self.wanted is not None and symbol not in self.wanted):
            self._by_locate[locate] = None
            return None
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = _Book(symbol)
        self._by_locate[locate] = b
        return b

    def _book_of_ref(self, locate: int) -> _Book | None:
        """The book an order-ref update (no symbol) acts on; None to skip it."""
        b = self._by_locate.get(locate)
        if b is None and locate not in self._by_locate:
            self.unknown_refs += 1  # a locate never announced: its orders are unknown
        return b

    def _execute(self, u: MarketDataUpdate) -> list[VenueEvent]:
        b = self._book_of_ref(u.locate)
        if b is None:
            return []
        ref, qty = u.order_ref, u.qty
        o = b.orders.get(ref)
        if o is None:
            self.unknown_refs += 1
            return []
        if qty <= 0:
            self.bad_updates += 1
            return []
        side, price, _ = o
        # Ours ahead of X (or better priced) first, while X still counts as in the queue.
        reach = b.top_bid >= price if side == "B" else b.top_ask <= price
        events = self._executed_through(b, ref, side, price) if reach and not b.halted else []
        self._reduce(b, ref, o, qty)
        return events

    def _cancel_real(self, u: MarketDataUpdate) -> list[VenueEvent]:
        b = self._book_of_ref(u.locate)
        if b is None:
            return []
        ref = u.order_ref
        o = b.orders.get(ref)
        if o is None:
            self.unknown_refs += 1
        elif u.qty <= 0:
            self.bad_updates += 1
        else:
            self._reduce(b, ref, o, u.qty)
        return []

    def _reduce(self, b: _Book, ref: int, o: _Real, qty: int) -> None:
        """Take `qty` real shares off order `ref` (execution or partial cancel): it
        keeps its place; its consumed shadow is capped at what is left."""
        side, price, level = o
        left = level[ref] - qty
        if left > 0:
            level[ref] = left
            consumed = b.consumed
            if consumed:
                c = consumed.get(ref)
                if c is not None and c > left:
                    consumed[ref] = left
            return
        if left < 0:
            self.bad_updates += 1  # more than the order held: it is gone all the same
        del b.orders[ref]
        del level[ref]
        if not level:
            b.drop_level(side, price)
        if b.consumed:
            b.consumed.pop(ref, None)
        if b.top_bid >= price if side == "B" else b.top_ask <= price:
            self._left_level(b, ref, side, price)

    def _replace_real(self, u: MarketDataUpdate) -> list[VenueEvent]:
        b = self._book_of_ref(u.locate)
        if b is None:
            return []
        old = u.order_ref
        o = b.orders.pop(old, None)
        if o is None:
            self.unknown_refs += 1
            return []
        side, old_price, old_level = o
        del old_level[old]
        if not old_level:
            b.drop_level(side, old_price)
        carried = b.consumed.pop(old, 0) if b.consumed else 0
        if b.top_bid >= old_price if side == "B" else b.top_ask <= old_price:
            self._left_level(b, old, side, old_price)
        new, qty, price = u.new_ref, u.qty, u.price
        if qty <= 0 or new in b.orders:
            self.bad_updates += 1
            return []
        levels = b.bids if side == "B" else b.asks
        level = levels.get(price)
        if level is None:
            level = levels[price] = {}
            b.new_level(side, price)
        level[new] = qty
        b.orders[new] = (side, price, level)
        if carried:
            b.consumed[new] = min(carried, qty)
        if (price >= b.top_ask if side == "B" else price <= b.top_bid) and not b.halted:
            return self._arrival(b, new, side, price, qty)
        return []

    def _left_level(self, b: _Book, ref: int, side: str, price: int) -> None:
        """Real order `ref` left its level: it is ahead of none of ours any more."""
        mine = (b.mine_bids if side == "B" else b.mine_asks).get(price)
        if mine:
            for m in mine:
                m.ahead.discard(ref)

    def _executed_through(self, b: _Book, ref: int, side: str, price: int) -> list[VenueEvent]:
        """Real order `ref` at `price` traded: fill ours on its side that were better
        priced, then ours ahead of it at its level (priority order)."""
        mine = b.mine_bids if side == "B" else b.mine_asks
        if not mine:
            return []
        if side == "B":
            better = sorted((p for p in mine if p > price), reverse=True)
        else:
            better = sorted(p for p in mine if p < price)
        hit = [m for p in better for m in mine[p]]
        at = mine.get(price)
        if at:
            hit.extend(m for m in at if ref not in m.ahead)
        events: list[VenueEvent] = []
        for m in hit:
            self._fill_resting(m, m.leaves, events)
        return events

    def _arrival(self, b: _Book, ref: int, side: str, price: int, qty: int) -> list[VenueEvent]:
        """Real order `ref` arrived at `price`: ours on the other side that it crosses
        trade with it, best first, up to its unconsumed size."""
        if side == "B":
            mine = b.mine_asks
            crossed = sorted(p for p in mine if p <= price)
        else:
            mine = b.mine_bids
            crossed = sorted((p for p in mine if p >= price), reverse=True)
        if not crossed:
            return []
        avail = qty - b.consumed.get(ref, 0)
        took = 0
        events: list[VenueEvent] = []
        for p in crossed:
            for m in list(mine[p]):
                if avail <= 0:
                    break
                t = min(m.leaves, avail)
                avail -= t
                took += t
                self._fill_resting(m, t, events)
            if avail <= 0:
                break
        if took:
            b.consumed[ref] = b.consumed.get(ref, 0) + took
        return events

    def _hidden_trade(self, u: MarketDataUpdate) -> list[VenueEvent]:
        b = self._by_locate.get(u.locate)
        p = u.price
        if b is None or (b.top_bid <= p and b.top_ask >= p) or b.halted:
            return []
        bids, asks = b.mine_bids, b.mine_asks
        hit = [m for q in sorted((q for q in bids if q > p), reverse=True) for m in bids[q]]
        hit += [m for q in sorted(q for q in asks if q < p) for m in asks[q]]
        events: list[VenueEvent] = []
        for m in hit:
            self._fill_resting(m, m.leaves, events)
        return events

    def _trading(self, u: MarketDataUpdate) -> list[VenueEvent]:
        b = self._locate(u.locate, u.symbol)
        if b is None:
            return []
        was = b.halted
        b.halted = u.side != TRADING
        if not (was and not b.halted and (b.mine_bids or b.mine_asks)):
            return []
        # Reopened: ours that cross the visible real book take from it, best first.
        events: list[VenueEvent] = []
        for mine, buy in ((b.mine_bids, True), (b.mine_asks, False)):
            for p in sorted(mine, reverse=buy):
                for m in list(mine.get(p, ())):
                    self._take(b, m, events)
                    if not m.leaves:
                        self._unrest(m)
        return events

    def _close_day_orders(self) -> list[VenueEvent]:
        events: list[VenueEvent] = []
        for m in [m for m in self._mine.values() if m.tif == TIF_DAY]:
            events.append(Canceled(m.ref, m.leaves, CANCEL_CLOSED))
            self._unrest(m)
        return events

    # --- our orders ----------------------------------------------------------------

    def enter(
        self, ref: int, cl_id: int, symbol: str, side: str, qty: int, price: int, tif: str
    ) -> list[VenueEvent]:
        """Our new order arrives: Accepted, then what it takes, then the rest cancelled
        (IOC, market) or resting at the tail of its level (DAY, GTX)."""
        why = self._new_ref(ref) or self._invalid(symbol, side, qty, price, tif)
        if why is not None:
            return [Rejected(ref, why[0], why[1])]
        b = self.books[symbol]
        m = _Mine(b, ref, cl_id, side, qty, price, tif)
        events: list[VenueEvent] = [Accepted(ref, cl_id, symbol, side, qty, price, tif)]
        self._work(b, m, events)
        return events

    def cancel(self, ref: int) -> list[VenueEvent]:
        """Cancel all that is left of our order; a finished or unknown one is refused
        (a cancel that crossed its last fill)."""
        m = self._mine.get(ref)
        if m is None:
            return [Rejected(ref, REJECT_UNKNOWN_ORDER, f"no open order {ref}")]
        self._unrest(m)
        return [Canceled(ref, m.leaves, CANCEL_USER)]

    def replace(
        self, orig_ref: int, ref: int, cl_id: int, qty: int, price: int
    ) -> list[VenueEvent]:
        """Replace our order `orig_ref` by `ref`, `qty` open at `price` (OUCH 5.0: it
        always joins the tail); then it trades if it is marketable. A refusal names
        `ref`, and `orig_ref` works on unchanged."""
        why = self._new_ref(ref)
        if why is not None:
            return [Rejected(ref, why[0], why[1])]
        old = self._mine.get(orig_ref)
        if old is None:
            return [Rejected(ref, REJECT_UNKNOWN_ORDER, f"no open order {orig_ref}")]
        b = old.book
        if price == MARKET_PRICE:
            return [Rejected(ref, REJECT_INVALID_PRICE, "cannot replace into a market order")]
        why = self._invalid(b.symbol, old.side, qty, price, old.tif)
        if why is not None:
            return [Rejected(ref, why[0], why[1])]
        self._unrest(old)
        m = _Mine(b, ref, cl_id, old.side, qty, price, old.tif)
        events: list[VenueEvent] = [
            Replaced(orig_ref, ref, cl_id, b.symbol, old.side, qty, price, old.tif)
        ]
        self._work(b, m, events)
        return events

    def open_orders(self) -> dict[int, tuple[str, str, int, int]]:
        """Our working orders: ref -> (symbol, side, leaves, price)."""
        return {r: (m.book.symbol, m.side, m.leaves, m.price) for r, m in self._mine.items()}

    def queue_ahead(self, ref: int) -> int:
        """Real shares ahead of our working order `ref` at its level (KeyError if it
        is not working)."""
        m = self._mine[ref]
        b = m.book
        level = (b.bids if m.side == "B" else b.asks).get(m.price)
        if not level:
            return 0
        ahead = m.ahead
        return sum(q for r, q in level.items() if r in ahead)

    def real_orders(self, symbol: str) -> dict[int, tuple[str, int, int]]:
        """The real book of `symbol` (no order of ours): ref -> (side, price, shares),
        each level oldest first; {} for a symbol not held."""
        b = self.books.get(symbol)
        if b is None:
            return {}
        out: dict[int, tuple[str, int, int]] = {}
        for side, levels in (("B", b.bids), ("S", b.asks)):
            for price, level in levels.items():
                for r, q in level.items():
                    out[r] = (side, price, q)
        return out

    # --- state (a checkpoint) --------------------------------------------------------

    def state(self) -> QueueState:
        """Everything this model holds, to `restore` it elsewhere later."""
        books = [
            BookState(
                b.symbol,
                b.halted,
                [(p, list(level.items())) for p, level in b.bids.items()],
                [(p, list(level.items())) for p, level in b.asks.items()],
                list(b.consumed.items()),
            )
            for b in self.books.values()
        ]
        locates = [(loc, b.symbol if b else None) for loc, b in self._by_locate.items()]
        mine = [
            MineState(
                m.ref, m.cl_id, m.book.symbol, m.side, m.leaves, m.price, m.tif, sorted(m.ahead)
            )
            for m in self._mine.values()
        ]
        wanted = sorted(self.wanted) if self.wanted is not None else None
        return QueueState(
            wanted,
            books,
            locates,
            mine,
            self._last_ref,
            self._match,
            self.unknown_refs,
            self.bad_updates,
        )

    @classmethod
    def restore(cls, st: QueueState) -> QueueVenue:
        """The model `st` was taken from (`state`); ValueError if `st` does not add up."""
        q = cls(st.wanted)
        for bs in st.books:
            b = q.books.get(bs.symbol)
            if b is None:
                b = q.books[bs.symbol] = _Book(bs.symbol)
            b.halted = bs.halted
            for side, src, levels in (("B", bs.bids, b.bids), ("S", bs.asks, b.asks)):
                for price, refs in src:
                    level = levels[price] = dict(refs)
                    for r in level:
                        b.orders[r] = (side, price, level)
            b.consumed = dict(bs.consumed)
            b.best_bid = b.best_ask = None  # (found when needed)
        for loc, symbol in st.locates:
            q._by_locate[loc] = None if symbol is None else q.books[symbol]
        for ms in st.mine:
            b = q.books.get(ms.symbol)
            if b is None:
                raise ValueError(f"our order {ms.ref} is in {ms.symbol}, a book not held")
            m = _Mine(b, ms.ref, ms.cl_id, ms.side, ms.leaves, ms.price, ms.tif)
            m.ahead = set(ms.ahead)
            mine = b.mine_bids if ms.side == "B" else b.mine_asks
            mine.setdefault(ms.price, []).append(m)
            q._mine[ms.ref] = m
        for b in q.books.values():
            b.retop()
        q._last_ref, q._match = st.last_ref, st.match
        q.unknown_refs, q.bad_updates = st.unknown_refs, st.bad_updates
        return q

    def _new_ref(self, ref: int) -> tuple[str, str] | None:
        """OUCH's rule: each order number greater than the last (used even if refused)."""
        if ref <= self._last_ref:
            return REJECT_DUPLICATE_REF, f"order number {ref} not above {self._last_ref}"
        self._last_ref = ref
        return None

    def _invalid(
        self, symbol: str, side: str, qty: int, price: int, tif: str
    ) -> tuple[str, str] | None:
        if symbol not in self.books:
            return REJECT_UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}"
        if side != "B" and side != "S":
            return REJECT_INVALID_SIDE, f"invalid side {side!r}"
        if qty <= 0:
            return REJECT_INVALID_QUANTITY, f"invalid quantity {qty}"
        if qty > MAX_QTY:
            return REJECT_QUANTITY_EXCEEDS_MAX, f"quantity {qty} > {MAX_QTY}"
        if tif not in TIFS:
            return REJECT_INVALID_TIF, f"invalid time in force {tif!r}"
        if price <= 0 or price > MARKET_PRICE:
            return REJECT_INVALID_PRICE, f"invalid price {price}"
        return None

    def _work(self, b: _Book, m: _Mine, events: list[VenueEvent]) -> None:
        """A new (or replacing) order of ours: take what it crosses, then rest or
        cancel the rest."""
        if not b.halted:
            self._take(b, m, events)
        if not m.leaves:
            return
        if m.tif == TIF_IOC or m.price == MARKET_PRICE:
            events.append(Canceled(m.ref, m.leaves, CANCEL_IOC))
            return
        buy = m.side == "B"
        level = (b.bids if buy else b.asks).get(m.price)
        if level:
            m.ahead = set(level)
        mine = b.mine_bids if buy else b.mine_asks
        at = mine.get(m.price)
        if at is None:
            mine[m.price] = [m]
        else:
            at.append(m)
        if buy:
            b.top_bid = max(b.top_bid, m.price)
        else:
            b.top_ask = min(b.top_ask, m.price)
        self._mine[m.ref] = m

    def _take(self, b: _Book, m: _Mine, events: list[VenueEvent]) -> None:
        """Our order `m` takes the visible, unconsumed real liquidity it crosses:
        best level first, FIFO within a level; one Executed per level."""
        # (most of our orders cross nothing: the best real price tells)
        if m.side == "B":
            levels = b.asks
            limit = m.price
            best = b.best_ask
            if best is None:
                best = b.best_ask = min(levels, default=NO_ASK)
            if best > limit:
                return
            prices = sorted(p for p in levels if p <= limit)
        else:
            levels = b.bids
            limit = 0 if m.price == MARKET_PRICE else m.price
            best = b.best_bid
            if best is None:
                best = b.best_bid = max(levels, default=NO_BID)
            if best < limit:
                return
            prices = sorted((p for p in levels if p >= limit), reverse=True)
        consumed = b.consumed
        need = m.leaves
        for p in prices:
            got = 0
            for r, q in levels[p].items():
                avail = q - consumed.get(r, 0)
                if avail <= 0:
                    continue
                t = min(avail, need - got)
                consumed[r] = q - avail + t
                got += t
                if got == need:
                    break
            if got:
                events.append(Executed(m.ref, got, p, self._match, "R"))
                self._match += 1
                need -= got
                if not need:
                    break
        m.leaves = need

    def _fill_resting(self, m: _Mine, qty: int, events: list[VenueEvent]) -> None:
        """Our resting order `m` trades `qty` at its own price (liquidity added)."""
        events.append(Executed(m.ref, qty, m.price, self._match, "A"))
        self._match += 1
        m.leaves -= qty
        if not m.leaves:
            self._unrest(m)

    def _unrest(self, m: _Mine) -> None:
        """Take our order `m` off the book (done, cancelled or replaced)."""
        b = m.book
        mine = b.mine_bids if m.side == "B" else b.mine_asks
        at = mine[m.price]
        at.remove(m)
        if not at:
            del mine[m.price]
            b.retop()
        del self._mine[m.ref]
