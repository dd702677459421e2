"""The strategy API: what a strategy kind is, what it sees and how it acts.

A kind is one module with two classes: its parameters, a config Struct (a
subclass of `StrategyParams` tagged with the kind's name: the config's `kind`),
and its decisions, a subclass of `Strategy[ThatConfig]`:

    class BreakoutConfig(StrategyParams, tag="breakout"):
        lookback: Annotated[int, msgspec.Meta(ge=2)] = 20

    class Breakout(Strategy[BreakoutConfig]):
        def on_book(self, ctx: Context, symbol: str) -> None:
            bbo = ctx.bbo(symbol)
            ...
            if breaks_up and ctx.can_trade(symbol, BUY):
                ctx.buy(symbol, self.config.order_qty, ask, IOC, "breakout up")

A strategy sees the market and its own orders only through its `Context` (one
per instance, made by the engine): the touch and the depth of the book, recent
trades, its own position and working orders, the engine's clock and the
trigger's T1; and it acts only through the context's order methods (buy, sell,
quote both sides, replace, cancel, cancel all). Books, wire messages and the
order manager stay the engine's (tests/unit/test_strategy_api.py checks that
no kind module imports them).

This module imports nothing of the engine's at run time: hftd.config imports
the kinds' config Structs through it.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

from hftd.configtypes import Millis, Positive, Symbol
from hftd.msg.hot import PRICE_SCALE as PRICE_SCALE
from hftd.msg.hot import TIF_DAY, TIF_IOC
from hftd.strategy.orders import CANCEL_PENDING as CANCEL_PENDING
from hftd.strategy.orders import DONE as DONE
from hftd.strategy.orders import LIVE as LIVE
from hftd.strategy.orders import PARTIAL as PARTIAL
from hftd.strategy.orders import REPLACE_PENDING as REPLACE_PENDING
from hftd.strategy.orders import SENT as SENT

BUY = "B"
SELL = "S"
DAY = TIF_DAY  # rests until filled or cancelled
IOC = TIF_IOC  # immediate or cancel: what does not trade at once is cancelled

# OrderUpdate.event: what the venue (or the gateway's risk) said of an order
ACCEPTED = "accepted"
FILL = "fill"  # (a part of) it traded: fill_qty at fill_price
CANCELED = "canceled"
REJECTED = "rejected"  # refused; a refused replace leaves the order as it was
REPLACED = "replaced"  # `order` is the new one; `replaced` the old one's cl_id

InstanceName = Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=r"^[a-z0-9_-]+$")]


class StrategyParams(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, tag_field="kind"
):
    """What every strategy instance has; a kind subclasses it with its own fields
    and its name as the tag (`class MomentumConfig(StrategyParams, tag="momentum")`).
    The config's instances are a union tagged on `kind`: a field of another kind is
    an error naming it. Applied live on reload (`Strategy.reconfigure`)."""

    name: InstanceName
    symbols: list[Symbol]
    enabled: bool = True
    order_qty: Positive = 100
    max_position: Positive = 500  # the instance's own fills; risk limits are the gateway's
    cooldown_ms: Millis = 20.0  # between orders per symbol (`Context.can_trade`)

    @property
    def kind(self) -> str:
        """The kind's name (the Struct's tag)."""
        return str(type(self).__struct_config__.tag)

    def problems(self) -> Iterator[str]:
        """Cross-field checks, each "field: what is wrong" (hftd.config reports them
        with the instance's path). A kind extends it: `yield from super().problems()`."""
        if not self.symbols:
            yield "symbols: at least one symbol"


class OrderView(Protocol):
    """One of the instance's orders, as it stands (read-only)."""

    @property
    def cl_id(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...  # BUY or SELL
    @property
    def qty(self) -> int: ...
    @property
    def price(self) -> int: ...  # 4-decimal fixed point
    @property
    def tif(self) -> str: ...
    @property
    def state(self) -> str: ...  # SENT, LIVE, PARTIAL, CANCEL_PENDING, REPLACE_PENDING, DONE
    @property
    def filled(self) -> int: ...
    @property
    def leaves(self) -> int: ...


class OrderUpdate:
    """What happened to one of the instance's orders (`Strategy.on_order`)."""

    __slots__ = ("event", "fill_price", "fill_qty", "order", "reason", "replaced")

    def __init__(
        self,
        order: OrderView,
        event: str,
        fill_qty: int = 0,
        fill_price: int = 0,
        reason: str = "",
        replaced: int = 0,
    ) -> None:
        self.order = order  # after the change
        self.event = event  # ACCEPTED, FILL, CANCELED, REJECTED or REPLACED
        self.fill_qty = fill_qty
        self.fill_price = fill_price
        self.reason = reason  # a reject's or a cancel's, as the gateway gave it
        self.replaced = replaced  # REPLACED: the old order's cl_id

    @property
    def done(self) -> bool:
        """The order is over (filled, cancelled, rejected, replaced): no longer working."""
        return self.order.state == DONE

    def __repr__(self) -> str:
        o = self.order
        return f"OrderUpdate({self.event} {o.cl_id} {o.side} {o.symbol} state={o.state!r})"


class Context(Protocol):
    """All a strategy instance reads and does. Prices are 4-decimal fixed point
    (`PRICE_SCALE`), times engine-clock nanoseconds, sides BUY or SELL."""

    now: int
    """The engine's clock at this callback."""
    t1: int
    """The trigger's T1: when the feed received the market data this callback is
    about (0 in `on_order` and `on_timer`). It travels with the orders made now, so
    the gateway measures tick-to-trade."""

    @property
    def name(self) -> str:
        """The instance's name."""
        ...

    # --- the market ----------------------------------------------------------------

    def tick(self, symbol: str) -> int:
        """The symbol's price increment."""
        ...

    def bbo(self, symbol: str) -> tuple[int, int, int, int] | None:
        """(bid price, bid size, ask price, ask size), or None while a side is empty."""
        ...

    def mid(self, symbol: str) -> float | None:
        """(bid + ask) / 2, or None while a side is empty."""
        ...

    def depth(self, symbol: str, side: str, levels: int = 0) -> list[tuple[int, int]]:
        """[(price, size)] of one side, best first; `levels` 0: all of them."""
        ...

    def trades(self, symbol: str) -> Sequence[tuple[int, int, int]]:
        """The symbol's recent trades, oldest first: (time, price, qty)."""
        ...

    # --- its own book ----------------------------------------------------------------

    def position(self, symbol: str) -> int:
        """This instance's own position (its fills only): what `max_position` caps."""
        ...

    def account_position(self, symbol: str) -> int:
        """The account's position (the gateway's word, every instance's and the
        operator's fills together)."""
        ...

    def working(self, symbol: str | None = None) -> Sequence[OrderView]:
        """Its orders not done yet (of `symbol`, or all)."""
        ...

    def working_count(self, symbol: str | None = None) -> int:
        """How many of them (without making a list)."""
        ...

    def order(self, cl_id: int) -> OrderView | None:
        """One of its working orders, None once done."""
        ...

    def can_trade(self, symbol: str, side: str, qty: int = 0) -> bool:
        """The common rule: its `cooldown_ms` since its last order in `symbol` has
        passed, nothing of its own works in `symbol`, and `qty` more on `side` (0: its
        `order_qty`) stays within its `max_position`."""
        ...

    def allows(self, symbol: str, side: str, qty: int) -> bool:
        """Would the gateway's trading mode let a new order out now (paused, halted:
        nothing; reducing: only what brings the position toward zero)? An order it
        does not allow is held (counted, not sent); ask first to spare a signal line."""
        ...

    # --- acting --------------------------------------------------------------------

    def submit(
        self, symbol: str, side: str, qty: int, price: int, tif: str = DAY, why: str = "",
        *why_args: object,
    ) -> int | None:  # fmt: skip
        """A new order; its cl_id, or None if not sent (held by the trading mode, or
        the orders ring full). With `why`, a signal line is logged: `why % why_args`,
        formatted only when the line is written, never on the order's path."""
        ...

    def buy(
        self, symbol: str, qty: int, price: int, tif: str = DAY, why: str = "",
        *why_args: object,
    ) -> int | None:  # fmt: skip
        """`submit` on the bid side."""
        ...

    def sell(
        self, symbol: str, qty: int, price: int, tif: str = DAY, why: str = "",
        *why_args: object,
    ) -> int | None:  # fmt: skip
        """`submit` on the offer side."""
        ...

    def quote(
        self, symbol: str, bid_price: int, ask_price: int, qty: int, requote_ticks: int = 1
    ) -> int:
        """Keep one resting (DAY) order a side at these prices, with the fewest
        messages: a new one where there is none, a replace of one `requote_ticks` or
        more off, a cancel of a side priced 0; nothing while an answer about a side
        is on its way. Returns the replaces sent."""
        ...

    def replace(self, cl_id: int, qty: int, price: int) -> int | None:
        """Move a live order (one message; the venue keeps it, with a new cl_id,
        returned). None if it is not live or the request could not go out."""
        ...

    def cancel(self, cl_id: int) -> bool:
        """Ask the venue to cancel one order; False if it is not working or a cancel
        or replace of it is pending already."""
        ...

    def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every order of `symbol` (or all) not already being cancelled or
        replaced; how many it asked for."""
        ...


C = TypeVar("C", bound=StrategyParams)


class Strategy(Generic[C]):
    """A strategy kind's decisions. Subclass `Strategy[YourConfig]`; override the
    callbacks it needs. `self.config` is the instance's parameters (new ones after
    a reload). One object per configured instance; callbacks run on the engine's
    thread, one at a time, and must not block."""

    Config: ClassVar[type[StrategyParams]] = StrategyParams  # from Strategy[YourConfig]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" in cls.__dict__:
            return
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Strategy):
                args = typing.get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], StrategyParams):
                    cls.Config = args[0]

    def __init__(self, config: C) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def reconfigure(self, config: C) -> None:
        """New parameters (a reload; same name and kind)."""
        self.config = config

    def on_start(self, ctx: Context) -> None:
        """Once, when the engine starts: before any market data (`ctx.now` is 0: the
        engine reads no clock to start, so a replayed session starts as live did)."""

    def on_book(self, ctx: Context, symbol: str) -> None:
        """The book of one of its symbols changed."""

    def on_trade(self, ctx: Context, symbol: str, price: int, qty: int) -> None:
        """A trade printed in one of its symbols (before the `on_book` of the same
        update; also in `ctx.trades(symbol)`)."""

    def on_order(self, ctx: Context, update: OrderUpdate) -> None:
        """One of its orders changed: accepted, (partly) filled, cancelled, rejected,
        replaced."""

    def on_timer(self, ctx: Context) -> None:
        """Every engine timer tick (about every 10 ms)."""
