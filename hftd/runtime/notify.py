"""sd_notify: READY=1 when the daemon can do its job, WATCHDOG=1 while it lives.

Works the same under systemd and under the embedded supervisor, which serves
NOTIFY_SOCKET itself; does nothing when NOTIFY_SOCKET is unset.
"""

from __future__ import annotations

import logging
import os

import sdnotify
import trio

log = logging.getLogger("hftd.notify")


class Notifier:
    def __init__(self) -> None:
        self._n = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else 0.0

    def ready(self, status: str = "") -> None:
        self._n.notify(f"READY=1\nMAINPID={os.getpid()}" + (f"\nSTATUS={status}" if status else ""))
        log.info("ready%s", f": {status}" if status else "")

    def stopping(self) -> None:
        self._n.notify("STOPPING=1")

    def ping(self) -> None:
        self._n.notify("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping at half the watchdog period from the trio loop (so a stuck loop is noticed)."""
        if not self.watchdog_interval:
            return
        while True:
            self.ping()
            await trio.sleep(self.watchdog_interval)
