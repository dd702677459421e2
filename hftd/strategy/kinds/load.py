"""`load`: a load generator, not a trading strategy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec

from hftd.configtypes import NonNegative, Positive
from hftd.strategy.api import BUY, IOC, SELL, Context, Strategy, StrategyParams


class LoadConfig(StrategyParams, tag="load", frozen=True):
    """Up to `rate_per_s` non-marketable IOC orders a second across its symbols,
    `offset_ticks` behind its own side's touch."""

    rate_per_s: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    offset_ticks: NonNegative = 5
    max_working: Positive = 4000  # orders in flight at most (the venue's queue bounded)

    def problems(self) -> Iterator[str]:
        yield from super().problems()
        if self.rate_per_s <= 0:
            yield "rate_per_s: a load instance needs a rate > 0"


class Load(Strategy[LoadConfig]):
    """On its timer, up to `rate_per_s` non-marketable IOC orders a second across its
    symbols (bids `offset_ticks` below the best bid, offers as far above the best
    ask), so the venue accepts and cancels each and nothing trades. It measures what
    the order path (order manager, orders ring, risk, gateway, venue) sustains with
    orders made where a strategy makes them (`bench/bench_tick_to_trade.py
    --strategy-throughput-seconds`).

    A symbol is loaded once its book has both sides. At most `max_working` orders are
    in flight (sent, not reported done): an open loop outruns a venue that cannot keep
    up, and its queue, not the rate, would grow until orders time out. Orders the
    window or the orders ring hold back are not made up later: at most `BURST_S` of
    the rate accumulates, so a system that cannot keep up sees the rate it sustains."""

    BURST_S = 0.05  # the most a timer call catches up on: 50 ms of the rate

    def __init__(self, config: LoadConfig) -> None:
        super().__init__(config)
        self.touch: dict[str, tuple[int, int]] = {}  # symbol -> (best bid, best ask)
        self.credit = 0.0  # orders due and not sent yet
        self.last_ns = 0  # the previous timer call (0: none yet)
        self.turn = 0  # which symbol and side is next (round robin)
        self.refused = 0  # timer calls cut short by a full orders ring (or the mode)

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is not None:
            self.touch[symbol] = (bbo[0], bbo[2])

    def on_timer(self, ctx: Context) -> None:
        now = ctx.now
        last, self.last_ns = self.last_ns, now
        if not last or now <= last:
            return
        cfg = self.config
        symbols = [s for s in cfg.symbols if s in self.touch]
        if not symbols:  # nothing to price from: nothing falls due meanwhile
            return
        rate = cfg.rate_per_s
        self.credit = min(self.credit + rate * (now - last) / 1e9, max(1.0, rate * self.BURST_S))
        qty, offset, limit, window = (
            cfg.order_qty,
            cfg.offset_ticks,
            cfg.max_position,
            cfg.max_working,
        )
        n = len(symbols)
        while self.credit >= 1.0 and ctx.working_count() < window:
            k = self.turn
            sym = symbols[(k >> 1) % n]
            bid, ask = self.touch[sym]
            away = ctx.tick(sym) * offset
            side, price = (BUY, bid - away) if k & 1 == 0 else (SELL, ask + away)
            if price <= 0:  # a bid too near zero to go below: offer instead
                side, price = SELL, ask + away
            pos = ctx.position(sym)  # none should fill; if some did, the cap holds
            if (pos + qty > limit) if side == BUY else (pos - qty < -limit):
                self.turn = k + 1
                self.credit -= 1.0
                continue
            if ctx.submit(sym, side, qty, price, IOC) is None:
                self.refused += 1
                return
            self.turn = k + 1
            self.credit -= 1.0
