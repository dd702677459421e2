"""A venue that stops answering (issue 16 item 6: tests/chaos/test_chaos_stalls.py).

The venue sends a heartbeat every second on an idle SoupBinTCP session, so a
connected session that hears nothing for a few seconds is a venue not answering:
its link is dropped only after the heartbeat timeout (15 s). Until then nothing
alerted (link_down waits for the link to drop) and the feed went on publishing its
heartbeats, which told the strategy (and through it the breaker's `md_stale_s`)
that market data was fresh while nothing came. Now:

- the gateway's and the feed's Status say how long ago the venue last sent anything
  (`venue_heard_ms_ago`, None without a session), and the monitor raises
  `venue_silent` (critical, subjects `orders` and `md`) past
  `monitor.alerts.venue_silent_after_s`, counting the orders awaiting an answer;
- the feed vouches for the market data (MD_HEARTBEAT) only while it has heard the
  venue within MD_VOUCH_S (two of its heartbeats).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import ALERT_RULES, AlertRulesConfig, HftdConfig, load_config
from hftd.feed.daemon import MD_HEARTBEAT_S, MD_VOUCH_S, FeedAgent, FeedService
from hftd.gateway.daemon import GatewayAgent, GatewayService
from hftd.ipc.ring import Ring
from hftd.ipc.souplink import SoupLink
from hftd.monitor.alerts import Facts, evaluate
from hftd.monitor.model import Aggregator
from hftd.monitor.prom import exposition, make_registry
from hftd.msg.hot import MD_HEARTBEAT, MarketDataUpdate
from hftd.wire import soupbintcp as soup
from tests.support import DEFAULT_CONFIG, open_rings
from tests.unit import monitor_fixtures as fx

# --- the rule ------------------------------------------------------------------------------


def test_rule_raises_per_session_past_the_threshold() -> None:
    assert "venue_silent" in ALERT_RULES
    assert load_config(DEFAULT_CONFIG).monitor.alerts.venue_silent_after_s == 3.0
    facts = Facts(monitor_age_s=100, venue_silent_s=4.2, md_silent_s=3.0, awaiting_venue=2)
    orders, md = evaluate(AlertRulesConfig(), facts)
    assert (orders.key, orders.severity, orders.value, orders.threshold) == (
        "venue_silent:orders",
        "critical",
        4.2,
        3.0,
    )
    assert "venue silent on the order session for 4 s" in orders.message
    assert "2 orders or cancels await its answer" in orders.message
    assert md.key == "venue_silent:md" and "market-data session for 3 s" in md.message
    assert "await" not in md.message
    # below the threshold, no session (0), or switched off: nothing
    assert evaluate(AlertRulesConfig(), Facts(monitor_age_s=100, venue_silent_s=2.9)) == []
    assert evaluate(AlertRulesConfig(), Facts(monitor_age_s=100)) == []
    assert evaluate(AlertRulesConfig(venue_silent_after_s=5.0), facts) == []
    assert evaluate(AlertRulesConfig(disabled=["venue_silent"]), facts) == []


def test_nothing_awaiting_an_answer_is_not_mentioned() -> None:
    (c,) = evaluate(AlertRulesConfig(), Facts(monitor_age_s=100, venue_silent_s=6.0))
    assert c.message == "venue silent on the order session for 6 s, not even a heartbeat: " + (
        "not answering"
    )


# --- the monitor: from the daemons' Status to the alert, the state and /metrics ------------


def gateway(heard_ms: int | None, states: tuple[str, ...] = ("live",)) -> dict[str, Any]:
    d = fx.gateway(venue_heard_ms_ago=heard_ms)
    order = d["working"][0]
    d["working"] = [{**order, "cl_id": i + 1, "state": s} for i, s in enumerate(states)]
    return d


def test_from_the_gateways_and_feeds_status_to_the_alert_and_metrics() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": gateway(300), "feed": fx.feed()}))
    assert not {a.rule for a in s.alerts} & {"venue_silent"}
    assert (s.venue_silent_s, s.md_silent_s) == (0.3, 0.1)

    busy = ("live", "pending", "cancel pending", "pending")
    s = agg.ingest(
        fx.poll(
            5.0,
            {"gateway": gateway(4_500, busy), "feed": fx.feed(venue_heard_ms_ago=4_400)},
        )
    )
    alerts = {a.key: a for a in s.alerts}
    assert alerts["venue_silent:orders"].severity == "critical"
    assert "for 4 s" in alerts["venue_silent:orders"].message
    assert "3 orders or cancels await its answer" in alerts["venue_silent:orders"].message
    assert "venue_silent:md" in alerts
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert 'hftd_venue_silent_seconds{session="orders"} 4.5' in text
    assert 'hftd_venue_silent_seconds{session="md"} 4.4' in text
    assert 'hftd_alert_firing{alert="venue_silent",severity="critical",subject="orders"} 1.0' in (
        text
    )

    # The venue talks again: cleared, and logged as cleared.
    s = agg.ingest(fx.poll(6.0, {"gateway": gateway(100, busy), "feed": fx.feed()}))
    assert not {a.rule for a in s.alerts} & {"venue_silent"}
    assert {a.key for a in s.alert_log if a.cleared_at} >= {
        "venue_silent:orders",
        "venue_silent:md",
    }


def test_no_session_is_not_silence_link_down_says_it() -> None:
    agg = Aggregator(fx.config())
    for t in (1.0, 2.0, 3.0, 6.0):
        s = agg.ingest(
            fx.poll(
                t,
                {
                    "gateway": fx.gateway(venue_up=False, venue_heard_ms_ago=None),
                    "feed": fx.feed(link="disconnected", venue_heard_ms_ago=None),
                },
            )
        )
    assert (s.venue_silent_s, s.md_silent_s) == (0.0, 0.0)
    rules = {a.rule for a in s.alerts}
    assert "venue_silent" not in rules and "link_down" in rules


def test_a_gateway_not_answering_says_nothing_of_the_venue() -> None:
    """Its last reading is old: daemon_down speaks for it, not its last word on the venue."""
    agg = Aggregator(fx.config())
    agg.ingest(fx.poll(1.0, {"gateway": gateway(4_000)}))
    s = agg.ingest(fx.poll(9.0, {"gateway": gateway(4_000)}, silent=("gateway",)))
    assert "venue_silent:orders" not in {a.key for a in s.alerts}


# --- the link's figure -----------------------------------------------------------------------


def link() -> SoupLink:
    import logging

    return SoupLink(
        "test",
        "127.0.0.1",
        1,
        "U",
        "p",
        backoff_min_s=0.05,
        backoff_max_s=1.0,
        silence_s=15.0,
        log=logging.getLogger("test"),
    )


def test_heard_ms_ago_is_none_without_a_connection() -> None:
    lk = link()
    assert lk.heard_ms_ago() is None
    a, b = socket.socketpair()
    with a, b:
        lk.sock = a
        lk.last_rx = time.monotonic() - 2.5
        assert 2_400 <= (lk.heard_ms_ago() or 0) < 3_500
        lk.last_rx = time.monotonic() + 1.0  # never negative
        assert lk.heard_ms_ago() == 0
        lk.sock = None


# --- the services put it in their Status ----------------------------------------------------


@pytest.fixture
def cfg_rings(tmp_path: Path) -> Iterator[tuple[HftdConfig, dict[str, Ring]]]:
    with open_rings(tmp_path) as r:
        yield r


def test_the_gateway_and_the_feed_report_when_they_last_heard_the_venue(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    cfg, r = cfg_rings
    gw, feed = GatewayService(cfg), FeedService(cfg)
    gw.agent = GatewayAgent(cfg, r["orders"], r["executions"], r["risk_md"])
    feed.agent = FeedAgent(cfg, r["md"], r["risk_md"])
    for svc in (gw, feed):
        detail = svc.status_detail()
        assert detail is not None and detail.venue_heard_ms_ago is None  # no session
    a, b = socket.socketpair()
    with a, b:
        for agent in (gw.agent, feed.agent):
            agent.link.sock = a
            agent.link.last_rx = time.monotonic() - 5.0
        for svc in (gw, feed):
            detail = svc.status_detail()
            assert detail is not None and 4_900 <= (detail.venue_heard_ms_ago or 0) < 6_000
        for agent in (gw.agent, feed.agent):
            agent.link.sock = None


# --- the feed vouches for the market data only while the venue talks ------------------------


def heartbeats(ring: Ring) -> int:
    n = 0
    while (raw := ring.read()) is not None:
        n += msgspec.msgpack.decode(raw, type=MarketDataUpdate).kind == MD_HEARTBEAT
    ring.commit()
    return n


def test_the_feed_stops_its_heartbeats_while_the_venue_is_silent(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    cfg, r = cfg_rings
    feed = FeedAgent(cfg, r["md"], r["risk_md"])
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        feed.link.sock = a
        feed.link.requested = 1
        b.sendall(soup.login_accepted("S", 1))
        feed.do_work()
        assert feed.live.is_set()
        now = time.monotonic()
        # heard the venue just now: idle, it says the link is up though nothing traded
        feed.link.last_rx = now
        feed.last_publish = now - 2 * MD_HEARTBEAT_S
        assert feed.do_work() == 0
        assert heartbeats(r["md"]) == 1 and heartbeats(r["risk_md"]) == 1
        assert feed.vouching(time.monotonic())
        # nothing from the venue for MD_VOUCH_S: no more heartbeats, the md ages
        feed.link.last_rx = time.monotonic() - MD_VOUCH_S
        feed.last_publish = time.monotonic() - 2 * MD_HEARTBEAT_S
        for _ in range(3):
            assert feed.do_work() == 0
        assert heartbeats(r["md"]) == 0 and heartbeats(r["risk_md"]) == 0
        assert not feed.vouching(time.monotonic())
        # ... and no timer due for them: the hot loop sleeps instead of spinning
        assert feed.next_timer_s() > MD_HEARTBEAT_S
        assert feed.link.up  # the link itself waits for its silence timeout
        # the venue speaks (a heartbeat of its own): vouching again
        b.sendall(soup.SERVER_HEARTBEAT)
        assert feed.do_work() == 0  # a heartbeat is no sequenced message
        assert feed.vouching(time.monotonic())
        feed.last_publish = time.monotonic() - 2 * MD_HEARTBEAT_S
        feed.do_work()
        assert heartbeats(r["md"]) == 1
        feed.link.sock = None
