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


class Reload(msgspec.Struct, tag=True, frozen=True):
    """Re-read the config file; apply what can change live, refuse the rest."""


class ReloadResult(msgspec.Struct, frozen=True):
    applied: list[str]  # config paths now in force
    refused: list[str]  # paths that need a restart (nothing was applied if any)
    error: str = ""  # the new file is invalid (nothing was applied)
    ignored: list[str] = msgspec.field(default_factory=list)  # another daemon's sections


class Hang(msgspec.Struct, tag=True, frozen=True):
    """Probe daemon only: block the event loop (tests watchdog supervision)."""

    seconds: float


class DaemonStatus(msgspec.Struct, frozen=True):
    """One supervised daemon as the supervisor sees it."""

    name: str
    state: str  # starting, ready, restarting, stopping, stopped, failed
    pid: int
    uptime_s: float
    restarts: int
    last_error: str
    last_recovery_ms: float  # death -> READY=1 of the latest restart (0 if none)
    process: str = ""  # the process running this component, if not its own ("hotpath")


class Resync(msgspec.Struct, tag=True, frozen=True):
    """Feed: publish MD_RESET and replay the venue's stream from sequence 1."""


class Disconnect(msgspec.Struct, tag=True, frozen=True):
    """Exchange: drop every session of a kind ("md" or "orders"); tests and drills."""

    kind: str


class Inject(msgspec.Struct, tag=True, frozen=True):
    """Exchange test and drill hook, never part of trading: put a venue-side message
    into `user`'s OUCH stream, as a real venue sends them on its own (journaled, so
    it survives a restart). `kind`: "broken_trade" (every fill of the user with match
    number `number`), "priority_update" (the live order with UserRefNum `number`),
    "raw" (`raw` as the message, whatever it is). Reply: {"sequence": n}."""

    user: str
    kind: str
    number: int = 0
    raw: bytes = b""


class Pause(msgspec.Struct, tag=True, frozen=True):
    """Gateway: hold new orders (working ones stay); undone by Resume."""


class Resume(msgspec.Struct, tag=True, frozen=True):
    """Gateway: back to ACTIVE after Pause, Halt or a tripped circuit breaker."""


class Halt(msgspec.Struct, tag=True, frozen=True):
    """Gateway kill switch: cancel every working order, refuse new ones until Resume."""

    reason: str = "operator halt"


class Flatten(msgspec.Struct, tag=True, frozen=True):
    """Gateway: cancel working orders, close every position with marketable orders
    through the risk path (REDUCING), then stay REDUCING until Resume."""


class WebAccess(msgspec.Struct, tag=True, frozen=True):
    """Monitor: the web dashboard's operator link (URL with the per-run token).

    Asked over the monitor's control socket, so only who may use that socket
    (the operator) gets it; the reply is ``{"url": ...}``."""


Command = (
    Status
    | Snapshot
    | Depth
    | Reload
    | Hang
    | Resync
    | Disconnect
    | Inject
    | Pause
    | Resume
    | Halt
    | Flatten
    | WebAccess
)


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
