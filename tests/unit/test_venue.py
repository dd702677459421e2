"""Venue logic without sockets: OUCH replies, ITCH stream, snapshots, flow."""

from __future__ import annotations

import itertools

from hftd.book.l3 import BookBuilder
from hftd.config import FlowConfig, load_config
from hftd.exchange.flow import FlowCancel, FlowEnter, FlowGenerator
from hftd.exchange.venue import Venue
from hftd.wire import itch, ouch
from tests.support import DEFAULT_CONFIG


def make_venue() -> Venue:
    ticks = itertools.count(1000)
    v = Venue(load_config(DEFAULT_CONFIG), lambda: next(ticks))
    v.start_of_day()
    return v


def out(v: Venue, user: str) -> list[ouch.Outbound]:
    s = v.user(user).stream
    return [ouch.decode_outbound(m) for m in s.range(1, s.next_sequence)]


def md(v: Venue) -> list[itch.ItchMessage]:
    return [itch.decode(m) for m in v.md.range(1, v.md.next_sequence)]


def test_start_of_day_sequence() -> None:
    v = make_venue()
    kinds = [type(m).__name__ + getattr(m, "event_code", "") for m in md(v)]
    assert kinds[0] == "SystemEventO" and kinds[-2:] == ["SystemEventS", "SystemEventQ"]
    assert kinds.count("StockDirectory") == 4 and kinds.count("TradingAction") == 4


def test_replace_and_cancel_publish_matching_itch() -> None:
    v = make_venue()
    v.handle("HFTD", ouch.EnterOrder(1, "B", 300, "AAPL", 1_890_000))
    v.handle("HFTD", ouch.ReplaceOrder(1, 2, 200, 1_890_000))  # size down: keeps priority
    v.handle("HFTD", ouch.ReplaceOrder(2, 3, 200, 1_889_900))  # new price: new reference
    v.handle("HFTD", ouch.CancelOrder(3, 50))  # partial cancel
    v.handle("HFTD", ouch.CancelOrder(3, 0))
    msgs = md(v)[11:]
    add, cut, repl, part, delete = msgs
    assert isinstance(add, itch.AddOrder) and add.shares == 300
    assert isinstance(cut, itch.OrderCancel) and cut.cancelled_shares == 100
    assert isinstance(repl, itch.OrderReplace) and repl.original_ref == add.order_ref
    assert isinstance(part, itch.OrderCancel) and part.cancelled_shares == 150
    assert isinstance(delete, itch.OrderDelete) and delete.order_ref == repl.new_ref
    replies = out(v, "HFTD")
    assert [type(r).__name__ for r in replies] == [
        "SystemEventMsg",
        "Accepted",
        "Replaced",
        "Replaced",
        "Canceled",
        "Canceled",
    ]
    assert v.snapshot("HFTD").open_orders == []


def test_crossing_replace_deletes_then_trades() -> None:
    v = make_venue()
    v.handle("TEST", ouch.EnterOrder(1, "S", 100, "AAPL", 1_900_000))
    v.handle("HFTD", ouch.EnterOrder(1, "B", 300, "AAPL", 1_890_000))
    v.handle("HFTD", ouch.ReplaceOrder(1, 2, 300, 1_900_000))
    tail = md(v)[-4:]
    assert [type(m).__name__ for m in tail] == [
        "AddOrder",
        "OrderDelete",
        "OrderExecuted",
        "AddOrder",
    ]
    assert isinstance(tail[-1], itch.AddOrder) and tail[-1].shares == 200
    snap = v.snapshot("HFTD")
    assert [(o.user_ref, o.open_qty) for o in snap.open_orders] == [(2, 200)]
    assert [(f.user_ref, f.quantity, f.liquidity) for f in snap.fills] == [(2, 100, "R")]


def test_itch_stream_rebuilds_the_engine_books() -> None:
    v = make_venue()
    cfg = v.cfg
    gens = {
        s.symbol: FlowGenerator(
            FlowConfig(marketable_ratio=0.2), s.reference_price_fp, s.tick_fp, s.round_lot, 99
        )
        for s in cfg.symbols
    }
    for i in range(4000):
        sym = cfg.symbols[i % 4].symbol
        g = gens[sym]
        a = g.next_action()
        if isinstance(a, FlowCancel):
            v.flow_cancel(a.order_ref)
        else:
            ref = v.flow_enter(sym, a.side, a.quantity, a.price, a.tif)
            if ref is not None:
                g.rested(ref)
    builder = BookBuilder()
    for m in md(v):
        builder.apply(m)
    for sym, book in v.engine.books.items():
        assert builder.books[sym].depth("B") == book.depth("B")
        assert builder.books[sym].depth("S") == book.depth("S")
        assert len(builder.books[sym].orders) == sum(1 for _ in book.orders())


def test_flow_is_reproducible() -> None:
    def actions(seed: int) -> list[FlowEnter | FlowCancel]:
        g = FlowGenerator(FlowConfig(), 1_895_000, 100, 100, seed)
        res = []
        for i in range(200):
            a = g.next_action()
            if isinstance(a, FlowEnter):
                g.rested(i)
            res.append(a)
        return res

    assert actions(1) == actions(1)
    assert actions(1) != actions(2)
    kinds = {type(a) for a in actions(3)}
    assert kinds == {FlowEnter, FlowCancel}


def test_venue_events_go_into_the_users_stream() -> None:
    """The test hook: a broken trade leaves the fills, a priority update names a live
    order, raw bytes go in as they are; what cannot apply says why."""
    v = make_venue()
    v.handle("HFTD", ouch.EnterOrder(1, "B", 300, "AAPL", 1_890_000, cl_ord_id="ab"))
    v.handle("TEST", ouch.EnterOrder(1, "S", 100, "AAPL", 1_890_000))  # fills 100 of it
    (fill,) = v.snapshot("HFTD").fills
    assert fill.cl_ord_id == "ab" and fill.quantity == 100
    assert v.event_problem("HFTD", "broken_trade", fill.match_number) == ""
    assert "no execution" in v.event_problem("HFTD", "broken_trade", 999)
    assert "no live order" in v.event_problem("HFTD", "priority_update", 7)
    assert "unknown event" in v.event_problem("HFTD", "nonsense", 1)
    assert "no OUCH stream" in v.event_problem("NOBODY", "raw", 0)

    v.venue_event("HFTD", "broken_trade", fill.match_number)
    v.venue_event("HFTD", "priority_update", 1)
    v.venue_event("HFTD", "raw", 0, b"Zhostile")
    s = v.user("HFTD").stream
    *_, broken, prio = out_until(v, "HFTD", s.next_sequence - 1)
    assert broken == ouch.BrokenTrade(
        broken.timestamp, 1, fill.match_number, ouch.BROKEN_SUPERVISORY, "ab"
    )
    assert isinstance(prio, ouch.OrderPriorityUpdate)
    assert (prio.user_ref, prio.price, prio.display, prio.order_ref) == (
        1,
        1_890_000,
        "Y",
        fill.order_ref,
    )
    assert s.get(s.next_sequence - 1) == b"Zhostile"
    assert v.snapshot("HFTD").fills == [] and len(v.snapshot("TEST").fills) == 1
    assert [o.open_qty for o in v.snapshot("HFTD").open_orders] == [200]


def out_until(v: Venue, user: str, stop: int) -> list[ouch.Outbound]:
    s = v.user(user).stream
    return [ouch.decode_outbound(m) for m in s.range(1, stop)]
