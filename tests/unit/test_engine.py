"""Example-based tests of `hftd.exchange.engine.MatchingEngine`, one rule at a time."""

from __future__ import annotations

import pytest

from hftd.exchange.engine import (
    Fill,
    MatchingEngine,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderReplaced,
    OrderRested,
    SymbolRules,
)
from hftd.wire.ouch import (
    CANCEL_IOC,
    CANCEL_SUPERVISORY,
    CANCEL_USER,
    MARKET_PRICE,
    REJECT_INVALID_PRICE,
    REJECT_INVALID_QUANTITY,
    REJECT_INVALID_SIDE,
    REJECT_INVALID_TICK,
    REJECT_INVALID_TIF,
    REJECT_QUANTITY_EXCEEDS_MAX,
    REJECT_UNKNOWN_ORDER,
    REJECT_UNKNOWN_SYMBOL,
    TIF_DAY,
    TIF_GTX,
    TIF_IOC,
)

SYM = "AAPL"
PX = 1_000_000  # 100.00


@pytest.fixture
def eng() -> MatchingEngine:
    return MatchingEngine({SYM: SymbolRules(tick=100), "MSFT": SymbolRules()}, max_order_size=1000)


_user_ref = iter(range(1, 1_000_000))


def enter(
    eng: MatchingEngine,
    side: str,
    qty: int,
    price: int = PX,
    tif: str = TIF_DAY,
    owner: str = "alice",
    symbol: str = SYM,
) -> list:
    return eng.enter(
        owner=owner,
        user_ref=next(_user_ref),
        symbol=symbol,
        side=side,
        quantity=qty,
        price=price,
        tif=tif,
    )


def ref_of(events: list) -> int:
    first = events[0]
    if isinstance(first, OrderAccepted | OrderReplaced):
        return first.order.order_ref
    raise AssertionError(f"not accepted: {events}")


def rest(eng: MatchingEngine, side: str, qty: int, price: int = PX, **kw: str) -> int:
    ev = enter(eng, side, qty, price, **kw)
    assert isinstance(ev[-1], OrderRested), ev
    return ref_of(ev)


def queue(eng: MatchingEngine, side: str, symbol: str = SYM) -> list[tuple[int, int, int]]:
    """[(ref, price, open_qty)] best first, oldest first at a price."""
    book = eng.books[symbol]
    if side == "B":
        return [
            (o.order_ref, o.price, o.open_qty)
            for p in reversed(book.bid_prices)
            for o in book.bids[p].orders.values()
        ]
    return [
        (o.order_ref, o.price, o.open_qty)
        for p in book.ask_prices
        for o in book.asks[p].orders.values()
    ]


def fills(events: list) -> list[tuple[int, int, int, int]]:
    """[(price, qty, resting_ref, aggressor_ref)]"""
    return [
        (f.price, f.quantity, f.resting_ref, f.aggressor_ref) for f in events if isinstance(f, Fill)
    ]


def rejected(events: list) -> int:
    assert len(events) == 1 and isinstance(events[0], OrderRejected), events
    return events[0].reason


# --- entering and resting -----------------------------------------------------------------


def test_limit_order_rests_with_accept_then_rest(eng: MatchingEngine) -> None:
    ev = enter(eng, "B", 100)
    assert [type(e) for e in ev] == [OrderAccepted, OrderRested]
    assert ev[0].order.order_ref == 1 and ev[0].order.open_qty == 100
    assert queue(eng, "B") == [(1, PX, 100)]
    assert eng.order(1) is not None and eng.order(1).open_qty == 100
    assert eng.books[SYM].depth("B") == [(PX, 100)]


@pytest.mark.parametrize("side", ["S", "T", "E"])
def test_sell_short_and_exempt_are_sells(eng: MatchingEngine, side: str) -> None:
    ref = rest(eng, side, 10)
    assert queue(eng, "S") == [(ref, PX, 10)]
    assert eng.order(ref).side == side  # the wire side is kept
    ev = enter(eng, "B", 10)
    assert fills(ev) == [(PX, 10, ref, ref + 1)]


def test_order_refs_are_global_and_increasing(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 1, symbol=SYM)
    b = rest(eng, "B", 1, symbol="MSFT")
    enter(eng, "B", 0)  # rejected: no ref consumed
    c = rest(eng, "S", 1, PX + 100)
    assert (a, b, c) == (1, 2, 3)


# --- matching -------------------------------------------------------------------------------


def test_trades_at_resting_price_best_price_first(eng: MatchingEngine) -> None:
    far = rest(eng, "S", 10, PX + 200)
    near = rest(eng, "S", 10, PX + 100)
    ev = enter(eng, "B", 15, PX + 300)
    agg = ref_of(ev)
    assert fills(ev) == [(PX + 100, 10, near, agg), (PX + 200, 5, far, agg)]
    assert queue(eng, "S") == [(far, PX + 200, 5)]
    assert queue(eng, "B") == []  # fully filled, nothing rests
    assert [type(e) for e in ev] == [OrderAccepted, Fill, Fill]


def test_time_priority_at_a_price(eng: MatchingEngine) -> None:
    first = rest(eng, "B", 10)
    second = rest(eng, "B", 10, owner="bob")
    third = rest(eng, "B", 10)
    ev = enter(eng, "S", 15, PX - 500)
    agg = ref_of(ev)
    assert fills(ev) == [(PX, 10, first, agg), (PX, 5, second, agg)]
    assert queue(eng, "B") == [(second, PX, 5), (third, PX, 10)]


def test_partial_fill_of_aggressor_rests_remainder(eng: MatchingEngine) -> None:
    s = rest(eng, "S", 30)
    ev = enter(eng, "B", 100, PX)
    b = ref_of(ev)
    f = [e for e in ev if isinstance(e, Fill)]
    assert len(f) == 1
    assert (f[0].quantity, f[0].resting_open_qty, f[0].aggressor_open_qty) == (30, 0, 70)
    assert isinstance(ev[-1], OrderRested) and ev[-1].order.open_qty == 70
    assert queue(eng, "S") == []
    assert queue(eng, "B") == [(b, PX, 70)]
    assert eng.order(s) is None


def test_partial_fill_of_resting_order_keeps_its_priority(eng: MatchingEngine) -> None:
    a = rest(eng, "S", 50)
    b = rest(eng, "S", 50)
    enter(eng, "B", 20)
    assert queue(eng, "S") == [(a, PX, 30), (b, PX, 50)]
    assert eng.books[SYM].depth("S") == [(PX, 80)]


def test_limit_does_not_trade_through_its_price(eng: MatchingEngine) -> None:
    rest(eng, "S", 10, PX + 100)
    ev = enter(eng, "B", 10, PX)
    assert fills(ev) == []
    assert isinstance(ev[-1], OrderRested)
    assert eng.books[SYM].best_bid() == PX and eng.books[SYM].best_ask() == PX + 100


def test_match_numbers_strictly_increase(eng: MatchingEngine) -> None:
    for _ in range(3):
        rest(eng, "S", 5)
    ev1 = enter(eng, "B", 10)
    ev2 = enter(eng, "B", 5)
    numbers = [f.match_number for f in ev1 + ev2 if isinstance(f, Fill)]
    assert numbers == [1, 2, 3]


def test_self_match_is_allowed(eng: MatchingEngine) -> None:
    s = rest(eng, "S", 5, owner="alice")
    ev = enter(eng, "B", 5, owner="alice")
    assert fills(ev) == [(PX, 5, s, ref_of(ev))]


# --- time in force -------------------------------------------------------------------------


def test_ioc_remainder_is_cancelled(eng: MatchingEngine) -> None:
    s = rest(eng, "S", 10)
    ev = enter(eng, "B", 25, PX, tif=TIF_IOC)
    b = ref_of(ev)
    assert fills(ev) == [(PX, 10, s, b)]
    last = ev[-1]
    assert isinstance(last, OrderCanceled)
    assert (last.order_ref, last.quantity, last.open_qty, last.reason, last.was_resting) == (
        b,
        15,
        0,
        CANCEL_IOC,
        False,
    )
    assert queue(eng, "B") == [] and eng.order(b) is None


def test_ioc_that_cannot_trade_is_cancelled_whole(eng: MatchingEngine) -> None:
    ev = enter(eng, "B", 25, PX, tif=TIF_IOC)
    assert [type(e) for e in ev] == [OrderAccepted, OrderCanceled]
    assert ev[-1].quantity == 25
    assert queue(eng, "B") == []


def test_gtx_remainder_rests(eng: MatchingEngine) -> None:
    rest(eng, "S", 10)
    ev = enter(eng, "B", 25, PX, tif=TIF_GTX)
    assert isinstance(ev[-1], OrderRested) and ev[-1].order.open_qty == 15


def test_market_order_sweeps_and_never_rests(eng: MatchingEngine) -> None:
    a = rest(eng, "S", 10, PX)
    b = rest(eng, "S", 10, PX + 5_000)
    ev = enter(eng, "B", 30, MARKET_PRICE, tif=TIF_DAY)
    m = ref_of(ev)
    assert fills(ev) == [(PX, 10, a, m), (PX + 5_000, 10, b, m)]
    assert isinstance(ev[-1], OrderCanceled) and ev[-1].quantity == 10
    assert ev[-1].reason == CANCEL_IOC
    assert queue(eng, "B") == [] and queue(eng, "S") == []


@pytest.mark.parametrize("tif", [TIF_DAY, TIF_GTX, TIF_IOC])
def test_market_order_on_empty_book_is_cancelled(eng: MatchingEngine, tif: str) -> None:
    ev = enter(eng, "S", 10, MARKET_PRICE, tif=tif)
    assert [type(e) for e in ev] == [OrderAccepted, OrderCanceled]
    assert eng.open_orders() == []


def test_market_sell_hits_best_bid_first(eng: MatchingEngine) -> None:
    low = rest(eng, "B", 10, PX - 100)
    high = rest(eng, "B", 10, PX)
    ev = enter(eng, "S", 15, MARKET_PRICE)
    assert fills(ev) == [(PX, 10, high, ref_of(ev)), (PX - 100, 5, low, ref_of(ev))]


# --- rejects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"symbol": "NOPE"}, REJECT_UNKNOWN_SYMBOL),
        ({"qty": 0}, REJECT_INVALID_QUANTITY),
        ({"qty": -1}, REJECT_INVALID_QUANTITY),
        ({"qty": 1001}, REJECT_QUANTITY_EXCEEDS_MAX),
        ({"price": 0}, REJECT_INVALID_PRICE),
        ({"price": -100}, REJECT_INVALID_PRICE),
        ({"price": MARKET_PRICE + 100}, REJECT_INVALID_PRICE),
        ({"price": PX + 50}, REJECT_INVALID_TICK),
        ({"price": MARKET_PRICE - 1}, REJECT_INVALID_TICK),
        ({"side": "X"}, REJECT_INVALID_SIDE),
        ({"side": ""}, REJECT_INVALID_SIDE),
        ({"tif": "1"}, REJECT_INVALID_TIF),
        ({"tif": "Z"}, REJECT_INVALID_TIF),
    ],
)
def test_enter_rejects(eng: MatchingEngine, kw: dict, reason: int) -> None:
    args = {"side": "B", "qty": 10, "price": PX, "tif": TIF_DAY, "symbol": SYM} | kw
    ev = eng.enter(
        owner="alice",
        user_ref=77,
        symbol=args["symbol"],
        side=args["side"],
        quantity=args["qty"],
        price=args["price"],
        tif=args["tif"],
    )
    assert rejected(ev) == reason
    assert (ev[0].owner, ev[0].user_ref) == ("alice", 77)
    assert eng.open_orders() == []
    assert eng.next_order_ref == 1  # no reference consumed


def test_max_order_size_itself_is_accepted(eng: MatchingEngine) -> None:
    assert isinstance(enter(eng, "B", 1000)[-1], OrderRested)


def test_tick_is_per_symbol(eng: MatchingEngine) -> None:
    cheap = MatchingEngine({"X": SymbolRules(tick=1)})
    ev = cheap.enter(owner="a", user_ref=1, symbol="X", side="B", quantity=1, price=10_001)
    assert isinstance(ev[-1], OrderRested)
    assert rejected(enter(eng, "B", 1, price=10_001)) == REJECT_INVALID_TICK


def test_cancel_and_replace_unknown_order(eng: MatchingEngine) -> None:
    assert rejected(eng.cancel(42)) == REJECT_UNKNOWN_ORDER
    assert rejected(eng.replace(42, new_user_ref=5, quantity=1, price=PX)) == REJECT_UNKNOWN_ORDER
    # a filled order is no longer known
    s = rest(eng, "S", 5)
    enter(eng, "B", 5)
    assert rejected(eng.cancel(s)) == REJECT_UNKNOWN_ORDER
    assert rejected(eng.replace(s, new_user_ref=6, quantity=1, price=PX)) == REJECT_UNKNOWN_ORDER


def test_cancel_negative_size_is_rejected(eng: MatchingEngine) -> None:
    ref = rest(eng, "B", 10)
    assert rejected(eng.cancel(ref, -1)) == REJECT_INVALID_QUANTITY
    assert queue(eng, "B") == [(ref, PX, 10)]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"quantity": 0}, REJECT_INVALID_QUANTITY),
        ({"quantity": 1001}, REJECT_QUANTITY_EXCEEDS_MAX),
        ({"price": 0}, REJECT_INVALID_PRICE),
        ({"price": PX + 1}, REJECT_INVALID_TICK),
        ({"price": MARKET_PRICE}, REJECT_INVALID_PRICE),
        ({"tif": "Z"}, REJECT_INVALID_TIF),
    ],
)
def test_replace_rejects_leave_order_untouched(eng: MatchingEngine, kw: dict, reason: int) -> None:
    ref = rest(eng, "B", 10)
    args = {"new_user_ref": 99, "quantity": 5, "price": PX, "tif": None} | kw
    assert rejected(eng.replace(ref, **args)) == reason
    assert queue(eng, "B") == [(ref, PX, 10)]
    assert eng.next_order_ref == ref + 1


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_removes(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)
    b = rest(eng, "B", 10)
    ev = eng.cancel(a)
    assert len(ev) == 1 and isinstance(ev[0], OrderCanceled)
    c = ev[0]
    assert (c.order_ref, c.quantity, c.open_qty, c.reason, c.was_resting) == (
        a,
        10,
        0,
        CANCEL_USER,
        True,
    )
    assert queue(eng, "B") == [(b, PX, 10)]
    assert eng.order(a) is None


def test_cancel_last_order_at_level_removes_level(eng: MatchingEngine) -> None:
    a = rest(eng, "S", 10, PX + 100)
    rest(eng, "S", 10, PX + 200)
    eng.cancel(a)
    assert eng.books[SYM].best_ask() == PX + 200
    assert eng.books[SYM].depth("S") == [(PX + 200, 10)]


def test_cancel_down_keeps_priority(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)
    b = rest(eng, "B", 10)
    ev = eng.cancel(a, 4)
    assert (ev[0].quantity, ev[0].open_qty) == (6, 4)
    assert queue(eng, "B") == [(a, PX, 4), (b, PX, 10)]
    assert eng.books[SYM].depth("B") == [(PX, 14)]
    s = enter(eng, "S", 5)
    assert fills(s) == [(PX, 4, a, ref_of(s)), (PX, 1, b, ref_of(s))]


@pytest.mark.parametrize("open_qty", [10, 11, 10**9])
def test_cancel_to_size_at_or_above_open_is_noop(eng: MatchingEngine, open_qty: int) -> None:
    a = rest(eng, "B", 10)
    assert eng.cancel(a, open_qty) == []
    assert queue(eng, "B") == [(a, PX, 10)]


# --- replace -----------------------------------------------------------------------------------


def test_replace_down_same_price_keeps_priority(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)
    b = rest(eng, "B", 10)
    ev = eng.replace(a, new_user_ref=500, quantity=6, price=PX)
    assert len(ev) == 1 and isinstance(ev[0], OrderReplaced)
    r = ev[0]
    assert r.kept_priority and not r.crossed
    assert (r.old_ref, r.old_open_qty, r.order.order_ref, r.order.open_qty) == (a, 10, a, 6)
    assert r.order.user_ref == 500
    assert queue(eng, "B") == [(a, PX, 6), (b, PX, 10)]
    assert eng.next_order_ref == b + 1  # no new reference


def test_replace_down_can_change_tif_and_keep_priority(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)
    b = rest(eng, "B", 10)
    ev = eng.replace(a, new_user_ref=500, quantity=6, price=PX, tif=TIF_GTX)
    assert ev[0].kept_priority and ev[0].order.tif == TIF_GTX
    assert queue(eng, "B") == [(a, PX, 6), (b, PX, 10)]


def test_replace_same_size_loses_priority(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)
    b = rest(eng, "B", 10)
    ev = eng.replace(a, new_user_ref=500, quantity=10, price=PX)
    r = ev[0]
    assert not r.kept_priority and not r.crossed
    new = r.order.order_ref
    assert new == b + 1
    assert queue(eng, "B") == [(b, PX, 10), (new, PX, 10)]
    assert eng.order(a) is None


def test_replace_up_loses_priority(eng: MatchingEngine) -> None:
    a = rest(eng, "S", 10)
    b = rest(eng, "S", 10)
    new = ref_of(eng.replace(a, new_user_ref=500, quantity=20, price=PX))
    assert queue(eng, "S") == [(b, PX, 10), (new, PX, 20)]


def test_replace_price_change_loses_priority_even_when_smaller(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10, PX)
    b = rest(eng, "B", 10, PX - 100)
    ev = eng.replace(a, new_user_ref=500, quantity=5, price=PX - 100)
    assert not ev[0].kept_priority
    new = ev[0].order.order_ref
    assert queue(eng, "B") == [(b, PX - 100, 10), (new, PX - 100, 5)]


def test_replace_down_into_ioc_does_not_keep_priority(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)
    ev = eng.replace(a, new_user_ref=500, quantity=5, price=PX, tif=TIF_IOC)
    assert isinstance(ev[0], OrderReplaced) and not ev[0].kept_priority
    new = ev[0].order.order_ref
    assert new != a
    # nothing to trade against: the IOC replacement is cancelled, the book is empty
    assert isinstance(ev[-1], OrderCanceled) and ev[-1].order_ref == new
    assert ev[-1].reason == CANCEL_IOC and ev[-1].quantity == 5
    assert queue(eng, "B") == []


def test_replace_that_crosses_trades_like_a_new_order(eng: MatchingEngine) -> None:
    s1 = rest(eng, "S", 10, PX + 100)
    s2 = rest(eng, "S", 10, PX + 200)
    b = rest(eng, "B", 25, PX)
    ev = eng.replace(b, new_user_ref=500, quantity=25, price=PX + 100)
    r = ev[0]
    assert isinstance(r, OrderReplaced) and r.crossed and not r.kept_priority
    new = r.order.order_ref
    assert fills(ev) == [(PX + 100, 10, s1, new)]
    assert isinstance(ev[-1], OrderRested) and ev[-1].order.open_qty == 15
    assert queue(eng, "B") == [(new, PX + 100, 15)]
    assert queue(eng, "S") == [(s2, PX + 200, 10)]


def test_replace_crossing_ioc_cancels_rest(eng: MatchingEngine) -> None:
    s = rest(eng, "S", 10, PX + 100)
    b = rest(eng, "B", 25, PX)
    ev = eng.replace(b, new_user_ref=500, quantity=25, price=PX + 100, tif=TIF_IOC)
    new = ev[0].order.order_ref
    assert fills(ev) == [(PX + 100, 10, s, new)]
    assert isinstance(ev[-1], OrderCanceled) and ev[-1].quantity == 15
    assert eng.open_orders() == []


def test_replace_refs_share_the_counter_with_entries(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)  # 1
    new = ref_of(eng.replace(a, new_user_ref=9, quantity=10, price=PX - 100))  # 2
    c = rest(eng, "B", 1)  # 3
    assert (a, new, c) == (1, 2, 3)
    assert rejected(eng.cancel(a)) == REJECT_UNKNOWN_ORDER


def test_replace_keeps_side_and_owner(eng: MatchingEngine) -> None:
    a = rest(eng, "T", 10, owner="bob")
    r = eng.replace(a, new_user_ref=9, quantity=12, price=PX + 100)[0]
    assert (r.order.side, r.order.owner, r.order.tif) == ("T", "bob", TIF_DAY)


# --- end of day --------------------------------------------------------------------------------


def test_end_of_day_cancels_day_orders_not_gtx(eng: MatchingEngine) -> None:
    day_b = rest(eng, "B", 10, PX - 100)
    gtx_b = rest(eng, "B", 10, PX - 100, tif=TIF_GTX)
    day_s = rest(eng, "S", 10, PX + 100, symbol="MSFT")
    gtx_s = rest(eng, "S", 7, PX + 100, tif=TIF_GTX)
    ev = eng.end_of_day()
    assert all(isinstance(e, OrderCanceled) for e in ev)
    assert sorted((e.order_ref, e.quantity, e.reason) for e in ev) == [
        (day_b, 10, CANCEL_SUPERVISORY),
        (day_s, 10, CANCEL_SUPERVISORY),
    ]
    assert queue(eng, "B") == [(gtx_b, PX - 100, 10)]
    assert queue(eng, "S") == [(gtx_s, PX + 100, 7)]
    assert queue(eng, "S", "MSFT") == []
    assert eng.end_of_day() == []


def test_end_of_day_respects_tif_changed_by_replace(eng: MatchingEngine) -> None:
    a = rest(eng, "B", 10)
    eng.replace(a, new_user_ref=9, quantity=5, price=PX, tif=TIF_GTX)  # keeps priority
    assert eng.end_of_day() == []
    assert queue(eng, "B") == [(a, PX, 5)]
