"""The gateway's logic on its own (no sockets, no rings): what every OUCH 5.0
venue-side message does to orders, positions, P&L and the strategy's reports,
and what happens to a sequenced message the gateway cannot use."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hftd.config import load_config
from hftd.gateway import venue
from hftd.gateway.core import CANCEL_PENDING, LIVE, GatewayCore
from hftd.gateway.ouch_adapter import OuchAdapter
from hftd.gateway.positions import PositionBook
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_NEW,
    EX_CANCELED,
    EX_FILL,
    EX_POSITION,
    OrderCommand,
)
from hftd.wire import ouch
from tests.support import DEFAULT_CONFIG
from tests.unit.gateway_fixtures import PX, Harness


def position(h: Harness, sym: str = "AAPL") -> tuple[int, int, int, int]:
    p = h.core.book.position(sym)
    return p.qty, p.cost, p.realized, p.fills


def expected(fills: list[tuple[str, int, int]]) -> tuple[int, int, int, int]:
    ref = PositionBook()
    for side, qty, price in fills:
        ref.on_fill("AAPL", side, qty, price)
    p = ref.position("AAPL")
    return p.qty, p.cost, p.realized, p.fills


# --- broken trades and trade corrections ------------------------------------------------


def test_a_broken_trade_undoes_its_fill_exactly() -> None:
    h = Harness()
    buy, sell = h.order("B", 100, PX), h.order("S", 300, PX + 200)
    m_buy = h.fill(buy, 100, PX)
    h.fill(sell, 100, PX + 200)  # closes the long: realized 100 * 0.02
    h.fill(sell, 50, PX + 300)  # opens a short
    assert position(h) == expected([("B", 100, PX), ("S", 100, PX + 200), ("S", 50, PX + 300)])
    assert h.core.book.realized() == 100 * 200

    reports = h.reply(ouch.BrokenTrade(3, buy.user_ref, m_buy, ouch.BROKEN_ERRONEOUS, "x"))
    # as if the buy never happened: short 150 at the two sell prices, nothing realized
    assert position(h) == expected([("S", 100, PX + 200), ("S", 50, PX + 300)])
    assert h.core.book.realized() == 0 and h.core.book.position("AAPL").qty == -150
    assert h.core.counters["fills"] == 2 and h.core.counters["broken_trades"] == 1
    assert h.core.risk.position("AAPL") == -150
    assert h.core.risk.pnl == h.core.book.total()
    assert [(r.kind, r.cl_id, r.symbol, r.qty, r.price, r.position) for r in reports] == [
        (EX_POSITION, 0, "AAPL", 100, PX, -150)
    ]
    assert sell.leaves == 150  # the venue does not give the shares back to an order
    assert h.core.counters["unusable"] == 0


def test_a_trade_correction_reprices_its_fill() -> None:
    h = Harness()
    buy, sell = h.order("B", 100), h.order("S", 100, PX + 200)
    m = h.fill(buy, 100, PX)
    h.fill(sell, 100, PX + 200)
    reports = h.reply(ouch.TradeCorrection(3, buy.user_ref, 100, PX + 100, "A", m, "N", ""))
    assert position(h) == expected([("B", 100, PX + 100), ("S", 100, PX + 200)])
    assert h.core.book.realized() == 100 * 100
    assert h.core.counters["fills"] == 2 and h.core.counters["trade_corrections"] == 1
    assert [(r.kind, r.qty, r.price, r.position) for r in reports] == [
        (EX_POSITION, 100, PX + 100, 0)
    ]


def test_a_broken_trade_of_a_fill_never_seen_is_unusable_not_an_error() -> None:
    h = Harness()
    o = h.order("B", 100)
    h.fill(o, 40)
    before = position(h)
    assert h.reply(ouch.BrokenTrade(3, o.user_ref, 999_999, "E", "")) == []
    assert position(h) == before and h.core.counters["broken_trades"] == 0
    assert h.core.counters["unusable"] == 1
    assert "execution 999999 broken (E): no such fill" in h.core.last_unusable


# --- recent fills: P&L per share of a fill that reduces ------------------------------------


def test_a_reducing_fill_carries_its_pnl_per_share_closed() -> None:
    """The recent fills (the console's and the page's trades) say what each fill that
    reduced a position made per share it closed, against the average entry price of
    those shares, positive when it made money; a fill that opens or adds says None."""
    h = Harness()
    buy = h.order("B", 200, PX)
    h.fill(buy, 100, PX)  # opens
    h.fill(buy, 50, PX + 100)  # adds: 150 long, average PX + 33.33
    sell = h.order("S", 200, PX + 300)
    h.fill(sell, 60, PX + 300)  # reduces: (PX + 300) - (PX + 33.33) a share
    h.fill(sell, 140, PX - 100)  # closes 90 long at a loss, then opens 50 short
    cover = h.order("B", 20, PX - 300)
    h.fill(cover, 20, PX - 300)  # reduces the short: bought $0.02 below its entry
    pps = [f[6] for f in h.core.recent_fills]
    assert pps[:2] == [None, None]
    assert pps[2] == pytest.approx(300 - 100 * 50 / 150)
    assert pps[3] == pytest.approx(-100 - 100 * 50 / 150)
    assert pps[4] == 200.0
    # each one is what the fill realized, per share closed (the book's own arithmetic)
    realized = h.core.book.position("AAPL").realized
    assert pps[2] * 60 + pps[3] * 90 + pps[4] * 20 == pytest.approx(realized)


# --- the order's life at the venue --------------------------------------------------------


def test_an_order_priority_update_updates_the_working_order() -> None:
    h = Harness()
    o = h.order("B", 100, PX)
    assert h.reply(ouch.OrderPriorityUpdate(3, o.user_ref, PX - 100, "N", 4242)) == []
    assert (o.price, o.display_price, o.order_ref, o.state) == (PX - 100, PX - 100, 4242, LIVE)
    assert h.core.counters["priority_updates"] == 1 and h.core.counters["unusable"] == 0


def test_an_order_restated_keeps_its_displayed_price() -> None:
    h = Harness()
    o = h.order("S", 100, PX)
    shown = PX + 100
    app = bytes([5, 22]) + (100).to_bytes(4, "big") + bytes([9, 23]) + shown.to_bytes(8, "big")
    assert h.reply(ouch.OrderRestated(3, o.user_ref, ouch.RESTATED_PRICE, app)) == []
    assert (o.display_price, o.price, o.leaves) == (shown, PX, 100)
    assert h.core.counters["restated"] == 1


def test_an_aiq_cancel_takes_shares_off_like_a_cancel() -> None:
    h = Harness()
    o = h.order("B", 300)
    reports = h.reply(ouch.AiqCanceled(3, o.user_ref, 200, ouch.CANCEL_AIQ, 200, PX, "A"))
    assert [(r.kind, r.qty, r.leaves, r.reason) for r in reports] == [
        (EX_CANCELED, 200, 100, venue.CANCEL_SELF_MATCH)
    ]
    assert o.leaves == 100 and o.state == LIVE
    assert h.core.risk.open_qty("AAPL", "B") == 100
    h.reply(ouch.AiqCanceled(4, o.user_ref, 100, ouch.CANCEL_AIQ, 100, PX, "A"))
    assert o.cl_id not in h.core.orders and h.core.risk.working_orders == 0
    assert h.core.counters["aiq_cancels"] == 2


def test_cancel_pending_is_not_sent_again_and_cancel_reject_makes_it_live() -> None:
    h = Harness()
    o = h.order("B", 100)
    h.core.on_command(
        OrderCommand(CMD_CANCEL, 99, "AAPL", "B", 0, 0, "", o.cl_id, "mr1", 0, 0), h.clock.now
    )
    assert o.state == CANCEL_PENDING and len(h.core.to_venue) == 1
    h.core.to_venue.clear()
    h.reply(ouch.CancelPending(3, o.user_ref))
    h.clock.now += 10 * 1_000_000_000  # far past order_timeout_s (and the strategy's)
    h.core.on_timer(h.clock.now)
    assert h.core.to_venue == [] and h.core.counters["timeouts"] == 0  # the venue has it
    assert h.core.halt("test")["cancelled"] == 0  # nor sent again by a halt
    h.reply(ouch.CancelReject(4, o.user_ref))
    assert o.state == LIVE and not o.cancel_acked
    assert h.core.counters["cancel_pending"] == 1 and h.core.counters["cancel_rejects"] == 1


def test_order_modified_changes_size_and_side() -> None:
    h = Harness()
    o = h.order("S", 300)
    reports = h.reply(ouch.OrderModified(3, o.user_ref, "T", 200))  # now a short sale, 200
    assert [(r.kind, r.qty, r.leaves, r.reason) for r in reports] == [
        (EX_CANCELED, 100, 200, venue.CANCEL_MODIFIED)
    ]
    assert (o.side, o.leaves) == ("S", 200) and h.core.risk.open_qty("AAPL", "S") == 200
    h.reply(ouch.OrderModified(4, o.user_ref, "B", 200))  # side: the open shares move
    assert o.side == "B"
    assert (h.core.risk.open_qty("AAPL", "B"), h.core.risk.open_qty("AAPL", "S")) == (200, 0)
    h.reply(ouch.OrderModified(5, o.user_ref, "B", 0))
    assert o.cl_id not in h.core.orders and h.core.risk.open_qty("AAPL", "B") == 0
    assert h.core.counters["modified"] == 3


def test_account_query_response_and_system_events() -> None:
    h = Harness()
    h.reply(ouch.AccountQueryResponse(3, 500))
    assert h.core.next_user_ref == 500
    h.reply(ouch.AccountQueryResponse(4, 7))  # never backwards
    assert h.core.next_user_ref == 500
    assert h.reply(ouch.SystemEventMsg(5, "E")) == []
    assert h.core.counters["unusable"] == 0


# --- what cannot be used ------------------------------------------------------------------


def test_unusable_messages_are_counted_and_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    caplog.set_level(logging.ERROR, "hftd.gateway")
    h.seq += 1
    h.core.on_venue_payload(b"Z\x00\x01", h.seq, h.clock.now)  # not OUCH 5.0
    assert h.core.venue_seq == h.seq and h.core.counters["unusable"] == 1
    assert "not OUCH 5.0" in h.core.last_unusable
    for _ in range(50):  # a burst: one more line, then quiet
        h.reply(ouch.Executed(1, 12345, 100, PX, "A", 1))
    assert h.core.counters["unusable"] == 51 and h.core.counters["untracked"] == 50
    lines = [r for r in caplog.records if "not applied" in r.getMessage()]
    assert len(lines) == 1
    h.clock.now += 2_000_000_000
    h.reply(ouch.OrderPriorityUpdate(1, 12345, PX, "Y", 1))
    lines = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(lines) == 2 and "(50 more since the last line)" in lines[-1]
    assert "Order Priority Update for unknown UserRefNum 12345" in lines[-1]


def test_replay_of_a_journal_applies_venue_side_messages_and_unusable_ones(
    tmp_path: Any,
) -> None:
    """The same messages journaled and replayed into a new core give the same state."""
    from hftd.runtime.journal import Journal, read_all

    h = Harness()
    journal = h.core.journal = Journal.open(tmp_path / "gw.journal", "never", 0.05)
    buy, sell = h.order("B", 200), h.order("S", 100, PX + 100)
    m = h.fill(buy, 100)
    h.fill(sell, 100, PX + 100)
    h.reply(ouch.BrokenTrade(3, buy.user_ref, m, "S", ""))
    h.reply(ouch.OrderPriorityUpdate(4, buy.user_ref, PX - 100, "Y", 77))
    h.reply(b"?")
    journal.close()

    fresh = GatewayCore(load_config(DEFAULT_CONFIG), h.clock, OuchAdapter())
    records, torn = read_all(tmp_path / "gw.journal")
    assert torn is None
    assert fresh.replay(records, h.clock.now) == h.seq
    assert fresh.counters["unusable"] == 1 and fresh.counters["broken_trades"] == 1
    assert fresh.book.position("AAPL").qty == h.core.book.position("AAPL").qty == -100
    assert fresh.by_ref[buy.user_ref].price == PX - 100


def test_reports_carry_the_stream_position() -> None:
    h = Harness()
    o = h.order("B", 100)
    h.fill(o, 10)
    r = h.reply(ouch.BrokenTrade(3, o.user_ref, h.match, "E", ""))[0]
    assert r.venue_seq == h.seq and h.core.stamp(r) == r


def test_each_report_carries_its_own_messages_position_in_a_pass() -> None:
    """The daemon applies several venue messages in one pass and writes their reports
    after; a restarted gateway skips every report up to the last one the ring took.
    Stamped with the pass's last position, a pass cut short (ring full, crash) lost
    the rest of its reports for good; each now carries its own message's."""
    h = Harness()
    o = h.order("B", 300)
    first = h.seq + 1
    for qty in (10, 20, 30):  # three executions in one pass: nothing taken in between
        h.seq += 1
        h.match += 1
        payload = ouch.encode_outbound(ouch.Executed(2, o.user_ref, qty, PX, "A", h.match))
        h.core.on_venue_payload(payload, h.seq, h.clock.now)
    reports = list(h.core.reports)
    assert [r.kind for r in reports] == [EX_FILL] * 3
    assert [h.core.stamp(r).venue_seq for r in reports] == [first, first + 1, first + 2]
    # one of ours (a reject) gets the position reached when it is written
    from hftd.msg.hot import EX_HEARTBEAT

    assert h.core.stamp(h.core.heartbeat()).venue_seq == h.seq
    assert h.core.heartbeat().kind == EX_HEARTBEAT


def test_the_order_sent_line_is_made_after_the_bytes_are_handed_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An order's T4 does not wait for its log record (tens of microseconds on a cold
    cache): on_command queues the bytes, the line comes from `after_send`, once."""
    h = Harness()
    caplog.set_level(logging.INFO, logger="hftd.gateway")
    h.core.on_command(
        OrderCommand(CMD_NEW, 7, "AAPL", "B", 100, PX, "0", 0, "mr1", 0, 0), h.clock.now
    )
    assert h.core.to_venue and "order sent" not in caplog.text
    h.core.stamp_sent(h.clock.now + 1)
    h.core.after_send()
    assert caplog.text.count("order sent: AAPL BUY 100 @ 189.5000 (cl 7, ref 1, mr1)") == 1
    assert caplog.text.count("check passed: AAPL BUY 100 @ 189.5000 (cl 7): position 0/") == 1
    h.core.after_send()
    assert caplog.text.count("order sent") == 1


def test_a_silent_strategy_cancels_its_orders_but_not_for_the_gateways_own_stall(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """strategy_timeout_s (1 s by default): a strategy that stops heartbeating has its
    working orders cancelled. A stall of the gateway itself (its process stopped; in the
    composite layout the strategy stopped with it: the daemon's loop calls
    `excuse_stall` when its timer ran that late) is not counted as the strategy's
    silence; what came before and after it is."""
    h = Harness()
    core = h.core
    o = h.send("B", 100)
    h.accept(o)
    h.tick(0.1)
    h.clock.now += 600_000_000  # 0.6 s of real silence while the gateway runs
    core.on_timer(h.clock.now)
    # Then the whole process stopped for 5 s (SIGSTOP, swapped out): the timer runs late.
    h.clock.now += 5_000_000_000
    with caplog.at_level(logging.WARNING, logger="hftd.gateway"):
        core.excuse_stall(5_000_000_000, h.clock.now)
        core.on_timer(h.clock.now)
    assert core.strategy_up and o.cl_id in core.orders and o.state == LIVE
    assert "the gateway did not run for 5.0 s" in caplog.text
    assert "strategy silent" not in caplog.text
    # 0.3 s more of silence: 0.9 s counted, still up; 0.2 s more: 1.1 s, cancelled.
    h.clock.now += 300_000_000
    core.on_timer(h.clock.now)
    assert core.strategy_up and o.state == LIVE
    with caplog.at_level(logging.ERROR, logger="hftd.gateway"):
        h.clock.now += 200_000_000
        core.on_timer(h.clock.now)
    assert not core.strategy_up
    assert o.state == CANCEL_PENDING
    assert "strategy silent for 1.1 s: cancelled its 1 working orders" in caplog.text
    # A strategy that is not up is not excused (nothing to hold against it).
    core.excuse_stall(5_000_000_000, h.clock.now + 5_000_000_000)
    assert not core.strategy_up


def test_before_any_market_data_the_band_uses_the_configured_reference_price() -> None:
    """A gateway just started (start of day, or restarted before its market view caught
    up) has no quote or trade yet: the band is checked against each symbol's configured
    reference_price (its previous close), not skipped."""
    cfg = load_config(DEFAULT_CONFIG)
    core = GatewayCore(cfg, lambda: 1_000_000_000, OuchAdapter())
    aapl = next(s for s in cfg.symbols if s.symbol == "AAPL")
    ref, band = aapl.reference_price_fp, cfg.risk.price_band_bps
    core.venue_up = True
    core.on_command(OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0), 1)
    far = ref * (10_000 + band + 100) // 10_000  # 1% past the band
    core.on_command(OrderCommand(CMD_NEW, 1, "AAPL", "B", 100, far, "0", 0, "mr1", 0, 0), 2)
    assert 1 not in core.orders and core.counters["risk_rejects"] == 1
    (r,) = core.reports
    assert "price_band" in r.reason and "outside" in r.reason, r.reason
    near = ref + 100
    core.on_command(OrderCommand(CMD_NEW, 2, "AAPL", "B", 100, near, "0", 0, "mr1", 0, 0), 3)
    assert 2 in core.orders and core.counters["risk_rejects"] == 1
