"""`hftd up`: dependency order, restart in under a second, watchdog, hftctl status."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from hftd.ipc.control import request_sync
from hftd.msg.control import Hang, Status
from tests.support import hftctl, make_config, start_daemon, status_of_up, wait_for

pytestmark = pytest.mark.integration

statuses = status_of_up


@pytest.fixture
def system(tmp_path: Path) -> Any:
    cfg = make_config(
        tmp_path,
        {
            "daemons": {
                "exchange": {"watchdog_s": 2.0},
                "feed": {"enabled": False},
                "gateway": {"enabled": False},
                "strategy": {"enabled": False},
                "monitor": {"enabled": False},
                "probe": {"after": ["exchange"], "watchdog_s": 1.0},
            },
            "supervisor": {"flap_max_restarts": 50},
        },
    )
    with start_daemon("up", cfg) as up:
        yield cfg, up


def test_up_starts_in_order_and_restarts_killed_daemons_fast(system: Any) -> None:
    _cfg, up = system
    st = statuses(up)
    assert list(st) == ["exchange", "probe"]  # dependency order
    assert all(d["state"] == "ready" for d in st.values())
    log = up.log
    assert log.index("exchange READY") < log.index("probe READY")

    recoveries = []
    for name in ("exchange", "probe", "exchange"):
        before = statuses(up)[name]
        os.kill(before["pid"], signal.SIGKILL)
        after = wait_for(
            lambda n=name, b=before: (
                lambda d: d if d["state"] == "ready" and d["pid"] != b["pid"] else None
            )(statuses(up)[n]),
            timeout=10,
            what=f"{name} back",
        )
        assert after["restarts"] == before["restarts"] + 1
        assert after["last_error"] == "killed by SIGKILL"
        recoveries.append(after["last_recovery_ms"])
        print(f"{name}: SIGKILL -> READY again in {after['last_recovery_ms']:.0f} ms")
    assert max(recoveries) < 1000, recoveries
    # The restarted exchange serves its control socket again.
    sock = Path(up.config["system"]["run_dir"]) / "exchange.sock"
    assert request_sync(sock, Status()).result["state"] == "running"


def test_watchdog_silent_daemon_is_restarted(system: Any) -> None:
    _cfg, up = system
    before = statuses(up)["probe"]
    sock = Path(up.config["system"]["run_dir"]) / "probe.sock"
    with contextlib.suppress(TimeoutError):
        request_sync(sock, Hang(5.0), timeout=0.2)  # its loop now blocks: no WATCHDOG=1
    after = wait_for(
        lambda: (lambda d: d if d["pid"] != before["pid"] and d["state"] == "ready" else None)(
            statuses(up)["probe"]
        ),
        timeout=10,
        what="probe restart",
    )
    assert "watchdog timeout" in after["last_error"]
    assert after["restarts"] == before["restarts"] + 1
    print(f"probe: watchdog-silent -> READY again in {after['last_recovery_ms']:.0f} ms")


def test_hftctl_status_running_and_stopped(system: Any) -> None:
    cfg, up = system
    res = hftctl(cfg, "status")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:5] == ["DAEMON", "STATE", "PID", "UPTIME", "RESTARTS"]
    assert {ln.split()[0] for ln in lines[1:]} == {"exchange", "probe"}
    assert all(ln.split()[1] == "ready" for ln in lines[1:])
    js = json.loads(hftctl(cfg, "status", "--json").stdout)
    assert js["running"] and {d["name"] for d in js["daemons"]} == {"exchange", "probe"}
    assert up.stop() == 0
    assert "all daemons stopped" in up.log
    res = hftctl(cfg, "status")
    assert res.returncode == 3
    assert "hftd is not running" in res.stdout
    assert json.loads(hftctl(cfg, "status", "--json").stdout)["running"] is False


def test_hftctl_status_with_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[exchange]\norder_port = 'x'\n")
    res = hftctl(bad, "status")
    assert res.returncode == 2
    assert (
        "exchange.order_port" in res.stderr and "symbols: required field is missing" in res.stderr
    )
