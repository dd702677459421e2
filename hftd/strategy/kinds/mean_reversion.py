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


class MeanReversion(Strategy[MeanReversionConfig]):
    """When the mid is `threshold_sigma` standard deviations below its mean over the
    last `window` book changes, buy (IOC, at the ask + `aggression_ticks`); as far
    above, sell."""

    def __init__(self, config: MeanReversionConfig) -> None:
        super().__init__(config)
        self.mids: dict[str, deque[float]] = {}
        self.sums: dict[str, tuple[float, float]] = {}  # symbol -> (sum, sum of squares)

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is None:
            return
        bid, _, ask, _ = bbo
        cfg = self.config
        mid = (bid + ask) / 2.0
        window = self.mids.get(symbol)
        if window is None:
            window = self.mids[symbol] = deque()
        s, sq = self.sums.get(symbol, (0.0, 0.0))
        window.append(mid)
        s += mid
        sq += mid * mid
        while len(window) > cfg.window:
            old = window.popleft()
            s -= old
            sq -= old * old
        self.sums[symbol] = (s, sq)
        n = len(window)
        if n < cfg.window:
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
