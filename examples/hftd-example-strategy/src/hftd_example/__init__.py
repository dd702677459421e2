"""An hftd strategy kind from outside the package (the "hftd.strategies" entry point).

`Breakout`: when the mid rises past the highest mid of its last `lookback` book
changes, buy at the touch; when it falls past the lowest, sell; IOC, so nothing
rests. Its parameters are its config's `params` (`lookback`, default 20) and the
common ones (`order_qty`, `max_position`, `cooldown_ms`).

    [[strategy.instances]]
    name = "bo1"
    kind = "breakout"
    symbols = ["AAPL"]
    params = { lookback = 20 }
"""

from __future__ import annotations

from collections import deque

from hftd.book.l3 import L3Book
from hftd.config import StrategyInstanceConfig
from hftd.msg.hot import TIF_IOC, MarketDataUpdate
from hftd.strategy.orders import OrderManager
from hftd.strategy.strategies import Strategy


class Breakout(Strategy):
    def __init__(
        self, cfg: StrategyInstanceConfig, om: OrderManager, ticks: dict[str, int]
    ) -> None:
        super().__init__(cfg, om, ticks)
        self.mids: dict[str, deque[int]] = {}

    def on_book(self, book: L3Book, u: MarketDataUpdate, now: int) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return
        lookback = int(self.cfg.params.get("lookback", 20))
        hist = self.mids.setdefault(book.symbol, deque(maxlen=lookback))
        mid = (bid[0] + ask[0]) // 2
        if len(hist) == lookback:
            if mid > max(hist) and self._can_trade(book.symbol, "B", now):
                self._order(book.symbol, "B", ask[0], TIF_IOC, u, now, "breakout up")
            elif mid < min(hist) and self._can_trade(book.symbol, "S", now):
                self._order(book.symbol, "S", bid[0], TIF_IOC, u, now, "breakout down")
        hist.append(mid)
