"""Issue 10 item 5: a second start must not destroy the first.

A second `hftd up` with the same config used to remove the running system's
rings and journals, take over its control sockets, and run a second gateway
that fought the first for the venue session. Now it fails at once, naming
the running pid, and touches nothing; a daemon started by hand beside the
running one is refused the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Daemon, hftd_refused, make_config, start_daemon, status_of_up

pytestmark = pytest.mark.integration


@pytest.fixture
def first(tmp_path: Path) -> Iterator[tuple[Path, Daemon]]:
    cfg = make_config(
        tmp_path,
        {
            "daemons": {
                "feed": {"enabled": False},
                "strategy": {"enabled": False},
                "monitor": {"enabled": False},
            },
        },
    )
    with start_daemon("up", cfg) as up:
        yield cfg, up


def _state(run_dir: Path) -> dict[str, Any]:
    """Inode and size of every file in the run dir and below (what a second start could touch)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(run_dir))] = (st.st_ino, st.st_size if p.is_file() else 0)
    return out


def _supervised_pids(up: Daemon) -> dict[str, int]:
    return {name: d["pid"] for name, d in status_of_up(up).items()}


def test_second_up_fails_at_once_and_touches_nothing(first: tuple[Path, Daemon]) -> None:
    cfg, up = first
    run_dir = Path(up.config["system"]["run_dir"])
    pids = _supervised_pids(up)
    journal_dir = Path(up.config["system"]["journal_dir"])
    journals = {p: p.stat() for p in journal_dir.rglob("*.journal")}
    assert journals, "the first system journals nothing?"
    before = _state(run_dir)
    prefix = up.config["rings"]["prefix"]
    rings = {p: p.stat().st_ino for p in Path("/dev/shm").glob(f"{prefix}-*")}
    assert any(p.name.endswith("-orders") for p in rings), rings

    out = hftd_refused(cfg, "up")
    assert f"already running (pid {up.proc.pid}" in out, out

    # The first system's files are the same files, its sockets still its own.
    after = _state(run_dir)
    for name, (ino, _size) in before.items():
        if name.endswith((".sock", ".lock", ".token")) or name.startswith("notify"):
            assert after.get(name, (None,))[0] == ino, f"{name} was replaced"
    for path, st in journals.items():
        assert path.stat().st_ino == st.st_ino and path.stat().st_size >= st.st_size, path
    assert _supervised_pids(up) == pids
    assert {p: p.stat().st_ino for p in rings} == rings  # the same rings, not new ones
    assert up.proc.poll() is None
    assert "logged in again" not in up.log  # no second gateway fought for the session


def test_a_daemon_started_by_hand_beside_it_is_refused(first: tuple[Path, Daemon]) -> None:
    cfg, up = first
    gateway_pid = _supervised_pids(up)["gateway"]
    out = hftd_refused(cfg, "gateway")
    assert f"gateway is already running (pid {gateway_pid}" in out, out
    assert _supervised_pids(up)["gateway"] == gateway_pid
    os.kill(gateway_pid, 0)  # still alive


def test_two_systems_cannot_share_a_journal_dir(
    first: tuple[Path, Daemon], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another config (its own run dir, ports and rings) but the same journal dir
    would journal into the same day: refused, naming the running one."""
    _cfg, up = first
    journal_dir = up.config["system"]["journal_dir"]
    other = make_config(tmp_path_factory.mktemp("other"), {"system": {"journal_dir": journal_dir}})
    out = hftd_refused(other, "up")
    assert f"journal dir {Path(journal_dir).resolve()} is already in use" in out, out
    assert f"pid {up.proc.pid}" in out, out
    # a daemon of it started by hand: its journal has a writer already
    out = hftd_refused(other, "exchange")
    assert "exchange.journal is already in use" in out, out
    assert _supervised_pids(up)["exchange"]
