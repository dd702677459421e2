"""Risk's own view of the market (hftd.risk.market) and the gateway's use of it:
the reference a price band is checked against comes from the feed's records,
never from the strategy the band checks."""

from __future__ import annotations

from hftd.config import load_config
from hftd.gateway.core import GatewayCore
from hftd.gateway.ouch_adapter import OuchAdapter
from hftd.msg.hot import (
    CMD_HEARTBEAT,
    CMD_MARK,
    CMD_NEW,
    EX_REJECTED,
    MD_ADD,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_HEARTBEAT,
    MD_RESET,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.risk.market import MarketView
from tests.support import DEFAULT_CONFIG

BID, ASK = 1_894_900, 1_895_100  # AAPL 189.49 / 189.51: mid 189.50
LOC = 7


def md(
    seq: int, kind: int, ref: int = 0, side: str = "", qty: int = 0, price: int = 0
) -> MarketDataUpdate:
    sym = "AAPL" if kind in (MD_ADD, MD_DIRECTORY) else ""
    return MarketDataUpdate(seq, kind, LOC, sym, ref, side, qty, price, 0, 0, 1)


def quoted(view: MarketView) -> list[str]:
    """AAPL quoted BID / ASK (sequence 1..3); the symbols whose reference moved."""
    return [
        view.on_update(u)
        for u in (
            md(1, MD_DIRECTORY),
            md(2, MD_ADD, 1, "B", 100, BID),
            md(3, MD_ADD, 2, "S", 100, ASK),
        )
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reference_is_the_mid_then_the_last_trade_when_one_side_is_gone() -> None:
    view = MarketView(["AAPL"], Clock())
    assert quoted(view) == ["", "", "AAPL"]  # one side only: no trade yet, no reference
    assert view.reference == {"AAPL": (BID + ASK) // 2}
    # the ask is taken (a trade at its price) and leaves: one-sided, last trade
    assert view.on_update(md(4, MD_EXECUTE, 2, qty=100)) == "AAPL"
    assert view.reference["AAPL"] == ASK and view.last_trade == {"AAPL": ASK}
    # an unchanged reference is not news
    assert view.on_update(md(5, MD_ADD, 3, "B", 100, BID - 100)) == ""


def test_out_of_sync_keeps_the_last_reference_and_asks_for_a_resync() -> None:
    clock = Clock()
    view = MarketView(["AAPL"], clock)
    quoted(view)
    ref = view.reference["AAPL"]
    assert view.on_update(md(5, MD_DELETE, 1)) == ""  # 4 is missing: a gap
    assert not view.in_sync and view.sync.take_resync()
    assert view.reference["AAPL"] == ref  # kept, not moved by what follows
    assert view.on_update(md(6, MD_ADD, 9, "B", 100, BID + 5000)) == ""
    assert view.reference["AAPL"] == ref
    # the feed's reset and replay rebuild it
    assert view.on_update(md(0, MD_RESET)) == ""
    assert view.in_sync and not view.builder.books
    assert quoted(view)[-1] == ""  # the same mid as before the gap
    assert view.in_sync and view.status()["gaps"] == 1


def test_a_book_error_loses_sync_and_a_feed_drop_is_seen() -> None:
    view = MarketView(["AAPL"], Clock())
    quoted(view)
    assert view.on_update(md(4, MD_DELETE, 42)) == ""  # an order the book never had
    assert not view.in_sync and view.book_errors == 1
    assert "book inconsistent at sequence 4" in view.status()["last_book_error"]
    view2 = MarketView(["AAPL"], Clock())
    quoted(view2)
    view2.on_update(md(9, MD_HEARTBEAT))  # the feed published up to 9: we saw 3
    assert not view2.in_sync and "md drop" in view2.sync.last_loss


def new(cl_id: int, side: str, price: int) -> OrderCommand:
    return OrderCommand(CMD_NEW, cl_id, "AAPL", side, 100, price, "0", 0, "mr1", 1, 2)


def test_the_price_band_holds_when_the_strategy_sends_a_false_mark() -> None:
    """A strategy claiming the market is at $379 (twice the real one) cannot move
    the band that checks its own orders: the gateway's view says $189.50."""
    core = GatewayCore(load_config(DEFAULT_CONFIG), lambda: 1_000_000_000, OuchAdapter())
    core.venue_up = True
    core.on_command(OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0), 1)
    view = MarketView(["AAPL"], Clock())
    for sym in quoted(view):
        if sym:
            core.on_reference(sym, view.reference[sym])
    band = core.cfg.risk.price_band_bps
    assert band < 10_000  # the band is narrower than the lie below
    false_bid, false_ask = 2 * BID, 2 * ASK
    core.on_command(
        OrderCommand(CMD_MARK, 0, "AAPL", "", false_bid, false_ask, "", 0, "mr1", 0, 0), 2
    )
    assert core.counters["marks_ignored"] == 1
    assert core.risk.last_price("AAPL") == (BID + ASK) // 2
    assert core.book.mark("AAPL") == (BID + ASK) // 2
    # an order at the false market is refused by the band ...
    core.on_command(new(1, "B", false_ask), 3)
    [r] = core.reports
    assert r.kind == EX_REJECTED and r.cl_id == 1 and "price_band" in r.reason, r
    assert "189.50" in r.reason and not core.to_venue
    core.reports.clear()
    # ... and one at the real market goes out
    core.on_command(new(2, "B", BID), 4)
    assert not core.reports and len(core.to_venue) == 1 and 2 in core.orders
