"""LobsterSource (issue 15, item 1): a LOBSTER message + orderbook day streamed as
the live feed's own updates.

Tiny hand-built days pin down each event type's update, the seeding from the
first orderbook row, the events on orders the stream never added (taken from a
synthetic level, or added first when the level lacks them) and the corrections
that keep the book equal to the orderbook file. The real sample day (AMZN,
../shared/data/lobster, not committed: no redistribution) is fed into the book
builder: never a BookError, the top 5 levels equal to the file's, the same
updates on a second pass, flat memory.
"""

from __future__ import annotations

import hashlib
import io
import re
import tracemalloc
import zipfile
from pathlib import Path

import msgspec
import pytest

from hftd.backtest.lobster import SYNTHETIC_REF_BASE, LobsterSource, parse_time
from hftd.backtest.source import MarketDataSource, SourceError
from hftd.book.l3 import BookBuilder
from hftd.msg.hot import (
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_SEQUENCE,
    MD_SYSTEM,
    MD_TRADE,
    MD_TRADING,
    MarketDataUpdate,
)

LOBSTER_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lobster"
AMZN_ZIP = LOBSTER_DIR / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
AMZN_BOOK = "AMZN_2012-06-21_34200000_57600000_orderbook_5.csv"
STEM = "TEST_2012-06-21_34200000_57600000"
T0 = 34_200_000_000_000  # 09:30:00 in ns after midnight

Level = tuple[int, int]


def row(asks: list[Level], bids: list[Level], levels: int = 2) -> str:
    """An orderbook line: ask price, ask size, bid price, bid size per level."""
    asks = asks + [(9_999_999_999, 0)] * (levels - len(asks))
    bids = bids + [(-9_999_999_999, 0)] * (levels - len(bids))
    return ",".join(f"{a[0]},{a[1]},{b[0]},{b[1]}" for a, b in zip(asks, bids, strict=True))


def write_day(
    tmp: Path, lines: list[tuple[str, str]], levels: int = 2, zipped: bool = False
) -> Path:
    """(message line, orderbook line) pairs -> the message CSV (or a zip of both)."""
    msg = "".join(m + "\n" for m, _ in lines)
    book = "".join(b + "\n" for _, b in lines)
    mname = f"{STEM}_message_{levels}.csv"
    bname = f"{STEM}_orderbook_{levels}.csv"
    if zipped:
        z = tmp / f"LOBSTER_SampleFile_{STEM}_{levels}.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(bname, book)
            zf.writestr(mname, msg)
            zf.writestr("ReadMe.txt", "columns\n")
        return z
    (tmp / bname).write_text(book)
    (tmp / mname).write_text(msg)
    return tmp / mname


def book_of(updates: list[MarketDataUpdate]) -> BookBuilder:
    builder = BookBuilder(["TEST"])
    for u in updates:
        builder.apply_update(u)  # raises BookError on an inconsistent stream
    return builder


def depth(builder: BookBuilder, symbol: str = "TEST", levels: int = 2) -> str:
    b = builder.book(symbol)
    return row(b.depth("S", levels), b.depth("B", levels), levels)


def fields(u: MarketDataUpdate) -> tuple[object, ...]:
    """An update without seq and times: (kind, locate, symbol, ref, side, qty, price, new_ref)."""
    return (u.kind, u.locate, u.symbol, u.order_ref, u.side, u.qty, u.price, u.new_ref)


S1, S2, S3 = SYNTHETIC_REF_BASE, SYNTHETIC_REF_BASE + 1, SYNTHETIC_REF_BASE + 2
ASK, BID = 1_010_000, 1_000_000  # $101.00 and $100.00
BOOK0 = row([(ASK, 300)], [(BID, 200)])  # a book the file starts with


# --- event types ----------------------------------------------------------------------


def test_seed_then_each_event_type(tmp_path: Path) -> None:
    day = [
        # 1: a new buy order at the best bid; row 1 is the book after it.
        ("34200.5,1,11,100,1000000,1", row([(ASK, 300)], [(BID, 300)])),
        ("34201.25,2,11,40,1000000,1", row([(ASK, 300)], [(BID, 260)])),  # partial cancel
        ("34202,4,11,10,1000000,1", row([(ASK, 300)], [(BID, 250)])),  # visible execution
        ("34203.000000001,3,11,50,1000000,1", row([(ASK, 300)], [(BID, 200)])),  # delete
        ("34204.1,5,0,25,1005000,-1", row([(ASK, 300)], [(BID, 200)])),  # hidden execution
        ("34205.2,6,0,500,1005000,1", row([(ASK, 300)], [(BID, 200)])),  # cross trade
        ("34206.3,7,0,0,-1,-1", row([(ASK, 300)], [(BID, 200)])),  # halt
        ("34206.4,7,0,0,0,-1", row([(ASK, 300)], [(BID, 200)])),  # quoting
        ("34206.5,7,0,0,1,-1", row([(ASK, 300)], [(BID, 200)])),  # resume
        ("34207,1,12,70,1010000,-1", row([(ASK, 370)], [(BID, 200)])),  # joins the ask
    ]
    src = LobsterSource(write_day(tmp_path, day))
    updates = list(src)
    assert [fields(u) for u in updates] == [
        (MD_SYSTEM, 0, "", 0, "O", 0, 0, 0),
        (MD_DIRECTORY, 1, "TEST", 0, "", 100, 0, 0),
        # The book before event 1: row 1 with the 100 shares it added taken off.
        (MD_ADD, 1, "TEST", S1, "S", 300, ASK, 0),
        (MD_ADD, 1, "TEST", S2, "B", 200, BID, 0),
        (MD_ADD, 1, "TEST", 11, "B", 100, BID, 0),
        (MD_CANCEL, 1, "", 11, "", 40, 0, 0),
        (MD_EXECUTE, 1, "", 11, "", 10, BID, 1),  # with its price, as ITCH C
        (MD_DELETE, 1, "", 11, "", 0, 0, 0),
        (MD_TRADE, 1, "TEST", 0, "S", 25, 1_005_000, 2),  # as ITCH P
        (MD_SEQUENCE, 0, "", 0, "Q", 0, 0, 0),  # as the feed makes ITCH Q
        (MD_TRADING, 1, "TEST", 0, "H", 0, 0, 0),
        (MD_TRADING, 1, "TEST", 0, "Q", 0, 0, 0),
        (MD_TRADING, 1, "TEST", 0, "T", 0, 0, 0),
        (MD_ADD, 1, "TEST", 12, "S", 70, ASK, 0),
    ]
    assert [u.seq for u in updates] == list(range(1, len(updates) + 1))
    assert all(u.t1 == u.exch_ts for u in updates)
    assert [u.exch_ts for u in updates[:6]] == [T0 + 500_000_000] * 5 + [T0 + 1_250_000_000]
    assert updates[7].exch_ts == T0 + 3_000_000_001
    assert (src.messages, src.yielded, src.seeded) == (10, len(updates), 2)
    assert (src.adjustments, src.synthetic_adds, src.corrections) == (0, 0, 0)
    assert depth(book_of(updates)) == row([(ASK, 370)], [(BID, 200)])
    source: MarketDataSource = src  # the protocol, checked by mypy
    assert source.name == "LOBSTER" and source.path == tmp_path / f"{STEM}_message_2.csv"


def test_seed_undoes_a_first_delete(tmp_path: Path) -> None:
    # Event 1 deletes the only order at $99.99: the book before it had that level.
    day = [("34200,3,5,100,999900,1", BOOK0)]
    updates = list(LobsterSource(write_day(tmp_path, day)))
    assert [fields(u) for u in updates[2:]] == [
        (MD_ADD, 1, "TEST", S1, "S", 300, ASK, 0),
        (MD_ADD, 1, "TEST", S2, "B", 200, BID, 0),
        (MD_ADD, 1, "TEST", S3, "B", 100, 999_900, 0),
        (MD_DELETE, 1, "", S3, "", 0, 0, 0),  # order 5 was in the seeded level
    ]
    assert depth(book_of(updates)) == BOOK0


def test_zip_and_csv_give_the_same_updates(tmp_path: Path) -> None:
    day = [
        ("34200.5,1,11,100,1000000,1", row([(ASK, 300)], [(BID, 300)])),
        ("34201,3,11,100,1000000,1", BOOK0),
    ]
    (tmp_path / "csv").mkdir()
    (tmp_path / "zip").mkdir()
    from_csv = list(LobsterSource(write_day(tmp_path / "csv", day)))
    zipped = LobsterSource(write_day(tmp_path / "zip", day, zipped=True))
    assert list(zipped) == from_csv
    assert zipped.symbol == "TEST" and zipped.levels == 2


def test_a_symbol_filter_without_the_file_s_symbol_yields_nothing(tmp_path: Path) -> None:
    p = write_day(tmp_path, [("34200,1,11,100,1000000,1", row([(ASK, 300)], [(BID, 300)]))])
    assert list(LobsterSource(p, ["MSFT"])) == []
    assert list(LobsterSource(p, ["MSFT", "TEST"])) == list(LobsterSource(p))
    assert list(LobsterSource(p, "TEST")) == list(LobsterSource(p))  # one name, bare
    assert list(LobsterSource(p, [])) == list(LobsterSource(p))  # no filter


# --- orders the stream never added ------------------------------------------------------


def test_unknown_ids_are_taken_from_the_seeded_level(tmp_path: Path) -> None:
    day = [
        ("34200,5,0,10,1005000,1", BOOK0),
        # Orders 98 and 99 rested in the seeded bid level: never added.
        ("34201,3,99,120,1000000,1", row([(ASK, 300)], [(BID, 80)])),
        ("34202,4,98,80,1000000,1", row([(ASK, 300)], [])),
        ("34203,2,97,100,1010000,-1", row([(ASK, 200)], [])),
    ]
    src = LobsterSource(write_day(tmp_path, day))
    updates = list(src)
    assert [fields(u) for u in updates[5:]] == [
        (MD_CANCEL, 1, "", S2, "", 120, 0, 0),  # 120 of the level's 200
        (MD_EXECUTE, 1, "", S2, "", 80, BID, 2),  # the level's last 80
        (MD_CANCEL, 1, "", S1, "", 100, 0, 0),
    ]
    assert (src.adjustments, src.synthetic_adds, src.corrections) == (3, 0, 0)
    assert depth(book_of(updates)) == row([(ASK, 200)], [])


def test_an_event_beyond_the_level_adds_the_missing_shares_first(tmp_path: Path) -> None:
    day = [
        ("34200,5,0,10,1005000,1", BOOK0),
        # 250 executed where the stream holds 200: order 7's last 50 shares
        # rested there unseen (the file had not reached them).
        ("34201,4,7,250,1000000,1", row([(ASK, 300)], [])),
        # A delete at a price the stream has nothing at: added, then deleted.
        ("34202,3,8,30,1020000,-1", row([(ASK, 300)], [])),
    ]
    src = LobsterSource(write_day(tmp_path, day), check_every=2)
    updates = list(src)
    assert [fields(u) for u in updates[5:]] == [
        (MD_EXECUTE, 1, "", S2, "", 200, BID, 2),
        (MD_ADD, 1, "TEST", 7, "B", 50, BID, 0),  # under the event's own id
        (MD_EXECUTE, 1, "", 7, "", 50, BID, 3),
        (MD_ADD, 1, "TEST", 8, "S", 30, 1_020_000, 0),
        (MD_DELETE, 1, "", 8, "", 0, 0, 0),
    ]
    assert (src.adjustments, src.synthetic_adds, src.corrections) == (2, 2, 0)
    assert depth(book_of(updates)) == row([(ASK, 300)], [])


def test_a_known_order_smaller_than_its_event(tmp_path: Path) -> None:
    day = [
        ("34200,1,11,100,1000000,1", row([(ASK, 300)], [(BID, 300)])),
        # A cancel of 150 from an order of 100: the rest from the seeded level.
        ("34201,2,11,150,1000000,1", row([(ASK, 300)], [(BID, 150)])),
    ]
    src = LobsterSource(write_day(tmp_path, day))
    updates = list(src)
    assert [fields(u) for u in updates[5:]] == [
        (MD_DELETE, 1, "", 11, "", 0, 0, 0),
        (MD_CANCEL, 1, "", S2, "", 50, 0, 0),
    ]
    assert (src.adjustments, src.synthetic_adds) == (1, 0)
    assert depth(book_of(updates)) == row([(ASK, 300)], [(BID, 150)])


def test_a_hidden_execution_leaves_the_book(tmp_path: Path) -> None:
    day = [
        ("34200,1,11,100,1000000,1", row([(ASK, 300)], [(BID, 300)])),
        ("34201,5,0,40,1000000,1", row([(ASK, 300)], [(BID, 300)])),
    ]
    updates = list(LobsterSource(write_day(tmp_path, day)))
    before = book_of(updates[:-1])
    assert fields(updates[-1]) == (MD_TRADE, 1, "TEST", 0, "B", 40, BID, 1)
    after = book_of(updates)
    assert depth(after) == depth(before) == row([(ASK, 300)], [(BID, 300)])
    assert after.book("TEST").orders == before.book("TEST").orders


# --- the orderbook file checks the book ----------------------------------------------


def test_a_deeper_level_coming_into_view_is_added(tmp_path: Path) -> None:
    ask2, ask3 = 1_020_000, 1_030_000
    day = [
        ("34200,5,0,10,1005000,1", row([(ASK, 100), (ask2, 100)], [(BID, 200)])),
        # The best ask trades away: the third level ($103) comes into view.
        ("34201,4,7,100,1010000,-1", row([(ask2, 100), (ask3, 40)], [(BID, 200)])),
        # Order 8 rested there: taken from the level the check added.
        ("34202,3,8,40,1030000,-1", row([(ask2, 100)], [(BID, 200)])),
    ]
    src = LobsterSource(write_day(tmp_path, day))
    updates = list(src)
    s4 = SYNTHETIC_REF_BASE + 3
    assert [fields(u) for u in updates[6:]] == [
        (MD_EXECUTE, 1, "", S1, "", 100, ASK, 2),
        (MD_ADD, 1, "TEST", s4, "S", 40, ask3, 0),  # the correction
        (MD_DELETE, 1, "", s4, "", 0, 0, 0),
    ]
    assert [u.exch_ts for u in updates[6:]] == [T0 + 1_000_000_000] * 2 + [T0 + 2_000_000_000]
    assert (src.adjustments, src.synthetic_adds, src.corrections) == (2, 0, 1)
    assert depth(book_of(updates)) == row([(ask2, 100)], [(BID, 200)])


def test_an_order_cancelled_unseen_while_deeper_is_taken_off(tmp_path: Path) -> None:
    b2, b3 = 999_900, 999_800
    day = [
        ("34200,1,21,100,999800,1", row([(ASK, 300)], [(BID, 200), (b2, 50)])),  # level 3
        ("34201,1,22,60,999800,1", row([(ASK, 300)], [(BID, 200), (b2, 50)])),  # unseen
        # Order 21 (100) leaves unseen; then the best bid goes: $99.98 shows 60.
        ("34202,3,31,200,1000000,1", row([(ASK, 300)], [(b2, 50), (b3, 60)])),
    ]
    src = LobsterSource(write_day(tmp_path, day))
    updates = list(src)
    assert [fields(u) for u in updates[-2:]] == [
        (MD_DELETE, 1, "", S2, "", 0, 0, 0),  # order 31 was the seeded best bid
        (MD_DELETE, 1, "", 21, "", 0, 0, 0),  # the order of exactly the surplus
    ]
    assert src.corrections == 1
    assert depth(book_of(updates)) == row([(ASK, 300)], [(b2, 50), (b3, 60)])


def test_every_row_is_checked_by_default_and_every_nth_on_request(tmp_path: Path) -> None:
    day = [
        ("34200,5,0,10,1005000,1", BOOK0),
        ("34201,5,0,10,1005000,1", row([(ASK, 250)], [(BID, 200)])),  # 50 left unseen
        ("34202,5,0,10,1005000,1", row([(ASK, 250)], [(BID, 200)])),
    ]
    p = write_day(tmp_path, day)
    every = LobsterSource(p)
    third = LobsterSource(p, check_every=3)
    a, b = list(every), list(third)
    # The correction follows the event of the first row that shows it.
    assert fields(a[6]) == (MD_CANCEL, 1, "", S1, "", 50, 0, 0) and a[6].exch_ts == T0 + 10**9
    assert fields(b[7]) == fields(a[6]) and b[7].exch_ts == T0 + 2 * 10**9
    assert every.corrections == third.corrections == 1
    with pytest.raises(ValueError, match="check_every"):
        LobsterSource(p, check_every=-1)


# --- times and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("34200", 34_200 * 10**9),
        ("34200.18960767", 34_200_189_607_670),  # 8 decimals: padded, no float
        ("53142.439", 53_142_439_000_000),
        ("34200.017459617", 34_200_017_459_617),
        ("43002.632812672004", 43_002_632_812_672),  # 12 decimals in the AMZN file
        ("1.0000000005", 1_000_000_001),  # half up
        ("1.9999999996", 2_000_000_000),
    ],
)
def test_parse_time_is_exact(text: str, ns: int) -> None:
    assert parse_time(text) == ns


@pytest.mark.parametrize("text", ["", ".5", "1.", "1.5e3", "-1.5", "1.-5", "12:00", " 1.5"])
def test_parse_time_refuses_what_is_not_seconds(text: str) -> None:
    with pytest.raises(ValueError, match="not seconds after midnight"):
        parse_time(text)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("34201,1,12,100,1000000", "not enough values"),
        ("34201,1,12,100,1000000,1,9", "too many values"),
        ("34201,1,x,100,1000000,1", "invalid literal"),
        ("34201.5.5,1,12,100,1000000,1", "not seconds after midnight"),
        ("34199,1,12,100,1000000,1", "time before the previous line's"),
        ("34201,8,12,100,1000000,1", "event type 8"),
        ("34201,0,12,100,1000000,1", "event type 0"),
        ("34201,1,12,0,1000000,1", "size > 0"),
        ("34201,1,12,100,1000000,0", "direction"),
        ("34201,1,-12,100,1000000,1", "order id"),
        (f"34201,3,{SYNTHETIC_REF_BASE},100,1000000,1", "order id"),
        ("34201,7,0,0,2,-1", "halt price 2"),
    ],
)
def test_a_malformed_message_line_names_its_line(tmp_path: Path, line: str, reason: str) -> None:
    day = [("34200,5,0,10,1005000,1", BOOK0), (line, BOOK0), ("34202,5,0,10,1005000,1", BOOK0)]
    src = LobsterSource(write_day(tmp_path, day))
    with pytest.raises(SourceError, match=reason) as err:
        list(src)
    assert err.value.where == "message file line 2"


def test_a_malformed_orderbook_line_names_its_line(tmp_path: Path) -> None:
    day = [("34200,5,0,10,1005000,1", BOOK0), ("34201,5,0,10,1005000,1", "1,2,3")]
    with pytest.raises(SourceError, match="3 fields, 8 wanted") as err:
        list(LobsterSource(write_day(tmp_path, day)))
    assert err.value.where == "orderbook file line 2"
    day[1] = ("34201,5,0,10,1005000,1", BOOK0.replace("300", "3x0"))
    with pytest.raises(SourceError, match="invalid literal"):
        list(LobsterSource(write_day(tmp_path, day)))


def test_files_of_different_lengths(tmp_path: Path) -> None:
    p = write_day(tmp_path, [("34200,5,0,10,1005000,1", BOOK0)] * 3)
    book = p.with_name(f"{STEM}_orderbook_2.csv")
    book.write_text((BOOK0 + "\n") * 2)
    with pytest.raises(SourceError, match="orderbook file ends before the message file") as err:
        list(LobsterSource(p))
    assert err.value.where == "message file line 3"
    book.write_text((BOOK0 + "\n") * 4)
    with pytest.raises(SourceError, match="message file ends before the orderbook file"):
        list(LobsterSource(p))


def test_missing_files_and_members(tmp_path: Path) -> None:
    p = write_day(tmp_path, [("34200,5,0,10,1005000,1", BOOK0)])
    book = p.with_name(f"{STEM}_orderbook_2.csv")
    book.unlink()
    with pytest.raises(SourceError, match=re.escape(f"{book} not found")):
        LobsterSource(p)
    with pytest.raises(SourceError, match="not found"):
        LobsterSource(tmp_path / "nothing.zip")
    other = tmp_path / "day.csv"
    other.write_text("34200,5,0,10,1005000,1\n")
    with pytest.raises(SourceError, match="neither a zip nor"):
        LobsterSource(other)
    z = tmp_path / "no_book.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(f"{STEM}_message_2.csv", "34200,5,0,10,1005000,1\n")
    with pytest.raises(SourceError, match=re.escape(f"no orderbook member {STEM}_orderbook_2.csv")):
        LobsterSource(z)
    z2 = tmp_path / "no_message.zip"
    with zipfile.ZipFile(z2, "w") as zf:
        zf.writestr(f"{STEM}_orderbook_2.csv", BOOK0 + "\n")
    with pytest.raises(SourceError, match=re.escape("0 named SYMBOL_DATE_START_END_message_N.csv")):
        LobsterSource(z2)


def test_an_empty_day_yields_nothing(tmp_path: Path) -> None:
    src = LobsterSource(write_day(tmp_path, []))
    assert list(src) == [] and src.yielded == 0


# --- the real AMZN day ---------------------------------------------------------------


def amzn_zip() -> Path:
    if not AMZN_ZIP.is_file():
        pytest.fail(
            f"the LOBSTER sample day is missing: {AMZN_ZIP} (see ../shared/data/README.md; "
            "it may not be committed into the project)"
        )
    return AMZN_ZIP


def file_row(line: str) -> tuple[list[Level], list[Level]]:
    """An orderbook line as (asks, bids), best first, empty levels left out."""
    v = [int(x) for x in line.split(",")]
    asks = [(v[i], v[i + 1]) for i in range(0, 20, 4) if v[i + 1]]
    bids = [(v[i + 2], v[i + 3]) for i in range(0, 20, 4) if v[i + 3]]
    return asks, bids


def test_the_amzn_day_builds_the_file_s_book() -> None:
    path = amzn_zip()
    with zipfile.ZipFile(path) as zf, zf.open(AMZN_BOOK) as raw:
        lines = list(io.TextIOWrapper(raw, encoding="ascii"))
    last = len(lines)
    wanted = {n: file_row(lines[n - 1]) for n in [*range(1000, last, 1000), last]}
    del lines
    src = LobsterSource(path)
    builder = BookBuilder(["AMZN"])
    book = builder.book("AMZN")
    enc = msgspec.msgpack.Encoder()
    h = hashlib.blake2b()
    checked = 0
    seen = 0  # the message whose updates came last

    def check(n: int) -> None:
        nonlocal checked
        if n in wanted:
            assert (book.depth("S", 5), book.depth("B", 5)) == wanted[n], f"message {n}"
            checked += 1

    n = 0
    for u in src:
        n += 1
        assert u.seq == n and u.t1 == u.exch_ts
        if src.messages != seen:  # the first update of the next message
            check(seen)
            seen = src.messages
        builder.apply_update(u)  # never a BookError
        h.update(enc.encode(u))
    check(seen)
    assert seen == src.messages == last == 155_935
    assert checked == len(wanted)
    print(
        f"\nAMZN 2012-06-21: {src.messages} messages in, {n} updates out; seeded "
        f"{src.seeded} levels, {src.adjustments} adjustments, {src.synthetic_adds} "
        f"synthetic adds, {src.corrections} corrections"
    )
    assert src.seeded == 10
    assert src.yielded == n
    # Most events name orders the stream holds: the inferred part is small.
    assert src.adjustments < src.messages / 10
    assert n - src.messages < src.messages / 5

    again = hashlib.blake2b()  # a second pass: the same updates
    for u in src:
        again.update(enc.encode(u))
    assert again.digest() == h.digest()
    assert src.yielded == n


@pytest.mark.slow  # tracemalloc costs ~20x: ~40 s
def test_the_amzn_day_in_flat_memory() -> None:
    src = LobsterSource(amzn_zip())
    n = 0
    tracemalloc.start()
    try:
        for _ in src:
            n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == src.yielded and src.messages == 155_935
    # The zip holds 24.5 MB of text; the stream holds a line and the book.
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    print(f"\ntracemalloc peak over the AMZN day: {peak / 2**20:.1f} MiB")
