"""`hftctl console`: the urwid dashboard on trio, with the operator's keys.

urwid runs on trio (`urwid.TrioEventLoop.run_async`) beside a refresh task
that fetches the state (`hftd.console.source`) every `refresh_s` (0.5 s by
default: twice a second) and redraws. Keys go through the same verb
registry as `hftctl` and the web page (`hftd.ctl.registry`): a verb marked
`confirm` (flatten, halt) opens a dialog first and is sent only on `Y`.

    P pause   R resume   F flatten (confirm)   H halt (confirm)   Q quit
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import trio
import urwid

from hftd.config import HftdConfig
from hftd.console.source import StateSource
from hftd.console.views import PALETTE, Dashboard, confirm_dialog
from hftd.ctl.registry import VERBS, Verb, execute_async
from hftd.msg.control import Reply

KEYMAP = {"p": "pause", "r": "resume", "f": "flatten", "h": "halt"}


def describe(verb: str, replies: dict[str, Reply]) -> str:
    """One line for the footer: what each target said."""
    if not replies:
        return f"{verb}: nothing running to send it to"
    parts = []
    for target, r in replies.items():
        if r.ok:
            result = msgspec.json.encode(r.result).decode() if r.result is not None else ""
            parts.append(f"{target} ok {result}".rstrip())
        else:
            parts.append(f"{target} REFUSED: {r.error}")
    return f"{verb}: " + "; ".join(parts)


class ConsoleApp:
    def __init__(
        self, cfg: HftdConfig, run_dir: Path, refresh_s: float = 0.5, mode: str = "auto"
    ) -> None:
        self.run_dir = run_dir
        self.refresh_s = refresh_s
        self.source = StateSource(cfg, run_dir, mode)
        self.dash = Dashboard()
        self.loop: urwid.MainLoop | None = None
        self.nursery: trio.Nursery | None = None
        self.pending: Verb | None = None  # a verb waiting for its confirmation
        self.refreshed = trio.Event()
        self.wake = trio.Event()

    # --- keys (urwid calls these) -------------------------------------------------------

    def on_key(self, key: str | tuple[str, int, int, int]) -> bool:
        if not isinstance(key, str):
            return False
        if self.pending is not None:
            verb, self.pending = self.pending, None
            self._close_dialog()
            if key in ("y", "Y"):
                self._send(verb)
            else:
                self.dash.set_message(f"{verb.name}: not confirmed; nothing sent")
            return True
        k = key.lower()
        if k == "q":
            raise urwid.ExitMainLoop()
        name = KEYMAP.get(k)
        if name is None:
            return False
        verb = VERBS[name]
        if verb.confirm:
            self.pending = verb
            if self.loop is not None:
                self.loop.widget = confirm_dialog(self.dash.widget, verb.name, verb.help)
        else:
            self._send(verb)
        return True

    def _close_dialog(self) -> None:
        if self.loop is not None:
            self.loop.widget = self.dash.widget

    def _send(self, verb: Verb) -> None:
        self.dash.set_message(f"{verb.name}: sending...")
        if self.nursery is not None:
            self.nursery.start_soon(self._act, verb)

    async def _act(self, verb: Verb) -> None:
        replies = await execute_async(self.run_dir, verb)
        self.dash.set_message(time.strftime("%H:%M:%S ") + describe(verb.name, replies))
        self.wake.set()  # show the effect now

    # --- refresh ----------------------------------------------------------------------

    async def refresh_loop(self) -> None:
        while True:
            note = ""
            try:
                state = await self.source.fetch()
            except Exception as exc:  # keep the screen alive whatever happened
                state = None
                note = f"no state: {type(exc).__name__}: {exc}"
            self.dash.update(state, note)
            if self.loop is not None:
                self.loop.draw_screen()
            self.refreshed.set()
            with trio.move_on_after(self.refresh_s):
                await self.wake.wait()
            self.wake = trio.Event()

    async def run(self) -> None:
        evl = urwid.TrioEventLoop()
        self.loop = urwid.MainLoop(
            self.dash.widget,
            PALETTE,
            event_loop=evl,
            unhandled_input=self.on_key,
            handle_mouse=False,
        )
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self.refresh_loop)
            with self.loop.start():
                await evl.run_async()
            nursery.cancel_scope.cancel()


def run_console(cfg: HftdConfig, run_dir: Path, refresh_s: float = 0.5, mode: str = "auto") -> int:
    trio.run(ConsoleApp(cfg, run_dir, refresh_s, mode).run)
    return 0
