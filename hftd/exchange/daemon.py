"""The exchange simulator daemon: a thin trio shell around `Venue`.

- tcp `order_port`: OUCH 5.0 over SoupBinTCP 3.0 (login with a configured
  username/password; a user re-logging in from sequence N gets every reply
  from N; a new login for a user replaces that user's old connection).
- tcp `md_port`: ITCH 5.0 over SoupBinTCP 3.0 (any username/password; login
  from sequence 1 replays the whole day, 0 starts from now).
- control socket `<run_dir>/exchange.sock`: Status, Snapshot(user), Depth(symbol),
  Disconnect(kind).

A malformed or out-of-protocol packet ends only the session that sent it.

Every input to the venue (OUCH messages, synthetic flow steps, start of day)
is journaled before it is applied (`hftd.exchange.journal`); a restarted
exchange replays the journal before it says READY, so its books and its
sequenced streams are exactly those it had when it died.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio

from hftd.config import HftdConfig
from hftd.exchange.journal import JournaledVenue, JournalMismatch, Recovery, open_venue
from hftd.exchange.latency import LatencyModel
from hftd.exchange.stream import SequencedStream
from hftd.msg.control import Command, Depth, DepthInfo, Disconnect, Snapshot
from hftd.runtime.journal import JournalCorrupt
from hftd.wire import ouch
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import RemoteProtocolError

log = logging.getLogger("hftd.exchange")

MAX_BATCH = 512  # sequenced messages per send_all


def make_clock() -> Callable[[], int]:
    """Nanoseconds since local midnight, advancing monotonically."""
    now = time.time()
    lt = time.localtime(now)
    midnight = now - (lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (now % 1))
    base = int((now - midnight) * 1e9)
    mono0 = time.monotonic_ns()

    def clock() -> int:
        return base + time.monotonic_ns() - mono0

    return clock


class Broadcast:
    """Wake every waiter when something was appended to a stream."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def notify(self) -> None:
        self.event.set()
        self.event = trio.Event()


class _SessionEnded(Exception):
    """The client logged out."""


class ExchangeDaemon:
    def __init__(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        self.ex = cfg.exchange
        self.jv = JournaledVenue(cfg, make_clock())  # replaced by the journal's in run()
        self.venue = self.jv.venue
        self.recovery: Recovery | None = None
        self.changed = Broadcast()
        self.ack_latency = LatencyModel(self.ex.ack_latency)
        self.md_latency = LatencyModel(self.ex.md_latency)
        self.md_released = 0  # ITCH messages visible to clients (md latency)
        self.passwords = {u.username: u.password for u in self.ex.users}
        self.active: dict[str, trio.CancelScope] = {}
        self.md_sessions = 0
        self.md_scopes: set[trio.CancelScope] = set()
        self.order_port = self.ex.order_port
        self.md_port = self.ex.md_port

    # --- entry point -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            self.jv, rec = open_venue(self.cfg, self.jv.live_clock)
        except (JournalCorrupt, JournalMismatch) as exc:
            log.error(
                "cannot replay the journal: %s (set exchange.fresh_start or remove it "
                "to open a new day)",
                exc,
            )
            raise
        self.venue = self.jv.venue
        self.recovery = rec
        log.info(
            "journal %s: replayed %d records (%d venue inputs) in %.3f s%s",
            rec.path,
            rec.records,
            rec.inputs,
            rec.seconds,
            f", torn tail of {rec.torn.discarded} bytes discarded" if rec.torn else "",
        )
        if not self.jv.started:
            self.jv.start_of_day()
        self.md_released = len(self.venue.md)
        try:
            await self._serve(task_status)
        finally:
            if self.jv.journal is not None:
                self.jv.journal.close()  # after every task that appends is gone

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sync_journal)
            order_listeners = await nursery.start(
                partial(trio.serve_tcp, self._order_session, self.ex.order_port, host=self.ex.host)
            )
            md_listeners = await nursery.start(
                partial(trio.serve_tcp, self._md_session, self.ex.md_port, host=self.ex.host)
            )
            self.order_port = order_listeners[0].socket.getsockname()[1]
            self.md_port = md_listeners[0].socket.getsockname()[1]
            nursery.start_soon(self._release_md)
            for i in range(len(self.cfg.symbols)):
                nursery.start_soon(self._flow, i)
            log.info(
                "venue up: orders tcp %s:%d, market data tcp %s:%d, %d symbols",
                self.ex.host,
                self.order_port,
                self.ex.host,
                self.md_port,
                len(self.cfg.symbols),
            )
            task_status.started()

    async def _sync_journal(self) -> None:
        """The journal's "batch" fsync, off the input path (in a worker thread)."""
        journal = self.jv.journal
        if journal is None or journal.fsync != "batch":
            return
        while True:
            await trio.sleep(journal.batch_interval_s)
            if journal.unsynced:
                await trio.to_thread.run_sync(journal.sync)

    # --- control -----------------------------------------------------------------

    def status_detail(self) -> dict[str, Any]:
        return {
            "order_port": self.order_port,
            "md_port": self.md_port,
            "order_sessions": sorted(self.active),
            "md_sessions": self.md_sessions,
            "md_messages": len(self.venue.md),
            "journal_replayed": self.recovery.records if self.recovery else 0,
            "journal_appended": self.jv.journal.records if self.jv.journal else 0,
            **self.venue.counters,
        }

    def live_config(self) -> tuple[str, ...]:
        return ("exchange.flow", "exchange.ack_latency", "exchange.md_latency")

    def apply_config(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        self.ex = cfg.exchange
        self.ack_latency = LatencyModel(self.ex.ack_latency)
        self.md_latency = LatencyModel(self.ex.md_latency)
        for i, s in enumerate(cfg.symbols):
            self.jv.set_flow(i, cfg.flow_for(s.symbol))

    async def handle(self, cmd: Command) -> Any:
        if isinstance(cmd, Snapshot):
            if cmd.user not in self.passwords:
                raise ValueError(f"unknown user {cmd.user!r}")
            return self.venue.snapshot(cmd.user)
        if isinstance(cmd, Disconnect):
            scopes = self.md_scopes if cmd.kind == "md" else set(self.active.values())
            if cmd.kind not in ("md", "orders"):
                raise ValueError(f"unknown session kind {cmd.kind!r} (md or orders)")
            for scope in list(scopes):
                scope.cancel()
            log.warning("dropped %d %s sessions on request", len(scopes), cmd.kind)
            return {"dropped": len(scopes)}
        if isinstance(cmd, Depth):
            book = self.venue.engine.books.get(cmd.symbol)
            if book is None:
                raise ValueError(f"unknown symbol {cmd.symbol!r}")
            return DepthInfo(
                symbol=cmd.symbol,
                md_sequence=len(self.venue.md),
                bids=book.depth("B"),
                asks=book.depth("S"),
                orders={
                    o.order_ref: ("B" if o.side == "B" else "S", o.price, o.open_qty)
                    for o in book.orders()
                },
            )
        raise ValueError(f"exchange does not handle {type(cmd).__name__}")

    # --- background flow and md latency -------------------------------------------

    async def _flow(self, index: int) -> None:
        jv = self.jv
        while True:
            cfg = jv.flows[index].cfg
            if not cfg.enabled or cfg.arrival_rate_per_s <= 0:
                await trio.sleep(0.25)  # may be switched on by a reload
                continue
            await trio.sleep(jv.next_flow_delay(index))
            jv.flow_step(index)
            self._published()

    def _published(self) -> None:
        if not self.md_latency.enabled:
            self.md_released = len(self.venue.md)
        self.changed.notify()

    async def _release_md(self) -> None:
        """Make ITCH messages visible only after the injected delay, in order."""
        while True:
            ev = self.changed.event
            upto = len(self.venue.md)
            if upto > self.md_released and self.md_latency.enabled:
                await trio.sleep(self.md_latency.sample())
                self.md_released = upto
                self.changed.notify()
                continue
            await ev.wait()

    # --- sessions ----------------------------------------------------------------

    async def _login(
        self, stream: trio.SocketStream, session: soup.ServerSession
    ) -> soup.LoginRequested:
        with trio.fail_after(self.ex.heartbeat_timeout_s):
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    raise _SessionEnded("closed before login")
                for ev in session.receive_data(data):
                    if isinstance(ev, soup.LoginRequested):
                        return ev

    def _first_sequence(self, requested: int, log_: SequencedStream) -> int:
        nxt = log_.next_sequence
        if requested == 0 or requested > nxt:
            return nxt
        return requested

    async def _order_session(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        user = ["?"]
        async with stream:
            await _guarded(
                f"order session from {peer}", self._order_session_body(stream, peer, user)
            )

    async def _order_session_body(
        self, stream: trio.SocketStream, peer: str, who: list[str]
    ) -> None:
        session = soup.ServerSession()
        login = await self._login(stream, session)
        user = who[0] = login.username
        if self.passwords.get(user) != login.password:
            log.warning("order login refused for %r from %s: not authorized", user, peer)
            await stream.send_all(soup.login_rejected(soup.REJECT_NOT_AUTHORIZED))
            return
        if login.session not in ("", self.ex.session):
            log.warning("order login refused for %r: unknown session %r", user, login.session)
            await stream.send_all(soup.login_rejected(soup.REJECT_SESSION_UNAVAILABLE))
            return
        old = self.active.pop(user, None)
        if old is not None:
            log.warning("user %s logged in again from %s: closing the old session", user, peer)
            old.cancel()
        st = self.venue.user(user)
        first = self._first_sequence(login.sequence, st.stream)
        await stream.send_all(soup.login_accepted(self.ex.session, first))
        pipelined = session.accept()
        log.info("order session up: user %s from %s, from sequence %d", user, peer, first)
        with trio.CancelScope() as scope:
            self.active[user] = scope
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, stream, st.stream, first, False)
                    if await self._order_events(pipelined, user):
                        await self._order_reader(stream, session, user)
                    nursery.cancel_scope.cancel()
            finally:
                if self.active.get(user) is scope:
                    del self.active[user]
        log.info("order session closed: user %s from %s", user, peer)

    async def _order_reader(
        self, stream: trio.SocketStream, session: soup.ServerSession, user: str
    ) -> None:
        while True:
            with trio.fail_after(self.ex.heartbeat_timeout_s):
                data = await stream.receive_some(65536)
            if not data:
                return
            if not await self._order_events(session.receive_data(data), user):
                return

    async def _order_events(self, events: list[soup.ServerSideEvent], user: str) -> bool:
        """Apply a client's packets; False once it logged out."""
        for ev in events:
            if isinstance(ev, soup.UnsequencedData):
                msg = ouch.decode_inbound(ev.payload)
                if self.ack_latency.enabled:
                    await trio.sleep(self.ack_latency.sample())
                self.jv.handle(user, ev.payload, msg)  # journaled, then applied
                self._published()
            elif isinstance(ev, soup.LogoutRequested):
                return False
        return True

    async def _md_session(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        async with stream:
            await _guarded(f"market data session {peer}", self._md_session_body(stream, peer))

    async def _md_session_body(self, stream: trio.SocketStream, peer: str) -> None:
        session = soup.ServerSession()
        login = await self._login(stream, session)
        if login.session not in ("", self.ex.session):
            await stream.send_all(soup.login_rejected(soup.REJECT_SESSION_UNAVAILABLE))
            return
        first = self._first_sequence(login.sequence, self.venue.md)
        await stream.send_all(soup.login_accepted(self.ex.session, first))
        pipelined = session.accept()
        log.info("market data session up: %s from sequence %d", peer, first)
        self.md_sessions += 1
        try:
            with trio.CancelScope() as scope:
                self.md_scopes.add(scope)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, stream, self.venue.md, first, True)
                    if _md_events(pipelined):
                        await self._md_reader(stream, session)
                    nursery.cancel_scope.cancel()
        finally:
            self.md_scopes.discard(scope)
            self.md_sessions -= 1
        log.info("market data session closed: %s", peer)

    async def _md_reader(self, stream: trio.SocketStream, session: soup.ServerSession) -> None:
        while True:
            with trio.fail_after(self.ex.heartbeat_timeout_s):
                data = await stream.receive_some(65536)
            if not data or not _md_events(session.receive_data(data)):
                return

    async def _writer(
        self, stream: trio.SocketStream, log_: SequencedStream, seq: int, md: bool
    ) -> None:
        """Send sequenced messages from `seq` on, and heartbeats when idle."""
        interval = self.ex.heartbeat_interval_s
        last_send = trio.current_time()
        while True:
            ev = self.changed.event
            avail = (self.md_released if md else len(log_)) + 1
            if seq < avail:
                stop = min(avail, seq + MAX_BATCH)
                batch = b"".join(soup.sequenced(m) for m in log_.range(seq, stop))
                await stream.send_all(batch)
                seq = stop
                last_send = trio.current_time()
                continue
            if trio.current_time() - last_send >= interval:
                await stream.send_all(soup.SERVER_HEARTBEAT)
                last_send = trio.current_time()
            with trio.move_on_at(last_send + interval):
                await ev.wait()


def _md_events(events: list[soup.ServerSideEvent]) -> bool:
    """Market-data clients may only heartbeat or log out; False once logged out."""
    for ev in events:
        if isinstance(ev, soup.UnsequencedData):
            raise RemoteProtocolError("unsequenced data on the market-data port")
        if isinstance(ev, soup.LogoutRequested):
            return False
    return True


_SESSION_ENDINGS = (
    RemoteProtocolError,
    trio.TooSlowError,
    _SessionEnded,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


async def _guarded(what: str, body: Awaitable[None]) -> None:
    """Run a session; log why it ended. Only this session ends, never the venue."""
    try:
        await body
    except (Exception, BaseExceptionGroup) as exc:
        leaf = _session_ending(exc)
        if leaf is None:
            raise
        if isinstance(leaf, RemoteProtocolError):
            log.warning("%s ended: protocol error: %s", what, leaf)
        elif isinstance(leaf, trio.TooSlowError):
            log.warning("%s ended: peer silent too long", what)
        else:
            log.info("%s ended: %s", what, leaf or "connection lost")


def _session_ending(exc: BaseException) -> BaseException | None:
    """The session-ending error inside `exc`, or None if `exc` is something else."""
    while isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(_SESSION_ENDINGS)
        if rest is not None or match is None:
            return None
        exc = match.exceptions[0]
    return exc if isinstance(exc, _SESSION_ENDINGS) else None


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"
