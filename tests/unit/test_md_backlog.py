"""A hot path slower than the venue's flow (issue 16 item 6: tests/chaos/test_chaos_stalls.py).

In the composite layout no ring can be lapped (the strategy reads each record as the
feed writes it), so a hot thread too slow for the flow leaves the venue's market data
waiting in the md socket: the kernel's receive queue, then the TCP window, then the
venue's send buffer. Nothing alerted: T1 is stamped when the feed reads, so the
latency alert cannot see the wait, records keep coming, so the breaker's `md_stale_s`
cannot either, and the control plane still answers. Now:

- the feed's Status says how many bytes wait unread in its socket (`unread_bytes`:
  one FIONREAD ioctl on the control thread, nothing per message; None without a
  session);
- the monitor raises `md_backlog` (warning, subject `feed`) once more than
  `monitor.alerts.md_backlog_bytes` (16 KiB) have waited there for
  `md_backlog_after_s` (2 s), and clears it when the feed has caught up;
- /metrics `hftd_md_backlog_bytes`; Prometheus rule HftdMdBacklog.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hftd.config import ALERT_RULES, AlertRulesConfig, HftdConfig, load_config, ring_name
from hftd.feed.daemon import FeedAgent, FeedService
from hftd.ipc import souplink
from hftd.ipc.ring import Ring
from hftd.ipc.souplink import SoupLink
from hftd.monitor.alerts import Facts, evaluate
from hftd.monitor.model import Aggregator
from hftd.monitor.prom import exposition, make_registry
from hftd.wire import soupbintcp as soup
from tests.support import DEFAULT_CONFIG, make_config
from tests.unit import monitor_fixtures as fx

KIB = 1024

# --- the rule ------------------------------------------------------------------------------


def test_rule_raises_past_the_threshold_held_long_enough() -> None:
    assert "md_backlog" in ALERT_RULES
    alerts = load_config(DEFAULT_CONFIG).monitor.alerts
    assert (alerts.md_backlog_bytes, alerts.md_backlog_after_s) == (16 * KIB, 2.0)
    facts = Facts(monitor_age_s=100, md_backlog_bytes=200 * KIB, md_backlog_s=2.4)
    (c,) = evaluate(AlertRulesConfig(), facts)
    assert (c.key, c.severity, c.value, c.threshold) == (
        "md_backlog:feed",
        "warning",
        200 * KIB,
        16 * KIB,
    )
    assert c.message == (
        "200 KiB of market data unread in the feed's socket (more than 16 KiB for 2 s): "
        "read slower than the venue sends it, the strategy acts on late data"
    )
    # not held long enough, not above the threshold (whatever the duration), disabled
    assert not evaluate(AlertRulesConfig(), Facts(monitor_age_s=100, md_backlog_bytes=200 * KIB))
    assert not evaluate(
        AlertRulesConfig(), Facts(monitor_age_s=100, md_backlog_bytes=200 * KIB, md_backlog_s=1.9)
    )
    assert not evaluate(
        AlertRulesConfig(), Facts(monitor_age_s=100, md_backlog_bytes=16 * KIB, md_backlog_s=9.0)
    )
    assert not evaluate(AlertRulesConfig(md_backlog_bytes=256 * KIB), facts)
    assert not evaluate(AlertRulesConfig(md_backlog_after_s=3.0), facts)
    assert not evaluate(AlertRulesConfig(disabled=["md_backlog"]), facts)


# --- the monitor: from the feed's Status to the alert, the state and /metrics ---------------


def feed(unread: int | None) -> dict[str, dict[str, Any]]:
    return {"feed": fx.feed(unread_bytes=unread)}


def keys(agg: Aggregator) -> set[str]:
    return {a.key for a in agg.state.alerts}


def test_from_the_feeds_status_to_the_alert_and_metrics() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, feed(300)))  # a few packets in flight: normal
    assert s.md_backlog_bytes == 300 and "md_backlog:feed" not in keys(agg)
    # above the threshold: held 0 s, then 1.5 s: not yet
    for t in (2.0, 3.5):
        agg.ingest(fx.poll(t, feed(100 * KIB)))
        assert "md_backlog:feed" not in keys(agg)
    s = agg.ingest(fx.poll(4.0, feed(180 * KIB)))
    (alert,) = (a for a in s.alerts if a.key == "md_backlog:feed")
    assert alert.severity == "warning" and alert.value == 180 * KIB
    assert "180 KiB of market data unread" in alert.message and "for 2 s" in alert.message
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert f"hftd_md_backlog_bytes {180.0 * KIB}" in text
    assert 'hftd_alert_firing{alert="md_backlog",severity="warning",subject="feed"} 1.0' in text

    # Caught up: cleared, and logged as cleared.
    s = agg.ingest(fx.poll(4.2, feed(0)))
    assert "md_backlog:feed" not in keys(agg) and s.md_backlog_bytes == 0
    assert any(a.key == "md_backlog:feed" and a.cleared_at for a in s.alert_log)
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert "hftd_md_backlog_bytes 0.0" in text


def test_a_dip_below_the_threshold_starts_the_clock_again() -> None:
    """Bursts that the hot path drains are not a backlog: it must stay above."""
    agg = Aggregator(fx.config())
    for t, unread in ((1.0, 100 * KIB), (2.5, 100 * KIB), (2.7, 10 * KIB), (3.0, 100 * KIB)):
        agg.ingest(fx.poll(t, feed(unread)))
    agg.ingest(fx.poll(4.9, feed(100 * KIB)))
    assert "md_backlog:feed" not in keys(agg)
    agg.ingest(fx.poll(5.0, feed(100 * KIB)))
    assert "md_backlog:feed" in keys(agg)


def test_thresholds_apply_live() -> None:
    agg = Aggregator(fx.config())
    for t in (1.0, 4.0):
        agg.ingest(fx.poll(t, feed(100 * KIB)))
    assert "md_backlog:feed" in keys(agg)
    agg.reconfigure(fx.config(alerts={"md_backlog_bytes": 128 * KIB}))
    agg.ingest(fx.poll(4.2, feed(100 * KIB)))
    assert "md_backlog:feed" not in keys(agg)
    agg.reconfigure(fx.config(alerts={"md_backlog_bytes": 8 * KIB, "md_backlog_after_s": 0.5}))
    agg.ingest(fx.poll(4.4, feed(10 * KIB)))
    agg.ingest(fx.poll(5.0, feed(10 * KIB)))
    assert "md_backlog:feed" in keys(agg)


def test_no_session_and_a_feed_not_answering_say_nothing() -> None:
    """No session: nothing to be behind on (link_down speaks). A feed that no longer
    answers (a stopped hot path): its last word is old, daemon_down speaks."""
    agg = Aggregator(fx.config())
    for t in (1.0, 2.0, 4.0):
        s = agg.ingest(fx.poll(t, {"feed": fx.feed(link="disconnected", unread_bytes=None)}))
    assert s.md_backlog_bytes == 0 and "md_backlog:feed" not in keys(agg)

    agg = Aggregator(fx.config())
    agg.ingest(fx.poll(1.0, feed(100 * KIB)))
    reading = fx.reading("feed", 1.0, fx.feed(unread_bytes=100 * KIB))
    later = fx.poll(9.0, {})
    later.readings["feed"] = reading  # the same (old) answer: not answering since 1.0
    s = agg.ingest(later)
    assert s.md_backlog_bytes == 0
    assert "md_backlog:feed" not in keys(agg) and "daemon_down:feed" in keys(agg)


# --- the link's figure -----------------------------------------------------------------------


def link() -> SoupLink:
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


def test_unread_bytes_is_the_sockets_receive_queue() -> None:
    lk = link()
    assert lk.unread_bytes() is None  # no connection
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        lk.sock = a
        assert lk.unread_bytes() == 0
        b.sendall(b"x" * 5000)
        assert lk.unread_bytes() == 5000
        assert len(a.recv(1200)) == 1200
        assert lk.unread_bytes() == 3800
        a.close()  # closed by the hot thread while the control thread asks
        assert lk.unread_bytes() is None
        lk.sock = None


def test_a_venue_whose_data_waits_unread_is_not_silent() -> None:
    """A loop too slow for the flow reads seconds apart: what the venue sent meanwhile
    waits in the socket. That venue talks (heard 0 ms ago, no `venue_silent`): the
    backlog is `md_backlog`'s to report."""
    lk = link()
    a, b = socket.socketpair()
    with a, b:
        lk.sock = a
        lk.last_rx = time.monotonic() - 5.0  # our last read
        assert 4_900 <= (lk.heard_ms_ago() or 0) < 6_000
        b.sendall(soup.SERVER_HEARTBEAT)
        assert lk.heard_ms_ago() == 0
        lk.sock = None


# --- the feed puts it in its Status ----------------------------------------------------------


@pytest.fixture
def cfg_rings(tmp_path: Path) -> Iterator[tuple[HftdConfig, dict[str, Ring]]]:
    cfg = load_config(make_config(tmp_path))
    rc = cfg.rings
    rings = {
        "md": Ring.open(ring_name(cfg, "md"), rc.md_capacity),
        "risk_md": Ring.open(ring_name(cfg, "risk_md"), rc.risk_md_capacity),
    }
    try:
        yield cfg, rings
    finally:
        for r in rings.values():
            r.close()


def test_the_feeds_status_carries_its_unread_bytes(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    cfg, r = cfg_rings
    svc = FeedService(cfg)
    svc.agent = FeedAgent(cfg, r["md"], r["risk_md"])
    detail = svc.status_detail()
    assert detail is not None and detail.unread_bytes is None  # no session
    a, b = socket.socketpair()
    with a, b:
        svc.agent.link.sock = a
        b.sendall(b"\0" * 7000)
        detail = svc.status_detail()
        assert detail is not None and detail.unread_bytes == 7000
        svc.agent.link.sock = None


def test_a_feed_behind_the_flow_still_heartbeats(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind the flow every read finds more data, so the idle branch (where the feed
    sends its heartbeat) never runs: the venue heard nothing from the feed and dropped
    the session as silent after its heartbeat timeout. The heartbeat is now due on
    reads too."""
    cfg, r = cfg_rings
    monkeypatch.setattr(souplink, "say_status", lambda text: None)  # no NOTIFY_SOCKET here
    feed = FeedAgent(cfg, r["md"], r["risk_md"])
    a, b = socket.socketpair()
    a.setblocking(False)
    b.settimeout(1.0)
    with a, b:
        feed.link.sock = a
        feed.link.requested = 1
        b.sendall(soup.login_accepted("S", 1))
        feed.do_work()
        assert feed.live.is_set()
        assert b.recv(64) == soup.CLIENT_HEARTBEAT  # never a word from us before it
        # a read, a heartbeat not due yet: nothing sent
        feed.link.last_tx = time.monotonic()
        b.sendall(soup.sequenced(b"Y" + bytes(19)))
        assert feed.do_work() == 1
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(64)
        # a read, our last word a second ago: a heartbeat goes with it
        feed.link.last_tx = time.monotonic() - soup.HEARTBEAT_INTERVAL
        b.sendall(soup.sequenced(b"Y" + bytes(19)))
        assert feed.do_work() == 1
        assert b.recv(64) == soup.CLIENT_HEARTBEAT
        assert feed.counters["messages"] == 2 and feed.link.up and feed.live.is_set()
        feed.link.sock = None
