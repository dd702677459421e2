"""The strategy engine fed updates its books cannot apply (issue 11, item 9). Pure.

An execute, cancel, delete or replace of an order the books do not hold, an
order added twice, a side that is neither B nor S, a size of zero or less, a
cancel larger than the order: the engine counts it, asks for a resync through
`lost` (the path a sequence gap takes, `MdSync.lost`), sends no BBO mark from
the wrong book, and never raises. The replay after the reset rebuilds the
books the venue has.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import msgspec
import pytest

from hftd.book.l3 import BookError, L3Book
from hftd.book.sync import APPLY, REBUILD, MdSync
from hftd.config import load_config
from hftd.feed.normalize import normalize
from hftd.msg.hot import (
    CMD_HEARTBEAT,
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_EXECUTE,
    MD_REPLACE,
    MD_RESET,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.replay import replay_file
from hftd.strategy.engine import StrategyEngine
from hftd.wire import itch
from tests.support import DEFAULT_CONFIG, ITCH_FILE, itch_sample

LOCATE = 13  # AAPL in the sample
BASE = 2_000  # the sample's first messages applied before the bad one


def updates(n: int) -> list[MarketDataUpdate]:
    return [normalize(itch.decode(m), seq, seq) for seq, m in enumerate(itch_sample()[:n], 1)]


class Rig:
    """A StrategyEngine wired to an MdSync as the daemon wires them."""

    def __init__(self) -> None:
        cfg = load_config(DEFAULT_CONFIG)
        cfg = msgspec.structs.replace(
            cfg, strategy=msgspec.structs.replace(cfg.strategy, instances=[])
        )
        self.now = 0.0
        self.sync = MdSync(lambda: self.now)
        self.sent: list[OrderCommand] = []
        self.losses: list[tuple[str, int]] = []
        clock = itertools.count(10**9, 10**9)  # a second a call: every timer is due

        def lost(why: str, seq: int) -> None:
            self.losses.append((why, seq))
            self.sync.lost(why, seq)

        def send(c: OrderCommand) -> bool:
            self.sent.append(c)
            return True

        self.engine = StrategyEngine(cfg, send, lambda: next(clock), lost=lost)

    def feed(self, u: MarketDataUpdate) -> None:
        """StrategyAgent._on_update, less the logging."""
        act = self.sync.on_update(u)
        if act == APPLY:
            self.engine.on_update(u)
        elif act == REBUILD:
            self.engine.builder.reset()

    def timer(self) -> list[OrderCommand]:
        """StrategyAgent's timer: the commands it sent."""
        self.sent.clear()
        self.engine.in_sync = self.sync.synced
        self.engine.on_timer()
        return list(self.sent)

    @property
    def book(self) -> L3Book:
        return self.engine.builder.books["AAPL"]


def snapshot(book: L3Book) -> tuple[object, ...]:
    return dict(book.orders), book.depth("B"), book.depth("S")


def live_order(book: L3Book) -> tuple[int, tuple[str, int, int]]:
    return next(iter(book.orders.items()))


Bad = Callable[[L3Book, int], MarketDataUpdate]


def _u(
    seq: int,
    kind: int,
    ref: int,
    side: str = "",
    qty: int = 0,
    price: int = 0,
    new_ref: int = 0,
    symbol: str = "",
) -> MarketDataUpdate:
    return MarketDataUpdate(seq, kind, LOCATE, symbol, ref, side, qty, price, new_ref, 0, seq)


BAD: dict[str, tuple[Bad, str]] = {
    "execute of an unknown order": (
        lambda b, s: _u(s, MD_EXECUTE, 999_999_999, qty=100, new_ref=1),
        "unknown order",
    ),
    "cancel of an unknown order": (
        lambda b, s: _u(s, MD_CANCEL, 999_999_999, qty=100),
        "unknown order",
    ),
    "delete of an unknown order": (lambda b, s: _u(s, MD_DELETE, 999_999_999), "unknown order"),
    "replace of an unknown order": (
        lambda b, s: _u(s, MD_REPLACE, 999_999_999, qty=100, price=3_200_000, new_ref=888_888_888),
        "unknown order",
    ),
    "execution larger than the order": (
        lambda b, s: _u(s, MD_EXECUTE, live_order(b)[0], qty=live_order(b)[1][2] + 1),
        "reduced by",
    ),
    "cancel of a negative size": (
        lambda b, s: _u(s, MD_CANCEL, live_order(b)[0], qty=-5),
        "reduced by -5",
    ),
    "order added twice": (
        lambda b, s: _u(s, MD_ADD, live_order(b)[0], "B", 100, 3_200_000, symbol="AAPL"),
        "added twice",
    ),
    "order of zero shares": (
        lambda b, s: _u(s, MD_ADD, 777_777_777, "B", 0, 3_200_000, symbol="AAPL"),
        "0 shares",
    ),
    "order on neither side": (
        lambda b, s: _u(s, MD_ADD, 777_777_777, "\xd3", 100, 3_200_000, symbol="AAPL"),
        "side",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_an_inconsistent_update_is_counted_and_resyncs(case: str) -> None:
    make, reason = BAD[case]
    rig = Rig()
    for u in updates(BASE):
        rig.feed(u)
    assert rig.sync.synced and rig.engine.book_errors == 0
    assert [(c.kind, c.qty) for c in rig.timer()] == [(CMD_HEARTBEAT, 1)]  # in sync
    before = snapshot(rig.book)

    rig.feed(make(rig.book, BASE + 1))  # never raises

    e = rig.engine
    assert e.book_errors == 1 and not e.in_sync
    assert len(rig.losses) == 1 and rig.losses[0][1] == BASE + 1
    assert e.last_book_error == rig.losses[0][0]
    assert f"sequence {BASE + 1}" in e.last_book_error and reason in e.last_book_error
    assert snapshot(rig.book) == before  # rejected whole, not half applied
    # The resync the daemon asks the feed for, the path a gap takes.
    assert not rig.sync.synced and rig.sync.take_resync()
    assert rig.sync.counters["resyncs"] == 1
    # Out of sync: heartbeats say so (and no marks at all: the gateway has its own view).
    assert [(c.kind, c.qty) for c in rig.timer()] == [(CMD_HEARTBEAT, 0)]


def test_the_replay_after_the_reset_rebuilds_the_venues_book() -> None:
    rig = Rig()
    good = updates(4_000)
    for u in good[:BASE]:
        rig.feed(u)
    rig.feed(BAD["execute of an unknown order"][0](rig.book, BASE + 1))
    for u in good[BASE + 1 :]:  # what follows the hole is skipped, not applied
        rig.feed(u)
    assert rig.sync.counters["skipped"] == len(good) - BASE - 1
    assert rig.sync.take_resync()
    # The feed resyncs: MD_RESET, then the stream from sequence 1 (now without the bad one).
    rig.feed(MarketDataUpdate(0, MD_RESET, 0, "", 0, "", 0, 0, 0, 0, 0))
    for u in good:
        rig.feed(u)
    want, _ = replay_file(ITCH_FILE, ["AAPL"], upto=len(good))
    assert snapshot(rig.book) == snapshot(want.books["AAPL"])
    assert rig.sync.synced and rig.sync.last_seq == len(good) and not rig.sync.looping
    assert rig.engine.book_errors == 1  # counted once, not again on the good replay
    assert [(c.kind, c.qty) for c in rig.timer()] == [(CMD_HEARTBEAT, 1)]  # in sync again


def test_a_negative_size_never_grows_an_order() -> None:
    """It used to: `shares > open` let -5 through, and the order and its level grew."""
    book = L3Book("AAPL")
    book.add(1, "B", 1_000_000, 100)
    with pytest.raises(BookError):
        book.reduce(1, -5)
    with pytest.raises(BookError):
        book.reduce(1, 0)
    assert book.orders[1] == ("B", 1_000_000, 100) and book.depth("B") == [(1_000_000, 100)]


def test_without_a_resync_path_the_error_is_still_counted() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    eng = StrategyEngine(cfg, lambda c: True, itertools.count().__next__)
    eng.on_update(_u(1, MD_ADD, 41, "B", 100, 3_200_000, symbol="AAPL"))
    eng.on_update(_u(2, MD_DELETE, 42))
    assert eng.book_errors == 1 and "unknown order 42" in eng.last_book_error
