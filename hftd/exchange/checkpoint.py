"""Checkpoints of the journaled venue: a restart replays only the journal after one.

Replaying a whole day's journal at start grew with the day (4.2 s after 20
minutes at raised flow): long enough for the clients' stale-data breaker to
halt trading. A checkpoint is the venue's state as of one journal record; a
restart loads it and replays only the records after it, so it costs the same
at 16:00 as at 09:30. The journal stays the day's record, whole: a checkpoint
is derived from it, and a missing or damaged one only means a full replay.

Where (beside the day's journal, `hftd.runtime.days`)::

    <day>/exchange.journal        the record of every venue input (never rewritten)
    <day>/exchange.state/
        checkpoint                the latest checkpoint (replaced atomically)
        checkpoint.unusable       one that could not be used, kept to look at
        streams.<generation>/     the sequenced streams (`hftd.exchange.stream`):
                                  md, ouch-<user>, fills-<user> (.data + .index)

What it holds (`Checkpoint`): the journal position it covers (the last
record's offset, length and crc: a checkpoint of another journal, or of a
journal cut shorter since, is not used), the venue's identity (symbols, users,
seed, market-data file), the books with every resting order in priority
order, the engine's order map and counters, the users' bookkeeping (last
UserRefNum, live orders, broken trades) and echo fields, the flow generators
(RNG state, resting list, mid, config, and the delay drawn for the next step:
the daemon draws it before it sleeps, so there always is one), the
market-data file's position, counters and stock locates, the queue model's
whole state when our orders are matched by it (`exchange.md_file_model =
"queue"`: `PaperVenue.state`; the file itself is read again up to its
position on a restart), and each stream's length and size. The streams
themselves are not in it: they are in their files, which hold every message
from sequence 1, so a restarted venue still serves any sequence number; the
checkpoint says how many messages each file held, and the restart cuts off
what a file holds beyond that (the replay after the checkpoint appends it
again, byte for byte). The files are checked where
the checkpoint ends (sizes, the last offset, a crc of the last 4 KiB), not
byte for byte: that would cost a read of the whole day at every restart.

When (the daemon, `hftd.exchange.daemon`): `capture` runs in the venue's own
thread between two inputs (the state is consistent there; it costs the time to
walk the books and encode them, ~ms), `write` in a worker thread: it makes the
streams and the journal durable first (per the journal's fsync policy), then
writes `checkpoint.tmp`, fsyncs it and renames it over `checkpoint`, so a
crash leaves the old checkpoint or the new one, never half of one.

A restart (`hftd.exchange.journal.open_venue`) that cannot use the checkpoint
(missing, unreadable, another venue's, another journal position, stream files
that do not hold what it says) replays the whole journal into a new
generation of stream files, and says so in the log.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from hftd.config import FlowConfig
from hftd.exchange.engine import Level, Order
from hftd.exchange.paper import PaperState
from hftd.exchange.stream import FileStore, StreamMeta
from hftd.exchange.venue import OrderExtras, UserState
from hftd.runtime.journal import RecordRef

if TYPE_CHECKING:
    from hftd.exchange.journal import JournaledVenue

VERSION: Final = 1
CHECKPOINT: Final = "checkpoint"
UNUSABLE: Final = "checkpoint.unusable"
_TMP: Final = "checkpoint.tmp"
_MAGIC: Final = b"HFTDVCK\x01"
_HEADER: Final = struct.Struct(">8sQI")  # magic, payload length, crc32 of the payload
_GENERATION = re.compile(r"^streams\.([0-9]{1,9})$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used (the message says why); the journal can."""


# --- the format ---------------------------------------------------------------------

# An order as the engine holds it: order_ref, owner, user_ref, symbol, side,
# wire_side, price, open_qty, tif.
_OrderState = tuple[int, str, int, str, str, str, int, int, str]
_Levels = list[tuple[int, list[int]]]  # (price, order references oldest first), best first


class BookState(msgspec.Struct, frozen=True, array_like=True):
    symbol: str
    bids: _Levels
    asks: _Levels


class UserCheckpoint(msgspec.Struct, frozen=True, array_like=True):
    name: str
    last_user_ref: int
    live: list[tuple[int, int]]  # UserRefNum -> order reference, in order
    broken: list[int]  # match numbers of broken trades


class FlowCheckpoint(msgspec.Struct, frozen=True, array_like=True):
    cfg: FlowConfig
    mid_ticks: float
    rng: tuple[int, list[int], float | None]  # random.Random.getstate()
    resting: list[int]
    drawn: float | None  # the next step's delay, drawn already (JournaledVenue.drawn)


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    identity: bytes  # the journal's `VenueIdentity`, encoded: a checkpoint of this venue
    journal: RecordRef  # the last journal record it covers
    records: int  # journal records it covers
    generation: int  # its streams are in streams.<generation>/
    streams: list[StreamMeta]
    # JournaledVenue
    begun: bool
    started: bool
    ended: bool
    inputs: int
    clock_now: int
    file_pos: int
    flows: list[FlowCheckpoint]
    # the engine
    next_order_ref: int
    next_match_number: int
    orders: list[_OrderState]  # engine.orders, in its order
    books: list[BookState]
    # the venue
    extras: list[tuple[int, OrderExtras]]
    users: list[UserCheckpoint]
    last_trade: dict[str, int]
    counters: dict[str, int]
    file_locate: dict[int, str]
    file_counters: dict[str, int]
    paper: PaperState | None = None  # the queue model and our orders in it


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Checkpoint).decode


def capture(jv: JournaledVenue, identity: bytes, generation: int, records: int) -> bytes:
    """`jv`'s state now, encoded; between two inputs, in the thread that applies them.
    Flushes the streams to their files (their metas say what the files hold)."""
    journal = jv.journal
    store = jv.venue.store
    if journal is None or not isinstance(store, FileStore):
        raise ValueError("only a venue with a journal and file-backed streams checkpoints")
    last = journal.last_record()
    if last is None:
        raise ValueError("nothing journaled yet")
    v, engine = jv.venue, jv.venue.engine
    ck = Checkpoint(
        version=VERSION,
        identity=identity,
        journal=last,
        records=records,
        generation=generation,
        streams=store.metas_now(),
        begun=jv.begun,
        started=jv.started,
        ended=jv.ended,
        inputs=jv.inputs,
        clock_now=jv.clock.now,
        file_pos=jv.file_pos,
        flows=[
            FlowCheckpoint(g.cfg, g.mid_ticks, _rng_state(g.rng.getstate()), list(g.resting), drawn)
            for g, drawn in zip(jv.flows, jv.drawn, strict=True)
        ],
        next_order_ref=engine.next_order_ref,
        next_match_number=engine.next_match_number,
        orders=[
            (
                o.order_ref,
                o.owner,
                o.user_ref,
                o.symbol,
                o.side,
                o.wire_side,
                o.price,
                o.open_qty,
                o.tif,
            )
            for o in engine.orders.values()
        ],
        books=[
            BookState(
                symbol,
                [(p, list(b.bids[p].orders)) for p in reversed(b.bid_prices)],
                [(p, list(b.asks[p].orders)) for p in b.ask_prices],
            )
            for symbol, b in engine.books.items()
        ],
        extras=list(v.extras.items()),
        users=[
            UserCheckpoint(name, st.last_user_ref, list(st.live.items()), sorted(st.fills.broken))
            for name, st in v.users.items()
        ],
        last_trade=dict(v.last_trade),
        counters=dict(v.counters),
        file_locate=dict(v.file_locate),
        file_counters=dict(v.file_counters),
        paper=v.paper.state() if v.paper is not None else None,
    )
    payload = _encode(ck)
    return _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _rng_state(state: tuple[object, ...]) -> tuple[int, list[int], float | None]:
    version, internal, gauss = state
    assert isinstance(version, int) and isinstance(internal, tuple)
    assert gauss is None or isinstance(gauss, float)
    return version, list(internal), gauss


def decode(blob: bytes) -> Checkpoint:
    """A checkpoint file's content; CheckpointError naming what is wrong with it."""
    if len(blob) < _HEADER.size:
        raise CheckpointError(f"{len(blob)} bytes: shorter than a header")
    magic, length, crc = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise CheckpointError("not a venue checkpoint (or another format)")
    payload = memoryview(blob)[_HEADER.size :]
    if len(payload) != length:
        raise CheckpointError(f"{len(payload)} bytes of payload, the header says {length}")
    if zlib.crc32(payload) != crc:
        raise CheckpointError("bad checksum")
    try:
        ck = _decode(payload)
    except msgspec.DecodeError as exc:
        raise CheckpointError(f"cannot decode it: {exc}") from exc
    if ck.version != VERSION:
        raise CheckpointError(f"format {ck.version}, this code reads {VERSION}")
    return ck


def restore(jv: JournaledVenue, ck: Checkpoint) -> None:
    """Put `ck`'s state into `jv`, a new venue whose store opened `ck`'s streams.
    CheckpointError if the checkpoint does not add up."""
    if len(ck.flows) != len(jv.flows):
        raise CheckpointError(f"{len(ck.flows)} flow generators for {len(jv.flows)} symbols")
    jv.begun, jv.started, jv.ended = ck.begun, ck.started, ck.ended
    jv.inputs, jv.clock.now, jv.file_pos = ck.inputs, ck.clock_now, ck.file_pos
    for g, f in zip(jv.flows, ck.flows, strict=True):
        g.cfg, g.mid_ticks, g.resting = f.cfg, f.mid_ticks, list(f.resting)
        g.rng.setstate((f.rng[0], tuple(f.rng[1]), f.rng[2]))
    jv.drawn = [f.drawn for f in ck.flows]
    v, engine = jv.venue, jv.venue.engine
    engine.next_order_ref, engine.next_match_number = ck.next_order_ref, ck.next_match_number
    orders = engine.orders
    for t in ck.orders:
        orders[t[0]] = Order(*t)
    booked = 0
    for bs in ck.books:
        book = engine.books.get(bs.symbol)
        if book is None:
            raise CheckpointError(f"a book for {bs.symbol!r}, not a symbol of this venue")
        for levels, side, prices, sides in (
            (bs.bids, "B", book.bid_prices, book.bids),
            (bs.asks, "S", book.ask_prices, book.asks),
        ):
            for price, refs in levels:
                level = Level(price)
                for ref in refs:
                    o = orders.get(ref)
                    if o is None or o.side != side or o.price != price or o.symbol != bs.symbol:
                        raise CheckpointError(f"order {ref} is in the book but not as that")
                    level.orders[ref] = o
                    level.total += o.open_qty
                sides[price] = level
                prices.append(price)
                booked += len(refs)
            prices.sort()
    if booked != len(orders):
        raise CheckpointError(f"{len(orders)} resting orders, {booked} in the books")
    v.extras = dict(ck.extras)
    store = v.store
    for u in ck.users:
        st = v.users[u.name] = UserState(store, u.name)
        st.last_user_ref, st.live = u.last_user_ref, dict(u.live)
        st.fills.broken = set(u.broken)
    v.last_trade, v.counters = dict(ck.last_trade), dict(ck.counters)
    v.file_locate, v.file_counters = dict(ck.file_locate), dict(ck.file_counters)
    if (v.paper is None) != (ck.paper is None):
        raise CheckpointError("the queue model in one of the checkpoint and the venue only")
    if v.paper is not None and ck.paper is not None:
        try:
            v.paper.restore(ck.paper)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"its queue model: {exc}") from exc
    if jv.recorded is not None:
        jv.recorded.skip_to(ck.file_pos)  # MdFileError if the file ends before
    if isinstance(store, FileStore) and set(store.streams) != {m.name for m in ck.streams}:
        raise CheckpointError(
            f"streams {sorted(m.name for m in ck.streams)}, the venue has {sorted(store.streams)}"
        )


# --- where checkpoints live ----------------------------------------------------------


def state_dir(journal_path: Path) -> Path:
    """<day>/exchange.state beside <day>/exchange.journal."""
    return journal_path.with_name(journal_path.stem + ".state")


class StateDir:
    """A journal's state directory: its checkpoint and its stream generations."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[Checkpoint | None, str]:
        """(the checkpoint, "") or (None, why none: "" if there is none at all)."""
        try:
            blob = (self.path / CHECKPOINT).read_bytes()
        except FileNotFoundError:
            return None, ""
        except OSError as exc:
            return None, f"cannot read it: {exc.strerror or exc}"
        try:
            return decode(blob), ""
        except CheckpointError as exc:
            return None, str(exc)

    def streams(self, generation: int) -> Path:
        return self.path / f"streams.{generation}"

    def new_generation(self) -> int:
        """A new, empty streams directory; the others are removed (a full replay
        rebuilds every stream, so they are no use; a process of this journal that
        still has them open keeps reading them)."""
        self.path.mkdir(mode=0o700, exist_ok=True)
        gens = self.generations()
        gen = max(gens, default=0) + 1
        self.streams(gen).mkdir(mode=0o700)
        for old in gens:
            shutil.rmtree(self.streams(old), ignore_errors=True)
        return gen

    def generations(self) -> list[int]:
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _GENERATION.match(n)))

    def drop_others(self, generation: int) -> None:
        """Remove stream generations other than `generation` (left by a crash)."""
        for old in self.generations():
            if old != generation:
                shutil.rmtree(self.streams(old), ignore_errors=True)

    def set_aside(self) -> None:
        """Keep an unusable checkpoint as checkpoint.unusable (for a look), so that
        no later start tries it again."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path / CHECKPOINT, self.path / UNUSABLE)

    def write(self, blob: bytes, durable: bool) -> None:
        """Replace the checkpoint with `blob`, atomically (temp file, fsync, rename)."""
        tmp = self.path / _TMP
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
        )
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path / CHECKPOINT)
        if durable:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class Checkpointer:
    """Writes one journaled venue's checkpoints: `capture` in the venue's thread,
    `write` in any thread (one at a time)."""

    def __init__(
        self,
        jv: JournaledVenue,
        states: StateDir,
        generation: int,
        identity: bytes,
        records_before: int,
        covered: int,
    ) -> None:
        self.jv = jv
        self.states = states
        self.generation = generation
        self.identity = identity
        self.records_before = records_before  # journal records before this process appended
        self.covered = covered  # journal records the latest checkpoint covers
        self.written = 0  # checkpoints written by this process
        self.pause_s = 0.0  # the last capture's time in the venue's thread
        self.write_s = 0.0  # the last write's time (worker thread)
        self.bytes = 0  # the last checkpoint's size

    @property
    def records(self) -> int:
        """Journal records now (before this process, and appended since)."""
        journal = self.jv.journal
        return self.records_before + (journal.records if journal is not None else 0)

    @property
    def pending(self) -> int:
        """Journal records the latest checkpoint does not cover."""
        return self.records - self.covered

    def capture(self) -> tuple[bytes, int]:
        """(the checkpoint, the records it covers): in the venue's thread."""
        t0 = time.perf_counter()
        records = self.records
        blob = capture(self.jv, self.identity, self.generation, records)
        self.pause_s = time.perf_counter() - t0
        return blob, records

    def write(self, blob: bytes, records: int) -> None:
        """Make the streams and the journal durable, then the checkpoint (worker thread)."""
        t0 = time.perf_counter()
        journal = self.jv.journal
        durable = journal is not None and journal.fsync != "never"
        store = self.jv.venue.store
        if durable:
            if isinstance(store, FileStore):
                store.sync()
            assert journal is not None
            journal.sync()
        self.states.write(blob, durable)
        self.covered = max(self.covered, records)
        self.written += 1
        self.bytes = len(blob)
        self.write_s = time.perf_counter() - t0

    def checkpoint(self) -> None:
        """`capture` then `write`, in this thread (tests, benchmarks, a clean stop)."""
        blob, records = self.capture()
        self.write(blob, records)

    def statistics(self) -> dict[str, float | int]:
        return {
            "checkpoints": self.written,
            "checkpoint_records": self.covered,
            "checkpoint_pending": self.pending,
            "checkpoint_pause_ms": round(self.pause_s * 1000, 3),
            "checkpoint_write_ms": round(self.write_s * 1000, 3),
            "checkpoint_bytes": self.bytes,
        }
