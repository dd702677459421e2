"""The strategy daemon (`hft@strategy`).

Its hot thread consumes the md ring (feed -> strategy) and the executions
ring (gateway -> strategy), drives the pure `StrategyEngine`, and writes
order commands into the orders ring (strategy -> gateway).

Books need the whole ITCH stream (`hftd.book.sync.MdSync` decides what
is in sync). A fresh ring starts at sequence 1, or at a feed heartbeat saying
the venue has sequenced nothing yet (an empty stream before the open is
normal); any other start (a restarted strategy, or a gap: a dropped update
makes the book inconsistent) asks the feed to resync, and so does an update
the books reject (the engine counts it: Status `book_errors`, the monitor's
alert of that name): the feed publishes MD_RESET and replays from 1, and
updates before the reset are skipped. A resync that hits a gap again before
getting past the old one is a resync loop: reported in Status (`resync_loop`)
and retried with a growing backoff, never at the feed's reconnect rate.
READY=1 once in sync.

The replay is history: up to the sequence the MD_RESET names (what the feed
had published before it), or, for a strategy joining mid-day on a ring nobody
read, up to what the feed had published when it started (its Status), the
books are rebuilt and no strategy sees an update (Status `catching_up`); the
heartbeat to the gateway says "not in sync" meanwhile. Strategies act again
from the live edge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from hftd.book.sync import APPLY, LIVE, LOST, QUIET, REBUILD, MdSync
from hftd.config import HftdConfig, ring_name
from hftd.feed.resync import feed_high_water, request_resync
from hftd.ipc.control import request
from hftd.ipc.ring import Ring
from hftd.msg.control import Command, Depth, DepthInfo, Status, StatusInfo
from hftd.msg.hot import MD_RESET, MD_SEQUENCE, ExecutionReport, MarketDataUpdate, OrderCommand
from hftd.msg.status import (
    GatewayDetail,
    StrategyDetail,
    StrategyInstanceStatus,
    WorkingOrderStatus,
    decode_detail,
)
from hftd.runtime.composite import LoopHost, PartLoop, SplitHost
from hftd.runtime.days import claim_strategy_run, current_day
from hftd.runtime.journal import Journal
from hftd.runtime.loglines import strategy_line
from hftd.strategy.engine import StrategyEngine
from hftd.strategy.record import InputRecorder, record_name

if TYPE_CHECKING:
    from hftd.hotpath.warmup import StrategyWarm

log = logging.getLogger("hftd.strategy")

BATCH = 256
TIMER_NS = 10_000_000


class StrategyAgent:
    def __init__(self, cfg: HftdConfig, md: Ring, execs: Ring, orders: Ring, run: int = 1) -> None:
        self.cfg = cfg
        self.md = md
        self.execs = execs
        self.orders = orders
        self.enc = msgspec.msgpack.Encoder()
        self.md_dec = msgspec.msgpack.Decoder(MarketDataUpdate)
        self.ex_dec = msgspec.msgpack.Decoder(ExecutionReport)
        # cl_ids stay unique for the day across restarts: this start's run of the
        # day is in every id it makes (hftd.msg.ids)
        self.run = run
        # strategy.record_inputs: every engine call recorded (hftd.strategy.record);
        # `journal` (the day's record file) is given by the service
        self.rec: InputRecorder | None = None
        self.journal: Journal | None = None
        clock: Callable[[], int] = time.monotonic_ns
        send: Callable[[OrderCommand], bool] = self._send
        if cfg.strategy.record_inputs:
            self.rec = InputRecorder(clock, send)
            clock, send = self.rec.clock, self.rec.send
            self.rec.header(run, cfg)
        self.engine = StrategyEngine(cfg, send, clock, run, self._book_lost)
        self.sync = MdSync(time.monotonic)
        self._warm: StrategyWarm | None = None  # made on the first warming pass
        self.next_timer = 0
        # Composite layout: the gateway's pump (`hftd.runtime.composite`), run on the
        # first order command of each unit of work (a market-data message, the
        # reports of a pass, a timer) as soon as it is in the ring, so a decision
        # goes out at once; the unit's further orders (a load generator's burst)
        # are pumped together when the unit ends, in one send, not one each.
        # None in the split layout.
        self.downstream: Callable[[], object] | None = None
        # Composite layout with the gateway composed: an order command handed to it
        # as the object it is (`GatewayAgent.take`: no msgpack, no ring), True if
        # taken, and whether to send at once; None in the split layout.
        self.direct: Callable[[OrderCommand, bool], bool] | None = None
        self.unit_orders = 0
        self.deferred = False
        self.counters = {
            "reports": 0,
            "orders_refused": 0,
        }

    @property
    def synced(self) -> bool:
        return self.sync.synced

    @property
    def last_seq(self) -> int:
        return self.sync.last_seq

    def _send(self, cmd: OrderCommand) -> bool:
        first = self.unit_orders == 0
        direct = self.direct
        if direct is not None and direct(cmd, first):
            pass  # the gateway took it (and sent it, if first)
        elif self.orders.try_write(self.enc.encode(cmd)):
            if self.downstream is None:  # split layout: the gateway's own loop reads it
                return True
            if first:
                self.downstream()  # the gateway sends it now
        else:
            self.counters["orders_refused"] += 1
            return False
        if not first:
            self.deferred = True  # a burst: the rest go together (_end_unit)
        self.unit_orders += 1
        return True

    def wait_fds(self) -> list[int]:
        return []

    def warm(self, md: MarketDataUpdate | None = None) -> OrderCommand | None:
        """A warming pass of this stage: `md` (the feed's, in the composite layout)
        through a scratch engine; the order command it made (hftd.hotpath.warmup)."""
        if self._warm is None:
            from hftd.hotpath.warmup import StrategyWarm  # only a composite process warms

            self._warm = StrategyWarm(self.cfg)
        return self._warm.run(md, self.enc)

    def next_timer_s(self) -> float:
        return max(0.0, (self.next_timer - time.monotonic_ns()) / 1e9)

    def pump(self) -> int:
        """Market data only: what a composite hot path runs after each message the
        feed publishes (`hftd.runtime.composite`), so a decision never waits for the
        rest of the feed's read."""
        work = 0
        md = self.md
        for _ in range(BATCH):
            raw = md.read()
            if raw is None:
                break
            work += 1
            self._on_update(self.md_dec.decode(raw), raw)
            self._end_unit()
        if work:
            md.commit()
        return work

    def take(self, u: MarketDataUpdate) -> bool:
        """Composite layout: the feed hands an update over as soon as it is
        normalized, before it encodes it into the md ring (no encode, ring write,
        read and decode before the decision); it then tells `took` the record it
        wrote. What the ring holds that this agent has not seen (a heartbeat, a
        reset) is applied first: the stream's order is the ring's. False (the
        ring's way) while more than a pass of it is unread (a backlog from before
        this agent was composed, a burst it fell behind on), and while inputs are
        recorded (the record is the recording)."""
        if self.rec is not None:
            return False
        md = self.md
        if md.readable():
            self.pump()
            if md.readable():
                return False
        self._on_update(u)
        self._end_unit()
        return True

    def took(self, rec: bytes) -> None:
        """The feed wrote the update `take` applied into the md ring as `rec`: the
        ring's next record (`take` read the ring to its end first), consumed here so
        that it is never applied twice. Another record there (a bug) is left
        unread."""
        md = self.md
        pos = md.position
        raw = md.read()
        if raw is not None and raw == rec:
            md.commit()
        else:
            md.seek(pos)

    def _end_unit(self) -> None:
        """A unit of work is done: pump the orders it deferred (composite layout)."""
        self.unit_orders = 0
        if self.deferred and self.downstream is not None:
            self.deferred = False
            self.downstream()

    def do_work(self) -> int:
        self._end_unit()  # orders a control call made between two passes
        work = self.pump()
        engine = self.engine
        execs = self.execs
        n = 0
        for _ in range(BATCH):
            raw = execs.read()
            if raw is None:
                break
            n += 1
            if self.rec is None:
                engine.on_report(self.ex_dec.decode(raw))
            else:
                self.rec.call(("X", bytes(raw)), engine.on_report, self.ex_dec.decode(raw))
        if n:
            execs.commit()
            self.counters["reports"] += n
            self._end_unit()
        now = time.monotonic_ns()
        if now >= self.next_timer:
            self.next_timer = now + TIMER_NS
            sync = self.sync
            engine.in_sync = sync.synced and not sync.catching_up  # the gateway's md-age check
            if self.rec is None:
                engine.on_timer()
            else:
                self.rec.call(("T", engine.in_sync, engine.last_md_ns), engine.on_timer)
                self.flush_record()
            self._end_unit()
        return work + n

    def _on_update(self, u: MarketDataUpdate, raw: bytes | memoryview = b"") -> None:
        self.engine.last_md_ns = time.monotonic_ns()
        act = self.sync.on_update(u)
        rec = self.rec
        if act == APPLY:
            if rec is None:
                self.engine.on_update(u)  # a BookError comes back as _book_lost
            else:
                rec.call(("U", bytes(raw)), self.engine.on_update, u)
        elif act == QUIET:
            if rec is None:
                self.engine.rebuild(u)  # a replay: books only
            else:
                rec.call(("Q", bytes(raw)), self.engine.rebuild, u)
        elif act == REBUILD:
            if rec is None:
                self.engine.builder.reset()
            else:
                rec.call(("Z",), self.engine.builder.reset)
            if u.kind == MD_RESET:
                log.info(
                    "md reset: rebuilding books from sequence 1%s",
                    f" (a replay up to {u.seq}: strategies wait for it)" if u.seq else "",
                )
            else:
                log.info("in sync: the venue has sequenced nothing yet (empty books)")
        elif act == LOST:
            self._log_lost()
        elif act == LIVE:
            if u.kind != MD_SEQUENCE:
                if rec is None:
                    self.engine.rebuild(u)
                else:
                    rec.call(("Q", bytes(raw)), self.engine.rebuild, u)
            if self.sync.synced:
                log.info("caught up at sequence %d: strategies see the market again", u.seq)

    def adopt(self, working: list[WorkingOrderStatus], positions: dict[str, int]) -> int:
        """Take over a previous run's working orders and positions (recorded)."""
        if self.rec is None:
            return self.engine.adopt(working, positions)
        n: list[int] = []
        head = ("A", msgspec.to_builtins(working), dict(positions))
        self.rec.call(head, lambda: n.append(self.engine.adopt(working, positions)))
        return n[0]

    def reconfigure(self, cfg: HftdConfig) -> None:
        """New strategy parameters (a reload; recorded)."""
        if self.rec is None:
            self.engine.reconfigure(cfg)
        else:
            self.rec.call(("R", msgspec.to_builtins(cfg)), self.engine.reconfigure, cfg)

    def flush_record(self) -> None:
        """The recorded inputs so far into the day's record file (one write)."""
        if self.rec is not None and self.journal is not None:
            payload = self.rec.take()
            if payload is not None:
                self.journal.append(payload)

    def _book_lost(self, why: str, seq: int) -> None:
        """The engine's books rejected update `seq`: resync, as for a gap."""
        self.sync.lost(why, seq)
        self._log_lost()

    def _log_lost(self) -> None:
        sync = self.sync
        if sync.looping:
            log.error(
                "%s: the resync did not get past sequence %d (%d in a row): resync loop, "
                "next resync in %.1f s",
                sync.last_loss,
                sync.hole,
                sync.failures,
                sync.backoff_s(),
            )
        else:
            log.error("%s: requesting a resync from the feed", sync.last_loss)

    def depth(self, symbol: str) -> DepthInfo:
        book = self.engine.builder.books.get(symbol)
        if book is None:
            raise ValueError(f"no book for {symbol!r}")
        return DepthInfo(symbol, self.last_seq, book.depth("B"), book.depth("S"), dict(book.orders))


class StrategyService:
    def __init__(self, cfg: HftdConfig, host: LoopHost | None = None) -> None:
        self.cfg = cfg
        self.host = host if host is not None else SplitHost(cfg)
        self.agent: StrategyAgent | None = None
        self.loop: PartLoop | None = None

    async def _recover(self, agent: StrategyAgent) -> None:
        """Take over the working orders and positions a previous run left (from the
        gateway, which owns them); nothing to do on a first start."""
        path = self.cfg.system.resolved_run_dir() / "gateway.sock"
        try:
            with trio.fail_after(3):
                reply = await request(path, Status())
        except (OSError, trio.TooSlowError):
            log.info("gateway not reachable: starting with no working orders")
            return
        if not reply.ok:
            return
        # a detail that is not a GatewayDetail stops the start here, naming the
        # field (StatusDetailError): trading on without the orders would double them
        detail = decode_detail(GatewayDetail, msgspec.convert(reply.result, StatusInfo).detail)
        if detail is None:  # the gateway is starting: nothing to take over yet
            return
        positions = {p.symbol: p.qty for p in detail.positions.positions}
        n = agent.adopt(detail.working, positions)
        log.info(
            "recovered from the gateway: %d working orders, positions %s",
            n,
            {k: v for k, v in positions.items() if v},
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        rc = self.cfg.rings
        md = Ring.open(ring_name(self.cfg, "md"), rc.md_capacity)
        execs = Ring.open(ring_name(self.cfg, "executions"), rc.executions_capacity)
        orders = Ring.open(ring_name(self.cfg, "orders"), rc.orders_capacity)
        run = await trio.to_thread.run_sync(claim_strategy_run, self.cfg)
        agent = self.agent = StrategyAgent(self.cfg, md, execs, orders, run)
        log.info("strategy run %d of the trading day (its order ids: hftd.msg.ids)", run)
        for inst in self.cfg.strategy.instances:
            log.info("%s", strategy_line(inst))
        if agent.rec is not None:
            path = current_day(self.cfg).path / record_name(run)
            agent.journal = await trio.to_thread.run_sync(lambda: Journal.open(path, fsync="never"))
            log.info("recording the engine's inputs in %s (hftd backtest --session)", path)
        await self._recover(agent)
        if md.tail != 0:  # not a fresh ring: the books of whoever read it are gone
            agent.sync.rejoin()
        else:  # read from its start: what the feed published before now is history
            agent.sync.catch_up_to(await feed_high_water(self.cfg, log))
        loop = self.loop = self.host.loop(
            "strategy", agent, {"md": md, "executions": execs}, rc.wait_for("strategy")
        )
        loop.start()
        sync = agent.sync
        try:
            ready = False
            while loop.alive:
                # take_resync runs in the hot thread: it owns the sync state. A
                # resync loop's backoff (resync_at) is waited out here, not spun.
                if (
                    sync.want_resync
                    and time.monotonic() >= sync.resync_at
                    and await loop.call(sync.take_resync)
                ):
                    await request_resync(self.cfg, log)
                if not ready and sync.synced:
                    ready = True
                    task_status.started()
                await trio.sleep(0.05)
            raise RuntimeError(f"strategy hot loop died: {loop.error!r}")
        finally:
            loop.stop()
            if agent.journal is not None:  # the hot thread has stopped: flush here
                agent.flush_record()
                agent.journal.sync()
                agent.journal.close()
            for r in (md, execs, orders):
                r.close()

    def status_detail(self) -> StrategyDetail | None:
        a = self.agent
        if a is None:
            return None
        e, sync = a.engine, a.sync
        sc = sync.counters
        return StrategyDetail(
            synced=sync.synced,
            last_seq=sync.last_seq,
            updates=sc["updates"],
            skipped=sc["skipped"],
            gaps=sc["gaps"],
            resets=sc["resets"],
            resyncs=sc["resyncs"],
            resync_failures=sc["resync_failures"],
            resync_loop=sync.looping,
            resync_failures_in_a_row=sync.failures,
            resync_backoff_s=sync.backoff_s(),
            resync_hole=sync.hole,
            last_loss=sync.last_loss,
            catching_up=sync.catching_up,
            replay_to=sync.replay_to,
            reports=a.counters["reports"],
            orders_refused=a.counters["orders_refused"],
            run=a.run,
            book_errors=e.book_errors,
            last_book_error=e.last_book_error,
            working=e.working(),
            untracked=e.untracked(),
            stale_reports=e.stale(),
            invalid_reports=e.invalid(),
            gateway_heard_ms_ago=(time.monotonic_ns() - e.gateway_seen_ns) // 1_000_000
            if e.gateway_seen_ns
            else None,
            gateway_mode=e.gateway_mode,
            strategies={
                s.name: StrategyInstanceStatus(
                    signals=s.signals,
                    sent=s.om.counts["sent"],
                    fills=s.om.counts["fills"],
                    partial_fills=s.om.counts["partial_fills"],
                    rejects=s.om.counts["rejects"],
                    cancels=s.om.counts["cancels"],
                    held=s.om.counts["held"],
                    working=len(s.om.orders),
                    positions=dict(s.om.positions),
                    net={
                        sym: q for sym in s.om.book.symbols() if (q := s.om.book.position(sym).qty)
                    },
                    realized=s.om.book.realized(),
                    unrealized=s.om.book.unrealized(),
                    pnl=s.om.book.total(),
                )
                for s in e.contexts
            },
        )

    async def handle(self, cmd: Command) -> Any:
        if isinstance(cmd, Depth) and self.loop is not None and self.agent is not None:
            agent = self.agent
            return await self.loop.call(lambda: agent.depth(cmd.symbol))
        raise ValueError(f"strategy does not handle {type(cmd).__name__}")

    def live_config(self) -> tuple[str, ...]:
        return ("strategy.heartbeat_s", "strategy.instances")

    def apply_config(self, cfg: HftdConfig) -> None:
        old = [(i.name, i.kind) for i in self.cfg.strategy.instances]
        new = [(i.name, i.kind) for i in cfg.strategy.instances]
        if old != new:
            raise ValueError("strategy instances (names, kinds) change only with a restart")
        for before, after in zip(self.cfg.strategy.instances, cfg.strategy.instances, strict=True):
            if after != before:
                log.info("now %s", strategy_line(after))
        self.cfg = cfg
        if self.loop is not None and self.agent is not None:
            agent = self.agent
            self.loop.post(lambda: agent.reconfigure(cfg))
