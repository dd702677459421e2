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

Trust: /dev/shm is world-writable, so another local user could pre-create the
FIFO (or a symlink in its place) to steal or inject wake-ups. `ensure_fifo`
creates it exclusively (``mkfifo`` never replaces or follows anything) and
otherwise accepts only a FIFO owned by this process's effective uid with no
permission bit for "other"; both ends open it ``O_NOFOLLOW`` and check the
opened fd with ``fstat`` (no window between check and use), raising
`hftd.ipc.ring.RingUntrustedError`. The checks run when an fd is opened,
never per bell.
"""

from __future__ import annotations

import errno
import os
import pwd
import select
import stat
import time
from pathlib import Path

_RETRY_OPEN_NS = 1_000_000
_DRAIN_CHUNK = 4096
_OTHER_BITS = 0o007
_KINDS = {
    stat.S_IFREG: "a regular file",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def describe_uid(uid: int) -> str:
    """``uid 65534 (nobody)``: the number always, the name when there is one."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid} (no such user)"


def untrusted_reason(path: Path, st: os.stat_result, want: int, what: str, risk: str) -> str | None:
    """Why `st` (an lstat/fstat of `path`) must not be used, or None if it may be.

    Trusted means: of file type `want` (``stat.S_IFREG``/``S_IFIFO``; so never a
    symlink), owned by this process's effective uid, no permission bit for
    "other". `what` names the object ("ring", "doorbell"); `risk` says what
    another local user could do through it.
    """
    euid = os.geteuid()
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFLNK:
        try:
            target = f" to {os.readlink(path)!r}"
        except OSError:
            target = ""
        return (
            f"{what} {path} is a symbolic link{target}, owned by {describe_uid(st.st_uid)}: "
            f"refusing to follow it — another local user may have planted it to {risk}; "
            f"remove it{_as_root(st, euid)} or choose another rings.prefix"
        )
    if fmt != want:
        return (
            f"{what} {path} is {_KINDS.get(fmt, 'not a plain file')}, not {_KINDS[want]}, "
            f"owned by {describe_uid(st.st_uid)}: refusing to use it — another local user may "
            f"have created it to {risk}; remove it{_as_root(st, euid)} or choose another "
            "rings.prefix"
        )
    if st.st_uid != euid:
        return (
            f"{what} {path} is owned by {describe_uid(st.st_uid)}, not by this process's "
            f"{describe_uid(euid)}: refusing to attach — another local user may have created "
            f"it to {risk}; remove it (as root) or choose another rings.prefix"
        )
    if st.st_mode & _OTHER_BITS:
        mode = stat.S_IMODE(st.st_mode)
        return (
            f"{what} {path} has mode {mode:#o} ({stat.filemode(st.st_mode)}): every local user "
            f"may open it; refusing to attach — another local user may already have it open to "
            f"{risk}, so a chmod is not enough; remove it and let hftd re-create it "
            "(mode 0660 at most, minus the umask)"
        )
    return None


def _as_root(st: os.stat_result, euid: int) -> str:
    return "" if st.st_uid == euid else " (as root)"


def refuse_untrusted(path: Path, st: os.stat_result, want: int, what: str, risk: str) -> None:
    """Raise `RingUntrustedError` if `untrusted_reason` finds one."""
    reason = untrusted_reason(path, st, want, what, risk)
    if reason is not None:
        # imported here: hftd.ipc.ring imports this module (the error is part of its API)
        from hftd.ipc.ring import RingUntrustedError

        raise RingUntrustedError(reason)


_BELL_RISK = "steal or inject wake-ups"


def open_checked(path: Path, flags: int, file_type: int, kind: str, risk: str) -> int:
    """Open `path` (never following a symlink) and refuse it unless it is a file of
    `file_type` that this user owns and other users cannot open (checked on the
    fd: no gap between check and use). FileNotFoundError passes through."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError:
        # ELOOP (a symlink), EISDIR, ENXIO (a socket, or a FIFO with no reader),
        # EACCES (not ours), ...: say why when the file itself is the reason
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is not None:
            refuse_untrusted(path, st, file_type, kind, risk)
        raise
    try:
        refuse_untrusted(path, os.fstat(fd), file_type, kind, risk)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_fifo(path: Path, flags: int) -> int:
    """Open the FIFO at `path` without following a symlink; refuse an untrusted one."""
    return open_checked(path, flags, stat.S_IFIFO, "doorbell", _BELL_RISK)


def ensure_fifo(path: Path, mode: int = 0o660) -> None:
    """Create the FIFO at `path` (`mode` minus the umask) or check the one there.

    ``mkfifo`` creates exclusively and never follows a symlink, so a FIFO it
    made is ours; an existing one must pass `untrusted_reason` (checked with
    ``lstat``; the ends re-check the fd they open).
    """
    try:
        os.mkfifo(path, mode)
    except FileExistsError:
        refuse_untrusted(path, os.lstat(path), stat.S_IFIFO, "doorbell", _BELL_RISK)


class DoorbellListener:
    """Consumer end: an fd that becomes readable when the producer rings."""

    def __init__(self, path: Path) -> None:
        ensure_fifo(path)
        self.path = path
        self._fd = _open_fifo(path, os.O_RDWR)
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
                fd = _open_fifo(self.path, os.O_WRONLY)
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
