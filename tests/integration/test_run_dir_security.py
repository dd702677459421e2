"""Issue 10 item 3: the run dir is the operator's; hftctl believes only hftd's sockets.

Another local user (uid 65534, via setpriv) pre-creates a world-writable run
dir and serves a fake `gateway.sock` that answers every command with "ok,
halted". `hftd up` must refuse that dir, and `hftctl halt` must refuse to
trust the fake answer instead of printing `gateway: ok {"mode":"halted"}`
while the real gateway keeps trading.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hftd.ipc.control import request_sync
from hftd.msg.control import Halt
from hftd.runtime.rundir import RunDirError
from tests.otheruser import other_users_dir, python_argv, skip_unless_other_user
from tests.support import hftctl, hftd_refused, make_config

pytestmark = pytest.mark.integration

FAKE_SERVER = """
import os, socket, struct, sys
from hftd.msg.control import Reply, encoder
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    with c:
        head = c.recv(4)
        if len(head) == 4:
            left = struct.unpack(">I", head)[0]
            while left > 0:
                chunk = c.recv(left)
                if not chunk:
                    break
                left -= len(chunk)
            body = encoder.encode(Reply(ok=True, result={"mode": "halted"}))
            c.sendall(struct.pack(">I", len(body)) + body)
"""


@pytest.fixture
def squatted_run_dir() -> Iterator[Path]:
    skip_unless_other_user()
    with other_users_dir(0o777) as d:
        yield d


@pytest.fixture
def fake_gateway(squatted_run_dir: Path) -> Iterator[Path]:
    """`gateway.sock` in the other user's dir, served by the other user."""
    sock = squatted_run_dir / "gateway.sock"
    proc = subprocess.Popen(
        python_argv(FAKE_SERVER, str(sock)), stdout=subprocess.PIPE, text=True, cwd="/"
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"  # its socket is bound
        yield sock
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_up_refuses_another_users_run_dir(squatted_run_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"system": {"run_dir": str(squatted_run_dir)}})
    out = hftd_refused(cfg, "up")
    assert f"run dir {squatted_run_dir} is owned by nobody (uid 65534)" in out, out
    assert list(squatted_run_dir.iterdir()) == []  # nothing of ours was put there


def test_daemon_refuses_a_world_writable_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o777)
    cfg = make_config(tmp_path, {"system": {"run_dir": str(run_dir)}})
    out = hftd_refused(cfg, "exchange")
    assert "is writable by every user (mode 0777)" in out, out
    assert not (run_dir / "exchange.sock").exists()


def test_hftctl_refuses_a_fake_gateway(fake_gateway: Path, tmp_path: Path) -> None:
    run_dir = fake_gateway.parent
    cfg = make_config(tmp_path, {"system": {"run_dir": str(run_dir)}})
    for verb in (["halt", "--yes"], ["status"]):
        res = hftctl(cfg, *verb)
        assert res.returncode == 2, (verb, res.stdout, res.stderr)
        assert "refusing" in res.stderr and "owned by nobody" in res.stderr, res.stderr
        assert "ok" not in res.stdout.split(), res.stdout


def test_a_socket_served_by_another_user_is_not_believed(fake_gateway: Path) -> None:
    # Whatever the directory: the answer's sender is checked (SO_PEERCRED).
    with pytest.raises(RunDirError, match=r"served by nobody \(uid 65534\)"):
        request_sync(fake_gateway, Halt())
