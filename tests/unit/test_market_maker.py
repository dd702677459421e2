"""The market maker's decisions (hftd.strategy.kinds.market_maker): quoting
both sides, the inventory skew, its position limit, keeping quotes with replaces,
and pulling them on an adverse move and on stale market data."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hftd.config import load_config
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_NEW,
    CMD_REPLACE,
    EX_ACCEPTED,
    EX_FILL,
    EX_REPLACED,
    MD_ADD,
    MD_DELETE,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.strategy.engine import StrategyEngine
from hftd.strategy.kinds import MarketMaker, MarketMakerConfig
from tests.support import ROOT
from tests.unit.test_strategy import engine, timer

TICK = 100  # $0.01 (AAPL's tick in the default config)


def mm(**over: Any) -> MarketMakerConfig:
    base: dict[str, Any] = {
        "name": "mm",
        "symbols": ["AAPL"],
        "order_qty": 100,
        "max_position": 200,
        "half_spread_ticks": 2,
        "skew_ticks": 4.0,
        "requote_ticks": 1,
        "pull_ticks": 50,
        "pull_window_ms": 100.0,
        "stale_ms": 500.0,
        "cooldown_ms": 50.0,
    }
    return MarketMakerConfig(**(base | over))


class Market:
    """AAPL's book, one order a side, moved by deleting and adding."""

    def __init__(self, eng: StrategyEngine) -> None:
        self.eng = eng
        self.seq = itertools.count(1)
        self.ref = itertools.count(1)
        self.live: dict[str, int] = {}

    def quote(self, bid: int, ask: int, size: int = 100) -> None:
        for side, px in (("B", bid), ("S", ask)):
            old = self.live.get(side)
            if old:
                self.eng.on_update(self._u(MD_DELETE, old, side, 0, 0))
            ref = next(self.ref)
            self.live[side] = ref
            self.eng.on_update(self._u(MD_ADD, ref, side, size, px))

    def _u(self, kind: int, ref: int, side: str, qty: int, px: int) -> MarketDataUpdate:
        sym = "AAPL" if kind == MD_ADD else ""
        return MarketDataUpdate(next(self.seq), kind, 1, sym, ref, side, qty, px, 0, 0, 1)


def news(sent: list[OrderCommand]) -> list[tuple[str, int]]:
    return [(c.side, c.price) for c in sent if c.kind == CMD_NEW]


def accept_all(eng: StrategyEngine, sent: list[OrderCommand]) -> None:
    for c in sent:
        if c.kind == CMD_NEW and c.cl_id in eng.contexts[0].om.orders:
            o = eng.contexts[0].om.orders[c.cl_id]
            if o.state == "sent":
                eng.on_report(
                    ExecutionReport(
                        EX_ACCEPTED, c.cl_id, 0, "AAPL", c.side, 100, c.price, 100, 0, "", 0
                    )
                )


def test_it_quotes_both_sides_around_the_fair_price_when_flat() -> None:
    eng, sent = engine([mm()])
    Market(eng).quote(1_000_000, 1_001_000)  # 100.00 / 100.10, equal sizes: fair 100.05
    assert news(sent)[-2:] == [("B", 1_000_500 - 2 * TICK), ("S", 1_000_500 + 2 * TICK)]
    assert all(c.tif == "0" for c in sent if c.kind == CMD_NEW)  # resting (DAY) quotes


def test_the_fair_price_leans_to_the_thin_side() -> None:
    eng, sent = engine([mm()])
    m = Market(eng)
    m.eng.on_update(m._u(MD_ADD, 1, "B", 900, 1_000_000))  # a deep bid, a thin ask:
    m.eng.on_update(m._u(MD_ADD, 2, "S", 100, 1_001_000))  # the price is going up
    bid, ask = news(sent)[-2:]
    assert bid[1] > 1_000_500 - 2 * TICK and ask[1] > 1_000_500 + 2 * TICK


def test_inventory_skews_both_quotes_against_it_and_the_limit_stops_a_side() -> None:
    eng, sent = engine([mm()])
    mk = Market(eng)
    mk.quote(1_000_000, 1_001_000)
    accept_all(eng, sent)
    strat = eng.contexts[0]
    [bid_cl] = [c.cl_id for c in sent if c.kind == CMD_NEW and c.side == "B"]
    # our bid fills: long 100 (half the limit) -> reservation 2 ticks lower
    eng.on_report(ExecutionReport(EX_FILL, bid_cl, 0, "AAPL", "B", 100, 999_800, 0, 100, "", 0))
    assert strat.om.book.position("AAPL").qty == 100
    sent.clear()
    mk.quote(1_000_000, 1_001_000)  # same market: only the skew moved
    bid = [c for c in sent if c.kind == CMD_NEW and c.side == "B"]
    ask = [c for c in sent if c.kind == CMD_REPLACE and c.side == "S"]
    assert bid and bid[0].price == 1_000_500 - 2 * TICK - 2 * TICK
    assert ask and ask[0].price == 1_000_500 + 2 * TICK - 2 * TICK  # moved by a replace
    assert isinstance(strat.strategy, MarketMaker) and strat.strategy.requotes == 1
    # at the limit (long 200): no bid at all
    eng.on_report(
        ExecutionReport(EX_ACCEPTED, bid[0].cl_id, 0, "AAPL", "B", 100, bid[0].price, 100, 0, "", 0)
    )
    eng.on_report(
        ExecutionReport(EX_FILL, bid[0].cl_id, 0, "AAPL", "B", 100, bid[0].price, 0, 200, "", 0)
    )
    eng.on_report(
        ExecutionReport(
            EX_REPLACED,
            ask[0].cl_id,
            ask[0].orig_cl_id,
            "AAPL",
            "S",
            100,
            ask[0].price,
            100,
            200,
            "",
            0,
        )
    )
    sent.clear()
    mk.quote(1_000_000, 1_001_000)
    assert not [c for c in sent if c.side == "B" and c.kind in (CMD_NEW, CMD_REPLACE)]


def test_a_small_move_keeps_the_quotes_a_tick_moves_them_with_replaces() -> None:
    eng, sent = engine([mm(requote_ticks=2)])
    mk = Market(eng)
    mk.quote(1_000_000, 1_001_000)
    accept_all(eng, sent)
    sent.clear()
    mk.quote(1_000_100, 1_001_100)  # fair up one tick: less than requote_ticks
    assert not [c for c in sent if c.kind in (CMD_NEW, CMD_REPLACE, CMD_CANCEL)]
    mk.quote(1_000_300, 1_001_300)  # three ticks: both quotes follow, by replace
    kinds = sorted((c.kind, c.side) for c in sent)
    assert kinds == [(CMD_REPLACE, "B"), (CMD_REPLACE, "S")]
    assert not news(sent)


def test_an_adverse_move_pulls_both_quotes_for_the_cooldown() -> None:
    eng, sent = engine([mm(pull_ticks=5)])
    mk = Market(eng)
    mk.quote(1_000_000, 1_001_000)
    accept_all(eng, sent)
    sent.clear()
    mk.quote(1_001_200, 1_001_600)  # the bid jumps: the mid is 6 ticks up at once
    assert sorted(c.kind for c in sent) == [CMD_CANCEL, CMD_CANCEL]
    strat = eng.contexts[0]
    assert isinstance(strat.strategy, MarketMaker) and strat.strategy.pulls == 1
    sent.clear()
    mk.quote(1_001_200, 1_001_600)  # still cooling down: no new quotes
    assert not news(sent)


def test_quotes_being_replaced_when_the_pull_comes_are_cancelled_once_live() -> None:
    eng, sent = engine([mm(pull_ticks=5)])
    mk = Market(eng)
    mk.quote(1_000_000, 1_001_000)
    accept_all(eng, sent)
    sent.clear()
    mk.quote(1_000_600, 1_001_600)  # bid then ask: the first move requotes, the second pulls
    replaces = [c for c in sent if c.kind == CMD_REPLACE]
    assert len(replaces) == 2 and not [c for c in sent if c.kind == CMD_CANCEL]
    sent.clear()
    for c in replaces:  # the venue does the replaces: the new quotes come live, pulled
        r = ExecutionReport(
            EX_REPLACED, c.cl_id, c.orig_cl_id, "AAPL", c.side, 100, c.price, 100, 0, "", 0
        )
        eng.on_report(r)
    assert sorted(c.orig_cl_id for c in sent if c.kind == CMD_CANCEL) == sorted(
        c.cl_id for c in replaces
    )


def test_stale_market_data_pulls_the_quotes() -> None:
    eng, sent = engine([mm(stale_ms=500.0)])
    Market(eng).quote(1_000_000, 1_001_000)
    accept_all(eng, sent)
    strat = eng.contexts[0]
    sent.clear()
    assert isinstance(strat.strategy, MarketMaker)
    timer(eng, strat.strategy.last_md["AAPL"] + 400 * 10**6)  # not stale yet
    assert not sent
    timer(eng, strat.strategy.last_md["AAPL"] + 600 * 10**6)
    assert sorted(c.kind for c in sent) == [CMD_CANCEL, CMD_CANCEL]


def test_the_example_in_the_default_config_is_valid(tmp_path: Path) -> None:
    text = (ROOT / "config" / "default.toml").read_text()
    start = text.index('# [[strategy.instances]]\n# name = "mm1"')
    block = text[start : text.index("\n\n", start)]
    live = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    p = tmp_path / "mm.toml"
    p.write_text(text.replace(block, live))
    [mm1] = [i for i in load_config(p).strategy.instances if i.kind == "market_maker"]
    assert (mm1.name, mm1.half_spread_ticks, mm1.pull_ticks) == ("mm1", 2, 5)
