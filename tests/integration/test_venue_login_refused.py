"""A venue that refuses the gateway's login: the operator is told so, not only
"not READY" (ops/runbook-venue-login-refused.md).

The gateway keeps retrying with backoff and never becomes READY without a
session; while it waits, its venue link says why through sd_notify STATUS=
(what `systemctl status hft@gateway` shows), and the embedded supervisor's
"not READY within N s" quotes it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hftd.msg.control import Status
from tests.support import ROOT, ask_path, make_config, start_daemon, wait_for

pytestmark = pytest.mark.integration

WRONG = {"gateway": {"password": "wrong-pass"}}


def test_a_refused_login_is_the_gateways_status(tmp_path: Path) -> None:
    """The gateway alone, against the simulator: STATUS= names the refusal, no READY."""
    cfg = make_config(tmp_path, {**WRONG, "hotpath": {"layout": "split"}})
    notify = tmp_path / "notify-gw.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, start_daemon("exchange", cfg):
        sock.bind(str(notify))
        log = (tmp_path / "gateway.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "hftd.cli", "gateway", "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, NOTIFY_SOCKET=str(notify)),
            cwd=ROOT,
        )
        said: list[str] = []
        try:
            deadline = time.monotonic() + 20
            while not any("login rejected" in s for s in said):
                assert time.monotonic() < deadline, f"no refusal in STATUS=: {said}"
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                said += sock.recv(4096).decode().split("\n")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            log.close()
    assert "READY=1" not in said
    status = next(s for s in said if "login rejected" in s)
    assert status.startswith("STATUS=gateway: login rejected"), status
    assert "reconnecting in" in status


def test_the_supervisor_says_why_the_gateway_is_not_ready(tmp_path: Path) -> None:
    """`hftd up` with a wrong venue password: the daemon that holds the gateway is
    restarted after `start_timeout_s`, and its last error says the venue refused the
    login, not only that it was not READY."""
    cfg = make_config(
        tmp_path,
        {
            **WRONG,
            "supervisor": {"start_timeout_s": 2.0},
            "daemons": {"strategy": {"enabled": False}, "monitor": {"enabled": False}},
        },
    )
    run_dir = tmp_path / "run"
    with (tmp_path / "up.log").open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "hftd.cli", "up", "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:

        def gateway_error() -> str:
            for d in ask_path(run_dir / "supervisor.sock", Status()):
                if d["name"] in ("gateway", "hotpath") and "not READY" in d["last_error"]:
                    return str(d["last_error"])
            return ""

        error = wait_for(gateway_error, 30, "the gateway's start to time out")
        assert "not READY within 2 s (it said: gateway: login rejected" in error, error
        assert "login rejected" in (tmp_path / "up.log").read_text()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(20)
