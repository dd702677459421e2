"""`StrategyTest`: one strategy instance in the real engine, driven by hand (pure).

For a strategy's unit tests: set the touch, print a trade, let the timer tick,
answer its orders as a venue would; then look at what it sent. Everything goes
through the live `StrategyEngine` (books, routing, order manager, context), so
what passes here is what runs; nothing reaches a ring or a socket.

    t = StrategyTest(Breakout, BreakoutConfig(name="bo1", symbols=["AAPL"], lookback=3))
    for bid in (100.00, 100.01, 100.00, 100.02):  # (prices as text or fixed point)
        t.touch("AAPL", bid, bid + 0.02)
    [order] = t.orders()
    assert (order.side, order.price) == ("B", t.px(100.04))
    t.ack()  # the venue accepts it (an IOC is cancelled: it did not trade here)

The clock is manual (`advance`, `timer`); the symbols' tick is `tick_size`.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

import msgspec

from hftd.config import HftdConfig, parse_config
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_NEW,
    CMD_REPLACE,
    EX_ACCEPTED,
    EX_CANCELED,
    EX_FILL,
    EX_HEARTBEAT,
    EX_REJECTED,
    EX_REPLACED,
    MD_ADD,
    MD_DIRECTORY,
    MD_REPLACE,
    MD_TRADE,
    PRICE_SCALE,
    TIF_IOC,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.strategy.api import Strategy, StrategyParams
from hftd.strategy.context import StrategyContext
from hftd.strategy.engine import StrategyEngine

Price = int | float | str  # fixed point (int), dollars (float) or text ("100.25")


class StrategyTest:
    """One instance of `cls` with `config`, on a manual clock starting at 1 s."""

    def __init__(
        self,
        cls: type[Strategy[Any]],
        config: StrategyParams,
        tick_size: str = "0.01",
        mode: str = "active",
    ) -> None:
        self.now = 1_000_000_000
        self.sent: list[OrderCommand] = []  # every command, heartbeats left out
        self.cfg = _config(config, tick_size)
        self.engine = StrategyEngine(
            self.cfg, self._send, lambda: self.now, kinds={config.kind: cls}
        )
        self.ctx: StrategyContext = self.engine.contexts[0]
        self.strategy = self.ctx.strategy
        self.locate = {s: i + 1 for i, s in enumerate(config.symbols)}
        self.refs = itertools.count(1)
        self.seq = itertools.count(1)
        # (symbol, side) -> the book's one order there: (ref, price, size)
        self.resting: dict[tuple[str, str], tuple[int, int, int]] = {}
        self.position: dict[str, int] = {}  # the account's, as the gateway would report it
        self.unanswered: deque[OrderCommand] = deque()  # for `ack`
        for symbol in config.symbols:  # the directory: which locate is which symbol
            self._md(MD_DIRECTORY, symbol, 0, "", 0, 0)
        if mode != "active":
            self.set_mode(mode)

    def _send(self, c: OrderCommand) -> bool:
        if c.kind != CMD_HEARTBEAT:
            self.sent.append(c)
            self.unanswered.append(c)
        return True

    # --- prices and time -------------------------------------------------------------

    @staticmethod
    def px(price: Price) -> int:
        """A price as fixed point (4 decimals)."""
        if isinstance(price, int):
            return price
        return round(float(price) * PRICE_SCALE)

    def advance(self, ms: float) -> None:
        self.now += int(ms * 1_000_000)

    def timer(self, after_ms: float = 10.0) -> None:
        """`after_ms` later, the engine's timer (every instance's `on_timer`)."""
        self.advance(after_ms)
        self.engine.on_timer()

    # --- the market ------------------------------------------------------------------

    def _md(
        self, kind: int, symbol: str, ref: int, side: str, qty: int, price: int, new: int = 0
    ) -> None:
        seq = next(self.seq)
        u = MarketDataUpdate(
            seq, kind, self.locate[symbol], symbol, ref, side, qty, price, new, seq, seq
        )
        self.engine.on_update(u)

    def touch(
        self, symbol: str, bid: Price, ask: Price, bid_size: int = 100, ask_size: int = 100
    ) -> None:
        """The book's best bid and ask become these (one order a side: the bid moves,
        then the ask; each side that changes is one book change, one `on_book`)."""
        for side, price, size in (("B", bid, bid_size), ("S", ask, ask_size)):
            px = self.px(price)
            old = self.resting.get((symbol, side))
            if old is not None and old[1:] == (px, size):
                continue
            ref = next(self.refs)
            if old is None:
                self._md(MD_ADD, symbol, ref, side, size, px)
            else:
                self._md(MD_REPLACE, symbol, old[0], side, size, px, ref)
            self.resting[(symbol, side)] = (ref, px, size)

    def trade(self, symbol: str, price: Price, qty: int) -> None:
        """A trade prints (`on_trade`, then `on_book`; `ctx.trades`)."""
        self._md(MD_TRADE, symbol, 0, "B", qty, self.px(price), next(self.refs))

    # --- its orders --------------------------------------------------------------------

    def orders(self, kind: int = CMD_NEW) -> list[OrderCommand]:
        """What it sent of one kind (new orders by default: CMD_CANCEL, CMD_REPLACE)."""
        return [c for c in self.sent if c.kind == kind]

    def take(self) -> list[OrderCommand]:
        """Everything sent since the last take (`ack` still answers what it has not)."""
        out, self.sent = self.sent, []
        return out

    def _report(
        self,
        kind: int,
        c: OrderCommand,
        qty: int,
        price: int,
        leaves: int,
        orig: int = 0,
        reason: str = "",
    ) -> None:
        pos = self.position.get(c.symbol, 0)
        self.engine.on_report(
            ExecutionReport(
                kind, c.cl_id, orig, c.symbol, c.side, qty, price, leaves, pos, reason, 0
            )
        )

    def ack(self) -> None:
        """Answer every command not answered yet as a venue would: new orders
        accepted (an IOC then cancelled: nothing trades here), cancels done,
        replaces done."""
        while self.unanswered:
            c = self.unanswered.popleft()
            if c.kind == CMD_NEW:
                self._report(EX_ACCEPTED, c, c.qty, c.price, c.qty)
                if c.tif == TIF_IOC:
                    self._report(EX_CANCELED, c, c.qty, c.price, 0)
            elif c.kind == CMD_CANCEL:
                o = self.ctx.order(c.orig_cl_id)
                if o is not None:
                    self._report(EX_CANCELED, c, o.leaves, o.price, 0, reason="U")
            elif c.kind == CMD_REPLACE:
                self._report(EX_REPLACED, c, c.qty, c.price, c.qty, c.orig_cl_id)

    def fill(self, cl_id: int, qty: int = 0, price: Price = 0) -> None:
        """One of its working orders trades: `qty` (all of it: 0) at `price` (its own: 0)."""
        o = self.ctx.order(cl_id)
        if o is None:
            raise ValueError(f"order {cl_id} is not working")
        qty = qty or o.leaves
        px = self.px(price) or o.price
        pos = self.position.get(o.symbol, 0) + (qty if o.side == "B" else -qty)
        self.position[o.symbol] = pos
        c = OrderCommand(CMD_NEW, cl_id, o.symbol, o.side, o.qty, o.price, o.tif, 0, "", 0, 0)
        self._report(EX_FILL, c, qty, px, o.leaves - qty)

    def reject(self, cl_id: int, reason: str = "risk") -> None:
        """The gateway or the venue refuses a new order."""
        o = self.ctx.order(cl_id)
        if o is None:
            raise ValueError(f"order {cl_id} is not working")
        c = OrderCommand(CMD_NEW, cl_id, o.symbol, o.side, o.qty, o.price, o.tif, 0, "", 0, 0)
        self._report(EX_REJECTED, c, 0, 0, 0, reason=reason)

    def set_mode(self, mode: str) -> None:
        """The gateway's trading mode: active, paused, reducing or halted."""
        self.engine.on_report(ExecutionReport(EX_HEARTBEAT, 0, 0, "", "", 0, 0, 0, 0, mode, 0))


def _config(inst: StrategyParams, tick_size: str) -> HftdConfig:
    """A valid config with `inst`'s symbols (reference price 100.00) and no instance;
    `inst` put in after validation (its kind need not be installed)."""
    cfg = parse_config(
        {"symbols": [
            {"symbol": s, "reference_price": "100.00", "tick_size": tick_size}
            for s in inst.symbols
        ]},
        "StrategyTest",
    )  # fmt: skip
    strategy = msgspec.structs.replace(cfg.strategy, instances=[inst])
    return msgspec.structs.replace(cfg, strategy=strategy)
