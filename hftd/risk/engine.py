"""Pre-trade risk: `RiskEngine` checks orders against `RiskLimits`. Pure logic.

No I/O, no clock: every timestamp is passed in (CLOCK_MONOTONIC ns, never
decreasing). Prices are 4-decimal fixed point, money is `qty * price` in the
same units (see `hftd.risk.limits`).

A denial is a value, `Decision(ok=False, check=..., reason=...)`, never an
exception. Exceptions (ValueError) are kept for the caller's own bugs in the
lifecycle updates (`on_fill` with qty 0, an unknown side...).

Checks, in the order `check_new` runs them; the first failure is returned and
`check` is its name (limit fields keep their config names):

==================== ===========================================================
invalid              qty <= 0, side not "B"/"S", limit price <= 0
mode                 HALTED denies everything; REDUCING denies orders that could
                     increase |position| (see "reducing" below)
max_order_qty        qty > limit
max_order_notional   qty * price > limit; a market order uses the last trade
                     price and is denied ("no reference price") without one
price_band           |price - last| > last * bps / 10_000; skipped for market
                     orders and while no trade has been seen
max_position         worst case for the order's side: a buy fails when
                     position + open buys + qty > limit; a sell when
                     -(position - open sells - qty) > limit
max_gross_position   sum over symbols of the worst-case |position| (every open
                     order on the order's side filling) > limit; an order that
                     does not raise its symbol's worst case always passes
max_net_position     worst case |sum over symbols of position| on the order's side
                     (all open orders on that side filling) > limit
max_exposure_notional sum over symbols of worst-case |position| x last trade price
                     (the order's own price for its symbol when no trade yet) > limit;
                     like gross, only an order that raises its symbol's worst case
max_messages_per_s   messages sent in (now - 1 s, now] (new orders, replaces AND
                     cancels) + this one > limit; cancels are counted, never denied
max_orders_per_s     orders sent in (now - 1 s, now] + this one > limit (new
                     orders and replaces; cancels are never limited)
max_working_orders   working orders (global, all symbols) + 1 > limit
daily_loss           the P&L stop is latched (P&L reached -daily_loss_limit) and
                     the order is not reducing
==================== ===========================================================

Every limit is inclusive (at the limit passes, one share / order / 0.0001 past
fails) except the P&L stop, which is a stop level: it trips when
``pnl <= -daily_loss_limit``.

"Reducing": an order that cannot increase |position| whatever fills: a sell
while long with open sells + qty <= position, a buy while short likewise.
Reducing orders pass `mode` (REDUCING) and `daily_loss`, so a flatten still
works after the stop; they still obey the rate and size limits.

Lifecycle (the engine records nothing in a check; the caller reports what
happened):

    d = risk.check_new("AAPL", "B", 100, 1_895_000, now)
    if d.ok:
        send(...); risk.on_sent("AAPL", "B", 100, now)
    # venue events
    risk.on_fill("AAPL", "B", 40, 1_895_000)                 # partial fill
    risk.on_fill("AAPL", "B", 60, 1_895_000, order_done=True)  # fully filled
    risk.on_done("AAPL", "B", 60)   # or: cancelled/expired/rejected with 60 open
    # replace 100 open -> 150
    d = risk.check_replace("AAPL", "B", 100, 150, 1_896_000, now)
    if d.ok:
        reserved = risk.on_replace_sent("AAPL", "B", 100, 150, now)  # +50 held at once
    # venue answers; old_open = the old order's open qty now, new_open = as reported
    risk.on_replace_done("AAPL", "B", old_open, new_open, accepted=True, reserved=reserved)

A replace that lowers the size reserves nothing at send time and releases the
difference only when the venue confirms it: until then the old size can fill.
Fills that race a replace are settled exactly by `on_replace_done` (see there).
"""

from __future__ import annotations

from collections import deque
from typing import Final, Literal

import msgspec

from hftd.msg.status import DOLLARS, MESSAGES_PER_S, ORDERS, ORDERS_PER_S, SHARES, RiskFigure
from hftd.risk.limits import EffectiveLimits, RiskLimits, format_money

BUY: Final = "B"
SELL: Final = "S"
WINDOW_NS: Final = 1_000_000_000  # the order-rate window
BPS: Final = 10_000  # basis points in 1 (price_band_bps)

RiskMode = Literal["active", "reducing", "halted"]
ACTIVE: Final = "active"
REDUCING: Final = "reducing"
HALTED: Final = "halted"
_MODES: Final = (ACTIVE, REDUCING, HALTED)

CHECK_INVALID: Final = "invalid"
CHECK_MODE: Final = "mode"
CHECK_ORDER_QTY: Final = "max_order_qty"
CHECK_NOTIONAL: Final = "max_order_notional"
CHECK_PRICE_BAND: Final = "price_band"
CHECK_POSITION: Final = "max_position"
CHECK_GROSS: Final = "max_gross_position"
CHECK_NET: Final = "max_net_position"
CHECK_EXPOSURE: Final = "max_exposure_notional"
CHECK_MESSAGES: Final = "max_messages_per_s"
CHECK_RATE: Final = "max_orders_per_s"
CHECK_WORKING: Final = "max_working_orders"
CHECK_LOSS: Final = "daily_loss"
CHECKS: Final = (
    CHECK_INVALID,
    CHECK_MODE,
    CHECK_ORDER_QTY,
    CHECK_NOTIONAL,
    CHECK_PRICE_BAND,
    CHECK_POSITION,
    CHECK_GROSS,
    CHECK_NET,
    CHECK_EXPOSURE,
    CHECK_RATE,
    CHECK_MESSAGES,
    CHECK_WORKING,
    CHECK_LOSS,
)


class Decision(msgspec.Struct, frozen=True, gc=False):
    """The outcome of a check: `ok`, else the failing `check` and a readable `reason`."""

    ok: bool
    check: str = ""  # "" when ok, else one of CHECKS
    reason: str = ""


ACCEPT: Final = Decision(True)  # shared: accepting allocates nothing


class RiskStatistics(msgspec.Struct, frozen=True):
    """Counters for monitoring (read by the metrics collector)."""

    checks: int  # check_new + check_replace calls
    accepted: int
    rejected: int
    rejects: dict[str, int]  # per check name, every name present
    mode: str
    loss_stopped: bool
    working_orders: int
    orders_in_window: int  # as of the latest timestamp seen
    open_underflows: int  # fills/reductions larger than the open qty (clamped to 0)


class _SymbolState:
    """Mutable per-symbol state; `worst` caches the worst-case |position|."""

    __slots__ = ("last_price", "open_buy", "open_sell", "position", "worst")

    def __init__(self) -> None:
        self.position = 0  # signed shares
        self.open_buy = 0
        self.open_sell = 0
        self.last_price: int | None = None
        self.worst = 0  # max(|position + open_buy|, |position - open_sell|)


_EMPTY: Final = _SymbolState()  # read-only stand-in for a symbol never seen


class RiskEngine:
    """Account-level pre-trade risk state and checks (see the module docstring)."""

    def __init__(self, limits: RiskLimits | None = None) -> None:
        self._syms: dict[str, _SymbolState] = {}
        self._gross_worst = 0  # sum of _SymbolState.worst
        self._working = 0
        self._pnl = 0
        self._loss_stopped = False
        self._loss_trip_pnl = 0  # the P&L that tripped the stop
        self._mode: RiskMode = ACTIVE
        self._sent: deque[int] = deque()  # send times in the rate window, oldest first
        self._messages: deque[int] = deque()  # every message (incl. cancels) in the window
        self._latest_ns = 0
        self._checks = 0
        self._rejects = dict.fromkeys(CHECKS, 0)
        self._underflows = 0
        self.set_limits(limits if limits is not None else RiskLimits())

    # --- configuration and mode ----------------------------------------------

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    def set_limits(self, limits: RiskLimits) -> None:
        """Apply new limits (config reload); positions and working orders are kept."""
        self._limits = limits
        self._default = limits.for_symbol("")
        self._eff: dict[str, EffectiveLimits] = {s: limits.for_symbol(s) for s in limits.symbols}
        self._update_loss_stop()

    def limits_for(self, symbol: str) -> EffectiveLimits:
        return self._eff.get(symbol, self._default)

    @property
    def mode(self) -> RiskMode:
        return self._mode

    def set_mode(self, mode: RiskMode) -> None:
        """ACTIVE trades normally, REDUCING allows only reducing orders, HALTED none."""
        if mode not in _MODES:
            raise ValueError(f"unknown risk mode {mode!r}")
        self._mode = mode

    def resume(self) -> None:
        """Operator resume: ACTIVE, and clear the P&L stop unless P&L is still past it."""
        self._mode = ACTIVE
        self._loss_stopped = False
        self._update_loss_stop()

    @property
    def loss_stopped(self) -> bool:
        return self._loss_stopped

    # --- state read-out -------------------------------------------------------

    def position(self, symbol: str) -> int:
        return self._syms.get(symbol, _EMPTY).position

    def open_qty(self, symbol: str, side: str) -> int:
        st = self._syms.get(symbol, _EMPTY)
        return st.open_buy if side == BUY else st.open_sell

    def last_price(self, symbol: str) -> int | None:
        return self._syms.get(symbol, _EMPTY).last_price

    @property
    def working_orders(self) -> int:
        return self._working

    @property
    def pnl(self) -> int:
        return self._pnl

    @property
    def gross_worst(self) -> int:
        """Sum over symbols of the worst-case |position| (shares)."""
        return self._gross_worst

    # --- checks ----------------------------------------------------------------

    def check_new(
        self,
        symbol: str,
        side: str,
        qty: int,
        price: int,
        now_ns: int,
        is_market: bool = False,
    ) -> Decision:
        """May a new order go out now? Records nothing; call `on_sent` when it does."""
        self._checks += 1
        if side != BUY and side != SELL:
            return self._deny(CHECK_INVALID, f"side must be 'B' or 'S', got {side!r}")
        if qty <= 0:
            return self._deny(CHECK_INVALID, f"qty must be > 0, got {qty}")
        if not is_market and price <= 0:
            return self._deny(CHECK_INVALID, f"limit price must be > 0, got {price}")
        return self._run(symbol, side, qty, qty, price, now_ns, is_market, True)

    def check_replace(
        self,
        symbol: str,
        side: str,
        old_open_qty: int,
        new_qty: int,
        new_price: int,
        now_ns: int,
    ) -> Decision:
        """May a working order (`old_open_qty` open) become `new_qty` at `new_price`?

        Size, notional and band apply to the new order; position, gross, mode
        and the P&L stop see only the added shares (new_qty - old_open_qty, so a
        size-down always passes them); it counts toward the order rate; it does
        not add a working order.
        """
        self._checks += 1
        if side != BUY and side != SELL:
            return self._deny(CHECK_INVALID, f"side must be 'B' or 'S', got {side!r}")
        if new_qty <= 0:
            return self._deny(CHECK_INVALID, f"new qty must be > 0, got {new_qty}")
        if old_open_qty < 0:
            return self._deny(CHECK_INVALID, f"old open qty must be >= 0, got {old_open_qty}")
        if new_price <= 0:
            return self._deny(CHECK_INVALID, f"limit price must be > 0, got {new_price}")
        return self._run(
            symbol, side, new_qty - old_open_qty, new_qty, new_price, now_ns, False, False
        )

    def _run(
        self,
        symbol: str,
        side: str,
        add: int,
        qty: int,
        price: int,
        now_ns: int,
        is_market: bool,
        is_new: bool,
    ) -> Decision:
        """The checks after input validation; `add` = shares added to open (may be <= 0)."""
        st = self._syms.get(symbol, _EMPTY)
        lim = self._eff.get(symbol, self._default)
        buy = side == BUY
        pos, ob, os_ = st.position, st.open_buy, st.open_sell
        reducing = add <= 0 or (pos + ob + add <= 0 if buy else pos - os_ - add >= 0)
        # mode
        if self._mode != ACTIVE:
            if self._mode == HALTED:
                return self._deny(CHECK_MODE, "trading halted: no new orders or replaces")
            if not reducing:
                return self._deny(
                    CHECK_MODE,
                    f"reducing only: {symbol} {side} {add} could increase |position| "
                    f"(position {pos}, open buys {ob}, open sells {os_})",
                )
        # max_order_qty
        if qty > lim.max_order_qty:
            return self._deny(
                CHECK_ORDER_QTY, f"order qty {symbol} {qty} > max_order_qty {lim.max_order_qty}"
            )
        # max_order_notional
        last = st.last_price
        if is_market:
            if last is None:
                return self._deny(
                    CHECK_NOTIONAL,
                    f"no reference price: market order {symbol} before any trade, "
                    f"max_order_notional cannot be checked",
                )
            price = last
        notional = qty * price
        if notional > lim.max_order_notional:
            return self._deny(
                CHECK_NOTIONAL,
                f"notional {symbol} {qty} x {format_money(price)} = {format_money(notional)}"
                f" > max_order_notional {format_money(lim.max_order_notional)}"
                + (" (market order at last trade)" if is_market else ""),
            )
        # price_band
        if (
            not is_market
            and last is not None
            and abs(price - last) * BPS > lim.price_band_bps * last
        ):
            return self._deny(
                CHECK_PRICE_BAND,
                f"price {symbol} {format_money(price)} is outside price_band "
                f"{lim.price_band_bps} bps of last trade {format_money(last)}",
            )
        if add > 0:
            # max_position: worst case on the order's side (every open order there fills)
            if buy:
                worst = pos + ob + add
                if worst > lim.max_position:
                    return self._deny(
                        CHECK_POSITION,
                        f"position {symbol} would be {worst} > max_position {lim.max_position}"
                        f" (position {pos} + open buys {ob} + order {add})",
                    )
                new_worst = max(abs(pos + ob + add), abs(pos - os_))
            else:
                worst = os_ + add - pos
                if worst > lim.max_position:
                    return self._deny(
                        CHECK_POSITION,
                        f"position {symbol} would be {-worst} < -max_position "
                        f"{lim.max_position} (position {pos} - open sells {os_} - order {add})",
                    )
                new_worst = max(abs(pos + ob), abs(pos - os_ - add))
            # max_gross_position: only an order that raises its symbol's worst case
            if new_worst > st.worst:
                gross = self._gross_worst - st.worst + new_worst
                if gross > self._limits.max_gross_position:
                    return self._deny(
                        CHECK_GROSS,
                        f"gross position would be {gross} > max_gross_position "
                        f"{self._limits.max_gross_position} if every open order filled "
                        f"({symbol} worst case {st.worst} -> {new_worst})",
                    )
            # max_net_position: the account's net, every open order on this side filling
            # (one plain loop: no generator objects on the order's path)
            net = opens = 0
            if buy:
                for x in self._syms.values():
                    net += x.position
                    opens += x.open_buy
                net_worst = net + opens + add
            else:
                for x in self._syms.values():
                    net += x.position
                    opens += x.open_sell
                net_worst = net - opens - add
            if abs(net_worst) > self._limits.max_net_position:
                return self._deny(
                    CHECK_NET,
                    f"net position would be {net_worst} beyond max_net_position "
                    f"{self._limits.max_net_position} if every open {side} order filled",
                )
            # max_exposure_notional: worst-case |position| x reference price, all symbols
            if new_worst > st.worst:
                exposure = new_worst * (last if last is not None else price)
                for sym, x in self._syms.items():
                    if sym != symbol:
                        exposure += x.worst * (x.last_price or 0)
                if exposure > self._limits.max_exposure_notional:
                    return self._deny(
                        CHECK_EXPOSURE,
                        f"exposure would be {format_money(exposure)} > max_exposure_notional "
                        f"{format_money(self._limits.max_exposure_notional)} if every open "
                        f"order filled ({symbol} worst case {st.worst} -> {new_worst})",
                    )
        # max_orders_per_s
        self._prune(now_ns)
        if len(self._sent) >= self._limits.max_orders_per_s:
            return self._deny(
                CHECK_RATE,
                f"order rate would be {len(self._sent) + 1} in 1 s > max_orders_per_s "
                f"{self._limits.max_orders_per_s}",
            )
        # max_messages_per_s
        if len(self._messages) >= self._limits.max_messages_per_s:
            return self._deny(
                CHECK_MESSAGES,
                f"message rate would be {len(self._messages) + 1} in 1 s > max_messages_per_s "
                f"{self._limits.max_messages_per_s} (orders, replaces and cancels)",
            )
        # max_working_orders
        if is_new and self._working >= self._limits.max_working_orders:
            return self._deny(
                CHECK_WORKING,
                f"working orders would be {self._working + 1} > max_working_orders "
                f"{self._limits.max_working_orders}",
            )
        # daily_loss
        if self._loss_stopped and not reducing:
            return self._deny(
                CHECK_LOSS,
                f"daily loss stop: P&L reached {format_money(self._loss_trip_pnl)} <= "
                f"-daily_loss_limit {format_money(self._limits.daily_loss_limit)} "
                f"(now {format_money(self._pnl)}); reducing orders only until resume",
            )
        return ACCEPT

    def _deny(self, check: str, reason: str) -> Decision:
        self._rejects[check] += 1
        return Decision(False, check, reason)

    def _prune(self, now_ns: int) -> None:
        if now_ns > self._latest_ns:
            self._latest_ns = now_ns
        cutoff = now_ns - WINDOW_NS
        sent = self._sent
        while sent and sent[0] <= cutoff:
            sent.popleft()
        msgs = self._messages
        while msgs and msgs[0] <= cutoff:
            msgs.popleft()

    def on_cancel_sent(self, now_ns: int) -> None:
        """A cancel went out: it counts toward the message rate (never denied)."""
        self._prune(now_ns)
        self._messages.append(now_ns)

    # --- lifecycle updates ----------------------------------------------------

    def on_sent(self, symbol: str, side: str, qty: int, now_ns: int) -> None:
        """A new order went out: open qty, a working order and a rate-window entry."""
        _require_qty(qty)
        st = self._state(symbol)
        if _is_buy(side):
            st.open_buy += qty
        else:
            st.open_sell += qty
        self._refresh(st)
        self._working += 1
        self._prune(now_ns)
        self._sent.append(now_ns)
        self._messages.append(now_ns)

    def on_replace_sent(
        self, symbol: str, side: str, old_open_qty: int, new_qty: int, now_ns: int
    ) -> int:
        """A replace went out: reserve any increase now, count it toward the rate.

        Returns the shares reserved (``max(0, new_qty - old_open_qty)``); keep
        it with the pending replace and pass it to `on_replace_done`.
        """
        _require_qty(new_qty)
        reserved = new_qty - old_open_qty
        if reserved > 0:
            self.on_open_added(symbol, side, reserved)
        else:
            _is_buy(side)
            reserved = 0
        self._prune(now_ns)
        self._sent.append(now_ns)
        self._messages.append(now_ns)
        return reserved

    def on_replace_done(
        self,
        symbol: str,
        side: str,
        old_open_qty: int,
        new_open_qty: int,
        *,
        accepted: bool,
        reserved: int | None = None,
    ) -> None:
        """The venue answered a replace: settle the open qty it held for that order.

        `old_open_qty`: the old order's open qty now (after any fills that
        raced the replace, which `on_fill` already took off). `new_open_qty`:
        the replacement's open qty as the venue reports it. `reserved`: what
        `on_replace_sent` returned. The engine held ``old_open_qty + reserved``
        for the order; it now holds `new_open_qty` (accepted) or `old_open_qty`
        (refused). This is exact whatever the venue does with fills that raced
        the replace (OUCH: the replacement gets the full new quantity).

        Without `reserved` it is taken as ``max(0, new_open_qty - old_open_qty)``,
        which is exact only when no fill raced the replace.
        """
        if reserved is None:
            reserved = max(0, new_open_qty - old_open_qty)
        elif reserved < 0:
            raise ValueError(f"reserved must be >= 0, got {reserved}")
        change = (new_open_qty - old_open_qty - reserved) if accepted else -reserved
        if change > 0:
            self.on_open_added(symbol, side, change)
        elif change < 0:
            self.on_open_reduced(symbol, side, -change)
        else:
            _is_buy(side)

    def on_fill(
        self, symbol: str, side: str, qty: int, price: int, *, order_done: bool = False
    ) -> None:
        """An execution: open qty becomes position; the price becomes the last trade.

        `order_done=True` when this fill completes the order (one fewer working).
        """
        _require_qty(qty)
        st = self._state(symbol)
        if _is_buy(side):
            st.position += qty
            st.open_buy = self._reduce(st.open_buy, qty)
        else:
            st.position -= qty
            st.open_sell = self._reduce(st.open_sell, qty)
        self._refresh(st)
        if price > 0:
            st.last_price = price
        if order_done:
            self.on_order_finished()

    def on_open_added(self, symbol: str, side: str, qty: int) -> None:
        """Open qty grew outside `on_sent` (a replace's increase, a reconciliation)."""
        _require_qty(qty)
        st = self._state(symbol)
        if _is_buy(side):
            st.open_buy += qty
        else:
            st.open_sell += qty
        self._refresh(st)

    def on_open_reduced(self, symbol: str, side: str, qty: int) -> None:
        """Open qty left without a fill (cancel, partial cancel, reject, expiry, size-down)."""
        _require_qty(qty)
        st = self._state(symbol)
        if _is_buy(side):
            st.open_buy = self._reduce(st.open_buy, qty)
        else:
            st.open_sell = self._reduce(st.open_sell, qty)
        self._refresh(st)

    def on_order_finished(self) -> None:
        """An order is no longer working (filled, cancelled, expired or rejected)."""
        if self._working > 0:
            self._working -= 1
        else:
            self._underflows += 1

    def on_done(self, symbol: str, side: str, open_qty_removed: int) -> None:
        """An order ended with `open_qty_removed` shares unfilled (cancel/expire/reject)."""
        if open_qty_removed > 0:
            self.on_open_reduced(symbol, side, open_qty_removed)
        elif open_qty_removed < 0:
            raise ValueError(f"open_qty_removed must be >= 0, got {open_qty_removed}")
        else:
            _is_buy(side)
        self.on_order_finished()

    def on_trade_price(self, symbol: str, price: int) -> None:
        """A market trade print: the reference for price bands and market orders."""
        if price <= 0:
            raise ValueError(f"trade price must be > 0, got {price}")
        self._state(symbol).last_price = price

    def set_pnl(self, total: int) -> None:
        """Realized + unrealized P&L (fixed-point dollars); may trip the latched stop."""
        self._pnl = total
        self._update_loss_stop()

    def set_position(self, symbol: str, qty: int) -> None:
        """Overwrite a net position (start of day, journal rebuild, reconciliation)."""
        st = self._state(symbol)
        st.position = qty
        self._refresh(st)

    # --- monitoring ---------------------------------------------------------------

    def utilisation(self, now_ns: int | None = None) -> dict[str, float]:
        """Fraction of each limit in use (1.0 = at the limit): `figures`' fractions."""
        return {k: f.fraction for k, f in self.figures(now_ns).items()}

    def figures(self, now_ns: int | None = None) -> dict[str, RiskFigure]:
        """Each limit's use: what counts against it now and the limit in force.

        Keys: ``position.<SYM>`` (|net| against the symbol's max_position),
        ``position_worst.<SYM>`` (worst case with open orders), ``gross``
        (sum of |position|), ``gross_worst``, ``net`` (|sum of positions|),
        ``exposure`` (sum of |position| x last trade price), ``rate`` (orders
        and replaces in the 1 s window ending at `now_ns`, default the latest
        time seen), ``messages`` (the same with cancels), ``working`` and
        ``loss`` (the P&L against -daily_loss_limit: both signed, see
        `RiskFigure`).
        """
        lim = self._limits
        out: dict[str, RiskFigure] = {}
        gross = net = exposure = 0
        # The gateway's control thread reads this while its hot loop may be adding a
        # symbol: iterate a copy. (dict.copy() copies the table with no per-item
        # allocation, so no collection can run Python code, and switch threads,
        # midway; list(d.items()) can, and failed now and then.)
        for sym, st in self._syms.copy().items():
            mp = self._eff.get(sym, self._default).max_position
            pos = st.position
            out[f"position.{sym}"] = RiskFigure(used=abs(pos), limit=mp, unit=SHARES)
            out[f"position_worst.{sym}"] = RiskFigure(used=st.worst, limit=mp, unit=SHARES)
            gross += abs(pos)
            net += pos
            exposure += abs(pos) * (st.last_price or 0)
        out["gross"] = RiskFigure(used=gross, limit=lim.max_gross_position, unit=SHARES)
        out["gross_worst"] = RiskFigure(
            used=self._gross_worst, limit=lim.max_gross_position, unit=SHARES
        )
        out["net"] = RiskFigure(used=abs(net), limit=lim.max_net_position, unit=SHARES)
        out["exposure"] = RiskFigure(used=exposure, limit=lim.max_exposure_notional, unit=DOLLARS)
        out["rate"] = RiskFigure(
            used=self._window_count(now_ns), limit=lim.max_orders_per_s, unit=ORDERS_PER_S
        )
        out["messages"] = RiskFigure(
            used=self._window_count(now_ns, self._messages),
            limit=lim.max_messages_per_s,
            unit=MESSAGES_PER_S,
        )
        out["working"] = RiskFigure(used=self._working, limit=lim.max_working_orders, unit=ORDERS)
        out["loss"] = RiskFigure(used=self._pnl, limit=-lim.daily_loss_limit, unit=DOLLARS)
        return out

    def statistics(self) -> RiskStatistics:
        rejected = sum(self._rejects.values())
        return RiskStatistics(
            checks=self._checks,
            accepted=self._checks - rejected,
            rejected=rejected,
            rejects=dict(self._rejects),
            mode=self._mode,
            loss_stopped=self._loss_stopped,
            working_orders=self._working,
            orders_in_window=self._window_count(None),
            open_underflows=self._underflows,
        )

    # --- internals ------------------------------------------------------------------

    def _state(self, symbol: str) -> _SymbolState:
        st = self._syms.get(symbol)
        if st is None:
            st = self._syms[symbol] = _SymbolState()
        return st

    def _refresh(self, st: _SymbolState) -> None:
        worst = max(abs(st.position + st.open_buy), abs(st.position - st.open_sell))
        self._gross_worst += worst - st.worst
        st.worst = worst

    def _reduce(self, open_qty: int, qty: int) -> int:
        if qty > open_qty:
            self._underflows += 1
            return 0
        return open_qty - qty

    def _update_loss_stop(self) -> None:
        if self._pnl <= -self._limits.daily_loss_limit and not self._loss_stopped:
            self._loss_stopped = True
            self._loss_trip_pnl = self._pnl

    def _window_count(self, now_ns: int | None, times: deque[int] | None = None) -> int:
        """Entries of `times` (default: orders sent) in the 1 s window ending at `now_ns`."""
        now = self._latest_ns if now_ns is None else now_ns
        # the hot loop may append meanwhile (see figures)
        sent = (self._sent if times is None else times).copy()
        return sum(1 for t in sent if now - WINDOW_NS < t <= now)


def _require_qty(qty: int) -> None:
    if qty <= 0:
        raise ValueError(f"qty must be > 0, got {qty}")


def _is_buy(side: str) -> bool:
    if side == BUY:
        return True
    if side == SELL:
        return False
    raise ValueError(f"side must be 'B' or 'S', got {side!r}")
