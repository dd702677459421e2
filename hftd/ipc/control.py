"""Control socket server (trio) and clients (trio and blocking).

One request frame, one reply frame, any number of times per connection. A
malformed request gets an error reply; nothing a client sends takes the daemon
down: whatever answering it raises ends at most that connection.

Who may send: the socket is 0660 in the operator's private run dir, so the
file system decides. Who may answer: every client checks the server's uid
(SO_PEERCRED) is root's or its own before it believes a reply
(`hftd.runtime.rundir.check_peer`), so a socket someone else managed to put
in its way is refused, never obeyed.

Limits (`[control]`, `ControlLimits`): at most `max_connections` open (at
the cap the connection idle longest is closed to make room, or, if every one
is busy, the new one is refused with an error reply); a request of at most
`max_request_bytes`, arriving whole within `request_timeout_s` of its first
byte, its reply taken within the same; `idle_timeout_s` of silence between
requests closes a connection. What a limit did is counted (`ListenerStats`,
in the Status detail under ``listeners.control``) and logged one line at a
time, clipped and rate-limited (`hftd.runtime.logguard`).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import msgspec
import trio

from hftd.config import ControlConfig
from hftd.ipc.framing import HEADER, FrameError, FrameTooLarge, read_frame, send_frame
from hftd.ipc.limits import ListenerStats
from hftd.msg.control import (
    Command,
    Reply,
    Status,
    StatusInfo,
    command_decoder,
    encoder,
    reply_decoder,
)
from hftd.runtime.logguard import LogThrottle, clip, one_line
from hftd.runtime.rundir import check_peer

log = logging.getLogger("hftd.control")

Handler = Callable[[Command], Awaitable[Any]]
ControlLimits = ControlConfig  # the `[control]` section is exactly the server's limits
REPLY_ERROR_CHARS = 1000  # of an error's text echoed to the client
LISTEN_BACKLOG = 64  # connections the kernel queues before we accept them

DEFAULT_LIMITS = ControlLimits()
_served: dict[str, ListenerStats] = {}  # socket file name -> its counters (this process)


def served_stats() -> dict[str, dict[str, int]]:
    """The counters of every control socket this process serves, by socket file name."""
    return {name: stats.as_dict() for name, stats in _served.items()}


class _Conn:
    """One client connection: its cancel scope and since when it waits for a request."""

    __slots__ = ("idle_since", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.idle_since: float | None = None  # None while a request is read or answered


class _Server:
    def __init__(self, path: Path, handler: Handler, limits: ControlLimits) -> None:
        self.path = path
        self.handler = handler
        self.limits = limits
        self.stats = ListenerStats()
        self.conns: set[_Conn] = set()
        # One throttle per kind of trouble: a flood of one does not hide the others.
        self.throttles: dict[str, LogThrottle] = {}

    def warn(self, kind: str, msg: str, *args: object, level: int = logging.WARNING) -> None:
        throttle = self.throttles.get(kind)
        if throttle is None:
            throttle = self.throttles[kind] = LogThrottle(self.limits.log_interval_s)
        throttle.log(log, level, trio.current_time(), f"{self.path.name}: {msg}", *args)

    async def accept_loop(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                if len(self.conns) >= self.limits.max_connections and not self._evict_idle():
                    self.stats.refused += 1
                    self.warn(
                        "refused",
                        "connection refused: %d open, max_connections is %d",
                        len(self.conns),
                        self.limits.max_connections,
                    )
                    nursery.start_soon(self._refuse, stream)
                    continue
                conn = _Conn()
                self.conns.add(conn)
                self.stats.accepted += 1
                self.stats.open = len(self.conns)
                nursery.start_soon(self._serve_one, stream, conn)

    def _evict_idle(self) -> bool:
        """Close the connection waiting longest for its next request; False if none waits."""
        idle = [c for c in self.conns if c.idle_since is not None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.idle_since or 0.0)
        victim.idle_since = None
        victim.scope.cancel()
        self.conns.discard(victim)
        self.stats.evicted += 1
        self.stats.open = len(self.conns)
        self.warn(
            "evicted",
            "at max_connections (%d): closed the connection idle longest to make room",
            self.limits.max_connections,
        )
        return True

    async def _refuse(self, stream: trio.SocketStream) -> None:
        async with stream:
            reply = Reply(
                ok=False,
                error=f"too many control connections (max_connections is "
                f"{self.limits.max_connections}, none idle); try again",
            )
            with (
                trio.move_on_after(self.limits.request_timeout_s),
                suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await send_frame(stream, encoder.encode(reply))

    async def _serve_one(self, stream: trio.SocketStream, conn: _Conn) -> None:
        try:
            with conn.scope:
                async with stream:
                    await self._requests(stream, conn)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        except Exception as exc:  # our bug: end this connection, never the daemon
            self.stats.errors += 1
            self.warn(
                "error",
                "connection ended by an internal error: %s",
                one_line(exc),
                level=logging.ERROR,
            )
        finally:
            self.conns.discard(conn)
            self.stats.open = len(self.conns)

    async def _requests(self, stream: trio.SocketStream, conn: _Conn) -> None:
        lim = self.limits
        while True:
            conn.idle_since = trio.current_time()
            with trio.move_on_after(lim.idle_timeout_s) as idle:
                head = await stream.receive_some(HEADER)
            conn.idle_since = None
            if idle.cancelled_caught:
                self.stats.idle_closed += 1
                log.debug(
                    "%s: closed a connection idle for %g s", self.path.name, lim.idle_timeout_s
                )
                return
            if not head:
                return  # the client closed it
            try:
                with trio.fail_after(lim.request_timeout_s):
                    body = await read_frame(stream, lim.max_request_bytes, head)
            except FrameTooLarge as exc:
                self.stats.oversized += 1
                self.warn("oversized", "request refused: %s (control.max_request_bytes)", exc)
                await self._send(
                    stream,
                    Reply(ok=False, error=f"request refused: {exc} (control.max_request_bytes)"),
                )
                return  # the rest of it is still coming: the stream is out of step
            except trio.TooSlowError:
                self.stats.timeouts += 1
                self.warn(
                    "timeout",
                    "request not received whole within %g s "
                    "(control.request_timeout_s): connection closed",
                    lim.request_timeout_s,
                )
                return
            except FrameError as exc:
                self.warn("dropped", "client dropped mid-request: %s", exc, level=logging.INFO)
                return
            if body is None:
                return
            if not await self._send(stream, await self._answer(body)):
                return

    async def _answer(self, body: bytes) -> Reply:
        try:
            cmd = command_decoder.decode(body)
        except Exception as exc:  # DecodeError, but deep nesting raises RecursionError
            self.stats.bad_requests += 1
            why = f"{type(exc).__name__}: {clip(exc)}"
            self.warn("bad", "bad request of %d bytes: %s", len(body), why)
            return Reply(ok=False, error=f"bad request: {why}")
        name = type(cmd).__name__
        try:
            result = await self.handler(cmd)
        except ValueError as exc:  # refused (unknown here, not now): an answer, not a fault
            self.warn(f"refused {name}", "control command %s refused: %s", name, clip(exc))
            return Reply(ok=False, error=_error_text(exc))
        except Exception as exc:  # a command failed; the daemon carries on
            self.stats.errors += 1
            self.warn(
                f"failed {name}",
                "control command %s failed: %s",
                name,
                one_line(exc),
                level=logging.ERROR,
            )
            return Reply(ok=False, error=_error_text(exc))
        if isinstance(cmd, Status) and isinstance(result, StatusInfo):
            result = self._with_stats(result)
        return Reply(ok=True, result=result)

    def _with_stats(self, info: StatusInfo) -> StatusInfo:
        """The daemon's Status, with this socket's counters under ``listeners.control``."""
        detail = dict(info.detail)
        listeners = detail.get("listeners")
        listeners = dict(listeners) if isinstance(listeners, dict) else {}
        listeners["control"] = self.stats.as_dict()
        detail["listeners"] = listeners
        return msgspec.structs.replace(info, detail=detail)

    async def _send(self, stream: trio.SocketStream, reply: Reply) -> bool:
        """Send a reply within request_timeout_s; False if the client did not take it."""
        try:
            data = encoder.encode(reply)
        except Exception as exc:  # a result msgpack cannot carry: our bug, say so
            self.stats.errors += 1
            self.warn("encode", "reply not encodable: %s", one_line(exc), level=logging.ERROR)
            data = encoder.encode(Reply(ok=False, error=f"internal error: {one_line(exc)}"))
        with trio.move_on_after(self.limits.request_timeout_s) as sending:
            await send_frame(stream, data)
        if sending.cancelled_caught:
            self.stats.timeouts += 1
            self.warn(
                "send timeout",
                "reply not taken within %g s (control.request_timeout_s): connection closed",
                self.limits.request_timeout_s,
            )
            return False
        return True


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {clip(exc, REPLY_ERROR_CHARS)}"


async def serve_control(
    path: Path,
    handler: Handler,
    *,
    limits: ControlLimits | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `handler` on a Unix socket at `path` (mode 0660) until cancelled.

    `limits`: the config's `[control]` (daemons and the supervisor pass theirs);
    None takes the defaults."""
    server = _Server(path, handler, limits or DEFAULT_LIMITS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, 0o660)
        sock.listen(LISTEN_BACKLOG)
        listener = trio.SocketListener(sock)
        _served[path.name] = server.stats
        task_status.started()
        await server.accept_loop(listener)
    finally:
        if _served.get(path.name) is server.stats:
            del _served[path.name]
        sock.close()
        path.unlink(missing_ok=True)


async def _connect(path: Path) -> trio.SocketStream:
    """Connect, and refuse a server that runs as a user we do not trust (SO_PEERCRED)."""
    stream = await trio.open_unix_socket(str(path))
    try:
        check_peer(stream.socket, path)
    except BaseException:
        await stream.aclose()
        raise
    return stream


async def request(path: Path, cmd: Command) -> Reply:
    """Send one command from trio code."""
    stream = await _connect(path)
    async with stream:
        await send_frame(stream, encoder.encode(cmd))
        body = await read_frame(stream)
    if body is None:
        raise ConnectionError(f"{path}: closed without a reply")
    return reply_decoder.decode(body)


class Connection:
    """A kept-open control connection (trio): one connect for many requests.

    Pollers ask every daemon several times a second; a fresh connection each
    time costs the daemon an accept and a new task on top of the answer. Any
    failure closes the connection (the next request reconnects), so a reply
    can never be mistaken for the answer to a later request.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream: trio.SocketStream | None = None
        self.connects = 0

    async def request(self, cmd: Command, *, idempotent: bool = False) -> Reply:
        """Send `cmd` on the kept connection (connecting if needed).

        A kept connection the daemon has closed (it restarted) fails on first
        use. With `idempotent` (Status) the command is sent again on a fresh
        connection; otherwise the error is raised: the daemon may already have
        carried the command out (a Halt must not run twice)."""
        if self.stream is not None:
            try:
                return await self._once(self.stream, cmd)
            except (OSError, FrameError, trio.BrokenResourceError, trio.ClosedResourceError):
                if not idempotent:
                    raise
                # the daemon closed a kept connection (it restarted): reconnect once
        self.stream = await _connect(self.path)
        self.connects += 1
        return await self._once(self.stream, cmd)

    async def _once(self, stream: trio.SocketStream, cmd: Command) -> Reply:
        try:
            await send_frame(stream, encoder.encode(cmd))
            body = await read_frame(stream)
            if body is None:
                raise ConnectionError(f"{self.path}: closed without a reply")
            return reply_decoder.decode(body)
        except BaseException:  # incl. cancellation mid-request: the stream is out of step
            await self.aclose()
            raise

    async def aclose(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()


def request_sync(path: Path, cmd: Command, timeout: float = 5.0) -> Reply:
    """Send one command with a plain blocking socket (hftctl, tests)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        _connect_sync(s, path, time.monotonic() + timeout)
        check_peer(s, path)
        body = encoder.encode(cmd)
        s.sendall(struct.pack(">I", len(body)) + body)
        head = _recv_exactly(s, 4)
        (n,) = struct.unpack(">I", head)
        return reply_decoder.decode(_recv_exactly(s, n))


def _connect_sync(s: socket.socket, path: Path, deadline: float) -> None:
    """Connect, waiting (until `deadline`) while the server's accept queue is full: a
    Unix socket with a timeout says EAGAIN at once then, where a TCP one would wait."""
    while True:
        try:
            s.connect(str(path))
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("control socket closed mid-reply")
        buf += chunk
    return bytes(buf)
