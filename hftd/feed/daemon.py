"""The feed handler daemon (`hft@feed`).

A SoupBinTCP client to the venue's ITCH port, run in the hot thread: every
read is stamped T1 (CLOCK_MONOTONIC ns) as it leaves the socket, each ITCH
message is normalized to a `MarketDataUpdate` carrying T1 and its venue
sequence number, and published into the md ring: exactly one record per
sequence number, a sequence-only one for the types the system does not use
and for anything unreadable (counted, logged rate-limited), so the strategy
never sees a gap that did not happen. It never blocks on a slow
strategy: a full ring drops the update and counts it.

Every record goes into a second ring too, `risk_md`, read by the gateway for
risk's own view of the market (`hftd.risk.market`): the strategy must not be
the source of the prices its orders are checked against. Written after the
strategy's record (and, in the composite layout, after the order it caused
has left), dropped and counted (`risk_drops`) when the gateway is behind; the
gateway's view then sees the gap and asks for a resync like the strategy.

Recovery is by sequence number. The feed always knows the next sequence it
needs: from its last login, or after a restart from the last record it
committed to the ring. When the link drops (EOF, error, 15 s of silence) it
reconnects with exponential backoff and logs in from that number, so nothing
is missed. If the venue cannot serve that number (its answer starts
elsewhere: it restarted, or skipped), the feed publishes MD_RESET and logs in
from 1, and the strategy rebuilds its books from the full replay.

A replay from 1 repeats what the consumers saw before, perhaps hours of it:
the MD_RESET carries the feed's high-water mark in `seq` (the last sequence
number it had from the venue before the replay, `high_water`), so consumers
rebuild their books through the replay without acting on it, and act again
from the live edge (`hftd.book.sync`, "catching up").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from hftd.config import HftdConfig, ring_name
from hftd.feed.normalize import Normalizer
from hftd.ipc.ring import Ring
from hftd.ipc.souplink import SoupLink
from hftd.msg.control import Command, Resync
from hftd.msg.hot import MD_HEARTBEAT, MD_RESET, MarketDataUpdate
from hftd.msg.status import FeedDetail
from hftd.runtime.composite import LoopHost, PartLoop, SplitHost
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import RemoteProtocolError

if TYPE_CHECKING:
    from hftd.hotpath.warmup import FeedWarm

log = logging.getLogger("hftd.feed")

MD_HEARTBEAT_S = 0.1  # idle this long: publish MD_HEARTBEAT
# ... but only while the venue talks: it sends a heartbeat every second when idle
# (SoupBinTCP), so nothing from it for two of them is a venue not answering, and
# the feed stops saying the market data is fresh (the breaker's md_stale_s then
# sees it age) long before the link's own silence timeout (15 s) drops it.
MD_VOUCH_S = 2 * soup.HEARTBEAT_INTERVAL
# A reset waiting for room in the md ring: no longer than this (FeedAgent._pay_reset)
RESET_WAIT_S = 5.0
PROBLEM_LOG_INTERVAL_S = 5.0  # unreadable ITCH messages: at most one warning this often

_md_decoder = msgspec.msgpack.Decoder(MarketDataUpdate)


def ring_high_water(ring: Ring) -> int:
    """The last sequence number the ring's last record says the venue had published
    (a record's own, a heartbeat's, a reset's replay end); 0 for an empty ring."""
    last = ring.last_committed()
    return 0 if last is None else _md_decoder.decode(last).seq


def resume_sequence(ring: Ring) -> int:
    """The next ITCH sequence number to ask for, from what the ring last committed."""
    last = ring.last_committed()
    if last is None:
        return 1
    u = _md_decoder.decode(last)
    return 1 if u.kind == MD_RESET else u.seq + 1  # a heartbeat carries the last sequence


def _ignore(_rec: bytes) -> None:
    """`FeedAgent.took` with no strategy composed."""


class FeedAgent:
    """Socket -> normalize -> ring; all in the hot thread."""

    def __init__(self, cfg: HftdConfig, ring: Ring, risk_ring: Ring) -> None:
        self.cfg = cfg
        self.ring = ring
        self.risk_ring = risk_ring
        venue, fc = cfg.venue_address(), cfg.feed  # [venue]: the simulator's by default
        self.link = SoupLink(
            "feed",
            venue.host,
            venue.md_port,
            fc.username,
            fc.password,
            backoff_min_s=fc.reconnect_min_s,
            backoff_max_s=fc.reconnect_max_s,
            silence_s=venue.heartbeat_timeout_s,
            log=log,
            rcvbuf=4 << 20,
        )
        self.link.next_seq = resume_sequence(ring)
        self.live = threading.Event()
        self.pending_reset = False
        # An MD_RESET the md ring had no room for: owed to its consumers before any
        # later record (they are dropped meanwhile), written as soon as it fits
        # (`_pay_reset`). A replay without its reset in front is read as live data.
        self.owed_reset: bytes | None = None
        # The venue's stream as far as we had it before the latest replay from 1:
        # the replay's end, which the MD_RESET tells the consumers. A restart
        # mid-replay knows only what the ring holds (a reset: the end it carried).
        self.high_water = ring_high_water(ring)
        self.last_publish = 0.0
        self.buf = bytearray(1 << 18)
        self.view = memoryview(self.buf)
        self.encoder = msgspec.msgpack.Encoder()
        self.norm = Normalizer()
        self._warm: FeedWarm | None = None  # made on the first warming pass
        # Composite layout: run the strategy and the gateway on each message as soon
        # as it is in the ring (`hftd.runtime.composite`); None in the split layout.
        self.downstream: Callable[[], object] | None = None
        # Composite layout with the strategy composed: each update handed to it as
        # the object it is (`StrategyAgent.take`, True if taken) before it is
        # encoded into the md ring, then the record written (`took`: the strategy
        # consumes it there unapplied). None otherwise.
        self.handoff: Callable[[MarketDataUpdate], bool] | None = None
        self.took: Callable[[bytes], object] = _ignore
        self.problems_logged = 0  # norm.problems when the last warning went out
        self.next_problem_log = 0.0  # monotonic s: no warning before (one per 5 s)
        self.counters = {
            "messages": 0,
            "published": 0,
            "drops": 0,
            "risk_drops": 0,  # records the gateway's ring could not take
            "gaps": 0,
            "resets": 0,
            "bytes": 0,
        }

    @property
    def next_seq(self) -> int:
        return self.link.next_seq

    @property
    def published_upto(self) -> int:
        """The last sequence number we have had from the venue, a replay's end
        included (a replay under way has not got there yet)."""
        return max(self.high_water, self.link.next_seq - 1)

    @property
    def state(self) -> str:
        if not self.link.up:
            return "disconnected"
        return "live" if self.live.is_set() else "logging in"

    # --- hot loop agent ---------------------------------------------------------------

    def wait_fds(self) -> list[int]:
        return self.link.fds()

    def warm(self, _upstream: object = None) -> MarketDataUpdate:
        """A warming pass of this stage on a canned packet; the update it made, as
        `handoff` passes it on (hftd.hotpath.warmup)."""
        if self._warm is None:
            from hftd.hotpath.warmup import FeedWarm  # only a composite process warms

            self._warm = FeedWarm(self.cfg)
        return self._warm.run(self.norm, self.encoder)

    def next_timer_s(self) -> float:
        t = self.link.next_timer_s()
        if self.vouching(time.monotonic()):
            t = min(t, max(0.0, self.last_publish + MD_HEARTBEAT_S - time.monotonic()))
        return t

    def vouching(self, now: float) -> bool:
        """The feed may say "the link is up though nothing traded" (MD_HEARTBEAT): it
        is live and has heard the venue within MD_VOUCH_S. Not otherwise: a venue
        that stopped answering must show as market data ageing, not as fresh."""
        link = self.link
        return self.live.is_set() and link.up and now - link.last_rx < MD_VOUCH_S

    def do_work(self) -> int:
        link = self.link
        if self.owed_reset is not None:
            self._pay_reset()
        if link.connect_if_due():
            return 1
        n = link.recv_into(self.buf)
        if n > 0:
            t1 = time.monotonic_ns()
            self.counters["bytes"] += n
            if t1 * 1e-9 - link.last_tx >= soup.HEARTBEAT_INTERVAL:
                # Behind the flow there is always more to read and the idle branch
                # below never runs: the venue must still hear from us each second,
                # or it drops the session as silent (once per read, not per message).
                link.keepalive()
                if not link.up:  # the heartbeat could not be sent: dropped
                    self.live.clear()
            try:
                return self._on_data(self.view[:n], t1)
            except RemoteProtocolError as exc:
                self._drop(f"protocol error: {exc}")
                return 1
        if n == 0:
            self.live.clear()
            return 0
        now = time.monotonic()
        if now - self.last_publish >= MD_HEARTBEAT_S and self.vouching(now):
            self._publish_heartbeat(now)
        link.keepalive()
        if not link.up:
            self.live.clear()
        return 0

    def _publish_heartbeat(self, now: float) -> None:
        """Tell the strategy the link is up though nothing traded (staleness check);
        `seq` is the last sequence number published, so a consumer can spot drops."""
        hb = MarketDataUpdate(
            self.link.next_seq - 1, MD_HEARTBEAT, 0, "", 0, "", 0, 0, 0, 0, time.monotonic_ns()
        )
        rec = self.encoder.encode(hb)
        if self.owed_reset is None or self._pay_reset():
            self.ring.try_write(rec)
        self._to_risk(rec)
        self.last_publish = now

    def _to_risk(self, rec: bytes) -> None:
        if not self.risk_ring.try_write(rec):
            self.counters["risk_drops"] += 1

    def _drop(self, why: str, *, at_once: bool = False) -> None:
        self.live.clear()
        self.link.drop(why, at_once=at_once)

    # --- data -------------------------------------------------------------------------

    def _on_data(self, data: memoryview, t1: int) -> int:
        work = 0
        ring, enc, norm = self.ring, self.encoder, self.norm
        link = self.link
        problems = norm.problems
        for ev in link.session.iter_events(data):
            if type(ev) is soup.SequencedData:
                work += 1
                seq = ev.sequence
                link.next_seq = seq + 1
                self.counters["messages"] += 1
                # Exactly one record per sequence number, whatever the message.
                u = norm.update(ev.payload, seq, t1)
                handoff = self.handoff
                taken = False
                if self.owed_reset is not None and not self._pay_reset():
                    rec = enc.encode(u)  # nothing goes before the reset: dropped
                    written = False
                elif handoff is None:
                    rec = enc.encode(u)
                    written = ring.try_write(rec)
                else:
                    try:
                        taken = handoff(u)  # composite: the strategy acts first
                    finally:
                        # into the ring even if the strategy raised: the restart then
                        # knows it as published and replays it as history, never as
                        # news to act on (and raise on) again
                        rec = enc.encode(u)
                        written = ring.try_write(rec)
                if written:
                    self.counters["published"] += 1
                    self.last_publish = link.last_rx
                    if taken:
                        self.took(rec)  # the strategy consumes it there, applied already
                    elif self.downstream is not None:
                        self.downstream()
                else:
                    self.counters["drops"] += 1
                self._to_risk(rec)
            elif isinstance(ev, soup.LoginAccepted):
                self._on_login(ev)
            elif isinstance(ev, soup.LoginRejected):
                self._drop(f"login rejected ({ev.reason})")
                return work + 1
            elif isinstance(ev, soup.EndOfSession):
                self._drop("end of session")
                return work + 1
        if norm.problems != problems:
            self._warn_problems()
        return work

    def _warn_problems(self) -> None:
        """Messages not ITCH 5.0 (or of the wrong size) passed on as sequence-only
        records: say so, one line every 5 s at most, counting those in between
        (whoever sends them must not flood the log)."""
        now = time.monotonic()
        if now < self.next_problem_log:
            return
        self.next_problem_log = now + PROBLEM_LOG_INTERVAL_S
        n = self.norm.problems - self.problems_logged
        self.problems_logged = self.norm.problems
        log.warning(
            "%d unreadable ITCH message%s kept as sequence-only records (latest: %s); "
            "%d not ITCH 5.0, %d of the wrong size so far",
            n,
            "" if n == 1 else "s",
            self.norm.last_problem,
            self.norm.unknown,
            self.norm.malformed,
        )

    def resync(self) -> None:
        """Publish MD_RESET and replay from sequence 1 (a consumer lost its books)."""
        # a resync asked for during a replay (or twice) still ends where the first did
        self.high_water = self.published_upto
        self.link.next_seq = 1
        self.pending_reset = True
        self._drop("resync requested", at_once=True)

    def _pay_reset(self, wait: bool = False) -> bool:
        """Write the owed reset into the md ring if it fits; True once it is there.
        With `wait`, make room first: in the composite layout the strategy reads
        on this very thread (sleeping would wait forever), so its pump runs here
        while it frees space; a split strategy in its own process is waited for,
        RESET_WAIT_S at most; a composite one not attached yet cannot read (a wait
        would only hold its attach up). Still owed after that, the reset goes
        before the next record that fits, and those in between are dropped."""
        rec = self.owed_reset
        assert rec is not None
        deadline = time.monotonic() + RESET_WAIT_S
        while not self.ring.try_write(rec):
            if not wait:
                return False
            if self.handoff is not None and self.downstream is not None:
                if not self.downstream():  # the composed strategy read nothing more
                    return False
            elif self.downstream is not None or time.monotonic() > deadline:
                return False
            else:
                time.sleep(0.001)
        self.owed_reset = None
        self.counters["resets"] += 1
        return True

    def _on_login(self, ev: soup.LoginAccepted) -> None:
        if ev.sequence != self.link.requested:
            # The venue cannot serve what we need: rebuild everything from 1.
            self.counters["gaps"] += 1
            log.error(
                "asked for sequence %d, venue starts at %d: full resync from 1",
                self.link.requested,
                ev.sequence,
            )
            # The replay's end: the venue has sequenced up to ev.sequence - 1, and when
            # that is short of what we had (it lost messages: a new stream) no further.
            if ev.sequence < self.link.requested:
                self.high_water = ev.sequence - 1
            else:
                self.high_water = max(self.high_water, ev.sequence - 1)
            self.link.next_seq = 1
            self.pending_reset = True
            # Already asked for 1 and refused: retrying at once would only spin.
            self._drop("resync", at_once=self.link.requested != 1)
            return
        if self.pending_reset:
            reset = MarketDataUpdate(
                self.high_water, MD_RESET, 0, "", 0, "", 0, 0, 0, 0, time.monotonic_ns()
            )
            rec = self.encoder.encode(reset)
            self.owed_reset = rec  # replaces one still owed: this replay supersedes it
            if not self._pay_reset(wait=True):
                log.warning(
                    "md ring full: the reset before the replay waits for room; the "
                    "replay's records are dropped until it is written (the strategy "
                    "then resyncs past the gap)"
                )
            # Not waited for: a gateway that is down must not stop the strategy's data.
            # One that missed the reset sees the replay's sequence 1 as a gap: resync.
            self._to_risk(rec)
            self.pending_reset = False
        self.link.logged_in()
        self.live.set()
        log.info("logged in to session %s at sequence %d", ev.session, ev.sequence)


class FeedService:
    """The trio side: start the hot loop, report READY once logged in, watch it."""

    def __init__(self, cfg: HftdConfig, host: LoopHost | None = None) -> None:
        self.cfg = cfg
        self.host = host if host is not None else SplitHost(cfg)
        self.agent: FeedAgent | None = None
        self.loop: PartLoop | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        rc = self.cfg.rings
        ring = Ring.open(ring_name(self.cfg, "md"), rc.md_capacity)
        try:
            risk_ring = Ring.open(ring_name(self.cfg, "risk_md"), rc.risk_md_capacity)
        except BaseException:
            ring.close()
            raise
        agent = self.agent = FeedAgent(self.cfg, ring, risk_ring)
        loop = self.loop = self.host.loop("feed", agent, {}, "sleep")
        loop.start()
        try:
            await trio.to_thread.run_sync(agent.live.wait, abandon_on_cancel=True)
            task_status.started()
            while loop.alive:
                await trio.sleep(0.2)
            raise RuntimeError(f"feed hot loop died: {loop.error!r}")
        finally:
            loop.stop()
            agent.link.drop("stopping")
            ring.close()
            risk_ring.close()

    def status_detail(self) -> FeedDetail | None:
        a = self.agent
        if a is None:
            return None
        c = a.counters
        return FeedDetail(
            link=a.state,
            venue_heard_ms_ago=a.link.heard_ms_ago(),
            unread_bytes=a.link.unread_bytes(),
            reconnects=a.link.reconnects,
            next_sequence=a.next_seq,
            messages=c["messages"],
            published=c["published"],
            drops=c["drops"],
            risk_drops=c["risk_drops"],
            gaps=c["gaps"],
            resets=c["resets"],
            high_water=a.published_upto,
            bytes=c["bytes"],
            unknown_types=a.norm.unknown,
            malformed=a.norm.malformed,
            ring=a.ring.statistics(),
            risk_ring=a.risk_ring.statistics(),
        )

    async def handle(self, cmd: Command) -> Any:
        if isinstance(cmd, Resync) and self.loop is not None and self.agent is not None:
            agent = self.agent
            await self.loop.call(agent.resync)
            return {"resync": True}
        raise ValueError(f"feed does not handle {type(cmd).__name__}")

    def live_config(self) -> tuple[str, ...]:
        return ("feed.reconnect_min_s", "feed.reconnect_max_s")

    def apply_config(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        if self.agent is not None:
            self.agent.cfg = cfg
            self.agent.link.backoff_min_s = cfg.feed.reconnect_min_s
            self.agent.link.backoff_max_s = cfg.feed.reconnect_max_s
