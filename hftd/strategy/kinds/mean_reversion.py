"""`mean_reversion`: trade against the mid when it strays from its rolling mean."""

from __future__ import annotations

import math
from collections import deque
from typing import Annotated

import msgspec

from hftd.configtypes import NonNegative
from hftd.strategy.api import BUY, IOC, SELL, Context, Strategy, StrategyParams


class MeanReversionConfig(StrategyParams, tag="mean_reversion", frozen=True):
    """The z-score of the mid over a rolling window of book changes."""

    window: Annotated[int, msgspec.Meta(ge=2)] = 50  # book changes
    threshold_sigma: Annotated[float, msgspec.Meta(gt=0.0)] = 2.0  # |z| that trades
    aggression_ticks: NonNegative = 0  # IOC limit = opposite touch +/- this many ticks


class _Window:
    """One symbol's last mids with their running sum and sum of squares."""

    __slots__ = ("mids", "s", "sq")

    def __init__(self) -> None:
        self.mids: deque[float] = deque()
        self.s = 0.0
        self.sq = 0.0


class MeanReversion(Strategy[MeanReversionConfig]):
    """When the mid is `threshold_sigma` standard deviations below its mean over the
    last `window` book changes, buy (IOC, at the ask + `aggression_ticks`); as far
    above, sell."""

    def __init__(self, config: MeanReversionConfig) -> None:
        super().__init__(config)
        self.windows: dict[str, _Window] = {}

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is None:
            return
        bid, _, ask, _ = bbo
        cfg = self.config
        mid = (bid + ask) / 2.0
        w = self.windows.get(symbol)
        if w is None:
            w = self.windows[symbol] = _Window()
        window = w.mids
        window.append(mid)
        s = w.s + mid
        sq = w.sq + mid * mid
        size = cfg.window
        n = len(window)
        while n > size:
            old = window.popleft()
            s -= old
            sq -= old * old
            n -= 1
        w.s = s
        w.sq = sq
        if n < size:
            return
        mean = s / n
        var = sq / n - mean * mean
        if var <= 1e-9:
            return
        z = (mid - mean) / math.sqrt(var)
        if z <= -cfg.threshold_sigma and ctx.can_trade(symbol, BUY):
            away = ctx.tick(symbol) * cfg.aggression_ticks
            ctx.buy(symbol, cfg.order_qty, ask + away, IOC, "z=%.2f", z)
        elif z >= cfg.threshold_sigma and ctx.can_trade(symbol, SELL):
            away = ctx.tick(symbol) * cfg.aggression_ticks
            ctx.sell(symbol, cfg.order_qty, bid - away, IOC, "z=%.2f", z)
