"""Strategy engine pieces without processes: order lifecycle table, strategies, routing."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from hftd.config import load_config
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_NEW,
    CMD_REPLACE,
    EX_ACCEPTED,
    EX_CANCELED,
    EX_FILL,
    EX_REJECTED,
    EX_REPLACED,
    MD_ADD,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.strategy.api import StrategyParams
from hftd.strategy.engine import StrategyEngine
from hftd.strategy.kinds import Load, LoadConfig, MeanReversionConfig, MomentumConfig
from hftd.strategy.orders import CANCEL_PENDING, LIVE, PARTIAL, REPLACE_PENDING, OrderManager
from tests.support import DEFAULT_CONFIG


def report(
    kind: int, cl_id: int, qty: int = 0, leaves: int = 0, position: int = 0, orig: int = 0
) -> ExecutionReport:
    return ExecutionReport(kind, cl_id, orig, "AAPL", "B", qty, 1_000_000, leaves, position, "", 0)


def manager() -> tuple[OrderManager, list[OrderCommand]]:
    sent: list[OrderCommand] = []
    clock = itertools.count(1)

    def send(c: OrderCommand) -> bool:
        sent.append(c)
        return True

    return OrderManager("t", 100, send, lambda: next(clock)), sent


def test_order_lifecycle() -> None:
    om, sent = manager()
    cl = om.new("AAPL", "B", 300, 1_000_000, "0", t1=7)
    assert cl == 100 and sent[-1].kind == CMD_NEW and sent[-1].t1 == 7 and sent[-1].t2 > 0
    om.on_report(report(EX_ACCEPTED, cl, 300, 300))
    assert om.orders[cl].state == LIVE
    om.on_report(report(EX_FILL, cl, 100, 200, position=100))
    assert om.orders[cl].state == PARTIAL and om.position("AAPL") == 100
    assert om.cancel(cl) and sent[-1].kind == CMD_CANCEL
    assert om.orders[cl].state == CANCEL_PENDING
    om.on_report(report(EX_CANCELED, cl, 200, 0, position=100))
    assert cl not in om.orders
    assert om.counts["partial_fills"] == 1 and om.counts["cancels"] == 1


def test_replace_accepted_and_refused() -> None:
    om, sent = manager()
    cl = om.new("AAPL", "B", 100, 1_000_000, "0", 0)
    om.on_report(report(EX_ACCEPTED, cl, 100, 100))
    new = om.replace(cl, 200, 1_000_100)
    assert new is not None and sent[-1].kind == CMD_REPLACE and sent[-1].orig_cl_id == cl
    assert om.orders[cl].state == REPLACE_PENDING
    om.on_report(report(EX_REPLACED, new, 200, 200, orig=cl))
    assert cl not in om.orders and om.orders[new].state == LIVE
    newer = om.replace(new, 50, 1_000_100)
    assert newer is not None
    om.on_report(report(EX_REJECTED, newer, orig=new))  # refused: the order lives on
    assert om.orders[new].state == LIVE and newer not in om.orders


def test_unknown_reports_untracked_versus_stale() -> None:
    om, _ = manager()
    om.on_report(report(EX_FILL, 500, 1))  # this run's range: a real disagreement
    om.on_report(report(EX_FILL, 5, 1))  # a previous run's order
    assert (om.untracked, om.stale) == (1, 1)


def test_invalid_transition_is_a_bug() -> None:
    om, _ = manager()
    cl = om.new("AAPL", "B", 100, 1_000_000, "0", 0)
    with pytest.raises(ValueError):
        om._event(om.orders[cl], "replace_req")  # a replace before any acknowledgement


def engine(instances: list[StrategyParams]) -> tuple[StrategyEngine, list[OrderCommand]]:
    cfg = msgspec.structs.replace(
        load_config(DEFAULT_CONFIG),
        strategy=msgspec.structs.replace(load_config(DEFAULT_CONFIG).strategy, instances=instances),
    )
    sent: list[OrderCommand] = []
    clock = itertools.count(10**9, 10**6)

    def send(c: OrderCommand) -> bool:
        sent.append(c)
        return True

    return StrategyEngine(cfg, send, lambda: next(clock)), sent


def timer(eng: StrategyEngine, now: int, i: int = 0) -> None:
    """Instance `i`'s timer callback alone, at `now` (the engine's timer also beats)."""
    c = eng.contexts[i]
    c.now, c.t1 = now, 0
    c.strategy.on_timer(c)


def book_update(seq: int, ref: int, side: str, price: int, qty: int = 100) -> MarketDataUpdate:
    return MarketDataUpdate(seq, MD_ADD, 1, "AAPL", ref, side, qty, price, 0, 0, seq)


def test_mean_reversion_buys_a_dip_and_routes_its_reports() -> None:
    mr = MeanReversionConfig(
        name="mr",
        symbols=["AAPL"],
        window=5,
        threshold_sigma=1.5,
        cooldown_ms=0.0,
    )
    eng, sent = engine([mr])
    seq = itertools.count(1)
    eng.on_update(book_update(next(seq), 1, "S", 1_000_200))
    for i in range(6):  # a steady mid: bids step up and down by a tick
        eng.on_update(book_update(next(seq), 10 + i, "B", 1_000_000 + (i % 2) * 100))
    assert not [c for c in sent if c.kind == CMD_NEW]
    eng.on_update(book_update(next(seq), 99, "S", 999_000))  # the ask collapses: mid dips
    orders = [c for c in sent if c.kind == CMD_NEW]
    assert len(orders) == 1 and orders[0].side == "B" and orders[0].price == 999_000
    cl = orders[0].cl_id
    eng.on_report(report(EX_ACCEPTED, cl, 100, 100))
    eng.on_report(report(EX_FILL, cl, 100, 0, position=100))
    assert eng.contexts[0].om.position("AAPL") == 100 and eng.working() == 0
    # A report for an order that is not a strategy's (the gateway's flatten) still moves positions.
    eng.on_report(report(EX_FILL, 1 << 47, 100, 0, position=0))
    assert eng.contexts[0].om.position("AAPL") == 0 and eng.untracked() == 0


def test_timer_sends_heartbeats_with_market_data_age() -> None:
    eng, sent = engine([])
    eng.last_md_ns = 1
    eng.on_timer()
    hb = [c for c in sent if c.kind == CMD_HEARTBEAT]
    assert hb and hb[0].qty == 1 and hb[0].price >= 0


def test_signal_lines_say_why_with_the_numbers_the_strategy_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reason is formatted when the line is written (not on the order's path),
    into the same text as before: momentum's fast average is the last fast_window mids."""
    mom = MomentumConfig(
        name="mom",
        symbols=["AAPL"],
        fast_window=2,
        slow_window=4,
        cooldown_ms=0.0,
    )
    eng, sent = engine([mom])
    seq = itertools.count(1)
    caplog.set_level("INFO", logger="hftd.strategy")
    eng.on_update(book_update(next(seq), 1, "S", 1_000_200))
    bids = [999_000, 999_100, 999_200, 999_300]
    for i, price in enumerate(bids):  # the best bid climbs: so does the mid
        eng.on_update(book_update(next(seq), 10 + i, "B", price))
    orders = [c for c in sent if c.kind == CMD_NEW]
    assert len(orders) == 1 and orders[0].side == "B" and orders[0].price == 999_300
    mids = [(b + 1_000_200) / 2.0 for b in bids]
    fast, slow = sum(mids[-2:]) / 2, sum(mids) / 4
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("signal")]
    assert lines == [
        f"signal mom AAPL BUY {mom.order_qty} @ 99.9300 "
        f"(fast={fast / 1e4:.4f} slow={slow / 1e4:.4f}) -> order {orders[0].cl_id}"
    ]
    assert "fast=99.9725 slow=99.9675" in lines[0]


def test_mean_reversion_signal_line_carries_its_z_score(caplog: pytest.LogCaptureFixture) -> None:
    mr = MeanReversionConfig(
        name="mr",
        symbols=["AAPL"],
        window=5,
        threshold_sigma=1.5,
        cooldown_ms=0.0,
    )
    eng, sent = engine([mr])
    seq = itertools.count(1)
    caplog.set_level("INFO", logger="hftd.strategy")
    eng.on_update(book_update(next(seq), 1, "S", 1_000_200))
    for i in range(6):
        eng.on_update(book_update(next(seq), 10 + i, "B", 1_000_000 + (i % 2) * 100))
    eng.on_update(book_update(next(seq), 99, "S", 999_000))
    (order,) = [c for c in sent if c.kind == CMD_NEW]
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("signal")]
    assert line.startswith(f"signal mr AAPL BUY {mr.order_qty} @ 99.9000 (z=-")
    assert line.endswith(f") -> order {order.cl_id}")
    z = float(line.split("(z=")[1].split(")")[0])
    assert z <= -1.5


def load_engine(rate: float, symbols: list[str]) -> tuple[StrategyEngine, list[OrderCommand]]:
    """A `load` instance in an engine whose clock the test sets (`eng.clock`)."""
    ld = LoadConfig(name="load", symbols=symbols, rate_per_s=rate, offset_ticks=3)
    eng, sent = engine([ld])
    return eng, sent


def two_sided(eng: StrategyEngine, symbol: str, locate: int, bid: int, ask: int) -> None:
    for ref, side, price in ((locate * 100 + 1, "B", bid), (locate * 100 + 2, "S", ask)):
        eng.on_update(MarketDataUpdate(ref, MD_ADD, locate, symbol, ref, side, 100, price, 0, 0, 0))


def test_load_sends_its_rate_of_non_marketable_iocs_once_books_have_both_sides() -> None:
    eng, sent = load_engine(1000.0, ["AAPL", "MSFT"])
    load = eng.contexts[0]
    now = [10**9]
    eng.clock = lambda: now[0]
    timer(eng, now[0])
    now[0] += 10**7
    timer(eng, now[0])
    assert not sent  # no book with both sides yet: nothing to price from
    locate = {s.symbol: i + 1 for i, s in enumerate(eng.cfg.symbols)}
    two_sided(eng, "AAPL", locate["AAPL"], 1_000_000, 1_000_200)
    two_sided(eng, "MSFT", locate["MSFT"], 4_000_000, 4_000_500)
    now[0] += 10**7  # 10 ms at 1000/s: 10 orders
    timer(eng, now[0])
    news = [c for c in sent if c.kind == CMD_NEW]
    assert len(news) == 10
    assert {c.symbol for c in news} == {"AAPL", "MSFT"}
    assert {c.side for c in news} == {"B", "S"}
    tick = {s.symbol: s.tick_fp for s in eng.cfg.symbols}
    touch = {"AAPL": (1_000_000, 1_000_200), "MSFT": (4_000_000, 4_000_500)}
    for c in news:
        bid, ask = touch[c.symbol]
        assert c.tif == "3" and c.strategy == "load" and c.qty == 100
        assert c.price == (bid - 3 * tick[c.symbol] if c.side == "B" else ask + 3 * tick[c.symbol])
    assert load.om.counts["sent"] == 10 and len(load.om.orders) == 10
    # The venue accepts each and cancels it (IOC, nothing to match): nothing stays working.
    for c in news:
        eng.on_report(
            ExecutionReport(EX_ACCEPTED, c.cl_id, 0, c.symbol, c.side, 100, c.price, 100, 0, "", 0)
        )
        eng.on_report(
            ExecutionReport(EX_CANCELED, c.cl_id, 0, c.symbol, c.side, 100, c.price, 0, 0, "I", 0)
        )
    assert eng.working() == 0 and eng.untracked() == 0 and eng.invalid() == 0


def test_load_catches_up_at_most_a_burst_and_stops_at_a_full_ring() -> None:
    eng, sent = load_engine(1000.0, ["AAPL"])
    load = eng.contexts[0]
    two_sided(eng, "AAPL", 1, 1_000_000, 1_000_200)
    timer(eng, 10**9)
    timer(eng, 10**9 + 10 * 10**9)  # 10 s without a timer: 50 ms of the rate, not 10,000
    assert len([c for c in sent if c.kind == CMD_NEW]) == 50
    ring = [3]  # the ring takes three more, then is full

    def full_after_three(c: OrderCommand) -> bool:
        ring[0] -= 1
        if ring[0] < 0:
            return False
        sent.append(c)
        return True

    load.om.send = full_after_three
    timer(eng, 10**9 + 10 * 10**9 + 10**7)  # 10 more due
    assert len([c for c in sent if c.kind == CMD_NEW]) == 53
    assert isinstance(load.strategy, Load)
    assert load.strategy.refused == 1 and load.om.refused == 1


def test_load_config_needs_a_rate() -> None:
    cfg = LoadConfig(name="l", symbols=["AAPL"])
    assert any("rate_per_s" in p for p in cfg.problems())
    ok = LoadConfig(name="l", symbols=["AAPL"], rate_per_s=10.0)
    assert not list(ok.problems())


def test_load_keeps_at_most_max_working_in_flight() -> None:
    ld = LoadConfig(name="load", symbols=["AAPL"], rate_per_s=1000.0, max_working=4)
    eng, sent = engine([ld])
    two_sided(eng, "AAPL", 1, 1_000_000, 1_000_200)
    timer(eng, 10**9)
    timer(eng, 10**9 + 10**7)  # 10 due, 4 may be in flight
    news = [c for c in sent if c.kind == CMD_NEW]
    assert len(news) == 4
    eng.on_report(
        ExecutionReport(
            EX_ACCEPTED, news[0].cl_id, 0, "AAPL", news[0].side, 100, news[0].price, 100, 0, "", 0
        )
    )
    eng.on_report(
        ExecutionReport(
            EX_CANCELED, news[0].cl_id, 0, "AAPL", news[0].side, 100, news[0].price, 0, 0, "I", 0
        )
    )
    timer(eng, 10**9 + 2 * 10**7)  # one finished: one more
    assert len([c for c in sent if c.kind == CMD_NEW]) == 5


def momentum(**over: object) -> MomentumConfig:
    return MomentumConfig(
        **{
            "name": "mom",
            "symbols": ["AAPL"],
            "fast_window": 2,
            "slow_window": 4,
            "order_qty": 100,
            "max_position": 100,
            "cooldown_ms": 0.0,
            "order_timeout_ms": 50.0,
            **over,
        }  # type: ignore[arg-type]
    )


def flat_then_up(eng: StrategyEngine, seq: itertools.count[int]) -> None:
    """Ask 101.00 and bids at 100.00 (a flat mid), then a higher bid: the mid rises."""
    eng.on_update(book_update(next(seq), 1, "S", 1_010_000))
    for ref in range(10, 14):  # four bids at the same price: the mid does not move
        eng.on_update(book_update(next(seq), ref, "B", 1_000_000))
    eng.on_update(book_update(next(seq), 20, "B", 1_000_400))


def test_momentum_joins_the_bid_when_the_fast_average_crosses_above() -> None:
    eng, sent = engine([momentum()])
    seq = itertools.count(1)
    flat_then_up(eng, seq)
    orders = [c for c in sent if c.kind == CMD_NEW]
    assert [(c.side, c.price, c.qty, c.tif) for c in orders] == [("B", 1_000_400, 100, "0")]
    # the same trend again: no second order (it trades the cross, not the level)
    eng.on_update(book_update(next(seq), 21, "B", 1_000_500))
    assert len([c for c in sent if c.kind == CMD_NEW]) == 1


def test_momentum_cancels_what_works_past_its_timeout() -> None:
    eng, sent = engine([momentum()])
    flat_then_up(eng, itertools.count(1))
    [order] = [c for c in sent if c.kind == CMD_NEW]
    eng.on_report(report(EX_ACCEPTED, order.cl_id, 100, 100))
    start = 10**12
    timer(eng, start)  # (the order's clock is the engine's: far in the past by now)
    cancels = [c for c in sent if c.kind == CMD_CANCEL]
    assert [c.orig_cl_id for c in cancels] == [order.cl_id]


def test_momentum_sells_the_ask_on_the_way_down_within_its_position_limit() -> None:
    eng, sent = engine([momentum()])
    seq = itertools.count(1)
    flat_then_up(eng, seq)
    [buy] = [c for c in sent if c.kind == CMD_NEW]
    eng.on_report(report(EX_ACCEPTED, buy.cl_id, 100, 100))
    eng.on_report(report(EX_FILL, buy.cl_id, 100, 0, position=100))  # long 100: at its limit
    for ref in range(30, 34):  # the ask comes down step by step: the mid falls
        eng.on_update(book_update(next(seq), ref, "S", 1_009_000 - (ref - 30) * 1_000))
    sells = [c for c in sent if c.kind == CMD_NEW and c.side == "S"]
    assert sells and sells[0].price == 1_009_000 and sells[0].qty == 100
    # and no buy beyond max_position on the next rise
    eng.on_report(report(EX_ACCEPTED, sells[0].cl_id, 100, 100))
    eng.on_report(report(EX_CANCELED, sells[0].cl_id, 100, 0, position=100))
    for ref in range(40, 44):
        eng.on_update(book_update(next(seq), ref, "B", 1_001_000 + (ref - 40) * 500))
    assert [c.side for c in sent if c.kind == CMD_NEW] == ["B", "S"]


def test_each_instance_keeps_to_its_own_cap_on_a_shared_symbol() -> None:
    """Two instances on one symbol: each one's max_position caps its own fills, not
    the account's net (which another instance's opposite trades move)."""
    om, _sent = manager()
    cl = om.new("AAPL", "B", 100, 1_000_000, "0", 0)
    assert cl is not None
    om.on_report(report(EX_FILL, cl, 100, 0, position=-400))  # the account: another's shorts
    assert om.own_position("AAPL") == 100 and om.position("AAPL") == -400
    assert om.own_position("MSFT") == 0 and om.book.symbols() == ["AAPL"]
