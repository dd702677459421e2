"""Book reconstruction on real NASDAQ data against an independent reference.

The reference is a plain dict book fed by the independent `itchfeed` parser;
hftd's book is fed by hftd's codec and normalizer. After every message the two
must agree on every order, every price level and the BBO.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from hftd.book.l3 import BookBuilder
from hftd.feed.normalize import normalize
from hftd.wire import itch
from tests.support import ITCH_FILE

parser_mod = pytest.importorskip("itch.parser")


class ReferenceBook:
    """The simplest correct book: ref -> [side, price, shares]; levels derived on demand."""

    def __init__(self) -> None:
        self.orders: dict[int, list[Any]] = {}

    def apply(self, m: Any) -> None:
        t = m.message_type
        if t in (b"A", b"F"):
            self.orders[m.order_reference_number] = [
                m.buy_sell_indicator.decode(),
                m.price,
                m.shares,
            ]
        elif t in (b"E", b"C"):
            o = self.orders[m.order_reference_number]
            o[2] -= m.executed_shares
            if o[2] == 0:
                del self.orders[m.order_reference_number]
        elif t == b"X":
            o = self.orders[m.order_reference_number]
            o[2] -= m.cancelled_shares
            if o[2] == 0:
                del self.orders[m.order_reference_number]
        elif t == b"D":
            del self.orders[m.order_reference_number]
        elif t == b"U":
            side = self.orders.pop(m.order_reference_number)[0]
            self.orders[m.new_order_reference_number] = [side, m.price, m.shares]

    def levels(self, side: str) -> list[tuple[int, int]]:
        agg: dict[int, int] = {}
        for s, p, q in self.orders.values():
            if s == side:
                agg[p] = agg.get(p, 0) + q
        return sorted(agg.items(), reverse=(side == "B"))


def test_aapl_book_matches_reference_after_every_message() -> None:
    parser = parser_mod.MessageParser()
    with open(ITCH_FILE, "rb") as f:
        theirs = list(parser.parse_file(f))
    ours = [bytes(m) for m in itch.iter_binary_file(ITCH_FILE.read_bytes())]
    ref = ReferenceBook()
    builder = BookBuilder()
    checked = 0
    for seq, (raw, m) in enumerate(zip(ours, theirs, strict=True), start=1):
        ref.apply(m)
        u = normalize(itch.decode(raw), seq, 0)
        if u is not None:
            builder.apply_update(u)
        book = builder.books.get("AAPL")
        if book is None:
            assert not ref.orders
            continue
        assert {k: tuple(v) for k, v in ref.orders.items()} == book.orders, f"after message {seq}"
        bids, asks = ref.levels("B"), ref.levels("S")
        assert book.depth("B") == bids and book.depth("S") == asks, f"after message {seq}"
        assert book.best_bid() == (bids[0] if bids else None)
        assert book.best_ask() == (asks[0] if asks else None)
        checked += 1
    assert checked > 9_000
    assert len(builder.books["AAPL"].orders) == len(ref.orders) > 100


def test_hftd_replay_prints_the_final_bbo() -> None:
    ref = ReferenceBook()
    with open(ITCH_FILE, "rb") as f:
        for m in parser_mod.MessageParser().parse_file(f):
            ref.apply(m)
    bid, ask = ref.levels("B")[0], ref.levels("S")[0]
    out = subprocess.run(
        [sys.executable, "-m", "hftd.cli", "replay", str(ITCH_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    print(out)
    want = (
        f"AAPL: BBO bid {bid[1]} @ {bid[0] / 10_000:.4f} | "
        f"ask {ask[1]} @ {ask[0] / 10_000:.4f}  ({len(ref.orders)} orders)"
    )
    assert want in out
    assert "10000 ITCH messages replayed" in out
