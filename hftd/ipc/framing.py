"""Length-prefixed msgspec msgpack frames for the Unix-socket control plane.

Frame: ``length u32 big-endian`` · msgpack body. Off the hot path: trio streams.

The length is the peer's word: a reader passes the most it will take
(`max_bytes`) and gets `FrameTooLarge` before anything of a larger body is
read. Servers take small requests (`control.max_request_bytes`); clients take
replies up to `MAX_FRAME` (a monitor's Status carries the whole system state).
"""

from __future__ import annotations

import struct

import trio

_LEN = struct.Struct(">I")
HEADER = _LEN.size
MAX_FRAME = 16 * 1024 * 1024  # the largest reply a client takes


class FrameError(Exception):
    """The peer sent a frame that is too large or the stream ended mid-frame."""


class FrameTooLarge(FrameError):
    """A frame's header announces more than the reader takes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


def frame(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


async def _read_exactly(stream: trio.abc.ReceiveStream, n: int, have: bytes = b"") -> bytes | None:
    buf = bytearray(have)
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            if buf:
                raise FrameError(f"stream ended {len(buf)} bytes into a {n}-byte read")
            return None
        buf += chunk
    return bytes(buf)


async def read_frame(
    stream: trio.abc.ReceiveStream, max_bytes: int = MAX_FRAME, head: bytes = b""
) -> bytes | None:
    """One frame's body, or None at a clean end of stream.

    `head`: the frame's first bytes, already received (at most `HEADER`)."""
    header = await _read_exactly(stream, HEADER, head)
    if header is None:
        return None
    (n,) = _LEN.unpack(header)
    if n > max_bytes:
        raise FrameTooLarge(n, max_bytes)
    body = await _read_exactly(stream, n)
    if body is None:
        raise FrameError("stream ended before the frame body")
    return body


async def send_frame(stream: trio.abc.SendStream, body: bytes) -> None:
    await stream.send_all(frame(body))
