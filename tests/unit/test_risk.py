"""`hftd.risk`: every check at its boundary, overrides, the rate window, lifecycle, modes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftd.risk import (
    ACCEPT,
    CHECKS,
    PRICE_SCALE,
    Decision,
    RiskEngine,
    RiskLimits,
    SymbolLimits,
    dollars,
    format_money,
)

PX = 1_000_000  # $100.00
T0 = 1_000_000_000_000  # an arbitrary monotonic "now"
SEC = 1_000_000_000
CENT = 100  # $0.01 in 4dp units

LIMITS = RiskLimits(
    max_position=1_000,
    max_order_qty=500,
    max_order_notional=dollars(50_000),  # 500 x $100
    price_band_bps=100,  # 1 %: $1.00 around $100
    max_gross_position=2_500,
    max_orders_per_s=5,
    max_working_orders=4,
    daily_loss_limit=dollars(1_000),
    symbols={
        "TSLA": SymbolLimits(
            max_position=200, max_order_qty=50, max_order_notional=dollars(1_000), price_band_bps=50
        ),
        "MSFT": SymbolLimits(max_order_qty=100),  # only one override
    },
)


def engine(**changes: object) -> RiskEngine:
    return RiskEngine(msgspec.structs.replace(LIMITS, **changes))


def fill(r: RiskEngine, sym: str, side: str, qty: int, price: int = PX) -> None:
    """A position acquired through the normal lifecycle (sent, then filled)."""
    r.on_sent(sym, side, qty, T0 - 10 * SEC)
    r.on_fill(sym, side, qty, price, order_done=True)


# --- every check at its boundary ---------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], RiskEngine]
    order: tuple[str, str, int, int]  # symbol, side, qty, price
    expect: str  # "" = accepted, else the failing check
    now: int = T0
    market: bool = False


def _traded(**changes: object) -> Callable[[], RiskEngine]:
    def make() -> RiskEngine:
        r = engine(**changes)
        r.on_trade_price("AAPL", PX)
        return r

    return make


def _long(qty: int, **changes: object) -> Callable[[], RiskEngine]:
    def make() -> RiskEngine:
        r = engine(**changes)
        fill(r, "AAPL", "B" if qty > 0 else "S", abs(qty))
        return r

    return make


def _gross() -> RiskEngine:
    r = engine()
    fill(r, "AAPL", "B", 500)
    fill(r, "AAPL", "B", 500)
    fill(r, "IBM", "S", 500)
    fill(r, "IBM", "S", 500)
    fill(r, "GOOG", "B", 400)
    return r  # gross 2_400 of 2_500


def _sent(n: int) -> Callable[[], RiskEngine]:
    def make() -> RiskEngine:
        r = engine(max_working_orders=100)
        for i in range(n):
            r.on_sent("AAPL", "B", 1, T0 - SEC + 1 + i)  # all inside (T0 - 1 s, T0]
        return r

    return make


def _working(n: int) -> Callable[[], RiskEngine]:
    def make() -> RiskEngine:
        r = engine(max_orders_per_s=100)
        for _ in range(n):
            r.on_sent("AAPL", "B", 1, T0 - 5 * SEC)  # outside the rate window
        return r

    return make


def _pnl(pnl: int) -> Callable[[], RiskEngine]:
    def make() -> RiskEngine:
        r = engine()
        r.set_pnl(pnl)
        return r

    return make


LOSS = dollars(1_000)

BOUNDARY = [
    # max_order_qty: 500
    Case("qty at limit", engine, ("AAPL", "B", 500, PX), ""),
    Case("qty +1", engine, ("AAPL", "B", 501, PX), "max_order_qty"),
    Case("qty +1 sell", engine, ("AAPL", "S", 501, PX), "max_order_qty"),
    # max_order_notional: $1,000 for TSLA (qty limit 50)
    Case("notional at limit", engine, ("TSLA", "B", 1, dollars(1_000)), ""),
    Case("notional +1 unit", engine, ("TSLA", "B", 1, dollars(1_000) + 1), "max_order_notional"),
    Case("notional +1 cent", engine, ("TSLA", "B", 1, dollars(1_000) + CENT), "max_order_notional"),
    Case("notional 40 x $25 at limit", engine, ("TSLA", "S", 40, dollars(25)), ""),
    Case(
        "notional 40 x $25.0001", engine, ("TSLA", "S", 40, dollars(25) + 1), "max_order_notional"
    ),
    # price_band: 100 bps of $100 = $1.00
    Case("band top", _traded(), ("AAPL", "B", 1, PX + 10_000), ""),
    Case("band top +1 unit", _traded(), ("AAPL", "B", 1, PX + 10_001), "price_band"),
    Case("band top +1 cent", _traded(), ("AAPL", "S", 1, PX + 10_000 + CENT), "price_band"),
    Case("band bottom", _traded(), ("AAPL", "S", 1, PX - 10_000), ""),
    Case("band bottom -1 cent", _traded(), ("AAPL", "B", 1, PX - 10_000 - CENT), "price_band"),
    Case("band without a trade", engine, ("AAPL", "B", 1, 2 * PX), ""),
    # max_position: 1_000, worst case on the order's side
    Case("long to limit", _long(600), ("AAPL", "B", 400, PX), ""),
    Case("long +1", _long(600), ("AAPL", "B", 401, PX), "max_position"),
    Case("short to limit", _long(-600), ("AAPL", "S", 400, PX), ""),
    Case("short +1", _long(-600), ("AAPL", "S", 401, PX), "max_position"),
    Case("long, big sell is fine", _long(600), ("AAPL", "S", 500, PX), ""),
    # max_gross_position: 2_500 (2_400 used)
    Case("gross at limit", _gross, ("GOOG", "B", 100, PX), ""),
    Case("gross +1", _gross, ("GOOG", "B", 101, PX), "max_gross_position"),
    Case("gross: new symbol at limit", _gross, ("NVDA", "S", 100, PX), ""),
    Case("gross: new symbol +1", _gross, ("NVDA", "S", 101, PX), "max_gross_position"),
    Case("gross: reducing passes", _gross, ("AAPL", "S", 500, PX), ""),
    # max_orders_per_s: 5 in (now - 1 s, now]
    Case("rate: 5th order", _sent(4), ("AAPL", "B", 1, PX), ""),
    Case("rate: 6th order", _sent(5), ("AAPL", "B", 1, PX), "max_orders_per_s"),
    Case("rate: window slid", _sent(5), ("AAPL", "B", 1, PX), "", now=T0 + 1),
    # max_working_orders: 4, global
    Case("working: 4th", _working(3), ("MSFT", "B", 1, PX), ""),
    Case("working: 5th", _working(4), ("MSFT", "B", 1, PX), "max_working_orders"),
    # daily_loss: stops at P&L <= -$1,000
    Case("loss one cent short of the stop", _pnl(-LOSS + CENT), ("AAPL", "B", 1, PX), ""),
    Case("loss one unit short of the stop", _pnl(-LOSS + 1), ("AAPL", "B", 1, PX), ""),
    Case("loss exactly at the stop", _pnl(-LOSS), ("AAPL", "B", 1, PX), "daily_loss"),
    Case("loss past the stop", _pnl(-LOSS - CENT), ("AAPL", "S", 1, PX), "daily_loss"),
]


@pytest.mark.parametrize("case", BOUNDARY, ids=[c.name for c in BOUNDARY])
def test_boundary(case: Case) -> None:
    r = case.make()
    d = r.check_new(*case.order, case.now, is_market=case.market)
    assert d.check == case.expect, d.reason
    assert d.ok is (case.expect == "")
    if d.ok:
        assert d is ACCEPT
    else:
        assert case.expect in d.reason  # the reason names the limit ...
        assert r.statistics().rejects[case.expect] == 1


def test_reason_names_values() -> None:
    r = engine()
    fill(r, "AAPL", "B", 600)
    d = r.check_new("AAPL", "B", 401, PX, T0)
    assert d.reason == "position AAPL would be 1001 > max_position 1000 " + (
        "(position 600 + open buys 0 + order 401)"
    )
    d = engine().check_new("TSLA", "B", 1, dollars(1_000) + CENT, T0)
    assert d.reason == ("notional TSLA 1 x 1,000.0100 = 1,000.0100 > max_order_notional 1,000.0000")


def test_checks_run_in_the_documented_order() -> None:
    """An order failing everything reports the first check in CHECKS order."""
    r = engine(max_working_orders=1, max_orders_per_s=1)
    r.on_trade_price("AAPL", PX)
    fill(r, "AAPL", "B", 1_000)
    r.on_sent("AAPL", "B", 1, T0)
    r.set_pnl(-LOSS)
    order = ["max_order_qty", "max_order_notional", "price_band", "max_position"]
    assert r.check_new("AAPL", "B", 501, 2 * PX, T0).check == order[0]
    assert r.check_new("AAPL", "B", 500, 2 * PX, T0).check == order[1]
    assert r.check_new("AAPL", "B", 10, 2 * PX, T0).check == order[2]
    assert r.check_new("AAPL", "B", 10, PX, T0).check == order[3]
    assert r.check_new("IBM", "B", 10, PX, T0).check == "max_orders_per_s"
    assert r.check_new("IBM", "B", 10, PX, T0 + SEC).check == "max_working_orders"
    r.on_done("AAPL", "B", 1)
    assert r.check_new("IBM", "B", 10, PX, T0 + SEC).check == "daily_loss"
    assert list(CHECKS)[2:6] == order


# --- overrides -----------------------------------------------------------------------


def test_symbol_override_beats_global() -> None:
    r = engine()
    assert r.check_new("TSLA", "B", 51, 10_000, T0).check == "max_order_qty"
    assert r.check_new("AAPL", "B", 51, 10_000, T0).ok
    assert r.check_new("MSFT", "B", 101, 10_000, T0).check == "max_order_qty"
    fill(r, "TSLA", "B", 50, 10_000)
    fill(r, "TSLA", "B", 50, 10_000)
    fill(r, "TSLA", "B", 50, 10_000)
    fill(r, "TSLA", "B", 50, 10_000)
    assert r.check_new("TSLA", "B", 1, 10_000, T0).check == "max_position"  # 201 > 200


def test_for_symbol_resolves_overrides() -> None:
    t = LIMITS.for_symbol("TSLA")
    assert (t.max_position, t.max_order_qty, t.max_order_notional, t.price_band_bps) == (
        200,
        50,
        dollars(1_000),
        50,
    )
    m = LIMITS.for_symbol("MSFT")
    assert (m.max_position, m.max_order_qty, m.max_order_notional, m.price_band_bps) == (
        1_000,
        100,
        dollars(50_000),
        100,
    )
    assert LIMITS.for_symbol("ZZZZ") == LIMITS.for_symbol("")


def test_set_limits_applies_live() -> None:
    r = engine()
    assert r.check_new("AAPL", "B", 500, PX, T0).ok
    r.set_limits(msgspec.structs.replace(LIMITS, max_order_qty=100))
    assert r.check_new("AAPL", "B", 101, PX, T0).check == "max_order_qty"


# --- the rate window ----------------------------------------------------------------


def test_rate_window_slides() -> None:
    r = engine(max_orders_per_s=2, max_working_orders=100)
    r.on_sent("AAPL", "B", 1, T0)
    r.on_sent("AAPL", "B", 1, T0 + SEC // 2)
    assert r.check_new("AAPL", "B", 1, PX, T0 + SEC - 1).check == "max_orders_per_s"
    assert r.check_new("AAPL", "B", 1, PX, T0 + SEC).ok  # exactly 1 s after the first
    r.on_sent("AAPL", "B", 1, T0 + SEC)
    assert r.check_new("AAPL", "B", 1, PX, T0 + SEC).check == "max_orders_per_s"
    assert r.check_new("AAPL", "B", 1, PX, T0 + SEC + SEC // 2).ok
    assert r.statistics().orders_in_window == 1


def test_replaces_count_toward_the_rate_cancels_do_not() -> None:
    r = engine(max_orders_per_s=3)
    r.on_sent("AAPL", "B", 10, T0)
    r.on_replace_sent("AAPL", "B", 10, 10, T0)
    r.on_sent("AAPL", "B", 10, T0)
    assert r.check_new("AAPL", "B", 1, PX, T0).check == "max_orders_per_s"
    assert r.check_replace("AAPL", "B", 10, 5, PX, T0).check == "max_orders_per_s"
    r.on_done("AAPL", "B", 10)  # a cancel frees nothing in the window
    assert r.check_new("AAPL", "B", 1, PX, T0).check == "max_orders_per_s"


def test_rate_window_stays_small() -> None:
    r = engine(max_orders_per_s=10, max_working_orders=10**6)
    for i in range(10_000):
        now = T0 + i * (SEC // 10)
        assert r.check_new("AAPL", "B", 1, PX, now).ok
        r.on_sent("AAPL", "B", 1, now)
        r.on_done("AAPL", "B", 1)
    assert r.statistics().orders_in_window == 10
    assert len(r._sent) <= 10


# --- worst-case position with working orders -------------------------------------------


def test_worst_case_counts_open_orders_on_the_order_side() -> None:
    r = engine()
    fill(r, "AAPL", "B", 500)
    r.on_sent("AAPL", "B", 300, T0)  # worst long 800
    r.on_sent("AAPL", "S", 400, T0)  # open sells never help a buy
    assert r.check_new("AAPL", "B", 200, PX, T0).ok
    assert r.check_new("AAPL", "B", 201, PX, T0).check == "max_position"
    # sells: -(500 - 400 - qty) <= 1000  =>  qty <= 1100 (qty limit 500 applies first)
    assert r.check_new("AAPL", "S", 500, PX, T0).ok
    r.on_fill("AAPL", "B", 300, PX, order_done=True)  # the open buys become position
    assert r.position("AAPL") == 800
    assert r.open_qty("AAPL", "B") == 0
    assert r.check_new("AAPL", "B", 200, PX, T0).ok
    assert r.check_new("AAPL", "B", 201, PX, T0).check == "max_position"
    r.on_done("AAPL", "S", 400)
    assert r.gross_worst == 800


def test_gross_uses_worst_case_across_symbols() -> None:
    r = engine(max_working_orders=10)
    r.on_sent("AAPL", "B", 500, T0)
    r.on_sent("AAPL", "B", 500, T0)
    r.on_sent("IBM", "S", 500, T0)
    r.on_sent("IBM", "S", 500, T0)
    assert r.gross_worst == 2_000
    assert r.check_new("GOOG", "B", 500, PX, T0 + 2 * SEC).ok
    r.on_sent("GOOG", "B", 500, T0 + 2 * SEC)  # 2_500: at the limit
    assert r.check_new("GOOG", "S", 1, PX, T0 + 2 * SEC).ok  # worst case stays 500
    assert r.check_new("GOOG", "S", 501, PX, T0 + 2 * SEC).check == "max_order_qty"
    assert r.check_new("MSFT", "B", 1, PX, T0 + 2 * SEC).check == "max_gross_position"


def test_limits_lowered_below_the_position_still_allow_reducing() -> None:
    r = engine()
    fill(r, "AAPL", "B", 500)
    fill(r, "AAPL", "B", 500)
    r.set_limits(msgspec.structs.replace(LIMITS, max_position=100, max_gross_position=100))
    assert r.check_new("AAPL", "S", 500, PX, T0).ok
    assert r.check_new("AAPL", "B", 1, PX, T0).check == "max_position"


# --- replace accounting ----------------------------------------------------------------


def test_replace_position_check_uses_the_delta() -> None:
    r = engine()
    fill(r, "AAPL", "B", 600)
    r.on_sent("AAPL", "B", 300, T0)  # worst 900
    assert r.check_replace("AAPL", "B", 300, 400, PX, T0).ok  # +100 -> 1000
    d = r.check_replace("AAPL", "B", 300, 401, PX, T0)
    assert d.check == "max_position"
    assert "1001" in d.reason
    # size and notional apply to the whole new order, band to the new price
    assert r.check_replace("AAPL", "B", 300, 501, PX, T0).check == "max_order_qty"
    r.on_trade_price("AAPL", PX)
    assert r.check_replace("AAPL", "B", 300, 300, PX + 10_001, T0).check == "price_band"


def test_replace_size_down_passes_even_when_over_limits() -> None:
    r = engine()
    r.on_sent("AAPL", "B", 500, T0)
    fill(r, "AAPL", "B", 500)
    r.set_limits(msgspec.structs.replace(LIMITS, max_position=100, max_gross_position=100))
    assert r.check_replace("AAPL", "B", 500, 400, PX, T0).ok
    r.set_pnl(-LOSS)
    assert r.check_replace("AAPL", "B", 500, 400, PX, T0).ok
    assert r.check_replace("AAPL", "B", 500, 501, PX, T0).check == "max_order_qty"


def test_replace_does_not_add_a_working_order() -> None:
    r = engine(max_working_orders=1)
    r.on_sent("AAPL", "B", 100, T0)
    assert r.check_new("AAPL", "B", 100, PX, T0).check == "max_working_orders"
    assert r.check_replace("AAPL", "B", 100, 200, PX, T0).ok


def test_replace_lifecycle_reserves_up_releases_down_on_ack() -> None:
    r = engine()
    r.on_sent("AAPL", "B", 100, T0)
    # size up: reserved when sent, released if the venue rejects it
    r.on_replace_sent("AAPL", "B", 100, 150, T0)
    assert r.open_qty("AAPL", "B") == 150
    r.on_replace_done("AAPL", "B", 100, 150, accepted=False)
    assert r.open_qty("AAPL", "B") == 100
    r.on_replace_sent("AAPL", "B", 100, 150, T0)
    r.on_replace_done("AAPL", "B", 100, 150, accepted=True)
    assert r.open_qty("AAPL", "B") == 150
    # size down: the old size can still fill until the venue confirms
    r.on_replace_sent("AAPL", "B", 150, 40, T0)
    assert r.open_qty("AAPL", "B") == 150
    r.on_replace_done("AAPL", "B", 150, 40, accepted=True)
    assert r.open_qty("AAPL", "B") == 40
    r.on_replace_sent("AAPL", "B", 40, 10, T0)
    r.on_replace_done("AAPL", "B", 40, 10, accepted=False)
    assert r.open_qty("AAPL", "B") == 40
    assert r.working_orders == 1
    assert r.gross_worst == 40


@pytest.mark.parametrize(
    ("old", "new", "raced_fill", "accepted", "open_after"),
    [
        (100, 150, 0, True, 150),
        (100, 150, 0, False, 100),
        (100, 40, 0, True, 40),
        (100, 40, 0, False, 100),
        # a fill of 30 on the old order races the replace; the venue gives the
        # replacement its full quantity (OUCH), or leaves the old order with 70
        (100, 150, 30, True, 150),
        (100, 150, 30, False, 70),
        (100, 40, 30, True, 40),
        (100, 40, 30, False, 70),
        (100, 100, 99, True, 100),
    ],
)
def test_replace_settles_exactly_with_a_raced_fill(
    old: int, new: int, raced_fill: int, accepted: bool, open_after: int
) -> None:
    r = engine()
    r.on_sent("AAPL", "B", old, T0)
    assert r.check_replace("AAPL", "B", old, new, PX, T0).ok
    reserved = r.on_replace_sent("AAPL", "B", old, new, T0)
    assert reserved == max(0, new - old)
    assert r.open_qty("AAPL", "B") == max(old, new)
    if raced_fill:
        r.on_fill("AAPL", "B", raced_fill, PX)
    r.on_replace_done("AAPL", "B", old - raced_fill, new, accepted=accepted, reserved=reserved)
    assert r.open_qty("AAPL", "B") == open_after
    assert r.position("AAPL") == raced_fill
    assert r.gross_worst == raced_fill + open_after
    assert (r.working_orders, r.statistics().open_underflows) == (1, 0)


# --- P&L stop --------------------------------------------------------------------------


def test_pnl_stop_is_latched_and_allows_reducing_orders() -> None:
    r = engine()
    fill(r, "AAPL", "B", 300)
    r.set_pnl(-LOSS + 1)
    assert r.check_new("AAPL", "B", 1, PX, T0).ok
    r.set_pnl(-LOSS)
    assert r.loss_stopped
    d = r.check_new("AAPL", "B", 1, PX, T0)
    assert d.check == "daily_loss"
    assert "-1,000.0000" in d.reason and "daily_loss_limit 1,000.0000" in d.reason
    assert r.check_new("IBM", "S", 1, PX, T0).check == "daily_loss"  # opens a short
    assert r.check_new("AAPL", "S", 300, PX, T0).ok  # flatten
    assert r.check_new("AAPL", "S", 301, PX, T0).check == "daily_loss"  # would flip
    r.on_sent("AAPL", "S", 200, T0)
    assert r.check_new("AAPL", "S", 100, PX, T0).ok
    assert r.check_new("AAPL", "S", 101, PX, T0).check == "daily_loss"  # with open sells
    r.set_pnl(0)  # P&L recovered: still stopped until an operator resumes
    assert r.check_new("AAPL", "B", 1, PX, T0).check == "daily_loss"
    r.resume()
    assert r.check_new("AAPL", "B", 1, PX, T0).ok


def test_resume_while_still_past_the_stop_keeps_it() -> None:
    r = engine()
    r.set_pnl(-LOSS - 5)
    r.resume()
    assert r.loss_stopped
    r.set_limits(msgspec.structs.replace(LIMITS, daily_loss_limit=dollars(2_000)))
    r.resume()
    assert not r.loss_stopped
    assert r.check_new("AAPL", "B", 1, PX, T0).ok


def test_lowering_the_loss_limit_trips_the_stop() -> None:
    r = engine()
    r.set_pnl(-dollars(600))
    assert not r.loss_stopped
    r.set_limits(msgspec.structs.replace(LIMITS, daily_loss_limit=dollars(600)))
    assert r.loss_stopped


# --- modes -------------------------------------------------------------------------------


def test_halted_denies_everything_reducing_only_reduces() -> None:
    r = engine()
    fill(r, "AAPL", "B", 100)
    r.set_mode("halted")
    assert r.check_new("AAPL", "S", 100, PX, T0).check == "mode"
    assert r.check_replace("AAPL", "S", 10, 5, PX, T0).check == "mode"
    r.set_mode("reducing")
    assert r.check_new("AAPL", "S", 100, PX, T0).ok
    d = r.check_new("AAPL", "S", 101, PX, T0)
    assert d.check == "mode"
    assert "reducing only" in d.reason
    assert r.check_new("AAPL", "B", 1, PX, T0).check == "mode"
    r.resume()
    assert r.mode == "active"
    assert r.check_new("AAPL", "B", 1, PX, T0).ok
    with pytest.raises(ValueError):
        r.set_mode("paused")  # type: ignore[arg-type]


# --- market orders ----------------------------------------------------------------------


def test_market_order_without_a_reference_price() -> None:
    r = engine()
    d = r.check_new("AAPL", "B", 10, 0, T0, is_market=True)
    assert (d.ok, d.check) == (False, "max_order_notional")
    assert d.reason.startswith("no reference price")


def test_market_order_uses_last_trade_and_skips_the_band() -> None:
    r = engine()
    r.on_trade_price("AAPL", PX)
    assert r.check_new("AAPL", "B", 500, 0, T0, is_market=True).ok  # 500 x $100 at limit
    r.on_trade_price("AAPL", PX + 1)
    d = r.check_new("AAPL", "B", 500, 0, T0, is_market=True)
    assert d.check == "max_order_notional"
    assert "market order" in d.reason
    # the price argument of a market order is ignored (no band, no notional from it)
    assert r.check_new("AAPL", "B", 100, 10 * PX, T0, is_market=True).ok
    # position limits still apply
    fill(r, "AAPL", "B", 500)
    fill(r, "AAPL", "B", 500)
    assert r.check_new("AAPL", "B", 1, 0, T0, is_market=True).check == "max_position"


def test_fill_sets_the_last_trade_price() -> None:
    r = engine()
    r.on_sent("AAPL", "B", 10, T0)
    r.on_fill("AAPL", "B", 10, PX)
    assert r.last_price("AAPL") == PX
    assert r.check_new("AAPL", "B", 1, PX + 10_001, T0).check == "price_band"


# --- invalid input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "qty", "price", "market"),
    [
        ("B", 0, PX, False),
        ("S", -5, PX, False),
        ("X", 10, PX, False),
        ("T", 10, PX, False),  # short sells are mapped to "S" by the gateway
        ("", 10, PX, False),
        ("B", 10, 0, False),
        ("B", 10, -PX, False),
        ("B", 0, 0, True),
    ],
)
def test_invalid_new_order(side: str, qty: int, price: int, market: bool) -> None:
    r = engine()
    d = r.check_new("AAPL", side, qty, price, T0, is_market=market)
    assert (d.ok, d.check) == (False, "invalid")
    assert r.statistics().rejects["invalid"] == 1


@pytest.mark.parametrize(
    ("side", "old", "new", "price"),
    [("B", 10, 0, PX), ("Z", 10, 5, PX), ("S", -1, 5, PX), ("S", 10, 5, 0)],
)
def test_invalid_replace(side: str, old: int, new: int, price: int) -> None:
    d = engine().check_replace("AAPL", side, old, new, price, T0)
    assert (d.ok, d.check) == (False, "invalid")


def test_lifecycle_bugs_raise() -> None:
    r = engine()
    with pytest.raises(ValueError):
        r.on_sent("AAPL", "X", 10, T0)
    with pytest.raises(ValueError):
        r.on_fill("AAPL", "B", 0, PX)
    with pytest.raises(ValueError):
        r.on_open_reduced("AAPL", "B", -1)
    with pytest.raises(ValueError):
        r.on_done("AAPL", "B", -1)
    with pytest.raises(ValueError):
        r.on_trade_price("AAPL", 0)


# --- lifecycle, statistics, utilisation ------------------------------------------------------


def test_a_check_records_nothing() -> None:
    r = engine(max_orders_per_s=1, max_working_orders=1)
    for _ in range(10):
        assert r.check_new("AAPL", "B", 500, PX, T0).ok
    assert r.working_orders == 0
    assert r.open_qty("AAPL", "B") == 0
    assert r.gross_worst == 0
    assert r.statistics().orders_in_window == 0


def test_lifecycle_bookkeeping() -> None:
    r = engine()
    r.on_sent("AAPL", "B", 100, T0)
    r.on_sent("AAPL", "S", 50, T0)
    assert (r.working_orders, r.gross_worst) == (2, 100)
    r.on_fill("AAPL", "B", 40, PX)
    assert (r.position("AAPL"), r.open_qty("AAPL", "B")) == (40, 60)
    r.on_open_reduced("AAPL", "B", 10)  # partial cancel
    assert r.open_qty("AAPL", "B") == 50
    r.on_fill("AAPL", "B", 50, PX, order_done=True)
    r.on_done("AAPL", "S", 50)  # the sell was cancelled
    assert (r.position("AAPL"), r.working_orders, r.gross_worst) == (90, 0, 90)
    assert r.statistics().open_underflows == 0
    r.on_fill("AAPL", "S", 10, PX)  # a fill nobody expected: clamped and counted
    r.on_order_finished()
    s = r.statistics()
    assert (r.position("AAPL"), r.open_qty("AAPL", "S"), r.working_orders) == (80, 0, 0)
    assert s.open_underflows == 2
    r.set_position("AAPL", -5)
    assert (r.position("AAPL"), r.gross_worst) == (-5, 5)


def test_statistics() -> None:
    r = engine()
    r.check_new("AAPL", "B", 1, PX, T0)
    r.check_new("AAPL", "B", 501, PX, T0)
    r.check_new("AAPL", "B", 0, PX, T0)
    r.check_replace("AAPL", "B", 1, 501, PX, T0)
    s = r.statistics()
    assert (s.checks, s.accepted, s.rejected) == (4, 1, 3)
    assert s.rejects["max_order_qty"] == 2
    assert s.rejects["invalid"] == 1
    assert set(s.rejects) == set(CHECKS)
    assert (s.mode, s.loss_stopped, s.working_orders) == ("active", False, 0)
    msgspec.msgpack.encode(s)  # ships to the monitor as is


def test_utilisation() -> None:
    r = engine()
    fill(r, "AAPL", "B", 500)
    r.on_sent("AAPL", "B", 250, T0)
    r.on_sent("TSLA", "S", 50, T0)
    r.set_pnl(-dollars(250))
    u = r.utilisation(T0)
    assert u["position.AAPL"] == 0.5
    assert u["position_worst.AAPL"] == 0.75
    assert u["position_worst.TSLA"] == 50 / 200
    assert u["gross"] == 500 / 2_500
    assert u["gross_worst"] == 800 / 2_500
    assert u["rate"] == 2 / 5
    assert u["working"] == 2 / 4
    assert u["loss"] == 0.25
    assert r.utilisation(T0 + SEC)["rate"] == 0.0


def test_figures_are_used_and_limit_of_every_limit() -> None:
    """What the front ends show as used/limit: the same counts the checks use, against
    the limit in force (a symbol's own max_position); the loss is the P&L itself
    against -daily_loss_limit, both signed."""
    from hftd.msg.status import RiskFigure

    r = engine(max_net_position=3_000, max_exposure_notional=dollars(400_000))
    fill(r, "AAPL", "B", 500)  # @ $100.00
    fill(r, "TSLA", "S", 150, 2_000_000)  # @ $200.00, its own max_position 200
    r.on_sent("AAPL", "B", 250, T0)
    r.on_sent("TSLA", "B", 50, T0)
    r.on_cancel_sent(T0 + 1)
    r.set_pnl(-dollars(128))
    f = r.figures(T0 + 2)
    assert f["position.AAPL"] == RiskFigure(used=500, limit=1_000, unit="shares")
    assert f["position.TSLA"] == RiskFigure(used=150, limit=200, unit="shares")
    assert f["position_worst.AAPL"] == RiskFigure(used=750, limit=1_000, unit="shares")
    assert f["gross"] == RiskFigure(used=650, limit=2_500, unit="shares")
    assert f["gross_worst"].used == 750 + 150
    assert f["net"] == RiskFigure(used=350, limit=3_000, unit="shares")
    assert f["exposure"] == RiskFigure(
        used=500 * PX + 150 * 2_000_000, limit=dollars(400_000), unit="dollars"
    )
    # in the window: the 2 orders at T0 and the cancel (the fills' orders are 10 s old)
    assert f["rate"] == RiskFigure(used=2, limit=5, unit="orders/s")
    assert f["messages"] == RiskFigure(used=3, limit=LIMITS.max_messages_per_s, unit="messages/s")
    assert f["working"] == RiskFigure(used=2, limit=4, unit="orders")
    assert f["loss"] == RiskFigure(used=-dollars(128), limit=-dollars(1_000), unit="dollars")
    # the fractions are theirs; a profit uses none of the loss limit
    assert r.utilisation(T0 + 2) == {k: x.fraction for k, x in f.items()}
    assert f["loss"].fraction == 0.128 and f["position.TSLA"].fraction == 0.75
    r.set_pnl(dollars(300))
    assert r.figures()["loss"].used == dollars(300) and r.figures()["loss"].fraction == 0.0
    # a quiet second later: nothing in the window
    later = r.figures(T0 + 2 + SEC)
    assert later["rate"].used == later["messages"].used == 0
    # short positions count by size against the limit; so does a short net
    fill(r, "MSFT", "S", 900)
    assert r.figures()["position.MSFT"].used == 900 and r.figures()["net"].used == 550


# --- limits as configuration --------------------------------------------------------------


def test_money_helpers() -> None:
    assert dollars(250_000) == 2_500_000_000
    assert format_money(1_895_000) == "189.5000"
    assert format_money(-dollars(1_234) - 1) == "-1,234.0001"
    from hftd.config import PRICE_SCALE as CONFIG_SCALE

    assert PRICE_SCALE == CONFIG_SCALE


def test_limits_decode_from_toml() -> None:
    text = b"""
    max_position = 2000
    daily_loss_limit = 100000000  # $10,000
    [symbols.AAPL]
    max_order_qty = 300
    """
    lim = msgspec.toml.decode(text, type=RiskLimits)
    assert lim.max_position == 2_000
    assert lim.daily_loss_limit == dollars(10_000)
    assert lim.for_symbol("AAPL").max_order_qty == 300
    assert lim.for_symbol("AAPL").max_position == 2_000
    assert lim.max_order_qty == RiskLimits().max_order_qty
    for bad in (
        b"max_positon = 5",
        b"max_position = 0",
        b"max_position = 1.5",
        b"[symbols.aapl]\nmax_position = 1",
        b"[symbols.AAPL]\nmax_position = -1",
        b"[symbols.AAPL]\nmax_pos = 1",
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.toml.decode(bad, type=RiskLimits)
    with pytest.raises(AttributeError):
        lim.max_position = 1  # type: ignore[misc]


def test_limits_problems() -> None:
    assert list(LIMITS.problems()) == []
    bad = RiskLimits(max_gross_position=100, symbols={"AAPL": SymbolLimits(max_position=50)})
    assert list(bad.problems()) == ["max_position: 5000 exceeds max_gross_position 100"]
    bad = RiskLimits(symbols={"AAPL": SymbolLimits(max_position=30_000)})
    assert list(bad.problems()) == [
        "symbols.AAPL.max_position: 30000 exceeds max_gross_position 20000"
    ]


def test_decision_is_a_value() -> None:
    d = Decision(False, "max_order_qty", "x")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(d), type=Decision) == d
    assert Decision(True, "", "") == ACCEPT


def test_risk_is_pure() -> None:
    """No trio, no sockets, no config import (hftd.config will import the limits)."""
    code = (
        "import sys, hftd.risk, hftd.gateway.positions; "
        "print(sorted({'trio', 'socket', 'hftd.config'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- property: approved orders never breach the exposure limits -----------------------------

SYMS = ("AAPL", "TSLA", "IBM")

_qty = st.one_of(st.sampled_from([50, 100, 250, 499, 500]), st.integers(1, 500))
op = st.one_of(
    st.tuples(st.just("new"), st.sampled_from(SYMS), st.sampled_from("BS"), _qty),
    st.tuples(st.just("new"), st.sampled_from(SYMS), st.sampled_from("BS"), _qty),
    st.tuples(st.just("fill"), st.integers(0, 50), _qty, st.just("")),
    st.tuples(st.just("fill"), st.integers(0, 50), _qty, st.just("")),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0), st.just("")),
    st.tuples(st.just("replace"), st.integers(0, 50), _qty, st.just("")),
    st.tuples(st.just("tick"), st.integers(1, 300_000_000), st.just(0), st.just("")),
)


@dataclass
class _Order:
    symbol: str
    side: str
    open: int


@settings(derandomize=True, database=None, max_examples=300, deadline=None)
@given(st.lists(op, min_size=10, max_size=120))
def test_approved_orders_never_breach_exposure_limits(
    ops: list[tuple[str, int | str, int | str, int | str]],
) -> None:
    """Random orders, fills, cancels, replaces: whatever was approved, if every open
    order filled, no symbol would pass max_position and the account would not pass
    max_gross_position; the rate and working-order limits hold too."""
    r = engine(max_position=600, max_gross_position=1_000, max_working_orders=6, max_orders_per_s=8)
    orders: list[_Order] = []
    pos = dict.fromkeys(SYMS, 0)
    now = T0
    sends: list[int] = []
    price = PX // 100  # $1: keeps notional out of the way
    for kind, a, b, c in ops:
        if kind == "tick":
            assert isinstance(a, int)
            now += a
        elif kind == "new":
            assert isinstance(a, str) and isinstance(b, str) and isinstance(c, int)
            if r.check_new(a, b, c, price, now).ok:
                r.on_sent(a, b, c, now)
                sends.append(now)
                orders.append(_Order(a, b, c))
        elif orders:
            assert isinstance(a, int) and isinstance(b, int)
            o = orders[a % len(orders)]
            if kind == "fill":
                q = min(b, o.open)
                r.on_fill(o.symbol, o.side, q, price, order_done=q == o.open)
                pos[o.symbol] += q if o.side == "B" else -q
                o.open -= q
            elif kind == "cancel":
                r.on_done(o.symbol, o.side, o.open)
                o.open = 0
            elif r.check_replace(o.symbol, o.side, o.open, b, price, now).ok:
                r.on_replace_sent(o.symbol, o.side, o.open, b, now)
                sends.append(now)
                r.on_replace_done(o.symbol, o.side, o.open, b, accepted=True)
                o.open = b
            orders = [o for o in orders if o.open]
        gross = 0
        for sym in SYMS:
            ob = sum(o.open for o in orders if o.symbol == sym and o.side == "B")
            os_ = sum(o.open for o in orders if o.symbol == sym and o.side == "S")
            assert (r.position(sym), r.open_qty(sym, "B"), r.open_qty(sym, "S")) == (
                pos[sym],
                ob,
                os_,
            )
            worst = max(abs(pos[sym] + ob), abs(pos[sym] - os_))
            assert worst <= r.limits_for(sym).max_position
            gross += worst
        assert gross == r.gross_worst <= 1_000
        assert r.working_orders == len(orders) <= 6
        assert all(sum(1 for t in sends if s - SEC < t <= s) <= 8 for s in sends)


# --- net position, notional exposure, message rate --------------------------------------


def test_net_position_boundary() -> None:
    r = engine(
        max_net_position=1_000,
        max_position=5_000,
        max_gross_position=20_000,
        max_order_qty=1_000,
        max_order_notional=10**15,
    )
    fill(r, "AAPL", "B", 600)
    assert r.check_new("GOOG", "B", 400, PX, 1).ok  # net 1000: at the limit
    d = r.check_new("GOOG", "B", 401, PX, 1)
    assert not d.ok and d.check == "max_net_position"
    assert r.check_new("GOOG", "S", 401, PX, 1).ok  # selling lowers the net


def test_net_position_counts_open_orders_on_the_order_side_only() -> None:
    """Net worst case over every symbol: position, plus open buys for a buy, minus
    open sells for a sell; the other side's open orders do not count."""
    r = engine(
        max_net_position=1_000,
        max_position=5_000,
        max_gross_position=20_000,
        max_order_qty=1_000,
        max_order_notional=10**15,
        max_exposure_notional=10**18,
        max_working_orders=10,
        max_orders_per_s=10,
    )
    fill(r, "AAPL", "B", 300)
    r.on_sent("MSFT", "B", 500, T0 - 10 * SEC)
    r.on_sent("GOOG", "S", 900, T0 - 10 * SEC)
    assert r.check_new("AMZN", "B", 200, PX, T0).ok  # 300 + 500 + 200 = 1000
    d = r.check_new("AMZN", "B", 201, PX, T0)
    assert not d.ok and d.check == "max_net_position" and "would be 1001 " in d.reason
    assert r.check_new("AMZN", "S", 400, PX, T0).ok  # 300 - 900 - 400 = -1000
    d = r.check_new("AMZN", "S", 401, PX, T0)
    assert not d.ok and d.check == "max_net_position" and "would be -1001 " in d.reason


def test_exposure_notional_boundary() -> None:
    # AAPL long 100 at PX traded; MSFT order priced at PX: exposure = shares x price.
    limit = 300 * PX
    r = engine(max_exposure_notional=limit, max_order_notional=10**15, max_order_qty=1_000)
    fill(r, "AAPL", "B", 100)
    assert r.check_new("GOOG", "B", 200, PX, 1).ok  # 300 x PX: at the limit
    d = r.check_new("GOOG", "B", 201, PX, 1)
    assert not d.ok and d.check == "max_exposure_notional"
    assert "max_exposure_notional" in d.reason
    # Reducing AAPL never raises exposure.
    assert r.check_new("AAPL", "S", 100, PX, 1).ok


def test_message_rate_counts_cancels_but_never_denies_them() -> None:
    r = engine(max_messages_per_s=3, max_orders_per_s=100)
    r.on_sent("AAPL", "B", 1, 10)
    r.on_cancel_sent(20)
    assert r.check_new("AAPL", "B", 1, PX, 30).ok  # 2 in the window + this one = 3
    r.on_cancel_sent(30)
    d = r.check_new("AAPL", "B", 1, PX, 40)
    assert not d.ok and d.check == "max_messages_per_s"
    assert r.check_new("AAPL", "B", 1, PX, 10 + 1_000_000_000).ok  # the first slid out


def test_utilisation_read_from_another_thread_while_trading() -> None:
    """The gateway's control thread reads `utilisation()` while its hot loop sends
    orders in new symbols: iterating the live containers raised "mutated during
    iteration" now and then (a failed Status reply)."""
    import threading
    import traceback

    r = engine(
        max_working_orders=10**9,
        max_orders_per_s=10**9,
        max_messages_per_s=10**9,
        max_gross_position=10**12,
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                r.utilisation()
            except BaseException as exc:
                errors.append(exc)
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(30_000):
            r.on_sent(f"S{i % 3000}", "B", 1, T0 + i)
    finally:
        stop.set()
        reader.join()
        sys.setswitchinterval(old)
    assert not errors, "".join(traceback.format_exception(errors[0]))
