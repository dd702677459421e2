"""The exchange does not grow with the day: what it must keep for the whole day (the
sequenced streams, every user's fills) is in the day's files, not in its heap."""

from __future__ import annotations

import gc
import random
import tracemalloc
from pathlib import Path

from hftd.exchange.journal import JournaledVenue, open_venue
from hftd.wire import ouch
from tests.unit.test_exchange_recovery import FakeClock, config


class SteadyTrader:
    """Flow on every symbol and a user trading against it, whose state stays bounded:
    IOC orders through the touch (fills or cancels at once), day orders at the touch
    cancelled a few inputs later."""

    def __init__(self, jv: JournaledVenue, seed: int) -> None:
        self.jv = jv
        self.rng = random.Random(seed)
        self.ref = 0
        self.resting: list[int] = []
        self.symbols = [s.symbol for s in jv.cfg.symbols]

    def step(self) -> None:
        jv, rng = self.jv, self.rng
        if rng.random() < 0.7:
            i = rng.randrange(len(self.symbols))
            jv.next_flow_delay(i)
            jv.flow_step(i)
            return
        if self.resting and (len(self.resting) > 20 or rng.random() < 0.3):
            ref = self.resting.pop(0)
            jv.handle("HFTD", ouch.encode_inbound(ouch.CancelOrder(ref, 0)))
            return
        symbol = rng.choice(self.symbols)
        book = jv.venue.engine.books[symbol]
        side = rng.choice("BS")
        ioc = rng.random() < 0.5
        touch = (
            (book.best_ask() if side == "B" else book.best_bid())
            if ioc
            else (book.best_bid() if side == "B" else book.best_ask())
        )
        if touch is None:
            return
        self.ref += 1
        tif = ouch.TIF_IOC if ioc else ouch.TIF_DAY
        order = ouch.EnterOrder(
            self.ref, side, 100 * rng.randint(1, 3), symbol, touch, tif, cl_ord_id=f"m{self.ref}"
        )
        jv.handle("HFTD", ouch.encode_inbound(order))
        if not ioc:
            self.resting.append(self.ref)


def test_a_journaled_venue_keeps_the_heap_flat(tmp_path: Path) -> None:
    """At the exchange's raised flow its memory grew 30 -> 48 MB in 20 minutes, steadily:
    each ITCH and OUCH message stayed in memory for re-logins (~45 bytes each), each fill
    for snapshots (~200): 60,000 inputs here (~50,000 ITCH messages, ~12,000 fills) grew
    the heap by 8.6 MB. Now they leave it where it was, but for the streams' tails."""
    jv, _ = open_venue(config(tmp_path), FakeClock(1))
    jv.start_of_day()
    trader = SteadyTrader(jv, 2)
    for _ in range(20_000):  # books, resting lists and tails at their working size
        trader.step()
    gc.collect()
    tracemalloc.start()
    try:
        md0, fills0 = len(jv.venue.md), len(jv.venue.snapshot("HFTD").fills)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(60_000):
            trader.step()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    published = len(jv.venue.md) - md0
    fills = len(jv.venue.snapshot("HFTD").fills) - fills0
    assert published > 45_000 and fills > 5_000, (published, fills)
    # 5 streams' tails (at most 64 KiB of packets each, and their offsets), and slack.
    assert grown < 1_000_000, f"heap grew {grown} bytes for {published} ITCH messages"
    assert jv.journal is not None
    jv.journal.close()
