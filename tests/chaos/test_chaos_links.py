"""Wider chaos under the embedded supervisor (issue 16, item 6): a link cut, risk
refusing everything.

Each scenario runs the whole system (`hftd up`: exchange, feed, gateway, strategy,
monitor) on loopback while it trades, does its damage, and proves:

- the system gets back by itself (or, after risk's wall, by the operator's resume)
  and trades again;
- the monitor raised the right alert while it lasted and cleared it after;
- nothing is lost and nothing is left behind: once halted and quiet, no order
  rests at the venue, none is working at the gateway, and the gateway's fills,
  positions and P&L equal those recomputed from the venue's own record.

A link cut by the venue comes back at once (the clients' first reconnect is after
`reconnect_min_s`, 50 ms by default): too short for a monitor polling every
0.2 s to see it. The link's owner is given a longer first backoff here, so the
link stays down for a few polls and the `link_down` rule (`link_down_after_s`
lowered to 0.5 s) has something to see.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hftd.msg.control import Depth, Disconnect, Snapshot
from tests.integration.test_trading import STRATEGIES
from tests.support import (
    Daemon,
    ask,
    assert_gateway_matches_venue,
    deep_merge,
    dump_toml,
    free_port,
    hftctl,
    make_config,
    start_daemon,
    status,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.layouts]

LINK_DOWN_S = 1.5  # the cut link's owner waits this long before reconnecting


def links_config(tmp: Path, extra: dict[str, Any] | None = None) -> Path:
    over: dict[str, Any] = {
        "exchange": {"flow": {"arrival_rate_per_s": 120.0}},
        "strategy": {"instances": STRATEGIES},
        "gateway": {"strategy_timeout_s": 0.5},
        "monitor": {
            "web_port": free_port(),
            "poll_interval_s": 0.2,
            # only the rules under test may fire: no latency alert on a loaded box
            "alerts": {"link_down_after_s": 0.5, "latency_p99_us": 1e9},
        },
    }
    return make_config(tmp, deep_merge(over, extra or {}))


def run_dir(up: Daemon) -> Path:
    return Path(up.config["system"]["run_dir"])


def monitor(up: Daemon) -> dict[str, Any]:
    state: dict[str, Any] = status(up, "monitor")["state"]
    return state


def active(up: Daemon) -> dict[str, dict[str, Any]]:
    """The monitor's active alerts, by key."""
    return {a["key"]: a for a in monitor(up)["alerts"]}


def raised_then_cleared(up: Daemon, key: str) -> dict[str, Any]:
    """Alert `key` is no longer active, and its clearing is in the alert log."""

    def cleared() -> dict[str, Any] | None:
        state = monitor(up)
        if any(a["key"] == key for a in state["alerts"]):
            return None
        return next(
            (a for a in state["alert_log"] if a["key"] == key and a.get("cleared_at")), None
        )

    alert: dict[str, Any] = wait_for(cleared, 15, f"{key} cleared")
    assert alert["cleared_at"] > alert["raised_at"] > 0
    return alert


def trading(up: Daemon, fills: int = 10) -> None:
    wait_for(lambda: status(up, "gateway")["fills"] >= fills, 60, f"{fills} fills")


def trades_again(up: Daemon) -> None:
    """Fills grow from now on."""
    fills = status(up, "gateway")["fills"]
    wait_for(lambda: status(up, "gateway")["fills"] >= fills + 3, 45, "fills after recovery")


def halt_and_match_the_venue(up: Daemon, cfg: Path) -> dict[str, Any]:
    """Halt (cancels what works), wait until nothing is working at the gateway nor
    resting at the venue (no zombie), then the gateway's books against the venue's."""
    res = hftctl(cfg, "halt", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr

    def settled() -> bool:
        snap = ask(up, "exchange", Snapshot("HFTD"))
        return not status(up, "gateway")["working"] and not snap["open_orders"]

    try:
        wait_for(settled, 20, "nothing working at the gateway nor resting at the venue")
    except AssertionError:
        snap = ask(up, "exchange", Snapshot("HFTD"))
        gw = status(up, "gateway")
        raise AssertionError(
            f"venue open orders {snap['open_orders']}\ngateway working {gw['working']}"
        ) from None
    gw = status(up, "gateway")
    snap = ask(up, "exchange", Snapshot("HFTD"))
    assert_gateway_matches_venue(gw, snap)
    assert "reconciliation mismatch" not in up.log
    return gw


def test_order_link_dropped_and_restored(tmp_path: Path) -> None:
    cfg = links_config(tmp_path, {"gateway": {"reconnect_min_s": LINK_DOWN_S}})
    key = "link_down:venue"
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        assert key not in active(up)
        before = status(up, "gateway")
        assert before["venue_up"]

        assert ask(up, "exchange", Disconnect("orders"))["dropped"] >= 1
        wait_for(lambda: not status(up, "gateway")["venue_up"], 5, "the gateway sees it")
        alert = wait_for(lambda: active(up).get(key), 10, "the venue link alert")
        assert alert["severity"] == "critical"
        assert "no venue order session" in alert["message"]

        # Back by itself, a reconnect counted; the alert clears.
        after = wait_for(
            lambda: (lambda g: g if g["venue_up"] else None)(status(up, "gateway")),
            15,
            "the gateway back on the venue",
        )
        assert after["reconnects"] >= before["reconnects"] + 1
        raised_then_cleared(up, key)
        trades_again(up)

        gw = halt_and_match_the_venue(up, cfg)
        assert gw["unusable"] == 0 and gw["untracked"] == 0
        assert "CIRCUIT BREAKER" not in up.log


def test_market_data_link_dropped(tmp_path: Path) -> None:
    cfg = links_config(tmp_path, {"feed": {"reconnect_min_s": LINK_DOWN_S}})
    key = "link_down:md"
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        wait_for(lambda: status(up, "strategy")["synced"], 10, "the strategy in sync")
        assert key not in active(up)
        feed0, strat0 = status(up, "feed"), status(up, "strategy")
        assert feed0["link"] == "live"

        assert ask(up, "exchange", Disconnect("md"))["dropped"] >= 1
        wait_for(lambda: status(up, "feed")["link"] != "live", 5, "the feed sees it")
        alert = wait_for(lambda: active(up).get(key), 10, "the market-data link alert")
        assert alert["severity"] == "critical"
        assert "feed market-data session" in alert["message"]

        feed = wait_for(
            lambda: (lambda f: f if f["link"] == "live" else None)(status(up, "feed")),
            15,
            "the feed back on the venue",
        )
        assert feed["reconnects"] >= feed0["reconnects"] + 1
        raised_then_cleared(up, key)

        # No gap left: the strategy's books reach what the venue had published
        # after the reconnect, in sync, not catching up.
        venue_seq = ask(up, "exchange", Depth("AAPL"))["md_sequence"]

        def caught_up() -> bool:
            s = status(up, "strategy")
            return s["synced"] and not s["catching_up"] and s["last_seq"] >= venue_seq

        wait_for(caught_up, 20, "the strategy's books caught up with the venue")
        feed, strat = status(up, "feed"), status(up, "strategy")
        assert feed["next_sequence"] - 1 >= venue_seq
        assert feed["drops"] == 0 and feed["gaps"] == feed0["gaps"]
        assert strat["gaps"] == strat0["gaps"] and strat["untracked"] == 0
        trades_again(up)

        halt_and_match_the_venue(up, cfg)
        assert "CIRCUIT BREAKER" not in up.log


MAX_RISK_REJECTS = 20  # the breaker's limit in its 1 s window, for this test


def test_risk_rejecting_everything(tmp_path: Path) -> None:
    cfg = links_config(tmp_path, {"breaker": {"max_risk_rejects": MAX_RISK_REJECTS}})
    smallest = min(i["order_qty"] for i in STRATEGIES)
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        original = cfg.read_text()
        data = tomllib.loads(original)
        cfg.write_text(dump_toml(deep_merge(data, {"risk": {"max_order_qty": smallest - 100}})))
        before = status(up, "gateway")
        res = hftctl(cfg, "reload")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "applied risk.max_order_qty" in res.stdout, res.stdout
        applied = status(up, "gateway")  # from here on, every new order is too large

        # Every new order refused by risk: the breaker trips on the burst and halts.
        gw = wait_for(
            lambda: (lambda g: g if g["breaker"]["tripped"] else None)(status(up, "gateway")),
            30,
            "the circuit breaker tripped on risk rejects",
        )
        assert "risk rejects" in gw["breaker"]["reason"], gw["breaker"]
        assert gw["mode"] == "halted"
        assert gw["risk_rejects"] > before["risk_rejects"] + MAX_RISK_REJECTS
        # the refusals name the check (the start-up's risk limits line names it too)
        assert "[RISK  ] WARNING: risk REJECT " in up.log
        assert ": max_order_qty (order qty " in up.log
        for k in ("breaker:gateway", "trading_mode:gateway"):
            alert = wait_for(lambda k=k: active(up).get(k), 10, f"the {k} alert")
            assert alert["severity"] == "critical", alert
        assert "risk rejects" in active(up)["breaker:gateway"]["message"]
        assert active(up)["trading_mode:gateway"]["message"] == "trading halted"

        # Nothing got through; halted, nothing working; the books equal the venue's.
        wait_for(lambda: not status(up, "gateway")["working"], 15, "working orders cancelled")
        snap = ask(up, "exchange", Snapshot("HFTD"))
        gw = status(up, "gateway")
        assert gw["sent"] == applied["sent"], "an order past the limit reached the venue"
        assert_gateway_matches_venue(gw, snap)

        # No storm: once the strategy hears the gateway is halted (its heartbeats),
        # it sends nothing more, so nothing more is refused.
        wait_for(lambda: status(up, "strategy")["gateway_mode"] == "halted", 5, "halt heard")
        rejects = status(up, "gateway")["risk_rejects"]
        time.sleep(1.0)  # a window to count in, not a readiness wait
        later = status(up, "gateway")
        assert later["risk_rejects"] == rejects and later["sent"] == applied["sent"]
        print(f"risk rejects: {rejects - before['risk_rejects']} to the trip, none after")

        # The limit restored and trading resumed by the operator: fills again.
        cfg.write_text(original)
        res = hftctl(cfg, "reload")
        assert res.returncode == 0, res.stdout + res.stderr
        res = hftctl(cfg, "resume")
        assert res.returncode == 0, res.stdout + res.stderr
        wait_for(lambda: status(up, "gateway")["mode"] == "active", 10, "active again")
        raised_then_cleared(up, "breaker:gateway")
        raised_then_cleared(up, "trading_mode:gateway")
        trades_again(up)
        halt_and_match_the_venue(up, cfg)


def test_risk_rejecting_everything_default_breaker_alerts(tmp_path: Path) -> None:
    """With the default breaker (max_risk_rejects = 500 in 1 s) risk refusing every
    order trips nothing: the strategies' refused orders come at ~50-80/s and the mode
    stays active. The monitor's `risk_rejects` rule (more than 100 in a minute) is
    what says so: it was missing (this test was a strict xfail until it came)."""
    cfg = links_config(tmp_path)
    smallest = min(i["order_qty"] for i in STRATEGIES)
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        data = tomllib.loads(cfg.read_text())
        cfg.write_text(dump_toml(deep_merge(data, {"risk": {"max_order_qty": smallest - 100}})))
        res = hftctl(cfg, "reload")
        assert res.returncode == 0, res.stdout + res.stderr
        applied = status(up, "gateway")
        wait_for(
            lambda: status(up, "gateway")["risk_rejects"] >= applied["risk_rejects"] + 50,
            30,
            "risk refusing the strategies' orders",
        )
        gw = status(up, "gateway")
        assert gw["sent"] == applied["sent"] and gw["mode"] == "active"
        wait_for(
            lambda: (
                {a["rule"] for a in monitor(up)["alerts"]}
                & {"breaker", "trading_mode", "risk_rejects"}
            ),
            10,
            "an alert while risk refuses every order",
        )
