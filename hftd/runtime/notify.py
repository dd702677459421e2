"""sd_notify: READY=1 when the daemon can do its job, WATCHDOG=1 while it lives.

Works the same under systemd and under the embedded supervisor, which serves
NOTIFY_SOCKET itself; does nothing when NOTIFY_SOCKET is unset.
"""

from __future__ import annotations

import contextlib
import logging
import os

import sdnotify
import trio

log = logging.getLogger("hftd.notify")

FAILED_PREFIX = "failed: "  # STATUS= of a daemon that is exiting because it cannot run


class Notifier:
    def __init__(self) -> None:
        self._n = sdnotify.SystemdNotifier()
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and mine else 0.0

    def _send(self, state: str) -> None:
        """One datagram, UTF-8: sdnotify encodes Latin-1 and silently drops what
        does not fit (an em dash in an error message lost the whole STATUS=)."""
        sock = self._n.socket
        if sock is None:
            return
        with contextlib.suppress(OSError):  # nobody listens (any more): nothing to tell
            sock.sendall(state.encode("utf-8", "replace"))

    def ready(self, status: str = "") -> None:
        self._send(f"READY=1\nMAINPID={os.getpid()}" + (f"\nSTATUS={status}" if status else ""))
        log.info("ready%s", f": {status}" if status else "")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")

    def failed(self, reason: str) -> None:
        """Say why the daemon cannot run, just before it exits: `systemctl status`
        shows STATUS=, and the embedded supervisor reports it as the daemon's
        last error (instead of a bare exit code)."""
        text = " ".join(reason.split())[:400]
        self._send(f"STATUS={FAILED_PREFIX}{text}")

    def status(self, text: str) -> None:
        """STATUS=: what the daemon is doing or waiting for (one line)."""
        self._send("STATUS=" + " ".join(text.split())[:400])

    def ping(self) -> None:
        self._send("WATCHDOG=1")

    async def watchdog_loop(self) -> None:
        """Ping at half the watchdog period from the trio loop (so a stuck loop is noticed)."""
        if not self.watchdog_interval:
            return
        while True:
            self.ping()
            await trio.sleep(self.watchdog_interval)


_status: Notifier | None = None


def say_status(text: str) -> None:
    """STATUS= from any part of a daemon, e.g. a venue link that cannot log in while
    the daemon waits for it to become READY: `systemctl status` shows it, and the
    embedded supervisor names it when the daemon is not READY in time."""
    global _status
    if not os.environ.get("NOTIFY_SOCKET"):
        return  # nobody to tell (sdnotify would leave an unclosed socket behind)
    if _status is None:
        _status = Notifier()
    _status.status(text)
