"""ItchFile / count_skip / open_source (issue 15, item 1): a NASDAQ ITCH 5.0
BinaryFILE streamed as the live feed's own updates.

The reference is the real NASDAQ sample (committed under tests/data) and
`hftd replay`'s whole-file reading of it: the same updates, the same books,
whether the file is plain or gzip, read in 1 MiB chunks or 7 bytes at a time.
A symbol filter keeps one symbol's locate (learned from its directory message)
and the system events, renumbered without gaps; broken framing and a damaged
gzip stream are SourceErrors naming the message and the byte; memory stays
flat on a file many times the chunk size.
"""

from __future__ import annotations

import gzip
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from hftd.backtest.detect import looks_like_itch, open_source
from hftd.backtest.itch_file import ItchFile, count_skip
from hftd.backtest.source import MarketDataSource, SourceError
from hftd.book.l3 import BookBuilder
from hftd.feed.normalize import Normalizer
from hftd.msg.hot import (
    MD_ADD,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_SEQUENCE,
    MD_SYSTEM,
    MarketDataUpdate,
)
from hftd.replay import replay_file
from hftd.wire import itch

SAMPLE = (
    Path(__file__).resolve().parent.parent
    / "data"
    / "itch"
    / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
)
SAMPLE_BYTES = SAMPLE.read_bytes()
OFFSETS: list[int] = []  # byte offset of each sample record's length field
_pos = 0
while _pos < len(SAMPLE_BYTES):
    OFFSETS.append(_pos)
    _pos += 2 + int.from_bytes(SAMPLE_BYTES[_pos : _pos + 2], "big")


def books(updates: list[MarketDataUpdate]) -> BookBuilder:
    builder = BookBuilder()
    for u in updates:
        builder.apply_update(u)
    return builder


def same_books(a: BookBuilder, b: BookBuilder) -> None:
    assert sorted(a.books) == sorted(b.books)
    for sym, book in a.books.items():
        other = b.books[sym]
        assert book.orders == other.orders, sym
        assert book.depth("B") == other.depth("B"), sym
        assert book.depth("S") == other.depth("S"), sym


def reference(data: bytes) -> list[MarketDataUpdate]:
    """Every record of in-memory BinaryFILE content, normalized the obvious way."""
    norm = Normalizer()
    out = []
    for seq, m in enumerate(itch.iter_binary_file(data), start=1):
        ts = int.from_bytes(m[5:11], "big")
        u = norm.update(bytes(m), seq, ts)
        if u.kind == MD_SEQUENCE:
            u = MarketDataUpdate(seq, MD_SEQUENCE, 0, "", 0, u.side, 0, 0, 0, ts, ts)
        out.append(u)
    return out


def write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


# --- the real sample ---------------------------------------------------------------


def test_sample_gives_replays_updates_and_books() -> None:
    ups = list(ItchFile(SAMPLE))
    assert len(ups) == 10_000
    assert [u.seq for u in ups] == list(range(1, 10_001))
    assert all(u.t1 == u.exch_ts > 0 for u in ups)
    assert ups[0].kind == MD_DIRECTORY and ups[0].symbol == "AAPL" and ups[0].locate == 13
    assert ups == reference(SAMPLE_BYTES)
    replayed, count = replay_file(SAMPLE)
    assert count == len(ups)
    same_books(books(ups), replayed)
    assert replayed.books["AAPL"].orders  # a real book, not two empty ones


def test_iterating_again_restarts_from_the_beginning() -> None:
    src = ItchFile(SAMPLE)
    first = list(src)
    assert list(src) == first


def test_gzip_by_content_not_name(tmp_path: Path) -> None:
    gz = write(tmp_path, "day.bin", gzip.compress(SAMPLE_BYTES))  # no .gz suffix
    assert list(ItchFile(gz)) == list(ItchFile(SAMPLE))
    assert list(ItchFile(gz, chunk_size=7)) == list(ItchFile(SAMPLE))
    assert count_skip(gz, ["AAPL"]) == (10_000, 10_000)


def test_filter_on_aapl_keeps_everything() -> None:
    assert list(ItchFile(SAMPLE, ["AAPL"])) == list(ItchFile(SAMPLE))
    assert list(ItchFile(SAMPLE, ["MSFT", "AAPL"])) == list(ItchFile(SAMPLE))
    assert count_skip(SAMPLE, ["AAPL"]) == (10_000, 10_000)
    assert count_skip(SAMPLE) == (10_000, 10_000)


def test_filter_on_a_symbol_not_in_the_file_keeps_only_system_events(tmp_path: Path) -> None:
    # The sample has no locate-0 message: nothing at all.
    assert list(ItchFile(SAMPLE, ["MSFT"])) == []
    assert count_skip(SAMPLE, ["MSFT"]) == (10_000, 0)
    # With system events around it: exactly those, renumbered.
    s_start = itch.encode(itch.SystemEvent(0, 0, 1_000, "O"))
    s_end = itch.encode(itch.SystemEvent(0, 0, 99_000_000_000_000, "C"))
    data = itch.frame_binary_file([s_start]) + SAMPLE_BYTES + itch.frame_binary_file([s_end])
    p = write(tmp_path, "with_s.bin", data)
    ups = list(ItchFile(p, ["MSFT"]))
    assert [(u.seq, u.kind, u.locate, u.side) for u in ups] == [
        (1, MD_SYSTEM, 0, "O"),
        (2, MD_SYSTEM, 0, "C"),
    ]
    assert ups[1].exch_ts == ups[1].t1 == 99_000_000_000_000
    assert count_skip(p, ["MSFT"]) == (10_002, 2)


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65_539, 65_600, 200_000])
def test_records_straddling_chunks(chunk: int) -> None:
    # 65,537 bytes is the longest record: chunks around it exercise both loops.
    assert list(ItchFile(SAMPLE, chunk_size=chunk)) == list(ItchFile(SAMPLE))
    assert list(ItchFile(SAMPLE, ["AAPL"], chunk_size=chunk)) == list(ItchFile(SAMPLE))
    assert count_skip(SAMPLE, ["ZZZ"], chunk_size=chunk) == (10_000, 0)


# --- a hand-built day of two symbols -------------------------------------------------


def directory(locate: int, symbol: str, ts: int) -> bytes:
    return itch.encode(
        itch.StockDirectory(
            locate, 0, ts, symbol, "Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N"
        )
    )


def two_symbol_day() -> list[bytes]:
    E = itch.encode
    return [
        E(itch.SystemEvent(0, 0, 10, "O")),
        E(itch.AddOrder(9, 0, 15, 77, "B", 100, "AAPL", 1_000_000)),  # before its directory
        directory(5, "MSFT", 20),
        directory(9, "AAPL", 30),
        E(itch.AddOrder(5, 0, 40, 1, "B", 100, "MSFT", 1_500_000)),
        E(itch.AddOrder(9, 0, 50, 2, "S", 200, "AAPL", 3_000_000)),
        E(itch.RegShoRestriction(9, 0, 60, "AAPL", "0")),
        E(itch.OrderExecuted(5, 0, 70, 1, 50, 1)),
        b"z\x00\x09\x00\x00\x00\x00\x00\x00\x00\x50unknown type",  # not ITCH 5.0, locate 9
        E(itch.OrderExecuted(9, 0, 90, 2, 50, 2)),
        b"",  # no locate at all: malformed
        E(itch.OrderDelete(5, 0, 100, 1)),
        E(itch.OrderDelete(9, 0, 110, 2)),
        E(itch.SystemEvent(0, 0, 120, "C")),
    ]


def test_filter_keeps_the_wanted_locate_gap_free_directory_first(tmp_path: Path) -> None:
    p = write(tmp_path, "two.bin", itch.frame_binary_file(two_symbol_day()))
    ups = list(ItchFile(p, ["AAPL"]))
    got = [(u.seq, u.kind, u.locate, u.exch_ts) for u in ups]
    assert got == [
        (1, MD_SYSTEM, 0, 10),
        (2, MD_DIRECTORY, 9, 30),
        (3, MD_ADD, 9, 50),
        (4, MD_SEQUENCE, 0, 60),  # Y: sequence only, but its own time
        (5, MD_SEQUENCE, 0, 80),  # the unknown type: kept, not an error
        (6, MD_EXECUTE, 9, 90),
        (7, MD_DELETE, 9, 110),
        (8, MD_SYSTEM, 0, 120),
    ]
    assert all(u.t1 == u.exch_ts for u in ups)
    assert ups[4].side == "z"
    assert count_skip(p, ["AAPL"]) == (14, 8)
    assert count_skip(p, ["MSFT"]) == (14, 6)
    assert count_skip(p, ["MSFT", "AAPL"]) == (14, 12)  # not: the A before its R, the ""

    everything = list(ItchFile(p))
    assert len(everything) == 14 and [u.seq for u in everything] == list(range(1, 15))
    assert everything[10].kind == MD_SEQUENCE  # the empty message: kept without a filter
    assert everything[10].exch_ts == 90  # (the last time seen)
    assert count_skip(p) == (14, 14)
    # Whatever the chunking.
    for chunk in (1, 3, 50):
        assert list(ItchFile(p, ["AAPL"], chunk_size=chunk)) == ups
        assert list(ItchFile(p, chunk_size=chunk)) == everything


def test_a_symbol_no_itch_file_can_have_matches_nothing() -> None:
    assert count_skip(SAMPLE, ["ETH-PERPETUAL"]) == (10_000, 0)
    assert count_skip(SAMPLE, ["ETH-PERPETUAL", "AAPL"]) == (10_000, 10_000)
    assert count_skip(SAMPLE, []) == (10_000, 10_000)  # empty: no filter (as BookBuilder)


# --- errors ------------------------------------------------------------------------


def error_of(src: MarketDataSource) -> SourceError:
    with pytest.raises(SourceError) as info:
        for _ in src:
            pass
    return info.value


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_truncated_file_names_message_and_offset(tmp_path: Path, chunk: int) -> None:
    p = write(tmp_path, "cut.bin", SAMPLE_BYTES[:-5])
    err = error_of(ItchFile(p, chunk_size=chunk))
    last = OFFSETS[-1]
    n = int.from_bytes(SAMPLE_BYTES[last : last + 2], "big")
    assert err.where == f"message 10000 at byte {last}"
    assert err.reason == f"length {n} runs past the end ({n - 5} bytes left)"
    assert str(p) in str(err)
    # The same with a filter that skips everything, and in count_skip.
    assert error_of(ItchFile(p, ["MSFT"], chunk_size=chunk)).where == err.where
    with pytest.raises(SourceError, match="message 10000 at byte"):
        count_skip(p, ["MSFT"], chunk_size=chunk)


def test_length_field_cut_short(tmp_path: Path) -> None:
    p = write(tmp_path, "odd.bin", SAMPLE_BYTES + b"\x00")
    err = error_of(ItchFile(p, chunk_size=7))
    assert err.where == f"message 10001 at byte {len(SAMPLE_BYTES)}"
    assert "length field cut short" in err.reason


def test_bad_length_runs_past_the_end(tmp_path: Path) -> None:
    data = bytearray(SAMPLE_BYTES[: OFFSETS[100]])  # 100 records, ~3 KB
    third = OFFSETS[2]
    data[third : third + 2] = b"\xff\xff"  # swallows the rest of the file
    p = write(tmp_path, "bad.bin", bytes(data))
    err = error_of(ItchFile(p))
    assert err.where == f"message 3 at byte {third}"
    assert err.reason == f"length 65535 runs past the end ({len(data) - third - 2} bytes left)"


def test_damaged_gzip_is_a_source_error(tmp_path: Path) -> None:
    gz = gzip.compress(SAMPLE_BYTES)
    cut = write(tmp_path, "cut.gz", gz[: len(gz) // 2])
    err = error_of(ItchFile(cut))
    assert "damaged gzip stream" in err.reason and "EOFError" in err.reason
    assert err.where.startswith("message ")
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    bad = write(tmp_path, "bad.gz", bytes(flipped))
    err = error_of(ItchFile(bad))
    assert "damaged gzip stream" in err.reason
    with pytest.raises(SourceError, match="damaged gzip"):
        count_skip(bad, ["AAPL"])


# --- open_source -------------------------------------------------------------------


def test_open_source_recognizes_itch_plain_and_gzip(tmp_path: Path) -> None:
    src = open_source(SAMPLE, ["AAPL"])
    assert isinstance(src, ItchFile) and src.name == "ITCH 5.0 BinaryFILE" and src.path == SAMPLE
    gz = write(tmp_path, "data.dat", gzip.compress(SAMPLE_BYTES))
    src = open_source(gz, iter(["AAPL"]))  # an iterator of symbols is fine
    assert isinstance(src, ItchFile)
    assert list(src) == list(ItchFile(SAMPLE))
    # A tiny file of two records and a cut third: ITCH, whose error says where.
    tiny = write(tmp_path, "tiny", SAMPLE_BYTES[: OFFSETS[2] + 5])
    src = open_source(tiny)
    assert isinstance(src, ItchFile)
    assert error_of(src).where == f"message 3 at byte {OFFSETS[2]}"


def test_open_source_refuses_garbage_empty_and_missing(tmp_path: Path) -> None:
    garbage = write(tmp_path, "notes.bin", b"hello, this is not market data\n" * 50)
    with pytest.raises(SourceError, match=r"not an ITCH 5\.0 BinaryFILE") as info:
        open_source(garbage)
    assert "68 65 6c 6c 6f" in info.value.reason and "hello" in info.value.reason
    assert info.value.path == garbage and info.value.where == "content"

    empty = write(tmp_path, "empty.bin", b"")
    with pytest.raises(SourceError, match="empty"):
        open_source(empty)

    missing = tmp_path / "nowhere.bin"
    with pytest.raises(SourceError) as info:
        open_source(missing)
    assert info.value.path == missing and str(missing) in str(info.value)

    gz_text = write(tmp_path, "text.gz", gzip.compress(b"time,type,id\n" * 100))
    with pytest.raises(SourceError, match="gzip of which first bytes"):
        open_source(gz_text)
    not_gz = write(tmp_path, "fake.gz", b"\x1f\x8b" + b"\x00" * 100)
    with pytest.raises(SourceError, match="gzip"):
        open_source(not_gz)

    zp = tmp_path / "other.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("readme.txt", "nothing here")
    with pytest.raises(SourceError, match="a zip without"):
        open_source(zp)


def test_looks_like_itch_wants_known_types_of_their_size() -> None:
    assert looks_like_itch(SAMPLE_BYTES[:4096], whole=False)
    assert not looks_like_itch(b"", whole=True)
    assert not looks_like_itch(b"\x00\x00" * 10, whole=True)  # zero lengths
    one = itch.frame_binary_file([itch.encode(itch.SystemEvent(0, 0, 1, "O"))])
    assert looks_like_itch(one, whole=True)
    assert not looks_like_itch(one + b"\x00\x05zzzzz", whole=True)  # unknown type
    assert not looks_like_itch(one + b"\x00\x05", whole=False)  # one record is too few
    wrong_size = b"\x00\x0d" + itch.encode(itch.SystemEvent(0, 0, 1, "O")) + b"x"
    assert not looks_like_itch(wrong_size, whole=True)


# --- memory -------------------------------------------------------------------------


def relocated(locate: int, symbol: str) -> bytes:
    """The sample as another symbol's: every record's locate (and the directory's
    symbol) rewritten."""
    data = bytearray(SAMPLE_BYTES)
    for off in OFFSETS:
        data[off + 3 : off + 5] = locate.to_bytes(2, "big")
        if data[off + 2] == ord("R"):
            data[off + 13 : off + 21] = symbol.encode().ljust(8)
    return bytes(data)


def test_memory_stays_flat_on_a_large_file(tmp_path: Path) -> None:
    # 200,000 messages, ~6 MB (six 1 MiB chunks): AAPL's 10,000 then 190,000 MSFT's.
    # (tracemalloc sees the skip loop's every int: ~15 us a message, so one pass.)
    p = write(tmp_path, "big.bin", SAMPLE_BYTES + relocated(14, "MSFT") * 19)
    size = p.stat().st_size
    tracemalloc.start()
    try:
        n = 0
        last = None
        for u in ItchFile(p, ["AAPL"]):  # decoded, then skipping to the end
            n += 1
            last = u
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 10_000 and last is not None and last.seq == n
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.1f} MiB file"
    assert peak < size / 4
    assert count_skip(p, ["MSFT"]) == (200_000, 190_000)
