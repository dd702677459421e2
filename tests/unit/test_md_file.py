"""A recorded ITCH day as the venue's background flow (`exchange.md_file`): pacing,
the books it builds, our orders trading against it, and the journal replaying it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.book.l3 import BookBuilder
from hftd.config import HftdConfig, load_config
from hftd.exchange.journal import JournaledVenue, JournalMismatch, open_venue
from hftd.exchange.mdfile import MdFile, MdFileError
from hftd.exchange.venue import Venue
from hftd.feed.normalize import normalize
from hftd.replay import replay_file
from hftd.wire import itch, ouch
from tests.support import DEFAULT_CONFIG, ITCH_FILE

AAPL_FILE_LOCATE = 13


def config(tmp: Path | None = None, symbols: tuple[str, ...] = ("AAPL",), **ex: Any) -> HftdConfig:
    cfg = load_config(DEFAULT_CONFIG)
    cfg = msgspec.structs.replace(
        cfg,
        symbols=[
            msgspec.structs.replace(cfg.symbol(s) if s != "AAPL" else cfg.symbols[0],
                                    reference_price="320.00" if s == "AAPL" else
                                    cfg.symbol(s).reference_price)
            for s in symbols
        ],
        strategy=msgspec.structs.replace(cfg.strategy, instances=[]),
        exchange=msgspec.structs.replace(cfg.exchange, **ex),
    )  # fmt: skip
    if tmp is not None:
        cfg = msgspec.structs.replace(
            cfg,
            system=msgspec.structs.replace(
                cfg.system, run_dir=str(tmp), journal_dir=str(tmp / "journal")
            ),
        )
    return cfg


def venue(cfg: HftdConfig, md: MdFile) -> Venue:
    ticks = itertools.count(40_000_000_000_000)
    v = Venue(cfg, lambda: next(ticks))
    v.start_of_day()
    v.attach_file(md.max_order_ref, md.max_match_number)
    return v


def stream_books(v: Venue, symbols: list[str]) -> BookBuilder:
    """What a client of the venue's ITCH stream builds (raises BookError if inconsistent)."""
    b = BookBuilder(symbols)
    for seq, raw in enumerate(v.md.range(1, v.md.next_sequence), start=1):
        b.apply_update(normalize(itch.decode(raw), seq, 0))
    return b


def engine_view(v: Venue, symbol: str) -> tuple[Any, ...]:
    book = v.engine.books[symbol]
    orders = {o.order_ref: (o.side, o.price, o.open_qty) for o in book.orders()}
    return book.depth("B"), book.depth("S"), orders


def builder_view(b: BookBuilder, symbol: str) -> tuple[Any, ...]:
    book = b.books[symbol]
    return book.depth("B"), book.depth("S"), dict(book.orders)


SAMPLE = MdFile.parse(ITCH_FILE.read_bytes())


# --- the file and its pace ------------------------------------------------------------


def test_the_sample_parses_with_the_numbers_it_uses() -> None:
    assert len(SAMPLE) == 10_000
    assert SAMPLE.times_ns[0] == 0 and SAMPLE.times_ns == sorted(SAMPLE.times_ns)
    assert SAMPLE.max_order_ref == 4_082_229  # the largest A/F/U reference
    assert SAMPLE.max_match_number == 43_284
    assert len(SAMPLE.digest) == 64


def test_pace_follows_the_recorded_timestamps() -> None:
    msgs = [
        itch.encode(itch.OrderDelete(1, 0, ts, 1))
        for ts in (5_000, 5_000, 1_005_000, 900_000, 3_005_000)
    ]
    md = MdFile.parse(itch.frame_binary_file(msgs))
    assert md.times_ns == [0, 0, 1_000_000, 1_000_000, 3_000_000]  # never backwards
    assert md.due(0, 0.0, 1.0) == 2
    assert md.due(2, 0.0009, 1.0) == 0 and md.wait_s(2, 0.0009, 1.0) == pytest.approx(0.0001)
    assert md.due(2, 0.001, 1.0) == 2
    assert md.due(4, 0.0015, 2.0) == 1  # twice as fast
    assert md.due(0, 0.0, 0.0) == 5 and md.wait_s(0, 0.0, 0.0) == 0.0  # speed 0: at once
    assert md.elapsed_at(4, 1.0) == pytest.approx(0.003)


@pytest.mark.parametrize("data", [b"", b"\x00\x05AB", b"\x00\x03S\x00\x00"])
def test_not_a_binary_file_is_refused(data: bytes) -> None:
    with pytest.raises(MdFileError):
        MdFile.parse(data)


# --- played into the venue --------------------------------------------------------------


def test_the_venue_playing_the_sample_builds_what_hftd_replay_builds() -> None:
    cfg = config()
    v = venue(cfg, SAMPLE)
    start = len(v.md)
    for raw in SAMPLE.messages:
        v.play_file_message(raw)
    fc = v.file_counters
    assert fc["messages"] == fc["published"] == 10_000
    assert fc["skipped"] == fc["clipped"] == fc["traded"] == fc["unreadable"] == 0
    assert v.counters["fills"] == 0  # the file never crosses itself
    replayed, _ = replay_file(ITCH_FILE, ["AAPL"])
    assert engine_view(v, "AAPL") == builder_view(replayed, "AAPL")
    assert builder_view(stream_books(v, ["AAPL"]), "AAPL") == builder_view(replayed, "AAPL")
    # Every message is in the venue's stream, renumbered, every type included (L, Y).
    played = [itch.decode(m) for m in v.md.range(start + 1, v.md.next_sequence)]
    assert len(played) == 10_000
    kinds: dict[str, int] = {}
    for m in played:
        kinds[itch.TYPE_OF[type(m)]] = kinds.get(itch.TYPE_OF[type(m)], 0) + 1
        assert m.stock_locate == v.locate["AAPL"]
    assert kinds["L"] == 52 and kinds["Y"] == 1 and kinds["A"] == 4758
    original = [itch.decode(m) for m in SAMPLE.messages]
    assert [msgspec.structs.replace(m, stock_locate=13, timestamp=0) for m in played] == [
        msgspec.structs.replace(m, timestamp=0) for m in original
    ]


def test_symbols_the_venue_does_not_list_are_left_out() -> None:
    v = venue(config(symbols=("MSFT",)), SAMPLE)
    n = len(v.md)
    for raw in SAMPLE.messages[:500]:
        v.play_file_message(raw)
    assert v.file_counters["other_symbols"] == 500 and len(v.md) == n


def add(ref: int, side: str, shares: int, price: int, ts: int = 1) -> bytes:
    return itch.encode(itch.AddOrder(AAPL_FILE_LOCATE, 0, ts, ref, side, shares, "AAPL", price))


def test_our_trades_take_the_files_liquidity_and_later_messages_are_clipped() -> None:
    """What happens when our orders take liquidity later file messages refer to."""
    file_msgs = [
        add(5, "S", 100, 3_200_000),  # 1: an ask we will take 60 of
        itch.encode(itch.OrderExecuted(AAPL_FILE_LOCATE, 0, 2, 5, 100, 700)),  # 2: clipped
        itch.encode(itch.OrderDelete(AAPL_FILE_LOCATE, 0, 3, 5)),  # 3: gone: dropped
        add(7, "S", 150, 3_199_400),  # 4: crosses our resting bid at 320.00
        itch.encode(itch.OrderCancel(AAPL_FILE_LOCATE, 0, 5, 7, 120)),  # 5: takes the rest: D
        add(8, "B", 100, 3_198_000),  # 6
        itch.encode(itch.OrderReplace(AAPL_FILE_LOCATE, 0, 7, 8, 9, 100, 3_199_000)),  # 7: crosses
        itch.encode(itch.OrderReplace(AAPL_FILE_LOCATE, 0, 8, 7, 10, 10, 3_100_000)),  # 8: gone
    ]
    md = MdFile.parse(itch.frame_binary_file(file_msgs))
    v = venue(config(), md)
    play = iter(md.messages)
    v.play_file_message(next(play))
    v.handle("HFTD", ouch.EnterOrder(1, "B", 60, "AAPL", 3_200_000, ouch.TIF_IOC))
    v.play_file_message(next(play))  # E 100 -> E 40
    v.play_file_message(next(play))  # D of an order we finished: dropped
    v.handle("HFTD", ouch.EnterOrder(2, "B", 100, "AAPL", 3_200_000))  # rests (no ask left)
    v.play_file_message(next(play))  # A sell 150 @ 319.94 crosses: we buy 100 @ 320.00
    v.play_file_message(next(play))  # X 120 of the 50 left: D
    v.handle("HFTD", ouch.EnterOrder(3, "S", 100, "AAPL", 3_198_500))  # rests above 319.80
    v.play_file_message(next(play))  # A buy 100 @ 319.80
    v.play_file_message(next(play))  # U 8 -> 9 @ 319.90 crosses our ask: D 8, E ours
    v.play_file_message(next(play))  # U of 8, which is gone: dropped
    fc = v.file_counters
    assert (fc["clipped"], fc["traded"], fc["skipped"]) == (2, 2, 2)
    fills = v.snapshot("HFTD").fills
    assert [(f.user_ref, f.side, f.quantity, f.price, f.liquidity) for f in fills] == [
        (1, "B", 60, 3_200_000, "R"),
        (2, "B", 100, 3_200_000, "A"),
        (3, "S", 100, 3_198_500, "A"),
    ]
    assert all(f.match_number > md.max_match_number for f in fills)
    assert all(f.order_ref > 9 for f in fills)  # ours numbered above the file's
    tail = [itch.decode(m) for m in v.md.range(v.md.next_sequence - 11, v.md.next_sequence)]
    assert [itch.TYPE_OF[type(m)] for m in tail] == [
        *("A", "E", "E"),  # the ask; our IOC took 60; the file's E of 100 clipped to 40
        *("A", "E", "A", "D"),  # our bid; the file's crossing ask filled it, 50 rest; X -> D
        *("A", "A", "D", "E"),  # our ask; the file's bid; its crossing replace: D, our fill
    ]
    executed = [m.executed_shares for m in tail if isinstance(m, itch.OrderExecuted)]
    assert executed == [60, 40, 100, 100]
    rest = tail[5]
    assert isinstance(rest, itch.AddOrder) and (rest.order_ref, rest.shares) == (7, 50)
    # The stream stays consistent for every client: it rebuilds the venue's books.
    b = stream_books(v, ["AAPL"])
    assert builder_view(b, "AAPL") == engine_view(v, "AAPL")
    assert engine_view(v, "AAPL")[2] == {}  # our U-crossed sell took all of ref 9


# --- journaled ------------------------------------------------------------------------


def test_a_played_file_is_journaled_and_replayed(tmp_path: Path) -> None:
    cfg = config(tmp_path, md_file=str(ITCH_FILE))
    clock = itertools.count(40_000_000_000_000, 1000).__next__
    jv, _ = open_venue(cfg, clock)
    assert jv.md_file is not None and len(jv.md_file) == 10_000
    jv.start_of_day()
    jv.file_step(2000)
    jv.handle("HFTD", ouch.encode_inbound(ouch.EnterOrder(1, "B", 100, "AAPL", 3_300_000, "3")))
    jv.file_step(1000)
    assert jv.venue.counters["fills"] >= 1 and jv.file_pos == 3000
    assert jv.journal is not None
    jv.journal.close()
    again, rec = open_venue(cfg, clock)
    assert rec.records == 5 and again.file_pos == 3000
    for attr in ("md",):
        a, b = getattr(jv.venue, attr), getattr(again.venue, attr)
        assert list(a.range(1, a.next_sequence)) == list(b.range(1, b.next_sequence))
    assert again.venue.snapshot("HFTD") == jv.venue.snapshot("HFTD")
    assert again.venue.file_counters == jv.venue.file_counters
    assert again.journal is not None
    again.journal.close()
    # Another file (or none) is another venue: refused, the journal kept.
    other = tmp_path / "other.bin"
    other.write_bytes(itch.frame_binary_file(SAMPLE.messages[:10]))
    with pytest.raises(JournalMismatch, match="md_file"):
        open_venue(config(tmp_path, md_file=str(other)), clock)
    with pytest.raises(JournalMismatch, match="md_file"):
        open_venue(config(tmp_path), clock)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MdFileError, match="cannot read"):
        open_venue(config(tmp_path, md_file=str(tmp_path / "nope.bin")), lambda: 1)


def test_without_a_file_nothing_changes() -> None:
    jv = JournaledVenue(config(), lambda: 1)
    assert jv.md_file is None and jv.venue.engine.next_order_ref == 1
