"""`market_maker`: quote both sides around a fair price, skewed by inventory."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Annotated

import msgspec

from hftd.strategy.api import (
    LIVE,
    PARTIAL,
    Context,
    OrderUpdate,
    Strategy,
    StrategyParams,
)

log = logging.getLogger("hftd.strategy")


class MarketMakerConfig(StrategyParams, tag="market_maker", frozen=True):
    """Quotes both sides of a fair price (the microprice) `half_spread_ticks` away,
    shifted against its inventory by up to `skew_ticks` at `max_position`; moves a
    quote (replace) once it is `requote_ticks` off; pulls both for `cooldown_ms` when
    the mid moves `pull_ticks` within `pull_window_ms`, and while market data is
    older than `stale_ms`."""

    half_spread_ticks: Annotated[int, msgspec.Meta(ge=1)] = 2
    skew_ticks: Annotated[float, msgspec.Meta(ge=0.0)] = 2.0
    requote_ticks: Annotated[int, msgspec.Meta(ge=1)] = 1
    pull_ticks: Annotated[int, msgspec.Meta(ge=1)] = 5
    pull_window_ms: Annotated[float, msgspec.Meta(gt=0.0)] = 100.0
    stale_ms: Annotated[float, msgspec.Meta(gt=0.0)] = 500.0


class MarketMaker(Strategy[MarketMakerConfig]):
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

    def __init__(self, config: MarketMakerConfig) -> None:
        super().__init__(config)
        # symbol -> its mids over the pull window, oldest first: [time, mid] per run of
        # equal mids (the time of the run's latest), so an unchanged mid costs no entry
        self.mids: dict[str, deque[list[int]]] = {}
        self.hold_until: dict[str, int] = {}  # symbol -> no quotes before this (ns)
        self.last_md: dict[str, int] = {}  # symbol -> when its book last changed (ns)
        self.pulls = 0
        self.requotes = 0
        self.window_ns = self.stale_ns = 0
        self._derive()

    def reconfigure(self, config: MarketMakerConfig) -> None:
        super().reconfigure(config)
        self._derive()

    def _derive(self) -> None:
        """The config's times in ns, once (not per book change or tick)."""
        self.window_ns = int(self.config.pull_window_ms * 1e6)
        self.stale_ns = int(self.config.stale_ms * 1e6)

    def quotes(
        self, ctx: Context, symbol: str, bbo: tuple[int, int, int, int], tick: int
    ) -> tuple[int, int]:
        """(bid price, ask price) it wants for `symbol` now (0: no quote that side)."""
        cfg = self.config
        bp, bs, ap, asz = bbo
        fair = (bp * asz + ap * bs) / (bs + asz)
        inv = ctx.position(symbol)
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

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is None:
            return
        cfg, now, tick = self.config, ctx.now, ctx.tick(symbol)
        self.last_md[symbol] = now
        mid = (bbo[0] + bbo[2]) // 2
        hist = self.mids.get(symbol)
        if hist is None:
            hist = self.mids[symbol] = deque()
        if hist and hist[-1][1] == mid:
            hist[-1][0] = now
        else:
            hist.append([now, mid])
        horizon = now - self.window_ns
        while hist[0][0] < horizon:  # (the oldest mid seen within the window stays)
            hist.popleft()
        if abs(mid - hist[0][1]) >= cfg.pull_ticks * tick:
            self._pull(ctx, symbol, "adverse move")
            hist.clear()
            hist.append([now, mid])
            return
        if now < self.hold_until.get(symbol, 0):
            return
        want_bid, want_ask = self.quotes(ctx, symbol, bbo, tick)
        self.requotes += ctx.quote(symbol, want_bid, want_ask, cfg.order_qty, cfg.requote_ticks)

    def _pull(self, ctx: Context, symbol: str, why: str) -> None:
        """Cancel both quotes; no new ones for cooldown_ms."""
        self.hold_until[symbol] = ctx.now + int(self.config.cooldown_ms * 1e6)
        if ctx.cancel_all(symbol):
            self.pulls += 1
            log.info("%s: %s in %s: quotes pulled", self.name, why, symbol)

    def on_order(self, ctx: Context, update: OrderUpdate) -> None:
        """A quote that comes live (accepted, or its replace done) while its symbol's
        quotes are pulled was on its way when they were: cancel it too."""
        o = update.order
        if o.state in (LIVE, PARTIAL) and ctx.now < self.hold_until.get(o.symbol, 0):
            ctx.cancel(o.cl_id)

    def on_timer(self, ctx: Context) -> None:
        now = ctx.now
        stale = self.stale_ns
        for symbol, at in self.last_md.items():
            if now - at > stale and now >= self.hold_until.get(symbol, 0):
                self._pull(ctx, symbol, "stale market data")
