"""`momentum`: join the touch in the direction of a moving-average cross."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from itertools import islice
from typing import Annotated

import msgspec

from hftd.strategy.api import BUY, DAY, SELL, Context, OrderUpdate, Strategy, StrategyParams

log = logging.getLogger("hftd.strategy")


class MomentumConfig(StrategyParams, tag="momentum", frozen=True):
    """Fast and slow moving averages of the mid; passive orders at the touch."""

    fast_window: Annotated[int, msgspec.Meta(ge=1)] = 10  # book changes
    slow_window: Annotated[int, msgspec.Meta(ge=2)] = 40
    order_timeout_ms: Annotated[float, msgspec.Meta(gt=0.0)] = 500.0  # cancel if still working

    def problems(self) -> Iterator[str]:
        yield from super().problems()
        if self.fast_window >= self.slow_window:
            yield "fast_window: must be < slow_window"


class Momentum(Strategy[MomentumConfig]):
    """When the fast average of the mid crosses above the slow one, bid at the best
    bid (DAY); below, offer at the best ask. Cancel what still works after
    `order_timeout_ms`."""

    def __init__(self, config: MomentumConfig) -> None:
        super().__init__(config)
        self.mids: dict[str, deque[float]] = {}
        self.trend: dict[str, int] = {}
        self.sent_at: dict[int, int] = {}  # cl_id -> when it was sent

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is None:
            return
        bid, _, ask, _ = bbo
        cfg = self.config
        window = self.mids.get(symbol)
        if window is None:
            window = self.mids[symbol] = deque(maxlen=cfg.slow_window)
        window.append((bid + ask) / 2.0)
        if len(window) < cfg.slow_window:
            return
        fw = cfg.fast_window  # the last fw mids, summed in order, without copying
        fast = sum(islice(window, max(0, len(window) - fw), None)) / fw
        slow = sum(window) / len(window)
        trend = 1 if fast > slow else -1 if fast < slow else 0
        prev = self.trend.get(symbol, 0)
        self.trend[symbol] = trend
        if trend == prev or trend == 0:
            return
        side = BUY if trend > 0 else SELL
        if ctx.can_trade(symbol, side):
            price = bid if side == BUY else ask
            ctx.submit(
                symbol, side, cfg.order_qty, price, DAY, "fast=%.4f slow=%.4f", fast / 1e4,
                slow / 1e4,
            )  # fmt: skip
            for o in ctx.working(symbol):
                self.sent_at.setdefault(o.cl_id, ctx.now)

    def on_order(self, ctx: Context, update: OrderUpdate) -> None:
        if update.done:
            self.sent_at.pop(update.order.cl_id, None)

    def on_timer(self, ctx: Context) -> None:
        now = ctx.now
        limit = self.config.order_timeout_ms * 1e6
        for cl_id, at in list(self.sent_at.items()):
            if ctx.order(cl_id) is None:
                del self.sent_at[cl_id]
            elif now - at > limit and ctx.cancel(cl_id):
                log.info("%s: order %d working %.0f ms: cancel", self.name, cl_id, (now - at) / 1e6)
