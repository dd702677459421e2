"""The live system on real NASDAQ data: the exchange plays the NASDAQ sample
(`exchange.md_file`) as its market, the feed, strategy and gateway trade on it.

The way issue 11 happened: a real day's stream (52 `L`, 1 `Y` among 10,000
AAPL messages) through the real daemons. The system must stay in sync (no
gap, no resync), build the book `hftd replay` builds from the same file at the
same point, and trade: orders acknowledged and filled against the file's
liquidity, with the strategy's book equal to the venue's at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hftd.msg.control import Depth, Pause, Resume, Snapshot
from hftd.replay import replay_file
from tests.support import (
    ITCH_FILE,
    ask,
    assert_gateway_matches_venue,
    make_config,
    start_daemon,
    status,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.layouts]

SPEED = 800.0  # the sample's 4 h 52 min of pre-market in about 22 s


def config(tmp: Path) -> Path:
    return make_config(
        tmp,
        {
            "symbols": [{"symbol": "AAPL", "reference_price": "320.00", "round_lot": 100}],
            "exchange": {"md_file": str(ITCH_FILE), "md_file_speed": SPEED},
            "strategy": {
                "instances": [
                    {
                        "name": "mr1",
                        "kind": "mean_reversion",
                        "symbols": ["AAPL"],
                        "order_qty": 100,
                        "max_position": 300,
                        "window": 10,
                        "threshold_sigma": 1.0,
                        "cooldown_ms": 50.0,
                        "aggression_ticks": 1,
                    }
                ]
            },
            "gateway": {"strategy_timeout_s": 2.0},
            "monitor": {"web_enabled": False},
        },
    )


def replayed(upto: int) -> tuple[list[list[int]], list[list[int]], dict[int, list[Any]]]:
    """`hftd replay`'s AAPL book after the file's first `upto` messages, as a control
    reply carries it (tuples as lists)."""
    builder, n = replay_file(ITCH_FILE, ["AAPL"], upto=upto)
    assert n == upto
    book = builder.books["AAPL"]
    return (
        [list(x) for x in book.depth("B")],
        [list(x) for x in book.depth("S")],
        {ref: list(o) for ref, o in book.orders.items()},
    )


def book_of(depth: dict[str, Any]) -> tuple[Any, ...]:
    return depth["bids"], depth["asks"], depth["orders"]


def test_trading_on_the_nasdaq_sample_stays_in_sync(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with (
        start_daemon("exchange", cfg) as ex,
        start_daemon("feed", cfg) as feed,
        start_daemon("gateway", cfg) as gw,
    ):
        ask(gw, "gateway", Pause())  # nothing of ours in the venue's books yet
        with start_daemon("strategy", cfg) as st:
            # 1. The same point: the strategy's book against hftd replay's. While none
            # of our orders is in the venue, its stream is its start of day, then
            # the file's messages one for one.
            wait_for(
                lambda: status(ex, "exchange")["md_file"]["published"] >= 500,
                30,
                "the first 500 file messages",
            )
            exd = status(ex, "exchange")
            base = exd["md_messages"] - exd["md_file"]["published"]
            assert exd["md_file"]["skipped"] == exd["md_file"]["other_symbols"] == 0
            assert exd["fills"] == 0 and base == 5  # S O, R, H, S S, S Q
            mine = wait_for(
                lambda: (d := ask(st, "strategy", Depth("AAPL")))["md_sequence"] > base + 300 and d,
                20,
                "the strategy well into the file",
            )
            assert book_of(mine) == replayed(mine["md_sequence"] - base)
            # 2. Trade on it.
            ask(gw, "gateway", Resume())
            wait_for(
                lambda: (
                    status(gw, "gateway")["fills"] >= 1
                    and ask(ex, "exchange", Snapshot("HFTD"))["fills"]
                ),
                60,
                "an order acknowledged and filled against the file's liquidity",
            )
            # 3. To the end of the file: the strategy's book is the venue's.
            wait_for(
                lambda: (
                    status(ex, "exchange")["md_file"]["position"] == 10_000
                    and not status(gw, "gateway")["working"]
                ),
                90,
                "the whole file played",
            )
            md_end = status(ex, "exchange")["md_messages"]
            wait_for(lambda: status(st, "strategy")["last_seq"] == md_end, 20, "caught up")
            assert book_of(ask(st, "strategy", Depth("AAPL"))) == book_of(
                ask(ex, "exchange", Depth("AAPL"))
            )
            sdet, fdet = status(st, "strategy"), status(feed, "feed")
            exd = status(ex, "exchange")
            assert sdet["gaps"] == sdet["resets"] == sdet["resyncs"] == 0, sdet
            assert not sdet["resync_loop"] and sdet["synced"]
            assert fdet["gaps"] == fdet["reconnects"] == fdet["drops"] == 0, fdet
            assert fdet["unknown_types"] == fdet["malformed"] == 0
            assert fdet["messages"] == md_end
            assert exd["md_file"]["messages"] == 10_000
            assert exd["md_file"]["unreadable"] == exd["md_file"]["other_symbols"] == 0
        # The strategy is gone: its orders are done; the gateway's books are the venue's.
        wait_for(lambda: not status(gw, "gateway")["working"], 10, "nothing working")
        assert_gateway_matches_venue(status(gw, "gateway"), ask(ex, "exchange", Snapshot("HFTD")))
