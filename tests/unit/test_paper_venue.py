"""Paper trading on a recorded day (`exchange.md_file_model = "queue"`): the venue
publishes the data unchanged and matches our OUCH orders with the backtest's queue
model, exactly as a `QueueVenue` fed the same data and orders would (through the
wire: what the gateway's OUCH adapter reads is the model's events); the journal
and a checkpoint rebuild it exactly."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.backtest.detect import open_source
from hftd.backtest.queue import QueueState, QueueVenue
from hftd.book.l3 import BookBuilder
from hftd.config import ConfigError, HftdConfig, load_config
from hftd.exchange.checkpoint import decode
from hftd.exchange.journal import JournaledVenue, JournalMismatch, open_venue
from hftd.exchange.mdfile import MdFileError
from hftd.exchange.recorded import RecordedMarket
from hftd.exchange.venue import Venue
from hftd.feed.normalize import normalize
from hftd.gateway import venue as gv
from hftd.gateway.ouch_adapter import OuchAdapter, to_b36
from hftd.msg.hot import MARKET_PRICE, MD_SEQUENCE, TIF_DAY, TIF_GTX, TIF_IOC, MarketDataUpdate
from hftd.wire import itch, ouch

ROOT = Path(__file__).resolve().parents[2]
ITCH_SAMPLE = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
AMZN_ZIP = ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
DEFAULT = ROOT / "config" / "default.toml"
OUR = (gv.Accepted, gv.Executed, gv.Canceled, gv.Replaced, gv.Rejected)


def amzn_zip() -> Path:
    if not AMZN_ZIP.is_file():
        pytest.fail(
            f"the LOBSTER sample day is missing: {AMZN_ZIP} (see ../shared/data/README.md; "
            "it may not be committed into the project)"
        )
    return AMZN_ZIP


def config(
    tmp: Path | None = None, symbol: str = "AAPL", price: str = "320.00", **ex: Any
) -> HftdConfig:
    cfg = load_config(DEFAULT)
    sym = msgspec.structs.replace(cfg.symbols[0], symbol=symbol, reference_price=price)
    cfg = msgspec.structs.replace(
        cfg,
        symbols=[sym],
        strategy=msgspec.structs.replace(cfg.strategy, instances=[]),
        exchange=msgspec.structs.replace(cfg.exchange, **ex),
    )
    if tmp is not None:
        cfg = msgspec.structs.replace(
            cfg,
            system=msgspec.structs.replace(
                cfg.system, run_dir=str(tmp), journal_dir=str(tmp / "journal")
            ),
        )
    return cfg


def paper_venue(cfg: HftdConfig) -> Venue:
    ticks = itertools.count(40_000_000_000_000, 1000)
    v = Venue(cfg, lambda: next(ticks))
    v.attach_paper()
    v.start_of_day()
    return v


def events_of(v: Venue, user: str = "HFTD") -> list[gv.VenueEvent]:
    """What the gateway's OUCH adapter reads from `user`'s stream: our orders' events."""
    a = OuchAdapter()
    st = v.user(user).stream
    evs = [a.decode(raw) for raw in st.range(1, st.next_sequence)]
    return [e for e in evs if isinstance(e, OUR)]


def same(got: list[gv.VenueEvent], want: list[gv.VenueEvent]) -> None:
    """Equal event for event (a refusal's text is the venue's own words)."""

    def key(e: gv.VenueEvent) -> Any:
        return (e.ref, e.reason) if isinstance(e, gv.Rejected) else e

    assert [key(e) for e in got] == [key(e) for e in want]


# --- a scripted trader: one OUCH input at some positions of the data ---------------------


class Trader:
    """Orders of every kind at fixed positions of the data, priced off the book built
    so far: passive at the touch (queue fills), marketable IOCs and market orders
    (taking), replaces and cancels; UserRefNum = the model's ref (one user)."""

    def __init__(self, symbol: str, tick: int = 100) -> None:
        self.symbol = symbol
        self.tick = tick
        self.books = BookBuilder([symbol])
        self.next_ref = 1
        self.working: list[int] = []

    def seen(self, u: MarketDataUpdate) -> None:
        if u.kind != MD_SEQUENCE:
            self.books.apply_update(u)

    def order(self, i: int) -> ouch.Inbound | None:
        book = self.books.books.get(self.symbol)
        if book is None or not (bb := book.best_bid()) or not (ba := book.best_ask()):
            return None
        bid, ask = bb[0], ba[0]
        ref = self.next_ref
        cl = to_b36(1000 + ref)
        step = i % 7
        msg: ouch.Inbound
        if step == 0:
            msg = ouch.EnterOrder(ref, "B", 100, self.symbol, bid, TIF_DAY, cl_ord_id=cl)
        elif step == 1:
            msg = ouch.EnterOrder(ref, "S", 200, self.symbol, ask, TIF_GTX, cl_ord_id=cl)
        elif step == 2:
            msg = ouch.EnterOrder(ref, "B", 100, self.symbol, ask, TIF_IOC, cl_ord_id=cl)
        elif step == 3 and self.working:
            orig = self.working.pop(0)
            msg = ouch.ReplaceOrder(orig, ref, 100, bid - self.tick, TIF_DAY, cl_ord_id=cl)
        elif step == 4 and self.working:
            return ouch.CancelOrder(self.working.pop(0), 0)
        elif step == 5:
            msg = ouch.EnterOrder(ref, "T", 100, self.symbol, MARKET_PRICE, TIF_IOC, cl_ord_id=cl)
        else:
            msg = ouch.EnterOrder(
                ref, "S", 100, self.symbol, ask + self.tick, TIF_DAY, cl_ord_id=cl
            )
        self.next_ref += 1
        if not isinstance(msg, ouch.EnterOrder) or msg.time_in_force != TIF_IOC:
            self.working.append(ref)  # a resting order, or a replacement
        return msg


def model_call(q: QueueVenue, msg: ouch.Inbound) -> list[gv.VenueEvent]:
    """What the gateway means by `msg`, as the queue model's call."""
    if isinstance(msg, ouch.EnterOrder):
        side = "B" if msg.side == "B" else "S"
        return q.enter(
            msg.user_ref,
            int(msg.cl_ord_id, 36),
            msg.symbol,
            side,
            msg.quantity,
            msg.price,
            msg.time_in_force,
        )
    if isinstance(msg, ouch.ReplaceOrder):
        return q.replace(
            msg.orig_user_ref, msg.new_user_ref, int(msg.cl_ord_id, 36), msg.quantity, msg.price
        )
    return q.cancel(msg.user_ref)


def echo_sides(events: list[gv.VenueEvent], entered: dict[int, str]) -> list[gv.VenueEvent]:
    """The model's events with the side an order was entered with (T and E are sells to
    the model; OUCH echoes them as entered)."""
    out = []
    for e in events:
        if isinstance(e, gv.Accepted | gv.Replaced) and e.ref in entered:
            e = msgspec.structs.replace(e, side=entered[e.ref])
        out.append(e)
    return out


def run_both(
    path: Path, symbol: str, every: int, limit: int | None = None
) -> tuple[Venue, list[gv.VenueEvent], RecordedMarket]:
    """The paper venue over `path` with a `Trader`'s orders every `every` messages, and
    the queue model over `open_source(path)` with the same orders at the same places;
    returns the venue and the model's events."""
    cfg = config(symbol=symbol, md_file=str(path), md_file_model="queue")
    v = paper_venue(cfg)
    rm = RecordedMarket(path, [symbol])
    q = QueueVenue([symbol])
    trader = Trader(symbol)
    want: list[gv.VenueEvent] = []
    entered: dict[int, str] = {}
    updates: Iterator[MarketDataUpdate] = iter(open_source(path, [symbol]))
    if limit is not None:
        updates = itertools.islice(updates, limit)
    for i, u in enumerate(updates):
        if i and i % every == 0 and (msg := trader.order(i // every)) is not None:
            v.handle("HFTD", msg)
            if isinstance(msg, ouch.EnterOrder):
                entered[msg.user_ref] = msg.side
            elif isinstance(msg, ouch.ReplaceOrder):
                entered[msg.new_user_ref] = entered.get(msg.orig_user_ref, "B")
            want += model_call(q, msg)
        (item,) = rm.take(1)
        v.play_recorded(item)
        want += q.on_market(u)
        trader.seen(u)
    return v, echo_sides(want, entered), rm


# --- the model, through the venue ---------------------------------------------------------


def test_the_paper_venue_is_the_queue_model_on_the_nasdaq_sample() -> None:
    v, want, _ = run_both(ITCH_SAMPLE, "AAPL", every=40)
    got = events_of(v)
    kinds = {type(e).__name__ for e in got}
    assert kinds >= {"Accepted", "Executed", "Canceled", "Replaced"}, kinds
    liq = {e.liquidity for e in got if isinstance(e, gv.Executed)}
    assert liq == {"A", "R"}  # queue fills and takes both happened
    same(got, want)
    fills = v.snapshot("HFTD").fills
    assert [(f.user_ref, f.quantity, f.price, f.liquidity, f.match_number) for f in fills] == [
        (e.ref, e.qty, e.price, e.liquidity, e.match) for e in want if isinstance(e, gv.Executed)
    ]


def test_the_paper_venue_is_the_queue_model_on_the_lobster_day() -> None:
    v, want, _ = run_both(amzn_zip(), "AMZN", every=25, limit=40_000)
    got = events_of(v)
    assert sum(isinstance(e, gv.Executed) for e in got) >= 10
    same(got, want)


def test_the_stream_is_the_data_and_our_orders_are_not_in_it() -> None:
    """A feed client's book is the data's, message for message: nothing of ours in it."""
    v, _, _ = run_both(ITCH_SAMPLE, "AAPL", every=40)
    assert v.counters["fills"] > 0
    start = 5  # the venue's start of day: S O, R, H T, S S, S Q
    published = [itch.decode(m) for m in v.md.range(start + 1, v.md.next_sequence)]
    original = [itch.decode(bytes(m)) for m in itch.iter_binary_file(ITCH_SAMPLE.read_bytes())]
    assert [msgspec.structs.replace(m, timestamp=0) for m in published] == [
        msgspec.structs.replace(m, stock_locate=1, timestamp=0) for m in original
    ]
    fc = v.file_counters
    assert fc["messages"] == fc["published"] == 10_000 and fc["traded"] == fc["clipped"] == 0


def test_a_lobster_day_is_published_as_itch_and_builds_the_datas_book() -> None:
    cfg = config(symbol="AMZN", price="220.00", md_file=str(amzn_zip()), md_file_model="queue")
    v = paper_venue(cfg)
    rm = RecordedMarket(amzn_zip(), ["AMZN"])
    assert rm.format == "LOBSTER"
    for msg in rm.take(20_000):
        v.play_recorded(msg)
    client = BookBuilder(["AMZN"])
    for seq, raw in enumerate(v.md.range(1, v.md.next_sequence), start=1):
        client.apply_update(normalize(itch.decode(raw), seq, 0))
    data = BookBuilder(["AMZN"])
    for u in itertools.islice(open_source(amzn_zip(), ["AMZN"]), 20_000):
        if u.kind != MD_SEQUENCE:
            data.apply_update(u)
    mine, theirs = client.books["AMZN"], data.books["AMZN"]
    assert (mine.depth("B"), mine.depth("S"), mine.orders) == (
        theirs.depth("B"),
        theirs.depth("S"),
        theirs.orders,
    )
    bids, asks, orders = v.depth("AMZN")  # the venue's Depth: the data's book too
    assert (bids, asks, orders) == (theirs.depth("B"), theirs.depth("S"), dict(theirs.orders))
    fc = v.file_counters
    assert fc["messages"] == 20_000 and fc["unreadable"] == 0
    assert fc["published"] + fc["skipped"] == 20_000  # skipped: S O, cross trades


# --- the venue's own rules, before the model ---------------------------------------------


def test_refusals_cancel_down_end_of_day_and_snapshot() -> None:
    v = paper_venue(config(md_file=str(ITCH_SAMPLE), md_file_model="queue"))
    rm = RecordedMarket(ITCH_SAMPLE, ["AAPL"])
    for msg in rm.take(3000):
        v.play_recorded(msg)
    h = v.handle
    h("HFTD", ouch.EnterOrder(5, "B", 300, "AAPL", 3_000_000, TIF_DAY, cl_ord_id="a"))
    h("HFTD", ouch.EnterOrder(5, "B", 100, "AAPL", 3_000_000))  # UserRefNum not increasing
    h("HFTD", ouch.EnterOrder(6, "B", 100, "AAPL", 3_000_050))  # off the tick
    h("HFTD", ouch.EnterOrder(7, "B", 100, "MSFT", 3_000_000))  # not listed
    h("HFTD", ouch.CancelOrder(99, 0))  # no such order
    h("HFTD", ouch.ReplaceOrder(5, 8, 100, MARKET_PRICE))  # into a market order
    h("HFTD", ouch.CancelOrder(5, 200))  # down to 200: 100 off
    h("HFTD", ouch.CancelOrder(5, 250))  # at or above the open size: nothing
    h("HFTD", ouch.EnterOrder(9, "S", 100, "AAPL", 4_000_000, TIF_GTX))
    snap = v.snapshot("HFTD")
    assert [(o.user_ref, o.order_ref, o.side, o.price, o.open_qty, o.time_in_force)
            for o in snap.open_orders] == [
        (5, 2, "B", 3_000_000, 200, TIF_DAY),  # ref 2: the cancel down replaced ref 1
        (9, 3, "S", 4_000_000, 100, TIF_GTX),
    ]  # fmt: skip
    v.end_of_day()  # S M: the model cancels DAY orders (reason E); GTX works on
    got = events_of(v)
    st = v.user("HFTD").stream
    raw = [ouch.decode_outbound(m) for m in st.range(1, st.next_sequence)]
    rejects = [(m.user_ref, m.reason) for m in raw if isinstance(m, ouch.Rejected)]
    assert rejects == [
        (5, ouch.REJECT_DUPLICATE_USER_REF),
        (6, ouch.REJECT_INVALID_TICK),
        (7, ouch.REJECT_UNKNOWN_SYMBOL),
        (99, ouch.REJECT_UNKNOWN_ORDER),
        (8, ouch.REJECT_INVALID_PRICE),
    ]
    cancels = [(m.user_ref, m.quantity, m.reason) for m in raw if isinstance(m, ouch.Canceled)]
    assert cancels == [(5, 100, ouch.CANCEL_USER), (5, 200, ouch.CANCEL_CLOSED)]
    assert [e.ref for e in got if isinstance(e, gv.Accepted)] == [5, 9]
    assert [o.user_ref for o in v.snapshot("HFTD").open_orders] == [9]
    assert v.counters["rejects"] == 5


# --- state: the model's, the journal's, a checkpoint's -----------------------------------


def test_a_queue_model_restored_from_its_state_answers_as_the_original() -> None:
    """Half the sample with orders, `state()` encoded and decoded, then the other half:
    the restored model gives every later event the original gives."""
    updates = list(open_source(ITCH_SAMPLE, ["AAPL"]))
    trader = Trader("AAPL")
    q = QueueVenue(["AAPL"])
    copy = q
    a: list[Any] = []
    b: list[Any] = []
    for i, u in enumerate(updates, start=1):
        if i == 5000:  # the copy: the original's state, through msgpack
            assert q.open_orders()
            blob = msgspec.msgpack.encode(q.state())
            copy = QueueVenue.restore(msgspec.msgpack.decode(blob, type=QueueState))
            assert copy.state() == q.state()
        if i % 30 == 0 and (msg := trader.order(i // 30)) is not None:
            a += model_call(q, msg)
            if copy is not q:
                b += model_call(copy, msg)
        a += q.on_market(u)
        if copy is not q:
            b += copy.on_market(u)
        trader.seen(u)
    later = a[len(a) - len(b) :]
    assert later == b and any(isinstance(e, gv.Executed) for e in b)
    assert copy.state() == q.state()


def journaled(tmp: Path, **ex: Any) -> HftdConfig:
    return config(tmp, md_file=str(ITCH_SAMPLE), md_file_model="queue", **ex)


def trade_a_while(jv: JournaledVenue, first_ref: int, steps: int) -> None:
    """File steps of 150 messages, and between them orders priced off the venue's book."""
    for i in range(steps):
        jv.file_step(150)
        bids, asks, _ = jv.venue.depth("AAPL")
        if not bids or not asks:
            continue
        ref = first_ref + 3 * i
        for msg in (
            ouch.EnterOrder(ref, "B", 100, "AAPL", bids[0][0], cl_ord_id=to_b36(ref)),
            ouch.EnterOrder(ref + 1, "B", 100, "AAPL", asks[0][0], TIF_IOC),
            ouch.CancelOrder(ref - 3, 0),
        ):
            jv.handle("HFTD", ouch.encode_inbound(msg))


def venue_state(jv: JournaledVenue) -> dict[str, Any]:
    v = jv.venue
    assert v.paper is not None
    return {
        "md": v.md.frames(1, v.md.next_sequence),
        "ouch": {u: s.stream.frames(1, s.stream.next_sequence) for u, s in v.users.items()},
        "snapshot": v.snapshot("HFTD"),
        "paper": msgspec.msgpack.encode(v.paper.state()),
        "file": (jv.file_pos, dict(v.file_counters), dict(v.file_locate)),
        "counters": dict(v.counters),
    }


def test_journal_and_checkpoint_rebuild_the_paper_venue_exactly(tmp_path: Path) -> None:
    cfg = journaled(tmp_path)
    clock = itertools.count(40_000_000_000_000, 1000).__next__
    live, rec = open_venue(cfg, clock)
    assert live.recorded is not None and live.md_file is None and rec.records == 0
    live.start_of_day()
    trade_a_while(live, 10, 20)
    assert live.checkpointer is not None
    live.checkpointer.checkpoint()  # at 3000 messages, orders working
    assert live.venue.paper is not None and live.venue.paper.orders
    trade_a_while(live, 1000, 20)
    assert live.venue.counters["fills"] > 0
    want = venue_state(live)
    live.close()
    # From the checkpoint: the file read again to its position, the rest replayed.
    again, rec = open_venue(cfg, clock)
    assert rec.checkpoint > 0 and rec.records > 0
    assert venue_state(again) == want
    again.close()
    # Without it: the whole journal.
    ck = next((tmp_path / "journal").glob("*/exchange.state/checkpoint"))
    assert decode(ck.read_bytes()).paper is not None
    ck.unlink()
    full, rec = open_venue(cfg, clock)
    assert rec.checkpoint == 0
    assert venue_state(full) == want
    # Every order input says where in the file it was applied.
    assert full.file_pos == 6000
    full.close()


def test_a_journal_of_the_book_model_is_not_the_queue_models(tmp_path: Path) -> None:
    clock = itertools.count(40_000_000_000_000, 1000).__next__
    jv, _ = open_venue(config(tmp_path, md_file=str(ITCH_SAMPLE)), clock)
    jv.start_of_day()
    jv.close()
    with pytest.raises(JournalMismatch, match="md_file_model"):
        open_venue(journaled(tmp_path), clock)


def test_not_a_market_data_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    with pytest.raises(MdFileError, match=r"neither|not an ITCH"):
        open_venue(config(tmp_path, md_file=str(bad), md_file_model="queue"), lambda: 1)


# --- pacing -----------------------------------------------------------------------------


def test_pace_follows_the_recorded_timestamps(tmp_path: Path) -> None:
    stamps = (5_000, 5_000, 1_005_000, 900_000, 3_005_000)
    path = tmp_path / "day.bin"
    path.write_bytes(
        itch.frame_binary_file([itch.encode(itch.OrderDelete(0, 0, ts, 1)) for ts in stamps])
    )
    rm = RecordedMarket(path)
    assert rm.due(0.0, 1.0, 512) == 2 and rm.wait_s(0.0, 1.0) == 0.0
    rm.take(2)
    assert rm.due(0.0009, 1.0, 512) == 0
    assert rm.wait_s(0.0009, 1.0) == pytest.approx(0.0001)
    assert rm.due(0.001, 1.0, 512) == 2  # the one going backwards counts as the latest
    assert rm.due(0.001, 1.0, 1) == 1  # at most a batch
    rm.take(2)
    assert rm.elapsed_at(2.0) == pytest.approx(0.0015)
    assert rm.due(0.0015, 2.0, 512) == 1  # twice as fast
    rm.take(1)
    assert rm.done and rm.finished and rm.due(9.0, 1.0, 512) == 0 and rm.position == 5
    fast = RecordedMarket(path)
    assert fast.due(0.0, 0.0, 512) == 5 and fast.wait_s(0.0, 0.0) == 0.0  # speed 0


# --- the config ---------------------------------------------------------------------------


def test_md_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    text = DEFAULT.read_text().replace(
        'md_file = ""', 'md_file = "data/day.bin"\nmd_file_model = "queue"'
    )
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "hftd.toml"
    path.write_text(text)
    ex = load_config(path).exchange
    assert ex.md_file == str(tmp_path / "etc" / "data" / "day.bin")
    assert ex.md_file_model == "queue"
    path.write_text(text.replace('md_file = "data/day.bin"', f'md_file = "{ITCH_SAMPLE}"'))
    assert load_config(path).exchange.md_file == str(ITCH_SAMPLE)  # absolute: as it is
    path.write_text(text.replace('md_file_model = "queue"', 'md_file_model = "fifo"'))
    with pytest.raises(ConfigError, match=r"exchange\.md_file_model"):
        load_config(path)


def test_a_gzipped_itch_file_is_the_same_market(tmp_path: Path) -> None:
    """NASDAQ publishes its days gzipped: read as they are, the same messages."""
    gz = tmp_path / "sample.bin.gz"
    gz.write_bytes(gzip.compress(ITCH_SAMPLE.read_bytes()))
    plain, packed = RecordedMarket(ITCH_SAMPLE, ["AAPL"]), RecordedMarket(gz, ["AAPL"])
    assert packed.format == plain.format == "ITCH 5.0 BinaryFILE"
    assert packed.take(20_000) == plain.take(20_000) and packed.position == 10_000
    assert packed.digest != plain.digest  # the file's own bytes: another journal identity
