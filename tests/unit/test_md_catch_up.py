"""A replay is not news: after a resync (or a restart) the feed replays the day
from sequence 1, and the part of it published before is rebuilt through without
anyone acting on it (hftd.book.sync "catching up").

Before, a restarted gateway's risk view moved its references and P&L marks
through the whole day's old prices (a position marked at a price from hours ago
could latch the loss stop), and strategies sent orders on hours-old books.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.book.sync import APPLY, LIVE, LOST, QUIET, REBUILD, SKIP, MdSync
from hftd.config import HftdConfig
from hftd.feed.daemon import FeedAgent, ring_high_water
from hftd.gateway.daemon import GatewayAgent
from hftd.ipc.ring import Ring
from hftd.msg.hot import (
    CMD_HEARTBEAT,
    CMD_NEW,
    MD_ADD,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_HEARTBEAT,
    MD_RESET,
    MD_SEQUENCE,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.msg.status import MarketStatus, StrategyDetail
from hftd.risk.market import MarketView
from hftd.strategy.daemon import StrategyAgent, StrategyService
from hftd.wire import soupbintcp as soup
from tests.support import open_rings
from tests.unit.gateway_fixtures import Harness

LOC = 7
OLD_BID, OLD_ASK = 999_900, 1_000_100  # AAPL at $100.00 this morning
BID, ASK = 1_893_900, 1_894_100  # and at $189.40 now
LIVE_MID = (BID + ASK) // 2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def md(
    seq: int, kind: int, ref: int = 0, side: str = "", qty: int = 0, price: int = 0
) -> MarketDataUpdate:
    sym = "AAPL" if kind in (MD_ADD, MD_DIRECTORY) else ""
    return MarketDataUpdate(seq, kind, LOC, sym, ref, side, qty, price, 0, 0, 1)


def reset(replay_to: int) -> MarketDataUpdate:
    return MarketDataUpdate(replay_to, MD_RESET, 0, "", 0, "", 0, 0, 0, 0, 0)


def hb(seq: int) -> MarketDataUpdate:
    return MarketDataUpdate(seq, MD_HEARTBEAT, 0, "", 0, "", 0, 0, 0, 0, 0)


# The day as the feed had it: quoted at $100 in the morning, at $189.40 by now.
DAY = [
    md(1, MD_DIRECTORY),
    md(2, MD_ADD, 1, "B", 100, OLD_BID),
    md(3, MD_ADD, 2, "S", 100, OLD_ASK),
    md(4, MD_DELETE, 1),
    md(5, MD_DELETE, 2),
    md(6, MD_ADD, 3, "B", 100, BID),
    md(7, MD_ADD, 4, "S", 100, ASK),
]
END = len(DAY)


# --- MdSync ----------------------------------------------------------------------------


def test_a_reset_naming_the_replays_end_makes_it_quiet_up_to_there() -> None:
    s = MdSync(Clock())
    assert s.on_update(reset(END)) == REBUILD
    assert s.synced and s.catching_up and s.replay_to == END
    assert [s.on_update(u) for u in DAY] == [QUIET] * (END - 1) + [LIVE]
    assert s.synced and not s.catching_up and s.counters["catch_ups"] == 1
    assert s.on_update(md(8, MD_ADD, 5, "B", 100, BID - 100)) == APPLY  # live
    assert s.status()["catching_up"] is False


def test_a_reset_without_an_end_is_todays_replay() -> None:
    """An older feed (or one that knows nothing yet) says 0: no catch-up."""
    s = MdSync(Clock())
    assert s.on_update(reset(0)) == REBUILD and not s.catching_up
    assert [s.on_update(u) for u in DAY] == [APPLY] * END


def test_sequence_only_records_stay_skipped_and_can_end_the_catch_up() -> None:
    s = MdSync(Clock())
    s.on_update(reset(3))
    assert s.on_update(md(1, MD_DIRECTORY)) == QUIET
    assert s.on_update(md(2, MD_SEQUENCE)) == SKIP and s.catching_up
    assert s.on_update(md(3, MD_SEQUENCE)) == LIVE and not s.catching_up  # at the edge


def test_a_gap_during_the_catch_up_loses_sync_and_the_next_reset_starts_over() -> None:
    s = MdSync(Clock())
    s.on_update(reset(END))
    assert s.on_update(DAY[0]) == QUIET
    assert s.on_update(DAY[2]) == LOST  # 2 is missing
    assert not s.synced and not s.catching_up and s.take_resync()
    assert s.on_update(DAY[3]) == SKIP  # out of sync: nothing
    s.on_update(reset(END + 2))  # the feed saw two more meanwhile
    assert s.catching_up and s.replay_to == END + 2
    assert [s.on_update(u) for u in DAY] == [QUIET] * END
    assert s.on_update(md(8, MD_SEQUENCE)) == SKIP and s.catching_up
    assert s.on_update(md(9, MD_ADD, 5, "B", 100, BID)) == LIVE
    assert s.counters["gaps"] == 1 and s.counters["catch_ups"] == 1


def test_a_drop_seen_in_a_heartbeat_during_the_catch_up_is_a_gap_too() -> None:
    s = MdSync(Clock())
    s.on_update(reset(END))
    s.on_update(DAY[0])
    assert s.on_update(hb(1)) == SKIP and s.catching_up  # the replay is where we are
    assert s.on_update(hb(3)) == LOST and not s.catching_up  # 2, 3 dropped


def test_a_consumer_joining_mid_day_catches_up_to_what_the_feed_had_published() -> None:
    """No reset: a ring nobody read holds the day from sequence 1 (or the venue's
    empty stream, then the day): up to the feed's high-water mark it is history."""
    s = MdSync(Clock())
    s.catch_up_to(END - 1)
    assert not s.catching_up  # not in sync yet: nothing to act on anyway
    assert [s.on_update(u) for u in DAY] == [QUIET] * (END - 2) + [LIVE, APPLY]
    empty_first = MdSync(Clock())
    empty_first.catch_up_to(2)
    assert empty_first.on_update(hb(0)) == REBUILD and empty_first.catching_up
    assert [empty_first.on_update(u) for u in DAY[:3]] == [QUIET, LIVE, APPLY]


def test_a_high_water_mark_already_passed_changes_nothing() -> None:
    s = MdSync(Clock())
    for u in DAY:
        s.on_update(u)
    s.catch_up_to(END)
    s.catch_up_to(0)
    assert not s.catching_up and s.replay_to == 0
    s.catch_up_to(END + 1)  # in sync and behind it: the next one ends the catch-up
    assert s.catching_up and s.on_update(md(8, MD_SEQUENCE)) == LIVE


# --- the feed: the reset says where the replay ends ---------------------------------------


@pytest.fixture
def cfg_rings(tmp_path: Path) -> Iterator[tuple[HftdConfig, dict[str, Ring]]]:
    mm = {"name": "mm", "kind": "market_maker", "symbols": ["AAPL"]}
    with open_rings(tmp_path, {"strategy": {"instances": [mm]}}) as r:
        yield r


def last_reset(ring: Ring) -> MarketDataUpdate:
    raw = ring.last_committed()
    assert raw is not None
    u = msgspec.msgpack.decode(raw, type=MarketDataUpdate)
    assert u.kind == MD_RESET
    return u


def login(feed: FeedAgent, requested: int, venue_starts: int) -> None:
    """The venue's answer to the feed's login from `requested`."""
    feed.link.requested = requested
    feed._on_login(soup.LoginAccepted("S", venue_starts))


def test_the_feeds_reset_carries_its_high_water_mark(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    cfg, r = cfg_rings
    feed = FeedAgent(cfg, r["md"], r["risk_md"])
    feed.link.next_seq = 501  # it had 1..500 from the venue
    feed.resync()
    login(feed, 1, 1)
    assert last_reset(r["md"]).seq == 500 and last_reset(r["risk_md"]).seq == 500
    # a second resync in the middle of the replay: the replay still ends at 500
    feed.link.next_seq = 201
    feed.resync()
    login(feed, 1, 1)
    assert last_reset(r["md"]).seq == 500
    assert feed.published_upto == 500
    # a feed restarted mid-replay knows the end from its ring's last record
    assert FeedAgent(cfg, r["md"], r["risk_md"]).high_water == 500 == ring_high_water(r["md"])


def test_a_venue_whose_stream_is_shorter_now_ends_the_replay_there(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    cfg, r = cfg_rings
    feed = FeedAgent(cfg, r["md"], r["risk_md"])
    feed.link.next_seq = 501
    login(feed, 501, 301)  # the venue lost messages: its stream ends at 300
    login(feed, 1, 1)
    assert last_reset(r["md"]).seq == 300


# --- risk's market view: no old price moves a reference or a mark ------------------------


def traded_gateway(cfg: HftdConfig, r: dict[str, Ring]) -> tuple[GatewayAgent, list[Any]]:
    """A gateway agent whose core holds 1,000 AAPL bought at $189.50: marked at the
    morning's $100 that is a loss of $89,500, past the $50,000 loss stop."""
    agent = GatewayAgent(cfg, r["orders"], r["executions"], r["risk_md"])
    h = Harness(cfg)
    h.fill(h.order("B", 1000), 1000)
    agent.core = h.core
    calls: list[tuple[str, int]] = []
    on_reference = h.core.on_reference

    def spy(sym: str, price: int) -> None:
        calls.append((sym, price))
        on_reference(sym, price)

    h.core.on_reference = spy  # type: ignore[method-assign,assignment]
    return agent, calls


def publish(ring: Ring, updates: list[MarketDataUpdate]) -> None:
    enc = msgspec.msgpack.Encoder()
    for u in updates:
        assert ring.try_write(enc.encode(u))


@pytest.mark.parametrize("replay_to", [0, END], ids=["old feed", "catch-up"])
def test_a_restarted_gateway_does_not_latch_its_loss_stop_on_the_replay(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]], replay_to: int
) -> None:
    """GatewayAgent._market over the risk_md ring: the restart's resync replays the
    day. With the replay's end known, the morning's $100 never reaches the core;
    the live reference is applied once, at the live edge. (0, the feed of before,
    shows the bug this prevents: the loss stop latched on a price of the morning.)"""
    cfg, r = cfg_rings
    agent, calls = traded_gateway(cfg, r)
    core = agent.core
    agent.market.sync.rejoin()  # a ring another run read
    publish(r["risk_md"], [reset(replay_to), *DAY])
    agent._market()
    if not replay_to:
        assert core.risk.loss_stopped and core.mode == "reducing"
        assert ("AAPL", (OLD_BID + OLD_ASK) // 2) in calls
        return
    assert calls == [("AAPL", LIVE_MID)]  # once, the live price
    assert not core.risk.loss_stopped and core.mode == "active"
    assert core.book.mark("AAPL") == core.risk.last_price("AAPL") == LIVE_MID
    assert agent.market.remark == [] and not agent.market.catching_up
    # from the live edge on, a moved reference is reported as before
    publish(r["risk_md"], [md(END + 1, MD_ADD, 5, "B", 100, BID + 100)])
    agent._market()
    assert calls[1:] == [("AAPL", (BID + 100 + ASK) // 2)]


def test_the_market_view_reports_nothing_while_catching_up() -> None:
    view = MarketView(["AAPL"], Clock())
    assert view.on_update(reset(END + 1)) == ""
    assert [view.on_update(u) for u in DAY] == [""] * END
    assert view.catching_up and view.reference == {} and view.remark == []
    assert view.builder.books["AAPL"].best_bid() == (BID, 100)  # the books are rebuilt
    status = msgspec.convert(view.status(), MarketStatus)
    assert status.catching_up and status.replay_to == END + 1
    # the last replayed update: a trade at the ask; one side left, so the last trade
    assert view.on_update(md(END + 1, MD_EXECUTE, 4, qty=100)) == ""
    assert view.remark == ["AAPL"] and view.reference == {"AAPL": ASK}


def test_old_market_status_payloads_still_decode() -> None:
    """A gateway of before (no catching_up, replay_to) is still read."""
    view = MarketView(["AAPL"], Clock())
    old = {k: v for k, v in view.status().items() if k not in ("catching_up", "replay_to")}
    assert msgspec.convert(old, MarketStatus).catching_up is False


def test_a_book_error_on_the_last_replayed_update_reports_nothing() -> None:
    view = MarketView(["AAPL"], Clock())
    view.on_update(reset(END))
    for u in DAY[:-1]:
        view.on_update(u)
    assert view.on_update(md(END, MD_DELETE, 42)) == ""  # an order never added
    assert view.remark == [] and not view.in_sync and view.book_errors == 1


# --- the strategy: no callback, no order on the replay ------------------------------------


def test_a_strategy_neither_sees_nor_trades_on_the_replay(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """StrategyAgent over the md ring, a market maker on AAPL (it quotes as soon as
    a book has both sides): nothing during the replay, quotes from the live edge."""
    cfg, r = cfg_rings
    agent = StrategyAgent(cfg, r["md"], r["executions"], r["orders"])
    [mm] = agent.engine.contexts
    seen: list[int] = []
    on_book = mm.strategy.on_book

    def spy(ctx: Any, symbol: str) -> None:
        seen.append(agent.engine.builder.last_seq)
        on_book(ctx, symbol)

    mm.strategy.on_book = spy  # type: ignore[method-assign]
    agent.engine.reconfigure(cfg)  # routes updates anew: to the spy
    dec = msgspec.msgpack.Decoder(OrderCommand)

    def sent() -> list[OrderCommand]:
        out = []
        while (raw := r["orders"].read()) is not None:
            out.append(dec.decode(raw))
        r["orders"].commit()
        return out

    agent.sync.rejoin()
    publish(r["md"], [reset(END), *DAY[:-1]])
    agent.pump()
    assert agent.sync.catching_up and seen == [] and sent() == []
    agent.do_work()  # the timer: the heartbeat says "not in sync" while catching up
    [heartbeat] = sent()
    assert heartbeat.kind == CMD_HEARTBEAT and heartbeat.qty == 0
    svc = StrategyService(cfg)
    svc.agent = agent
    detail = svc.status_detail()
    assert isinstance(detail, StrategyDetail) and detail.catching_up and detail.replay_to == END
    publish(r["md"], [DAY[-1]])  # the live edge: still nothing acted on
    agent.pump()
    assert not agent.sync.catching_up and seen == [] and sent() == []
    assert agent.engine.builder.books["AAPL"].best_ask() == (ASK, 100)
    publish(r["md"], [md(END + 1, MD_ADD, 5, "B", 100, BID - 100)])  # news
    agent.pump()
    assert seen == [END + 1]
    assert {c.side for c in sent() if c.kind == CMD_NEW} == {"B", "S"}  # it quotes
    agent.next_timer = agent.engine.next_heartbeat_ns = 0  # both due now
    agent.do_work()
    assert [c.qty for c in sent() if c.kind == CMD_HEARTBEAT] == [1]  # in sync again
