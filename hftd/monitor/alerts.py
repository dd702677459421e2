"""Alert rules and the book of raised alerts. Pure: facts in, alert events out.

Every poll the model (`hftd.monitor.model`) distils the system into `Facts`;
`evaluate` turns them into the conditions that hold now, one per (rule,
subject); `AlertBook.update` raises the new ones and clears the ones that no
longer hold, with wall-clock timestamps. A rule that needs a condition to
last (a daemon silent for `down_after_s`, a venue session lost for
`link_down_after_s`) gets the duration from the facts, so the book stays a
plain set difference.

Rules (severity; raised while):

- daemon_down (critical): control socket silent >= down_after_s, or the
  supervisor says restarting/failed;
- daemon_restarted (warning): a restart (supervisor count, or a new pid)
  less than restart_hold_s ago (its message says when the daemon's memory was
  near its cgroup's limit just before: a likely OOM kill);
- memory (warning): a daemon's memory cgroup (its systemd unit's) at or past
  memory_near_limit of its limit (MemoryMax=, MemoryHigh=): one alert per
  cgroup (hftd/monitor/cgroup.py);
- latency (warning): p99 of `latency_hop` over the latency window >
  latency_p99_us (with at least latency_min_samples orders);
- feed_gaps (warning): feed sequence gaps in the last 60 s > max_gaps_per_min;
- ring_drops (critical): md ring drops + orders refused on a full orders
  ring in the last 60 s > max_drops_per_min (the message says how many on
  which ring: a slow strategy and a gateway behind are different problems);
- risk_utilisation (warning): a risk limit (position per symbol, gross,
  order rate, working orders) at or past the threshold fraction;
- pnl_stop (critical): loss >= pnl_stop_fraction of the daily loss limit;
- breaker (critical): the gateway's circuit breaker is tripped;
- trading_mode (warning; halted: critical): the gateway is paused,
  reducing or halted;
- resync_loop (critical): the strategy's last resync_loop_after resyncs in a
  row hit a gap again before getting past the old one (its books cannot be
  rebuilt: it backs off and retries, and trades on no book meanwhile);
- link_down (critical): venue session, md session or strategy heartbeat
  lost for link_down_after_s;
- listener_limits (warning): a daemon's listeners (control socket, web
  ports, venue ports) had to act on a limit (connection refused or idle one
  closed at the cap, request too large, request or answer too slow, slow
  consumer dropped) more than max_limit_hits_per_min times in the last 60 s;
- risk_rejects (warning): the gateway's risk refused more than
  max_risk_rejects_per_min orders in the last 60 s (a limit every order breaks
  trades nothing while the mode stays active and the breaker, at its default,
  does not trip);
- book_errors (warning): the strategy's books rejected more than
  max_book_errors_per_min market-data updates in the last 60 s (an execute,
  cancel, delete or replace of an order they do not hold, a size of zero or
  less, ...): each one made them wrong, and the strategy resynced them from
  sequence 1 (if the same update comes back every time: resync_loop);
- venue_unusable (warning): the gateway received more than
  max_unusable_per_min sequenced venue messages in the last 60 s that it
  journaled but could not apply (not OUCH 5.0, a type it does not handle, about
  an order or a fill it does not know): never skipped, but its orders,
  positions or P&L may now differ from the venue's;
- risk_view (critical): the gateway's own market view (hftd/risk/market.py)
  out of sync for link_down_after_s: its price band, market-order notional
  and marks stay at the last good reference until the feed's resync rebuilds
  its books;
- venue_silent (critical): a venue session is connected (the gateway's order
  session: subject "orders"; the feed's market data: "md") but the venue has
  sent nothing on it, not even its heartbeat (one a second when idle), for
  venue_silent_after_s: a venue that stopped answering. The link is declared
  down only after the venue's heartbeat timeout (15 s), and link_down after
  that; meanwhile orders get no acknowledgement (the gateway cancels them after
  gateway.order_timeout_s) and the market data is not moving;
- md_backlog (warning): more than md_backlog_bytes of market data wait unread
  in the feed's socket, and have for md_backlog_after_s: the loop that reads it
  (the composite hot path: feed, strategy and gateway in one thread; or the split
  feed) is slower than the venue's flow. Nothing is lost (the venue's TCP stream
  holds it), but the strategy decides on data that arrived long ago, and neither
  the latency stamps (T1 is taken when the loop reads) nor the breaker's
  md_stale_s (records keep coming) see it. Also while a long replay from
  sequence 1 (a resync) is read as fast as it can be; the strategy acts on none
  of it;
- cpu_wait (warning): a daemon's most-waiting thread was runnable but waiting
  for a CPU more than cpu_wait_ms_per_s milliseconds per second, on average over
  cpu_wait_window_s (the kernel's schedstat, hftd/monitor/schedstat.py): the
  daemon is starved of CPU (competing processes, more runnable threads than
  CPUs). The latency stamps cannot see it (T1 is stamped once the hot thread
  runs). One alert per process (the composite hot path is one), named after its
  first daemon; not for a daemon run at cpu_policy "idle" (the monitor), which
  waits by design. Also, subject "machine": the machine's CPU pressure (the
  kernel's PSI, /proc/pressure/cpu "some": the share of the window in which some
  runnable thread waited for a CPU) past cpu_pressure_max. The scheduler favours
  a thread that sleeps between messages, so under a load of busy processes each
  hftd thread's own wait grows less than the machine's pressure shows.
"""

from __future__ import annotations

from collections import deque

import msgspec

from hftd.config import AlertRulesConfig
from hftd.monitor.cgroup import CgroupMemory
from hftd.monitor.state import HOP_LABELS, Alert, HopLatency

SEVERITY_ORDER = {"critical": 0, "warning": 1}
PRESSURE_CLEAR = 0.8  # cpu_wait:machine, once raised, holds down to this x cpu_pressure_max


class DaemonFacts(msgspec.Struct, kw_only=True):
    name: str
    state: str  # supervisor's view, or "running" from the daemon itself
    answering: bool  # answered within down_after_s
    silent_s: float  # since its last answer (inf: never answered)
    ever_seen: bool  # answered at least once since the monitor started
    restarted_ago_s: float | None = None  # since the last restart the monitor saw
    last_error: str = ""
    recovery_ms: float = 0.0
    memory: CgroupMemory | None = None  # its memory cgroup (None: not read, not answering)
    pid: int = 0  # its process, where its threads' wait was read (0: not read)
    cpu_wait_ms_per_s: float | None = None  # most-waiting thread, mean over the window
    cpu_wait_tid: int = 0  # that thread
    cpu_idle_policy: bool = False  # run at SCHED_IDLE: waiting is what it is for


class Facts(msgspec.Struct, kw_only=True):
    """What the rules look at (computed by the model from the daemons' replies)."""

    monitor_age_s: float
    daemons: list[DaemonFacts] = msgspec.field(default_factory=list)
    latency: HopLatency | None = None  # the configured hop, over the latency window
    latency_window_s: float = 60.0
    gaps_last_min: int = 0
    drops_last_min: int = 0  # the two below together
    md_drops_last_min: int = 0  # feed: updates dropped on the full md ring, last 60 s
    orders_refused_last_min: int = 0  # strategy: commands refused on the full orders ring
    risk: dict[str, float] = msgspec.field(default_factory=dict)
    risk_figures: dict[str, str] = msgspec.field(default_factory=dict)  # key -> "used/limit"
    pnl_total: float = 0.0  # dollars
    mode: str = ""  # "" = the gateway does not report one
    breaker_tripped: bool = False
    breaker_reason: str = ""
    venue_down_s: float = 0.0  # gateway answering but without a venue session this long
    strategy_down_s: float = 0.0  # gateway answering but no strategy heartbeat this long
    md_down_s: float = 0.0  # feed answering but its md session not live this long
    feed_link: str = ""
    resync_failures: int = 0  # strategy: resyncs in a row that hit a gap again
    resync_hole: int = 0  # the sequence number those resyncs did not get past
    resync_backoff_s: float = 0.0  # how long the strategy waits before the next one
    resync_loss: str = ""  # why sync was last lost
    limit_hits: dict[str, int] = msgspec.field(default_factory=dict)  # daemon -> last 60 s
    limit_where: dict[str, list[str]] = msgspec.field(default_factory=dict)  # daemon -> listeners
    book_errors_last_min: int = 0  # strategy: md updates its books rejected, last 60 s
    book_error: str = ""  # the last one: its sequence number and why
    unusable_last_min: int = 0  # gateway: sequenced venue messages not applied, last 60 s
    risk_rejects_last_min: int = 0  # gateway: orders its risk refused, last 60 s
    last_unusable: str = ""  # the last one: its sequence number and why
    risk_view_down_s: float = 0.0  # gateway answering, its market view out of sync this long
    risk_view_loss: str = ""  # why it lost sync
    venue_silent_s: float = 0.0  # gateway: order session connected, nothing from the venue
    md_silent_s: float = 0.0  # feed: md session connected, nothing from the venue
    awaiting_venue: int = 0  # gateway: orders and cancels sent, not answered yet
    md_backlog_bytes: int = 0  # feed: market data unread in its socket
    md_backlog_s: float = 0.0  # ... more than md_backlog_bytes of it, this long
    cpu_pressure: float | None = None  # the machine's, over cpu_wait_window_s (None: no PSI)
    cpu_pressure_raised: bool = False  # cpu_wait:machine is up: it clears below 80% of the max


class Condition(msgspec.Struct, kw_only=True):
    rule: str
    subject: str
    severity: str
    message: str
    value: float = 0.0
    threshold: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.subject}"


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _figure(f: Facts, key: str) -> str:
    """ " (used/limit)" when the gateway said ("" from one that does not)."""
    fig = f.risk_figures.get(key, "")
    return f" ({fig})" if fig else ""


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def memory_conditions(cfg: AlertRulesConfig, daemons: list[DaemonFacts]) -> list[Condition]:
    """`memory`: a cgroup at or past `memory_near_limit` of its limit, once per cgroup
    (the daemons of `hftd up` share one; under systemd each unit has its own), named
    after its first daemon."""
    out: list[Condition] = []
    done: set[str] = set()
    for d in daemons:
        m = d.memory
        if m is None or not m.limit or m.cgroup in done or m.fraction < cfg.memory_near_limit:
            continue
        done.add(m.cgroup)
        sharing = [x.name for x in daemons if x.memory is not None and x.memory.cgroup == m.cgroup]
        who = d.name if len(sharing) == 1 else f"{', '.join(sharing)} (one cgroup)"
        it = "it" if len(sharing) == 1 else "one of them"
        if m.limit_file == "memory.high":
            then = "the kernel throttles it above that limit"
        else:
            then = f"the kernel's OOM killer kills {it} at that limit"
        ooms = f"; {m.oom_kills} OOM kills in it so far" if m.oom_kills else ""
        out.append(
            Condition(
                rule="memory",
                subject=d.name,
                severity="warning",
                message=f"{who}: {_mib(m.used)} in use, {m.fraction * 100:.0f}% of its memory "
                f"limit {_mib(m.limit)} ({m.limit_file} of cgroup {m.cgroup}): {then}{ooms}",
                value=m.fraction,
                threshold=cfg.memory_near_limit,
            )
        )
    return out


def cpu_wait_conditions(
    cfg: AlertRulesConfig,
    daemons: list[DaemonFacts],
    pressure: float | None = None,
    raised: bool = False,
) -> list[Condition]:
    """`cpu_wait`: the machine's CPU pressure past `cpu_pressure_max` over the window
    (subject "machine", naming hftd's most-waiting processes); and a process whose
    most-waiting thread waited for a CPU more than `cpu_wait_ms_per_s` per second over
    the window, once per process (the composite hot path answers as feed, strategy and
    gateway), named after its first daemon. The machine's alert, once raised, clears
    only below PRESSURE_CLEAR of the max: a window sliding off a load hovers near it."""
    out: list[Condition] = []
    if pressure is not None and pressure > cfg.cpu_pressure_max * (
        PRESSURE_CLEAR if raised else 1.0
    ):
        out.append(_pressure_condition(cfg, daemons, pressure))
    done: set[int] = set()
    for d in daemons:
        ms = d.cpu_wait_ms_per_s
        if ms is None or not d.pid or d.pid in done or d.cpu_idle_policy:
            continue
        done.add(d.pid)
        if ms <= cfg.cpu_wait_ms_per_s:
            continue
        sharing = [x.name for x in daemons if x.pid == d.pid]
        who = d.name if len(sharing) == 1 else f"{', '.join(sharing)} (one process)"
        thread = "its main thread" if d.cpu_wait_tid == d.pid else f"its thread {d.cpu_wait_tid}"
        out.append(
            Condition(
                rule="cpu_wait",
                subject=d.name,
                severity="warning",
                message=f"{who} starved of CPU: {thread} waited {ms:,.0f} ms a second for "
                f"a CPU over the last {cfg.cpu_wait_window_s:g} s (more than "
                f"{cfg.cpu_wait_ms_per_s:,.0f}): more runnable threads than CPUs, "
                "every message waits before it is read",
                value=ms,
                threshold=cfg.cpu_wait_ms_per_s,
            )
        )
    return out


def _pressure_condition(
    cfg: AlertRulesConfig, daemons: list[DaemonFacts], pressure: float
) -> Condition:
    waits: dict[int, tuple[str, float]] = {}  # pid -> (its first daemon, ms/s)
    for d in daemons:  # not a daemon at SCHED_IDLE (the monitor): it waits by design
        if d.cpu_wait_ms_per_s is not None and d.pid and not d.cpu_idle_policy:
            waits.setdefault(d.pid, (d.name, d.cpu_wait_ms_per_s))
    top = sorted(waits.values(), key=lambda w: -w[1])[:3]
    ours = ", ".join(f"{name} {ms:,.0f} ms/s" for name, ms in top)
    return Condition(
        rule="cpu_wait",
        subject="machine",
        severity="warning",
        message=f"the machine is short of CPU: some runnable thread waited for a CPU "
        f"{_pct(pressure)} of the last {cfg.cpu_wait_window_s:g} s (more than "
        f"{_pct(cfg.cpu_pressure_max)}; /proc/pressure/cpu): more runnable threads than "
        "CPUs; hftd's threads wait too unless they have cores of their own"
        + (f" (its most-waiting processes: {ours})" if ours else ""),
        value=pressure,
        threshold=cfg.cpu_pressure_max,
    )


def _ring_drops_where(f: Facts) -> str:
    """Which ring, and what it means: the operator's next step differs."""
    parts = []
    if f.md_drops_last_min:
        parts.append(
            f"{f.md_drops_last_min} market-data updates on the md ring (feed -> strategy: "
            "the strategy reads slower than the feed writes; it resyncs its books)"
        )
    if f.orders_refused_last_min:
        parts.append(
            f"{f.orders_refused_last_min} commands refused on the orders ring (strategy -> "
            "gateway: the gateway is behind; orders, cancels, replaces and heartbeats not "
            "sent: a refused cancel leaves its order working)"
        )
    return "; ".join(parts) or "which ring: not reported"


def evaluate(cfg: AlertRulesConfig, f: Facts) -> list[Condition]:
    """The conditions that hold now (disabled rules left out)."""
    out: list[Condition] = memory_conditions(cfg, f.daemons)
    out += cpu_wait_conditions(cfg, f.daemons, f.cpu_pressure, f.cpu_pressure_raised)
    for d in f.daemons:
        never = not d.ever_seen and f.monitor_age_s < cfg.start_grace_s
        if d.state in ("restarting", "backoff", "waiting", "failed"):
            why = f" ({d.last_error})" if d.last_error else ""
            out.append(
                Condition(
                    rule="daemon_down",
                    subject=d.name,
                    severity="critical",
                    message=f"{d.name} {d.state}{why}",
                )
            )
        elif not d.answering and not never and d.silent_s >= cfg.down_after_s:
            silent = "never answered" if not d.ever_seen else f"silent for {d.silent_s:.1f} s"
            out.append(
                Condition(
                    rule="daemon_down",
                    subject=d.name,
                    severity="critical",
                    message=f"{d.name} down: control socket {silent}",
                    value=d.silent_s,
                    threshold=cfg.down_after_s,
                )
            )
        if d.restarted_ago_s is not None and d.restarted_ago_s < cfg.restart_hold_s:
            why = f" ({d.last_error})" if d.last_error else ""
            back = f", back in {d.recovery_ms:.0f} ms" if d.recovery_ms else ""
            out.append(
                Condition(
                    rule="daemon_restarted",
                    subject=d.name,
                    severity="warning",
                    message=f"{d.name} restarted {d.restarted_ago_s:.0f} s ago{why}{back}",
                    value=d.restarted_ago_s,
                )
            )
    lat = f.latency
    if lat is not None and lat.count >= cfg.latency_min_samples and lat.p99 > cfg.latency_p99_us:
        out.append(
            Condition(
                rule="latency",
                subject=lat.hop,
                severity="warning",
                message=f"{HOP_LABELS.get(lat.hop, lat.hop)} p99 {lat.p99:,.0f} us over the last "
                f"{f.latency_window_s:.0f} s > {cfg.latency_p99_us:,.0f} us ({lat.count} orders)",
                value=lat.p99,
                threshold=cfg.latency_p99_us,
            )
        )
    if f.gaps_last_min > cfg.max_gaps_per_min:
        out.append(
            Condition(
                rule="feed_gaps",
                subject="feed",
                severity="warning",
                message=f"{f.gaps_last_min} feed sequence gaps in the last minute "
                f"(max {cfg.max_gaps_per_min})",
                value=f.gaps_last_min,
                threshold=cfg.max_gaps_per_min,
            )
        )
    if f.drops_last_min > cfg.max_drops_per_min:
        out.append(
            Condition(
                rule="ring_drops",
                subject="rings",
                severity="critical",
                message=f"{f.drops_last_min} messages dropped on full rings in the "
                f"last minute (max {cfg.max_drops_per_min}): {_ring_drops_where(f)}",
                value=f.drops_last_min,
                threshold=cfg.max_drops_per_min,
            )
        )
    for key, frac in sorted(f.risk.items()):
        if key.endswith("_worst") or "_worst." in key:
            continue
        if key == "loss":
            if frac >= cfg.pnl_stop_fraction:
                out.append(
                    Condition(
                        rule="pnl_stop",
                        subject="daily_loss",
                        severity="critical",
                        message=f"P&L {f.pnl_total:,.2f} is {_pct(frac)} of the daily loss limit"
                        + _figure(f, key),
                        value=frac,
                        threshold=cfg.pnl_stop_fraction,
                    )
                )
        elif frac >= cfg.risk_utilisation:
            out.append(
                Condition(
                    rule="risk_utilisation",
                    subject=key,
                    severity="warning",
                    message=f"risk {key} at {_pct(frac)} of its limit" + _figure(f, key),
                    value=frac,
                    threshold=cfg.risk_utilisation,
                )
            )
    if f.breaker_tripped:
        out.append(
            Condition(
                rule="breaker",
                subject="gateway",
                severity="critical",
                message="circuit breaker tripped: " + (f.breaker_reason or "no reason given"),
            )
        )
    if f.mode and f.mode != "active":
        out.append(
            Condition(
                rule="trading_mode",
                subject="gateway",
                severity="critical" if f.mode == "halted" else "warning",
                message=f"trading {f.mode}",
            )
        )
    for subject, secs, what in (
        ("venue", f.venue_down_s, "gateway has no venue order session"),
        ("strategy", f.strategy_down_s, "gateway sees no strategy heartbeat"),
        ("md", f.md_down_s, f"feed market-data session {f.feed_link or 'down'}"),
    ):
        if secs >= cfg.link_down_after_s:
            out.append(
                Condition(
                    rule="link_down",
                    subject=subject,
                    severity="critical",
                    message=f"{what} for {secs:.0f} s",
                    value=secs,
                    threshold=cfg.link_down_after_s,
                )
            )
    for name, hits in sorted(f.limit_hits.items()):
        if hits > cfg.max_limit_hits_per_min:
            where = ", ".join(f.limit_where.get(name, [])) or "its listeners"
            out.append(
                Condition(
                    rule="listener_limits",
                    subject=name,
                    severity="warning",
                    message=f"{name}: limits of {where} acted {hits} times in the "
                    f"last minute (max {cfg.max_limit_hits_per_min}): see its log",
                    value=hits,
                    threshold=cfg.max_limit_hits_per_min,
                )
            )
    if f.resync_failures >= cfg.resync_loop_after:
        out.append(
            Condition(
                rule="resync_loop",
                subject="strategy",
                severity="critical",
                message=f"resync loop: {f.resync_failures} resyncs in a row did "
                f"not get past ITCH sequence {f.resync_hole} ({f.resync_loss}); "
                f"next try in {f.resync_backoff_s:.1f} s",
                value=f.resync_failures,
                threshold=cfg.resync_loop_after,
            )
        )
    if f.book_errors_last_min > cfg.max_book_errors_per_min:
        out.append(
            Condition(
                rule="book_errors",
                subject="strategy",
                severity="warning",
                message=f"{f.book_errors_last_min} market-data updates rejected by "
                f"the strategy's books in the last minute (max "
                f"{cfg.max_book_errors_per_min}), each one forced a resync; last: "
                f"{f.book_error or 'not reported'}",
                value=f.book_errors_last_min,
                threshold=cfg.max_book_errors_per_min,
            )
        )
    if f.unusable_last_min > cfg.max_unusable_per_min:
        out.append(
            Condition(
                rule="venue_unusable",
                subject="gateway",
                severity="warning",
                message=f"{f.unusable_last_min} sequenced venue messages the gateway "
                f"journaled but could not apply in the last minute (max "
                f"{cfg.max_unusable_per_min}); last: "
                f"{f.last_unusable or 'not reported'}",
                value=f.unusable_last_min,
                threshold=cfg.max_unusable_per_min,
            )
        )
    if f.risk_rejects_last_min > cfg.max_risk_rejects_per_min:
        out.append(
            Condition(
                rule="risk_rejects",
                subject="gateway",
                severity="warning",
                message=f"{f.risk_rejects_last_min} orders refused by risk in the last minute "
                f"(max {cfg.max_risk_rejects_per_min}): a limit every order breaks (hftctl "
                "status: RISK lines) trades nothing while the mode stays active",
                value=f.risk_rejects_last_min,
                threshold=cfg.max_risk_rejects_per_min,
            )
        )
    if f.risk_view_down_s >= cfg.link_down_after_s:
        out.append(
            Condition(
                rule="risk_view",
                subject="gateway",
                severity="critical",
                message=f"risk's market view out of sync for {f.risk_view_down_s:.0f} s "
                f"({f.risk_view_loss or 'waiting for the stream'}): price band and marks "
                "use the last good reference",
                value=f.risk_view_down_s,
                threshold=cfg.link_down_after_s,
            )
        )
    for subject, secs, what in (
        ("orders", f.venue_silent_s, "order session"),
        ("md", f.md_silent_s, "market-data session"),
    ):
        if secs >= cfg.venue_silent_after_s:
            waiting = (
                f"; {f.awaiting_venue} orders or cancels await its answer"
                if subject == "orders" and f.awaiting_venue
                else ""
            )
            out.append(
                Condition(
                    rule="venue_silent",
                    subject=subject,
                    severity="critical",
                    message=f"venue silent on the {what} for {secs:.0f} s, not even a "
                    f"heartbeat: not answering{waiting}",
                    value=secs,
                    threshold=cfg.venue_silent_after_s,
                )
            )
    if f.md_backlog_bytes > cfg.md_backlog_bytes and f.md_backlog_s >= cfg.md_backlog_after_s:
        out.append(
            Condition(
                rule="md_backlog",
                subject="feed",
                severity="warning",
                message=f"{_kib(f.md_backlog_bytes)} of market data unread in the feed's "
                f"socket (more than {_kib(cfg.md_backlog_bytes)} for {f.md_backlog_s:.0f} s): "
                "read slower than the venue sends it, the strategy acts on late data",
                value=f.md_backlog_bytes,
                threshold=cfg.md_backlog_bytes,
            )
        )
    return [c for c in out if c.rule not in cfg.disabled]


class AlertBook:
    """Active alerts and a log of raises and clears (newest first)."""

    def __init__(self, log_size: int = 100) -> None:
        self.active: dict[str, Alert] = {}
        self.log: deque[Alert] = deque(maxlen=log_size)

    def update(self, conditions: list[Condition], now: float) -> list[Alert]:
        """Raise new conditions, refresh held ones, clear the rest; return the changes."""
        changes: list[Alert] = []
        seen: set[str] = set()
        for c in conditions:
            key = c.key
            seen.add(key)
            old = self.active.get(key)
            if old is None:
                alert = Alert(
                    key=key,
                    rule=c.rule,
                    subject=c.subject,
                    severity=c.severity,
                    message=c.message,
                    raised_at=now,
                    value=c.value,
                    threshold=c.threshold,
                )
                self.log.appendleft(alert)
                changes.append(alert)
            else:
                alert = msgspec.structs.replace(
                    old,
                    message=c.message,
                    severity=c.severity,
                    value=c.value,
                    threshold=c.threshold,
                )
            self.active[key] = alert
        for key in [k for k in self.active if k not in seen]:
            cleared = msgspec.structs.replace(self.active.pop(key), cleared_at=now)
            self.log.appendleft(cleared)
            changes.append(cleared)
        return changes

    def current(self) -> list[Alert]:
        """Active alerts, critical first, then oldest first."""
        return sorted(
            self.active.values(),
            key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), a.raised_at, a.key),
        )
