"""Named-FIFO doorbell: how a ring producer wakes a consumer that said it sleeps.

Why a FIFO (and not an eventfd or a futex):

- It has a name. Producer and consumer are unrelated processes, started and
  restarted independently by the supervisor; an eventfd is anonymous and would
  need a Unix-socket rendezvous with ``SCM_RIGHTS`` to be shared, re-done after
  every restart. A FIFO next to the ring (``/dev/shm/<ring>.bell``) is found by
  both sides from the ring name alone and outlives them, like the ring.
- It is pollable. The consumer's end is an ordinary fd, so a blocking consumer
  ``poll()``s it and a trio consumer can ``await trio.lowlevel.wait_readable(fd)``.
  A futex is cheaper to wake but cannot be polled, so trio could not wait on it.
- Waking costs the same as an eventfd (one ``write`` syscall, one wake-up);
  the producer pays it only when the consumer announced that it sleeps.

Ends:

- `DoorbellListener` (consumer): opens the FIFO ``O_RDWR | O_NONBLOCK``, so the
  open never blocks, the FIFO always has a reader while the consumer lives
  (the producer's write never fails with ``EPIPE``), and it never sees EOF.
- `DoorbellRinger` (producer): opens ``O_WRONLY | O_NONBLOCK`` lazily, on the
  first ring. ``ENXIO``/``ENOENT`` (no consumer has it open) and ``EAGAIN``
  (64 KiB of unread bells: the consumer will wake anyway) are ignored; ``EPIPE``
  (the consumer exited) closes the fd so the next ring re-opens it. A failed
  open is retried at most once per millisecond so a consumer that died while
  announcing sleep cannot make every write pay an ``open`` syscall.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from pathlib import Path

_RETRY_OPEN_NS = 1_000_000
_DRAIN_CHUNK = 4096


def ensure_fifo(path: Path, mode: int = 0o660) -> None:
    """Create the FIFO at `path` unless it exists; refuse a non-FIFO there."""
    try:
        os.mkfifo(path, mode)
    except FileExistsError:
        st = os.stat(path)
        if not stat.S_ISFIFO(st.st_mode):
            raise FileExistsError(
                errno.EEXIST, "doorbell path exists and is not a FIFO", str(path)
            ) from None


class DoorbellListener:
    """Consumer end: an fd that becomes readable when the producer rings."""

    def __init__(self, path: Path) -> None:
        ensure_fifo(path)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self.drain()  # bells rung for a previous incarnation are stale

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout_ms: float) -> bool:
        """Block until rung or `timeout_ms` passed (1 ms granularity); True if rung."""
        return bool(self._poll.poll(timeout_ms))

    def drain(self) -> int:
        """Consume every pending bell; return how many bytes there were."""
        total = 0
        while True:
            try:
                chunk = os.read(self._fd, _DRAIN_CHUNK)
            except BlockingIOError:
                return total
            total += len(chunk)
            if len(chunk) < _DRAIN_CHUNK:
                return total

    def close(self) -> None:
        if self._fd >= 0:
            self._poll.unregister(self._fd)
            os.close(self._fd)
            self._fd = -1


class DoorbellRinger:
    """Producer end. `ring()` never blocks and never raises for a missing consumer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._retry_at = 0

    def ring(self) -> bool:
        """Write one bell byte; True if the consumer has (or already had) a bell pending."""
        fd = self._fd
        if fd < 0:
            now = time.monotonic_ns()
            if now < self._retry_at:
                return False
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno in (errno.ENXIO, errno.ENOENT):
                    self._retry_at = now + _RETRY_OPEN_NS
                    return False
                raise
            self._fd = fd
        try:
            os.write(fd, b"\x01")
        except BlockingIOError:
            return True  # pipe full of unread bells: the consumer is going to wake
        except BrokenPipeError:
            self.close()
            return False
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
