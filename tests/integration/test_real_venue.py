"""Trading with a venue that is not this system's own simulator.

The venue here is an exchange daemon of another system (its own config, run
dir and journal dir): this system's config disables its simulator
(`daemons.exchange.enabled = false`) and names the venue in `[venue]`. The
tests still ask the venue's control socket, as the venue's operator, to check.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from hftd.msg.control import Snapshot
from tests.integration.test_trading import trading_config
from tests.support import (
    Daemon,
    ask,
    start_daemon,
    status,
    status_of_up,
    wait_for,
)

pytestmark = pytest.mark.integration

OFF = {"enabled": False}


def venue_and_desk(tmp: Path, **desk: Any) -> tuple[Path, Path]:
    """Two systems: "venue" runs only the exchange; "desk" runs the rest, its
    simulator disabled and `[venue]` pointing at the other one."""
    (tmp / "venue").mkdir()
    (tmp / "desk").mkdir()
    venue = trading_config(
        tmp / "venue",
        {"daemons": {n: OFF for n in ("feed", "gateway", "strategy", "monitor")}},
    )
    ex = tomllib.loads(venue.read_text())["exchange"]
    over: dict[str, Any] = {
        "daemons": {"exchange": OFF, "monitor": OFF},
        "venue": {"host": "127.0.0.1", "order_port": ex["order_port"], "md_port": ex["md_port"]},
        "system": {"log_level": "info", "trading_day_starts": ""},
    }
    over.update(desk)
    return venue, trading_config(tmp / "desk", over)


def gw(d: Daemon) -> dict[str, Any]:
    return status(d, "gateway")


def test_up_runs_without_the_simulator(tmp_path: Path) -> None:
    """`daemons.exchange.enabled = false` is all it takes: feed and gateway do not
    wait for a simulator that does not run, and connect where `[venue]` says."""
    venue, desk = venue_and_desk(tmp_path)
    with start_daemon("exchange", venue) as ex, start_daemon("up", desk, ready_timeout=90) as up:
        wait_for(lambda: gw(up)["fills"] >= 3, 120, "trading with the other system's venue")
        daemons = status_of_up(up)
        assert "exchange" not in daemons
        assert {daemons[n]["state"] for n in ("feed", "gateway", "strategy")} == {"ready"}
        assert status(up, "feed")["link"] == "live" and gw(up)["venue_up"]
        assert not (Path(up.config["system"]["run_dir"]) / "exchange.sock").exists()
        assert gw(up)["venue_session"] == ex.config["exchange"]["session"]
        assert ask(ex, "exchange", Snapshot("HFTD"))["fills"]  # the venue saw our orders
