"""The order gateway daemon (`hft@gateway`).

Its hot thread consumes the orders ring, runs risk inline (T3), writes OUCH to
the venue socket (T4), reads the venue's replies (T5 on acknowledgement), and
publishes execution reports into the executions ring. It reads the feed's
market data too, from a ring of its own (`risk_md`): risk's reference prices
(price band, market-order notional, the marks behind P&L and the loss stop)
come from the gateway's own books (`hftd.risk.market`), never from the
strategy it checks. The OUCH session is
kept here: login, heartbeats, sequence numbers, reconnect with backoff from
the last sequence number seen. See `hftd.gateway.core` for the logic.

On start it rebuilds its state from the day's journal, then reconciles with
the venue as any venue allows (`hftd.gateway.reconcile`, docs/reconciliation.md):
it logs in a few messages before the journal's end and checks the venue re-sends
exactly those. Our simulator's `Snapshot` (its control socket, only when this
system runs the simulator) is an extra check on top, never the only one. New
orders wait until reconciliation is done; a journal the venue contradicts halts
trading (nothing cancelled: those orders may not be ours) and says why in Status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from hftd.config import HftdConfig, ring_name
from hftd.feed.resync import feed_high_water, request_resync
from hftd.gateway.core import GatewayCore, journal_tail, risk_log
from hftd.gateway.ouch_adapter import OuchAdapter
from hftd.gateway.reconcile import StreamCheck
from hftd.ipc.control import request
from hftd.ipc.ring import Ring
from hftd.ipc.souplink import SoupLink
from hftd.msg.control import Command, Flatten, Halt, Pause, Resume, Snapshot
from hftd.msg.hot import PRICE_SCALE, ExecutionReport, MarketDataUpdate, OrderCommand
from hftd.msg.status import (
    BreakerStatus,
    FillStatus,
    GatewayDetail,
    MarketStatus,
    ReconcileStatus,
    WorkingOrderStatus,
)
from hftd.risk.market import MarketView
from hftd.runtime.composite import LoopHost, PartLoop, SplitHost
from hftd.runtime.daemon import StartupError
from hftd.runtime.days import gateway_journal_path
from hftd.runtime.journal import Journal, JournalCorrupt
from hftd.runtime.loglines import risk_limits_line
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import RemoteProtocolError

QUIET_ALL = (1 << 63) - 1  # above any venue sequence number


if TYPE_CHECKING:
    from hftd.hotpath.warmup import GatewayWarm

log = logging.getLogger("hftd.gateway")

BATCH = 256
TIMER_NS = 10_000_000
# The timer that late: this loop itself did not run (stopped, starved), and the
# strategy's silence over that time is not the strategy's (GatewayCore.excuse_stall).
STALL_NS = 100_000_000
STRATEGY_HEARTBEAT_NS = 100_000_000


def _plain(raw: bytes | memoryview) -> object:
    """A record as plain msgpack (what of a malformed command can still be read),
    or None."""
    try:
        return msgspec.msgpack.decode(raw)
    except msgspec.DecodeError:
        return None


class GatewayAgent:
    def __init__(self, cfg: HftdConfig, orders: Ring, execs: Ring, md: Ring) -> None:
        self.cfg = cfg
        self.orders = orders
        self.execs = execs
        self.md = md  # risk_md: the feed's records, for risk's own view of the market
        self.core = GatewayCore(cfg, time.monotonic_ns, OuchAdapter())
        self.journal: Journal | None = None  # the day's, once recovered (the core's sink)
        self.market = MarketView([s.symbol for s in cfg.symbols], time.monotonic)
        self.md_dec = msgspec.msgpack.Decoder(MarketDataUpdate)
        self._warm: GatewayWarm | None = None  # made on the first warming pass
        self.enc = msgspec.msgpack.Encoder()
        self.dec = msgspec.msgpack.Decoder(OrderCommand)
        last = execs.last_committed()
        # A new executions ring (`hftd up` continuing a day, or the first start):
        # a strategy learns the day so far from our Status (working orders and
        # positions, `adopt`), so replayed replies must not reach it as reports
        # too (an adopted live order "accepted" again is not a valid event).
        self.fresh_ring = last is None
        if last is not None:
            self.core.quiet_until = msgspec.msgpack.decode(last, type=ExecutionReport).venue_seq
        self.pending: deque[bytes] = deque()  # reports the ring could not take yet
        venue, gw = cfg.venue_address(), cfg.gateway  # [venue]: the simulator's by default
        self.session = venue.session  # the venue's SoupBinTCP session we expect ("" = any)
        # link.next_seq is set from the journal by the service before the loop starts
        self.link = SoupLink(
            "gateway",
            venue.host,
            venue.order_port,
            gw.username,
            gw.password,
            backoff_min_s=gw.reconnect_min_s,
            backoff_max_s=gw.reconnect_max_s,
            silence_s=venue.heartbeat_timeout_s,
            log=log,
        )
        self.live = threading.Event()
        self.next_timer = 0
        self.next_hb = 0
        self.buf = bytearray(1 << 18)
        self.view = memoryview(self.buf)
        self.counters = {"report_backlog": 0}
        self.replay_target = 0  # our OUCH stream's end at the snapshot cut
        self.snapshot: dict[str, Any] | None = None  # the venue's view at that cut
        # the journal's end against the venue's stream (set before the loop starts);
        # None once it agreed: no check on the hot path after that
        self.check: StreamCheck | None = None
        self.reconcile_status = ReconcileStatus(state="verifying", problems=[])
        self.reconciled = False

    # --- agent ------------------------------------------------------------------------

    def wait_fds(self) -> list[int]:
        return self.link.fds()

    def warm(self, command: OrderCommand | None = None) -> None:
        """A warming pass of this stage: `command` (the strategy's, in the composite
        layout) through a scratch core and a canned venue (hftd.hotpath.warmup)."""
        if self._warm is None:
            from hftd.hotpath.warmup import GatewayWarm  # only a composite process warms

            self._warm = GatewayWarm(self.cfg)
        self._warm.attach_journal(self.journal)
        self._warm.run(command)

    def next_timer_s(self) -> float:
        return max(0.0, (self.next_timer - time.monotonic_ns()) / 1e9)

    def _market(self) -> int:
        """Risk's own market view from the feed's records; a moved reference re-marks
        its symbol (band, notional, P&L). A replay moves nothing until it reaches the
        live edge; then every symbol is re-marked once (`remark`, checked per batch:
        no order is taken in between)."""
        md, dec, market, core = self.md, self.md_dec, self.market, self.core
        n = 0
        for _ in range(BATCH):
            raw = md.read()
            if raw is None:
                break
            n += 1
            sym = market.on_update(dec.decode(raw))
            if sym:
                core.on_reference(sym, market.reference[sym])
        if n:
            md.commit()
            if market.remark:
                self._remark()
        return n

    def _remark(self) -> None:
        """The market view caught up with the live edge: every symbol's reference."""
        market, core = self.market, self.core
        for sym in market.remark:
            core.on_reference(sym, market.reference[sym])
        log.info(
            "risk market view caught up at sequence %d: references %s",
            market.sync.last_seq,
            {s: market.reference[s] / PRICE_SCALE for s in market.remark},
        )
        market.remark.clear()

    def _orders(self) -> int:
        """Risk-check and queue what the orders ring holds (nothing until reconciled)."""
        orders, dec, core = self.orders, self.dec, self.core
        n = 0
        for _ in range(BATCH if self.reconciled else 0):
            raw = orders.read()
            if raw is None:
                break
            n += 1
            try:
                c = dec.decode(raw)
            except msgspec.DecodeError as exc:  # ValidationError included
                core.bad_command(str(exc), time.monotonic_ns(), _plain(raw))
                continue
            core.on_command(c, time.monotonic_ns())
        if n:
            orders.commit()
        return n

    def pump(self) -> int:
        """New orders to the venue at once: what a composite hot path runs after each
        market-data message (`hftd.runtime.composite`); the venue's replies and the
        timers wait for the loop's next pass."""
        n = self._orders()
        core = self.core
        if n or core.to_venue or core.reports:  # ring's, or a burst `take` queued
            self._flush()
        return n

    def take(self, cmd: OrderCommand, send: bool) -> bool:
        """The composite layout's hand-off: a strategy's order command as the object
        it made, without the orders ring's msgpack and shared memory (the same
        thread, so no one else reads it), sent at once if `send` (else by the
        `pump` that ends the strategy's unit of work: one send for a burst).
        False, and the command goes through the ring, while the ring holds
        commands not yet taken (they go first) or before reconciliation (orders
        wait in the ring for it)."""
        if not self.reconciled or self.orders.readable():
            return False
        self.core.on_command(cmd, time.monotonic_ns())
        if send:
            self._flush()
        return True

    def do_work(self) -> int:
        work = 0
        core = self.core
        if core.sent_log:  # orders `pump` sent (composite): their lines before any reply's
            core.after_send()
        link = self.link
        link.connect_if_due()
        if link.up:
            work += self._read_venue()
        work += self._orders()  # orders first: risk's market view can wait a pass
        work += self._market()
        now = time.monotonic_ns()
        if now >= self.next_timer:
            if self.next_timer and now - self.next_timer > STALL_NS:
                core.excuse_stall(now - self.next_timer, now)  # this loop did not run
            self.next_timer = now + TIMER_NS
            core.on_timer(now)
            if now >= self.next_hb:
                self.next_hb = now + STRATEGY_HEARTBEAT_NS
                core.reports.append(core.heartbeat())
            link.keepalive()
            if not link.up:
                core.venue_up = False
        self._flush()
        core.after_send()
        return work

    def _flush(self) -> None:
        """Send what the core queued (T4 stamped first), queue its reports. The orders'
        log records wait for `do_work` (`after_send`): in the composite layout `pump`
        sends each order as its strategy decides it, and the strategy's signal line,
        made once the order has left, comes first in the log."""
        core = self.core
        journal = self.journal
        if journal is not None:
            journal.commit()  # the pass's records, in one write, before anything acts on them
        if core.to_venue:
            data = b"".join(soup.unsequenced(p) for p in core.to_venue)
            core.to_venue.clear()
            # T4 is the hand-off, stamped before send(): on loopback the venue can read
            # the bytes, and answer, before send() returns here. Stamped after it, T4
            # was later than the venue's receipt and T1->T4 could exceed the order's
            # wire-to-wire time (tests/integration/test_wire_stamps.py).
            core.stamp_sent(time.monotonic_ns())
            if self.link.up:
                self.link.send(data)
        if core.reports:
            for r in core.reports:
                self.pending.append(self.enc.encode(core.stamp(r)))
            core.reports.clear()
        execs, pending = self.execs, self.pending
        while pending and execs.try_write(pending[0]):
            pending.popleft()
        self.counters["report_backlog"] = len(pending)

    # --- venue session ------------------------------------------------------------------

    def _drop(self, why: str) -> None:
        self.core.venue_up = False
        self.link.drop(why)

    def _read_venue(self) -> int:
        link = self.link
        n = link.recv_into(self.buf)
        if n <= 0:
            if n == 0:
                self.core.venue_up = False
                return 1
            return 0
        now = time.monotonic_ns()
        work = 0
        core = self.core
        try:
            for ev in link.session.iter_events(self.view[:n]):
                if type(ev) is soup.SequencedData:
                    # journaled, then applied; one the core cannot use is counted there
                    # (`unusable`), never a reason to drop the session: a re-login
                    # would resume after it, and it would be lost for good
                    work += 1
                    link.next_seq = ev.sequence + 1
                    check = self.check
                    if check is not None and not check.on_message(ev.sequence, ev.payload):
                        continue  # re-read to compare with the journal: applied already
                    core.journal_venue(ev.sequence, ev.payload)
                    core.on_venue_payload(ev.payload, ev.sequence, now)
                    if (
                        not self.reconciled
                        and self.snapshot is not None
                        and core.venue_seq == self.replay_target
                        and self._reconcile_due()
                    ):
                        # At the snapshot's cut exactly: a read that goes past it would
                        # apply fills the snapshot does not have (a false mismatch).
                        self._reconcile()
                elif isinstance(ev, soup.LoginAccepted):
                    if self.session and ev.session != self.session:
                        self._drop(
                            f"venue session {ev.session!r}, venue.session says {self.session!r}"
                        )
                        return work + 1
                    if self.check is not None and not self.check.done:
                        self.check.on_login(ev.session, ev.sequence, link.requested)
                    elif ev.sequence > link.requested:
                        log.error(
                            "asked for sequence %d, venue starts at %d: replies lost",
                            link.requested,
                            ev.sequence,
                        )
                    elif ev.sequence < link.requested:
                        log.error(
                            "asked for sequence %d, the venue's stream ends at %d: we have "
                            "seen messages it no longer has (the venue lost its day?)",
                            link.requested,
                            ev.sequence - 1,
                        )
                    core.journal_login(ev.session, ev.sequence)
                    link.next_seq = ev.sequence
                    link.logged_in()
                    core.venue_up = True
                    log.info(
                        "logged in to venue session %s at sequence %d", ev.session, ev.sequence
                    )
                elif type(ev) is soup.ServerHeartbeat:
                    if self.check is not None and not self.check.done:
                        self.check.on_idle(link.next_seq)  # nothing more to re-send
                elif isinstance(ev, soup.LoginRejected):
                    self._drop(f"login rejected ({ev.reason})")
                    return work + 1
                elif isinstance(ev, soup.EndOfSession):
                    self._drop("end of session")
                    return work + 1
        except RemoteProtocolError as exc:
            self._drop(f"protocol error: {exc}")
            return work + 1
        if not self.reconciled and core.venue_up and self._reconcile_due():
            self._reconcile()
        return work

    def _reconcile_due(self) -> bool:
        check = self.check
        if check is not None and check.state == "mismatch":
            return True  # no use waiting for the snapshot's cut
        return (check is None or check.done) and self.core.venue_seq >= self.replay_target

    def _reconcile(self) -> None:
        """The journal's end agrees with the venue's stream, and (with our simulator)
        our state at its snapshot cut (no new orders sent yet) matches the snapshot."""
        self.reconciled = True
        core = self.core
        check = self.check
        status: dict[str, Any] = (
            check.summary() if check is not None else {"state": "agreed", "problems": []}
        )
        if check is not None and check.problems:
            for p in check.problems:
                log.error("reconciliation mismatch: the journal against the venue: %s", p)
            log.error(
                "the journal (up to sequence %d) is not this venue's record: not trading on "
                "it. Working orders are left alone (their UserRefNums may name other orders "
                "at the venue); start a new trading day, or move the journal aside so the "
                "gateway rebuilds from the venue's stream, then resume",
                check.last_seq,
            )
            core.halt("the journal does not match the venue's stream", cancel=False)
        elif check is not None and check.last_seq:
            log.info(
                "reconciled with the venue's stream: messages %d..%d re-sent by the venue "
                "agree with the journal",
                check.first,
                check.last_seq,
            )
        elif check is not None:
            log.info("reconciled with the venue's stream: nothing journaled, all of it applied")
        if self.snapshot is not None:
            problems = core.reconcile(self.snapshot)
            status["snapshot"] = problems or "agreed"
            if problems:
                for p in problems:
                    log.error("reconciliation mismatch: %s", p)
                if not status["problems"]:  # halted above already (and not cancelling)
                    core.halt(f"reconciliation found {len(problems)} mismatches")
            else:
                log.info(
                    "reconciled with the venue: %d open orders, %d fills agree",
                    len(self.snapshot["open_orders"]),
                    len(self.snapshot["fills"]),
                )
        self.reconcile_status = msgspec.convert(status, ReconcileStatus)
        if check is not None and check.state == "agreed":
            self.check = None  # what follows is new: nothing to compare
        self.live.set()


def gateway_detail(
    core: GatewayCore,
    market: MarketView,
    reconcile: ReconcileStatus,
    report_backlog: int,
    reconnects: int,
    venue_heard_ms_ago: int | None = None,
) -> GatewayDetail:
    """The gateway's Status detail (the strategy's recovery reads its ``working``
    and ``positions``). Built on the control thread while the hot loop trades:
    whatever walks the core's dicts walks a copy."""
    c = core.counters
    breaker = core.breaker
    mono = time.monotonic_ns()  # the core's clock
    wall = time.time_ns() - mono  # ... to wall time
    # now, not the last order's time: a quiet second shows 0 orders in it, not the last burst
    figures = core.risk.figures(mono)
    return GatewayDetail(
        mode=core.mode,
        mode_reason=core.mode_reason,
        breaker=BreakerStatus(tripped=breaker.tripped, reason=breaker.reason, trips=breaker.trips),
        venue_up=core.venue_up,
        venue_heard_ms_ago=venue_heard_ms_ago,
        strategy_up=core.strategy_up,
        venue_seq=core.venue_seq,
        next_user_ref=core.next_user_ref,
        last_unusable=core.last_unusable,
        reconcile=reconcile,
        market=msgspec.convert(market.status(), MarketStatus),
        venue_session=core.venue_session,
        **c.copy(),  # every counter is a field (test_every_gateway_counter_is_in_the_detail)
        report_backlog=report_backlog,
        reconnects=reconnects,
        working=[
            WorkingOrderStatus(
                cl_id=o.cl_id,
                user_ref=o.user_ref,
                symbol=o.symbol,
                side=o.side,
                leaves=o.leaves,
                price=o.price,
                order_ref=o.order_ref,
                tif=o.tif,
                state=o.state,
                strategy=o.strategy,
            )
            for o in core.orders.copy().values()  # the hot loop adds orders meanwhile
        ],
        positions=core.book.snapshot(),
        risk={k: f.fraction for k, f in figures.items()},
        risk_figures=figures,
        latency_hdr=core.latency.histograms(),
        latency_rows_lost=core.latency.lost,
        recent_fills=[
            FillStatus(
                time_ns=t + wall,
                symbol=sym,
                side=side,
                qty=q,
                price=p,
                tick_to_trade_us=ttt / 1000,
                pnl_per_share=pps,
            )
            for t, sym, side, q, p, ttt, pps in list(core.recent_fills)
        ],
    )


class GatewayService:
    def __init__(self, cfg: HftdConfig, host: LoopHost | None = None) -> None:
        self.cfg = cfg
        self.host = host if host is not None else SplitHost(cfg)
        self.agent: GatewayAgent | None = None
        self.loop: PartLoop | None = None

    async def _venue_snapshot(self) -> dict[str, Any] | None:
        """Our simulator's record of our orders and fills (None if it cannot say).

        Only when this system runs the simulator: a real venue has no such side
        channel, and the stream check (`hftd.gateway.reconcile`) does not need it."""
        if not self.cfg.simulator_runs():
            return None
        path = self.cfg.system.resolved_run_dir() / "exchange.sock"
        try:
            with trio.fail_after(2):
                reply = await request(path, Snapshot(self.cfg.gateway.username))
        except (OSError, trio.TooSlowError):
            log.warning("no snapshot from the simulator: reconciling with its stream only")
            return None
        snap: dict[str, Any] = reply.result
        return snap if reply.ok else None

    @staticmethod
    def _recover(agent: GatewayAgent, path: Path) -> tuple[Journal, list[bytes], int]:
        """Open the day's journal, rebuild orders and positions from it, and prepare the
        check of its last messages against the venue's stream (`agent.check`)."""
        gw = agent.cfg.gateway
        journal, records = Journal.recover(path, gw.journal_fsync, gw.journal_batch_s)
        agent.core.journal = agent.journal = journal
        journal.deferred = True  # group commit: `GatewayAgent._flush` commits each pass
        if agent.fresh_ring:
            agent.core.quiet_until = QUIET_ALL
        last_seq = agent.core.replay(records, time.monotonic_ns())
        if gw.start_paused and not records:  # a new day (a restart keeps its mode)
            agent.core.start_paused()
        if agent.fresh_ring:
            agent.core.quiet_until = last_seq  # every later reply is reported
        first = max(1, last_seq + 1 - gw.reconcile_overlap)
        agent.check = StreamCheck(
            journal_tail(records, first), last_seq, agent.core.venue_session, gw.reconcile_overlap
        )
        return journal, records, last_seq

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # The current trading day's journal, resolved once: the day never changes
        # under a running daemon. A continued day (`hftd up` after a clean stop)
        # replays it like a crash does, with new rings: nothing here depends on
        # ring positions surviving (without them, replayed reports reach the
        # strategy again, as stale ones it only takes positions from).
        path = gateway_journal_path(self.cfg)
        rc = self.cfg.rings
        orders = Ring.open(ring_name(self.cfg, "orders"), rc.orders_capacity)
        execs = Ring.open(ring_name(self.cfg, "executions"), rc.executions_capacity)
        md = Ring.open(ring_name(self.cfg, "risk_md"), rc.risk_md_capacity)
        agent = self.agent = GatewayAgent(self.cfg, orders, execs, md)
        risk_log.info("%s", risk_limits_line(self.cfg.risk))
        if md.tail != 0:  # not a fresh ring: the books of whoever read it are gone
            agent.market.sync.rejoin()
        else:  # read from its start: what the feed published before now is history
            agent.market.sync.catch_up_to(await feed_high_water(self.cfg, log))
        t0 = time.monotonic()
        # In a thread: a long day's replay must not keep SIGTERM waiting.
        try:
            journal, records, last_seq = await trio.to_thread.run_sync(
                self._recover, agent, path, abandon_on_cancel=True
            )
        except JournalCorrupt as exc:  # restarting cannot mend it: refuse, say what to do
            raise StartupError(
                f"cannot replay the journal: {exc} (it is kept as the day's record: never "
                "delete it; ops/runbook-journal-damage.md says what to do)",
                refused=True,
            ) from exc
        assert agent.check is not None
        if agent.core.mode != "active":
            log.warning(
                "journal: the gateway was left %s (%s): it stays so; `hftctl resume` to "
                "trade again",
                agent.core.mode,
                agent.core.mode_reason,
            )
        agent.link.next_seq = agent.check.first
        log.info(
            "journal: %d records replayed in %.0f ms from %s (venue messages up to %d); "
            "logging in from sequence %d",
            len(records),
            (time.monotonic() - t0) * 1000,
            path,
            last_seq,
            agent.link.next_seq,
        )
        agent.snapshot = await self._venue_snapshot()
        if agent.snapshot is not None:
            agent.replay_target = int(agent.snapshot["next_sequence"]) - 1
        loop = self.loop = self.host.loop(
            "gateway", agent, {"orders": orders, "risk_md": md}, rc.wait_for("gateway")
        )
        loop.start()
        try:
            await trio.to_thread.run_sync(agent.live.wait, abandon_on_cancel=True)
            log.info(
                "venue session live; %d orders and %d symbols recovered from the replay",
                len(agent.core.orders),
                len(agent.core.book.symbols()),
            )
            task_status.started()
            sync = agent.market.sync
            while loop.alive:
                await trio.sleep(0.05)
                agent.core.latency.fold()
                # take_resync in the hot thread, which owns the sync state (as the
                # strategy does); a resync loop's backoff is waited out here
                if (
                    sync.want_resync
                    and time.monotonic() >= sync.resync_at
                    and await loop.call(sync.take_resync)
                ):
                    log.error("risk market view: %s: requesting a resync", sync.last_loss)
                    await request_resync(self.cfg, log)
                if journal.sync_due():  # no thread hop (and its wake-ups) when idle
                    await trio.to_thread.run_sync(journal.maybe_sync)
            raise RuntimeError(f"gateway hot loop died: {loop.error!r}")
        finally:
            loop.stop()
            agent.link.drop("stopping")
            orders.close()
            execs.close()
            md.close()
            journal.close()

    def status_detail(self) -> GatewayDetail | None:
        a = self.agent
        if a is None:
            return None
        return gateway_detail(
            a.core,
            a.market,
            a.reconcile_status,
            a.counters["report_backlog"],
            a.link.reconnects,
            a.link.heard_ms_ago(),
        )

    async def handle(self, cmd: Command) -> Any:
        if self.loop is None or self.agent is None:
            raise ValueError("the gateway is still starting")
        core = self.agent.core
        if isinstance(cmd, Pause):
            return await self.loop.call(core.pause)
        if isinstance(cmd, Resume):
            return await self.loop.call(core.resume)
        if isinstance(cmd, Halt):
            return await self.loop.call(lambda: core.halt(cmd.reason))
        if isinstance(cmd, Flatten):
            return await self.loop.call(core.flatten)
        raise ValueError(f"gateway does not handle {type(cmd).__name__}")

    def live_config(self) -> tuple[str, ...]:
        return (
            "risk",
            "breaker",
            "gateway.order_timeout_s",
            "gateway.strategy_timeout_s",
            "gateway.reconnect_min_s",
            "gateway.reconnect_max_s",
        )

    def apply_config(self, cfg: HftdConfig) -> None:
        if cfg.risk != self.cfg.risk:
            risk_log.info("now %s", risk_limits_line(cfg.risk))
        self.cfg = cfg
        if self.loop is not None and self.agent is not None:
            agent = self.agent

            def apply() -> None:
                agent.cfg = cfg
                agent.core.cfg = cfg
                agent.core.set_risk_limits(cfg.risk)
                agent.core.breaker.cfg = cfg.breaker
                agent.link.backoff_min_s = cfg.gateway.reconnect_min_s
                agent.link.backoff_max_s = cfg.gateway.reconnect_max_s

            self.loop.post(apply)
