"""Control-plane commands and replies (Unix socket, msgpack, length-prefixed).

Commands are imperatives, tagged so one decoder serves every daemon. Each
daemon answers the commands it knows and replies `Reply(ok=False, error=...)`
to the others.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Status(msgspec.Struct, tag=True, frozen=True):
    """Report state, pid, uptime and component details."""


class Snapshot(msgspec.Struct, tag=True, frozen=True):
    """Exchange: a user's open orders and fills, for reconciliation."""

    user: str


class Depth(msgspec.Struct, tag=True, frozen=True):
    """Exchange: a symbol's full-depth book and the ITCH sequence it reflects."""

    symbol: str


class DepthInfo(msgspec.Struct, frozen=True):
    symbol: str
    md_sequence: int  # the book includes ITCH messages 1..md_sequence
    bids: list[tuple[int, int]]  # (price, shares), best first
    asks: list[tuple[int, int]]
    orders: dict[int, tuple[str, int, int]]  # order reference -> (side, price, open shares)


Command = Status | Snapshot | Depth


class Reply(msgspec.Struct, frozen=True):
    ok: bool
    result: Any = None
    error: str = ""


class StatusInfo(msgspec.Struct, frozen=True):
    component: str
    pid: int
    state: str
    uptime_s: float
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


command_decoder = msgspec.msgpack.Decoder(Command)
reply_decoder = msgspec.msgpack.Decoder(Reply)
encoder = msgspec.msgpack.Encoder()
