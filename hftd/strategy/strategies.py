"""Trading strategies (pure): they see books, trades and executions, and act
through their order manager. Parameters come from config and change live.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from itertools import islice

from hftd.book.l3 import L3Book
from hftd.config import StrategyInstanceConfig
from hftd.msg.hot import PRICE_SCALE, TIF_DAY, TIF_IOC, ExecutionReport, MarketDataUpdate
from hftd.strategy.orders import LIVE, PARTIAL, SENT, OrderManager, WorkingOrder

log = logging.getLogger("hftd.strategy")


class Strategy:
    """Base: per-symbol cooldown and position headroom; subclasses decide."""

    def __init__(
        self, cfg: StrategyInstanceConfig, om: OrderManager, ticks: dict[str, int]
    ) -> None:
        self.cfg = cfg
        self.om = om
        self.ticks = ticks
        self.last_order_ns: dict[str, int] = {}
        self.signals = 0

    @property
    def name(self) -> str:
        return self.cfg.name

    def reconfigure(self, cfg: StrategyInstanceConfig) -> None:
        self.cfg = cfg

    def on_book(self, book: L3Book, u: MarketDataUpdate, now: int) -> None:
        """The book of one of our symbols changed."""

    def on_trade(self, symbol: str, price: int, qty: int, u: MarketDataUpdate, now: int) -> None:
        """A trade printed in one of our symbols."""

    def on_execution(self, r: ExecutionReport, order: WorkingOrder | None) -> None:
        """One of our orders changed."""

    def on_timer(self, now: int) -> None:
        """Called periodically (about every 50 ms)."""

    def _can_trade(self, symbol: str, side: str, now: int) -> bool:
        if now - self.last_order_ns.get(symbol, 0) < self.cfg.cooldown_ms * 1e6:
            return False
        if self.om.working(symbol):
            return False
        pos = self.om.own_position(symbol)
        qty = self.cfg.order_qty
        limit = self.cfg.max_position
        return pos + qty <= limit if side == "B" else pos - qty >= -limit

    def _order(
        self,
        symbol: str,
        side: str,
        price: int,
        tif: str,
        u: MarketDataUpdate,
        now: int,
        why: str,
        *why_args: object,
    ) -> None:
        """Send one order and log its signal; `why % why_args` says why (formatted
        only when the line is written, in an idle moment: not on the order's path)."""
        self.signals += 1
        cl_id = self.om.new(symbol, side, self.cfg.order_qty, price, tif, u.t1)
        self.last_order_ns[symbol] = now
        log.info(
            "signal %s %s %s %d @ %.4f (" + why + ") -> order %s",
            self.name,
            symbol,
            "BUY" if side == "B" else "SELL",
            self.cfg.order_qty,
            price / PRICE_SCALE,
            *why_args,
            cl_id if cl_id is not None else "not queued",
        )


class MeanReversion(Strategy):
    """Trade against the mid when it strays `threshold_sigma` from its rolling mean."""

    def __init__(
        self, cfg: StrategyInstanceConfig, om: OrderManager, ticks: dict[str, int]
    ) -> None:
        super().__init__(cfg, om, ticks)
        self.mids: dict[str, deque[float]] = {}
        self.sums: dict[str, tuple[float, float]] = {}

    def on_book(self, book: L3Book, u: MarketDataUpdate, now: int) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return
        sym = book.symbol
        mid = (bid[0] + ask[0]) / 2.0
        window = self.mids.get(sym)
        if window is None:
            window = self.mids[sym] = deque()
        s, sq = self.sums.get(sym, (0.0, 0.0))
        window.append(mid)
        s += mid
        sq += mid * mid
        while len(window) > self.cfg.window:
            old = window.popleft()
            s -= old
            sq -= old * old
        self.sums[sym] = (s, sq)
        n = len(window)
        if n < self.cfg.window:
            return
        mean = s / n
        var = sq / n - mean * mean
        if var <= 1e-9:
            return
        z = (mid - mean) / math.sqrt(var)
        tick = self.ticks[sym] * self.cfg.aggression_ticks
        if z <= -self.cfg.threshold_sigma and self._can_trade(sym, "B", now):
            self._order(sym, "B", ask[0] + tick, TIF_IOC, u, now, "z=%.2f", z)
        elif z >= self.cfg.threshold_sigma and self._can_trade(sym, "S", now):
            self._order(sym, "S", bid[0] - tick, TIF_IOC, u, now, "z=%.2f", z)


class Momentum(Strategy):
    """Join the touch in the direction of a fast/slow moving-average cross;
    cancel what is still working after `order_timeout_ms`."""

    def __init__(
        self, cfg: StrategyInstanceConfig, om: OrderManager, ticks: dict[str, int]
    ) -> None:
        super().__init__(cfg, om, ticks)
        self.mids: dict[str, deque[float]] = {}
        self.trend: dict[str, int] = {}
        self.sent_at: dict[int, int] = {}

    def on_book(self, book: L3Book, u: MarketDataUpdate, now: int) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return
        sym = book.symbol
        window = self.mids.get(sym)
        if window is None:
            window = self.mids[sym] = deque(maxlen=self.cfg.slow_window)
        window.append((bid[0] + ask[0]) / 2.0)
        if len(window) < self.cfg.slow_window:
            return
        fw = self.cfg.fast_window  # the last fw mids, summed in order, without copying
        fast = sum(islice(window, max(0, len(window) - fw), None)) / fw
        slow = sum(window) / len(window)
        trend = 1 if fast > slow else -1 if fast < slow else 0
        prev = self.trend.get(sym, 0)
        self.trend[sym] = trend
        if trend == prev or trend == 0:
            return
        side = "B" if trend > 0 else "S"
        if self._can_trade(sym, side, now):
            price = bid[0] if side == "B" else ask[0]
            self._order(
                sym, side, price, TIF_DAY, u, now, "fast=%.4f slow=%.4f", fast / 1e4, slow / 1e4
            )
            for o in self.om.working(sym):
                self.sent_at.setdefault(o.cl_id, now)

    def on_execution(self, r: ExecutionReport, order: WorkingOrder | None) -> None:
        if order is not None and order.cl_id not in self.om.orders:
            self.sent_at.pop(order.cl_id, None)

    def on_timer(self, now: int) -> None:
        limit = self.cfg.order_timeout_ms * 1e6
        for cl_id, at in list(self.sent_at.items()):
            if cl_id not in self.om.orders:
                del self.sent_at[cl_id]
            elif now - at > limit and self.om.cancel(cl_id):
                log.info("%s: order %d working %.0f ms: cancel", self.name, cl_id, (now - at) / 1e6)


class Load(Strategy):
    """A load generator, not a trading strategy: on its timer, up to `rate_per_s`
    non-marketable IOC orders a second across its symbols (bids `offset_ticks` below the
    best bid, offers as far above the best ask), so the venue accepts and cancels each
    and nothing trades. It measures what the order path (order manager, orders ring,
    risk, gateway, venue) sustains with orders made where a strategy makes them
    (`bench/bench_tick_to_trade.py --strategy-throughput-seconds`).

    A symbol is loaded once its book has both sides. At most `max_working` orders are
    in flight (sent, not reported done): an open loop outruns a venue that cannot keep
    up, and its queue, not the rate, would grow until orders time out. Orders the
    window or the orders ring hold back are not made up later: at most `BURST_S` of
    the rate accumulates, so a system that cannot keep up sees the rate it sustains."""

    BURST_S = 0.05  # the most a timer call catches up on: 50 ms of the rate

    def __init__(
        self, cfg: StrategyInstanceConfig, om: OrderManager, ticks: dict[str, int]
    ) -> None:
        super().__init__(cfg, om, ticks)
        self.touch: dict[str, tuple[int, int]] = {}  # symbol -> (best bid, best ask)
        self.credit = 0.0  # orders due and not sent yet
        self.last_ns = 0  # the previous timer call (0: none yet)
        self.turn = 0  # which symbol and side is next (round robin)
        self.refused = 0  # timer calls cut short by a full orders ring

    def on_book(self, book: L3Book, u: MarketDataUpdate, now: int) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            self.touch[book.symbol] = (bid[0], ask[0])

    def on_timer(self, now: int) -> None:
        last, self.last_ns = self.last_ns, now
        if not last or now <= last:
            return
        symbols = [s for s in self.cfg.symbols if s in self.touch]
        if not symbols:  # nothing to price from: nothing falls due meanwhile
            return
        rate = self.cfg.rate_per_s
        self.credit = min(self.credit + rate * (now - last) / 1e9, max(1.0, rate * self.BURST_S))
        om, qty, offset = self.om, self.cfg.order_qty, self.cfg.offset_ticks
        limit = self.cfg.max_position
        window = self.cfg.max_working
        working = om.orders
        n = len(symbols)
        while self.credit >= 1.0 and len(working) < window:
            k = self.turn
            sym = symbols[(k >> 1) % n]
            bid, ask = self.touch[sym]
            away = self.ticks[sym] * offset
            side, price = ("B", bid - away) if k & 1 == 0 else ("S", ask + away)
            if price <= 0:  # a bid too near zero to go below: offer instead
                side, price = "S", ask + away
            pos = om.own_position(sym)  # none should fill; if some did, the cap holds
            if (pos + qty > limit) if side == "B" else (pos - qty < -limit):
                self.turn = k + 1
                self.credit -= 1.0
                continue
            if om.new(sym, side, qty, price, TIF_IOC, 0) is None:
                self.refused += 1
                return
            self.turn = k + 1
            self.credit -= 1.0
            self.signals += 1


class MarketMaker(Strategy):
    """Quote both sides around a fair price with an inventory skew, and keep the
    quotes there with replaces (a replace keeps the order's id at the venue and
    costs one message, a cancel and a new one cost two and a queue place).

    Fair price: the microprice, (bid * ask size + ask * bid size) / (both sizes), a
    better guess of the next mid than the mid. Reservation price (Avellaneda and
    Stoikov's, in its simplest form): fair shifted against the inventory, by
    `skew_ticks` at `max_position` (long: lower, to sell more and buy less). Quotes:
    reservation -/+ `half_spread_ticks`, on the tick grid, never crossing the
    touch (a quote that would cross joins the touch instead: it makes the spread,
    never pays it). A side whose fill would pass `max_position` (this instance's
    own fills, not the account's) is not quoted.

    Protection: a quote is moved only when it is `requote_ticks` off (no churn on
    every book change); both quotes are pulled for `cooldown_ms` when the mid moves
    `pull_ticks` within `pull_window_ms` (an adverse move: the quotes left behind
    are the ones informed flow picks off), and while the market data is older than
    `stale_ms` (its quotes would be priced on a market that moved on).
    """

    def __init__(
        self, cfg: StrategyInstanceConfig, om: OrderManager, ticks: dict[str, int]
    ) -> None:
        super().__init__(cfg, om, ticks)
        self.mids: dict[str, deque[tuple[int, int]]] = {}  # symbol -> (time, mid)
        self.hold_until: dict[str, int] = {}  # symbol -> no quotes before this (ns)
        self.last_md: dict[str, int] = {}  # symbol -> when its book last changed (ns)
        self.pulls = 0
        self.requotes = 0

    def quotes(self, symbol: str, bid: tuple[int, int], ask: tuple[int, int]) -> tuple[int, int]:
        """(bid price, ask price) it wants for `symbol` now (0: no quote that side)."""
        cfg, tick = self.cfg, self.ticks[symbol]
        (bp, bs), (ap, asz) = bid, ask
        fair = (bp * asz + ap * bs) / (bs + asz)
        inv = self.om.book.position(symbol).qty
        reservation = fair - inv / cfg.max_position * cfg.skew_ticks * tick
        want_bid = math.floor((reservation - cfg.half_spread_ticks * tick) / tick) * tick
        want_ask = math.ceil((reservation + cfg.half_spread_ticks * tick) / tick) * tick
        want_bid = min(want_bid, ap - tick)  # never cross: at worst join the bid side
        want_ask = max(want_ask, bp + tick)
        if inv + cfg.order_qty > cfg.max_position:
            want_bid = 0
        if inv - cfg.order_qty < -cfg.max_position:
            want_ask = 0
        return max(want_bid, 0), want_ask

    def on_book(self, book: L3Book, u: MarketDataUpdate, now: int) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return
        sym = book.symbol
        self.last_md[sym] = now
        mid = (bid[0] + ask[0]) // 2
        hist = self.mids.get(sym)
        if hist is None:
            hist = self.mids[sym] = deque()
        hist.append((now, mid))
        horizon = now - int(self.cfg.pull_window_ms * 1e6)
        while hist[0][0] < horizon:
            hist.popleft()
        if abs(mid - hist[0][1]) >= self.cfg.pull_ticks * self.ticks[sym]:
            self._pull(sym, now, "adverse move")
            hist.clear()
            hist.append((now, mid))
            return
        if now < self.hold_until.get(sym, 0):
            return
        want_bid, want_ask = self.quotes(sym, bid, ask)
        self._keep(sym, "B", want_bid, u, now)
        self._keep(sym, "S", want_ask, u, now)

    def _keep(self, sym: str, side: str, price: int, u: MarketDataUpdate, now: int) -> None:
        """Make this side's quote `price` (0: none), with the least it takes."""
        mine = [o for o in self.om.working(sym) if (o.side == "B") == (side == "B")]
        if any(o.state not in (LIVE, PARTIAL) for o in mine):
            return  # an answer is on its way (sent, cancel or replace pending): wait for it
        if not price:
            for o in mine:
                self.om.cancel(o.cl_id, u.t1)
            return
        if not mine:
            if self.om.allows(sym, side, self.cfg.order_qty):  # (no signal line per tick
                self._order(sym, side, price, TIF_DAY, u, now, "quote")  # while halted)
            return
        o = mine[0]
        off = abs(o.price - price) >= self.cfg.requote_ticks * self.ticks[sym]
        if off and self.om.replace(o.cl_id, self.cfg.order_qty, price, u.t1) is not None:
            self.requotes += 1

    def _pull(self, sym: str, now: int, why: str) -> None:
        """Cancel both quotes; no new ones for cooldown_ms."""
        self.hold_until[sym] = now + int(self.cfg.cooldown_ms * 1e6)
        pulled = [o.cl_id for o in self.om.working(sym) if o.state in (SENT, LIVE, PARTIAL)]
        for cl_id in pulled:
            self.om.cancel(cl_id)
        if pulled:
            self.pulls += 1
            log.info("%s: %s in %s: quotes pulled", self.name, why, sym)

    def on_execution(self, r: ExecutionReport, order: WorkingOrder | None) -> None:
        """A quote that comes live (accepted, or its replace done) while its symbol's
        quotes are pulled was on its way when they were: cancel it too."""
        if (
            order is not None
            and order.cl_id in self.om.orders
            and order.state in (LIVE, PARTIAL)
            and self.om.clock() < self.hold_until.get(order.symbol, 0)
        ):
            self.om.cancel(order.cl_id)

    def on_timer(self, now: int) -> None:
        stale = int(self.cfg.stale_ms * 1e6)
        for sym, at in self.last_md.items():
            if now - at > stale and now >= self.hold_until.get(sym, 0):
                self._pull(sym, now, "stale market data")


KINDS: dict[str, type[Strategy]] = {
    "mean_reversion": MeanReversion,
    "momentum": Momentum,
    "market_maker": MarketMaker,
    "load": Load,
}
