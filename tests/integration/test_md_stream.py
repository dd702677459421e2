"""The feed and the strategy against a venue's real ITCH stream (issue 11).

A bare venue (`tests.support.StubItchVenue`: SoupBinTCP serving a list of ITCH
messages, as a NASDAQ feed serves its day) stands in for the exchange where the
test needs a stream our simulator would never send: the real NASDAQ sample
with its `L` and `Y` messages, a stream that is still empty, and one whose
data the books reject. The feed and the strategy are the real daemons.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import pytest

from hftd.msg.control import Status
from hftd.wire import itch
from tests.support import (
    StubItchVenue,
    ask,
    itch_sample,
    make_config,
    start_daemon,
    status,
    wait_for,
)

pytestmark = pytest.mark.integration


def feed_config(tmp: Path, md_port: int, extra: dict[str, Any] | None = None) -> Path:
    over: dict[str, Any] = {
        "exchange": {"md_port": md_port},
        "strategy": {"instances": []},
        "monitor": {"web_enabled": False},
    }
    for k, v in (extra or {}).items():
        over[k] = {**over.get(k, {}), **v}
    return make_config(tmp, over)


def test_the_nasdaq_samples_l_and_y_keep_the_strategy_in_sync(tmp_path: Path) -> None:
    """The sample holds 52 `L` and 1 `Y` (the third message). They used to vanish
    in the feed: the strategy saw a gap at sequence 3, the feed replayed from 1 and
    hit the same hole, tens of times a second, forever."""
    with StubItchVenue(itch_sample()) as venue:
        cfg = feed_config(tmp_path, venue.port)
        with start_daemon("feed", cfg), start_daemon("strategy", cfg) as st:
            wait_for(
                lambda: (
                    status(st, "strategy")["last_seq"] == 10_000
                    or status(st, "strategy")["gaps"] > 0
                ),
                20,
                "the strategy through the whole sample (or a gap)",
            )
            det = status(st, "strategy")
            assert det["gaps"] == 0, (det, f"{len(venue.logins)} feed logins")
            assert det["last_seq"] == 10_000 and det["synced"]
            assert det["resets"] == 0 and venue.logins == [1]
            feed = status(st, "feed")
            assert feed["messages"] == feed["published"] == 10_000
            assert feed["unknown_types"] == feed["malformed"] == 0


def test_messages_that_are_not_itch_keep_the_sequence(tmp_path: Path) -> None:
    """Hostile or broken input on the wire: a type that is not ITCH 5.0 and an add
    order cut short. Each keeps its sequence number (no gap), is counted, and the
    feed says so in its log, not once per message."""
    sample = itch_sample()
    alien = [b"z" + bytes(20)] * 300
    short_add = next(m for m in sample if m[:1] == b"A")[:-1]
    assert short_add[:1] == b"A"
    with StubItchVenue([*sample[:50], *alien, short_add, *sample[50:100]]) as venue:
        cfg = feed_config(tmp_path, venue.port)
        with start_daemon("feed", cfg) as feed, start_daemon("strategy", cfg) as st:
            wait_for(lambda: status(st, "strategy")["last_seq"] == 401, 20, "all 401 messages")
            det, fdet = status(st, "strategy"), status(feed, "feed")
            assert det["gaps"] == det["resets"] == 0 and venue.logins == [1]
            assert (fdet["unknown_types"], fdet["malformed"]) == (300, 1)
            lines = [ln for ln in feed.log.splitlines() if "sequence-only" in ln]
            assert 1 <= len(lines) <= 2, lines  # rate-limited: not 301 lines
            assert "not ITCH 5.0" in feed.log


def test_an_empty_stream_is_in_sync_before_the_open(tmp_path: Path) -> None:
    """Before the open the venue has sequenced nothing. The strategy used to wait
    for sequence 1 and never said READY (the supervisor restarted it every 30 s)."""
    with StubItchVenue([]) as venue:
        cfg = feed_config(tmp_path, venue.port)
        t0 = time.monotonic()
        with start_daemon("feed", cfg), start_daemon("strategy", cfg, ready_timeout=10) as st:
            ready_s = time.monotonic() - t0
            det = status(st, "strategy")
            assert det["synced"] and det["last_seq"] == 0 and det["gaps"] == 0
            assert ready_s < 10
            assert "venue has sequenced nothing yet" in st.log
            # The open: the first messages arrive and are applied in sequence.
            venue.publish(itch_sample()[:500])
            wait_for(lambda: status(st, "strategy")["last_seq"] == 500, 10, "the first 500")
            det = status(st, "strategy")
            assert det["gaps"] == 0 and det["resets"] == 0 and venue.logins == [1]


def test_a_quiet_exchange_lets_the_strategy_start(tmp_path: Path) -> None:
    """No background flow at all: only the venue's start of day, then silence."""
    cfg = make_config(
        tmp_path,
        {"exchange": {"flow": {"enabled": False}}, "strategy": {"instances": []}},
    )
    with (
        start_daemon("exchange", cfg),
        start_daemon("feed", cfg),
        start_daemon("strategy", cfg, ready_timeout=10) as st,
    ):
        det = status(st, "strategy")
        assert det["synced"] and det["gaps"] == 0


def test_a_resync_loop_is_alerted_and_backs_off(tmp_path: Path) -> None:
    """An execution of an order the venue never added (sequence 101, once trading
    is under way): the books reject it, the replay brings it back, every time. The
    strategy must see the loop, back off (not reconnect the feed tens of times a
    second) and the monitor must raise `resync_loop`."""
    sample = itch_sample()
    bad = itch.encode(itch.OrderExecuted(13, 0, 11_300_000_000_000, 999_999_999, 100, 1))
    assert struct.unpack(">H", sample[0][1:3])[0] == 13  # AAPL's locate in the sample
    with StubItchVenue(sample[:100]) as venue:
        cfg = feed_config(
            tmp_path,
            venue.port,
            {"daemons": {"monitor": {"enabled": True}}, "monitor": {"poll_interval_s": 0.2}},
        )
        with (
            start_daemon("feed", cfg),
            start_daemon("strategy", cfg) as st,
            start_daemon("monitor", cfg) as mon,
        ):
            venue.publish([bad, *sample[100:200]])
            first = wait_for(
                lambda: (d := status(st, "strategy")).get("resync_loop") and d,
                10,
                "the loop detected",
            )
            assert first["resync_hole"] == 101, first
            n0, t0 = len(venue.logins), time.monotonic()
            # Two more failed resyncs: at the feed's reconnect rate that is ~50 ms;
            # backing off (0.5 s, then 1 s) it is at least 1.5 s and a few logins.
            wait_for(
                lambda: status(st, "strategy")["resync_failures"] >= first["resync_failures"] + 2,
                15,
                "two more failed resyncs",
            )
            n1, t1 = len(venue.logins), time.monotonic()
            assert t1 - t0 >= 1.2, f"{n1 - n0} feed logins in {t1 - t0:.2f} s: still spinning"
            assert n1 - n0 <= 4, f"{n1 - n0} feed logins in {t1 - t0:.2f} s"
            det = status(st, "strategy")
            assert det["resync_loop"] and det["resync_backoff_s"] >= 1.0, det

            def alert() -> dict[str, Any] | None:
                state = ask(mon, "monitor", Status())["detail"]["state"]
                return next((a for a in state["alerts"] if a["rule"] == "resync_loop"), None)

            raised = wait_for(alert, 10, "the resync_loop alert")
            assert raised["severity"] == "critical" and "101" in raised["message"]
