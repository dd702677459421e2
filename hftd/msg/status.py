"""What a daemon's `Status` reply carries under ``detail``: one Struct per daemon.

These are contracts between processes: the gateway's working orders and
positions are how a restarted strategy takes its orders back (`adopt`), and
the monitor, the console and `hftctl status` read the rest. A producer builds
its detail Struct (`status_detail()`); `Runtime.dispatch` sends it as a plain
msgpack map (`msgspec.to_builtins`), so the wire is what it always was and a
reader without this module still reads it. Every reader decodes with
`decode_detail`: a field missing or of the wrong type is a `StatusDetailError`
naming the daemon and the field (``gateway Status detail: Object missing
required field `working```), not a KeyError deep inside recovery.

Readers ignore fields they do not know (a newer producer may add some); a
field is removed or renamed only together with every reader. Defaults only
where a value is genuinely absent at times (a reconciliation not done yet).

The control socket's server adds ``listeners`` (its own counters,
`hftd.ipc.limits`) to every daemon's detail; a detail with nothing else in it
comes from a daemon still starting, and decodes to None.

Money and prices are 4-decimal fixed point integers (`hftd.config.PRICE_SCALE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from hftd.msg.hot import PRICE_SCALE


class StatusDetailError(ValueError):
    """A Status detail that is not what its daemon's Struct says (names the field)."""


class Detail(msgspec.Struct, kw_only=True, frozen=True):
    """Base of every daemon's Status detail."""


# --- gateway ------------------------------------------------------------------------


class BreakerStatus(msgspec.Struct, kw_only=True, frozen=True):
    tripped: bool
    reason: str
    trips: int


class ReconcileStatus(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The journal's end checked against the venue's stream, and (with our simulator)
    the gateway's state against the venue's snapshot (docs/reconciliation.md)."""

    state: str  # verifying, agreed, mismatch
    first: int = msgspec.field(default=0, name="from")  # the re-sent messages compared
    last_seq: int = msgspec.field(default=0, name="to")
    verified: int = 0  # of those, found equal to the journal's
    problems: list[str]  # always on the wire: readers check it is empty
    snapshot: str | list[str] = ""  # "agreed", the mismatches, or "" (no snapshot)


class MarketStatus(msgspec.Struct, kw_only=True, frozen=True):
    """Risk's own view of the market (hftd/risk/market.py `MarketView.status`)."""

    synced: bool
    last_seq: int
    gaps: int
    resyncs: int
    resync_loop: bool
    last_loss: str
    book_errors: int
    last_book_error: str
    reference: dict[str, int]  # symbol -> the price band's reference
    # rebuilding through a replay of what was published before (hftd/book/sync.py):
    # references and marks stay where they were until it reaches replay_to
    catching_up: bool = False
    replay_to: int = 0


class WorkingOrderStatus(msgspec.Struct, kw_only=True, frozen=True):
    """One order the gateway has at the venue (a restarted strategy adopts it)."""

    cl_id: int
    user_ref: int  # the order's number at the venue (OUCH's UserRefNum)
    symbol: str
    side: str  # "B" or "S"
    leaves: int
    price: int
    order_ref: int  # the venue's order reference (0: not told)
    tif: str
    state: str  # pending, live, cancel pending, replace pending (hftd/gateway/lifecycle.py)
    strategy: str


class PositionSnapshot(msgspec.Struct, frozen=True, gc=False):
    """One symbol's position for reporting (hftd/gateway/positions.py)."""

    symbol: str
    qty: int  # signed shares
    avg_price: float  # display only: cost_basis / qty, 4dp units (0.0 when flat)
    cost_basis: int  # signed, fixed-point dollars
    realized: int
    mark: int | None
    unrealized: int  # 0 without a mark
    bought: int  # shares, whole day
    sold: int
    fills: int


class BookSnapshot(msgspec.Struct, frozen=True):
    """Every position and the account totals."""

    positions: tuple[PositionSnapshot, ...]
    realized: int
    unrealized: int
    total: int
    gross_shares: int  # sum |qty|
    net_shares: int  # sum qty
    gross_notional: int  # sum |qty| * mark
    net_notional: int  # sum qty * mark


class FillStatus(msgspec.Struct, kw_only=True, frozen=True):
    """One of the latest fills (the monitor's trades table)."""

    time_ns: int
    symbol: str
    side: str
    qty: int
    price: int
    tick_to_trade_us: float  # 0: no market data triggered its order (the gateway's flatten)
    # A fill that reduced or closed a position: the P&L it realized per share closed
    # (the fill's price against the average entry price of the shares it closed,
    # positive when it made money; 4-decimal fixed point, a float: it is a division).
    # None: the fill opened or added to a position.
    pnl_per_share: float | None = None


# The units of a `RiskFigure`.
SHARES = "shares"
ORDERS_PER_S = "orders/s"
MESSAGES_PER_S = "messages/s"
ORDERS = "orders"
DOLLARS = "dollars"  # on the wire 4-decimal fixed point, like all money here


class RiskFigure(msgspec.Struct, kw_only=True, frozen=True):
    """One risk limit's use: what counts against it now, and the limit in force.

    `used` and `limit` are in `unit`. Shares, orders and messages are counts (a
    position's and the net's are magnitudes: |qty|); dollars are fixed point.
    The daily loss is the P&L itself against the stop level, both signed:
    ``used`` = P&L (realized + unrealized), ``limit`` = -daily_loss_limit.
    """

    used: int
    limit: int  # never 0: every limit is a positive config value (the loss's, negated)
    unit: str  # SHARES, ORDERS_PER_S, MESSAGES_PER_S, ORDERS or DOLLARS

    @property
    def fraction(self) -> float:
        """Of the limit in use, 1.0 = at the limit (a profit is 0.0 of the loss limit)."""
        return max(0.0, self.used / self.limit)


class GatewayDetail(Detail, kw_only=True, frozen=True):
    mode: str  # active, paused, reducing, halted
    # the last mode change and why ("halt: reconciliation: ...", "halt: circuit breaker:
    # ..."), journaled: a restarted gateway still says why it is halted
    mode_reason: str = ""
    breaker: BreakerStatus
    venue_up: bool
    # ms since the venue last sent anything on the order session (a reply or its
    # heartbeat, one a second when idle); None: no session connected
    venue_heard_ms_ago: int | None
    strategy_up: bool
    venue_seq: int
    next_user_ref: int
    last_unusable: str
    reconcile: ReconcileStatus
    market: MarketStatus
    venue_session: str
    # counters (GatewayCore.counters, then the daemon's own)
    commands: int
    sent: int
    risk_rejects: int
    venue_rejects: int
    fills: int
    cancels: int
    replaces: int
    timeouts: int
    untracked: int
    late_cancel_rejects: int
    held: int
    unusable: int
    broken_trades: int
    trade_corrections: int
    aiq_cancels: int
    cancel_pending: int
    cancel_rejects: int
    priority_updates: int
    modified: int
    restated: int
    marks_ignored: int
    report_backlog: int
    reconnects: int
    working: list[WorkingOrderStatus]
    positions: BookSnapshot
    risk: dict[str, float]  # limit -> fraction in use (RiskEngine.utilisation)
    latency_hdr: dict[str, dict[int, int]]  # hop -> sparse HDR counters (SparseHistogram)
    latency_rows_lost: int
    recent_fills: list[FillStatus]
    # the figures behind `risk`: limit -> used and limit (RiskEngine.figures); the
    # same keys. Empty from a gateway that did not send them (older than this field).
    risk_figures: dict[str, RiskFigure] = msgspec.field(default_factory=dict)
    # orders-ring records that were not an order command (dropped, GatewayCore)
    bad_commands: int = 0


def next_step(d: GatewayDetail) -> str:
    """What the operator does now, from the gateway's detail ("" while trading as
    usual): the one wording `hftctl status`, the console and the web page show."""
    b = d.breaker
    if d.mode == "halted":
        if b.tripped:
            return (
                f"circuit breaker tripped ({b.reason}): find the cause, then "
                "`hftctl resume` re-arms it and trades again"
            )
        why = d.mode_reason.removeprefix("halt: ") if d.mode_reason.startswith("halt") else ""
        return f"trading halted{f' ({why})' if why else ''}: `hftctl resume` to trade again"
    if d.mode == "reducing":
        if any(p.qty for p in d.positions.positions):
            return (
                "mode reducing: closing positions (only orders that reduce them); "
                "`hftctl resume` to trade again"
            )
        return "flat, mode reducing: `hftctl resume` to trade again"
    if d.mode == "paused":
        return "paused: new orders held, working orders stay; `hftctl resume` to trade again"
    if not d.venue_up:
        return "no venue session: the gateway reconnects by itself; check the venue"
    if not d.market.synced:
        return "risk's market view is resyncing: the band uses the last good reference"
    return ""


def format_dollars(fixed: int) -> str:
    """Fixed-point money as the front ends show it: "$1,234.56", "-$128.00" (to the cent,
    half away from zero; exact: no floats)."""
    cents = (abs(fixed) + PRICE_SCALE // 200) // (PRICE_SCALE // 100)
    sign = "-" if fixed < 0 and cents else ""
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"


def format_fraction(fraction: float) -> str:
    """A limit's use as a percentage: "40.0%"."""
    return f"{fraction * 100:.1f}%"


def risk_text(f: RiskFigure) -> str:
    """`used/limit` in the limit's own units: "400/1,000"; money with its sign and a
    spaced slash: "-$128.00 / -$5,000.00" (the daily loss: P&L against the stop)."""
    if f.unit == DOLLARS:
        return f"{format_dollars(f.used)} / {format_dollars(f.limit)}"
    return f"{f.used:,}/{f.limit:,}"


RISK_LABELS = {  # the account-wide limits, in the order the front ends show them
    "gross": "gross position",
    "net": "net position",
    "exposure": "exposure",
    "rate": "order rate",
    "messages": "message rate",
    "working": "working orders",
    "loss": "daily P&L",
}


class RiskBar(msgspec.Struct, kw_only=True):
    """One risk limit's use as the front ends show it (part of the monitor's state)."""

    key: str  # the gateway's key ("position.AAPL", "gross", "rate", "loss", ...)
    label: str
    fraction: float  # of the limit in use; 1.0 = at the limit
    # What the fraction is of (from the gateway's `risk_figures`; 0, 0, "" and "" from a
    # gateway too old to send them): in `unit`, dollars as dollars (floats).
    used: int | float = 0
    limit: int | float = 0  # the symbol's own for position.SYM; -daily_loss_limit for loss
    unit: str = ""  # "shares", "orders/s", "messages/s", "orders", "dollars"
    figure: str = ""  # `risk_text`: "400/1,000", "-$128.00 / -$5,000.00"


def risk_bars(d: GatewayDetail) -> list[RiskBar]:
    """Every limit's use, as all the front ends show it: each symbol's position (by
    symbol), then `RISK_LABELS`'s. Worst cases (``*_worst``: every open order
    filling) stay in the detail: the checks see them, the operator sees positions."""
    bars: list[RiskBar] = []
    keys = sorted(k for k in d.risk if k.startswith("position."))
    keys += [k for k in RISK_LABELS if k in d.risk]
    for key in keys:
        label = RISK_LABELS.get(key) or f"position {key.split('.', 1)[1]}"
        f = d.risk_figures.get(key)
        if f is None:  # an older gateway: the fraction alone
            bars.append(RiskBar(key=key, label=label, fraction=d.risk[key]))
            continue
        money = f.unit == DOLLARS
        bars.append(
            RiskBar(
                key=key,
                label=label,
                fraction=f.fraction,
                used=f.used / PRICE_SCALE if money else f.used,
                limit=f.limit / PRICE_SCALE if money else f.limit,
                unit=f.unit,
                figure=risk_text(f),
            )
        )
    return bars


# --- strategy -----------------------------------------------------------------------


class StrategyInstanceStatus(msgspec.Struct, kw_only=True, frozen=True):
    signals: int
    sent: int
    fills: int
    partial_fills: int
    rejects: int
    cancels: int
    held: int  # orders not sent: the gateway's mode would refuse them
    working: int  # its orders not done yet
    positions: dict[str, int]  # the account's, per symbol (the gateway's reports)
    # this instance's own, from its own fills (several may share a symbol):
    net: dict[str, int]  # signed shares per symbol, non-zero ones
    realized: int  # 4-decimal fixed point dollars
    unrealized: int  # at its books' mids
    pnl: int  # realized + unrealized


class StrategyDetail(Detail, kw_only=True, frozen=True):
    # market-data sequence (hftd/book/sync.py MdSync)
    synced: bool
    last_seq: int
    updates: int
    skipped: int
    gaps: int
    resets: int
    resyncs: int
    resync_failures: int
    resync_loop: bool
    resync_failures_in_a_row: int
    resync_backoff_s: float
    resync_hole: int
    last_loss: str
    # rebuilding the books through a replay up to replay_to: no strategy sees it
    catching_up: bool = False
    replay_to: int = 0
    # the daemon's
    reports: int
    orders_refused: int
    run: int  # the strategy's run of the trading day (hftd/msg/ids.py)
    book_errors: int
    last_book_error: str
    working: int
    untracked: int
    stale_reports: int
    invalid_reports: int
    gateway_heard_ms_ago: int | None  # None: never heard
    gateway_mode: str  # as the gateway's heartbeats say (what its orders may be)
    strategies: dict[str, StrategyInstanceStatus]


class StrategyRow(msgspec.Struct, kw_only=True):
    """One strategy instance's own figures (its order manager's; its P&L from its
    own fills, marked at its books' mids)."""

    name: str
    signals: int
    orders: int
    fills: int
    rejects: int
    held: int  # not sent: the gateway's mode would have refused them
    working: int
    positions: dict[str, int]  # its own, signed shares, non-zero symbols
    realized: float  # dollars
    unrealized: float
    pnl: float


def strategy_rows(d: StrategyDetail) -> list[StrategyRow]:
    """Each instance's figures as the front ends show them (money in dollars)."""
    return [
        StrategyRow(
            name=name,
            signals=s.signals,
            orders=s.sent,
            fills=s.fills,
            rejects=s.rejects,
            held=s.held,
            working=s.working,
            positions=dict(s.net),
            realized=s.realized / PRICE_SCALE,
            unrealized=s.unrealized / PRICE_SCALE,
            pnl=s.pnl / PRICE_SCALE,
        )
        for name, s in sorted(d.strategies.items())
    ]


# --- feed ---------------------------------------------------------------------------


class RingStats(msgspec.Struct, frozen=True):
    """A snapshot of a ring's header, for monitors (read without locking)."""

    name: str
    capacity: int
    max_payload: int
    head: int
    tail: int
    used: int
    free: int
    full_count: int
    bells: int
    sleeps: int
    wakeups: int
    timeouts: int
    missed_wakeups: int
    consumer_sleeping: bool


class FeedDetail(Detail, kw_only=True, frozen=True):
    link: str  # disconnected, logging in, live
    # ms since the venue last sent anything on the market-data session (a message or
    # its heartbeat, one a second when idle); None: no session connected
    venue_heard_ms_ago: int | None
    # bytes the venue sent that wait unread in the md socket (the kernel's receive
    # queue): a hot path slower than the flow (alert md_backlog); None: no session
    unread_bytes: int | None
    reconnects: int
    next_sequence: int
    messages: int
    published: int
    drops: int
    risk_drops: int  # records the gateway's risk_md ring could not take
    gaps: int
    resets: int
    # the last sequence number it has had from the venue: where a replay from 1 ends
    # (its MD_RESET says so), and what a consumer joining mid-day catches up to
    high_water: int = 0
    bytes: int
    unknown_types: int
    malformed: int
    ring: RingStats
    risk_ring: RingStats


# --- the others ---------------------------------------------------------------------


class HotpathDetail(Detail, kw_only=True, frozen=True):
    layout: str
    parts: list[str]
    ready: list[str]
    wait: str
    loops: int
    sleeps: int
    warms: int


class ProbeDetail(Detail, kw_only=True, frozen=True):
    hangs: int


# The daemons whose detail is typed. Not yet: the exchange (its detail gathers the
# venue's, the journal's and the checkpointer's figures) and the monitor (its detail
# carries the `SystemState` of hftd/monitor/state.py, which readers decode as such).
DETAILS: dict[str, type[Detail]] = {
    "gateway": GatewayDetail,
    "strategy": StrategyDetail,
    "feed": FeedDetail,
    "hotpath": HotpathDetail,
    "probe": ProbeDetail,
}

D = TypeVar("D", bound=Detail)


def decode_detail(kind: type[D], raw: Any, component: str = "") -> D | None:
    """A Status reply's ``detail`` (a map) as `kind`; None while the daemon starts
    (nothing in it but the control socket's ``listeners``). Raises
    `StatusDetailError`, naming the field, for a detail `kind` does not describe."""
    who = component or kind.__name__.removesuffix("Detail").lower()
    if isinstance(raw, Mapping) and not raw.keys() - {"listeners"}:
        return None
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise StatusDetailError(f"{who} Status detail: {exc}") from exc
