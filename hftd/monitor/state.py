"""The system's state as the operator sees it: one Struct, three faces.

`SystemState` is what the monitor computes every poll and what the console,
the web page (as JSON) and `/metrics` all show; the console gets it from the
monitor's control socket (`Status` detail ``state``) or computes it itself
with the same `hftd.monitor.model.Aggregator`. Money and prices are dollars
(floats, for display only: the trading path keeps fixed point); latency is
microseconds; times are wall-clock seconds (`time.time()`).
"""

from __future__ import annotations

import msgspec

# Part of the state schema, defined beside the code that computes it.
from hftd.msg.status import RiskBar as RiskBar
from hftd.msg.status import StrategyRow as StrategyRow
from hftd.runtime.latency import HopLatency as HopLatency

HOPS = ("t1_t2", "t2_t3", "t3_t4", "t4_t5", "t1_t4")
HOP_LABELS = {
    "t1_t2": "feed>strategy",
    "t2_t3": "strategy>risk",
    "t3_t4": "risk>wire",
    "t4_t5": "wire>ack",
    "t1_t4": "tick-to-trade",
}


class Rates(msgspec.Struct, kw_only=True):
    """Per second, over the last second or so of polls."""

    orders: float = 0.0
    fills: float = 0.0
    cancels: float = 0.0
    rejects: float = 0.0  # risk + venue
    md: float = 0.0  # ITCH messages received by the feed


class Counters(msgspec.Struct, kw_only=True):
    """The daemons' own counters, as they report them (reset when one restarts)."""

    orders: int = 0  # gateway: orders sent to the venue
    fills: int = 0
    cancels: int = 0
    risk_rejects: int = 0
    venue_rejects: int = 0
    md_messages: int = 0  # feed
    gaps: int = 0  # feed sequence gaps
    drops: int = 0  # feed: md ring full
    orders_refused: int = 0  # strategy: orders ring full
    resyncs: int = 0  # strategy: full replays from sequence 1 asked of the feed
    resync_failures: int = 0  # strategy: resyncs that hit a gap again before the old one
    book_errors: int = 0  # strategy: md updates its books rejected (each one resyncs them)
    unusable: int = 0  # gateway: sequenced venue messages journaled but not applied
    reconnects: int = 0  # feed + gateway venue sessions


class PositionRow(msgspec.Struct, kw_only=True):
    symbol: str
    qty: int
    avg_price: float
    mark: float
    unrealized: float
    realized: float
    total: float


class Trade(msgspec.Struct, kw_only=True):
    time: float
    symbol: str
    side: str
    qty: int
    price: float
    tick_to_trade_us: float  # 0: its order had no market-data trigger (a flatten)
    # dollars per share closed, for a fill that reduced a position (see FillStatus);
    # None for one that opened or added
    pnl_per_share: float | None = None


class DaemonHealth(msgspec.Struct, kw_only=True):
    name: str
    state: str  # ready, starting, restarting, failed, stopped, down (not answering)
    up: bool  # answering its control socket and ready
    pid: int
    uptime_s: float
    restarts: int
    last_error: str = ""
    limits_hit: int = 0  # its listeners' limits acted (since it started; docs/security.md)
    memory_bytes: int = 0  # charged to its memory cgroup (0: not read; hftd/monitor/cgroup.py)
    memory_limit_bytes: int = 0  # that cgroup's limit (0: none)
    # its most-waiting thread's run-queue wait, ms per second over monitor.alerts.
    # cpu_wait_window_s (None: not read yet, not a full window, not answering)
    cpu_wait_ms_per_s: float | None = None


class Alert(msgspec.Struct, kw_only=True):
    key: str  # "<rule>:<subject>"
    rule: str
    subject: str
    severity: str  # "warning" | "critical"
    message: str
    raised_at: float
    cleared_at: float = 0.0  # 0 while active
    value: float = 0.0
    threshold: float = 0.0


class Point(msgspec.Struct, array_like=True):
    """One second of history (for charts)."""

    t: float
    orders: float  # per second
    fills: float
    rejects: float
    md: float
    p50: float  # latency of the alert hop over the last second, us (0 = no orders)
    p99: float
    pnl: float  # total P&L, dollars


class SystemState(msgspec.Struct, kw_only=True):
    time: float = 0.0
    seq: int = 0  # polls so far
    source: str = "monitor"  # "monitor" or "direct" (the console polling the daemons)
    mode: str = "unknown"  # gateway trading mode: active, paused, reducing, halted
    breaker_tripped: bool = False
    breaker_reason: str = ""
    next_step: str = ""  # what the operator does now (hftd.msg.status.next_step); "" as usual
    venue_up: bool = False
    strategy_up: bool = False
    feed_link: str = ""
    # a venue session connected but not a byte from the venue this long (alert venue_silent)
    venue_silent_s: float = 0.0  # the gateway's order session
    md_silent_s: float = 0.0  # the feed's market-data session
    # market data the venue sent that waits unread in the feed's socket (alert md_backlog)
    md_backlog_bytes: int = 0
    # the machine's CPU pressure: the share of monitor.alerts.cpu_wait_window_s in which
    # some runnable thread waited for a CPU (alert cpu_wait; None: no PSI, not a window yet)
    cpu_pressure: float | None = None
    resync_loop: bool = False  # the strategy cannot rebuild its books (alert resync_loop)
    working_orders: int = 0
    counters: Counters = msgspec.field(default_factory=Counters)
    rates: Rates = msgspec.field(default_factory=Rates)
    latency_hop: str = "t1_t4"
    latency_window_s: float = 60.0
    latency: list[HopLatency] = msgspec.field(default_factory=list)  # over the window
    latency_total: list[HopLatency] = msgspec.field(default_factory=list)  # since gateway start
    positions: list[PositionRow] = msgspec.field(default_factory=list)
    totals: PositionRow | None = None
    risk: list[RiskBar] = msgspec.field(default_factory=list)
    trades: list[Trade] = msgspec.field(default_factory=list)  # newest first
    strategies: list[StrategyRow] = msgspec.field(default_factory=list)  # by name
    daemons: list[DaemonHealth] = msgspec.field(default_factory=list)
    alerts: list[Alert] = msgspec.field(default_factory=list)  # active, most severe first
    alert_log: list[Alert] = msgspec.field(default_factory=list)  # raised/cleared, newest first
    history: list[Point] = msgspec.field(default_factory=list)  # oldest first

    def hop(self, name: str, *, total: bool = False) -> HopLatency | None:
        for h in self.latency_total if total else self.latency:
            if h.hop == name:
                return h
        return None

    def daemon(self, name: str) -> DaemonHealth | None:
        for d in self.daemons:
            if d.name == name:
                return d
        return None


def without_history(state: SystemState) -> SystemState:
    return msgspec.structs.replace(state, history=[])
