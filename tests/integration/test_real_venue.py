"""Trading with a venue that is not this system's own simulator.

The venue here is an exchange daemon of another system (its own config, run
dir and journal dir): this system's config disables its simulator
(`daemons.exchange.enabled = false`) and names the venue in `[venue]`. So the
gateway has no control socket to ask the venue anything: it reconciles as with
a real venue, from the venue's SoupBinTCP stream (docs/reconciliation.md). The
tests still ask the venue's control socket, as the venue's operator, to check.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import load_config
from hftd.msg.control import Snapshot
from hftd.runtime.days import gateway_journal_path
from hftd.runtime.journal import frame, read_all
from hftd.wire import ouch
from tests.integration.test_trading import trading_config
from tests.support import (
    ROOT,
    Daemon,
    ask,
    assert_gateway_matches_venue,
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


def traded_then_stopped(venue: Daemon, desk: Path, fills: int = 10) -> dict[str, Any]:
    """Trade until `fills`, stop the strategy (its orders are cancelled), kill the
    gateway; the gateway's last Status."""
    with start_daemon("feed", desk), start_daemon("gateway", desk) as g:
        with start_daemon("strategy", desk):
            wait_for(lambda: gw(g)["fills"] >= fills, 120, "trading with the venue")
        wait_for(lambda: not gw(g)["working"], 20, "working orders cancelled")
        last = gw(g)
        g.proc.kill()
        g.proc.wait(10)
    assert not ask(venue, "exchange", Snapshot("HFTD"))["open_orders"]
    return last


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


def test_a_restarted_gateway_reconciles_with_the_venues_stream(tmp_path: Path) -> None:
    venue, desk = venue_and_desk(tmp_path)
    with start_daemon("exchange", venue) as ex:
        before = traded_then_stopped(ex, desk)
        with start_daemon("gateway", desk) as g:
            after = gw(g)
            rec = after["reconcile"]
            assert rec["state"] == "agreed" and rec["problems"] == [], rec
            assert rec["to"] == before["venue_seq"] and rec["verified"] == 16
            assert rec["from"] == before["venue_seq"] - 15
            assert "snapshot" not in rec and "snapshot" not in g.log  # never asked for one
            assert "reconciled with the venue's stream" in g.log and after["mode"] == "active"
            assert_gateway_matches_venue(after, ask(ex, "exchange", Snapshot("HFTD")))
            for key in ("fills", "venue_seq", "next_user_ref"):
                assert after[key] == before[key], key
            assert traded(after) == traded(before)


def traded(gateway: dict[str, Any]) -> list[dict[str, Any]]:
    """The positions of symbols traded (a flat one of a symbol whose orders were only
    ever risk-rejected is not journaled), without the marks (the market's)."""
    return [
        {k: v for k, v in p.items() if k not in ("mark", "unrealized")}
        for p in gateway["positions"]["positions"]
        if p["fills"]
    ]


def invent_a_fill(journal: Path, last_seq: int, next_user_ref: int) -> None:
    """Append what the venue never sent: an order of ours accepted, and filled."""
    enc = msgspec.msgpack.Encoder()
    accepted = ouch.Accepted(
        1, next_user_ref, "B", 500, "AAPL", 1_895_000, "0", "Y", 77, "A", "N", "N", "L", "zz"
    )
    filled = ouch.Executed(2, next_user_ref, 500, 1_895_000, "R", 10**9)
    with journal.open("ab") as f:
        for i, m in enumerate((accepted, filled), 1):
            f.write(frame(enc.encode(("V", last_seq + i, ouch.encode_outbound(m)))))


def test_an_invented_fill_in_the_journal_is_detected_and_not_traded_on(tmp_path: Path) -> None:
    venue, desk = venue_and_desk(tmp_path)
    with start_daemon("exchange", venue) as ex:
        before = traded_then_stopped(ex, desk)
        journal = gateway_journal_path(load_config(desk))
        invent_a_fill(journal, before["venue_seq"], before["next_user_ref"])
        with start_daemon("gateway", desk) as g:
            after = gw(g)
            assert after["fills"] == before["fills"] + 1  # the journal's word, replayed...
            rec = after["reconcile"]
            assert rec["state"] == "mismatch", rec  # ... and found out
            assert f"the venue's stream ends at {before['venue_seq']}" in rec["problems"][0]
            assert "never sent" in rec["problems"][0]
            assert after["mode"] == "halted"  # not traded on
            assert "reconciliation mismatch: the journal against the venue" in g.log
            snap = ask(ex, "exchange", Snapshot("HFTD"))
            assert len(snap["fills"]) == before["fills"] and not snap["open_orders"]


def test_a_journal_of_another_day_is_detected_and_not_traded_on(tmp_path: Path) -> None:
    venue, desk = venue_and_desk(tmp_path)
    with start_daemon("exchange", venue) as ex:
        before = traded_then_stopped(ex, desk)
    # the venue starts its next day (new streams from sequence 1); the desk did not
    new_day = subprocess.run(
        [sys.executable, "-m", "hftd.cli", "day", "--config", str(venue), "new"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert new_day.returncode == 0, new_day
    journal = gateway_journal_path(load_config(desk))
    records = len(read_all(journal)[0])
    with start_daemon("exchange", venue) as ex, start_daemon("gateway", desk) as g:
        after = gw(g)
        rec = after["reconcile"]
        assert rec["state"] == "mismatch", rec
        assert "the journal holds messages the venue never sent" in rec["problems"][0]
        assert after["mode"] == "halted" and after["fills"] == before["fills"]
        assert "nothing cancelled" in g.log
        # the venue's new day is untouched: no order of the old day was cancelled there
        assert ask(ex, "exchange", Snapshot("HFTD"))["next_sequence"] == 2
        # the journal keeps the record of what happened (a login, the halt), nothing
        # is rewritten
        assert len(read_all(journal)[0]) == records + 2
