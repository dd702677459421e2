"""Latency injection in the simulator (EX-6): the delay configured on order
acknowledgements is the delay a client sees, measured from outside with a real
socket (issue 16, item 6). Also what happens live: a reload changes it."""

from __future__ import annotations

import statistics
import time
import tomllib
from pathlib import Path

import pytest

from hftd.wire import ouch
from tests.support import SoupClient, dump_toml, hftctl, make_config, start_daemon

pytestmark = pytest.mark.integration

DELAY_MS = 40.0


def acks(c: SoupClient, first_ref: int, n: int) -> list[float]:
    """Milliseconds from each non-marketable day order sent to its Order Accepted."""
    out = []
    for ref in range(first_ref, first_ref + n):
        t0 = time.perf_counter()
        c.send_unsequenced(
            ouch.encode_inbound(ouch.EnterOrder(ref, "B", 100, "AAPL", 1_000_000, ouch.TIF_DAY))
        )
        while True:
            m = ouch.decode_outbound(c.sequenced().payload)
            if isinstance(m, ouch.Accepted) and m.user_ref == ref:
                break
        out.append((time.perf_counter() - t0) * 1000)
    return out


def test_the_injected_ack_delay_is_what_a_client_measures(tmp_path: Path) -> None:
    fixed = {"kind": "fixed", "micros": DELAY_MS * 1000}
    cfg = make_config(tmp_path, {"exchange": {"flow": {"enabled": False}, "ack_latency": fixed}})
    with start_daemon("exchange", cfg) as ex:
        c = SoupClient(ex.config["exchange"]["order_port"])
        delayed = acks(c, 1, 15)
        # every acknowledgement waited at least the delay, and not much more
        assert min(delayed) >= DELAY_MS, delayed
        assert statistics.median(delayed) < DELAY_MS + 25, delayed
        # live: a reload takes the delay away, and the same client sees it gone
        data = tomllib.loads(cfg.read_text())
        data["exchange"]["ack_latency"] = {"kind": "none"}
        cfg.write_text(dump_toml(data))
        res = hftctl(cfg, "reload")
        assert res.returncode == 0 and "exchange: applied exchange.ack_latency" in res.stdout, (
            res.stdout
        )
        undelayed = acks(c, 100, 15)
        assert statistics.median(undelayed) < DELAY_MS / 2, undelayed
        print(
            f"ack latency injected {DELAY_MS:.0f} ms: median {statistics.median(delayed):.1f} ms;"
            f" none: {statistics.median(undelayed):.2f} ms"
        )
