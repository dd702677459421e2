"""A sequenced venue message the gateway cannot use is journaled and alerted, never
skipped (issue 11, item 2).

The real exchange puts a message of a type OUCH 5.0 does not define into the
gateway's OUCH stream (its `Inject` test hook, as a venue newer than our codec
would); the real gateway must journal and count it and keep its session, and
the real monitor must raise `venue_unusable` naming it, in its state and in
/metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hftd.msg.control import Inject
from tests.integration.frontends import http_get
from tests.support import ask, free_port, make_config, start_daemon, status, wait_for

pytestmark = pytest.mark.integration

UNKNOWN = b"Z" + bytes(8) + b"a type from a newer venue"


def test_an_unusable_venue_message_raises_the_monitor_alert(tmp_path: Path) -> None:
    off = {"enabled": False}
    cfg = make_config(
        tmp_path,
        {
            "exchange": {"flow": {"enabled": False}},
            "gateway": {"strategy_timeout_s": 120.0},  # no strategy in this test
            "monitor": {"web_port": free_port(), "poll_interval_s": 0.2},
            "daemons": {"feed": off, "strategy": off, "monitor": {"after": []}},
        },
    )
    with (
        start_daemon("exchange", cfg) as ex,
        start_daemon("gateway", cfg) as gw,
        start_daemon("monitor", cfg) as mon,
    ):

        def state() -> dict[str, Any]:
            s: dict[str, Any] = status(mon, "monitor")["state"]
            return s

        def alerts() -> list[dict[str, Any]]:
            return [a for a in state()["alerts"] if a["rule"] == "venue_unusable"]

        # The monitor's first sight of the count is its baseline: let it see 0.
        wait_for(lambda: status(gw, "gateway")["venue_up"], 20, "the gateway's venue session")
        wait_for(
            lambda: any(
                d["name"] == "gateway" and d["pid"] == gw.proc.pid and d["up"]
                for d in state()["daemons"]
            ),
            10,
            "the monitor polling the gateway",
        )
        assert status(gw, "gateway")["unusable"] == 0
        assert alerts() == [] and state()["counters"]["unusable"] == 0

        seq = int(ask(ex, "exchange", Inject("HFTD", "raw", 0, UNKNOWN))["sequence"])
        g = wait_for(
            lambda: (d := status(gw, "gateway"))["venue_seq"] >= seq and d, 20, "the message"
        )
        assert g["unusable"] == 1 and f"sequence {seq}: not OUCH 5.0" in g["last_unusable"]
        assert g["reconnects"] == 0 and g["venue_up"]  # kept the session: not skipped

        (alert,) = wait_for(alerts, 10, "the venue_unusable alert")
        assert alert["severity"] == "warning" and alert["subject"] == "gateway"
        assert f"sequence {seq}" in alert["message"] and "unknown message type" in alert["message"]
        assert state()["counters"]["unusable"] == 1
        assert "ALERT warning venue_unusable:gateway" in mon.log
        code, body = http_get(mon.config["monitor"]["web_port"], "/metrics")
        assert code == 200 and b"hftd_gateway_unusable_total 1.0" in body
        assert (
            b'hftd_alert_firing{alert="venue_unusable",severity="warning",subject="gateway"} 1.0'
        ) in body
