"""Venue-side OUCH messages reach a live gateway, which applies them and keeps its
session: a Broken Trade undoes the fill, an Order Priority Update updates the
working order, and a message that is not OUCH 5.0 is journaled and counted, not
a reason to drop the session (a re-login would start after it: lost for good).

The venue sends them because the exchange's `Inject` test hook tells it to; the
gateway's orders come straight from the test through the orders ring (no
strategy), and the TEST user trades against them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.ipc.ring import Ring
from hftd.msg.control import Inject, Snapshot
from hftd.msg.hot import CMD_HEARTBEAT, CMD_NEW, OrderCommand
from hftd.wire import ouch
from tests.support import Daemon, SoupClient, ask, make_config, start_daemon, status, wait_for

pytestmark = pytest.mark.integration

PX = 1_895_000  # AAPL's reference price


def send_orders(cfg: Path, *commands: OrderCommand) -> None:
    prefix = tomllib.loads(cfg.read_text())["rings"]["prefix"]
    enc = msgspec.msgpack.Encoder()
    with Ring.attach(f"{prefix}-orders") as orders:
        for c in commands:
            orders.write(enc.encode(c))


def gw(d: Daemon) -> dict[str, Any]:
    return status(d, "gateway")


def test_gateway_applies_venue_side_messages_without_dropping_the_session(
    tmp_path: Path,
) -> None:
    cfg = make_config(
        tmp_path,
        {
            "exchange": {"flow": {"enabled": False}},
            "gateway": {"strategy_timeout_s": 120.0},  # no strategy: the test sends orders
        },
    )
    with start_daemon("exchange", cfg) as ex, start_daemon("gateway", cfg) as g:
        send_orders(
            cfg,
            OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0),
            OrderCommand(CMD_NEW, 7, "AAPL", "B", 300, PX, "0", 0, "mr1", 0, 0),
        )
        wait_for(lambda: [w for w in gw(g)["working"] if w["state"] == "live"], 20, "bid live")
        port = ex.config["exchange"]["order_port"]
        seller = SoupClient(port, "TEST", "test-pass", sequence=0)
        seller.send_unsequenced(ouch.encode_inbound(ouch.EnterOrder(1, "S", 100, "AAPL", PX)))
        wait_for(lambda: gw(g)["fills"] == 1, 20, "the fill")
        (fill,) = ask(ex, "exchange", Snapshot("HFTD"))["fills"]
        before = gw(g)
        assert before["positions"]["positions"][0]["qty"] == 100
        assert before["reconnects"] == 0 and before["unusable"] == 0

        # a Broken Trade: the fill is undone, the session stays
        seq = ask(ex, "exchange", Inject("HFTD", "broken_trade", fill["match_number"]))["sequence"]
        wait_for(lambda: gw(g)["venue_seq"] >= seq, 20, "the broken trade applied")
        after = gw(g)
        assert after["broken_trades"] == 1 and after["fills"] == 0
        (pos,) = after["positions"]["positions"]
        assert (pos["qty"], pos["cost_basis"], pos["realized"], pos["fills"]) == (0, 0, 0, 0)
        assert ask(ex, "exchange", Snapshot("HFTD"))["fills"] == []
        (working,) = after["working"]
        assert working["leaves"] == 200  # the venue does not give the shares back

        # an Order Priority Update for the working order
        seq = ask(ex, "exchange", Inject("HFTD", "priority_update", working["user_ref"]))[
            "sequence"
        ]
        wait_for(lambda: gw(g)["venue_seq"] >= seq, 20, "the priority update applied")
        (open_order,) = ask(ex, "exchange", Snapshot("HFTD"))["open_orders"]
        after = gw(g)
        assert after["priority_updates"] == 1
        assert after["working"][0]["order_ref"] == open_order["order_ref"]

        # not OUCH 5.0 at all: journaled, counted, the stream goes on past it
        seq = ask(ex, "exchange", Inject("HFTD", "raw", 0, b"Z\x00hostile"))["sequence"]
        wait_for(lambda: gw(g)["venue_seq"] >= seq, 20, "the hostile message passed")
        after = gw(g)
        assert after["unusable"] == 1 and f"sequence {seq}: not OUCH 5.0" in after["last_unusable"]
        assert after["reconnects"] == 0 and after["venue_up"]
        assert "protocol error" not in g.log and "not applied" in g.log

        # ... and the venue's next reply is applied as usual
        seller.send_unsequenced(ouch.encode_inbound(ouch.EnterOrder(2, "S", 50, "AAPL", PX)))
        wait_for(lambda: gw(g)["fills"] == 1, 20, "a fill after it")
        end = gw(g)
        g.proc.kill()
        g.proc.wait(10)

        # a restarted gateway replays the same from its journal and agrees with the venue
        with start_daemon("gateway", cfg) as g2:
            again = gw(g2)
            for key in ("fills", "broken_trades", "priority_updates", "unusable", "venue_seq"):
                assert again[key] == end[key], key
            assert again["positions"]["positions"] == end["positions"]["positions"]
            assert again["working"][0]["order_ref"] == open_order["order_ref"]
            assert "mismatch" not in g2.log and again["mode"] == "active"
