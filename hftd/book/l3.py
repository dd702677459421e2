"""Order-level (L3) book reconstruction from ITCH messages. Pure logic.

`BookBuilder.apply(msg)` keeps every symbol's full-depth book: orders by
reference, aggregated shares per price level, sorted prices for BBO. ITCH
executions, cancels, deletes and replaces carry only the order reference, so
the builder remembers which book each live order is in.
"""

from __future__ import annotations

import bisect

from hftd.feed.normalize import normalize
from hftd.msg.hot import (
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_REPLACE,
    MarketDataUpdate,
)
from hftd.wire import itch


class BookError(Exception):
    """The update stream is inconsistent with the book: an execute, cancel,
    delete or replace of an order it does not hold, an order added twice, a
    side that is neither B nor S, a size of zero or less, an execution or
    cancel larger than the order. The builder raises it before changing the
    book, except a replace whose new order is refused: its original is gone
    by then. Either way the book is no longer the venue's: rebuild it."""


class L3Book:
    """One symbol's book."""

    __slots__ = ("ask_prices", "asks", "bid_prices", "bids", "orders", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.orders: dict[int, tuple[str, int, int]] = {}  # ref -> (side, price, shares)
        self.bids: dict[int, int] = {}  # price -> total shares
        self.asks: dict[int, int] = {}
        self.bid_prices: list[int] = []  # ascending; best bid last
        self.ask_prices: list[int] = []  # ascending; best ask first

    def add(self, ref: int, side: str, price: int, shares: int) -> None:
        if side == "B":
            levels, prices = self.bids, self.bid_prices
        elif side == "S":
            levels, prices = self.asks, self.ask_prices
        else:
            raise BookError(f"{self.symbol}: order {ref} added with side {side!r}")
        if ref in self.orders or shares <= 0:
            raise BookError(
                f"{self.symbol}: order {ref} added twice"
                if ref in self.orders
                else f"{self.symbol}: order {ref} added with {shares} shares"
            )
        self.orders[ref] = (side, price, shares)
        if price in levels:
            levels[price] += shares
        else:
            levels[price] = shares
            bisect.insort(prices, price)

    def reduce(self, ref: int, shares: int) -> None:
        """Take `shares` off an order (execution or partial cancel); remove it at zero."""
        entry = self.orders.get(ref)
        if entry is None:
            raise BookError(f"{self.symbol}: unknown order {ref}")
        side, price, open_ = entry
        if not 0 < shares <= open_:
            raise BookError(f"{self.symbol}: order {ref} of {open_} shares reduced by {shares}")
        if shares == open_:
            del self.orders[ref]
        else:
            self.orders[ref] = (side, price, open_ - shares)
        self._level_sub(side, price, shares)

    def delete(self, ref: int) -> tuple[str, int, int]:
        entry = self.orders.pop(ref, None)
        if entry is None:
            raise BookError(f"{self.symbol}: unknown order {ref}")
        self._level_sub(entry[0], entry[1], entry[2])
        return entry

    def _level_sub(self, side: str, price: int, shares: int) -> None:
        levels, prices = (
            (self.bids, self.bid_prices) if side == "B" else (self.asks, self.ask_prices)
        )
        left = levels[price] - shares
        if left:
            levels[price] = left
        else:
            del levels[price]
            del prices[bisect.bisect_left(prices, price)]

    def best_bid(self) -> tuple[int, int] | None:
        if not self.bid_prices:
            return None
        p = self.bid_prices[-1]
        return p, self.bids[p]

    def best_ask(self) -> tuple[int, int] | None:
        if not self.ask_prices:
            return None
        p = self.ask_prices[0]
        return p, self.asks[p]

    def depth(self, side: str, levels: int = 0) -> list[tuple[int, int]]:
        """[(price, shares)] best first; `levels` = 0 for all."""
        if side == "B":
            prices = self.bid_prices[::-1]
            book = self.bids
        else:
            prices = self.ask_prices
            book = self.asks
        if levels:
            prices = prices[:levels]
        return [(p, book[p]) for p in prices]


class BookBuilder:
    """Every symbol's L3 book, fed by market-data updates in sequence order."""

    def __init__(self, symbols: list[str] | None = None) -> None:
        self.books: dict[str, L3Book] = {}
        self.by_locate: dict[int, L3Book] = {}
        self.wanted = set(symbols) if symbols else None
        self.messages = 0
        self.last_seq = 0

    def book(self, symbol: str) -> L3Book:
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = L3Book(symbol)
        return b

    def reset(self) -> None:
        """Forget every order (the feed is about to replay from sequence 1)."""
        self.books.clear()
        self.by_locate.clear()
        self.last_seq = 0

    def apply(self, msg: itch.ItchMessage, seq: int = 0) -> L3Book | None:
        """Apply one ITCH message (replay and tests)."""
        return self.apply_update(normalize(msg, seq, 0))

    def execution_price(self, u: MarketDataUpdate) -> int:
        """The price of an MD_EXECUTE: its own (ITCH C, with price), else the resting
        order's (ITCH E), looked up before `apply_update` takes it away; 0 unknown."""
        if u.price:
            return u.price
        b = self.by_locate.get(u.locate)
        entry = b.orders.get(u.order_ref) if b is not None else None
        return entry[1] if entry else 0

    def apply_update(self, u: MarketDataUpdate) -> L3Book | None:
        """Apply one update; returns the book it changed, if any."""
        self.messages += 1
        self.last_seq = u.seq
        kind = u.kind
        if kind == MD_ADD:
            b = self._locate(u.locate, u.symbol)
            if b is not None:
                b.add(u.order_ref, u.side, u.price, u.qty)
            return b
        if kind in (MD_EXECUTE, MD_CANCEL):
            b = self.by_locate.get(u.locate)
            if b is not None:
                b.reduce(u.order_ref, u.qty)
            return b
        if kind == MD_DELETE:
            b = self.by_locate.get(u.locate)
            if b is not None:
                b.delete(u.order_ref)
            return b
        if kind == MD_REPLACE:
            b = self.by_locate.get(u.locate)
            if b is not None:
                side, _price, _shares = b.delete(u.order_ref)
                b.add(u.new_ref, side, u.price, u.qty)
            return b
        if kind == MD_DIRECTORY:
            self._locate(u.locate, u.symbol)
        return None

    def _locate(self, locate: int, stock: str) -> L3Book | None:
        b = self.by_locate.get(locate)
        if b is None:
            if self.wanted is not None and stock not in self.wanted:
                return None
            b = self.by_locate[locate] = self.book(stock)
        return b
