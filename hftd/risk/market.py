"""The gateway's own view of the market (pure): the reference prices risk uses.

Risk must not take its reference from the process it checks. The price band,
the notional of a market order and the marks behind unrealized P&L (and so
the loss stop) all compare an order or a position with "the market"; when that
market came from the strategy (its BBO, sent as a command), a strategy with a
wrong book, or one that lies, moved the band with its own orders. So the
gateway reads the feed's market data itself, from a ring of its own (the
feed writes every record to the strategy's md ring and to this one), and
rebuilds the books with the same code as the strategy (`hftd.book.l3`,
`hftd.book.sync.MdSync`): same sequence checks, same resync by the feed.

The reference of a symbol is its BBO mid while both sides are quoted, else
the price of its last trade (an execution or a hidden-order print); none
before either (the gateway core then checks against the symbol's configured
reference_price: `GatewayCore.__init__`). `on_update` says which symbol's
reference moved, so the caller re-marks only that one. While the view is out
of sync (a gap, a drop on a full ring, a book error) references are not
changed: the last good ones stay
(the band is a sanity check, and a reference that stops moving for the
seconds a resync takes is safer than none), and the view asks for a resync
as the strategy does.

Catching up. The replay that rebuilds the books after a resync (or a gateway
restart) goes through the whole day's old prices. Reporting them would move
the band through them and mark positions at prices from hours ago: one could
latch the loss stop. So while `MdSync` says the stream is a replay (QUIET) the
books are rebuilt and nothing is reported; at the live edge (LIVE) every
symbol's reference is computed from the books as they stand and reported
once, in `remark` (a list, as several symbols move at once): the caller applies
those after `on_update` calls (`GatewayAgent._market`: once per batch, not
per message) and clears it.

The view may trail the strategy's by the messages of one read: in the
composite layout the gateway takes its market data after the order that read
caused has left, so an order is checked against the reference before its
trigger. A band of a few per cent does not notice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hftd.book.l3 import BookBuilder, BookError
from hftd.book.sync import APPLY, LIVE, QUIET, REBUILD, MdSync
from hftd.msg.hot import MD_EXECUTE, MD_SEQUENCE, MD_TRADE, MarketDataUpdate


class MarketView:
    """Books, sync state and reference prices for the symbols risk watches."""

    def __init__(self, symbols: list[str], clock: Callable[[], float]) -> None:
        self.sync = MdSync(clock)
        self.builder = BookBuilder(symbols)
        self.last_trade: dict[str, int] = {}
        self.reference: dict[str, int] = {}  # symbol -> the price risk uses now
        # symbols whose reference the caller must apply besides what on_update
        # returned (all of them at the end of a catch-up); the caller clears it
        self.remark: list[str] = []
        self.book_errors = 0
        self.last_book_error = ""

    def on_update(self, u: MarketDataUpdate) -> str:
        """Apply one md record; the symbol whose reference moved, else "" (and
        `remark` gets every symbol when a catch-up ends)."""
        act = self.sync.on_update(u)
        if act != APPLY:  # the live path's one check
            if act == QUIET:
                self._rebuild(u)
            elif act == REBUILD:
                self.builder.reset()
            elif act == LIVE:
                self._caught_up(u)
            return ""
        trade = self.builder.execution_price(u) if u.kind == MD_EXECUTE else 0
        try:
            book = self.builder.apply_update(u)
        except BookError as exc:
            self.book_errors += 1
            self.last_book_error = f"book inconsistent at sequence {u.seq}: {exc}"
            self.sync.lost(self.last_book_error, u.seq)
            return ""
        if u.kind == MD_TRADE:
            book = self.builder.by_locate.get(u.locate)
            trade = u.price
        if book is None:
            return ""
        sym = book.symbol
        if trade > 0:
            self.last_trade[sym] = trade
        bid, ask = book.best_bid(), book.best_ask()
        ref = (bid[0] + ask[0]) // 2 if bid and ask else self.last_trade.get(sym, 0)
        if ref <= 0 or ref == self.reference.get(sym):
            return ""
        self.reference[sym] = ref
        return sym

    def _rebuild(self, u: MarketDataUpdate) -> None:
        """An update of the replay: the books and last trades, nothing reported."""
        trade = self.builder.execution_price(u) if u.kind == MD_EXECUTE else 0
        try:
            book = self.builder.apply_update(u)
        except BookError as exc:
            self.book_errors += 1
            self.last_book_error = f"book inconsistent at sequence {u.seq}: {exc}"
            self.sync.lost(self.last_book_error, u.seq)
            return
        if u.kind == MD_TRADE:
            book = self.builder.by_locate.get(u.locate)
            trade = u.price
        if trade > 0 and book is not None:
            self.last_trade[book.symbol] = trade

    def _caught_up(self, u: MarketDataUpdate) -> None:
        """The replay's last update: apply it, then every symbol's reference from
        the books at the live edge, into `remark` (each once)."""
        if u.kind != MD_SEQUENCE:
            self._rebuild(u)
            if not self.sync.synced:  # the books rejected it: a resync, no references
                return
        for sym, book in self.builder.books.items():
            bid, ask = book.best_bid(), book.best_ask()
            ref = (bid[0] + ask[0]) // 2 if bid and ask else self.last_trade.get(sym, 0)
            if ref > 0:
                self.reference[sym] = ref
                self.remark.append(sym)

    @property
    def in_sync(self) -> bool:
        return self.sync.synced

    @property
    def catching_up(self) -> bool:
        return self.sync.catching_up

    def status(self) -> dict[str, Any]:
        s = self.sync
        return {
            "synced": s.synced,
            "catching_up": s.catching_up,
            "replay_to": s.replay_to,
            "last_seq": s.last_seq,
            "gaps": s.counters["gaps"],
            "resyncs": s.counters["resyncs"],
            "resync_loop": s.looping,
            "last_loss": s.last_loss,
            "book_errors": self.book_errors,
            "last_book_error": self.last_book_error,
            "reference": dict(self.reference),
        }
