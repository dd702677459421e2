"""The gateway's order lifecycle: the table itself (hftd.gateway.lifecycle), and
the races of a real session driven through GatewayCore with a fake clock and a
hand-played venue: fill vs cancel, fill vs replace, replace vs cancel, reject
after accept, unacknowledged timeout, unanswered cancel, breaker trip -> halt
-> operator re-arm, flatten."""

from __future__ import annotations

import itertools
import re

import msgspec
import pytest

from hftd.config import load_config
from hftd.gateway.core import GwOrder
from hftd.gateway.lifecycle import (
    ACCEPTED,
    CANCEL_HELD,
    CANCEL_PENDING,
    CANCEL_REFUSED,
    CANCEL_REFUSED_UNACKED,
    CANCEL_SENT,
    CANCELED,
    DONE,
    EVENTS,
    FILLED,
    LIVE,
    PENDING,
    REDUCED,
    REJECTED,
    REPLACE_PENDING,
    REPLACE_REFUSED,
    REPLACE_SENT,
    REPLACED,
    STATES,
    TRANSITIONS,
    step,
)
from hftd.msg import hot
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_REPLACE,
    EX_CANCELED,
    EX_FILL,
    EX_HEARTBEAT,
    EX_REJECTED,
    EX_REPLACED,
)
from hftd.wire import ouch
from tests.support import DEFAULT_CONFIG, ROOT
from tests.unit.gateway_fixtures import PX, Harness

# --- the table -----------------------------------------------------------------------------


def test_the_table_names_only_known_states_and_events() -> None:
    for (state, event), to in TRANSITIONS.items():
        assert state in STATES and event in EVENTS and to in STATES


@pytest.mark.parametrize(("pair", "to"), sorted(TRANSITIONS.items()))
def test_each_transition(pair: tuple[str, str], to: str) -> None:
    assert step(*pair) == to


@pytest.mark.parametrize(
    "pair", [p for p in itertools.product(STATES, EVENTS) if p not in TRANSITIONS]
)
def test_a_pair_the_table_does_not_list_leaves_the_state(pair: tuple[str, str]) -> None:
    assert step(*pair) == pair[0]


def test_done_is_final_and_every_working_order_can_end() -> None:
    assert all(step(DONE, e) == DONE for e in EVENTS)
    for state in (PENDING, LIVE, CANCEL_PENDING, REPLACE_PENDING):
        assert step(state, FILLED) == DONE and step(state, CANCELED) == DONE


def render() -> str:
    """The table as docs/architecture.md draws it ("-" where the state stays)."""
    head = "| state \\ event | " + " | ".join(EVENTS) + " |"
    rows = [head, "|---" * (len(EVENTS) + 1) + "|"]
    for s in STATES:
        cells = [TRANSITIONS.get((s, e), "-") for e in EVENTS]
        rows.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def test_the_drawing_in_the_architecture_page_is_the_table() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert render() in page, "docs/architecture.md: redraw the gateway's table:\n" + render()


# --- races, through the gateway's logic ------------------------------------------------------


def cancel_sent(h: Harness, o: GwOrder) -> None:
    assert [type(ouch.decode_inbound(p)) for p in h.core.to_venue] == [ouch.CancelOrder]
    assert ouch.decode_inbound(h.core.to_venue[0]).user_ref == o.user_ref  # type: ignore[union-attr]
    h.core.to_venue.clear()


def test_fill_vs_cancel_the_fill_wins() -> None:
    h = Harness()
    o = h.order("B", 100)
    h.command(CMD_CANCEL, o)
    assert o.state == CANCEL_PENDING
    cancel_sent(h, o)
    h.fill(o, 100)  # the venue filled it before our cancel arrived
    assert o.state == DONE and o.cl_id not in h.core.orders
    assert h.core.book.position("AAPL").qty == 100
    # its answer to the cancel: an order it no longer knows; late, not an error
    assert h.reply(ouch.Rejected(5, o.user_ref, ouch.REJECT_UNKNOWN_ORDER, "")) == []
    assert h.core.counters["late_cancel_rejects"] == 1 and h.core.counters["untracked"] == 0


def test_a_partial_fill_while_cancel_pending_then_the_rest_cancelled() -> None:
    h = Harness()
    o = h.order("B", 100)
    h.command(CMD_CANCEL, o)
    h.fill(o, 40)
    assert o.state == CANCEL_PENDING and o.leaves == 60
    [r] = h.reply(ouch.Canceled(6, o.user_ref, 60, ouch.CANCEL_USER))
    assert r.kind == EX_CANCELED and r.qty == 60 and r.leaves == 0
    assert o.state == DONE and not h.core.orders
    assert h.core.book.position("AAPL").qty == 40


def test_fill_vs_replace_the_replacement_takes_what_is_left() -> None:
    h = Harness()
    old = h.order("B", 100)
    cl = h.command(CMD_REPLACE, old, 100, PX + 100)
    new = h.core.orders[cl]
    assert old.state == REPLACE_PENDING and new.state == PENDING and new.orig is old
    h.core.to_venue.clear()
    h.fill(old, 30)  # the old order trades while the replace is on its way
    assert old.state == REPLACE_PENDING and old.leaves == 70
    echo = ("B", 70, "AAPL", PX + 100, "0", "Y", 7777, "A", "N", "N", "L", "")
    [r] = h.reply(ouch.Replaced(7, old.user_ref, new.user_ref, *echo))
    assert r.kind == EX_REPLACED and r.cl_id == cl and r.orig_cl_id == old.cl_id
    assert new.state == LIVE and new.leaves == 70 and old.state == DONE
    assert list(h.core.orders) == [cl]


def test_fill_vs_replace_the_fill_ends_the_order_first() -> None:
    h = Harness()
    old = h.order("B", 100)
    cl = h.command(CMD_REPLACE, old, 100, PX + 100)
    new = h.core.orders[cl]
    h.fill(old, 100)
    assert old.state == DONE
    [r] = h.reply(ouch.Rejected(8, new.user_ref, ouch.REJECT_UNKNOWN_ORDER, ""))
    assert r.kind == EX_REJECTED and r.cl_id == cl and r.orig_cl_id == old.cl_id
    assert old.state == DONE and new.state == DONE and not h.core.orders  # nothing revived


def test_a_refused_replace_leaves_the_old_order_working() -> None:
    h = Harness()
    old = h.order("B", 100)
    cl = h.command(CMD_REPLACE, old, 100, PX + 100)
    [r] = h.reply(ouch.Rejected(8, h.core.orders[cl].user_ref, ouch.REJECT_INVALID_PRICE, ""))
    assert r.kind == EX_REJECTED and "invalid price" in r.reason
    assert old.state == LIVE and list(h.core.orders) == [old.cl_id]


def test_replace_vs_cancel_the_cancel_of_the_replacement_stays_pending() -> None:
    h = Harness()
    old = h.order("B", 100)
    cl = h.command(CMD_REPLACE, old, 100, PX + 100)
    new = h.core.orders[cl]
    h.core.to_venue.clear()
    h.command(CMD_CANCEL, new)  # cancel the replacement before the venue answers
    assert new.state == CANCEL_PENDING
    cancel_sent(h, new)
    echo = ("B", 100, "AAPL", PX + 100, "0", "Y", 7777, "A", "N", "N", "L", "")
    h.reply(ouch.Replaced(7, old.user_ref, new.user_ref, *echo))
    assert old.state == DONE and new.state == CANCEL_PENDING and new.acked
    h.reply(ouch.Canceled(9, new.user_ref, 100, ouch.CANCEL_USER))
    assert new.state == DONE and not h.core.orders


def test_a_reject_after_accept_refuses_a_cancel_not_the_order() -> None:
    h = Harness()
    o = h.order("B", 100)
    assert h.reply(ouch.Rejected(5, o.user_ref, ouch.REJECT_UNKNOWN_ORDER, "")) == []
    assert o.state == LIVE and o.cl_id in h.core.orders
    assert h.core.counters["venue_rejects"] == 1


def test_an_order_never_acknowledged_is_cancelled_on_timeout() -> None:
    h = Harness()
    o = h.send("B", 100)
    h.tick(0.5)
    assert o.state == PENDING and not h.core.to_venue  # not due yet
    h.tick(h.core.cfg.gateway.order_timeout_s)
    assert o.state == CANCEL_PENDING and h.core.counters["timeouts"] == 1
    cancel_sent(h, o)
    h.accept(o)  # late: the cancel is still on its way
    assert o.state == CANCEL_PENDING and o.acked
    h.reply(ouch.Canceled(6, o.user_ref, 100, ouch.CANCEL_USER))
    assert o.state == DONE


def test_an_unanswered_cancel_is_sent_again() -> None:
    h = Harness()
    o = h.order("B", 100)
    h.command(CMD_CANCEL, o)
    cancel_sent(h, o)
    h.tick(h.core.cfg.gateway.order_timeout_s + 0.001)
    assert o.state == CANCEL_PENDING and h.core.counters["timeouts"] == 1
    cancel_sent(h, o)  # the same cancel, again


def test_a_cancel_refused_before_accept_goes_back_to_pending() -> None:
    h = Harness()
    o = h.send("B", 100)
    h.command(CMD_CANCEL, o)
    cancel_sent(h, o)
    h.reply(ouch.CancelReject(3, o.user_ref))
    assert o.state == PENDING and not o.acked
    h.accept(o)
    assert o.state == LIVE


def test_breaker_trip_halts_and_cancels_and_the_operator_rearms() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    cfg = msgspec.structs.replace(
        cfg, breaker=msgspec.structs.replace(cfg.breaker, max_venue_rejects=2)
    )
    h = Harness(cfg)
    working = h.order("B", 100)
    for _ in range(3):  # three venue rejects in the window: one more than allowed
        o = h.send("B", 100, PX - 100)
        replies = h.reply(ouch.Rejected(5, o.user_ref, ouch.REJECT_INVALID_PRICE, ""))
        [r] = [x for x in replies if x.kind != EX_HEARTBEAT]  # the trip's says "halted"
        assert r.kind == EX_REJECTED and o.state == DONE
    assert h.core.breaker.tripped and h.core.mode == "halted"
    assert working.state == CANCEL_PENDING  # the halt cancelled what was working
    cancel_sent(h, working)
    h.core.reports.clear()
    h.command(1, working, 100, PX)  # CMD_NEW while halted: refused by risk
    [r] = h.core.reports
    assert r.kind == EX_REJECTED and "risk" in r.reason and not h.core.to_venue
    h.core.reports.clear()
    assert h.core.resume()["mode"] == "active" and not h.core.breaker.tripped
    h.core.reports.clear()  # (the resume's heartbeat)
    o = h.send("B", 100)
    assert o.state == PENDING


def test_flatten_cancels_then_closes_the_position_with_ioc_orders() -> None:
    h = Harness()
    bought = h.order("B", 100)
    h.fill(bought, 100)
    resting = h.order("S", 50, PX + 5_000)
    h.core.on_reference("AAPL", PX)
    assert h.core.flatten()["cancelled"] == 1 and h.core.mode == "reducing"
    cancel_sent(h, resting)
    h.tick(0.1)
    assert not h.core.to_venue  # not while an order still works
    h.reply(ouch.Canceled(6, resting.user_ref, 50, ouch.CANCEL_USER))
    h.tick(0.1)
    [p] = h.core.to_venue
    m = ouch.decode_inbound(p)
    assert isinstance(m, ouch.EnterOrder)
    assert (m.side, m.quantity, m.time_in_force) == ("S", 100, ouch.TIF_IOC)
    assert m.price < PX  # crosses the mark to close now
    h.core.to_venue.clear()
    [flat] = [o for o in h.core.orders.values() if o.strategy == "flatten"]
    h.accept(flat)
    [r] = h.reply(ouch.Executed(9, flat.user_ref, 100, PX - 100, "R", 777))
    assert r.kind == EX_FILL and flat.state == DONE
    h.tick(0.1)
    assert h.core.book.position("AAPL").qty == 0 and not h.core.flattening
    assert h.core.mode == "reducing" and not h.core.to_venue  # resume is the operator's


def test_the_gateway_sets_states_only_through_the_table() -> None:
    src = (ROOT / "hftd" / "gateway" / "core.py").read_text()
    sets = re.findall(r"\.state = (.+)", src)
    assert sets and all(v.startswith("step(") or v == "PENDING" for v in sets), sets


def test_our_time_in_force_codes_pass_through_ouch_unchanged() -> None:
    """The gateway hands OrderCommand.tif to OUCH as it is: that holds only while our
    codes are OUCH's (another venue's adapter maps them)."""
    assert (hot.TIF_DAY, hot.TIF_IOC, hot.TIF_GTX) == (ouch.TIF_DAY, ouch.TIF_IOC, ouch.TIF_GTX)


def test_the_core_reads_no_clock_of_its_own() -> None:
    """Its only clock is the one it is given (a test's fake one here): no `time`."""
    src = (ROOT / "hftd" / "gateway" / "core.py").read_text()
    assert not re.search(r"^\s*(import time|from time import)", src, re.M)
    h = Harness()
    o = h.order("B", 100)
    h.fill(o, 100)
    assert h.core.recent_fills[-1][0] == h.clock.now  # stamped with the given clock


# --- every transition of the table, through the gateway's logic ------------------------------


def _pending(h: Harness) -> GwOrder:
    return h.send("B", 100)


def _live(h: Harness) -> GwOrder:
    return h.order("B", 100)


def _cancel_pending(h: Harness, acked: bool = True) -> GwOrder:
    o = h.order("B", 100) if acked else h.send("B", 100)
    h.command(CMD_CANCEL, o)
    h.core.to_venue.clear()
    return o


def _replace_pending(h: Harness) -> GwOrder:
    old = h.order("B", 100)
    h.command(CMD_REPLACE, old, 100, PX + 100)
    h.core.to_venue.clear()
    return old


def _replacement(h: Harness) -> GwOrder:
    """The new order of a replace on its way (pending)."""
    old = h.order("B", 100)
    cl = h.command(CMD_REPLACE, old, 100, PX + 100)
    h.core.to_venue.clear()
    return h.core.orders[cl]


def _replaced(h: Harness, o: GwOrder) -> None:
    old, new = (o, _new_of(h, o)) if o.state == REPLACE_PENDING else (o.orig, o)
    assert old is not None
    echo = ("B", 100, "AAPL", PX + 100, "0", "Y", 7777, "A", "N", "N", "L", "")
    h.reply(ouch.Replaced(7, old.user_ref, new.user_ref, *echo))


def _new_of(h: Harness, old: GwOrder) -> GwOrder:
    return next(x for x in h.core.orders.values() if x.orig is old)


def _refused(h: Harness, o: GwOrder) -> None:
    h.reply(ouch.Rejected(8, _new_of(h, o).user_ref, ouch.REJECT_INVALID_PRICE, ""))


SETUP = {
    PENDING: _pending,
    LIVE: _live,
    CANCEL_PENDING: _cancel_pending,
    REPLACE_PENDING: _replace_pending,
}
ACT = {
    ACCEPTED: lambda h, o: h.accept(o),
    FILLED: lambda h, o: h.fill(o, o.leaves),
    CANCEL_SENT: lambda h, o: h.command(CMD_CANCEL, o),
    CANCEL_HELD: lambda h, o: h.reply(ouch.CancelPending(3, o.user_ref)),
    CANCEL_REFUSED: lambda h, o: h.reply(ouch.CancelReject(3, o.user_ref)),
    CANCEL_REFUSED_UNACKED: lambda h, o: h.reply(ouch.CancelReject(3, o.user_ref)),
    REDUCED: lambda h, o: h.reply(ouch.Canceled(4, o.user_ref, 40, ouch.CANCEL_USER)),
    CANCELED: lambda h, o: h.reply(ouch.Canceled(4, o.user_ref, o.leaves, ouch.CANCEL_USER)),
    REPLACE_SENT: lambda h, o: h.command(CMD_REPLACE, o, 100, PX + 100),
    REPLACED: _replaced,
    REPLACE_REFUSED: _refused,
    REJECTED: lambda h, o: h.reply(ouch.Rejected(8, o.user_ref, ouch.REJECT_INVALID_PRICE, "")),
}
SPECIAL_SETUP = {  # where the state alone does not say which order
    (PENDING, REPLACED): _replacement,
    (CANCEL_PENDING, CANCEL_REFUSED_UNACKED): lambda h: _cancel_pending(h, acked=False),
    (CANCEL_PENDING, REJECTED): lambda h: _cancel_pending(h, acked=False),
}


@pytest.mark.parametrize(("pair", "to"), sorted(TRANSITIONS.items()))
def test_the_gateway_takes_each_transition_of_the_table(pair: tuple[str, str], to: str) -> None:
    state, event = pair
    h = Harness()
    o = SPECIAL_SETUP.get(pair, SETUP[state])(h)
    assert o.state == state
    ACT[event](h, o)
    assert o.state == to, (pair, o.state)
    assert (o.cl_id in h.core.orders) == (to != DONE)  # done: off the books
