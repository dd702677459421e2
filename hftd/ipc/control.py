"""Control socket server (trio) and clients (trio and blocking).

One request frame, one reply frame, any number of times per connection. A
malformed request gets an error reply; it never takes the daemon down.

Who may send: the socket is 0660 in the operator's private run dir, so the
file system decides. Who may answer: every client checks the server's uid
(SO_PEERCRED) is root's or its own before it believes a reply
(`hftd.runtime.rundir.check_peer`), so a socket someone else managed to put
in its way is refused, never obeyed.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from hftd.ipc.framing import FrameError, read_frame, send_frame
from hftd.msg.control import Command, Reply, command_decoder, encoder, reply_decoder
from hftd.runtime.rundir import check_peer

log = logging.getLogger("hftd.control")

Handler = Callable[[Command], Awaitable[Any]]


async def serve_control(
    path: Path,
    handler: Handler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `handler` on a Unix socket at `path` (mode 0660) until cancelled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, 0o660)
        sock.listen(16)
        listener = trio.SocketListener(sock)
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(_serve_one, stream, handler)
    finally:
        sock.close()
        path.unlink(missing_ok=True)


async def _serve_one(stream: trio.SocketStream, handler: Handler) -> None:
    async with stream:
        try:
            while True:
                body = await read_frame(stream)
                if body is None:
                    return
                try:
                    cmd = command_decoder.decode(body)
                except msgspec.DecodeError as exc:
                    reply = Reply(ok=False, error=f"bad request: {exc}")
                else:
                    try:
                        reply = Reply(ok=True, result=await handler(cmd))
                    except ValueError as exc:  # refused (unknown here, not now): no traceback
                        log.warning("control command %s refused: %s", type(cmd).__name__, exc)
                        reply = Reply(ok=False, error=f"{type(exc).__name__}: {exc}")
                    except Exception as exc:  # a command failed; the daemon carries on
                        log.exception("control command %s failed", type(cmd).__name__)
                        reply = Reply(ok=False, error=f"{type(exc).__name__}: {exc}")
                await send_frame(stream, encoder.encode(reply))
        except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.warning("control client dropped: %s", exc)


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
        s.connect(str(path))
        check_peer(s, path)
        body = encoder.encode(cmd)
        s.sendall(struct.pack(">I", len(body)) + body)
        head = _recv_exactly(s, 4)
        (n,) = struct.unpack(">I", head)
        return reply_decoder.decode(_recv_exactly(s, n))


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("control socket closed mid-reply")
        buf += chunk
    return bytes(buf)
