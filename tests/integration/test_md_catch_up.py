"""A restarted gateway catches up with the market without trading on the past.

Real processes: the exchange (no synthetic flow: the TEST user makes the
market), the feed and the gateway; the gateway's orders come straight from the
test through the orders ring (no strategy). The day: AAPL quoted at $100 in the
morning, then at $189.50; the gateway buys 1,000 at $189.51. Killed and
restarted, the gateway rejoins its risk_md ring and the feed replays the day
from sequence 1. Marked at the morning's $100 that position loses $89,510, past
the $50,000 daily loss limit: before the catch-up, the replay latched the loss
stop (mode "reducing") on a price from before the position existed. Now the
replay rebuilds the books silently and the reference is the live $189.50.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hftd.msg import ids
from hftd.msg.control import Snapshot
from hftd.msg.hot import CMD_HEARTBEAT, CMD_NEW, TIF_IOC, OrderCommand
from hftd.wire import ouch
from tests.integration.test_venue_events import send_orders
from tests.support import Daemon, SoupClient, ask, make_config, start_daemon, status, wait_for

pytestmark = pytest.mark.integration

OLD_BID, OLD_ASK = 999_900, 1_000_100  # the morning: $99.99 / $100.01
BID, ASK = 1_894_900, 1_895_100  # now: $189.49 / $189.51
MID = (BID + ASK) // 2


def gw(d: Daemon) -> dict[str, Any]:
    return status(d, "gateway")


def reference(d: Daemon) -> int | None:
    ref: int | None = gw(d)["market"]["reference"].get("AAPL")
    return ref


def test_a_restarted_gateway_does_not_mark_its_position_at_the_mornings_price(
    tmp_path: Path,
) -> None:
    cfg = make_config(
        tmp_path,
        {
            "exchange": {"flow": {"enabled": False}},
            "gateway": {"strategy_timeout_s": 120.0},  # no strategy: the test sends orders
            "system": {"log_level": "info"},
        },
    )
    with (
        start_daemon("exchange", cfg) as ex,
        start_daemon("feed", cfg) as feed,
        start_daemon("gateway", cfg) as g,
    ):
        maker = SoupClient(ex.config["exchange"]["order_port"], "TEST", "test-pass", sequence=0)

        def enter(ref: int, side: str, qty: int, price: int) -> None:
            maker.send_unsequenced(
                ouch.encode_inbound(ouch.EnterOrder(ref, side, qty, "AAPL", price))
            )

        def cancel(ref: int) -> None:
            maker.send_unsequenced(ouch.encode_inbound(ouch.CancelOrder(ref)))

        # The morning: AAPL at $100.
        enter(1, "B", 100, OLD_BID)
        enter(2, "S", 100, OLD_ASK)
        wait_for(lambda: reference(g) == 1_000_000, 20, "the gateway's reference at $100")
        cancel(1)
        cancel(2)
        # Now: $189.49 / $189.51, and the gateway buys 1,000 at the offer.
        enter(3, "B", 100, BID)
        enter(4, "S", 1000, ASK)
        wait_for(lambda: reference(g) == MID, 20, "the gateway's reference at $189.50")
        cl_id = ids.first_id(0, 1)
        send_orders(
            cfg,
            OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0),
            OrderCommand(CMD_NEW, cl_id, "AAPL", "B", 1000, ASK, TIF_IOC, 0, "mr1", 0, 0),
        )
        wait_for(lambda: gw(g)["fills"] == 1, 20, "the fill")
        enter(5, "S", 100, ASK)  # the offer again: quoted both sides
        wait_for(lambda: reference(g) == MID, 20, "the reference back at the mid")
        before = gw(g)
        assert before["mode"] == "active", before["mode"]
        assert before["positions"]["positions"][0]["qty"] == 1000
        g.proc.kill()
        g.proc.wait(10)

        with start_daemon("gateway", cfg) as g2:
            end = status(feed, "feed")["next_sequence"] - 1
            assert end > 0

            def caught_up() -> dict[str, Any] | None:
                d = gw(g2)
                m = d["market"]
                done = m["synced"] and not m["catching_up"] and m["last_seq"] >= end
                return d if done else None

            after = wait_for(caught_up, 30, "the restarted gateway's market view caught up")
            fdet = status(feed, "feed")
            assert fdet["resets"] == 1 and fdet["high_water"] >= end  # the replay happened
            assert after["market"]["resyncs"] == 1
            assert after["market"]["reference"] == {"AAPL": MID}
            assert after["positions"]["positions"][0]["qty"] == 1000
            assert after["mode"] == "active", after["mode"]  # no loss stop latched
            assert after["risk"]["loss"] < 0.01
            log = g2.log
            assert "LOSS STOP" not in log
            assert "risk market view caught up" in log and "'AAPL': 189.5" in log


def test_a_strategy_joining_mid_day_trades_on_news_only(tmp_path: Path) -> None:
    """A strategy started late reads the md ring from its start (nobody read it):
    the day so far, history. A market maker quotes as soon as a book has both
    sides: it used to quote on the first of it; now it waits for the first update
    after the feed's high-water mark at its start, and then quotes."""
    mm = {"name": "mm", "kind": "market_maker", "symbols": ["AAPL"]}
    cfg = make_config(
        tmp_path,
        {
            "exchange": {"flow": {"enabled": False}},
            "strategy": {"instances": [mm]},
            "system": {"log_level": "info"},
        },
    )
    with (
        start_daemon("exchange", cfg) as ex,
        start_daemon("feed", cfg) as feed,
        start_daemon("gateway", cfg) as g,
    ):
        maker = SoupClient(ex.config["exchange"]["order_port"], "TEST", "test-pass", sequence=0)
        for ref, side, price in ((1, "B", OLD_BID), (2, "S", OLD_ASK), (3, "B", OLD_BID - 100)):
            maker.send_unsequenced(
                ouch.encode_inbound(ouch.EnterOrder(ref, side, 100, "AAPL", price))
            )

        def day_published() -> int | None:
            """The venue's stream so far, once it holds the three orders and the feed
            has had all of it (the strategy must find it all in the ring)."""
            if len(ask(ex, "exchange", Snapshot("TEST"))["open_orders"]) < 3:
                return None
            n: int = status(ex, "exchange")["md_messages"]
            return n if status(feed, "feed")["next_sequence"] - 1 == n else None

        end = wait_for(day_published, 20, "the day so far published")
        with start_daemon("strategy", cfg) as st:

            def caught_up() -> dict[str, Any] | None:
                d = status(st, "strategy")
                return d if d["synced"] and not d["catching_up"] and d["last_seq"] >= end else None

            det = wait_for(caught_up, 20, "the strategy caught up")
            assert det["resets"] == 0  # no replay asked: the ring held the day
            assert det["strategies"]["mm"]["sent"] == 0 and det["working"] == 0
            assert gw(g)["commands"] == 0  # nothing reached the gateway either
            # news: the market maker quotes on it
            maker.send_unsequenced(
                ouch.encode_inbound(ouch.EnterOrder(4, "B", 100, "AAPL", OLD_BID + 100))
            )
            wait_for(lambda: status(st, "strategy")["strategies"]["mm"]["sent"] >= 1, 20, "quotes")
            assert "caught up at sequence" in st.log
