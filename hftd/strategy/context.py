"""`StrategyContext`: the engine's side of `hftd.strategy.api.Context` (pure).

One per strategy instance. It reads the engine's books and its own order
manager, and sends through that order manager, so the strategy never holds
either. The engine sets `now_ns` and `t1` before each callback (two attribute
writes: nothing is allocated per update for the context). For a report it
leaves `now_ns` unset (-1): `now` reads the clock when the strategy asks, so an
order update costs a clock reading only when a strategy looks at the time (as
before the context: a recorded session replays with the same readings).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hftd.runtime.log import LineBudget, left_out_text, log_at
from hftd.strategy.api import BUY, DAY, PRICE_SCALE, SELL, OrderView, Strategy, StrategyParams
from hftd.strategy.orders import LIVE, PARTIAL, SENT, OrderManager

if TYPE_CHECKING:
    from hftd.book.l3 import L3Book

log = logging.getLogger("hftd.strategy")

TRADES_KEPT = 256  # recent trades per symbol (`Context.trades`)
_NO_TRADES: deque[tuple[int, int, int]] = deque(maxlen=0)
_CANCELLABLE = (SENT, LIVE, PARTIAL)
_QUOTED = (LIVE, PARTIAL)  # a quote side's orders with no answer on its way


class StrategyContext:
    """An instance's view of the market and its orders, and its order methods."""

    __slots__ = (
        "books",
        "clock",
        "last_order_ns",
        "lines",
        "now_ns",
        "om",
        "params",
        "signals",
        "strategy",
        "t1",
        "ticks",
        "trades_by_symbol",
    )

    def __init__(
        self,
        strategy: Strategy[Any],
        params: StrategyParams,
        om: OrderManager,
        books: Mapping[str, L3Book],
        ticks: Mapping[str, int],
        trades: Mapping[str, deque[tuple[int, int, int]]],
        clock: Callable[[], int],
    ) -> None:
        self.strategy = strategy
        self.params = params
        self.om = om  # the engine's: strategies use the methods below
        self.books = books  # the engine's BookBuilder.books (cleared in place on reset)
        self.ticks = ticks
        self.trades_by_symbol = trades
        self.clock = clock
        self.now_ns = 0  # -1: not read yet (`now`)
        self.t1 = 0
        # signal lines logged, and orders sent without one (a load generator's)
        self.signals = 0
        self.lines = LineBudget()  # signal lines a second, at most (hftd.runtime.log)
        self.last_order_ns: dict[str, int] = {}  # symbol -> its last order (cooldown)

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def now(self) -> int:
        t = self.now_ns
        if t < 0:
            t = self.now_ns = self.clock()
        return t

    @now.setter
    def now(self, t: int) -> None:
        self.now_ns = t

    def reconfigure(self, params: StrategyParams) -> None:
        self.params = params
        self.strategy.reconfigure(params)

    # --- the market ------------------------------------------------------------------

    def tick(self, symbol: str) -> int:
        return self.ticks[symbol]

    def bbo(self, symbol: str) -> tuple[int, int, int, int] | None:
        b = self.books.get(symbol)
        if b is None:
            return None
        bids, asks = b.bid_prices, b.ask_prices
        if not bids or not asks:
            return None
        bp, ap = bids[-1], asks[0]
        return bp, b.bids[bp], ap, b.asks[ap]

    def mid(self, symbol: str) -> float | None:
        b = self.books.get(symbol)
        if b is None or not b.bid_prices or not b.ask_prices:
            return None
        return (b.bid_prices[-1] + b.ask_prices[0]) / 2.0

    def depth(self, symbol: str, side: str, levels: int = 0) -> list[tuple[int, int]]:
        b = self.books.get(symbol)
        return b.depth(side, levels) if b is not None else []

    def trades(self, symbol: str) -> Sequence[tuple[int, int, int]]:
        return self.trades_by_symbol.get(symbol, _NO_TRADES)

    # --- its own book ----------------------------------------------------------------

    def position(self, symbol: str) -> int:
        return self.om.book.qty(symbol)

    def account_position(self, symbol: str) -> int:
        return self.om.positions.get(symbol, 0)

    def working(self, symbol: str | None = None) -> Sequence[OrderView]:
        return self.om.working(symbol)

    def working_count(self, symbol: str | None = None) -> int:
        if symbol is None:
            return len(self.om.orders)
        return sum(1 for o in self.om.orders.values() if o.symbol == symbol)

    def order(self, cl_id: int) -> OrderView | None:
        return self.om.orders.get(cl_id)

    def can_trade(self, symbol: str, side: str, qty: int = 0) -> bool:
        p = self.params
        if self.now - self.last_order_ns.get(symbol, 0) < p.cooldown_ms * 1e6:
            return False
        om = self.om
        for o in om.orders.values():  # nothing of its own works in `symbol`
            if o.symbol == symbol:
                return False
        pos = om.own_position(symbol)
        qty = qty or p.order_qty
        limit = p.max_position
        return pos + qty <= limit if side == BUY else pos - qty >= -limit

    def allows(self, symbol: str, side: str, qty: int) -> bool:
        return self.om.allows(symbol, side, qty)

    # --- acting ----------------------------------------------------------------------

    def submit(
        self, symbol: str, side: str, qty: int, price: int, tif: str = DAY, why: str = "",
        *why_args: object,
    ) -> int | None:  # fmt: skip
        # the signal's time: its line is made once the order has left, dated before it
        at = time.time() if why else 0.0
        cl_id = self.om.new(symbol, side, qty, price, tif, self.t1)
        self.last_order_ns[symbol] = now = self.now
        if why:
            self.signals += 1
            left_out = self.lines.take(now)
            if left_out < 0:
                return cl_id
            msg = "signal %s %s %s %d @ %.4f (" + why + ") -> order %s"
            log_at(
                log,
                at,
                msg + left_out_text(left_out, "signal lines"),
                self.params.name,
                symbol,
                "BUY" if side == BUY else "SELL",
                qty,
                price / PRICE_SCALE,
                *why_args,
                cl_id if cl_id is not None else "not queued",
            )
        elif cl_id is not None:
            self.signals += 1
        return cl_id

    def buy(
        self, symbol: str, qty: int, price: int, tif: str = DAY, why: str = "",
        *why_args: object,
    ) -> int | None:  # fmt: skip
        return self.submit(symbol, BUY, qty, price, tif, why, *why_args)

    def sell(
        self, symbol: str, qty: int, price: int, tif: str = DAY, why: str = "",
        *why_args: object,
    ) -> int | None:  # fmt: skip
        return self.submit(symbol, SELL, qty, price, tif, why, *why_args)

    def quote(
        self, symbol: str, bid_price: int, ask_price: int, qty: int, requote_ticks: int = 1
    ) -> int:
        away = requote_ticks * self.ticks[symbol]
        return self._keep(symbol, BUY, bid_price, qty, away) + self._keep(
            symbol, SELL, ask_price, qty, away
        )

    def _keep(self, symbol: str, side: str, price: int, qty: int, away: int) -> int:
        """Make this side's quote `price` (0: none) with the least it takes; 1 if that
        was a replace."""
        om = self.om
        buy = side == BUY
        if not price:
            mine = [o for o in om.working(symbol) if (o.side == BUY) == buy]
            if any(o.state not in _QUOTED for o in mine):
                return 0  # an answer is on its way: wait for it
            for o in mine:
                om.cancel(o.cl_id, self.t1)
            return 0
        first = None  # its oldest order on this side (one pass, no list: every tick)
        for o in om.orders.values():
            if o.symbol == symbol and (o.side == BUY) == buy:
                if o.state not in _QUOTED:
                    return 0  # an answer is on its way (sent, cancel or replace pending)
                if first is None:
                    first = o
        if first is None:
            if om.allows(symbol, side, qty):  # (no signal line per tick while halted)
                self.submit(symbol, side, qty, price, DAY, "quote")
            return 0
        if abs(first.price - price) < away:
            return 0
        return 1 if om.replace(first.cl_id, qty, price, self.t1) is not None else 0

    def replace(self, cl_id: int, qty: int, price: int) -> int | None:
        return self.om.replace(cl_id, qty, price, self.t1)

    def cancel(self, cl_id: int) -> bool:
        return self.om.cancel(cl_id, self.t1)

    def cancel_all(self, symbol: str | None = None) -> int:
        om = self.om
        asked = [o.cl_id for o in om.working(symbol) if o.state in _CANCELLABLE]
        for cl_id in asked:
            om.cancel(cl_id, self.t1)
        return len(asked)
