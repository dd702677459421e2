"""Issue 10 items 7 and 8: stopping always works; children never depend on the cwd.

- A port already taken: the exchange says so ("market data port N … is in use",
  shown by `hftctl status`), the daemons that need it are not started, and
  `hftd up` still stops at the first SIGTERM (it used to ignore SIGTERM and
  SIGINT for minutes, waiting for a daemon it had never started).
- A daemon that is not READY (no venue) honours SIGTERM.
- A second SIGTERM kills what did not stop, at once.
- `hftd up` SIGKILLed leaves no daemon behind.
- `hftd up` run from a directory holding a folder named `hftd` starts the real
  package's daemons.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hftd.ipc.control import request_sync
from hftd.msg.control import Hang
from tests.support import (
    ROOT,
    Daemon,
    hftctl,
    make_config,
    start_daemon,
    status_of_up,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.layouts]

ONLY_EXCHANGE: dict[str, Any] = {
    "feed": {"enabled": False},
    "gateway": {"enabled": False},
    "strategy": {"enabled": False},
    "monitor": {"enabled": False},
}


def processes_with(arg: str) -> list[int]:
    """Pids whose command line has `arg` (a test's own config path: its daemons)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if arg.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    """Running (a zombie whose new parent has not reaped it yet has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def sigterm_while_starting(component: str, cfg: Path, log: Path) -> float:
    """Start a daemon, SIGTERM it as soon as its control socket is served (its
    signal handling is in place by then); it must exit 0. Seconds it took."""
    run_dir = Path(tomllib.loads(cfg.read_text())["system"]["run_dir"])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hftd.cli", component, "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_for(lambda: (run_dir / f"{component}.sock").exists(), 30, f"{component} socket")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        return time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_port_in_use_is_reported_retried_and_sigterm_stops_at_once(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "supervisor": {
                "flap_max_restarts": 2,
                "flap_window_s": 60.0,
                "backoff_min_s": 0.5,
                "backoff_max_s": 1.0,
            },
            "daemons": {"monitor": {"enabled": False}},
        },
    )
    conf = tomllib.loads(cfg.read_text())
    md_port = conf["exchange"]["md_port"]
    with start_daemon_up_blocked(cfg, md_port) as (up, blocker):
        # READY came once every daemon was READY, retrying, or waiting for one
        st = status_of_up(up)
        # retried slowly: in backoff, or already trying again
        assert st["exchange"]["state"] in ("backoff", "starting"), st["exchange"]
        cause = f"market data port {md_port} on 127.0.0.1 is in use"
        assert cause in st["exchange"]["last_error"], st["exchange"]
        for name in ("feed", "gateway", "strategy"):
            assert st[name]["state"] == "waiting", st[name]
            assert st[name]["last_error"].startswith("not started: waiting for "), st[name]
        res = hftctl(cfg, "status")
        assert cause in res.stdout, res.stdout

        # Never abandoned: once the port is free, the venue comes up, then the rest.
        blocker.close()
        wait_for(
            lambda: all(d["state"] == "ready" for d in status_of_up(up).values()),
            60,
            "every daemon ready once the port is free",
        )

        t0 = time.monotonic()
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=20) == 0, up.log
        print(f"stopped {time.monotonic() - t0:.2f} s after SIGTERM")
    assert wait_for(lambda: not processes_with(str(cfg)), 10, "no daemon left")


@contextlib.contextmanager
def start_daemon_up_blocked(cfg: Path, port: int) -> Iterator[tuple[Daemon, socket.socket]]:
    """`hftd up` with another program listening on `port` first."""
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with start_daemon("up", cfg) as up:
            yield up, blocker
    finally:
        blocker.close()


def test_a_daemon_that_is_not_ready_honours_sigterm(tmp_path: Path) -> None:
    # No venue: the gateway can never log in, so it never becomes READY.
    took = sigterm_while_starting("gateway", make_config(tmp_path), tmp_path / "gateway.log")
    print(f"not-ready gateway stopped {took:.2f} s after SIGTERM")


def test_second_sigterm_kills_a_daemon_that_does_not_stop(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "supervisor": {"stop_timeout_s": 120.0},
            "daemons": {**ONLY_EXCHANGE, "probe": {"after": [], "watchdog_s": 120.0}},
        },
    )
    run_dir = Path(tomllib.loads(cfg.read_text())["system"]["run_dir"])
    with start_daemon("up", cfg) as up:
        with contextlib.suppress(TimeoutError):  # its loop now blocks for 60 s
            request_sync(run_dir / "probe.sock", Hang(60.0), timeout=0.2)
        up.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM: stopping" in up.log, 10, "stop begun")
        t0 = time.monotonic()
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=15) == 0, up.log
        took = time.monotonic() - t0
        print(f"second SIGTERM: stopped in {took:.2f} s")
        assert "killing every daemon now" in up.log
    assert wait_for(lambda: not processes_with(str(cfg)), 10, "no daemon left")


def test_sigkilled_supervisor_leaves_no_daemon(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"daemons": {**ONLY_EXCHANGE, "probe": {"after": ["exchange"]}}})
    with start_daemon("up", cfg) as up:
        daemons = [d["pid"] for d in status_of_up(up).values()]
        # the warm spares are waiting too
        wait_for(lambda: len(processes_with(str(cfg))) >= 5, 30, "spares started")
        up.proc.kill()
        up.proc.wait(5)
        wait_for(lambda: not processes_with(str(cfg)), 15, "every daemon gone")
        assert not [pid for pid in daemons if alive(pid)]


def test_up_from_a_directory_holding_a_folder_named_hftd(tmp_path: Path) -> None:
    cwd = tmp_path / "parent-of-a-checkout"
    (cwd / "hftd").mkdir(parents=True)
    (cwd / "hftd" / "__init__.py").write_text("raise ImportError('the wrong hftd package')\n")
    (cwd / "hftd" / "cli.py").write_text("raise ImportError('the wrong hftd package')\n")
    cfg = make_config(tmp_path, {"daemons": {**ONLY_EXCHANGE, "probe": {"after": ["exchange"]}}})
    script = Path(sys.executable).parent / "hftd"
    with start_daemon("up", cfg, cwd=cwd, command=[str(script)]) as up:
        st = status_of_up(up)
        assert {n: d["state"] for n, d in st.items()} == {"exchange": "ready", "probe": "ready"}
        assert all(d["restarts"] == 0 for d in st.values()), st
        assert "the wrong hftd" not in up.log


def test_sigterm_during_a_long_journal_replay(tmp_path: Path) -> None:
    """A day's journal takes seconds to replay; a stop must not wait for it."""
    from hftd.config import load_config
    from hftd.exchange.journal import open_venue

    cfg = make_config(tmp_path, {"exchange": {"journal_fsync": "never"}})
    conf = load_config(cfg)
    jv, _ = open_venue(conf, time.time_ns)
    jv.start_of_day()
    n = len(conf.symbols)
    for i in range(300_000):  # ~3 s of replay on this machine; more on a slower one
        jv.next_flow_delay(i % n)
        jv.flow_step(i % n)
    assert jv.journal is not None
    jv.journal.close()
    took = sigterm_while_starting("exchange", cfg, tmp_path / "exchange.log")
    text = (tmp_path / "exchange.log").read_text()
    print(f"stopped {took:.2f} s after SIGTERM, mid-replay")
    assert "replayed" not in text, text[-2000:]  # it did stop mid-replay
    assert took < 2.0
