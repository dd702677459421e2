"""The state model: the daemons' Status replies in, a `SystemState` out. Pure.

The monitor daemon (and the console, when no monitor answers) polls every
daemon's control socket and hands the latest replies to `Aggregator.ingest`
as a `Poll`. The aggregator keeps what needs memory:

- reset-aware running totals of every counter (a restarted daemon starts its
  counters at 0; the totals carry on), from which per-second rates and
  "in the last minute" counts are differences;
- what each new cumulative HDR histogram of the gateway added (the difference
  to the one before), for `latency_window_s`, and their running sum: the
  percentiles over the window. Differences hold only the counters the orders
  of that second touched, so the window's memory is bounded by the order rate,
  not by how many counters the day's histograms reached (one cumulative
  histogram per hop is kept: `histograms()`);
- one `Point` per second for `window_s` (the charts);
- per daemon: when it last answered, its pid and restart count, to see it
  go down and come back;
- the `AlertBook`.

Times come in with the poll (CLOCK_MONOTONIC for durations, wall clock for
display), so tests drive it with any clock they like.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec

from hftd.config import PRICE_SCALE, HftdConfig
from hftd.gateway.lifecycle import CANCEL_PENDING, PENDING
from hftd.monitor.alerts import AlertBook, DaemonFacts, Facts, evaluate
from hftd.monitor.cgroup import CgroupMemory
from hftd.monitor.schedstat import PressureRate, ThreadWaits, WaitRate
from hftd.monitor.state import (
    HOPS,
    Counters,
    DaemonHealth,
    HopLatency,
    Point,
    PositionRow,
    Rates,
    SystemState,
    Trade,
)
from hftd.msg.control import DaemonStatus, StatusInfo
from hftd.msg.status import (
    DETAILS,
    BookSnapshot,
    Detail,
    FeedDetail,
    GatewayDetail,
    StrategyDetail,
    decode_detail,
    next_step,
    risk_bars,
    strategy_rows,
)
from hftd.runtime.hdr import SparseHistogram
from hftd.runtime.latency import summarize

D = TypeVar("D", bound=Detail)

COUNTER_WINDOW_S = 65.0  # running totals kept this long ("last minute" counts)
RATE_SPAN_S = 1.0  # rates over about this much time
# Windowed percentiles of five hops (sparse histograms subtracted and walked):
# latency figures are refreshed once a second, not every poll.
LATENCY_EVERY_S = 1.0
# A working order in these states waits for the venue's answer.
AWAITING_VENUE = frozenset({PENDING, CANCEL_PENDING})


def _fold(into: dict[int, int], h: SparseHistogram, sign: int) -> None:
    """Add (sign 1) or take away (-1) `h`'s counters to or from `into`; zeros leave."""
    for i, c in zip(h.indexes, h.counts, strict=True):
        n = into.get(i, 0) + sign * c
        if n:
            into[i] = n
        else:
            del into[i]


def _silent_s(heard_ms_ago: int | None) -> float:
    """How long a venue session has heard nothing, in seconds (0: no session)."""
    return heard_ms_ago / 1000 if heard_ms_ago is not None else 0.0


def _money(value: int | float | None) -> float:
    """A fixed-point amount from a Status as dollars; None (not known yet, e.g.
    no mark for a position recovered before any trade) reads as 0."""
    return float(value) / PRICE_SCALE if value is not None else 0.0


class Reading(msgspec.Struct, kw_only=True):
    """The latest a poller knows about one daemon."""

    name: str
    info: StatusInfo | None = None  # its latest answer (may be old: see ok_at)
    detail: Detail | None = None  # that answer's detail, typed (`typed_detail`)
    ok_at: float = 0.0  # monotonic time of that answer (0 = never answered)
    error: str = ""  # why the latest attempt failed ("" = it answered)
    memory: CgroupMemory | None = None  # its memory cgroup, read with that answer
    cpu_wait: ThreadWaits | None = None  # its threads' run-queue wait, read with that answer


def typed_detail(name: str, info: StatusInfo) -> Detail | None:
    """`info.detail` as daemon `name`'s Struct (hftd.msg.status); None while it
    starts, or for a daemon whose detail is not typed (the monitor reads only the
    gateway's, the feed's and the strategy's). Raises `StatusDetailError`, naming
    the field, for a detail its Struct does not describe."""
    kind = DETAILS.get(name)
    return None if kind is None else decode_detail(kind, info.detail, name)


class Poll(msgspec.Struct, kw_only=True):
    mono: float  # time.monotonic()
    wall: float  # time.time()
    readings: dict[str, Reading]
    supervisor: list[DaemonStatus] | None = None  # None: no embedded supervisor answers
    # the machine's CPU pressure so far, "some" (us), read at `mono` (None: no PSI, not read)
    cpu_pressure_us: int | None = None


class _Totals:
    """Reset-aware running totals of one daemon's counters, with a short history."""

    def __init__(self) -> None:
        self.last_raw: dict[str, int] = {}
        self.totals: dict[str, int] = {}
        self.series: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, t: float, raw: dict[str, int]) -> None:
        for k, v in raw.items():
            prev = self.last_raw.get(k)
            step = v if prev is None or v < prev else v - prev
            if prev is None:
                step = 0  # the first sight of a counter is a baseline, not an event
            self.totals[k] = self.totals.get(k, 0) + step
            self.last_raw[k] = v
        self.series.append((t, dict(self.totals)))
        while self.series and t - self.series[0][0] > COUNTER_WINDOW_S:
            self.series.popleft()

    def _at_or_before(self, t: float) -> tuple[float, dict[str, int]] | None:
        best = None
        for entry in self.series:
            if entry[0] <= t:
                best = entry
            else:
                break
        return best

    def rate(self, key: str, span: float = RATE_SPAN_S) -> float:
        if len(self.series) < 2:
            return 0.0
        t1, now = self.series[-1]
        then = self._at_or_before(t1 - span) or self.series[0]
        dt = t1 - then[0]
        if dt <= 0.05:
            return 0.0
        return (now.get(key, 0) - then[1].get(key, 0)) / dt

    def within(self, key: str, span: float) -> int:
        """Events counted in the last `span` seconds (all we have, if less)."""
        if not self.series:
            return 0
        t1, now = self.series[-1]
        then = self._at_or_before(t1 - span) or self.series[0]
        return now.get(key, 0) - then[1].get(key, 0)


class _DaemonTrack:
    def __init__(self) -> None:
        self.ever_seen = False
        self.pid = 0
        self.restarts = -1  # supervisor's count at the last poll (-1: not seen)
        self.pid_restarts = 0  # pid changes seen without a supervisor
        self.restarted_at: float | None = None
        self.last_error = ""
        self.recovery_ms = 0.0
        self.memory: CgroupMemory | None = None  # the latest reading (of the latest process)
        self.memory_note = ""  # what that reading said about the last restart


def memory_note(before: CgroupMemory | None, now: CgroupMemory | None, near: float) -> str:
    """Why a restart may have been the kernel's OOM killer, from the daemon's memory
    readings before it (the old process's last) and after: its cgroup counted an OOM
    kill (a cgroup that outlives the process: `hftd up` in a limited one), or its
    last reading was near the limit (systemd's per-unit cgroup goes with the process,
    its count with it). "" when neither says so."""
    if before is None or not before.limit:
        return ""
    mib = f"{before.used / 2**20:.0f}/{before.limit / 2**20:.0f} MiB"
    if now is not None and now.cgroup == before.cgroup and now.oom_kills > before.oom_kills:
        return f"OOM-killed at its memory limit ({before.limit_file}, {mib} when last read)"
    if before.fraction >= near:
        return (
            f"its memory was at {before.fraction * 100:.0f}% of its limit ({mib}, "
            f"{before.limit_file}) when last read: OOM-killed?"
        )
    return ""


def _num(d: dict[str, Any], key: str) -> int:
    v = d.get(key, 0)
    return int(v) if isinstance(v, int | float) else 0


def _limits_hit(detail: dict[str, Any]) -> tuple[int, list[str]]:
    """A Status detail's ``listeners``: the limits hit in all, and which listeners hit any."""
    listeners = detail.get("listeners")
    if not isinstance(listeners, dict):
        return 0, []
    total, where = 0, []
    for name, counts in sorted(listeners.items()):
        n = _num(counts, "limits_hit") if isinstance(counts, dict) else 0
        total += n
        if n:
            where.append(str(name))
    return total, where


class Aggregator:
    """Poll after poll -> SystemState (with alerts raised and cleared)."""

    def __init__(self, cfg: HftdConfig, source: str = "monitor") -> None:
        self.cfg = cfg
        self.source = source
        self.started: float | None = None
        self.seq = 0
        self.book = AlertBook()
        self.tracks: dict[str, _DaemonTrack] = {}
        self.totals: dict[str, _Totals] = {}
        self.limit_totals: dict[str, _Totals] = {}  # daemon -> its listeners' limits hit
        self.hdr_wire: dict[str, Any] = {}
        self.hdr_now: dict[str, SparseHistogram] = {h: SparseHistogram() for h in HOPS}
        # Per hop: (reply time, what that histogram added), oldest first, and the
        # sum of those within latency_window_s ({index: count}).
        self.hdr_added: dict[str, deque[tuple[float, SparseHistogram]]] = {h: deque() for h in HOPS}
        self.hdr_window: dict[str, dict[int, int]] = {h: {} for h in HOPS}
        self.history: deque[Point] = deque(maxlen=max(1, int(cfg.monitor.window_s)))
        self.lat_at: float | None = None
        self.lat_window: list[HopLatency] = [summarize(h, SparseHistogram()) for h in HOPS]
        self.lat_total: list[HopLatency] = list(self.lat_window)
        self.lat_second = (0.0, 0.0)  # p50, p99 of the alert hop over the last second, us
        self.last_second = 0
        self.since_false: dict[str, float] = {}  # link flag -> when it was first seen down
        self.last_ok_at: dict[str, float] = {}
        self.cpu_waits: dict[int, WaitRate] = {}  # pid -> its threads' readings (cpu_wait)
        self.cpu_rate: dict[int, tuple[float, int]] = {}  # pid -> (ms/s, tid), this poll
        self.pressure = PressureRate()  # the machine's CPU pressure readings (cpu_wait)
        self.cpu_pressure: float | None = None  # its share over the window, this poll
        self.state = SystemState(source=source)

    def reconfigure(self, cfg: HftdConfig) -> None:
        """New thresholds (live reload); windows keep their data."""
        self.cfg = cfg

    # --- ingestion ------------------------------------------------------------------

    def ingest(self, poll: Poll, latency: bool = True) -> SystemState:
        """The state after this poll. `latency=False` leaves the latency refresh to
        the caller (`latency_steps`), which the monitor daemon runs in small steps."""
        if self.started is None:
            self.started = poll.mono
        self.seq += 1
        mcfg = self.cfg.monitor
        acfg = mcfg.alerts
        sup = {d.name: d for d in poll.supervisor} if poll.supervisor is not None else None

        self._cpu_waits(poll)
        daemons: list[DaemonHealth] = []
        dfacts: list[DaemonFacts] = []
        for name, r in poll.readings.items():
            h, df = self._daemon(name, r, sup.get(name) if sup is not None else None, poll)
            daemons.append(h)
            dfacts.append(df)

        answering = {d.name: d.answering for d in dfacts}
        gw = self._detail(poll, "gateway", GatewayDetail)
        feed = self._detail(poll, "feed", FeedDetail)
        strat = self._detail(poll, "strategy", StrategyDetail)

        if gw is not None:
            self._count(
                "gateway",
                poll,
                {
                    "sent": gw.sent,
                    "fills": gw.fills,
                    "cancels": gw.cancels,
                    "risk_rejects": gw.risk_rejects,
                    "venue_rejects": gw.venue_rejects,
                    "reconnects": gw.reconnects,
                    "unusable": gw.unusable,
                },
            )
        if feed is not None:
            self._count(
                "feed",
                poll,
                {
                    "messages": feed.messages,
                    "gaps": feed.gaps,
                    "drops": feed.drops,
                    "reconnects": feed.reconnects,
                },
            )
        if strat is not None:
            self._count(
                "strategy",
                poll,
                {
                    "orders_refused": strat.orders_refused,
                    "resyncs": strat.resyncs,
                    "resync_failures": strat.resync_failures,
                    "book_errors": strat.book_errors,
                },
            )
        limit_hits, limit_where = self._limits(poll)
        if latency and self.latency_due(poll):
            for _ in self.latency_steps(poll):
                pass

        g = self.totals.get("gateway")
        fd = self.totals.get("feed")
        st = self.totals.get("strategy")
        gw_on = answering.get("gateway", False)
        feed_on = answering.get("feed", False)
        strat_on = answering.get("strategy", False)
        rates = Rates(
            orders=g.rate("sent") if g and gw_on else 0.0,
            fills=g.rate("fills") if g and gw_on else 0.0,
            cancels=g.rate("cancels") if g and gw_on else 0.0,
            rejects=(g.rate("risk_rejects") + g.rate("venue_rejects")) if g and gw_on else 0.0,
            md=fd.rate("messages") if fd and feed_on else 0.0,
        )
        counters = Counters(
            orders=gw.sent if gw else 0,
            fills=gw.fills if gw else 0,
            cancels=gw.cancels if gw else 0,
            risk_rejects=gw.risk_rejects if gw else 0,
            venue_rejects=gw.venue_rejects if gw else 0,
            md_messages=feed.messages if feed else 0,
            gaps=feed.gaps if feed else 0,
            drops=feed.drops if feed else 0,
            orders_refused=strat.orders_refused if strat else 0,
            resyncs=strat.resyncs if strat else 0,
            resync_failures=strat.resync_failures if strat else 0,
            book_errors=strat.book_errors if strat else 0,
            unusable=gw.unusable if gw else 0,
            reconnects=(feed.reconnects if feed else 0) + (gw.reconnects if gw else 0),
        )
        positions, totals = self._positions(gw.positions) if gw else ([], None)
        risk_raw = dict(gw.risk) if gw else {}
        bars = risk_bars(gw) if gw else []
        mode = gw.mode if gw else ""

        window, total_lat = self.lat_window, self.lat_total
        hop_win = next((x for x in window if x.hop == acfg.latency_hop), None)

        venue_up = gw.venue_up if gw else False
        strategy_up = gw.strategy_up if gw else False
        feed_link = feed.link if feed else ""
        # unread in the feed's socket; a feed not answering says nothing (daemon_down)
        backlog = (feed.unread_bytes or 0) if feed and feed_on else 0
        md_drops = fd.within("drops", 60.0) if fd else 0
        orders_refused = st.within("orders_refused", 60.0) if st else 0
        facts = Facts(
            monitor_age_s=poll.mono - self.started,
            daemons=dfacts,
            latency=hop_win,
            latency_window_s=mcfg.latency_window_s,
            gaps_last_min=fd.within("gaps", 60.0) if fd else 0,
            drops_last_min=md_drops + orders_refused,
            md_drops_last_min=md_drops,
            orders_refused_last_min=orders_refused,
            risk=risk_raw,
            risk_figures={b.key: b.figure for b in bars if b.figure},
            pnl_total=totals.total if totals else 0.0,
            mode=mode,
            breaker_tripped=gw.breaker.tripped if gw else False,
            breaker_reason=gw.breaker.reason if gw else "",
            venue_down_s=self._down_for(
                "venue", gw_on and gw is not None and not venue_up, poll.mono
            ),
            strategy_down_s=self._down_for(
                "strategy", gw_on and gw is not None and not strategy_up, poll.mono
            ),
            md_down_s=self._down_for(
                "md", feed_on and feed is not None and feed_link != "live", poll.mono
            ),
            resync_failures=strat.resync_failures_in_a_row if strat and strat_on else 0,
            resync_hole=strat.resync_hole if strat else 0,
            resync_backoff_s=strat.resync_backoff_s if strat else 0.0,
            resync_loss=strat.last_loss if strat else "",
            feed_link=feed_link,
            limit_hits=limit_hits,
            limit_where=limit_where,
            book_errors_last_min=st.within("book_errors", 60.0) if st else 0,
            book_error=strat.last_book_error if strat else "",
            unusable_last_min=g.within("unusable", 60.0) if g else 0,
            risk_rejects_last_min=g.within("risk_rejects", 60.0) if g else 0,
            last_unusable=gw.last_unusable if gw else "",
            risk_view_down_s=self._down_for(
                "risk_view", gw_on and gw is not None and not gw.market.synced, poll.mono
            ),
            risk_view_loss=gw.market.last_loss if gw else "",
            venue_silent_s=_silent_s(gw.venue_heard_ms_ago) if gw and gw_on else 0.0,
            md_silent_s=_silent_s(feed.venue_heard_ms_ago) if feed and feed_on else 0.0,
            awaiting_venue=sum(o.state in AWAITING_VENUE for o in gw.working) if gw else 0,
            md_backlog_bytes=backlog,
            md_backlog_s=self._down_for("md_backlog", backlog > acfg.md_backlog_bytes, poll.mono),
            cpu_pressure=self.cpu_pressure,
            cpu_pressure_raised="cpu_wait:machine" in self.book.active,
        )
        self.book.update(evaluate(acfg, facts), poll.wall)
        self._history(poll, rates, totals)

        self.state = SystemState(
            time=poll.wall,
            seq=self.seq,
            source=self.source,
            mode=mode or "unknown",
            breaker_tripped=facts.breaker_tripped,
            breaker_reason=facts.breaker_reason,
            venue_up=venue_up,
            strategy_up=strategy_up,
            feed_link=feed_link,
            venue_silent_s=facts.venue_silent_s,
            md_silent_s=facts.md_silent_s,
            md_backlog_bytes=backlog,
            cpu_pressure=self.cpu_pressure,
            working_orders=len(gw.working) if gw else 0,
            next_step=next_step(gw) if gw and gw_on else "",
            resync_loop=strat is not None and strat.resync_loop and strat_on,
            counters=counters,
            rates=rates,
            latency_hop=acfg.latency_hop,
            latency_window_s=mcfg.latency_window_s,
            latency=window,
            latency_total=total_lat,
            positions=positions,
            totals=totals,
            risk=bars,
            trades=self._trades(gw) if gw else [],
            strategies=strategy_rows(strat) if strat and strat_on else [],
            daemons=daemons,
            alerts=self.book.current(),
            alert_log=list(self.book.log)[:50],
            history=list(self.history),
        )
        return self.state

    def histograms(self) -> dict[str, SparseHistogram]:
        """Each hop since the gateway started (for Prometheus buckets)."""
        return dict(self.hdr_now)

    # --- pieces ---------------------------------------------------------------------

    @staticmethod
    def _detail(poll: Poll, name: str, kind: type[D]) -> D | None:
        """Daemon `name`'s latest typed detail (None: none yet)."""
        r = poll.readings.get(name)
        return r.detail if r is not None and isinstance(r.detail, kind) else None

    def _daemon(
        self, name: str, r: Reading, sup: DaemonStatus | None, poll: Poll
    ) -> tuple[DaemonHealth, DaemonFacts]:
        acfg = self.cfg.monitor.alerts
        tr = self.tracks.setdefault(name, _DaemonTrack())
        silent = poll.mono - r.ok_at if r.ok_at else math.inf
        answering = r.ok_at > 0 and silent < acfg.down_after_s
        if r.ok_at:
            tr.ever_seen = True
        info = r.info
        if sup is not None:
            # A restart is a rise in the supervisor's count; the count found at the
            # first look is a baseline (those restarts happened before we watched).
            if tr.restarts >= 0 and sup.restarts > tr.restarts:
                tr.restarted_at = poll.mono
            tr.restarts = sup.restarts
            tr.last_error = sup.last_error
            tr.recovery_ms = sup.last_recovery_ms
            state = sup.state
            pid, uptime, restarts, err = sup.pid, sup.uptime_s, sup.restarts, sup.last_error
        else:
            if info is not None and r.ok_at and r.ok_at != self.last_ok_at.get(name):
                if tr.pid and info.pid != tr.pid:
                    tr.pid_restarts += 1
                    tr.restarted_at = poll.mono
                    tr.last_error = "new pid (restarted)"
                tr.pid = info.pid
            self.last_ok_at[name] = r.ok_at
            state = "down" if info is None else "ready" if info.state == "running" else info.state
            pid = info.pid if info is not None else 0
            uptime = (info.uptime_s + (poll.mono - r.ok_at)) if info is not None else 0.0
            restarts, err = tr.pid_restarts, r.error
        if tr.restarted_at == poll.mono:  # a restart seen now: was it the memory limit?
            tr.memory_note = memory_note(tr.memory, r.memory, acfg.memory_near_limit)
        if r.memory is not None:
            tr.memory = r.memory
        if not answering and state in ("ready", "down", "running"):
            state = "not answering" if tr.ever_seen else "down"
        # its process's wait for a CPU (the composite hot parts share one process);
        # a daemon not answering says nothing (daemon_down)
        cpu_pid = info.pid if info is not None and answering else 0
        cpu = self.cpu_rate.get(cpu_pid) if cpu_pid else None
        dcfg = self.cfg.daemons.get(name)
        health = DaemonHealth(
            name=name,
            state=state,
            up=answering and state == "ready",
            pid=pid if answering or sup is not None else 0,
            uptime_s=uptime if answering else 0.0,
            restarts=restarts,
            last_error=err or (r.error if not answering else ""),
            limits_hit=_limits_hit(info.detail)[0] if info is not None else 0,
            memory_bytes=r.memory.used if r.memory is not None and answering else 0,
            memory_limit_bytes=r.memory.limit if r.memory is not None and answering else 0,
            cpu_wait_ms_per_s=round(cpu[0], 1) if cpu is not None else None,
        )
        facts = DaemonFacts(
            name=name,
            state=state,
            answering=answering,
            silent_s=silent,
            ever_seen=tr.ever_seen,
            restarted_ago_s=(poll.mono - tr.restarted_at) if tr.restarted_at is not None else None,
            last_error="; ".join(e for e in (tr.last_error, tr.memory_note) if e),
            recovery_ms=tr.recovery_ms,
            memory=r.memory if answering else None,
            pid=cpu_pid,
            cpu_wait_ms_per_s=cpu[0] if cpu is not None else None,
            cpu_wait_tid=cpu[1] if cpu is not None else 0,
            cpu_idle_policy=dcfg is not None and dcfg.cpu_policy == "idle",
        )
        return health, facts

    def _cpu_waits(self, poll: Poll) -> None:
        """Each process's newest threads' reading into its `WaitRate` (the hot parts
        of the composite layout are one process: three readings of one pid, the
        newest counts), and the rates over the window (`self.cpu_rate`). A process
        no reading names any more is forgotten (a restart is a new pid)."""
        window = self.cfg.monitor.alerts.cpu_wait_window_s
        newest: dict[int, ThreadWaits] = {}
        for r in poll.readings.values():
            w = r.cpu_wait
            if w is not None and (w.pid not in newest or w.at > newest[w.pid].at):
                newest[w.pid] = w
        for pid in self.cpu_waits.keys() - newest.keys():
            del self.cpu_waits[pid]
        self.cpu_rate = {}
        for pid, w in newest.items():
            tracker = self.cpu_waits.setdefault(pid, WaitRate())
            tracker.add(w, window)
            rate = tracker.rate(window)
            if rate is not None:
                self.cpu_rate[pid] = rate
        if poll.cpu_pressure_us is None:  # no reading: no figure (not the last one, frozen)
            self.pressure.clear()
        else:
            self.pressure.add(poll.mono, poll.cpu_pressure_us, window)
        self.cpu_pressure = self.pressure.share(window)

    def _count(self, name: str, poll: Poll, counts: dict[str, int]) -> None:
        r = poll.readings.get(name)
        if r is None or not r.ok_at:
            return
        tot = self.totals.setdefault(name, _Totals())
        if tot.series and tot.series[-1][0] >= r.ok_at:
            return  # nothing new from this daemon since the last poll
        tot.add(r.ok_at, counts)

    def _limits(self, poll: Poll) -> tuple[dict[str, int], dict[str, list[str]]]:
        """Per daemon: its listeners' limits hit in the last minute, and which listeners."""
        hits: dict[str, int] = {}
        where: dict[str, list[str]] = {}
        for name, r in poll.readings.items():
            if r.info is None or not r.ok_at:
                continue
            total, listeners = _limits_hit(r.info.detail)
            tot = self.limit_totals.setdefault(name, _Totals())
            if not tot.series or tot.series[-1][0] < r.ok_at:  # a new answer
                tot.add(r.ok_at, {"limits_hit": total})
            hits[name] = tot.within("limits_hit", 60.0)
            where[name] = listeners
        return hits, where

    def latency_due(self, poll: Poll) -> bool:
        return self.lat_at is None or poll.mono - self.lat_at >= LATENCY_EVERY_S

    def latency_steps(self, poll: Poll) -> Iterator[None]:
        """Fold the gateway's newest histograms in and recompute the latency figures,
        one hop at a time: each `yield` ends a step of well under a millisecond.

        Why steps: on a box with fewer cores than daemons, a CPU-bound stretch of
        several ms, even at the lowest priority, delays a hot daemon woken onto
        that CPU until the kernel next reschedules (up to a timer tick). Between
        steps the monitor daemon makes a system call, where the kernel does.
        The new figures replace the old ones only when all steps are done."""
        self.lat_at = poll.mono
        gw = self._detail(poll, "gateway", GatewayDetail)
        r = poll.readings.get("gateway")
        if gw is not None and r is not None:
            hists = gw.latency_hdr
            t = r.ok_at
            for hop in HOPS:
                wire = hists.get(hop)
                if wire is None or wire == self.hdr_wire.get(hop):
                    continue
                try:
                    h = SparseHistogram.from_wire(wire)
                except ValueError:
                    continue
                self.hdr_wire[hop] = wire
                added, window_sum = self.hdr_added[hop], self.hdr_window[hop]
                new = h.added_since(self.hdr_now[hop])
                if new is None:  # the gateway restarted: its histograms began again
                    added.clear()
                    window_sum.clear()
                    new = h
                self.hdr_now[hop] = h
                if new.total:
                    added.append((t, new))
                    _fold(window_sum, new, 1)
                yield
        span = self.cfg.monitor.latency_window_s
        window, total = [], []
        for hop in HOPS:
            window.append(summarize(hop, self._window_hist(hop, poll.mono - span)))
            total.append(summarize(hop, self.hdr_now[hop]))
            yield
        recent = self._recent_hist(self.cfg.monitor.alerts.latency_hop, poll.mono - 1.0)
        p50, p99 = recent.percentiles_ns([50.0, 99.0])
        self.lat_window, self.lat_total = window, total
        self.lat_second = (p50 / 1000.0, p99 / 1000.0)

    def _window_hist(self, hop: str, since: float) -> SparseHistogram:
        """Recorded after `since` (the latency window's start): what the histograms
        that came after it added; those before it leave the running sum."""
        added, window_sum = self.hdr_added[hop], self.hdr_window[hop]
        while added and added[0][0] <= since:
            _fold(window_sum, added.popleft()[1], -1)
        return SparseHistogram.from_wire(window_sum)  # (C-level passes: sorted, map)

    def _recent_hist(self, hop: str, since: float) -> SparseHistogram:
        """Recorded after `since`, a moment ago (within the window)."""
        acc: dict[int, int] = {}
        for t, h in reversed(self.hdr_added[hop]):
            if t <= since:
                break
            _fold(acc, h, 1)
        return SparseHistogram.from_wire(acc)

    def _down_for(self, flag: str, down: bool, now: float) -> float:
        if not down:
            self.since_false.pop(flag, None)
            return 0.0
        return now - self.since_false.setdefault(flag, now)

    @staticmethod
    def _positions(snap: BookSnapshot) -> tuple[list[PositionRow], PositionRow]:
        rows = []
        for p in snap.positions:
            realized = _money(p.realized)
            unrealized = _money(p.unrealized)
            rows.append(
                PositionRow(
                    symbol=p.symbol,
                    qty=p.qty,
                    avg_price=_money(p.avg_price),
                    mark=_money(p.mark),  # None: no market price seen yet
                    unrealized=unrealized,
                    realized=realized,
                    total=realized + unrealized,
                )
            )
        rows.sort(key=lambda r: r.symbol)
        total = PositionRow(
            symbol="TOTAL",
            qty=snap.net_shares,
            avg_price=0.0,
            mark=0.0,
            unrealized=_money(snap.unrealized),
            realized=_money(snap.realized),
            total=_money(snap.total),
        )
        return rows, total

    @staticmethod
    def _trades(gw: GatewayDetail, limit: int = 20) -> list[Trade]:
        out = []
        for f in reversed(gw.recent_fills):
            out.append(
                Trade(
                    time=f.time_ns / 1e9,
                    symbol=f.symbol,
                    side=f.side,
                    qty=f.qty,
                    price=f.price / PRICE_SCALE,
                    tick_to_trade_us=f.tick_to_trade_us,
                    pnl_per_share=None
                    if f.pnl_per_share is None
                    else f.pnl_per_share / PRICE_SCALE,
                )
            )
            if len(out) >= limit:
                break
        return out

    def _history(self, poll: Poll, rates: Rates, totals: PositionRow | None) -> None:
        second = int(poll.wall)
        if second == self.last_second:
            return
        self.last_second = second
        self.history.append(
            Point(
                t=float(second),
                orders=round(rates.orders, 3),
                fills=round(rates.fills, 3),
                rejects=round(rates.rejects, 3),
                md=round(rates.md, 3),
                p50=self.lat_second[0],
                p99=self.lat_second[1],
                pnl=round(totals.total, 4) if totals else 0.0,
            )
        )
