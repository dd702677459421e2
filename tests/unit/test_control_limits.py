"""Control sockets against hostile clients (issue 11, items 6-8), in-process.

No input ends the server; requests are bounded in size and time; connections
are capped (the longest-idle one makes room); what the limits did is counted
in the Status it serves and logged a line at a time, clipped and rate-limited.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from hftd.config import ControlConfig
from hftd.ipc.control import Connection, serve_control
from hftd.ipc.framing import FrameTooLarge, read_frame, send_frame
from hftd.msg.control import Command, Reply, Snapshot, Status, StatusInfo, reply_decoder

LIMITS = ControlConfig(
    max_connections=4, max_request_bytes=8192, request_timeout_s=0.3, idle_timeout_s=1.0
)
DEEP = b"\x82\xa4type\xa6Status\xa1x" + b"\x91" * 5000 + b"\xc0"  # ~5 KB, 5,000 deep


async def handle(cmd: Command) -> Any:
    if isinstance(cmd, Status):
        return StatusInfo(
            component="probe", pid=1, state="running", uptime_s=0.0, detail={"hangs": 0}
        )
    if isinstance(cmd, Snapshot):
        raise ValueError(f"unknown user {cmd.user!r}")
    raise RuntimeError(f"cannot do {cmd!r}")


def run_server(
    tmp_path: Path,
    body: Callable[[Path], Awaitable[None]],
    limits: ControlConfig = LIMITS,
) -> None:
    path = tmp_path / "probe.sock"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_control(
                    path, handle, limits=limits, task_status=task_status
                )
            )
            await body(path)
            nursery.cancel_scope.cancel()

    trio.run(main)


async def raw(path: Path, data: bytes) -> Reply | None:
    """Send raw bytes as one client; the reply, or None if the server closed unanswered."""
    async with await trio.open_unix_socket(str(path)) as s:
        await s.send_all(data)
        body = await read_frame(s)
    return None if body is None else reply_decoder.decode(body)


async def status(path: Path) -> dict[str, Any]:
    conn = Connection(path)
    try:
        with trio.fail_after(5):
            reply = await conn.request(Status())
    finally:
        await conn.aclose()
    assert reply.ok, reply.error
    result: dict[str, Any] = reply.result
    return result


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_a_deeply_nested_request_is_answered_with_an_error(tmp_path: Path) -> None:
    """5,000 levels of msgpack arrays make msgspec raise RecursionError, not DecodeError:
    before, it left the connection's task and ended the daemon."""

    async def body(path: Path) -> None:
        reply = await raw(path, frame(DEEP))
        assert reply is not None and not reply.ok
        assert reply.error.startswith("bad request: RecursionError")
        st = await status(path)  # still serving
        assert st["detail"]["listeners"]["control"]["bad_requests"] == 1

    run_server(tmp_path, body)


def test_an_oversized_request_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async def body(path: Path) -> None:
        # The header says 16 MiB; only a little follows. The server answers at once.
        reply = await raw(path, struct.pack(">I", 16 << 20) + b"\0" * 4096)
        assert reply is not None and not reply.ok
        assert "exceeds the limit of 8192" in reply.error
        stats = (await status(path))["detail"]["listeners"]["control"]
        assert stats["oversized"] == 1 and stats["limits_hit"] == 1

    run_server(tmp_path, body)


def test_a_request_must_arrive_in_time_and_idle_connections_close(tmp_path: Path) -> None:
    async def body(path: Path) -> None:
        async with await trio.open_unix_socket(str(path)) as slow:
            await slow.send_all(frame(msgspec.msgpack.encode({"type": "Status"}))[:3])
            with trio.fail_after(3):
                assert await slow.receive_some(1) == b""  # closed after request_timeout_s
        async with await trio.open_unix_socket(str(path)) as idle:
            with trio.fail_after(3):
                assert await idle.receive_some(1) == b""  # closed after idle_timeout_s
        stats = (await status(path))["detail"]["listeners"]["control"]
        assert stats["timeouts"] == 1 and stats["idle_closed"] == 1

    run_server(tmp_path, body)


def test_a_reply_the_client_does_not_read_times_out(tmp_path: Path) -> None:
    """A client that sends requests and never reads blocks only its own connection."""

    async def body(path: Path) -> None:
        async with await trio.open_unix_socket(str(path)) as greedy:
            request = frame(msgspec.msgpack.encode({"type": "Status"}))
            with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError):
                while True:  # until the server stops reading: it gave up on the replies
                    await greedy.send_all(request * 64)
            stats = (await status(path))["detail"]["listeners"]["control"]
            assert stats["timeouts"] == 1

    run_server(tmp_path, body)


def test_connections_are_capped_the_longest_idle_makes_room(tmp_path: Path) -> None:
    """30 idle connections: at most max_connections stay open, and a new client (the
    operator's hftctl) is still answered: the connection idle longest is closed for it."""

    async def body(path: Path) -> None:
        idle = [await trio.open_unix_socket(str(path)) for _ in range(30)]
        await trio.sleep(0.05)
        st = await status(path)
        stats = st["detail"]["listeners"]["control"]
        assert st["detail"]["hangs"] == 0  # the daemon's own detail is kept
        assert stats["open"] <= LIMITS.max_connections
        assert stats["evicted"] >= 30 + 1 - LIMITS.max_connections
        closed = 0
        for s in idle:
            with trio.move_on_after(0.05):
                closed += await s.receive_some(1) == b""
            await s.aclose()
        assert closed >= 30 - LIMITS.max_connections

    run_server(tmp_path, body)


def test_busy_connections_at_the_cap_refuse_a_new_one_with_an_error(tmp_path: Path) -> None:
    async def body(path: Path) -> None:
        partial = frame(msgspec.msgpack.encode({"type": "Status"}))[:5]
        busy = []
        for _ in range(LIMITS.max_connections):  # each in the middle of a request
            s = await trio.open_unix_socket(str(path))
            await s.send_all(partial)
            busy.append(s)
        await trio.sleep(0.05)
        async with await trio.open_unix_socket(str(path)) as extra:
            body_ = await read_frame(extra)
        assert body_ is not None
        reply = reply_decoder.decode(body_)
        assert not reply.ok and "too many control connections" in reply.error
        for s in busy:
            await s.aclose()
        stats = (await status(path))["detail"]["listeners"]["control"]
        assert stats["refused"] == 1

    run_server(tmp_path, body)


def test_failed_commands_log_one_clipped_line_each_and_not_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 60 KB user name made a 60 KB log line (and reply); a stream of them, as many
    lines. Now: one line each, 200 characters of it, a few lines, then a count."""
    limits = msgspec.structs.replace(LIMITS, max_request_bytes=65536)
    user = "U" * 60_000

    async def body(path: Path) -> None:
        conn = Connection(path)
        for _ in range(50):
            reply = await conn.request(Snapshot(user))
            assert not reply.ok and len(reply.error) < 1100
        for _ in range(50):
            reply = await conn.request(Status(), idempotent=True)
            assert reply.ok
        await conn.aclose()
        for _ in range(50):
            assert (await raw(path, frame(DEEP))) is not None

    with caplog.at_level(logging.INFO, logger="hftd.control"):
        run_server(tmp_path, body, limits)
    lines = [r.getMessage() for r in caplog.records]
    assert 2 <= len(lines) <= 8, lines
    assert all(len(line) < 400 and "\n" not in line for line in lines), lines
    assert any(line.endswith(" chars)") and "(600" in line for line in lines), lines
    assert not any(r.exc_info for r in caplog.records)  # no tracebacks


def test_read_frame_refuses_a_large_header_before_reading_the_body() -> None:
    async def main() -> None:
        a, b = trio.testing.memory_stream_pair()
        await a.send_all(struct.pack(">I", 1 << 24))
        with pytest.raises(FrameTooLarge) as info:
            await read_frame(b, max_bytes=65536)
        assert info.value.size == 1 << 24 and info.value.limit == 65536
        await send_frame(a, b"x" * 10)
        assert await read_frame(b, max_bytes=10) == b"x" * 10

    trio.run(main)


def test_control_limits_are_not_live_in_the_monitor() -> None:
    """The monitor takes reloads of sections it does not use; [control] it does use (its
    own socket's limits, read at start): a change there must be refused, not ignored."""
    from hftd.config import load_config
    from hftd.monitor.daemon import MonitorService
    from tests.support import DEFAULT_CONFIG

    live = MonitorService(load_config(DEFAULT_CONFIG)).live_config()
    assert "risk" in live
    assert not any(
        p == "control.max_connections" or "control.max_connections".startswith(p + ".")
        for p in live
    )


def test_a_request_cannot_forge_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """msgspec's error quotes what it could not take: {"type": "Status\\n<a line>"} put
    the peer's newline, escape sequences and NULs into the log (found by tests/fuzz)."""
    forged = "Status\n[2026-01-01 00:00:00.000] [GATE  ] WARNING: halted\x1b[2J\x00"
    tag = forged.encode()

    async def body(path: Path) -> None:
        reply = await raw(path, frame(b"\x81\xa4type" + bytes([0xD9, len(tag)]) + tag))
        assert reply is not None and not reply.ok and "\n" not in reply.error

    with caplog.at_level(logging.INFO, logger="hftd.control"):
        run_server(tmp_path, body)
    (line,) = [r.getMessage() for r in caplog.records if "bad request" in r.getMessage()]
    assert line.isprintable() and "Status\\n[2026" in line and "\\x1b[2J\\x00" in line
