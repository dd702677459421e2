"""An hftd strategy kind from outside the package (the "hftd.strategies" entry point).

`Breakout`: when the mid rises past the highest mid of its last `lookback` book
changes, buy at the ask; when it falls past the lowest, sell at the bid; IOC, so
nothing rests. Its parameters: `lookback` (its own) and the common ones
(`order_qty`, `max_position`, `cooldown_ms`, ...), all applied live on reload.

    [[strategy.instances]]
    name = "bo1"
    kind = "breakout"
    symbols = ["AAPL"]
    lookback = 20
"""

from __future__ import annotations

from collections import deque
from typing import Annotated

import msgspec

from hftd.strategy.api import BUY, IOC, SELL, Context, Strategy, StrategyParams


class BreakoutConfig(StrategyParams, tag="breakout", frozen=True):
    """The tag is the kind's name: the entry point's and the config's `kind`."""

    lookback: Annotated[int, msgspec.Meta(ge=2)] = 20  # book changes


class Breakout(Strategy[BreakoutConfig]):
    def __init__(self, config: BreakoutConfig) -> None:
        super().__init__(config)
        self.mids: dict[str, deque[int]] = {}  # symbol -> its last `lookback` mids

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is None:  # a side is empty
            return
        bid, _, ask, _ = bbo
        cfg = self.config
        hist = self.mids.get(symbol)
        if hist is None or hist.maxlen != cfg.lookback:  # (a reload may change it)
            hist = self.mids[symbol] = deque(hist or (), maxlen=cfg.lookback)
        mid = (bid + ask) // 2
        if len(hist) == cfg.lookback:
            if mid > max(hist) and ctx.can_trade(symbol, BUY):
                ctx.buy(symbol, cfg.order_qty, ask, IOC, "breakout up")
            elif mid < min(hist) and ctx.can_trade(symbol, SELL):
                ctx.sell(symbol, cfg.order_qty, bid, IOC, "breakout down")
        hist.append(mid)
