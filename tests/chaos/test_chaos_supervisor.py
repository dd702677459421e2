"""Chaos under the embedded supervisor: SIGKILL every daemon in turn while trading.

Each daemon must be READY again in under a second, and afterwards the
gateway's positions, P&L and fills must equal the exchange's own record: no
lost fill, no double-counted fill, no order resting at the venue unknown to
the gateway.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hftd.ipc.control import request_sync
from hftd.msg.control import Resume, Snapshot, Status
from tests.integration.test_trading import STRATEGIES
from tests.support import (
    Daemon,
    ask,
    assert_gateway_matches_venue,
    make_config,
    start_daemon,
    wait_for,
)
from tests.support import status as detail

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.layouts]

ORDER = ["exchange", "feed", "gateway", "strategy"]


def sup(up: Daemon) -> dict[str, dict[str, Any]]:
    reply = request_sync(Path(up.config["system"]["run_dir"]) / "supervisor.sock", Status())
    assert reply.ok
    return {d["name"]: d for d in reply.result}


def chaos_config(tmp: Path) -> Path:
    return make_config(
        tmp,
        {
            "exchange": {"flow": {"arrival_rate_per_s": 120.0}},
            "strategy": {"instances": STRATEGIES},
            "gateway": {"strategy_timeout_s": 0.5},
            "supervisor": {"flap_max_restarts": 100},
        },
    )


def trading_again(up: Daemon, fills: int, trips: list[str]) -> bool:
    """More fills than `fills`. A circuit breaker the chaos tripped (market data
    stale past `breaker.md_stale_s` while a loaded machine restarts the venue) is
    re-armed as an operator would (`hftctl resume`): a trip survives restarts by
    design, and the test is about what a kill loses, not about the breaker."""
    g = detail(up, "gateway")
    if g["mode"] == "halted" and g["breaker"]["tripped"]:
        trips.append(g["breaker"]["reason"])
        ask(up, "gateway", Resume())
        return False
    return bool(g["fills"] > fills)


def test_kill_every_daemon_repeatedly_nothing_lost(tmp_path: Path) -> None:
    cfg = chaos_config(tmp_path)
    rounds = int(os.environ.get("HFTD_CHAOS_ROUNDS", "2"))
    with start_daemon("up", cfg, ready_timeout=60) as up:
        wait_for(lambda: detail(up, "gateway")["fills"] >= 10, 120, "trading")
        recoveries: dict[str, list[float]] = {n: [] for n in ORDER}
        trips: list[str] = []
        for _ in range(rounds):
            for name in ORDER:
                before = sup(up)[name]
                os.kill(before["pid"], signal.SIGKILL)
                after = wait_for(
                    lambda n=name, b=before: (
                        lambda d: d if d["state"] == "ready" and d["pid"] != b["pid"] else None
                    )(sup(up)[n]),
                    15,
                    f"{name} back",
                )
                recoveries[name].append(after["last_recovery_ms"])
                # Let it trade a little between kills (and the strategy resync).
                fills = detail(up, "gateway")["fills"]
                wait_for(
                    lambda f=fills: trading_again(up, f, trips),
                    60,
                    f"trading after {name} restart",
                )
        if trips:
            print(f"breaker trips re-armed during the kills: {trips}")
        everything = [ms for v in recoveries.values() for ms in v]
        for name, v in recoveries.items():
            print(f"{name:9s} SIGKILL -> READY: " + ", ".join(f"{ms:.0f}" for ms in v) + " ms")
        print(
            f"all daemons: p50 {statistics.median(everything):.0f} ms, "
            f"max {max(everything):.0f} ms over {len(everything)} kills"
        )
        assert max(everything) < 1000, recoveries

        # Stop trading, then compare with the venue's own record.
        res = subprocess.run(
            [sys.executable, "-m", "hftd.ctl.main", "--config", str(cfg), "halt", "--yes"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        run_dir = Path(up.config["system"]["run_dir"])

        def settled() -> bool:
            snap = request_sync(run_dir / "exchange.sock", Snapshot("HFTD")).result
            return not detail(up, "gateway")["working"] and not snap["open_orders"]

        wait_for(settled, 15, "nothing working anywhere")
        gw = detail(up, "gateway")
        snap = request_sync(run_dir / "exchange.sock", Snapshot("HFTD")).result
        assert_gateway_matches_venue(gw, snap)
        assert "reconciliation mismatch" not in up.log
