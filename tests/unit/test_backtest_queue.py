"""The backtest's venue model (hftd.backtest.queue): our orders in hand-built real
books at their FIFO queue position, one rule at a time, then random streams."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftd.backtest.queue import QueueVenue
from hftd.gateway.venue import (
    CANCEL_CLOSED,
    CANCEL_IOC,
    CANCEL_USER,
    REJECT_DUPLICATE_REF,
    REJECT_INVALID_PRICE,
    REJECT_INVALID_QUANTITY,
    REJECT_INVALID_SIDE,
    REJECT_INVALID_TIF,
    REJECT_QUANTITY_EXCEEDS_MAX,
    REJECT_UNKNOWN_ORDER,
    REJECT_UNKNOWN_SYMBOL,
    Accepted,
    Canceled,
    Executed,
    Rejected,
    Replaced,
    VenueEvent,
)
from hftd.msg.hot import (
    MARKET_PRICE,
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_REPLACE,
    MD_SEQUENCE,
    MD_SYSTEM,
    MD_TRADE,
    MD_TRADING,
    TIF_DAY,
    TIF_GTX,
    TIF_IOC,
    MarketDataUpdate,
)

SYM = "AAPL"
LOC = 13
P = 100_000  # $10.00
TICK = 100  # $0.01


def md(
    kind: int, ref: int = 0, side: str = "", qty: int = 0, price: int = 0, **kw: Any
) -> MarketDataUpdate:
    return MarketDataUpdate(
        0,
        kind,
        kw.get("locate", LOC),
        kw.get("symbol", ""),
        ref,
        side,
        qty,
        price,
        kw.get("new_ref", 0),
        0,
        0,
    )


def add(ref: int, side: str, qty: int, price: int) -> MarketDataUpdate:
    return md(MD_ADD, ref, side, qty, price, symbol=SYM)


def execute(ref: int, qty: int, price: int = 0) -> MarketDataUpdate:
    return md(MD_EXECUTE, ref, qty=qty, price=price)


def cancel(ref: int, qty: int) -> MarketDataUpdate:
    return md(MD_CANCEL, ref, qty=qty)


def delete(ref: int) -> MarketDataUpdate:
    return md(MD_DELETE, ref)


def replace(ref: int, new: int, qty: int, price: int) -> MarketDataUpdate:
    return md(MD_REPLACE, ref, qty=qty, price=price, new_ref=new)


def hidden(qty: int, price: int) -> MarketDataUpdate:
    return md(MD_TRADE, 0, "B", qty, price, symbol=SYM)


def trading(state: str) -> MarketDataUpdate:
    return md(MD_TRADING, side=state, symbol=SYM)


def venue() -> QueueVenue:
    v = QueueVenue([SYM])
    assert v.on_market(md(MD_DIRECTORY, symbol=SYM, qty=100)) == []
    return v


def accepted(ref: int, side: str, qty: int, price: int, tif: str = TIF_DAY) -> Accepted:
    return Accepted(ref, ref + 1000, SYM, side, qty, price, tif)


def enter(
    v: QueueVenue, ref: int, side: str, qty: int, price: int, tif: str = TIF_DAY
) -> list[VenueEvent]:
    return v.enter(ref, ref + 1000, SYM, side, qty, price, tif)


# --- the queue ------------------------------------------------------------------------


def test_orders_ahead_trade_first_then_an_execution_behind_fills_us() -> None:
    v = venue()
    v.on_market(add(1, "B", 100, P))  # A: ahead of us
    assert enter(v, 1, "B", 50, P) == [accepted(1, "B", 50, P)]
    assert v.queue_ahead(1) == 100
    assert v.on_market(add(2, "B", 200, P)) == []  # C: joins behind us
    assert v.queue_ahead(1) == 100
    assert v.on_market(execute(1, 60)) == []  # A trades: it was first
    assert v.queue_ahead(1) == 40
    assert v.on_market(execute(1, 40)) == []
    assert v.queue_ahead(1) == 0
    # C behind us trades (10 of its 200): the aggressor went through us first, and
    # we fill in full (the model's fill-all assumption).
    assert v.on_market(execute(2, 10)) == [Executed(1, 50, P, 1, "A")]
    assert v.open_orders() == {}


def test_a_cancel_ahead_moves_us_up_and_a_partial_cancel_keeps_its_place() -> None:
    v = venue()
    v.on_market(add(1, "S", 100, P))
    v.on_market(add(2, "S", 200, P))
    enter(v, 1, "S", 10, P)
    assert v.queue_ahead(1) == 300
    assert v.on_market(cancel(1, 40)) == []  # ITCH X: keeps its place, ahead of us
    assert v.queue_ahead(1) == 260
    assert v.on_market(delete(2)) == []
    assert v.queue_ahead(1) == 60
    assert v.on_market(execute(1, 60)) == []  # still ahead: no fill for us
    assert v.queue_ahead(1) == 0
    assert v.open_orders() == {1: (SYM, "S", 10, P)}
    v.on_market(add(3, "S", 5, P))
    assert v.on_market(execute(3, 5)) == [Executed(1, 10, P, 1, "A")]


def test_a_real_replace_loses_priority_and_goes_behind_us() -> None:
    v = venue()
    v.on_market(add(1, "B", 100, P))
    enter(v, 1, "B", 30, P)
    assert v.queue_ahead(1) == 100
    assert v.on_market(replace(1, 7, 100, P)) == []  # same price, new ref: to the tail
    assert v.queue_ahead(1) == 0
    assert v.on_market(execute(7, 1)) == [Executed(1, 30, P, 1, "A")]


def test_an_execution_with_price_fills_ours_ahead_at_our_price() -> None:
    v = venue()
    enter(v, 1, "B", 30, P)
    v.on_market(add(1, "B", 100, P))
    # ITCH C: executed at a price other than the display (a cross); ours at our limit.
    assert v.on_market(execute(1, 100, P - 5 * TICK)) == [Executed(1, 30, P, 1, "A")]


# --- taking liquidity -----------------------------------------------------------------


def test_ioc_larger_than_the_level_fills_part_and_cancels_the_rest() -> None:
    v = venue()
    v.on_market(add(1, "S", 100, P + TICK))
    assert enter(v, 1, "B", 150, P + TICK, TIF_IOC) == [
        accepted(1, "B", 150, P + TICK, TIF_IOC),
        Executed(1, 100, P + TICK, 1, "R"),
        Canceled(1, 50, CANCEL_IOC),
    ]
    assert v.open_orders() == {}


def test_day_remainder_rests_and_fills_later() -> None:
    v = venue()
    a = P + TICK
    v.on_market(add(1, "S", 100, a))
    assert enter(v, 1, "B", 150, a) == [accepted(1, "B", 150, a), Executed(1, 100, a, 1, "R")]
    assert v.open_orders() == {1: (SYM, "B", 50, a)}
    assert v.on_market(add(2, "B", 30, P)) == []  # a real bid below ours: nothing
    assert v.on_market(delete(1)) == []
    # A real seller arrives at our price: with us there it would have traded with us.
    assert v.on_market(add(3, "S", 30, a)) == [Executed(1, 30, a, 2, "A")]
    assert v.open_orders() == {1: (SYM, "B", 20, a)}
    # ... so its 30 shares are ours already: another order of ours cannot take them.
    assert enter(v, 2, "B", 30, a, TIF_IOC) == [
        accepted(2, "B", 30, a, TIF_IOC),
        Canceled(2, 30, CANCEL_IOC),
    ]
    # A hidden trade below our bid: the market traded through us.
    assert v.on_market(hidden(100, P + TICK // 2)) == [Executed(1, 20, a, 3, "A")]
    assert v.open_orders() == {}


def test_a_crossing_arrival_fills_ours_best_first_up_to_its_size() -> None:
    v = venue()
    enter(v, 1, "B", 50, P)
    enter(v, 2, "B", 50, P + TICK)
    enter(v, 3, "B", 50, P + TICK)
    assert v.on_market(add(1, "S", 120, P)) == [
        Executed(2, 50, P + TICK, 1, "A"),
        Executed(3, 50, P + TICK, 2, "A"),
        Executed(1, 20, P, 3, "A"),
    ]
    assert v.open_orders() == {1: (SYM, "B", 30, P)}


def test_a_marketable_order_walks_the_levels() -> None:
    v = venue()
    v.on_market(add(1, "S", 100, P + TICK))
    v.on_market(add(2, "S", 200, P + 2 * TICK))
    v.on_market(add(3, "S", 300, P + 3 * TICK))
    v.on_market(add(4, "S", 50, P + 2 * TICK))
    v.on_market(add(5, "B", 70, P))  # the other side: never taken by a buy
    assert enter(v, 1, "B", 320, P + 2 * TICK, TIF_IOC) == [
        accepted(1, "B", 320, P + 2 * TICK, TIF_IOC),
        Executed(1, 100, P + TICK, 1, "R"),
        Executed(1, 220, P + 2 * TICK, 2, "R"),
    ]
    assert enter(v, 2, "B", 1000, MARKET_PRICE, TIF_IOC) == [
        accepted(2, "B", 1000, MARKET_PRICE, TIF_IOC),
        Executed(2, 30, P + 2 * TICK, 3, "R"),
        Executed(2, 300, P + 3 * TICK, 4, "R"),
        Canceled(2, 670, CANCEL_IOC),
    ]
    # A market order never rests, whatever its time in force.
    assert enter(v, 3, "S", 100, MARKET_PRICE, TIF_DAY) == [
        accepted(3, "S", 100, MARKET_PRICE),
        Executed(3, 70, P, 5, "R"),
        Canceled(3, 30, CANCEL_IOC),
    ]
    assert v.open_orders() == {}


def test_consumed_liquidity_is_not_taken_twice() -> None:
    v = venue()
    v.on_market(add(1, "S", 100, P))
    assert enter(v, 1, "B", 30, P, TIF_IOC)[1:] == [Executed(1, 30, P, 1, "R")]
    # Someone cancels 50 in the data: of the 70 we left, 20 remain for us.
    v.on_market(cancel(1, 50))
    assert enter(v, 2, "B", 100, P, TIF_IOC)[1:] == [
        Executed(2, 20, P, 2, "R"),
        Canceled(2, 80, CANCEL_IOC),
    ]
    # Its 50 are all ours; a real execution of 10 leaves it 40, still all ours.
    assert v.on_market(execute(1, 10)) == []
    assert enter(v, 3, "B", 100, P, TIF_IOC)[1:] == [Canceled(3, 100, CANCEL_IOC)]
    v.on_market(delete(1))
    v.on_market(add(2, "S", 70, P))
    assert enter(v, 4, "B", 100, P, TIF_IOC)[1:] == [
        Executed(4, 70, P, 3, "R"),
        Canceled(4, 30, CANCEL_IOC),
    ]


def test_a_real_replace_carries_the_consumed_shadow() -> None:
    v = venue()
    v.on_market(add(1, "S", 100, P))
    enter(v, 1, "B", 60, P, TIF_IOC)
    v.on_market(replace(1, 2, 80, P + TICK))
    assert enter(v, 2, "B", 100, P + TICK, TIF_IOC)[1:] == [
        Executed(2, 20, P + TICK, 2, "R"),
        Canceled(2, 80, CANCEL_IOC),
    ]


# --- trade-throughs -------------------------------------------------------------------


def test_an_execution_at_a_worse_price_fills_ours_better_priced() -> None:
    v = venue()
    v.on_market(add(1, "S", 100, P + 6 * TICK))
    enter(v, 1, "S", 40, P + 5 * TICK)
    enter(v, 2, "S", 40, P + 7 * TICK)
    assert v.on_market(execute(1, 10)) == [Executed(1, 40, P + 5 * TICK, 1, "A")]
    assert v.open_orders() == {2: (SYM, "S", 40, P + 7 * TICK)}


def test_a_hidden_trade_at_our_price_does_not_fill_through_it_does() -> None:
    v = venue()
    enter(v, 1, "S", 40, P + 7 * TICK)
    enter(v, 2, "B", 40, P)
    assert v.on_market(hidden(100, P + 7 * TICK)) == []  # at our price: conservative
    assert v.on_market(hidden(100, P)) == []
    assert v.on_market(hidden(100, P + 8 * TICK)) == [Executed(1, 40, P + 7 * TICK, 1, "A")]
    assert v.on_market(hidden(100, P - TICK)) == [Executed(2, 40, P, 2, "A")]


# --- replace and cancel ---------------------------------------------------------------


def test_replace_always_loses_priority_ouch_50() -> None:
    v = venue()
    v.on_market(add(1, "B", 100, P))
    enter(v, 1, "B", 100, P)
    v.on_market(add(2, "B", 100, P))  # behind us
    assert v.queue_ahead(1) == 100
    # A size decrease at the same price: OUCH 5.0 gives it a new timestamp all the same.
    assert v.replace(1, 2, 77, 50, P) == [Replaced(1, 2, 77, SYM, "B", 50, P, TIF_DAY)]
    assert v.open_orders() == {2: (SYM, "B", 50, P)}
    assert v.queue_ahead(2) == 200
    assert v.on_market(execute(2, 100)) == []  # the real order that was behind us
    v.on_market(add(3, "B", 10, P))
    assert v.on_market(execute(3, 10)) == [Executed(2, 50, P, 1, "A")]


def test_a_marketable_replace_trades_and_rests_the_rest() -> None:
    v = venue()
    v.on_market(add(1, "S", 10, P + TICK))
    enter(v, 1, "B", 30, P)
    assert v.replace(1, 2, 5, 30, P + TICK) == [
        Replaced(1, 2, 5, SYM, "B", 30, P + TICK, TIF_DAY),
        Executed(2, 10, P + TICK, 1, "R"),
    ]
    assert v.open_orders() == {2: (SYM, "B", 20, P + TICK)}


def test_replace_refusals_leave_the_order_working() -> None:
    v = venue()
    enter(v, 1, "B", 30, P)
    assert v.replace(9, 2, 5, 10, P) == [Rejected(2, REJECT_UNKNOWN_ORDER, "no open order 9")]
    bad = v.replace(1, 3, 5, 0, P)
    assert [type(e) for e in bad] == [Rejected] and bad[0].reason == REJECT_INVALID_QUANTITY  # type: ignore[union-attr]
    bad = v.replace(1, 4, 5, 10, MARKET_PRICE)
    assert bad[0].reason == REJECT_INVALID_PRICE  # type: ignore[union-attr]
    bad = v.replace(1, 4, 5, 10, P)  # 4 was used (by the refused replace)
    assert bad[0].reason == REJECT_DUPLICATE_REF  # type: ignore[union-attr]
    assert v.open_orders() == {1: (SYM, "B", 30, P)}


def test_cancel_and_a_cancel_that_crossed_the_fill() -> None:
    v = venue()
    enter(v, 1, "B", 30, P)
    enter(v, 2, "B", 40, P)
    assert v.cancel(2) == [Canceled(2, 40, CANCEL_USER)]
    v.on_market(add(1, "S", 30, P))  # fills order 1
    assert v.open_orders() == {}
    assert v.cancel(1) == [Rejected(1, REJECT_UNKNOWN_ORDER, "no open order 1")]
    assert v.cancel(2)[0].reason == REJECT_UNKNOWN_ORDER  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("MSFT", "B", 10, P, TIF_DAY), REJECT_UNKNOWN_SYMBOL),
        ((SYM, "X", 10, P, TIF_DAY), REJECT_INVALID_SIDE),
        ((SYM, "B", 0, P, TIF_DAY), REJECT_INVALID_QUANTITY),
        ((SYM, "B", -5, P, TIF_DAY), REJECT_INVALID_QUANTITY),
        ((SYM, "B", 1_000_001, P, TIF_DAY), REJECT_QUANTITY_EXCEEDS_MAX),
        ((SYM, "B", 10, P, "9"), REJECT_INVALID_TIF),
        ((SYM, "B", 10, 0, TIF_DAY), REJECT_INVALID_PRICE),
        ((SYM, "B", 10, -P, TIF_DAY), REJECT_INVALID_PRICE),
    ],
)
def test_rejections(args: tuple[str, str, int, int, str], reason: str) -> None:
    v = venue()
    out = v.enter(5, 6, *args)
    assert len(out) == 1 and isinstance(out[0], Rejected)
    assert out[0].ref == 5 and out[0].reason == reason and out[0].text
    assert v.open_orders() == {}


def test_order_numbers_must_increase() -> None:
    v = venue()
    enter(v, 5, "B", 10, P)
    for ref in (5, 4):
        out = enter(v, ref, "B", 10, P)
        assert len(out) == 1 and isinstance(out[0], Rejected)
        assert out[0].reason == REJECT_DUPLICATE_REF
    assert v.open_orders() == {5: (SYM, "B", 10, P)}


# --- bad data, halts, the close -------------------------------------------------------


def test_unknown_real_refs_are_counted_never_raised() -> None:
    v = venue()
    enter(v, 1, "B", 10, P)
    for u in (execute(99, 5), cancel(99, 5), delete(99), replace(99, 100, 5, P)):
        assert v.on_market(u) == []
    assert v.on_market(md(MD_EXECUTE, 5, qty=1, locate=77)) == []  # a locate never announced
    assert v.unknown_refs == 5
    v.on_market(add(1, "S", 10, P + TICK))  # the other side: its execution is not ours
    for u in (
        add(1, "S", 10, P + TICK),  # live already
        add(2, "X", 10, P),
        add(3, "S", 0, P),
        execute(1, 0),
        execute(1, 50),  # more than it holds: gone all the same
        md(MD_SEQUENCE, side="Y"),
    ):
        v.on_market(u)
    assert v.bad_updates == 5
    assert v.queue_ahead(1) == 0
    assert v.open_orders() == {1: (SYM, "B", 10, P)}


def test_other_symbols_are_ignored() -> None:
    v = venue()
    v.on_market(md(MD_DIRECTORY, symbol="MSFT", locate=14))
    v.on_market(md(MD_ADD, 1, "S", 100, P, symbol="MSFT", locate=14))
    v.on_market(md(MD_EXECUTE, 1, qty=100, locate=14))
    assert v.unknown_refs == 0 and "MSFT" not in v.books
    assert enter(v, 1, "B", 10, P)[0] == accepted(1, "B", 10, P)
    every = QueueVenue()  # no filter: symbols come from the data
    every.on_market(md(MD_ADD, 1, "S", 100, P, symbol="MSFT", locate=14))
    assert every.enter(1, 2, "MSFT", "B", 10, P, TIF_IOC)[1] == Executed(1, 10, P, 1, "R")


def test_a_halted_market_does_not_fill() -> None:
    v = venue()
    v.on_market(add(1, "B", 100, P - TICK))
    enter(v, 1, "B", 50, P)
    v.on_market(add(2, "B", 100, P))  # behind us
    assert v.on_market(trading("H")) == []
    assert v.on_market(execute(2, 10)) == []
    assert v.on_market(hidden(100, P - TICK)) == []
    assert v.on_market(add(3, "S", 20, P + TICK)) == []
    # Arrivals while halted: an IOC is cancelled unfilled, a DAY order rests even
    # when it crosses (it waits for the reopening).
    assert enter(v, 2, "B", 10, P + TICK, TIF_IOC)[1:] == [Canceled(2, 10, CANCEL_IOC)]
    assert enter(v, 3, "B", 30, P + TICK) == [accepted(3, "B", 30, P + TICK)]
    assert v.open_orders() == {1: (SYM, "B", 50, P), 3: (SYM, "B", 30, P + TICK)}
    # Reopened: ours that cross the real book take from it.
    assert v.on_market(trading("T")) == [Executed(3, 20, P + TICK, 1, "R")]
    assert v.open_orders() == {1: (SYM, "B", 50, P), 3: (SYM, "B", 10, P + TICK)}
    assert v.on_market(execute(2, 10)) == [
        Executed(3, 10, P + TICK, 2, "A"),
        Executed(1, 50, P, 3, "A"),
    ]


def test_end_of_market_hours_cancels_day_orders_only() -> None:
    v = venue()
    enter(v, 1, "B", 10, P)
    enter(v, 2, "B", 20, P, TIF_GTX)
    assert v.on_market(md(MD_SYSTEM, side="Q")) == []
    assert v.on_market(md(MD_SYSTEM, side="M")) == [Canceled(1, 10, CANCEL_CLOSED)]
    assert v.open_orders() == {2: (SYM, "B", 20, P)}


# --- random streams -------------------------------------------------------------------

PRICES = [P + i * TICK for i in range(-3, 4)]
# Mostly good values, now and then a bad one.
_qty = st.integers(-30, 300)
_side = st.sampled_from("BBBSSSX")
_real_ref = st.integers(0, 13)
_add = st.tuples(st.just("add"), st.integers(1, 12), _side, _qty, st.sampled_from(PRICES))
_real = st.one_of(
    _add,
    _add,
    _add,
    st.tuples(st.just("exec"), _real_ref, _qty, st.sampled_from([0, 0, 0, P])),
    st.tuples(st.just("exec"), _real_ref, _qty, st.just(0)),
    st.tuples(st.just("cancel"), _real_ref, _qty),
    st.tuples(st.just("delete"), _real_ref),
    st.tuples(st.just("replace"), _real_ref, st.integers(1, 14), _qty, st.sampled_from(PRICES)),
    st.tuples(st.just("hidden"), st.integers(1, 300), st.sampled_from(PRICES)),
    st.tuples(st.just("trading"), st.sampled_from("TTTHPQ")),
    st.tuples(st.just("system"), st.sampled_from("OSQMEC")),
)
_enter = st.tuples(
    st.just("enter"),
    _side,
    _qty,
    st.sampled_from([*PRICES, *PRICES, MARKET_PRICE, 0]),
    st.sampled_from([TIF_DAY, TIF_DAY, TIF_IOC, TIF_GTX, "9"]),
)
_ours = st.one_of(
    _enter,
    _enter,
    st.tuples(st.just("cancel_ours"), st.integers(0, 60), st.booleans()),
    st.tuples(
        st.just("replace_ours"), st.integers(0, 60), _qty, st.sampled_from(PRICES), st.booleans()
    ),
)


def _pick(v: QueueVenue, n: int, live: bool) -> int:
    """One of our working orders (`live`, when there is one), else order number `n`."""
    mine = sorted(v.open_orders())
    return mine[n % len(mine)] if live and mine else n


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_real, _ours), min_size=20, max_size=120))
def test_random_streams_never_raise_nor_overfill(ops: list[tuple[Any, ...]]) -> None:
    v = venue()
    ref = 0
    sent: dict[int, int] = {}  # our ref -> open size the venue took it with
    filled: dict[int, int] = {}
    cancelled: dict[int, int] = {}
    replaced: set[int] = set()
    for op in ops:
        kind = op[0]
        evs: list[VenueEvent]
        if kind == "add":
            evs = v.on_market(add(op[1], op[2], op[3], op[4]))
        elif kind == "exec":
            evs = v.on_market(execute(op[1], op[2], op[3]))
        elif kind == "cancel":
            evs = v.on_market(cancel(op[1], op[2]))
        elif kind == "delete":
            evs = v.on_market(delete(op[1]))
        elif kind == "replace":
            evs = v.on_market(replace(op[1], op[2], op[3], op[4]))
        elif kind == "hidden":
            evs = v.on_market(hidden(op[1], op[2]))
        elif kind == "trading":
            evs = v.on_market(trading(op[1]))
        elif kind == "system":
            evs = v.on_market(md(MD_SYSTEM, side=op[1]))
        elif kind == "enter":
            ref += 1
            evs = v.enter(ref, ref, SYM, op[1], op[2], op[3], op[4])
        elif kind == "cancel_ours":
            evs = v.cancel(_pick(v, op[1], op[2]))
        else:
            ref += 1
            evs = v.replace(_pick(v, op[1], op[4]), ref, ref, op[2], op[3])
        for e in evs:
            if isinstance(e, Accepted):
                assert e.ref not in sent
                sent[e.ref] = e.qty
            elif isinstance(e, Replaced):
                assert e.orig_ref in sent and e.ref not in sent
                replaced.add(e.orig_ref)
                sent[e.ref] = e.qty
            elif isinstance(e, Executed):
                assert e.qty > 0 and e.ref in sent
                filled[e.ref] = filled.get(e.ref, 0) + e.qty
            elif isinstance(e, Canceled):
                assert e.qty > 0 and e.ref in sent
                cancelled[e.ref] = cancelled.get(e.ref, 0) + e.qty
        for r, qty in sent.items():
            assert filled.get(r, 0) + cancelled.get(r, 0) <= qty
        opened = v.open_orders()
        for r, (_sym, _side, leaves, _price) in opened.items():
            assert r not in replaced
            assert leaves == sent[r] - filled.get(r, 0) - cancelled.get(r, 0) > 0
            assert v.queue_ahead(r) >= 0
    assert sum(filled.values()) <= sum(sent.values())


def test_the_real_book_matches_the_book_builder_on_the_sample() -> None:
    """The model's real book, level by level, is hftd.book.l3's on the NASDAQ sample."""
    from hftd.book.l3 import BookBuilder
    from hftd.feed.normalize import Normalizer
    from hftd.wire import itch
    from tests.support import ITCH_FILE

    if not ITCH_FILE.exists():
        pytest.skip("the NASDAQ sample is not here")
    norm = Normalizer()
    v = QueueVenue([SYM])
    builder = BookBuilder([SYM])
    for seq, raw in enumerate(itch.iter_binary_file(ITCH_FILE.read_bytes()), 1):
        u = norm.update(raw, seq, 0)
        assert v.on_market(u) == []
        builder.apply_update(u)
    assert v.unknown_refs == 0 and v.bad_updates == 0
    book, real = builder.books[SYM], v.books[SYM]
    assert {p: sum(level.values()) for p, level in real.bids.items()} == book.bids
    assert {p: sum(level.values()) for p, level in real.asks.items()} == book.asks
