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


class _Mids:
    """One symbol's recent mids, kept as bid + ask (integers: twice the mid), with
    running sums of the whole window and of its last `fast_n`. Integers, so a sum
    kept up by additions and subtractions is exact: the averages are the very
    floats that summing the float mids over the window gives (half-integers add
    exactly below 2**52)."""

    __slots__ = ("fast", "fast_n", "total", "trend", "window")

    def __init__(self, slow_window: int) -> None:
        self.window: deque[int] = deque(maxlen=slow_window)
        self.total = 0  # sum of the window
        self.fast = 0  # sum of its last `fast_n`
        self.fast_n = 0  # 0: not summed yet (or a reload changed fast_window)
        self.trend = 0


class Momentum(Strategy[MomentumConfig]):
    """When the fast average of the mid crosses above the slow one, bid at the best
    bid (DAY); below, offer at the best ask. Cancel what still works after
    `order_timeout_ms`."""

    def __init__(self, config: MomentumConfig) -> None:
        super().__init__(config)
        self.mids: dict[str, _Mids] = {}
        self.sent_at: dict[int, int] = {}  # cl_id -> when it was sent

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is None:
            return
        bid, _, ask, _ = bbo
        cfg = self.config
        m = self.mids.get(symbol)
        if m is None:
            m = self.mids[symbol] = _Mids(cfg.slow_window)
        window = m.window
        x = bid + ask
        n = len(window)
        if n == window.maxlen:
            m.total -= window[0]  # (append drops it)
        else:
            n += 1
        window.append(x)
        m.total += x
        fw = cfg.fast_window
        if n <= fw:
            m.fast, m.fast_n = m.total, fw
        elif fw == m.fast_n:
            m.fast += x - window[-fw - 1]
        else:  # first time past fw mids, or fast_window reloaded
            m.fast, m.fast_n = sum(islice(window, n - fw, None)), fw
        if n < cfg.slow_window:
            return
        fast = m.fast / 2.0 / fw
        slow = m.total / 2.0 / n
        trend = 1 if fast > slow else -1 if fast < slow else 0
        prev = m.trend
        m.trend = trend
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
