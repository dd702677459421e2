"""The exchange's write-ahead journal: every venue input, replayed on restart.

A SIGKILLed exchange must come back with the same books and the same
sequenced streams, or sequence-number recovery by the gateway and the feed
means nothing. The venue is deterministic given its inputs and the clock
value each input saw, so `JournaledVenue` appends every input with its
timestamp to a `hftd.runtime.journal.Journal` *before* applying it, and a
restart applies the same records through the same code paths: the OUCH and
ITCH streams come out byte-identical, so a client re-logging in from
sequence N gets exactly what it would have got without the crash.

Records (msgpack arrays, tag first), in the order they happened::

    ["B", version, identity, flows]  first record: what the venue is (symbols,
                                     users, seed, limits) and each symbol's flow config
    ["S", ts]                        start of day
    ["I", ts, user, raw, pos]        one inbound OUCH message (raw bytes as received), and
                                     how many market-data file messages were played before
                                     it (a replay checks it; -1 in journals before it)
    ["F", ts, index]                 one synthetic flow step for symbols[index]
    ["P", index, flow]               symbols[index]'s flow config changed (reload)
    ["E", ts]                        end of day (a later "S" reopens the venue)
    ["V", ts, user, kind, number, raw]  a venue-side event put into a user's OUCH
                                     stream (`Venue.venue_event`: a test and drill hook)
    ["M", ts, count]                 the next `count` messages of the market-data file
                                     played (`exchange.md_file`; its sha256 is in Begin;
                                     with the queue model, `count` items of the
                                     `RecordedMarket`: updates of `open_source(file)`)

Why this is enough:
- The clock is a `StepClock` holding one value per input: every timestamp an
  input stamps (OUCH replies, ITCH messages, fills) is the journaled `ts`.
- Users' OUCH streams open at start of day, so logins and snapshots change
  nothing; latency injection happens before an input is journaled.
- A flow step is `next_delay()` then `next_action()` on the symbol's seeded
  generator, then the venue, then `rested()`; replay takes the same draws
  (`next_delay` consumes one random number whatever the rate) with the
  journaled flow config, so the generator's RNG and resting list match too.

An input journaled but not applied when the process died is applied by the
replay: its replies are then in the streams for the client to fetch.

With `exchange.md_file_model = "queue"` the journal is the same: file steps and
our orders interleaved as they were applied, so the queue model is rebuilt
exactly (every order reaches it at the file position it did live, which each
"I" record also says). The file is read again from its start on a restart
(`RecordedMarket.skip_to`, after a checkpoint): neither ITCH nor LOBSTER can
seek to a message.

A restart does not replay the whole day: `open_venue` loads the day's latest
checkpoint of the venue (`hftd.exchange.checkpoint`) and replays only the
records after it (all of them when there is no usable checkpoint). The
venue's sequenced streams are in files beside the journal (`FileStore`), so a
long day keeps the process the same size and the streams serve every
sequence number from 1 after a restart.

A journal belongs to one trading day (`hftd.runtime.days`); a clean stop
journals nothing, so continuing a day after `hftd up` stopped is replaying
it as after a crash. A day continued after an end of day (`end_of_day`)
replays as closed (`started` False): the daemon then journals a new start
of day, which reopens the venue (ITCH `S O` again, OUCH System Event `S`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import msgspec

from hftd.config import FlowConfig, HftdConfig
from hftd.exchange.checkpoint import (
    CHECKPOINT,
    Checkpoint,
    Checkpointer,
    StateDir,
    restore,
    state_dir,
)
from hftd.exchange.flow import FlowCancel, FlowGenerator
from hftd.exchange.mdfile import MdFile, MdFileError
from hftd.exchange.recorded import RecordedMarket
from hftd.exchange.stream import FileStore, StreamStore
from hftd.exchange.venue import Venue
from hftd.runtime.days import exchange_journal_path
from hftd.runtime.journal import Journal, TornInfo
from hftd.runtime.rundir import RunDirError
from hftd.wire import itch, ouch

log = logging.getLogger("hftd.exchange")

VERSION: Final = 1


class StepClock:
    """The venue's clock: the timestamp of the input being applied."""

    __slots__ = ("now",)

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class JournalMismatch(Exception):
    """The journal is not this venue's (other symbols, users or seed), or not a journal."""


# --- records ------------------------------------------------------------------------


class VenueIdentity(msgspec.Struct, frozen=True, array_like=True):
    """The config a journal's replay depends on and that cannot change live."""

    symbols: list[tuple[str, int, int, int]]  # symbol, reference price, tick, round lot
    users: list[str]
    max_order_size: int
    flow_seed: int
    md_file: str = ""  # sha256 of the market-data file played ("": synthetic flow)
    md_file_model: str = ""  # "queue": our orders in the queue model ("": the engine's books)

    @classmethod
    def of(cls, cfg: HftdConfig, md_file: str = "") -> VenueIdentity:
        queue = md_file and cfg.exchange.md_file_model == "queue"
        return cls(
            [(s.symbol, s.reference_price_fp, s.tick_fp, s.round_lot) for s in cfg.symbols],
            [u.username for u in cfg.exchange.users],
            cfg.exchange.max_order_size,
            cfg.exchange.flow_seed,
            md_file,
            "queue" if queue else "",
        )


class Begin(msgspec.Struct, tag="B", frozen=True, array_like=True):
    version: int
    identity: VenueIdentity
    flows: list[FlowConfig]  # per symbol, in config order


class StartOfDay(msgspec.Struct, tag="S", frozen=True, array_like=True):
    ts: int


class Inbound(msgspec.Struct, tag="I", frozen=True, array_like=True):
    ts: int
    user: str
    raw: bytes  # the OUCH message as received
    pos: int = -1  # market-data file messages played before it (-1: not recorded)


class FlowStep(msgspec.Struct, tag="F", frozen=True, array_like=True):
    ts: int
    index: int  # into cfg.symbols


class FlowParams(msgspec.Struct, tag="P", frozen=True, array_like=True):
    index: int
    flow: FlowConfig


class EndOfDay(msgspec.Struct, tag="E", frozen=True, array_like=True):
    ts: int


class VenueEvent(msgspec.Struct, tag="V", frozen=True, array_like=True):
    ts: int
    user: str
    kind: str  # hftd.exchange.venue.EVENTS
    number: int  # match number or UserRefNum
    raw: bytes


class FileStep(msgspec.Struct, tag="M", frozen=True, array_like=True):
    ts: int
    count: int  # the next this many messages of the market-data file


Record = Begin | StartOfDay | Inbound | FlowStep | FlowParams | EndOfDay | VenueEvent | FileStep

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


# --- the journaled venue --------------------------------------------------------------


class JournaledVenue:
    """A `Venue` and its flow generators; each input is journaled, then applied.

    Without a journal it is the same venue, unrecorded (tests, backtests).
    """

    def __init__(
        self,
        cfg: HftdConfig,
        clock_ns: Callable[[], int],
        journal: Journal | None = None,
        md_file: MdFile | None = None,
        store: StreamStore | None = None,
        recorded: RecordedMarket | None = None,
    ) -> None:
        self.cfg = cfg
        self.live_clock = clock_ns
        self.clock = StepClock()
        self.venue = Venue(cfg, self.clock, store)
        self.md_file = md_file  # played instead of the synthetic flow (the book model)
        # ... or this one, our orders in the queue model (md_file_model = "queue")
        self.recorded = recorded
        self.file_pos = 0  # messages of md_file (items of recorded) played
        if md_file is not None:
            self.venue.attach_file(md_file.max_order_ref, md_file.max_match_number)
        if recorded is not None:
            self.venue.attach_paper()
        self.flows = [
            FlowGenerator(
                cfg.flow_for(s.symbol),
                s.reference_price_fp,
                s.tick_fp,
                s.round_lot,
                cfg.exchange.flow_seed * 7919 + i,
            )
            for i, s in enumerate(cfg.symbols)
        ]
        # The delay drawn for each symbol's next flow step, not taken yet (the daemon
        # draws it, then sleeps): a checkpoint keeps it, so the generator's RNG after
        # a restart is where it would be without one.
        self.drawn: list[float | None] = [None] * len(self.flows)
        self.journal = journal
        self.begun = False
        self.started = False  # open: a start of day and no end of day after it
        self.ended = False  # closed by an end of day (a start of day reopens it)
        self.inputs = 0  # applied, replayed ones included
        self.checkpointer: Checkpointer | None = None  # set by open_venue

    def identity(self) -> VenueIdentity:
        return VenueIdentity.of(self.cfg, _digest(self.md_file, self.recorded))

    def close(self) -> None:
        """Close the journal and the stream files (a stop; tests)."""
        if self.journal is not None:
            self.journal.close()
        store = self.venue.store
        if isinstance(store, FileStore):
            store.close()

    def _now(self) -> int:
        """The live clock, never behind the last input's timestamp."""
        ts = self.live_clock()
        return ts if ts > self.clock.now else self.clock.now

    def _record(self, rec: Record) -> None:
        if self.journal is not None:
            self.journal.append(_encode(rec))

    # --- live inputs: journal, then apply ----------------------------------------------

    def begin(self) -> None:
        """Write the journal's first record (a new journal only)."""
        if self.begun:
            raise RuntimeError("journal already begun")
        self._apply(Begin(VERSION, self.identity(), [g.cfg for g in self.flows]))

    def start_of_day(self) -> None:
        self._apply(StartOfDay(self._now()))

    def end_of_day(self) -> None:
        self._apply(EndOfDay(self._now()))

    def handle(self, user: str, raw: bytes, msg: ouch.Inbound | None = None) -> None:
        """Apply one OUCH message from `user`; `msg` is `raw` decoded, if already done.

        RemoteProtocolError (raw is not OUCH) is raised before anything is journaled.
        """
        if msg is None:
            msg = ouch.decode_inbound(raw)
        ts = self._now()
        self._record(Inbound(ts, user, raw, self.file_pos))
        self._inbound(ts, user, msg)

    def venue_event(self, user: str, kind: str, number: int, raw: bytes = b"") -> None:
        """A venue-side event into `user`'s OUCH stream (`Venue.venue_event`, a test
        hook); ValueError, with nothing journaled, if it cannot be applied."""
        problem = self.venue.event_problem(user, kind, number, raw)
        if problem:
            raise ValueError(problem)
        self._apply(VenueEvent(self._now(), user, kind, number, raw))

    def next_flow_delay(self, index: int) -> float:
        """Seconds until symbols[index]'s next flow step (drawn once per step: asked
        again before the step, the same delay)."""
        delay = self.drawn[index]
        if delay is None:
            delay = self.drawn[index] = self.flows[index].next_delay()
        return delay

    def flow_step(self, index: int) -> None:
        """One synthetic flow action for symbols[index] (after `next_flow_delay`)."""
        ts = self._now()
        self._record(FlowStep(ts, index))
        self._flow_step(ts, index)

    def file_step(self, count: int) -> None:
        """Play the next `count` messages of the market-data file (all at one timestamp).
        With the queue model they are read first (MdFileError if the file is broken
        there: nothing is journaled), and fewer are played at the file's end."""
        ts = self._now()
        if self.recorded is None:
            self._record(FileStep(ts, count))
            self._file_step(ts, count)
            return
        items = self.recorded.take(count)
        self._record(FileStep(ts, len(items)))
        self._play_recorded(ts, items)

    def _file_step(self, ts: int, count: int) -> None:
        if self.recorded is not None:
            items = self.recorded.take(count)
            if len(items) < count:
                raise JournalMismatch(
                    f"the journal plays {count} messages of the file from {self.file_pos}, "
                    f"it has {len(items)} there"
                )
            self._play_recorded(ts, items)
            return
        if self.md_file is None:
            raise JournalMismatch("the journal plays a market-data file: set exchange.md_file")
        self.clock.now = ts
        self.inputs += 1
        end = min(self.file_pos + count, len(self.md_file))
        play = self.venue.play_file_message
        for raw in self.md_file.messages[self.file_pos : end]:
            play(raw)
        self.file_pos = end

    def _play_recorded(self, ts: int, items: list[itch.ItchMessage | None]) -> None:
        self.clock.now = ts
        self.inputs += 1
        play = self.venue.play_recorded
        for msg in items:
            play(msg)
        self.file_pos += len(items)

    def set_flow(self, index: int, flow: FlowConfig) -> bool:
        """Change symbols[index]'s flow config; False if it is unchanged."""
        if flow == self.flows[index].cfg:
            return False
        self._apply(FlowParams(index, flow))
        return True

    def _apply(self, rec: Record) -> None:
        self._record(rec)
        self._replay_one(rec)

    # --- applying (live and replay share these) -----------------------------------------

    def _inbound(self, ts: int, user: str, msg: ouch.Inbound) -> None:
        self.clock.now = ts
        self.inputs += 1
        self.venue.handle(user, msg)

    def _flow_step(self, ts: int, index: int) -> None:
        self.clock.now = ts
        self.inputs += 1
        gen = self.flows[index]
        if self.drawn[index] is None:  # a replay: the step's delay was drawn first
            gen.next_delay()
        self.drawn[index] = None
        action = gen.next_action()
        if isinstance(action, FlowCancel):
            self.venue.flow_cancel(action.order_ref)
        else:
            ref = self.venue.flow_enter(
                self.cfg.symbols[index].symbol,
                action.side,
                action.quantity,
                action.price,
                action.tif,
            )
            if ref is not None:
                gen.rested(ref)

    def _replay_one(self, rec: Record) -> None:
        if isinstance(rec, Inbound):
            if rec.pos >= 0 and rec.pos != self.file_pos:
                raise JournalMismatch(
                    f"an order journaled after {rec.pos} messages of the file, replayed "
                    f"after {self.file_pos}"
                )
            self._inbound(rec.ts, rec.user, ouch.decode_inbound(rec.raw))
        elif isinstance(rec, FlowStep):
            self._flow_step(rec.ts, rec.index)
        elif isinstance(rec, Begin):
            self._begin(rec)
        elif isinstance(rec, StartOfDay):
            self.clock.now = rec.ts
            self.inputs += 1
            told_end = list(self.venue.users.values()) if self.ended else []
            self.venue.start_of_day()
            for user in told_end:  # reopened: users whose stream said end of day
                user.stream.append(ouch.encode_outbound(ouch.SystemEventMsg(rec.ts, "S")))
            self.started, self.ended = True, False
        elif isinstance(rec, FlowParams):
            self.flows[rec.index].cfg = rec.flow
        elif isinstance(rec, FileStep):
            self._file_step(rec.ts, rec.count)
        elif isinstance(rec, VenueEvent):
            self.clock.now = rec.ts
            self.inputs += 1
            self.venue.venue_event(rec.user, rec.kind, rec.number, rec.raw)
        else:
            self.clock.now = rec.ts
            self.inputs += 1
            self.venue.end_of_day()
            self.started, self.ended = False, True

    def _begin(self, rec: Begin) -> None:
        if self.begun:
            raise JournalMismatch("a second Begin record")
        if rec.version != VERSION:
            raise JournalMismatch(f"journal format {rec.version}, this code reads {VERSION}")
        mine = self.identity()
        if rec.identity != mine:
            diff = [
                f"{f}: journal {getattr(rec.identity, f)!r}, config {getattr(mine, f)!r}"
                for f in mine.__struct_fields__
                if getattr(rec.identity, f) != getattr(mine, f)
            ]
            raise JournalMismatch("written for another venue: " + "; ".join(diff))
        for gen, flow in zip(self.flows, rec.flows, strict=True):
            gen.cfg = flow
        self.begun = True

    # --- replay -----------------------------------------------------------------------

    def replay(self, records: Iterable[bytes], *, begun: bool = False) -> int:
        """Apply journaled records (not journaling them again); returns how many.
        `begun`: they follow a checkpoint (the first is not the journal's Begin)."""
        n = 0
        for payload in records:
            try:
                rec = _decode(payload)
            except msgspec.DecodeError as exc:
                raise JournalMismatch(f"record {n + 1} is not an exchange record: {exc}") from exc
            if n == 0 and not begun and not isinstance(rec, Begin):
                raise JournalMismatch("first record is not Begin: not an exchange journal")
            self._replay_one(rec)
            n += 1
        return n


class Recovery(msgspec.Struct, frozen=True):
    """What opening the journal found and did."""

    path: str
    records: int  # replayed (after the checkpoint, if one was used)
    inputs: int  # venue inputs applied in all (the checkpoint's included)
    seconds: float
    torn: TornInfo | None  # the torn tail that was cut off
    checkpoint: int = 0  # journal records the checkpoint used covered (0: none used)
    checkpoint_problem: str = ""  # why the checkpoint there was not used ("": none)


def _digest(md_file: MdFile | None, recorded: RecordedMarket | None) -> str:
    if md_file is not None:
        return md_file.digest
    return recorded.digest if recorded is not None else ""


def load_md_file(cfg: HftdConfig) -> MdFile | None:
    """The market-data file `exchange.md_file` names for the book model, parsed (None
    if it names none, or the queue model plays it: `load_recorded`). Raises
    MdFileError if it cannot be read or is not a BinaryFILE."""
    if not cfg.exchange.md_file or cfg.exchange.md_file_model == "queue":
        return None
    path = Path(cfg.exchange.md_file).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MdFileError(f"cannot read {path}: {exc.strerror}") from exc
    return MdFile.parse(data)


def load_recorded(cfg: HftdConfig) -> RecordedMarket | None:
    """The recorded day `exchange.md_file` names for the queue model (None if it names
    none, or the book model plays it). MdFileError if it is neither ITCH nor LOBSTER
    or cannot be read."""
    if not cfg.exchange.md_file or cfg.exchange.md_file_model != "queue":
        return None
    return RecordedMarket(Path(cfg.exchange.md_file).expanduser(), [s.symbol for s in cfg.symbols])


def open_venue(
    cfg: HftdConfig, clock_ns: Callable[[], int], path: Path | None = None
) -> tuple[JournaledVenue, Recovery]:
    """The venue rebuilt from the current trading day's journal (or `path`), journaling on.

    From the day's checkpoint and the journal after it if there is a usable one
    (`hftd.exchange.checkpoint`), else from the whole journal (saying why in the
    log); its streams in files beside the journal either way. A journal is never
    discarded: a new trading day (`hftd day new`) has a new one. Raises
    JournalCorrupt or JournalMismatch if the journal cannot be replayed, DayError
    or RunDirError if there is no usable trading day, MdFileError if
    `exchange.md_file` cannot be played.
    """
    if path is None:
        path = exchange_journal_path(cfg)
    t0 = time.perf_counter()
    md_file = load_md_file(cfg)
    states = StateDir(state_dir(path))
    ck, problem = states.load()
    recorded = load_recorded(cfg)
    identity = _encode(VenueIdentity.of(cfg, _digest(md_file, recorded)))
    if ck is not None and ck.identity != identity:
        ck, problem = None, "written for another venue (symbols, users, seed or md_file)"
    if ck is not None:
        try:
            return _resume(cfg, clock_ns, path, md_file, recorded, states, ck, identity, t0)
        except (RunDirError, MdFileError):
            raise
        except Exception as exc:  # whatever it is, the whole journal can do without it
            problem = f"{type(exc).__name__}: {exc}"
    if problem:
        log.warning(
            "checkpoint %s unusable (%s): replaying the whole journal",
            states.path / CHECKPOINT,
            problem,
        )
    if recorded is not None and ck is not None:  # the resume may have read some of it
        recorded = recorded.fresh()
    return _replay_all(cfg, clock_ns, path, md_file, recorded, states, identity, t0, problem)


def _resume(
    cfg: HftdConfig,
    clock_ns: Callable[[], int],
    path: Path,
    md_file: MdFile | None,
    recorded: RecordedMarket | None,
    states: StateDir,
    ck: Checkpoint,
    identity: bytes,
    t0: float,
) -> tuple[JournaledVenue, Recovery]:
    """The venue from checkpoint `ck` and the journal records after it."""
    ex = cfg.exchange
    journal, records = Journal.recover(path, ex.journal_fsync, ex.journal_batch_s, after=ck.journal)
    store: FileStore | None = None
    try:
        store = FileStore(states.streams(ck.generation), {m.name: m for m in ck.streams})
        jv = JournaledVenue(cfg, clock_ns, journal, md_file, store, recorded)
        restore(jv, ck)
        n = jv.replay(records, begun=True)
        del records
        states.drop_others(ck.generation)
        jv.checkpointer = Checkpointer(
            jv, states, ck.generation, identity, ck.records + n, ck.records
        )
        _flows_from_config(jv)
    except BaseException:
        journal.close()
        if store is not None:
            store.close()
        raise
    rec = Recovery(str(path), n, jv.inputs, time.perf_counter() - t0, journal.torn, ck.records)
    return jv, rec


def _replay_all(
    cfg: HftdConfig,
    clock_ns: Callable[[], int],
    path: Path,
    md_file: MdFile | None,
    recorded: RecordedMarket | None,
    states: StateDir,
    identity: bytes,
    t0: float,
    problem: str,
) -> tuple[JournaledVenue, Recovery]:
    """The venue from the whole journal, its streams in a new generation of files."""
    ex = cfg.exchange
    journal, records = Journal.recover(path, ex.journal_fsync, ex.journal_batch_s)
    store: FileStore | None = None
    try:
        states.set_aside()
        gen = states.new_generation()
        store = FileStore(states.streams(gen))
        jv = JournaledVenue(cfg, clock_ns, journal, md_file, store, recorded)
        n = jv.replay(records)
        del records
        if not jv.begun:
            jv.begin()
        jv.checkpointer = Checkpointer(jv, states, gen, identity, n, 0)
        _flows_from_config(jv)
    except BaseException:
        journal.close()
        if store is not None:
            store.close()
        raise
    rec = Recovery(str(path), n, jv.inputs, time.perf_counter() - t0, journal.torn, 0, problem)
    return jv, rec


def _flows_from_config(jv: JournaledVenue) -> None:
    for i, s in enumerate(jv.cfg.symbols):  # a reload the journal does not know of
        if jv.set_flow(i, jv.cfg.flow_for(s.symbol)):
            log.info("flow config of %s differs from the journal's: now the config's", s.symbol)
