"""The texts of the brief's log lines (pure): start-up and per trade.

Start-up, one line each: the version and the date (`version_line`, the
supervisor), the configuration file (the supervisor's ``config:`` line), the
risk limits (`risk_limits_line`, the gateway as it starts), the symbols
(`symbols_line`, the supervisor), each strategy with its parameters
(`strategy_line`, the strategy daemon as it starts), then
``All components ready. Trading enabled.`` (`ready_line`, the supervisor).

Per trade, from the component that knows each figure: the strategy's signal
(hftd.strategy.context), then the gateway's risk check and order sent
(`OrderLines`, one record once the order's bytes are on the socket), and for
each fill the fill, the position against its limit, the account's P&L
against its loss limit and the signal-to-fill latency (`FillLines`, one
record). Both keep plain numbers and turn them into text only when the line
is written (`Lines`: the hot thread's idle moment, hftd.runtime.log)::

    [09:30:00.015] [STRAT ] signal mr1 AAPL BUY 100 @ 189.5400 (z=-2.17) -> order 281479271677952
    [09:30:00.015] [RISK  ] check passed: AAPL BUY 100 @ 189.5400 (cl 281479271677952): ...
    [09:30:00.015] [GW    ] order sent: AAPL BUY 100 @ 189.5400 (cl 281479271677952, ref 7, mr1)
    [09:30:00.016] [GW    ] fill AAPL BUY 100 @ 189.5400 (cl 281479271677952, ref 7, complete)
    [09:30:00.016] [RISK  ] position AAPL +400/2,000
    [09:30:00.016] [RISK  ] P&L -$128.00 / -$50,000.00 (realized $12.00)
    [09:30:00.016] [PERF  ] signal-to-fill 1.234 ms (tick-to-trade 48.2 us)
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec

from hftd.config import SymbolConfig
from hftd.msg.hot import MARKET_PRICE, PRICE_SCALE
from hftd.msg.status import format_dollars
from hftd.risk.limits import RiskLimits
from hftd.runtime.log import Lines, left_out_text
from hftd.strategy.api import StrategyParams

READY = "All components ready. Trading enabled."

# Risk limits in the order the checks run them (hftd.risk.engine), and their units.
_MONEY = {"max_order_notional", "max_exposure_notional", "daily_loss_limit"}
_SHOWN_APART = ("name", "kind", "symbols", "enabled")  # in a strategy line's words


def price_text(price: int) -> str:
    """A 4-decimal fixed-point price as the venue has it ("189.5400"), or "MKT"."""
    return "MKT" if price == MARKET_PRICE else f"{price / PRICE_SCALE:.4f}"


def side_text(side: str) -> str:
    return "BUY" if side == "B" else "SELL"


def hftd_version() -> str:
    """The installed package's version ("unknown" when run from a bare source tree)."""
    from importlib import metadata  # (pulls in socket: only where it is called)

    try:
        return metadata.version("hftd")
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line(version: str, now: float | None = None) -> str:
    """`hftd 0.1.0 starting on 2026-12-07 (local time, UTC+01:00), Python 3.11.2`: the
    lines' times carry no date, so the start says it."""
    import platform  # (only the supervisor says it: not in every daemon's imports)

    t = time.localtime(now)
    zone = time.strftime("%z", t)
    zone = f"UTC{zone[:3]}:{zone[3:]}" if len(zone) == 5 else (zone or "UTC")
    return (
        f"hftd {version} starting on {time.strftime('%Y-%m-%d', t)} (local time, {zone}), "
        f"Python {platform.python_version()}"
    )


def date_line(now: float | None = None) -> str:
    """Said at each local midnight: the lines that follow are of this date."""
    return f"date {time.strftime('%Y-%m-%d', time.localtime(now))} (local time)"


def _limit_text(name: str, value: int) -> str:
    if name in _MONEY:
        return format_dollars(value)
    return f"{value:,}"


def risk_limits_line(limits: RiskLimits) -> str:
    """`risk limits: max_position 2,000, ..., daily_loss_limit $50,000.00; AAPL:
    max_position 1,000`: every limit in force, with the per-symbol overrides."""
    fields = msgspec.structs.asdict(limits)
    overrides = fields.pop("symbols")
    text = "risk limits: " + ", ".join(f"{k} {_limit_text(k, v)}" for k, v in fields.items())
    for sym in sorted(overrides):
        own = {k: v for k, v in msgspec.structs.asdict(overrides[sym]).items() if v is not None}
        if own:
            text += f"; {sym}: " + ", ".join(f"{k} {_limit_text(k, v)}" for k, v in own.items())
    return text


def symbols_line(symbols: Iterable[SymbolConfig]) -> str:
    """`symbols: AAPL (tick 0.01, lot 100, reference 189.50), MSFT (...)`."""
    parts = [
        f"{s.symbol} (tick {s.tick_size}, lot {s.round_lot}, reference {s.reference_price})"
        for s in symbols
    ]
    return f"symbols: {', '.join(parts) or 'none'}"


def strategy_line(inst: StrategyParams) -> str:
    """`strategy mr1 (mean_reversion) on AAPL, MSFT: order_qty=100 max_position=500 ...`:
    an instance and every parameter it runs with (its kind's own after the common ones)."""
    fields = msgspec.structs.asdict(inst)
    common = [f for f in StrategyParams.__struct_fields__ if f in fields]  # then its kind's
    order = [*common, *(f for f in fields if f not in common)]
    params = " ".join(f"{k}={fields[k]}" for k in order if k not in _SHOWN_APART)
    off = "" if inst.enabled else " (disabled: hears nothing, sends nothing)"
    return f"strategy {inst.name} ({inst.kind}) on {', '.join(inst.symbols)}{off}: {params}"


def ready_line(mode: str, venue_up: bool, next_step: str) -> tuple[bool, str]:
    """What the supervisor says once every daemon is READY, from the gateway's
    Status: (trading enabled?, the line)."""
    if mode == "active" and venue_up:
        return True, READY
    why = next_step or f"mode {mode}" + ("" if venue_up else ", no venue session")
    return False, f"All components ready. Trading NOT enabled: {why}"


def _signed(qty: int) -> str:
    return f"{qty:+,}" if qty else "0"


def _us(ns: int) -> str:
    return f"{ns / 1000:,.1f} us"


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms"


class OrderLines(Lines):
    """One new order the gateway sent: its risk check (passed, with the position,
    its limit and the worst case if every open order on its side fills, and the
    notional against its limit), then the order sent."""

    __slots__ = (
        "cl_id",
        "left_out",
        "max_notional",
        "max_position",
        "position",
        "price",
        "qty",
        "ref",
        "reference",
        "side",
        "strategy",
        "symbol",
        "worst",
    )

    def __init__(
        self,
        symbol: str,
        side: str,
        qty: int,
        price: int,
        cl_id: int,
        ref: int,
        strategy: str,
        position: int,
        worst: int,
        max_position: int,
        max_notional: int,
        reference: int | None,
        left_out: int,
    ) -> None:
        self.symbol = symbol
        self.side = side
        self.qty = qty
        self.price = price
        self.cl_id = cl_id
        self.ref = ref
        self.strategy = strategy
        self.position = position  # filled, as the check saw it
        self.worst = worst  # the position if every open order on this side filled
        self.max_position = max_position
        self.max_notional = max_notional
        self.reference = reference  # a market order's notional is at the last trade
        self.left_out = left_out  # order lines left out before this one (LineBudget)

    def lines(self) -> list[tuple[str, str]]:
        order = f"{self.symbol} {side_text(self.side)} {self.qty} @ {price_text(self.price)}"
        px = self.reference if self.price == MARKET_PRICE else self.price
        notional = (
            f"notional {format_dollars(self.qty * px)} / {format_dollars(self.max_notional)}"
            if px
            else "notional unknown (market order, no trade yet)"
        )
        check = (
            f"check passed: {order} (cl {self.cl_id}): position {_signed(self.position)}/"
            f"{self.max_position:,} ({_signed(self.worst)} if every open "
            f"{'buy' if self.side == 'B' else 'sell'} fills), {notional}"
        )
        sent = f"order sent: {order} (cl {self.cl_id}, ref {self.ref}, {self.strategy or '-'})"
        return [("RISK", check), ("GW", sent + left_out_text(self.left_out))]


class FillLines(Lines):
    """One fill: the fill, the symbol's position against its limit, the account's
    P&L against the daily loss limit, and the order's latency from the gateway's
    stamps (signal T2 to the fill's arrival; tick-to-trade T1 -> T4)."""

    __slots__ = (
        "cl_id",
        "done",
        "filled_ns",
        "loss_limit",
        "max_position",
        "pnl",
        "position",
        "price",
        "qty",
        "realized",
        "ref",
        "side",
        "symbol",
        "t1",
        "t2",
        "t4",
    )

    def __init__(
        self,
        symbol: str,
        side: str,
        qty: int,
        price: int,
        cl_id: int,
        ref: int,
        done: bool,
        position: int,
        max_position: int,
        pnl: int,
        realized: int,
        loss_limit: int,
        t1: int,
        t2: int,
        t4: int,
        filled_ns: int,
    ) -> None:
        self.symbol = symbol
        self.side = side
        self.qty = qty
        self.price = price
        self.cl_id = cl_id
        self.ref = ref
        self.done = done
        self.position = position  # after the fill
        self.max_position = max_position
        self.pnl = pnl  # the account's, realized + unrealized, after the fill
        self.realized = realized
        self.loss_limit = loss_limit
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.filled_ns = filled_ns  # the fill read from the venue (the gateway's clock)

    def lines(self) -> list[tuple[str, str]]:
        out = [
            (
                "GW",
                f"fill {self.symbol} {side_text(self.side)} {self.qty} @ "
                f"{price_text(self.price)} (cl {self.cl_id}, ref {self.ref}, "
                f"{'complete' if self.done else 'partial'})",
            ),
            ("RISK", f"position {self.symbol} {_signed(self.position)}/{self.max_position:,}"),
            (
                "RISK",
                f"P&L {format_dollars(self.pnl)} / {format_dollars(-self.loss_limit)} "
                f"(realized {format_dollars(self.realized)})",
            ),
        ]
        perf = self.perf()
        if perf:
            out.append(("PERF", perf))
        return out

    def perf(self) -> str:
        """From the order's stamps: signal-to-fill (a strategy's order), else
        order-to-fill from the wire (the gateway's own); "" without stamps (an
        order rebuilt from the journal)."""
        ttt = f" (tick-to-trade {_us(self.t4 - self.t1)})" if self.t1 and self.t4 else ""
        if self.t2:
            return f"signal-to-fill {_ms(self.filled_ns - self.t2)}{ttt}"
        if self.t4:
            return f"order-to-fill {_ms(self.filled_ns - self.t4)} (from the wire)"
        return ""
