"""MarketDataUpdate -> ITCH 5.0 (hftd.exchange.denormalize): the feed's normalizer
gives every update back, field for field, through the wire encoding."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest

from hftd.backtest.detect import open_source
from hftd.exchange.denormalize import encode_update, to_itch
from hftd.feed.normalize import Normalizer, normalize
from hftd.msg.hot import (
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_HEARTBEAT,
    MD_REPLACE,
    MD_RESET,
    MD_SEQUENCE,
    MD_SYSTEM,
    MD_TRADE,
    MD_TRADING,
    MarketDataUpdate,
)
from hftd.wire import itch

ROOT = Path(__file__).resolve().parents[2]
ITCH_SAMPLE = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
AMZN_ZIP = ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
TS = 34_200_123_456_789


def upd(kind: int, **kw: object) -> MarketDataUpdate:
    base = MarketDataUpdate(0, kind, 7, "", 0, "", 0, 0, 0, TS, TS)
    return msgspec.structs.replace(base, **kw)


def back(u: MarketDataUpdate) -> MarketDataUpdate:
    """`u` encoded to ITCH bytes, then decoded and normalized as the feed does."""
    raw = encode_update(u)
    assert raw is not None
    return Normalizer().update(raw, u.seq, u.t1)


EVERY_KIND = [
    upd(MD_ADD, symbol="AAPL", order_ref=12, side="B", qty=300, price=3_201_500),
    upd(MD_ADD, symbol="AMZN", order_ref=(1 << 62) + 5, side="S", qty=1, price=2_234_900),
    upd(MD_EXECUTE, order_ref=12, qty=100, new_ref=4411),  # E: at the order's price
    upd(MD_EXECUTE, order_ref=12, qty=100, price=3_201_400, new_ref=4412),  # C
    upd(MD_CANCEL, order_ref=12, qty=50),
    upd(MD_DELETE, order_ref=12),
    upd(MD_REPLACE, order_ref=12, new_ref=13, qty=200, price=3_201_600),
    upd(MD_TRADE, symbol="AAPL", order_ref=0, side="B", qty=25, price=3_201_550, new_ref=9),
    upd(MD_DIRECTORY, symbol="AAPL", qty=100),
    upd(MD_TRADING, symbol="AAPL", side="H"),
    upd(MD_TRADING, symbol="AAPL", side="T"),
    upd(MD_SYSTEM, locate=0, side="M"),
]


@pytest.mark.parametrize("u", EVERY_KIND, ids=lambda u: f"kind{u.kind}")
def test_every_kind_comes_back_through_the_feeds_normalizer(u: MarketDataUpdate) -> None:
    assert back(u) == u


def test_the_message_types_are_itchs() -> None:
    types = [itch.TYPE_OF[type(to_itch(u))] for u in EVERY_KIND]
    assert types == ["A", "A", "E", "C", "X", "D", "U", "P", "R", "H", "H", "S"]


def test_locate_and_timestamp_are_the_callers() -> None:
    u = EVERY_KIND[0]
    msg = to_itch(u, locate=1, ts=5)
    assert isinstance(msg, itch.AddOrder) and (msg.stock_locate, msg.timestamp) == (1, 5)
    assert normalize(msg, 3, 0) == msgspec.structs.replace(u, seq=3, locate=1, exch_ts=5, t1=0)


@pytest.mark.parametrize("kind", [MD_SEQUENCE, MD_RESET, MD_HEARTBEAT])
def test_kinds_without_an_itch_message(kind: int) -> None:
    assert to_itch(upd(kind, side="Q")) is None and encode_update(upd(kind)) is None


def test_the_nasdaq_sample_round_trips() -> None:
    """Every update of the real ITCH sample (F, L and Y among them) but the
    sequence-only ones comes back unchanged."""
    n = 0
    for u in open_source(ITCH_SAMPLE, ["AAPL"]):
        if u.kind == MD_SEQUENCE:
            assert to_itch(u) is None
            continue
        assert back(u) == u
        n += 1
    assert n == 10_000 - 52 - 1  # all but the L and Y


def amzn_zip() -> Path:
    if not AMZN_ZIP.is_file():
        pytest.fail(
            f"the LOBSTER sample day is missing: {AMZN_ZIP} (see ../shared/data/README.md; "
            "it may not be committed into the project)"
        )
    return AMZN_ZIP


def test_the_lobster_day_round_trips() -> None:
    """The LOBSTER AMZN day's first 30,000 updates (synthetic references above 2^62,
    executions with their price) as ITCH 5.0 and back."""
    kinds: set[int] = set()
    for u in itertools.islice(open_source(amzn_zip(), ["AMZN"]), 30_000):
        kinds.add(u.kind)
        if u.kind == MD_SEQUENCE:
            continue
        assert back(u) == u
    assert {MD_ADD, MD_EXECUTE, MD_CANCEL, MD_DELETE, MD_DIRECTORY, MD_SYSTEM} <= kinds
