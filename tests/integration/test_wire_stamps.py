"""The gateway's own tick-to-trade against a venue's clock, order by order.

T1 is taken when the feed's recv() returns the triggering message, so after
the venue sent it; T4 is when the order's bytes are handed to the socket, so
before the venue can read them. Honest stamps therefore give, for every
order, T4 - T1 <= (venue's receipt of the order) - (venue's send of the
trigger): tick-to-trade can never exceed wire-to-wire. An independent venue
measured the opposite (issue 12): T4 was taken after send() returned, and
the venue had read the order, and done its work, by then.

The venue here is bench/bench_wire.py's (its own ITCH/OUCH/SoupBinTCP, not
the exchange daemon); the system is `hftd up` with its simulator disabled, in
each hot-path layout. To make a late stamp show on every run, not only when
the scheduler happens to run the venue first, the venue's thread shares the
gateway's CPU, the gateway's process runs at idle priority (any wake-up of
the venue preempts it at once) and the venue works 2 ms after each receipt
before it answers. None of that can make an honest stamp fail: T4 before
send() is before the receipt whatever runs when. No latency threshold.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bench.bench_wire import Job, Venue, symbols_of
from tests.support import DEFAULT_CONFIG, LAYOUT, make_config, start_daemon, status, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.layouts]

TRIGGERS = 30  # within the gateway's recent_fills (its last 50), so each is compared


def test_tick_to_trade_never_exceeds_wire_to_wire_per_order(tmp_path: Path) -> None:
    cpu = sorted(os.sched_getaffinity(0))[0]
    base = tomllib.loads(DEFAULT_CONFIG.read_text())
    venue = Venue(symbols_of(base), busy_after_us=2000.0, cpu=cpu)
    venue.set_triggers(["AAPL", "MSFT"])  # mr1's symbols in default.toml
    venue.start()
    try:
        beside_venue = {"cpus": [cpu], "cpu_policy": "idle"}
        gateway_process = "hotpath" if LAYOUT[0] == "composite" else "gateway"
        over: dict[str, Any] = {
            "daemons": {
                "exchange": {"enabled": False},
                "monitor": {"enabled": False},
                gateway_process: beside_venue,
            },
            "venue": {
                "host": "127.0.0.1",
                "order_port": venue.order_port,
                "md_port": venue.md_port,
            },
            "system": {"log_level": "info", "trading_day_starts": ""},
        }
        cfg = make_config(tmp_path, over)
        with start_daemon("up", cfg, args=("--new-day",)) as up:
            wait_for(lambda: status(up, "gateway")["strategy_up"], 15, "strategy heard")
            # 60 background messages per symbol fill mean reversion's window (its mid
            # never moves), then one trigger every 50 ms: 100 ms per symbol, past its
            # 20 ms cooldown; each waits up to 1 s for its order.
            job = venue.run(
                Job(n=TRIGGERS, gap_ns=50_000_000, timeout_ns=1_000_000_000, user="HFTD", prime=60)
            )
            fills = len(venue.fills)
            wait_for(lambda: status(up, "gateway")["fills"] == fills, 15, "every fill applied")
            recent = status(up, "gateway")["recent_fills"]
    finally:
        venue.close()
    assert job.unexpected == 0 and job.wrong_side == 0
    assert len(job.w2w) >= TRIGGERS // 2, f"only {len(job.w2w)} of {TRIGGERS} triggers answered"
    # The venue filled every order in the order it read them; the gateway applied the
    # fills in that order and keeps each one's T4 - T1.
    k = min(len(recent), fills)
    pairs = [
        (round(f["tick_to_trade_us"] * 1000), w2w)
        for f, (_, w2w) in zip(recent[-k:], venue.fills[-k:], strict=True)
        if w2w >= 0  # an order the venue saw answer its trigger
    ]
    assert len(pairs) == len(job.w2w)
    late = [(t / 1e3, w / 1e3) for t, w in pairs if t > w]
    assert not late, (
        f"{len(late)} of {len(pairs)} orders: T1->T4 above the venue's wire-to-wire "
        f"(µs, T1->T4 vs wire-to-wire): {late[:5]}"
    )
