"""The run directory: the operator's own, and one system at a time.

The run dir holds what lets someone act as the operator: the control sockets
(halt, flatten, resume), the notify sockets the supervisor trusts for READY,
the web token. So it must be the running user's and nobody else's to change:

- `ensure_private_dir` creates it 0700 (or accepts an existing one) only if it
  is a real directory owned by this user, not writable by other users, and
  every directory above it is owned by root or this user and, if others may
  write there, sticky (so they cannot rename our directory away). Group
  access is allowed: under systemd the run dir is 0770 for an operators'
  group, whose members are trusted as operators.
- `check_trusted_dir` is the client's side (hftctl): the dir it is about to
  trust answers must be owned by root or by the caller.
- `RunLock` is an exclusive `flock` on `<dir>/<name>.lock`, held for the life
  of the process (the kernel drops it when the process dies, even by
  SIGKILL): a second `hftd up`, or a second copy of a daemon, fails at once
  naming the pid that runs, and touches nothing.
- `peer_uid` reads SO_PEERCRED, so a client can check who answers on a socket
  before it believes the answer.

Paths are resolved (symlinks followed) once, and the resolved path is what
the daemons then use: a symlink somewhere along it that another user swaps
later changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import stat
import struct
import time
from pathlib import Path
from typing import Final, Protocol

LOCK_RETRY_S: Final = 1.0  # a lock held by a process that is just exiting is retried this long
_UCRED = struct.Struct("3i")  # pid, uid, gid


class RunDirError(Exception):
    """A path cannot be trusted or used; the message says why and what to do."""


class AlreadyRunning(RunDirError):
    """Another process holds the lock; `pid` is the holder (0 if unknown)."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


def user_name(uid: int) -> str:
    """`name (uid N)` for messages, or `uid N` when the uid has no name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def trusted_uids() -> frozenset[int]:
    """Owners whose files and sockets this process believes: root and itself."""
    return frozenset({0, os.geteuid()})


def _check_parent(parent: Path, child: Path, path: Path) -> None:
    """`parent` must not let another user rename `child` (part of `path`) away."""
    st = os.stat(parent)
    if st.st_uid not in trusted_uids():
        raise RunDirError(
            f"{parent} (above {path}) is owned by {user_name(st.st_uid)}: that user "
            f"could replace {child}; use a directory of your own or root's"
        )
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise RunDirError(
            f"{parent} (above {path}) is writable by every user and not sticky "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): anyone could replace {child}"
        )


def _check_ancestors(path: Path) -> None:
    """Every directory above `path` (resolved) is one another user cannot rename within."""
    child = path
    for parent in path.parents:
        _check_parent(parent, child, path)
        child = parent


def _check_as_written(path: Path, what: str) -> None:
    """Walk `path` as written: a symbolic link another user owns, or a directory
    others may rename entries in, anywhere along it, lets them redirect it later
    (each process resolves the path for itself)."""
    here = Path(path.anchor)
    for part in path.parts[1:]:
        parent, here = here, here / part
        _check_parent(parent, here, path)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            return  # the rest is created by us
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in trusted_uids():
            raise RunDirError(
                f"{what} {path}: {here} is a symbolic link owned by {user_name(st.st_uid)}: "
                "that user could point it elsewhere at any time; refusing it"
            )


def _check_dir(path: Path, st: os.stat_result, owners: frozenset[int], what: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise RunDirError(f"{what} {path} is a symbolic link: refusing it (name the real one)")
    if not stat.S_ISDIR(st.st_mode):
        raise RunDirError(f"{what} {path} is not a directory")
    if st.st_uid not in owners:
        mine = user_name(os.geteuid())
        raise RunDirError(
            f"{what} {path} is owned by {user_name(st.st_uid)}, not by {mine}: "
            "another user could serve fake sockets there; remove it or set system.run_dir "
            "to a directory of your own"
        )
    if st.st_mode & stat.S_IWOTH:
        raise RunDirError(
            f"{what} {path} is writable by every user (mode {stat.S_IMODE(st.st_mode):04o}): "
            f"anyone could replace its sockets; chmod o-w {path}"
        )


def ensure_private_dir(path: Path, what: str = "run dir") -> Path:
    """Create `path` (0700) or accept it if it is ours and private; return it resolved.

    Raises RunDirError naming the problem otherwise. Missing parents are
    created too (with the default mode), then checked like the rest.
    """
    given = Path(os.path.abspath(path))
    _check_as_written(given, what)
    real = Path(os.path.realpath(given))
    try:
        real.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RunDirError(f"cannot create {what} {real}: {exc.strerror}") from exc
    _check_dir(real, os.lstat(real), frozenset({os.geteuid()}), what)
    _check_ancestors(real)
    return real


def check_trusted_dir(path: Path, what: str = "run dir") -> Path:
    """The client's check: `path` exists, is root's or ours, and is not writable by others.

    Raises FileNotFoundError if it does not exist (nothing is running), and
    RunDirError if it exists but cannot be trusted.
    """
    given = Path(os.path.abspath(path))
    if not os.path.lexists(given):
        raise FileNotFoundError(errno.ENOENT, "no run dir", str(given))
    _check_as_written(given, what)
    real = Path(os.path.realpath(given))
    st = os.lstat(real)  # FileNotFoundError: not running
    _check_dir(real, st, trusted_uids(), what)
    _check_ancestors(real)
    return real


class _Sock(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def peer_uid(sock: _Sock) -> int:
    """The uid of the process at the other end of a connected Unix socket."""
    import socket  # here: the config (and so pure modules) import this module

    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(raw)[1])


def check_peer(sock: _Sock, path: Path | str) -> None:
    """Refuse to talk to a socket whose server runs as a user we do not trust."""
    uid = peer_uid(sock)
    if uid not in trusted_uids():
        raise RunDirError(
            f"{path} is served by {user_name(uid)}, not by root or {user_name(os.geteuid())}: "
            "not hftd's; refusing to trust its answers"
        )


class RunLock:
    """An exclusive flock on `<dir>/<name>.lock`, released when the process ends.

    The file holds the holder's pid (for the "already running" message). It
    is never deleted: unlinking a lock file lets two processes lock two
    different files of the same name.
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        busy: str = "",
        hint: str = "stop it first, or use another system.run_dir",
    ) -> None:
        self.path = directory / f"{name}.lock"
        self.name = name
        self.busy = busy or f"{name} is already running"  # what a held lock means
        self.hint = hint  # what to do about it
        self.fd = -1

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunDirError(
                    f"{self.path} is a symbolic link: refusing it; remove it"
                ) from None
            raise RunDirError(
                f"cannot open {self.path}: {exc.strerror} (another user's file? remove it as root)"
            ) from exc
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise RunDirError(
                f"{self.path} is not a regular file of {user_name(os.geteuid())} "
                f"(owner {user_name(st.st_uid)}): refusing it; remove it (as root)"
            )
        return fd

    def acquire(self, retry_s: float = LOCK_RETRY_S) -> None:
        """Take the lock, or raise AlreadyRunning naming the holder's pid."""
        fd = self._open()
        deadline = time.monotonic() + retry_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pid = _read_pid(fd)
                    os.close(fd)
                    who = f"pid {pid}" if pid else "another process"
                    raise AlreadyRunning(
                        f"{self.busy} ({who}, lock {self.path}); {self.hint}", pid
                    ) from None
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the flock
            self.fd = -1


def lock_holder(directory: Path, name: str) -> int | None:
    """The pid holding `<dir>/<name>.lock`, 0 if held by an unknown pid, None if free.

    Probes with a shared lock (held for microseconds); `RunLock.acquire`
    retries, so a daemon starting at that very moment is not refused for it.
    """
    path = directory / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else 0
