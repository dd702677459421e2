"""The matching engine: one price-time priority book per symbol. Pure logic.

Commands (`enter`, `cancel`, `replace`, `end_of_day`) return the events they
caused, in order; the venue turns those into OUCH replies and ITCH market
data. Prices are integers (4 implied decimals), never floats.

Rules:
- Limit orders match against the opposite side at the resting order's price,
  best price first, oldest first at a price; the rest of a day or GTC order
  rests, the rest of an IOC order is cancelled.
- A market order (price `MARKET_PRICE`) takes what is there and never rests.
- Cancel reduces an order to a wanted open size (0 removes it) and keeps its
  priority. Replace keeps priority only when the price is unchanged and the
  size goes down; otherwise the order gets a new reference and joins the back
  of the queue (and may trade, like a new order).
- Order references and match numbers are global, strictly increasing.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Final

import msgspec

from hftd.wire.ouch import (
    CANCEL_IOC,
    CANCEL_SUPERVISORY,
    CANCEL_USER,
    MARKET_PRICE,
    REJECT_INVALID_PRICE,
    REJECT_INVALID_QUANTITY,
    REJECT_INVALID_SIDE,
    REJECT_INVALID_TICK,
    REJECT_INVALID_TIF,
    REJECT_QUANTITY_EXCEEDS_MAX,
    REJECT_UNKNOWN_ORDER,
    REJECT_UNKNOWN_SYMBOL,
    TIF_DAY,
    TIF_GTX,
    TIF_IOC,
)

BUY: Final = "B"
SELL: Final = "S"
_SELL_SIDES = frozenset("STE")  # sell, sell short, sell short exempt
_TIFS = frozenset((TIF_DAY, TIF_IOC, TIF_GTX))


class Order:
    """A working order. Mutable, owned by the engine; callers get copies via events."""

    __slots__ = (
        "open_qty",
        "order_ref",
        "owner",
        "price",
        "side",
        "symbol",
        "tif",
        "user_ref",
        "wire_side",
    )

    def __init__(
        self,
        order_ref: int,
        owner: str,
        user_ref: int,
        symbol: str,
        side: str,
        wire_side: str,
        price: int,
        open_qty: int,
        tif: str,
    ) -> None:
        self.order_ref = order_ref
        self.owner = owner
        self.user_ref = user_ref
        self.symbol = symbol
        self.side = side  # book side: B or S
        self.wire_side = wire_side  # as entered: B, S, T or E
        self.price = price
        self.open_qty = open_qty
        self.tif = tif

    def view(self) -> OrderView:
        return OrderView(
            self.order_ref,
            self.owner,
            self.user_ref,
            self.symbol,
            self.wire_side,
            self.price,
            self.open_qty,
            self.tif,
        )


class OrderView(msgspec.Struct, frozen=True, gc=False):
    """An immutable snapshot of an order."""

    order_ref: int
    owner: str
    user_ref: int
    symbol: str
    side: str
    price: int
    open_qty: int
    tif: str


# --- events -------------------------------------------------------------------


class OrderAccepted(msgspec.Struct, frozen=True, gc=False):
    """The order passed validation and got `order_ref`; always first for an order."""

    order: OrderView


class OrderRested(msgspec.Struct, frozen=True, gc=False):
    """(The rest of) an order joined the book: ITCH Add Order."""

    order: OrderView


class OrderRejected(msgspec.Struct, frozen=True, gc=False):
    owner: str
    user_ref: int
    reason: int
    detail: str


class Fill(msgspec.Struct, frozen=True, gc=False):
    """`quantity` traded at the resting order's `price`."""

    match_number: int
    symbol: str
    price: int
    quantity: int
    resting_ref: int
    resting_owner: str
    resting_user_ref: int
    resting_side: str
    resting_open_qty: int  # after this fill
    aggressor_ref: int
    aggressor_owner: str
    aggressor_user_ref: int
    aggressor_open_qty: int  # after this fill


class OrderCanceled(msgspec.Struct, frozen=True, gc=False):
    """`quantity` shares came off the order; `open_qty` remain."""

    order_ref: int
    owner: str
    user_ref: int
    symbol: str
    quantity: int
    open_qty: int
    reason: str
    was_resting: bool  # the shares were on the book (ITCH X/D) or never rested


class OrderReplaced(msgspec.Struct, frozen=True, gc=False):
    """A replace took effect.

    `kept_priority`: same reference, size reduced in place (ITCH X).
    Otherwise the new order has a new reference: if `crossed` is False it went
    straight onto the book (ITCH U); if True, the old one left the book (ITCH D)
    and Fill / OrderRested / OrderCanceled events for the new one follow.
    """

    old_ref: int
    old_open_qty: int
    order: OrderView  # the replacement, as entered (before any fills)
    orig_user_ref: int
    kept_priority: bool
    crossed: bool


EngineEvent = OrderAccepted | OrderRested | OrderRejected | Fill | OrderCanceled | OrderReplaced


class SymbolRules(msgspec.Struct, frozen=True):
    tick: int = 100  # 0.01 in 4-decimal fixed point


class Level:
    """Orders at one price, oldest first (dicts keep insertion order)."""

    __slots__ = ("orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: dict[int, Order] = {}
        self.total = 0


class Book:
    """One symbol's bids and asks."""

    __slots__ = ("ask_prices", "asks", "bid_prices", "bids", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_prices: list[int] = []  # ascending; best bid last
        self.ask_prices: list[int] = []  # ascending; best ask first

    def best_bid(self) -> int | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> int | None:
        return self.ask_prices[0] if self.ask_prices else None

    def add(self, order: Order) -> None:
        levels, prices = (
            (self.bids, self.bid_prices) if order.side == BUY else (self.asks, self.ask_prices)
        )
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = Level(order.price)
            bisect.insort(prices, order.price)
        level.orders[order.order_ref] = order
        level.total += order.open_qty

    def remove(self, order: Order) -> None:
        levels, prices = (
            (self.bids, self.bid_prices) if order.side == BUY else (self.asks, self.ask_prices)
        )
        level = levels[order.price]
        del level.orders[order.order_ref]
        level.total -= order.open_qty
        if not level.orders:
            del levels[order.price]
            del prices[bisect.bisect_left(prices, order.price)]

    def reduce(self, order: Order, qty: int) -> None:
        """Take `qty` off a resting order in place (keeps priority)."""
        levels = self.bids if order.side == BUY else self.asks
        levels[order.price].total -= qty
        order.open_qty -= qty

    def depth(self, side: str, levels: int = 0) -> list[tuple[int, int]]:
        """[(price, total shares)] best first; `levels` = 0 for all."""
        if side == BUY:
            prices = self.bid_prices[::-1]
            book = self.bids
        else:
            prices = self.ask_prices
            book = self.asks
        if levels:
            prices = prices[:levels]
        return [(p, book[p].total) for p in prices]

    def orders(self) -> Iterator[Order]:
        for p in self.bid_prices[::-1]:
            yield from self.bids[p].orders.values()
        for p in self.ask_prices:
            yield from self.asks[p].orders.values()


class MatchingEngine:
    """Books for every listed symbol plus the global reference/match counters."""

    def __init__(self, symbols: dict[str, SymbolRules], max_order_size: int = 1_000_000) -> None:
        self.rules = dict(symbols)
        self.books: dict[str, Book] = {s: Book(s) for s in symbols}
        self.max_order_size = max_order_size
        self.orders: dict[int, Order] = {}  # resting orders by reference
        self.next_order_ref = 1
        self.next_match_number = 1

    # --- commands ---------------------------------------------------------------

    def enter(
        self,
        *,
        owner: str,
        user_ref: int,
        symbol: str,
        side: str,
        quantity: int,
        price: int,
        tif: str = TIF_DAY,
    ) -> list[EngineEvent]:
        """Validate, accept, match and rest (or cancel the rest of) a new order."""
        book = self.books.get(symbol)
        reject = self._validate(book, symbol, side, quantity, price, tif)
        if reject is not None:
            return [OrderRejected(owner, user_ref, reject[0], reject[1])]
        assert book is not None
        order = Order(
            self.next_order_ref,
            owner,
            user_ref,
            symbol,
            SELL if side in _SELL_SIDES else BUY,
            side,
            price,
            quantity,
            tif,
        )
        self.next_order_ref += 1
        events: list[EngineEvent] = [OrderAccepted(order.view())]
        self._execute(book, order, events)
        return events

    def enter_as(
        self, order_ref: int, *, owner: str, symbol: str, side: str, quantity: int, price: int
    ) -> list[EngineEvent]:
        """A day order that comes with its own reference (a recorded market-data file
        the venue plays): no OrderAccepted and no validation but a known symbol, a
        side, a positive size and a reference not in use ([] otherwise). It trades
        with what it crosses, like any order, then rests. Later references are
        numbered above it."""
        book = self.books.get(symbol)
        if book is None or quantity <= 0 or order_ref in self.orders:
            return []
        if side not in _SELL_SIDES and side != BUY:
            return []
        order = Order(
            order_ref,
            owner,
            0,
            symbol,
            SELL if side in _SELL_SIDES else BUY,
            side,
            price,
            quantity,
            TIF_DAY,
        )
        self.next_order_ref = max(self.next_order_ref, order_ref + 1)
        events: list[EngineEvent] = []
        self._execute(book, order, events)
        return events

    def reserve(self, order_refs_to: int, match_numbers_to: int) -> None:
        """Number new orders above `order_refs_to` and trades above `match_numbers_to`
        (those belong to a recorded file the venue plays)."""
        self.next_order_ref = max(self.next_order_ref, order_refs_to + 1)
        self.next_match_number = max(self.next_match_number, match_numbers_to + 1)

    def cancel(
        self, order_ref: int, open_qty: int = 0, *, reason: str = CANCEL_USER
    ) -> list[EngineEvent]:
        """Reduce a resting order to `open_qty` shares (0 = remove it).

        Asking for an open size at or above the current one changes nothing,
        as on NASDAQ.
        """
        order = self.orders.get(order_ref)
        if order is None:
            return [OrderRejected("", 0, REJECT_UNKNOWN_ORDER, f"no open order {order_ref}")]
        if open_qty < 0:
            return [
                OrderRejected(order.owner, order.user_ref, REJECT_INVALID_QUANTITY, "negative size")
            ]
        if open_qty >= order.open_qty:
            return []
        book = self.books[order.symbol]
        cut = order.open_qty - open_qty
        if open_qty == 0:
            book.remove(order)
            del self.orders[order_ref]
            order.open_qty = 0
        else:
            book.reduce(order, cut)
        return [
            OrderCanceled(
                order_ref,
                order.owner,
                order.user_ref,
                order.symbol,
                cut,
                order.open_qty,
                reason,
                True,
            )
        ]

    def replace(
        self,
        order_ref: int,
        *,
        new_user_ref: int,
        quantity: int,
        price: int,
        tif: str | None = None,
    ) -> list[EngineEvent]:
        """Replace a resting order's size and/or price (see the module rules)."""
        order = self.orders.get(order_ref)
        if order is None:
            return [
                OrderRejected("", new_user_ref, REJECT_UNKNOWN_ORDER, f"no open order {order_ref}")
            ]
        new_tif = order.tif if tif is None else tif
        book = self.books[order.symbol]
        if price == MARKET_PRICE:
            return [
                OrderRejected(
                    order.owner,
                    new_user_ref,
                    REJECT_INVALID_PRICE,
                    "cannot replace into a market order",
                )
            ]
        reject = self._validate(book, order.symbol, order.wire_side, quantity, price, new_tif)
        if reject is not None:
            return [OrderRejected(order.owner, new_user_ref, reject[0], reject[1])]
        orig_user_ref = order.user_ref
        old_open = order.open_qty
        if price == order.price and quantity < old_open and new_tif != TIF_IOC:
            book.reduce(order, old_open - quantity)
            order.user_ref = new_user_ref
            order.tif = new_tif
            return [OrderReplaced(order_ref, old_open, order.view(), orig_user_ref, True, False)]
        book.remove(order)
        del self.orders[order_ref]
        new = Order(
            self.next_order_ref,
            order.owner,
            new_user_ref,
            order.symbol,
            order.side,
            order.wire_side,
            price,
            quantity,
            new_tif,
        )
        self.next_order_ref += 1
        crossed = self._crosses(book, new)
        if not crossed and new_tif != TIF_IOC:
            book.add(new)
            self.orders[new.order_ref] = new
            return [OrderReplaced(order_ref, old_open, new.view(), orig_user_ref, False, False)]
        events: list[EngineEvent] = [
            OrderReplaced(order_ref, old_open, new.view(), orig_user_ref, False, True)
        ]
        self._execute(book, new, events)
        return events

    def end_of_day(self) -> list[EngineEvent]:
        """Cancel every resting day order; GTX (good-till-cancel here) survives."""
        events: list[EngineEvent] = []
        for order in list(self.orders.values()):
            if order.tif == TIF_DAY:
                events += self.cancel(order.order_ref, 0, reason=CANCEL_SUPERVISORY)
        return events

    # --- queries ----------------------------------------------------------------

    def check(
        self, symbol: str, side: str, quantity: int, price: int, tif: str
    ) -> tuple[int, str] | None:
        """Why the engine would refuse such an order: (OUCH reject reason, detail), or
        None. The paper venue (hftd.exchange.paper) refuses by the same rules."""
        return self._validate(self.books.get(symbol), symbol, side, quantity, price, tif)

    def open_orders(self, owner: str | None = None) -> list[OrderView]:
        return [o.view() for o in self.orders.values() if owner is None or o.owner == owner]

    def order(self, order_ref: int) -> OrderView | None:
        o = self.orders.get(order_ref)
        return None if o is None else o.view()

    # --- internals --------------------------------------------------------------

    def _validate(
        self, book: Book | None, symbol: str, side: str, quantity: int, price: int, tif: str
    ) -> tuple[int, str] | None:
        if book is None:
            return REJECT_UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}"
        if side not in _SELL_SIDES and side != BUY:
            return REJECT_INVALID_SIDE, f"invalid side {side!r}"
        if quantity <= 0:
            return REJECT_INVALID_QUANTITY, f"invalid quantity {quantity}"
        if quantity > self.max_order_size:
            return REJECT_QUANTITY_EXCEEDS_MAX, f"quantity {quantity} > {self.max_order_size}"
        if tif not in _TIFS:
            return REJECT_INVALID_TIF, f"invalid time in force {tif!r}"
        if price == MARKET_PRICE:
            return None
        if price <= 0 or price > MARKET_PRICE:
            return REJECT_INVALID_PRICE, f"invalid price {price}"
        tick = self.rules[symbol].tick
        if price % tick:
            return REJECT_INVALID_TICK, f"price {price} is not a multiple of tick {tick}"
        return None

    @staticmethod
    def _crosses(book: Book, order: Order) -> bool:
        if order.side == BUY:
            best = book.best_ask()
            return best is not None and (order.price == MARKET_PRICE or best <= order.price)
        best = book.best_bid()
        return best is not None and (order.price == MARKET_PRICE or best >= order.price)

    def _execute(self, book: Book, order: Order, events: list[EngineEvent]) -> None:
        """Match `order` against the book, then rest or cancel what is left."""
        is_buy = order.side == BUY
        market = order.price == MARKET_PRICE
        levels = book.asks if is_buy else book.bids
        prices = book.ask_prices if is_buy else book.bid_prices
        while order.open_qty and prices:
            best = prices[0] if is_buy else prices[-1]
            if not market and (best > order.price if is_buy else best < order.price):
                break
            level = levels[best]
            queue = level.orders
            while queue:
                resting = next(iter(queue.values()))
                qty = min(order.open_qty, resting.open_qty)
                resting.open_qty -= qty
                level.total -= qty
                order.open_qty -= qty
                events.append(
                    Fill(
                        self.next_match_number,
                        book.symbol,
                        best,
                        qty,
                        resting.order_ref,
                        resting.owner,
                        resting.user_ref,
                        resting.side,
                        resting.open_qty,
                        order.order_ref,
                        order.owner,
                        order.user_ref,
                        order.open_qty,
                    )
                )
                self.next_match_number += 1
                if resting.open_qty == 0:
                    del queue[resting.order_ref]
                    del self.orders[resting.order_ref]
                if order.open_qty == 0:
                    break
            if not queue:
                del levels[best]
                if is_buy:
                    del prices[0]
                else:
                    del prices[-1]
        if not order.open_qty:
            return
        if market or order.tif == TIF_IOC:
            left = order.open_qty
            order.open_qty = 0
            events.append(
                OrderCanceled(
                    order.order_ref,
                    order.owner,
                    order.user_ref,
                    order.symbol,
                    left,
                    0,
                    CANCEL_IOC,
                    False,
                )
            )
            return
        book.add(order)
        self.orders[order.order_ref] = order
        events.append(OrderRested(order.view()))
