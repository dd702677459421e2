"""Alerts end to end: a forced condition shows in the monitor, the console, the web page
and /metrics, and clears everywhere when the condition ends.

The condition: the feed stops answering (SIGSTOP: the process is alive but its
control socket is silent, as a wedged daemon's would be). Its supervisor
watchdog is set long so the supervisor does not restart it meanwhile; SIGCONT
ends the condition. Then the feed is killed outright (SIGKILL, its pid from the
supervisor): the supervisor restarts it and the monitor raises
`daemon_restarted`, held for `restart_hold_s`, then cleared.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.integration.frontends import (
    Browser,
    Tmux,
    chromium_path,
    http_get,
    monitor_config,
    monitor_state,
    status,
    tmux_path,
    wait_for,
)
from tests.support import start_daemon

pytestmark = pytest.mark.integration

KEY = "daemon_down:feed"
FIRING = 'hftd_alert_firing{alert="daemon_down",severity="critical",subject="feed"} 1.0'


def alert_keys(run_dir: Path) -> set[str]:
    return {a["key"] for a in monitor_state(run_dir)["alerts"]}


def metrics(port: int) -> str:
    code, body = http_get(port, "/metrics")
    assert code == 200
    return body.decode()


def on_page(key: str) -> str:
    """JS: is alert `key` in the page's alert list?"""
    return f"[...document.querySelectorAll('#alerts li')].some(li => li.dataset.key === '{key}')"


def test_feed_down_alert_everywhere_then_cleared(tmp_path: Path) -> None:
    chromium_path()
    tmux_path()
    cfg, port = monitor_config(
        tmp_path,
        {
            "daemons": {"feed": {"watchdog_s": 60.0}},  # the supervisor leaves a stopped feed be
            "monitor": {
                "alerts": {"down_after_s": 0.6, "restart_hold_s": 3.0, "latency_p99_us": 1e7}
            },
        },
    )
    with start_daemon("up", cfg) as up:
        run_dir = Path(up.config["system"]["run_dir"])
        wait_for(lambda: all(d["up"] for d in monitor_state(run_dir)["daemons"]), 30, "all up")
        browser = Browser()
        term = Tmux(
            f"{sys.executable} -m hftd.ctl.main --config {cfg} console",
            80,
            24,
            env={"TERM": "xterm-256color", "LANG": "C.UTF-8"},
        )
        try:
            browser.navigate(f"http://127.0.0.1:{port}/")
            browser.wait_for(
                "document.getElementById('conn').textContent === 'live'", what="the event stream"
            )
            term.wait_screen(
                lambda s: "via monitor" in s and "ALERTS (0)" in s, what="the console, no alerts"
            )
            assert KEY not in alert_keys(run_dir)
            assert FIRING not in metrics(port)

            feed_pid = next(d["pid"] for d in status(run_dir, "supervisor") if d["name"] == "feed")
            os.kill(feed_pid, signal.SIGSTOP)
            try:
                # The monitor raises it, with a timestamp ...
                wait_for(lambda: KEY in alert_keys(run_dir), 10, "the alert in the monitor")
                alert = next(a for a in monitor_state(run_dir)["alerts"] if a["key"] == KEY)
                assert alert["severity"] == "critical" and alert["raised_at"] > 0
                assert "feed down" in alert["message"]
                feed = next(d for d in monitor_state(run_dir)["daemons"] if d["name"] == "feed")
                assert not feed["up"] and feed["state"] == "not answering"
                # ... /metrics carries it ...
                wait_for(lambda: FIRING in metrics(port), 5, "the alert in /metrics")
                assert 'hftd_up{daemon="feed"} 0.0' in metrics(port)
                # ... the web page shows it ...
                browser.wait_for(on_page(KEY), what="the alert on the page")
                assert "CRITICAL feed down" in browser.text("#alerts")
                browser.screenshot(tmp_path / "hftd-alert.png")
                # ... and so does the console.
                term.wait_screen(
                    lambda s: "CRIT feed down" in s and "not answer" in s,
                    what="the alert on the console",
                )
            finally:
                os.kill(feed_pid, signal.SIGCONT)

            # The condition ends: cleared everywhere, and logged as cleared.
            wait_for(lambda: KEY not in alert_keys(run_dir), 10, "the alert cleared")
            cleared = next(a for a in monitor_state(run_dir)["alert_log"] if a["key"] == KEY)
            assert cleared["cleared_at"] > cleared["raised_at"]
            wait_for(lambda: FIRING not in metrics(port), 5, "cleared in /metrics")
            browser.wait_for(f"!({on_page(KEY)})", what="cleared on the page")
            term.wait_screen(
                lambda s: "feed down" not in s and "ALERTS (0)" in s, what="cleared on the console"
            )

            # Killed outright: restarted by the supervisor, seen as a restart, then cleared.
            os.kill(feed_pid, signal.SIGKILL)
            wait_for(
                lambda: "daemon_restarted:feed" in alert_keys(run_dir), 15, "the restart alert"
            )
            text = metrics(port)
            assert 'hftd_daemon_restarts_total{daemon="feed"} 1.0' in text
            assert 'alert="daemon_restarted"' in text
            term.wait_screen(lambda s: "feed restarted" in s, what="restart on the console")
            wait_for(
                lambda: "daemon_restarted:feed" not in alert_keys(run_dir),
                10,
                "the restart alert cleared after restart_hold_s",
            )
            assert not any(a["key"].endswith(":feed") for a in monitor_state(run_dir)["alerts"])
        finally:
            term.close()
            browser.close()
