"""A live strategy whose books are handed an update they cannot apply (issue 11, item 9).

A bare venue (`tests.support.StubItchVenue`) serves the real NASDAQ sample to
the real feed; one message reaches the feed damaged once (bits flipped in the
order reference of a delete: a delete of an order that was never added), the
way a message damaged upstream would. The strategy must keep running (same
pid), count it, resync (the feed replays from 1, this time undamaged) and end
with the venue's book, and the monitor must raise `book_errors`.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from hftd.msg.control import Depth, Status
from hftd.replay import replay_file
from tests.support import (
    ITCH_FILE,
    StubItchVenue,
    ask,
    itch_sample,
    make_config,
    start_daemon,
    status,
    wait_for,
)

pytestmark = pytest.mark.integration

FIRST = 100  # served before the damage
LAST = 3_000  # the stream the test ends with


def test_a_book_inconsistency_is_counted_resynced_and_alerted(tmp_path: Path) -> None:
    sample = itch_sample()[:LAST]
    seq = next(i for i, m in enumerate(sample, 1) if i > FIRST and m[:1] == b"D")
    bad = bytearray(sample[seq - 1])
    bad[11] ^= 0x80  # the top bit of the order reference (bytes 11..18)
    (ref,) = struct.unpack_from(">Q", bad, 11)
    with StubItchVenue(sample[:FIRST]) as venue:
        cfg = make_config(
            tmp_path,
            {
                "exchange": {"md_port": venue.port},
                "strategy": {"instances": []},
                "daemons": {"monitor": {"enabled": True}},
                "monitor": {"web_enabled": False, "poll_interval_s": 0.2},
            },
        )
        with (
            start_daemon("feed", cfg),
            start_daemon("strategy", cfg) as st,
            start_daemon("monitor", cfg) as mon,
        ):
            pid = ask(st, "strategy", Status())["pid"]
            assert pid == st.proc.pid

            def monitor_saw_strategy() -> bool:
                state = ask(mon, "monitor", Status())["detail"]["state"]
                return any(d["name"] == "strategy" and d["pid"] == pid for d in state["daemons"])

            # The monitor's first sight of a counter is its baseline: let it see 0.
            wait_for(lambda: status(st, "strategy")["last_seq"] == FIRST, 10, "the first 100")
            wait_for(monitor_saw_strategy, 10, "the monitor polling the strategy")
            assert status(st, "strategy").get("book_errors", 0) == 0

            venue.corrupt_once(seq, bytes(bad))
            venue.publish(sample[FIRST:])
            det = wait_for(
                lambda: (d := status(st, "strategy"))["last_seq"] == LAST and d["resets"] and d,
                20,
                "the strategy resynced through the whole stream",
            )
            assert st.proc.poll() is None and ask(st, "strategy", Status())["pid"] == pid
            assert det.get("book_errors") == 1, det
            assert f"sequence {seq}" in det["last_book_error"]
            assert f"unknown order {ref}" in det["last_book_error"]
            assert det["synced"] and det["resyncs"] == 1 and det["resets"] == 1
            assert not det["resync_loop"] and det["resync_failures"] == 0
            assert venue.logins == [1, 1]  # the feed's first login, then the replay from 1
            assert "Traceback" not in st.log
            assert f"book inconsistent at sequence {seq}" in st.log  # one line, not per message

            # Not a silently wrong book: the strategy's is the venue's.
            want, _ = replay_file(ITCH_FILE, ["AAPL"], upto=LAST)
            book = want.books["AAPL"]
            got = ask(st, "strategy", Depth("AAPL"))
            assert got["md_sequence"] == LAST
            assert [tuple(x) for x in got["bids"]] == book.depth("B")
            assert [tuple(x) for x in got["asks"]] == book.depth("S")
            assert {int(k): tuple(v) for k, v in got["orders"].items()} == book.orders

            def alert() -> dict[str, Any] | None:
                state = ask(mon, "monitor", Status())["detail"]["state"]
                return next((a for a in state["alerts"] if a["rule"] == "book_errors"), None)

            raised = wait_for(alert, 10, "the book_errors alert")
            assert raised["severity"] == "warning" and raised["subject"] == "strategy"
            assert f"sequence {seq}" in raised["message"], raised
            state = ask(mon, "monitor", Status())["detail"]["state"]
            assert state["counters"]["book_errors"] == 1
            assert not [a for a in state["alerts"] if a["rule"] == "resync_loop"]
