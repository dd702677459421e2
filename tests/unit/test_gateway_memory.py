"""The gateway's memory under steady flow: after a warm-up, a long run of orders,
acknowledgements, fills, cancels and replaces leaves the traced memory where it
was, but for the day's fill log (kept for broken trades and corrections: ~28
bytes a fill). bench/bench_memory.py saw the gateway grow ~9 MB/h at ~600
fills/min: every fill kept as a tuple of int objects (~200 bytes each)."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from hftd.config import load_config
from hftd.gateway.core import LIVE, GatewayCore
from hftd.gateway.ouch_adapter import OuchAdapter, to_b36
from hftd.gateway.positions import FillLog
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_MARK,
    CMD_NEW,
    CMD_REPLACE,
    OrderCommand,
)
from hftd.runtime.journal import Journal
from hftd.wire import ouch
from tests.support import DEFAULT_CONFIG

SYMBOLS = ("AAPL", "MSFT", "AMZN", "NVDA")
PX = 1_895_000
FILL_LOG_BYTES = 40  # per fill: 28 in the columns, and their arrays' spare room


class Day:
    """A GatewayCore driven as GatewayAgent drives it (commands, venue replies decoded
    from their bytes and journaled, T4 stamps, timers, latency folds), with a venue
    that answers every order."""

    def __init__(self, journal: Journal | None) -> None:
        self.now = 1_000_000_000
        self.core = GatewayCore(load_config(DEFAULT_CONFIG), lambda: self.now, OuchAdapter())
        for sym in SYMBOLS:  # one price for all four: each its reference (price_band)
            self.core.risk.on_trade_price(sym, PX)
        self.core.journal = journal
        self.core.venue_up = True
        self.seq = 0
        self.cl = 0
        self.match = 0
        self.n = 0

    def command(
        self, kind: int, cl: int, sym: str, side: str, qty: int, px: int, orig: int
    ) -> None:
        c = OrderCommand(kind, cl, sym, side, qty, px, "0", orig, "mr1", self.now - 5000, self.now)
        self.core.on_command(c, self.now)
        self.core.to_venue.clear()  # "sent"
        self.core.stamp_sent(self.now + 1000)
        self.core.after_send()

    def venue(self, m: ouch.Outbound) -> None:
        self.seq += 1
        payload = ouch.encode_outbound(m)
        self.core.journal_venue(self.seq, payload)
        self.core.on_venue_payload(payload, self.seq, self.now + 2000)

    def fill(self, user_ref: int, qty: int, px: int) -> None:
        self.match += 1
        self.venue(ouch.Executed(self.now, user_ref, qty, px, "A", self.match))

    def accepted(self, user_ref: int, side: str, qty: int, sym: str, px: int, cl: int) -> None:
        echo = ("0", "Y", 9000 + cl, "A", "N", "N", "L", to_b36(cl))
        self.venue(ouch.Accepted(self.now, user_ref, side, qty, sym, px, *echo))

    def orders(self, count: int) -> None:
        """`count` orders, each finished: filled in two, partly filled then cancelled,
        replaced then filled, or cancelled; both sides in turn, so positions stay
        inside the risk limits."""
        core = self.core
        for _ in range(count):
            i = self.n
            self.n += 1
            self.now += 10_000_000
            sym = SYMBOLS[i % len(SYMBOLS)]
            side = "B" if (i // 4) % 2 else "S"
            px = PX + (i % 7 - 3) * 100
            self.command(CMD_HEARTBEAT, 0, "", "", 0, 0, 0)
            self.command(CMD_MARK, 0, sym, "", PX - 100, PX + 100, 0)
            self.cl += 1
            cl = self.cl
            self.command(CMD_NEW, cl, sym, side, 100, px, 0)
            o = core.orders[cl]
            self.accepted(o.user_ref, side, 100, sym, px, cl)
            kind = i % 4
            if kind == 0:
                self.fill(o.user_ref, 40, px)
                self.fill(o.user_ref, 60, px)
            elif kind == 1:
                self.fill(o.user_ref, 30, px)
                self.command(CMD_CANCEL, cl + 1_000_000, sym, side, 0, 0, cl)
                self.venue(ouch.Canceled(self.now, o.user_ref, 70, ouch.CANCEL_USER))
            elif kind == 2:
                self.cl += 1
                self.command(CMD_REPLACE, self.cl, sym, side, 100, px + 100, cl)
                new = core.orders[self.cl]
                echo = ("0", "Y", 9000 + self.cl, "A", "N", "N", "L", to_b36(self.cl))
                self.venue(
                    ouch.Replaced(
                        self.now, o.user_ref, new.user_ref, side, 100, sym, px + 100, *echo
                    )
                )
                self.fill(new.user_ref, 100, px + 100)
            else:
                self.command(CMD_CANCEL, cl + 1_000_000, sym, side, 0, 0, cl)
                self.venue(ouch.Canceled(self.now, o.user_ref, 100, ouch.CANCEL_USER))
            core.reports.clear()
            core.on_timer(self.now)
            if i % 64 == 0:
                core.latency.fold()
        assert not core.orders and not core.by_ref and not core.sent_orders and not core.sent_log


@pytest.fixture
def quiet() -> Iterator[None]:
    """No log lines (each order logs at info): only the gateway's memory is measured."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_steady_flow_grows_only_the_compact_fill_log(tmp_path: Path, quiet: None) -> None:
    with Journal.open(tmp_path / "gateway.journal", "never") as journal:
        day = Day(journal)
        tracemalloc.start()  # before the warm-up: what exists then is traced as well
        try:
            day.orders(2_000)  # warm-up: every dict, deque and freelist at its working size
            fills0 = day.core.counters["fills"]
            before = traced()
            day.orders(6_000)
            growth = traced() - before
        finally:
            tracemalloc.stop()
        fills = day.core.counters["fills"] - fills0
        assert fills == 6_000 and len(day.core.fill_log) == 8_000
        assert day.core.counters["risk_rejects"] == 0
        # before: ~0.9 MB (~150 bytes a fill: a tuple and two ints); now ~28 bytes a fill
        assert growth <= FILL_LOG_BYTES * fills + 32_768, f"{growth} bytes for {fills} fills"


def test_an_order_replaced_all_day_keeps_no_chain_of_the_orders_it_replaced(
    quiet: None,
) -> None:
    day = Day(None)
    day.command(CMD_HEARTBEAT, 0, "", "", 0, 0, 0)
    day.command(CMD_NEW, 1, "AAPL", "B", 100, PX, 0)
    o = day.core.orders[1]
    day.accepted(o.user_ref, "B", 100, "AAPL", PX, 1)

    def replace(cl: int) -> None:
        day.now += 10_000_000
        old = day.core.orders[cl - 1]
        day.command(CMD_REPLACE, cl, "AAPL", "B", 100, PX + cl % 2 * 100, cl - 1)
        new = day.core.orders[cl]
        echo = ("0", "Y", 9000 + cl, "A", "N", "N", "L", to_b36(cl))
        day.venue(
            ouch.Replaced(day.now, old.user_ref, new.user_ref, "B", 100, "AAPL", new.price, *echo)
        )
        day.core.reports.clear()

    tracemalloc.start()
    try:
        for cl in range(2, 202):
            replace(cl)
        before = traced()
        for cl in range(202, 3202):
            replace(cl)
        growth = traced() - before
    finally:
        tracemalloc.stop()
    assert list(day.core.orders) == [3201] and day.core.orders[3201].state == LIVE
    # before: every replaced order stayed reachable from the live one (~3000 x 250 bytes)
    assert growth <= 16_384, f"{growth} bytes after 3000 replaces"


def test_a_refused_cancel_of_a_replacement_leaves_it_working(quiet: None) -> None:
    """The replacement's link to the order it replaced ends with the replace: a
    cancel the venue refuses later is a refused cancel, not a refused replace."""
    day = Day(None)
    day.command(CMD_HEARTBEAT, 0, "", "", 0, 0, 0)
    day.command(CMD_NEW, 1, "AAPL", "B", 100, PX, 0)
    old = day.core.orders[1]
    day.accepted(old.user_ref, "B", 100, "AAPL", PX, 1)
    day.command(CMD_REPLACE, 2, "AAPL", "B", 150, PX, 1)
    new = day.core.orders[2]
    echo = ("0", "Y", 9002, "A", "N", "N", "L", to_b36(2))
    day.venue(ouch.Replaced(day.now, old.user_ref, new.user_ref, "B", 150, "AAPL", PX, *echo))
    assert day.core.risk.open_qty("AAPL", "B") == 150
    day.command(CMD_CANCEL, 3, "AAPL", "B", 0, 0, 2)
    day.core.reports.clear()
    day.venue(ouch.Rejected(day.now, new.user_ref, ouch.REJECT_UNKNOWN_ORDER, to_b36(2)))
    assert day.core.orders.get(2) is new and day.core.by_ref.get(new.user_ref) is new
    assert day.core.risk.open_qty("AAPL", "B") == 150  # not released as a refused replace
    assert [r.kind for r in day.core.reports] == []


def test_the_fill_log_reads_back_as_the_list_of_tuples_it_replaces() -> None:
    log_, ref = FillLog(), []
    fills = [
        (2**64 - 1, "AAPL", "B", 100, PX),  # OUCH match numbers are u64
        (7, "MSFT", "S", 50, 4_100_000),
        (8, "AAPL", "S", 30, -5),  # prices are i64
        (7, "AAPL", "B", 2**32 - 1, PX),  # a match number seen twice: the latest counts
    ]
    for f in fills:
        log_.append(*f)
        ref.append(f)
    assert [log_[i] for i in range(len(log_))] == ref
    assert log_.find(7) == 3 and log_.find(2**64 - 1) == 0 and log_.find(9) == -1
    log_.correct(1, 40, 4_100_100)
    ref[1] = (7, "MSFT", "S", 40, 4_100_100)
    del log_[0]
    del ref[0]
    assert [log_[i] for i in range(len(log_))] == ref
    assert log_.of_symbol("AAPL") == [(f[2], f[3], f[4]) for f in ref if f[1] == "AAPL"]
    assert log_.of_symbol("MSFT") == [("S", 40, 4_100_100)] and log_.of_symbol("NVDA") == []
