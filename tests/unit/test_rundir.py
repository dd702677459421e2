"""The run dir is the running user's own; one process per lock; peers are checked."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from hftd.runtime.rundir import (
    AlreadyRunning,
    RunDirError,
    RunLock,
    check_peer,
    check_trusted_dir,
    ensure_private_dir,
    lock_holder,
)

NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")


def test_created_private(tmp_path: Path) -> None:
    d = ensure_private_dir(tmp_path / "a" / "run")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert d.stat().st_uid == os.geteuid()
    assert ensure_private_dir(d) == d  # an existing one of ours is fine


def test_group_access_is_allowed(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    d.chmod(0o770)  # systemd's RuntimeDirectoryMode for an operators' group
    assert ensure_private_dir(d) == d


def test_writable_by_others_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(RunDirError, match=r"writable by every user \(mode 0777\)"):
        ensure_private_dir(d)
    with pytest.raises(RunDirError, match="writable by every user"):
        check_trusted_dir(d)


@root_only
def test_another_users_dir_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o755)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(RunDirError, match=r"owned by nobody \(uid 65534\)"):
        ensure_private_dir(d)
    with pytest.raises(RunDirError, match="owned by nobody"):
        check_trusted_dir(d)


@root_only
def test_another_users_symlink_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    link = tmp_path / "run"
    link.symlink_to(mine)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(RunDirError, match="symbolic link owned by nobody"):
        ensure_private_dir(link)


def test_own_symlink_resolves_once(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    link = tmp_path / "run"
    link.symlink_to(mine)
    assert ensure_private_dir(link) == mine.resolve()


def test_an_open_parent_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)  # anyone could rename run/ away and put theirs there
    with pytest.raises(RunDirError, match="writable by every user and not sticky"):
        ensure_private_dir(parent / "run")
    parent.chmod(0o1777)  # sticky, like /tmp: only the owner may rename
    assert ensure_private_dir(parent / "run").is_dir()


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    first = RunLock(tmp_path, "hftd")
    first.acquire()
    assert lock_holder(tmp_path, "hftd") == os.getpid()
    with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}") as info:
        RunLock(tmp_path, "hftd").acquire(retry_s=0.05)
    assert info.value.pid == os.getpid()
    first.release()
    assert lock_holder(tmp_path, "hftd") is None
    again = RunLock(tmp_path, "hftd")
    again.acquire()  # free again once the holder let go
    again.release()
    assert lock_holder(tmp_path, "nothing") is None


def test_lock_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "hftd.lock").symlink_to(tmp_path / "x")
    with pytest.raises(RunDirError, match="symbolic link"):
        RunLock(tmp_path, "hftd").acquire()


def test_peer_of_our_own_socket_is_trusted() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        check_peer(a, "<pair>")  # ours: no error


@root_only
def test_another_users_symlink_along_the_path_is_refused(tmp_path: Path) -> None:
    """Each process resolves the path itself: a link someone else owns anywhere
    along it could send different processes to different places."""
    target = tmp_path / "roots"
    target.mkdir(mode=0o755)
    link = tmp_path / "link"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(RunDirError, match=r"link is a symbolic link owned by nobody"):
        ensure_private_dir(link / "run")
    assert not (target / "run").exists()  # refused before anything was created
    (target / "run").mkdir(mode=0o700)
    with pytest.raises(RunDirError, match="symbolic link owned by nobody"):
        check_trusted_dir(link / "run")


@root_only
def test_a_path_through_another_users_dir_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(RunDirError, match=r"is owned by nobody \(uid 65534\): that user could"):
        ensure_private_dir(theirs / "run")
