"""Length-prefixed msgspec msgpack frames for the Unix-socket control plane.

Frame: ``length u32 big-endian`` · msgpack body. Off the hot path: trio streams.
"""

from __future__ import annotations

import struct

import trio

_LEN = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024


class FrameError(Exception):
    """The peer sent a frame that is too large or the stream ended mid-frame."""


def frame(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


async def _read_exactly(stream: trio.abc.ReceiveStream, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            if buf:
                raise FrameError(f"stream ended {len(buf)} bytes into a {n}-byte read")
            return None
        buf += chunk
    return bytes(buf)


async def read_frame(stream: trio.abc.ReceiveStream) -> bytes | None:
    """One frame's body, or None at a clean end of stream."""
    head = await _read_exactly(stream, 4)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME:
        raise FrameError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    body = await _read_exactly(stream, n)
    if body is None:
        raise FrameError("stream ended before the frame body")
    return body


async def send_frame(stream: trio.abc.SendStream, body: bytes) -> None:
    await stream.send_all(frame(body))
