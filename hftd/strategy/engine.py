"""The strategy engine (pure): books from updates, strategies, order managers.

Fed by a live ring or a replay, it never touches I/O: orders leave through
the `send` callable the daemon gives it, a request to rebuild the books
through `lost`. Each strategy instance has its own order manager with its own
cl_id range (instance index in bits 40..47), so a report is routed by its
cl_id alone, and its own context (`StrategyContext`, `contexts`): what its
strategy reads and acts through (hftd.strategy.api).

An update the books reject (`BookError`: an execute, cancel, delete or
replace of an order they do not hold, a size of zero or less, ...) means they
are no longer the venue's. It is counted (`book_errors`, `last_book_error`),
the books stop being trusted (`in_sync` false: no strategy sees the update)
and `lost(why, seq)` asks for a resync, the path a
sequence gap takes (`hftd.book.sync.MdSync.lost`): the books are rebuilt
from sequence 1. Never an exception.

A replay is not news. After a resync (or a restart) the feed replays the day
from sequence 1; the part of it that was published before is rebuilt through
`rebuild` (books only: no strategy sees it, so no order is made on prices from
hours ago) and strategies hear of the market again from the live edge on
(`on_update`). The daemon tells which is which (`MdSync`: QUIET and LIVE).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hftd.book.l3 import BookBuilder, BookError
from hftd.config import HftdConfig
from hftd.msg import ids
from hftd.msg.hot import (
    CMD_HEARTBEAT,
    EX_ACCEPTED,
    EX_CANCELED,
    EX_FILL,
    EX_HEARTBEAT,
    EX_REJECTED,
    EX_REPLACED,
    MD_EXECUTE,
    MD_RESET,
    MD_TRADE,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.msg.status import WorkingOrderStatus
from hftd.strategy.api import ACCEPTED, CANCELED, FILL, REJECTED, REPLACED, OrderUpdate, Strategy
from hftd.strategy.context import TRADES_KEPT, StrategyContext
from hftd.strategy.orders import (
    MODE_ACTIVE,
    MODE_HALTED,
    MODE_PAUSED,
    MODE_REDUCING,
    MODES,
    OrderManager,
)
from hftd.strategy.plugins import strategy_class

log = logging.getLogger("hftd.strategy")

MARK_INTERVAL_NS = 100_000_000  # each strategy's own P&L marks (read by Status only)
EVENTS = {
    EX_ACCEPTED: ACCEPTED,
    EX_FILL: FILL,
    EX_CANCELED: CANCELED,
    EX_REJECTED: REJECTED,
    EX_REPLACED: REPLACED,
}

# What an update calls for one instance: its context, its on_book, its on_trade
# (None when the kind does not override it), bound once.
Dispatch = tuple[StrategyContext, Callable[[StrategyContext, str], None], Any]


def _no_resync(why: str, seq: int) -> None:
    """`lost` when nobody can resync (a test): the error is still counted."""


class StrategyEngine:
    def __init__(
        self,
        cfg: HftdConfig,
        send: Callable[[OrderCommand], bool],
        clock: Callable[[], int],
        run: int = 1,
        lost: Callable[[str, int], None] | None = None,
        kinds: Mapping[str, type[Strategy[Any]]] | None = None,
    ) -> None:
        """`kinds`: strategy classes by kind, besides the built-in and installed ones
        (hftd.strategy.testing runs one that no package registers)."""
        self.cfg = cfg
        self.send = send
        self.clock = clock
        self.lost = lost if lost is not None else _no_resync
        self.builder = BookBuilder([s.symbol for s in cfg.symbols])
        ticks = {s.symbol: s.tick_fp for s in cfg.symbols}
        # each symbol's recent trades (time, price, qty), shared by the contexts
        self.trades: dict[str, deque[tuple[int, int, int]]] = {
            s.symbol: deque(maxlen=TRADES_KEPT) for s in cfg.symbols
        }
        self.contexts: list[StrategyContext] = []
        for i, inst in enumerate(cfg.strategy.instances):
            om = OrderManager(inst.name, ids.first_id(i, run), send, clock)
            cls = kinds.get(inst.kind) if kinds else None
            strat = (cls or strategy_class(inst.kind))(inst)
            self.contexts.append(
                StrategyContext(strat, inst, om, self.builder.books, ticks, self.trades, clock)
            )
        self.by_symbol: dict[str, list[Dispatch]] = {}
        self.timed: list[StrategyContext] = []
        self._route()
        self.next_heartbeat_ns = 0
        self.gateway_seen_ns = 0
        self.next_mark_ns = 0  # the strategies' own marks: no more often than this
        self.gateway_mode = MODE_ACTIVE  # what its heartbeats say; every order manager's
        self.last_md_ns = 0  # any market data, feed heartbeats included
        self.in_sync = True  # books consistent and at the live edge (the daemon sets this)
        self.book_errors = 0  # updates the books rejected
        self.last_book_error = ""
        for c in self.contexts:  # (no clock reading: a replay's starts where live did)
            c.strategy.on_start(c)

    def _route(self) -> None:
        """Which enabled instances each symbol's updates and the timer go to (after a
        reload too)."""
        self.by_symbol = {}
        self.timed = []  # the enabled instances whose kind has an on_timer
        for c in self.contexts:
            if c.params.enabled:
                s = c.strategy
                if type(s).on_timer is not Strategy.on_timer:
                    self.timed.append(c)
                on_trade = s.on_trade if type(s).on_trade is not Strategy.on_trade else None
                for sym in c.params.symbols:
                    self.by_symbol.setdefault(sym, []).append((c, s.on_book, on_trade))

    # --- market data -----------------------------------------------------------------

    def on_update(self, u: MarketDataUpdate) -> None:
        if u.kind == MD_RESET:
            self.builder.reset()
            return
        trade_price = self.builder.execution_price(u) if u.kind == MD_EXECUTE else 0
        try:
            book = self.builder.apply_update(u)
        except BookError as exc:
            self._book_error(u, exc)
            return
        if u.kind == MD_TRADE:
            book = self.builder.by_locate.get(u.locate)
            trade_price = u.price
        if book is None:
            return
        sym = book.symbol
        route = self.by_symbol.get(sym)
        if not route:
            return
        now = self.clock()
        t1 = u.t1
        if trade_price:
            qty = u.qty
            self.trades[sym].append((now, trade_price, qty))
            for c, on_book, on_trade in route:
                c.now_ns = now
                c.t1 = t1
                if on_trade is not None:
                    on_trade(c, sym, trade_price, qty)
                on_book(c, sym)
        else:
            for c, on_book, _ in route:
                c.now_ns = now
                c.t1 = t1
                on_book(c, sym)

    def rebuild(self, u: MarketDataUpdate) -> None:
        """An update of a replay of what was published before (MdSync QUIET, and
        the last one, LIVE): the books only, no strategy callback."""
        try:
            self.builder.apply_update(u)
        except BookError as exc:
            self._book_error(u, exc)

    def _book_error(self, u: MarketDataUpdate, exc: BookError) -> None:
        self.book_errors += 1
        self.in_sync = False
        why = f"book inconsistent at sequence {u.seq}: {exc}"
        self.last_book_error = why
        self.lost(why, u.seq)

    # --- executions --------------------------------------------------------------------

    def _set_mode(self, mode: str) -> None:
        """The gateway's trading mode (its heartbeat's reason): what every strategy's
        order manager may send. An unknown word is kept as the mode (nothing allowed
        but what `OrderManager.allows` allows outside active: nothing), and said."""
        mode = mode or MODE_ACTIVE  # a gateway that does not say: as before, active
        if mode == self.gateway_mode:
            return
        if mode not in MODES:
            log.error("gateway reports an unknown trading mode %r: holding new orders", mode)
        else:
            log.warning(
                "gateway mode %s: %s",
                mode,
                {
                    MODE_ACTIVE: "orders flow again",
                    MODE_PAUSED: "new orders held until resume",
                    MODE_REDUCING: "only orders that reduce a position",
                    MODE_HALTED: "new orders held until the operator resumes",
                }[mode],
            )
        self.gateway_mode = mode
        for c in self.contexts:
            c.om.mode = mode

    def on_report(self, r: ExecutionReport) -> None:
        if r.kind == EX_HEARTBEAT:
            self.gateway_seen_ns = self.clock()
            self._set_mode(r.reason)
            return
        if r.symbol:
            # The account's position (the gateway's word) for every instance on the
            # symbol, whoever's order it was (another instance's, the gateway's flatten):
            # what the reducing mode's room is measured against.
            for c, _, _ in self.by_symbol.get(r.symbol, ()):
                c.om.positions[r.symbol] = r.position
        idx = ids.instance_of(r.cl_id)
        if not 0 <= idx < len(self.contexts):
            idx = ids.instance_of(r.orig_cl_id)
        if not 0 <= idx < len(self.contexts):
            return  # not a strategy's order (e.g. the gateway's flatten)
        c = self.contexts[idx]
        order = c.om.on_report(r)
        if order is None:
            return
        c.now_ns = -1  # read when the strategy asks (`StrategyContext.now`)
        c.t1 = 0
        fill = r.kind == EX_FILL
        c.strategy.on_order(
            c,
            OrderUpdate(
                order,
                EVENTS.get(r.kind, ""),
                r.qty if fill else 0,
                r.price if fill else 0,
                r.reason,
                r.orig_cl_id if r.kind == EX_REPLACED else 0,
            ),
        )

    # --- timers --------------------------------------------------------------------------

    def on_timer(self) -> None:
        """Heartbeat, each strategy's own P&L marks, strategy timers. (No marks to the
        gateway: it reads the market itself for risk and its P&L, `hftd.risk.market`.)"""
        now = self.clock()
        scfg = self.cfg.strategy
        if now >= self.next_heartbeat_ns:
            age_ms = (now - self.last_md_ns) // 1_000_000 if self.last_md_ns else 0
            self.send(
                OrderCommand(CMD_HEARTBEAT, 0, "", "", int(self.in_sync), age_ms, "", 0, "", 0, now)
            )
            self.next_heartbeat_ns = now + int(scfg.heartbeat_s * 1e9)
        if self.in_sync and now >= self.next_mark_ns:  # each strategy's own P&L, marked
            self.next_mark_ns = now + MARK_INTERVAL_NS  # at its books' mids (for Status)
            for c in self.contexts:
                book = c.om.book
                for sym in book.symbols():
                    b = self.builder.books.get(sym)
                    bid, ask = (b.best_bid(), b.best_ask()) if b is not None else (None, None)
                    if bid is not None and ask is not None:
                        book.set_mark(sym, (bid[0] + ask[0]) // 2)
        for c in self.timed:
            c.now_ns = now
            c.t1 = 0
            c.strategy.on_timer(c)

    def adopt(self, working: Sequence[WorkingOrderStatus], positions: dict[str, int]) -> int:
        """Recover what a previous run left: working orders (routed by cl_id) and
        each symbol's net position, as the gateway knows them."""
        n = 0
        for w in working:
            idx = ids.instance_of(w.cl_id)
            if 0 <= idx < len(self.contexts):
                self.contexts[idx].om.adopt(
                    w.cl_id, w.symbol, w.side, w.leaves, w.price, w.tif, w.state != "live"
                )
                n += 1
        for c in self.contexts:
            for sym in c.params.symbols:
                if sym in positions:
                    c.om.positions[sym] = positions[sym]
        return n

    def reconfigure(self, cfg: HftdConfig) -> None:
        """Apply new strategy parameters (same instances: names and kinds). An
        instance enabled or disabled, or given other symbols (configured ones), is
        routed accordingly from the next update."""
        self.cfg = cfg
        for c, inst in zip(self.contexts, cfg.strategy.instances, strict=True):
            c.reconfigure(inst)
        self._route()

    def working(self) -> int:
        return sum(len(c.om.orders) for c in self.contexts)

    def untracked(self) -> int:
        return sum(c.om.untracked for c in self.contexts)

    def stale(self) -> int:
        return sum(c.om.stale for c in self.contexts)

    def invalid(self) -> int:
        return sum(c.om.invalid for c in self.contexts)
