"""Operator controls end to end: flatten leaves nothing open, halt lets nothing out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hftd.ipc.control import request_sync
from hftd.msg.control import Snapshot
from hftd.wire import ouch
from tests.integration.test_trading import trading_config
from tests.support import Daemon, SoupClient, ask, hftctl, start_daemon, status, wait_for

pytestmark = pytest.mark.integration


def venue_replies(ex: Daemon, first: int) -> list[ouch.Outbound]:
    """Every OUCH reply to HFTD from sequence `first` to now."""
    end = ask(ex, "exchange", Snapshot("HFTD"))["next_sequence"]
    if first >= end:
        return []
    c = SoupClient(ex.config["exchange"]["order_port"], "HFTD", "hftd-pass", sequence=first)
    out = []
    seq = first - 1
    while seq < end - 1:
        ev = c.sequenced()
        seq = ev.sequence
        out.append(ouch.decode_outbound(ev.payload))
    return out


def gross(gw: Daemon) -> int:
    return int(status(gw, "gateway")["positions"]["gross_shares"])


def test_flatten_then_halt(tmp_path: Path) -> None:
    cfg = trading_config(tmp_path)
    with (
        start_daemon("exchange", cfg) as ex,
        start_daemon("feed", cfg),
        start_daemon("gateway", cfg) as gw,
        start_daemon("strategy", cfg) as st,
    ):
        wait_for(lambda: gross(gw) >= 300, 120, "some positions")

        # Flatten: every position to zero, nothing working at the venue.
        res = hftctl(cfg, "flatten", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "gateway: ok" in res.stdout

        def flat() -> bool:
            d = status(gw, "gateway")
            snap = ask(ex, "exchange", Snapshot("HFTD"))
            return (
                d["positions"]["gross_shares"] == 0 and not d["working"] and not snap["open_orders"]
            )

        wait_for(flat, 30, "flat")
        d = status(gw, "gateway")
        assert d["mode"] == "reducing"
        assert all(p["qty"] == 0 for p in d["positions"]["positions"])
        # Flat can come before the gateway's next flatten step notices (10 ms timer).
        wait_for(lambda: "FLAT: every position is zero" in gw.log, 10, "FLAT logged")
        # The venue agrees: positions from its own fills are all zero.
        pos: dict[str, int] = {}
        for f in ask(ex, "exchange", Snapshot("HFTD"))["fills"]:
            pos[f["symbol"]] = pos.get(f["symbol"], 0) + (
                f["quantity"] if f["side"] == "B" else -f["quantity"]
            )
        assert set(pos.values()) <= {0}, pos
        # hftctl status says where trading stands and what the operator does next.
        out = hftctl(cfg, "status").stdout
        assert "TRADING    mode reducing" in out, out
        assert "flat, mode reducing: `hftctl resume` to trade again" in out, out
        for inst in ("mr1", "mom1"):  # and each strategy instance's own figures
            assert f"STRATEGY   {inst}: " in out, out

        # Resume: trading again.
        sent = status(gw, "gateway")["sent"]
        assert hftctl(cfg, "resume").returncode == 0
        assert status(gw, "gateway")["mode"] == "active"
        wait_for(lambda: status(gw, "gateway")["sent"] > sent, 60, "orders after resume")

        # Halt: nothing reaches the venue until re-armed; the strategy learns the mode
        # from the gateway's heartbeat and holds its orders (no storm of risk rejects).
        res = hftctl(cfg, "halt", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        halted_at = ask(ex, "exchange", Snapshot("HFTD"))["next_sequence"]
        d0 = status(gw, "gateway")
        assert d0["mode"] == "halted"
        js = json.loads(hftctl(cfg, "status", "--json").stdout)
        assert js["trading"]["mode"] == "halted" and "hftctl resume" in js["trading"]["next"]

        def held() -> int:
            return sum(x["held"] for x in status(st, "strategy")["strategies"].values())

        wait_for(lambda: status(st, "strategy")["gateway_mode"] == "halted", 5, "the strategy told")
        # From the moment the strategy knows: not one order of its for risk to refuse.
        rejects0, h0 = status(gw, "gateway")["risk_rejects"], held()
        wait_for(lambda: held() >= h0 + 3, 60, "the strategy holding orders while halted")
        assert status(gw, "gateway")["risk_rejects"] == rejects0
        wait_for(lambda: not status(gw, "gateway")["working"], 10, "working orders cancelled")
        after = venue_replies(ex, halted_at)
        assert not [m for m in after if isinstance(m, ouch.Accepted)], "an order got out"
        assert not ask(ex, "exchange", Snapshot("HFTD"))["open_orders"]
        assert "HALTED (operator halt)" in gw.log

        # Re-armed by the operator: orders flow again.
        assert hftctl(cfg, "resume").returncode == 0
        wait_for(
            lambda: any(isinstance(m, ouch.Accepted) for m in venue_replies(ex, halted_at)),
            60,
            "orders after re-arm",
        )


def test_verbs_need_confirmation_and_a_running_system(tmp_path: Path) -> None:
    cfg = trading_config(tmp_path)
    res = hftctl(cfg, "halt")
    assert res.returncode == 2 and "--yes" in res.stderr
    res = hftctl(cfg, "pause")
    assert res.returncode == 3 and "not running" in res.stdout
    with start_daemon("exchange", cfg), start_daemon("gateway", cfg) as gw:
        res = hftctl(cfg, "pause")
        assert res.returncode == 0
        assert status(gw, "gateway")["mode"] == "paused"
        reply = request_sync(
            Path(gw.config["system"]["run_dir"]) / "exchange.sock", Snapshot("HFTD")
        )
        assert reply.ok
        assert hftctl(cfg, "resume").returncode == 0
        assert status(gw, "gateway")["mode"] == "active"


def test_a_new_day_started_paused_sends_nothing_until_resume(tmp_path: Path) -> None:
    """gateway.start_paused: the day begins paused (the operator checks, then resumes);
    a gateway restart within the day keeps it paused; resume trades."""
    cfg = trading_config(tmp_path, {"gateway": {"start_paused": True}})
    with start_daemon("exchange", cfg), start_daemon("feed", cfg):
        with start_daemon("gateway", cfg) as gw, start_daemon("strategy", cfg) as st:
            s = status(gw, "gateway")
            assert s["mode"] == "paused" and "start_paused" in s["mode_reason"], s

            # the strategies decide, the gateway holds them: nothing reaches the venue
            def held() -> int:  # the strategies hold what the mode would refuse
                per = status(st, "strategy")["strategies"].values()
                return sum(s["held"] for s in per) + int(status(gw, "gateway")["held"])

            wait_for(lambda: held() >= 3, 60, "orders held")
            assert status(gw, "gateway")["sent"] == 0
            js = json.loads(hftctl(cfg, "status", "--json").stdout)
            assert js["trading"]["mode"] == "paused" and "resume" in js["trading"]["next"], js
            assert "started PAUSED (gateway.start_paused)" in gw.log
        # A restart within the day: the journal's pause holds, not a fresh start.
        with start_daemon("gateway", cfg) as gw, start_daemon("strategy", cfg):
            assert status(gw, "gateway")["mode"] == "paused"
            assert "started PAUSED" not in gw.log  # restored from the journal
            assert hftctl(cfg, "resume").returncode == 0
            wait_for(lambda: status(gw, "gateway")["sent"] > 0, 60, "orders after resume")
            assert status(gw, "gateway")["mode"] == "active"
