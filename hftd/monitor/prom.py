"""Prometheus exposition of the monitor's state (prometheus-client, its own registry).

A custom collector reads the latest `SystemState` (and the gateway's hop
histograms) at scrape time, so a scrape costs nothing between scrapes and
never sees a half-updated state. Counters are the daemons' own (they reset
when a daemon restarts; Prometheus' `rate()` handles that). Latency per hop
is a real histogram, built from the gateway's cumulative HDR histograms at
fixed bucket bounds, plus gauges of the percentiles over the monitor's
latency window. Every active monitor alert is `hftd_alert_firing 1`.
No I/O here: `exposition()` returns the text for the web server to send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from hftd.monitor.state import SystemState
from hftd.runtime.hdr import SparseHistogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency bucket bounds, seconds (5 us .. 1 s); +Inf is added.
BUCKETS_S = (
    5e-6,
    10e-6,
    25e-6,
    50e-6,
    100e-6,
    250e-6,
    500e-6,
    1e-3,
    2.5e-3,
    5e-3,
    10e-3,
    25e-3,
    50e-3,
    100e-3,
    250e-3,
    1.0,
)
QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("0.999", "p999"))

# A risk figure's unit as a label value (words: "orders/s" reads as a path).
PROM_UNITS = {"orders/s": "orders_per_second", "messages/s": "messages_per_second"}

StateProvider = Callable[[], tuple[SystemState, dict[str, SparseHistogram]]]


def metrics(state: SystemState, hists: dict[str, SparseHistogram]) -> list[Metric]:
    """Every metric family for one state (pure: the collector calls this)."""
    out: list[Metric] = []
    c = state.counters

    def counter(name: str, doc: str, value: float) -> None:
        m = CounterMetricFamily(name, doc)
        m.add_metric([], value)
        out.append(m)

    def gauge(name: str, doc: str, value: float) -> None:
        out.append(GaugeMetricFamily(name, doc, value=value))

    counter("hftd_orders_sent", "Orders the gateway sent to the venue.", c.orders)
    counter("hftd_fills", "Executions received by the gateway.", c.fills)
    counter("hftd_cancels", "Orders cancelled at the venue.", c.cancels)
    rej = CounterMetricFamily("hftd_rejects", "Orders rejected, by where.", labels=["source"])
    rej.add_metric(["risk"], c.risk_rejects)
    rej.add_metric(["venue"], c.venue_rejects)
    out.append(rej)
    counter("hftd_md_messages", "ITCH messages received by the feed.", c.md_messages)
    counter("hftd_md_gaps", "Sequence gaps detected (and recovered) by the feed.", c.gaps)
    counter("hftd_md_drops", "Market-data records dropped on a full md ring.", c.drops)
    counter(
        "hftd_orders_refused",
        "Orders refused by the strategy on a full orders ring.",
        c.orders_refused,
    )
    counter("hftd_reconnects", "Venue session reconnects (feed and gateway).", c.reconnects)
    counter(
        "hftd_md_resyncs", "Full replays from sequence 1 the strategy asked of the feed.", c.resyncs
    )
    counter(
        "hftd_md_resync_failures",
        "Resyncs that hit a gap again before getting past the old one.",
        c.resync_failures,
    )
    counter(
        "hftd_md_book_errors",
        "Market-data updates the strategy's books rejected (each one resyncs them).",
        c.book_errors,
    )
    counter(
        "hftd_gateway_unusable",
        "Sequenced venue messages the gateway journaled but could not apply.",
        c.unusable,
    )

    rates = GaugeMetricFamily(
        "hftd_rate_per_second", "Per-second rates over the last second.", labels=["what"]
    )
    for what in ("orders", "fills", "cancels", "rejects", "md"):
        rates.add_metric([what], getattr(state.rates, what))
    out.append(rates)

    pos = GaugeMetricFamily("hftd_position_shares", "Net position per symbol.", labels=["symbol"])
    sym_pnl = GaugeMetricFamily(
        "hftd_symbol_pnl_dollars", "P&L per symbol.", labels=["symbol", "kind"]
    )
    mark = GaugeMetricFamily("hftd_mark_price_dollars", "Mark price per symbol.", labels=["symbol"])
    for p in state.positions:
        pos.add_metric([p.symbol], p.qty)
        mark.add_metric([p.symbol], p.mark)
        for kind in ("realized", "unrealized", "total"):
            sym_pnl.add_metric([p.symbol, kind], getattr(p, kind))
    out += [pos, sym_pnl, mark]
    pnl = GaugeMetricFamily("hftd_pnl_dollars", "Account P&L.", labels=["kind"])
    if state.totals is not None:
        for kind in ("realized", "unrealized", "total"):
            pnl.add_metric([kind], getattr(state.totals, kind))
    out.append(pnl)
    gauge("hftd_working_orders", "Orders working at the venue.", state.working_orders)

    # per strategy instance (its own order manager's figures, its own fills' P&L)
    s_counts = CounterMetricFamily(
        "hftd_strategy_events",
        "Per strategy: signals, orders sent, fills, rejects, orders held (mode).",
        labels=["strategy", "what"],
    )
    s_pnl = GaugeMetricFamily(
        "hftd_strategy_pnl_dollars", "Per strategy: its own P&L.", labels=["strategy", "kind"]
    )
    s_pos = GaugeMetricFamily(
        "hftd_strategy_position_shares",
        "Per strategy: its own net position per symbol.",
        labels=["strategy", "symbol"],
    )
    s_work = GaugeMetricFamily(
        "hftd_strategy_working_orders", "Per strategy: its orders not done.", labels=["strategy"]
    )
    for r in state.strategies:
        for what in ("signals", "orders", "fills", "rejects", "held"):
            s_counts.add_metric([r.name, what], getattr(r, what))
        for kind in ("realized", "unrealized", "pnl"):
            s_pnl.add_metric([r.name, "total" if kind == "pnl" else kind], getattr(r, kind))
        for sym, shares in sorted(r.positions.items()):
            s_pos.add_metric([r.name, sym], shares)
        s_work.add_metric([r.name], r.working)
    out += [s_counts, s_pnl, s_pos, s_work]

    util = GaugeMetricFamily(
        "hftd_risk_utilisation_ratio",
        "Fraction of each risk limit in use (1 = at the limit).",
        labels=["limit"],
    )
    used = GaugeMetricFamily(
        "hftd_risk_used",
        "What counts against each risk limit now, in `unit` (loss: the daily P&L, signed).",
        labels=["limit", "unit"],
    )
    limit = GaugeMetricFamily(
        "hftd_risk_limit",
        "Each risk limit in force, in `unit` (position.SYM: the symbol's own; "
        "loss: -daily_loss_limit).",
        labels=["limit", "unit"],
    )
    for bar in state.risk:
        util.add_metric([bar.key], bar.fraction)
        if bar.unit:  # "" from a gateway too old to send its figures
            unit = PROM_UNITS.get(bar.unit, bar.unit)
            used.add_metric([bar.key, unit], bar.used)
            limit.add_metric([bar.key, unit], bar.limit)
    out += [util, used, limit]
    gauge(
        "hftd_circuit_breaker_tripped",
        "1 while the gateway's circuit breaker is tripped.",
        1.0 if state.breaker_tripped else 0.0,
    )
    mode = GaugeMetricFamily(
        "hftd_trading_mode", "1 for the gateway's current trading mode.", labels=["mode"]
    )
    for m in ("active", "paused", "reducing", "halted", "unknown"):
        mode.add_metric([m], 1.0 if state.mode == m else 0.0)
    out.append(mode)
    gauge(
        "hftd_venue_session_up",
        "1 while the gateway has a venue order session.",
        1.0 if state.venue_up else 0.0,
    )
    gauge(
        "hftd_md_session_up",
        "1 while the feed's market-data session is live.",
        1.0 if state.feed_link == "live" else 0.0,
    )
    silent = GaugeMetricFamily(
        "hftd_venue_silent_seconds",
        "Seconds since the venue last sent anything on a connected session (its "
        "heartbeat comes every second; 0 without a session).",
        labels=["session"],
    )
    silent.add_metric(["orders"], state.venue_silent_s)
    silent.add_metric(["md"], state.md_silent_s)
    out.append(silent)
    gauge(
        "hftd_md_backlog_bytes",
        "Bytes of market data the venue sent that wait unread in the feed's socket (the "
        "kernel's receive queue; ~0 while the hot path keeps up, 0 without a session).",
        float(state.md_backlog_bytes),
    )
    gauge(
        "hftd_md_resync_loop",
        "1 while the strategy is in a resync loop (backing off).",
        1.0 if state.resync_loop else 0.0,
    )

    up = GaugeMetricFamily(
        "hftd_up", "1 while a daemon is ready and answers its control socket.", labels=["daemon"]
    )
    restarts = CounterMetricFamily(
        "hftd_daemon_restarts", "Restarts of each daemon.", labels=["daemon"]
    )
    limits = CounterMetricFamily(
        "hftd_listener_limits_hit",
        "Times a daemon's listener limits acted (connection refused or "
        "evicted, request too large or too slow, slow consumer dropped).",
        labels=["daemon"],
    )
    memory = GaugeMetricFamily(
        "hftd_memory_bytes",
        "Bytes charged to each daemon's memory cgroup (its systemd unit's; page cache too).",
        labels=["daemon"],
    )
    memory_limit = GaugeMetricFamily(
        "hftd_memory_limit_bytes",
        "The lowest memory limit of that cgroup (MemoryMax=, MemoryHigh=); absent: none.",
        labels=["daemon"],
    )
    cpu_wait = GaugeMetricFamily(
        "hftd_cpu_wait_ratio",
        "Share of the time (seconds per second) the daemon's most-waiting thread was "
        "runnable but waiting for a CPU (kernel schedstat), mean over "
        "monitor.alerts.cpu_wait_window_s; absent until a full window has been read.",
        labels=["daemon"],
    )
    for d in state.daemons:
        up.add_metric([d.name], 1.0 if d.up else 0.0)
        if d.cpu_wait_ms_per_s is not None:
            cpu_wait.add_metric([d.name], d.cpu_wait_ms_per_s / 1000.0)
        restarts.add_metric([d.name], d.restarts)
        limits.add_metric([d.name], d.limits_hit)
        if d.memory_bytes:
            memory.add_metric([d.name], d.memory_bytes)
        if d.memory_limit_bytes:
            memory_limit.add_metric([d.name], d.memory_limit_bytes)
    out += [up, restarts, limits, memory, memory_limit, cpu_wait]
    pressure = GaugeMetricFamily(
        "hftd_cpu_pressure_ratio",
        "Share of the time the machine had some runnable thread waiting for a CPU "
        "(the kernel's PSI, /proc/pressure/cpu 'some'), mean over "
        "monitor.alerts.cpu_wait_window_s; no sample without PSI or before a full window.",
    )
    if state.cpu_pressure is not None:
        pressure.add_metric([], state.cpu_pressure)
    out.append(pressure)

    hist = HistogramMetricFamily(
        "hftd_hop_latency_seconds",
        "Per-hop latency since the gateway started (T1 feed receive, "
        "T2 decision, T3 risk done, T4 on the wire, T5 venue ack).",
        labels=["hop"],
    )
    bounds_ns = [round(b * 1e9) for b in BUCKETS_S]
    for hop, h in hists.items():
        cum = h.cumulative(bounds_ns)
        buckets = [(_le(b), float(n)) for b, n in zip(BUCKETS_S, cum, strict=True)]
        buckets.append(("+Inf", float(h.total)))
        hist.add_metric([hop], buckets, h.sum_ns() / 1e9)
    out.append(hist)
    win = Metric(
        "hftd_hop_latency_window_seconds",
        f"Per-hop latency over the monitor's last {state.latency_window_s:g} s.",
        "summary",
    )
    for lat in state.latency:
        for q, attr in QUANTILES:
            win.add_sample(
                "hftd_hop_latency_window_seconds",
                {"hop": lat.hop, "quantile": q},
                getattr(lat, attr) / 1e6,
            )
        win.add_sample("hftd_hop_latency_window_seconds_count", {"hop": lat.hop}, lat.count)
        win.add_sample(
            "hftd_hop_latency_window_seconds_sum", {"hop": lat.hop}, lat.mean * lat.count / 1e6
        )
    out.append(win)

    firing = GaugeMetricFamily(
        "hftd_alert_firing",
        "1 for each alert the monitor has raised.",
        labels=["alert", "subject", "severity"],
    )
    for a in state.alerts:
        firing.add_metric([a.rule, a.subject, a.severity], 1.0)
    out.append(firing)
    gauge("hftd_alerts_active", "Alerts raised and not yet cleared.", len(state.alerts))
    gauge("hftd_monitor_polls", "Polls the monitor has made (a heartbeat).", state.seq)
    return out


def _le(b: float) -> str:
    return f"{b:.6g}"


class StateCollector:
    """Reads the newest state at scrape time."""

    def __init__(self, provider: StateProvider) -> None:
        self.provider = provider

    def collect(self) -> Iterable[Metric]:
        state, hists = self.provider()
        return metrics(state, hists)


def make_registry(provider: StateProvider) -> CollectorRegistry:
    """A registry of its own (nothing from the process-global default registry)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(provider))
    return reg


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
