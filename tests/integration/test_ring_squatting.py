"""Ring squatting (issue 10, item 1): another local user pre-creates the rings.

/dev/shm is world-writable. A real second uid (``nobody``, via ``setpriv``)
creates ``<prefix>-orders``, ``-executions`` and ``-md`` with valid headers at
mode 0666 before the daemons start, and puts an order in the orders ring. The
daemons must refuse to attach (and say which file and whose it is) rather than
read it: before the fix the gateway attached and sent that order to the venue
under the firm's login.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hftd.ipc.ring import OFF_TAIL, SHM_DIR
from hftd.msg.control import Snapshot
from tests.support import ROOT, ask, make_config, start_daemon

pytestmark = pytest.mark.integration

NOBODY = 65534
EDGES = ("md", "risk_md", "executions", "orders")
SETPRIV = shutil.which("setpriv")

# Run as `nobody` with umask 0: hftd's own Ring.create, asked for mode 0o666.
SQUATTER = """
import sys
import msgspec
from hftd.ipc.ring import Ring
from hftd.msg.hot import CMD_HEARTBEAT, CMD_NEW, OrderCommand

prefix = sys.argv[1]
enc = msgspec.msgpack.Encoder()
for arg in sys.argv[2:]:
    edge, capacity = arg.split("=")
    ring = Ring.create(f"{prefix}-{edge}", int(capacity), mode=0o666)
    if edge == "orders":  # what the squatter is after: an order under the firm's login
        ring.write(enc.encode(OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "mr1", 0, 0)))
        ring.write(
            enc.encode(OrderCommand(CMD_NEW, 1, "AAPL", "B", 100, 1894000, "0", 0, "mr1", 0, 0))
        )
    ring.close()
print("squatted")
"""


def _owner(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid} (no such user)"


def _as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` run by this venv's python as uid/gid 65534, no groups, umask 0."""
    assert SETPRIV is not None
    cmd = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run(
        [*cmd, sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        umask=0,
        check=False,
    )


@pytest.fixture(scope="module")
def second_user() -> None:
    """Skip unless this test can really run code as another local uid."""
    if os.geteuid() != 0:
        pytest.skip("needs root: running a process as uid 65534 (setpriv --reuid) is root-only")
    if SETPRIV is None:
        pytest.skip("setpriv (util-linux) is not installed")
    probe = _as_nobody("import os, hftd.ipc.ring; print(os.geteuid())")
    if probe.returncode != 0 or probe.stdout.strip() != str(NOBODY):
        pytest.skip(
            f"uid {NOBODY} cannot run {sys.executable} and import hftd from {ROOT} "
            f"(exit {probe.returncode}): {probe.stderr.strip()[-500:]}"
        )


@pytest.fixture
def squatted(second_user: None, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A config whose three rings `nobody` created first: (config path, ring prefix)."""
    cfg = make_config(tmp_path)
    rings: dict[str, Any] = tomllib.loads(cfg.read_text())["rings"]
    prefix = rings["prefix"]
    try:
        args = [f"{edge}={rings[f'{edge}_capacity']}" for edge in EDGES]
        done = _as_nobody(SQUATTER, prefix, *args)
        assert done.returncode == 0 and "squatted" in done.stdout, done.stderr
        for edge in EDGES:  # the premise: the other user's files, open to everyone
            for path in (SHM_DIR / f"{prefix}-{edge}", SHM_DIR / f"{prefix}-{edge}.bell"):
                st = path.lstat()
                assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o666), path
        yield cfg, prefix
    finally:  # root may remove another user's files; hidden temporaries too
        for path in [*SHM_DIR.glob(f"{prefix}-*"), *SHM_DIR.glob(f".{prefix}-*")]:
            path.unlink(missing_ok=True)


def _refused(component: str, cfg: Path) -> str:
    """Start `component`; it must exit non-zero before READY. Returns its log."""
    with (
        pytest.raises(RuntimeError, match=f"{component} not ready") as err,
        start_daemon(component, cfg, ready_timeout=60),
    ):
        pass
    text = str(err.value)
    code = re.search(r"not ready \(exit (-?\d+|None)\)", text)
    assert code is not None and code.group(1) not in ("0", "None"), text[:300]
    return text


def _untrusted_line(prefix: str, edge: str) -> str:
    return (
        f"ring {SHM_DIR}/{prefix}-{edge} is owned by {_owner(NOBODY)}, "
        f"not by this process's {_owner(os.geteuid())}: refusing to attach"
    )


def test_gateway_refuses_squatted_rings_and_sends_nothing(squatted: tuple[Path, str]) -> None:
    cfg, prefix = squatted
    orders = SHM_DIR / f"{prefix}-orders"
    with start_daemon("exchange", cfg) as ex:
        before = ask(ex, "exchange", Snapshot("HFTD"))
        log = _refused("gateway", cfg)
        assert _untrusted_line(prefix, "orders") in log, log
        assert "remove it (as root) or choose another rings.prefix" in log
        after = ask(ex, "exchange", Snapshot("HFTD"))
        assert not after["open_orders"] and not after["fills"], after
        assert after == before  # no order, no sequenced message: the venue saw nothing
    # the squatter's order is still unread, its files untouched
    tail = int.from_bytes(orders.read_bytes()[OFF_TAIL : OFF_TAIL + 8], "little")
    assert tail == 0
    assert orders.lstat().st_uid == NOBODY


@pytest.mark.parametrize(("component", "first"), [("strategy", "md"), ("feed", "md")])
def test_ring_users_refuse_squatted_rings(
    squatted: tuple[Path, str], component: str, first: str
) -> None:
    cfg, prefix = squatted
    with start_daemon("exchange", cfg):
        log = _refused(component, cfg)
    assert _untrusted_line(prefix, first) in log, log


def test_under_up_the_refusal_is_reported_and_not_retried(squatted: tuple[Path, str]) -> None:
    """`hftctl status` shows why (not "exited with code 1"), and a refusal a
    restart cannot cure is retried only after a backoff, not in a loop."""
    from tests.support import deep_merge, dump_toml, hftctl, status_of_up

    cfg, prefix = squatted
    data = deep_merge(
        tomllib.loads(cfg.read_text()),
        {"daemons": {name: {"enabled": False} for name in ("gateway", "strategy", "monitor")}},
    )
    cfg.write_text(dump_toml(data))
    with start_daemon("up", cfg) as up:
        feed = status_of_up(up)["feed"]
        assert feed["state"] in ("backoff", "starting"), feed  # retried slowly
        assert _untrusted_line(prefix, "md") in feed["last_error"], feed
        assert "exited with code 2" in feed["last_error"], feed
        assert 1 <= feed["restarts"] <= 2, feed  # retried only after a backoff (1 s, 2 s)
        assert "refuses to run; retrying in" in up.log
        res = hftctl(cfg, "status")
        assert _untrusted_line(prefix, "md") in res.stdout, res.stdout
        assert "cannot remove ring" in up.log  # the supervisor left nobody's files alone
