"""The exchange simulator daemon: a thin trio shell around `Venue`.

- tcp `order_port`: OUCH 5.0 over SoupBinTCP 3.0 (login with a configured
  username/password; a user re-logging in from sequence N gets every reply
  from N; a new login for a user replaces that user's old connection, so a
  gateway reconnecting after a half-open TCP gets in).
- tcp `md_port`: ITCH 5.0 over SoupBinTCP 3.0 (a configured `md_users` login,
  or any login when none is configured; at most `md_max_sessions_per_user`
  sessions each; login from sequence 1 replays the whole day, 0 starts from now).
- On both ports (`hftd.exchange.access`): failed logins throttled per source
  (all of loopback is one) and per username, with a lock-out; refused logins
  logged rate-limited; at most `max_connections` connections open.
- `exchange.md_file`: a recorded day played as the market instead of the
  synthetic flow, paced by its timestamps: into the venue's books (the "book"
  model, `_file_flow`), or published as it is with our orders in the
  backtest's queue model (the "queue" model, `_recorded_flow`); docs/venue.md
  "Paper trading on a recorded day".
- control socket `<run_dir>/exchange.sock`: Status, Snapshot(user), Depth(symbol),
  Disconnect(kind), and the test hook Inject(user, kind, ...) (a venue-side message
  such as a Broken Trade into a user's OUCH stream).

A malformed or out-of-protocol packet ends only the session that sent it;
so does anything else a session raises (logged as an internal error): nothing
a client sends ends the venue. A session whose socket takes none of its data
for `send_timeout_s` (a client not reading its market data or replies) is
dropped with a log line and counted (`slow_consumers`), so a slow consumer
holds at most one batch and the kernel's socket buffers, and cannot slow the
venue for everyone else.

Every input to the venue (OUCH messages, synthetic flow steps, start of day)
is journaled before it is applied (`hftd.exchange.journal`); a restarted
exchange replays the journal before it says READY, so its books and its
sequenced streams are exactly those it had when it died.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from hftd.config import ExchangeConfig, HftdConfig, UserConfig
from hftd.exchange.access import (
    ConnectionCap,
    LoginThrottle,
    PortAccess,
    SessionCap,
    Verdict,
    source_key,
)
from hftd.exchange.journal import JournaledVenue, JournalMismatch, Recovery, open_venue
from hftd.exchange.latency import LatencyModel
from hftd.exchange.mdfile import MdFileError
from hftd.exchange.stream import SequencedStream
from hftd.ipc.limits import ListenerStats
from hftd.msg.control import Command, Depth, DepthInfo, Disconnect, Inject, Snapshot
from hftd.runtime.daemon import StartupError, listen_tcp
from hftd.runtime.journal import JournalCorrupt
from hftd.runtime.logguard import LogThrottle, clip, one_line
from hftd.wire import ouch
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import RemoteProtocolError

log = logging.getLogger("hftd.exchange")

MAX_BATCH = 512  # sequenced messages per send_all
CHECKPOINT_POLL_S = 0.25  # how often the checkpoint task looks at what is pending


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
        self.order_access = _port_access(self.ex, self.ex.users, md=False)
        self.md_access = _port_access(self.ex, self.ex.md_users, md=True)
        self.active: dict[str, trio.CancelScope] = {}
        self.md_sessions = 0
        self.md_scopes: set[trio.CancelScope] = set()
        # Per port ("orders", "md"): what its limits and its sessions' errors did.
        self.port_stats = {"orders": ListenerStats(), "md": ListenerStats()}
        self.slow_consumers = {"orders": 0, "md": 0}
        self.session_warnings = {
            "orders": LogThrottle(10.0, burst=5),
            "md": LogThrottle(10.0, burst=5),
        }
        # Routine ends (closed before login, reset) are anyone's to cause, one a connection.
        self.session_ends = {"orders": LogThrottle(10.0, burst=5), "md": LogThrottle(10.0, burst=5)}
        self.order_port = self.ex.order_port
        self.md_port = self.ex.md_port

    # --- entry point -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            # In a thread: a long replay must not keep SIGTERM waiting (a stop
            # abandons it; the journal is only read, or cut at a torn tail, and the
            # stream files it writes are cut back to the checkpoint at the next start).
            self.jv, rec = await trio.to_thread.run_sync(
                open_venue, self.cfg, self.jv.live_clock, abandon_on_cancel=True
            )
        except MdFileError as exc:
            raise StartupError(f"exchange.md_file: {exc}", refused=True) from exc
        except (JournalCorrupt, JournalMismatch) as exc:
            raise StartupError(
                f"cannot replay the journal: {exc} (it is kept as the day's record; to trade "
                "on, start a new day: `hftd up --new-day`, or `hftd day new` with "
                "everything stopped)",
                refused=True,
            ) from exc
        self.venue = self.jv.venue
        self.recovery = rec
        log.info(
            "journal %s: %s, replayed %d records (%d venue inputs in all) in %.3f s%s",
            rec.path,
            f"from its checkpoint of {rec.checkpoint} records"
            if rec.checkpoint
            else "no checkpoint used",
            rec.records,
            rec.inputs,
            rec.seconds,
            f", torn tail of {rec.torn.discarded} bytes discarded" if rec.torn else "",
        )
        if not self.jv.started:
            self.jv.start_of_day()
        self.md_released = len(self.venue.md)
        stopped = False
        try:
            await self._serve(task_status)
        except BaseException as exc:
            stopped = _cancelled(exc)
            raise
        finally:
            # After every task that appends is gone: the venue is between inputs.
            if stopped:
                self._last_checkpoint()
            self.jv.close()

    def _last_checkpoint(self) -> None:
        """A clean stop: a checkpoint of what the last one does not cover, so that the
        next start (the day continued) replays nothing."""
        ck = self.jv.checkpointer
        if ck is None or not ck.pending:
            return
        try:
            ck.checkpoint()
            log.info("checkpoint of %d journal records written at stop", ck.covered)
        except Exception as exc:
            log.warning("no checkpoint at stop: %s", one_line(exc))

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sync_journal)
            nursery.start_soon(self._checkpoints)
            order_listeners = await nursery.start(
                listen_tcp, self._order_session, self.ex.host, self.ex.order_port, "order entry"
            )
            md_listeners = await nursery.start(
                listen_tcp, self._md_session, self.ex.host, self.ex.md_port, "market data"
            )
            self.order_port = order_listeners[0].socket.getsockname()[1]
            self.md_port = md_listeners[0].socket.getsockname()[1]
            nursery.start_soon(self._release_md)
            if self.jv.md_file is not None:
                nursery.start_soon(self._file_flow)  # a recorded day instead
            elif self.jv.recorded is not None:
                nursery.start_soon(self._recorded_flow)  # ... our orders in the queue model
            else:
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
            if self.md_access.users is None:
                log.warning(
                    "market data is open to anyone: exchange.md_users is empty, so the md "
                    "port accepts any username and password"
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

    async def _checkpoints(self) -> None:
        """Checkpoint the venue once `checkpoint_records` records were journaled since the
        last checkpoint, or `checkpoint_interval_s` after it if any were, so a restart
        replays at most about that many. Captured here, between two inputs (the venue
        waits for that: `checkpoint_pause_ms`); written and fsynced in a worker thread.
        A failure is logged and retried later: the journal alone is enough."""
        ck = self.jv.checkpointer
        if ck is None:
            return
        last = trio.current_time()
        failed = LogThrottle(60.0, burst=1)
        while True:
            await trio.sleep(CHECKPOINT_POLL_S)
            pending = ck.pending
            now = trio.current_time()
            if not (
                pending >= self.ex.checkpoint_records
                or (pending and now - last >= self.ex.checkpoint_interval_s)
            ):
                continue
            last = now
            try:
                blob, records = ck.capture()
                await trio.to_thread.run_sync(ck.write, blob, records)
            except Exception as exc:
                failed.log(log, logging.WARNING, now, "checkpoint not written: %s", one_line(exc))
                continue
            log.debug(
                "checkpoint of %d journal records: %d bytes, venue paused %.2f ms, "
                "written in %.1f ms",
                records,
                ck.bytes,
                ck.pause_s * 1000,
                ck.write_s * 1000,
            )

    # --- control -----------------------------------------------------------------

    def status_detail(self) -> dict[str, Any]:
        now = trio.current_time()
        access = {"orders": self.order_access.counters(now), "md": self.md_access.counters(now)}
        return {
            "order_port": self.order_port,
            "md_port": self.md_port,
            "order_sessions": sorted(self.active),
            "md_sessions": self.md_sessions,
            **{
                key: access["orders"][key] + access["md"][key]
                for key in ("failed_logins", "locked_out_sources", "connections_refused")
            },
            "access": access,
            "slow_consumers": sum(self.slow_consumers.values()),
            "listeners": {
                port: self._listener_stats(port, acc) for port, acc in self._accesses().items()
            },
            "md_messages": len(self.venue.md),
            **self._md_file_status(),
            "journal_replayed": self.recovery.records if self.recovery else 0,
            "journal_checkpoint": self.recovery.checkpoint if self.recovery else 0,
            **(self.jv.checkpointer.statistics() if self.jv.checkpointer else {}),
            "journal_appended": self.jv.journal.records if self.jv.journal else 0,
            **self.venue.counters,
        }

    def _accesses(self) -> dict[str, PortAccess]:
        return {"orders": self.order_access, "md": self.md_access}

    def _listener_stats(self, port: str, access: PortAccess) -> dict[str, int]:
        """One port's `ListenerStats`: its caps (connections, sessions per user), its
        timeouts (login, silence, slow consumers) and its sessions' internal errors."""
        stats = self.port_stats[port]
        stats.open = access.connections.open
        stats.refused = access.connections.refused
        sessions_refused = access.sessions.refused if access.sessions else 0
        out = stats.as_dict()
        out["slow_consumers"] = self.slow_consumers[port]
        out["sessions_refused"] = sessions_refused
        out["limits_hit"] += sessions_refused
        return out

    def live_config(self) -> tuple[str, ...]:
        return (
            "exchange.flow",
            "exchange.ack_latency",
            "exchange.md_latency",
            "exchange.checkpoint_records",
            "exchange.checkpoint_interval_s",
        )

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
        if isinstance(cmd, Inject):
            if cmd.user not in self.passwords:
                raise ValueError(f"unknown user {cmd.user!r}")
            self.jv.venue_event(cmd.user, cmd.kind, cmd.number, cmd.raw)
            self._published()
            seq = len(self.venue.user(cmd.user).stream)
            log.warning(
                "test hook: %s %d put into %s's OUCH stream (now up to sequence %d)",
                cmd.kind,
                cmd.number,
                cmd.user,
                seq,
            )
            return {"sequence": seq}
        if isinstance(cmd, Depth):
            try:
                bids, asks, orders = self.venue.depth(cmd.symbol)
            except KeyError:
                raise ValueError(f"unknown symbol {cmd.symbol!r}") from None
            return DepthInfo(
                symbol=cmd.symbol,
                md_sequence=len(self.venue.md),
                bids=bids,
                asks=asks,
                orders=orders,
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

    async def _file_flow(self) -> None:
        """Play exchange.md_file at md_file_speed x its recorded pace (`MdFile`), in
        batches of what is due; after a restart, on from where the journal left it."""
        jv, md = self.jv, self.jv.md_file
        assert md is not None
        speed = self.ex.md_file_speed
        start = trio.current_time() - md.elapsed_at(jv.file_pos, speed)
        if jv.file_pos < len(md):
            log.info(
                "playing %s from message %d of %d at %gx its recorded pace",
                self.ex.md_file,
                jv.file_pos + 1,
                len(md),
                speed,
            )
        while jv.file_pos < len(md):
            elapsed = trio.current_time() - start
            wait = md.wait_s(jv.file_pos, elapsed, speed)
            if wait > 0:
                await trio.sleep(wait)
                continue
            jv.file_step(min(max(md.due(jv.file_pos, elapsed, speed), 1), MAX_BATCH))
            self._published()
            await trio.sleep(0)  # sessions send what is new before the next batch
        log.info("market-data file played to its end: %s", self.venue.file_counters)

    async def _recorded_flow(self) -> None:
        """Play exchange.md_file (queue model) at md_file_speed x its recorded pace, in
        batches of what is due, as it is read (`RecordedMarket`); after a restart, on
        from the journal's position at the same pace. A file found broken part way
        ends the market there (logged); the venue carries on with our orders."""
        jv, rm = self.jv, self.jv.recorded
        assert rm is not None
        speed = self.ex.md_file_speed
        try:
            start = trio.current_time() - rm.elapsed_at(speed)
            if not rm.done:
                log.info(
                    "playing %s (%s) from message %d at %gx its recorded pace, our orders "
                    "in the queue model",
                    self.ex.md_file,
                    rm.format,
                    jv.file_pos + 1,
                    speed,
                )
            while True:
                elapsed = trio.current_time() - start
                wait = rm.wait_s(elapsed, speed)
                if wait > 0:
                    await trio.sleep(wait)
                    continue
                count = rm.due(elapsed, speed, MAX_BATCH)
                if not count:
                    break
                jv.file_step(count)
                self._published()
                await trio.sleep(0)  # sessions send what is new before the next batch
        except MdFileError as exc:
            log.error("market-data file: %s: the market stops here", exc)
            return
        log.info("market-data file played to its end: %s", self.venue.file_counters)

    def _md_file_status(self) -> dict[str, Any]:
        md, rm, paper = self.jv.md_file, self.jv.recorded, self.venue.paper
        if md is not None:
            return {
                "md_file": {
                    "path": self.ex.md_file,
                    "model": "book",
                    "length": len(md),
                    "position": self.jv.file_pos,
                    **self.venue.file_counters,
                }
            }
        if rm is None or paper is None:
            return {}
        return {
            "md_file": {
                "path": self.ex.md_file,
                "model": "queue",
                "format": rm.format,
                "position": self.jv.file_pos,
                "done": rm.finished,
                **self.venue.file_counters,
                "working": len(paper.orders),
                "unknown_refs": paper.queue.unknown_refs,
                "bad_updates": paper.queue.bad_updates,
            }
        }

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

    def _admit(self, access: PortAccess, port: str, peer: str) -> bool:
        """Count a new connection in, or refuse it at the cap (rate-limited warning)."""
        if access.connections.admit():
            return True
        skipped = access.refused_warning.due(trio.current_time())
        if skipped is not None:
            log.warning(
                "%s port: connection from %s closed: %d connections open, max_connections is %d%s",
                port,
                peer,
                access.connections.open,
                access.connections.limit,
                f" ({skipped} more refused since the last warning)" if skipped else "",
            )
        return False

    async def _refuse(
        self,
        stream: trio.SocketStream,
        access: PortAccess,
        what: str,
        user: str,
        peer: str,
        verdict: Verdict,
    ) -> None:
        """Answer a refused login and log it: a lock-out once, when it starts; any other
        refusal through `_log_refusal` (a guesser must not flood the log)."""
        ex = self.ex
        if verdict.locked_now:
            log.warning(
                "%s login from %s: source %s locked out for %g s after more than %d failed "
                "logins within %g s (last tried user %r); every login from it is refused "
                "until then",
                what,
                peer,
                _source(peer),
                ex.login_lockout_s,
                ex.login_max_failures,
                ex.login_failure_window_s,
                user,
            )
        if verdict.user_locked_now:
            log.warning(
                "%s login from %s: user %r locked out for %g s after more than %d failed "
                "logins for it within %g s from any source; every login as that user is "
                "refused until then",
                what,
                peer,
                user,
                ex.login_lockout_s,
                ex.login_max_failures,
                ex.login_failure_window_s,
            )
        if verdict.locked_out:
            log.debug("%s login refused for %r from %s: %s", what, user, peer, verdict.problem)
        elif not (verdict.locked_now or verdict.user_locked_now):
            self._log_refusal(
                access, "%s login refused for %r from %s: %s", what, user, peer, verdict.problem
            )
        await self._send(stream, soup.login_rejected(verdict.reject))

    def _log_refusal(self, access: PortAccess, msg: str, *args: object) -> None:
        """Warn of a refused login: a few lines, then one per interval saying how many
        were left out (`LogThrottle`, per port)."""
        skipped = access.refused_login_warning.due(trio.current_time())
        if skipped is None:
            return
        if skipped:
            msg += " (%d more refused logins not logged since the last line)"
            args = (*args, skipped)
        log.warning(msg, *args)

    async def _order_session(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        user = ["?"]
        async with stream:
            if not self._admit(self.order_access, "order", peer):
                return
            self.port_stats["orders"].accepted += 1
            try:
                await self._guarded(
                    "orders",
                    f"order session from {peer}",
                    self._order_session_body(stream, peer, user),
                )
            finally:
                self.order_access.connections.release()

    async def _order_session_body(
        self, stream: trio.SocketStream, peer: str, who: list[str]
    ) -> None:
        session = soup.ServerSession()
        login = await self._login(stream, session)
        user = who[0] = login.username
        verdict = self.order_access.authenticate(
            _source(peer), user, login.password, trio.current_time()
        )
        if not verdict.accepted:
            await self._refuse(stream, self.order_access, "order", user, peer, verdict)
            return
        if login.session not in ("", self.ex.session):
            self._log_refusal(
                self.order_access,
                "order login refused for %r from %s: unknown session %r",
                user,
                peer,
                login.session,
            )
            await self._send(stream, soup.login_rejected(soup.REJECT_SESSION_UNAVAILABLE))
            return
        old = self.active.pop(user, None)
        if old is not None:
            log.warning("user %s logged in again from %s: closing the old session", user, peer)
            old.cancel()
        st = self.venue.user(user)
        first = self._first_sequence(login.sequence, st.stream)
        await self._send(stream, soup.login_accepted(self.ex.session, first))
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
        """Apply a client's packets; False once it logged out.

        Without an injected ack latency (`exchange.ack_latency`: a delay before each
        packet, whose answer then goes out at once) nothing here awaits, so no
        writer can run between two of the packets: the writers are woken once for
        all of them (a new trio.Event and a wake-up per order cost ~4% of the venue
        at 25k orders/s)."""
        delayed = self.ack_latency.enabled
        applied = False
        try:
            for ev in events:
                if isinstance(ev, soup.UnsequencedData):
                    msg = ouch.decode_inbound(ev.payload)
                    if delayed:
                        await trio.sleep(self.ack_latency.sample())
                    self.jv.handle(user, ev.payload, msg)  # journaled, then applied
                    if delayed:
                        self._published()  # its delay was its own: it goes out now
                    else:
                        applied = True
                elif isinstance(ev, soup.LogoutRequested):
                    return False
            return True
        finally:
            if applied:  # what was applied goes out, even if a later packet is bad
                self._published()

    async def _md_session(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        async with stream:
            if not self._admit(self.md_access, "market data", peer):
                return
            self.port_stats["md"].accepted += 1
            try:
                await self._guarded(
                    "md", f"market data session from {peer}", self._md_session_body(stream, peer)
                )
            finally:
                self.md_access.connections.release()

    async def _md_session_body(self, stream: trio.SocketStream, peer: str) -> None:
        session = soup.ServerSession()
        login = await self._login(stream, session)
        user = login.username
        verdict = self.md_access.authenticate(
            _source(peer), user, login.password, trio.current_time()
        )
        if not verdict.accepted:
            await self._refuse(stream, self.md_access, "market data", user, peer, verdict)
            return
        if login.session not in ("", self.ex.session):
            self._log_refusal(
                self.md_access,
                "market data login refused for %r from %s: unknown session %r",
                user,
                peer,
                login.session,
            )
            await self._send(stream, soup.login_rejected(soup.REJECT_SESSION_UNAVAILABLE))
            return
        verdict = self.md_access.open_session(user)
        if not verdict.accepted:
            await self._refuse(stream, self.md_access, "market data", user, peer, verdict)
            return
        try:
            await self._md_stream(stream, session, peer, user, login.sequence)
        finally:
            self.md_access.close_session(user)

    async def _md_stream(
        self,
        stream: trio.SocketStream,
        session: soup.ServerSession,
        peer: str,
        user: str,
        sequence: int,
    ) -> None:
        first = self._first_sequence(sequence, self.venue.md)
        await self._send(stream, soup.login_accepted(self.ex.session, first))
        pipelined = session.accept()
        log.info("market data session up: user %r from %s, from sequence %d", user, peer, first)
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
        log.info("market data session closed: user %r from %s", user, peer)

    async def _md_reader(self, stream: trio.SocketStream, session: soup.ServerSession) -> None:
        while True:
            with trio.fail_after(self.ex.heartbeat_timeout_s):
                data = await stream.receive_some(65536)
            if not data or not _md_events(session.receive_data(data)):
                return

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        """Send `data`, or raise _NotReading if the client takes none of it in time."""
        with trio.move_on_after(self.ex.send_timeout_s) as scope:
            await stream.send_all(data)
        if scope.cancelled_caught:  # the stream is out of step now: the session ends
            raise _NotReading(len(data), self.ex.send_timeout_s)

    async def _guarded(self, port: str, what: str, body: Awaitable[None]) -> None:
        """Run a session; log why it ended. Only this session ends, never the venue:
        an error that is no protocol's (our bug met with this client's input) too."""
        stats = self.port_stats[port]
        try:
            await body
        except (Exception, BaseExceptionGroup) as exc:
            leaf = _session_ending(exc)
            now = trio.current_time()
            throttle = self.session_warnings[port]
            if leaf is None:
                while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                    exc = exc.exceptions[0]
                if not isinstance(exc, Exception):  # a cancellation inside a group
                    raise
                stats.errors += 1
                throttle.log(
                    log,
                    logging.ERROR,
                    now,
                    "%s ended by an internal error: %s",
                    what,
                    one_line(exc),
                )
            elif isinstance(leaf, _NotReading):
                stats.timeouts += 1
                self.slow_consumers[port] += 1
                throttle.log(log, logging.WARNING, now, "%s dropped: %s", what, leaf)
            elif isinstance(leaf, RemoteProtocolError):
                throttle.log(
                    log, logging.WARNING, now, "%s ended: protocol error: %s", what, clip(leaf)
                )
            elif isinstance(leaf, trio.TooSlowError):
                stats.timeouts += 1
                throttle.log(log, logging.WARNING, now, "%s ended: peer silent too long", what)
            else:
                self.session_ends[port].log(
                    log, logging.INFO, now, "%s ended: %s", what, clip(leaf) or "connection lost"
                )

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
                await self._send(stream, log_.frames(seq, stop))
                seq = stop
                last_send = trio.current_time()
                continue
            if trio.current_time() - last_send >= interval:
                await self._send(stream, soup.SERVER_HEARTBEAT)
                last_send = trio.current_time()
            with trio.move_on_at(last_send + interval):
                await ev.wait()


def _cancelled(exc: BaseException) -> bool:
    """`exc` is a cancellation (a stop), alone or in groups, nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(trio.Cancelled)
        return match is not None and rest is None
    return isinstance(exc, trio.Cancelled | KeyboardInterrupt)


def _md_events(events: list[soup.ServerSideEvent]) -> bool:
    """Market-data clients may only heartbeat or log out; False once logged out."""
    for ev in events:
        if isinstance(ev, soup.UnsequencedData):
            raise RemoteProtocolError("unsequenced data on the market-data port")
        if isinstance(ev, soup.LogoutRequested):
            return False
    return True


class _NotReading(Exception):
    """The client took none of a send within send_timeout_s: a slow consumer."""

    def __init__(self, size: int, timeout_s: float) -> None:
        super().__init__(
            f"it took none of {size} bytes in {timeout_s:g} s (exchange.send_timeout_s): "
            "not reading its data"
        )


_SESSION_ENDINGS = (
    _NotReading,
    RemoteProtocolError,
    trio.TooSlowError,
    _SessionEnded,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


def _session_ending(exc: BaseException) -> BaseException | None:
    """The session-ending error inside `exc`, or None if `exc` is something else."""
    while isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(_SESSION_ENDINGS)
        if rest is not None or match is None:
            return None
        exc = match.exceptions[0]
    return exc if isinstance(exc, _SESSION_ENDINGS) else None


def _port_access(ex: ExchangeConfig, users: list[UserConfig], *, md: bool) -> PortAccess:
    """One port's access rules from the config. Market data without `md_users` takes any
    login and caps sessions per user; order entry always needs a configured user and keeps
    one session per user by replacing the old one (`_order_session_body`)."""
    return PortAccess(
        users={u.username: u.password for u in users} if users or not md else None,
        throttle=LoginThrottle(
            ex.login_max_failures, ex.login_failure_window_s, ex.login_lockout_s
        ),
        connections=ConnectionCap(ex.max_connections),
        sessions=SessionCap(ex.md_max_sessions_per_user) if md else None,
    )


def _source(peer: str) -> str:
    """The source a "host:port" peer's failed logins are counted by (`source_key`:
    all of loopback is one, IPv6 counts by /64)."""
    return source_key(peer.rpartition(":")[0] or peer)


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"
