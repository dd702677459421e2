"""The operator verbs, one registry for hftctl, the console keymap and the web page.

Each verb names the command it sends, the daemons it goes to, and whether a
person must confirm it first. Front ends differ only in how they ask.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from hftd.config import DAEMONS
from hftd.ipc.control import request, request_sync
from hftd.msg.control import Command, Flatten, Halt, Pause, Reload, Reply, Resume
from hftd.runtime.rundir import RunDirError


class Verb(msgspec.Struct, frozen=True):
    name: str
    command: Command
    targets: tuple[str, ...]  # daemons that receive it
    confirm: bool  # a front end must ask "are you sure?"
    help: str


VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb("pause", Pause(), ("gateway",), False, "hold new orders; working ones stay"),
        Verb("resume", Resume(), ("gateway",), False, "trade again (after pause/halt/breaker)"),
        Verb("halt", Halt(), ("gateway",), True, "kill switch: cancel all, refuse new orders"),
        Verb(
            "flatten",
            Flatten(),
            ("gateway",),
            True,
            "cancel all and close every position with marketable orders",
        ),
        Verb(
            "reload",
            Reload(),
            DAEMONS,
            False,
            "re-read the config; apply what can change live",
        ),
    )
}


def execute(run_dir: Path, verb: Verb, timeout: float = 5.0) -> dict[str, Reply]:
    """Send a verb's command to each target daemon that is running (blocking)."""
    replies: dict[str, Reply] = {}
    for target in verb.targets:
        path = run_dir / f"{target}.sock"
        if not path.exists():
            continue
        try:
            replies[target] = request_sync(path, verb.command, timeout)
        except RunDirError as exc:  # not hftd's socket: its answer means nothing
            replies[target] = Reply(ok=False, error=f"not trusted: {exc}")
        except OSError as exc:
            replies[target] = Reply(ok=False, error=f"{target} unreachable: {exc}")
    return replies


async def execute_async(run_dir: Path, verb: Verb) -> dict[str, Reply]:
    """The same from trio code (console, web server)."""
    replies: dict[str, Reply] = {}
    for target in verb.targets:
        path = run_dir / f"{target}.sock"
        if not path.exists():
            continue
        try:
            replies[target] = await request(path, verb.command)
        except RunDirError as exc:  # not hftd's socket: its answer means nothing
            replies[target] = Reply(ok=False, error=f"not trusted: {exc}")
        except OSError as exc:
            replies[target] = Reply(ok=False, error=f"{target} unreachable: {exc}")
    return replies
