"""Warming passes: the hot path's code run on canned data while it waits.

Why: on this kind of machine (vCPUs shared with other tenants) time alone
evicts a process's code and data from the CPU caches. `bench/bench_cold.py`:
the same 11 µs of Python costs x6 after 12 ms asleep, x4.4 after 12 ms of
spinning, and x1.9 when the same code ran about every millisecond in between.
At the default synthetic flow the hot path runs every ~12 ms, and every
stage of it cost 5-15x its warm figure (docs/performance.md, "Cold caches").

What: when the hot thread has had nothing to do for `[hotpath] warm_us`, it
runs one warming pass (`hftd.runtime.hotloop`): the feed frames and
normalizes a canned ITCH message and encodes it (the md ring's record); the
strategy takes the update, as the composite layout hands it over, through a
scratch `StrategyEngine` (books and strategies of the same classes and
config), making an order command; the gateway takes that command object
through a scratch `GatewayCore` (risk, order book-keeping, OUCH encode,
SoupBinTCP framing, T4 stamp), cancelled at once by a canned venue (an IOC's
Canceled) so that nothing accumulates. One pass flows through the
three parts of the composite layout; a part whose upstream is not attached
warms on canned input of its own. The split layout does not warm
(hftd.runtime.composite.SplitHost).

What it must never do: touch a socket, a ring of the system, a journal or
the real state. Only scratch objects are used (the ring code runs on rings
of the process's own, unlinked at once); every scratch order is cancelled in
the same pass (nothing accumulates); the log records the scratch code makes
are dropped (`hftd.runtime.log.warming`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from hftd.config import HftdConfig
from hftd.feed.normalize import Normalizer
from hftd.gateway.core import GatewayCore
from hftd.gateway.ouch_adapter import OuchAdapter
from hftd.ipc.ring import Ring
from hftd.msg.hot import (
    CMD_HEARTBEAT,
    CMD_NEW,
    EX_CANCELED,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.runtime.journal import Journal, frame
from hftd.strategy.engine import StrategyEngine
from hftd.wire import itch, ouch
from hftd.wire import soupbintcp as soup

_BASE_REF = 1 << 40  # scratch ITCH order references
_RING_CAPACITY = 1 << 16
_rings = itertools.count()


class ScratchRing:
    """A ring of this process's own (created, then unlinked at once: nothing is left
    in /dev/shm, even after a crash a moment later), so that a warming pass runs
    the ring's write and read code on a record as the hot path does."""

    def __init__(self, prefix: str) -> None:
        name = f"{prefix}-warm-{os.getpid()}-{next(_rings)}"
        self.ring = Ring.create(name, _RING_CAPACITY, mode=0o600)
        Ring.unlink(name)

    def through(self, record: bytes) -> bytes:
        """`record` written and read back (as the next stage would read it)."""
        ring = self.ring
        ring.try_write(record)
        out = ring.read()
        ring.commit()
        return out if out is not None else record


def _canned_itch(cfg: HftdConfig) -> Iterator[bytes]:
    """SoupBinTCP packets of ITCH messages for a scratch market, endlessly: a
    standing bid and ask per symbol once (an Add names its symbol), then per
    symbol in turn an order that improves the bid and trades away (the books
    change, strategies see a new mid and a trade)."""
    setup: list[bytes] = []
    loop: list[bytes] = []
    for i, s in enumerate(cfg.symbols):
        locate, px, tick = i + 1, s.reference_price_fp, s.tick_fp
        ref = _BASE_REF + 10 * i
        add = itch.AddOrder
        setup.append(itch.encode(add(locate, 0, 0, ref, "B", 500, s.symbol, px - tick)))
        setup.append(itch.encode(add(locate, 0, 0, ref + 1, "S", 500, s.symbol, px + tick)))
        loop.append(itch.encode(add(locate, 0, 0, ref + 2, "B", 100, s.symbol, px)))
        loop.append(itch.encode(itch.OrderExecuted(locate, 0, 0, ref + 2, 100, 1)))
    packets = [soup.sequenced(p) for p in setup], [soup.sequenced(p) for p in loop]
    return itertools.chain(packets[0], itertools.cycle(packets[1]))


def _canceled_payload(now: int, user_ref: int, qty: int) -> bytes:
    return ouch.encode_outbound(ouch.Canceled(now, user_ref, qty, ouch.CANCEL_IOC))


class FeedWarm:
    """The feed's stage: framing, normalizing and encoding, on canned packets."""

    def __init__(self, cfg: HftdConfig) -> None:
        self.session = soup.ClientSession()
        self.session.state = soup.State.ESTABLISHED
        self.packets = _canned_itch(cfg)
        self.ring = ScratchRing(cfg.rings.prefix)

    def run(self, norm: Normalizer, enc: msgspec.msgpack.Encoder) -> MarketDataUpdate:
        """The update of the next canned message, as the feed hands it over; its md
        record written and read through a ring of its own."""
        u: MarketDataUpdate | None = None
        for ev in self.session.iter_events(next(self.packets)):
            if type(ev) is soup.SequencedData:
                u = norm.update(ev.payload, ev.sequence, time.monotonic_ns())
                self.ring.through(enc.encode(u))
        assert u is not None  # every canned packet is one sequenced message
        return u


class StrategyWarm:
    """The strategy's stage on a scratch engine: books, strategies, one order."""

    def __init__(self, cfg: HftdConfig) -> None:
        self.sent: list[OrderCommand] = []
        self.now = 0
        self.engine = StrategyEngine(cfg, self._send, self._clock, run=1)
        self.cfg = cfg
        self.feed: FeedWarm | None = None  # its own input, made if no feed hands one over
        self.norm = Normalizer()
        self.order_at = {s.symbol: s.reference_price_fp for s in cfg.symbols}

    def _send(self, cmd: OrderCommand) -> bool:
        self.sent.append(cmd)
        return True

    def _clock(self) -> int:
        return self.now

    def run(self, u: MarketDataUpdate | None, enc: msgspec.msgpack.Encoder) -> OrderCommand | None:
        """The order command this pass made, as the strategy hands it to the gateway."""
        if u is None:
            if self.feed is None:
                self.feed = FeedWarm(self.cfg)
            u = self.feed.run(self.norm, enc)
        self.now += 1_000_000_000  # a second a pass: no cooldown holds an order back
        engine = self.engine
        engine.on_update(u)
        sent = self.sent
        if not any(c.kind == CMD_NEW for c in sent) and engine.contexts:
            # no signal this time: the order path is warmed all the same
            s = engine.contexts[self.now // 1_000_000_000 % len(engine.contexts)]
            if s.params.symbols:
                sym = s.params.symbols[0]
                s.om.new(
                    sym, "B", s.params.order_qty, self.order_at.get(sym, 1), ouch.TIF_IOC, u.t1
                )
        out = None
        for c in sent:
            if c.kind == CMD_NEW:
                out = c
                # the order is gone at once: nothing accumulates in the scratch engine
                engine.on_report(
                    ExecutionReport(
                        EX_CANCELED, c.cl_id, 0, c.symbol, c.side, c.qty, c.price, 0, 0, "", 0
                    )
                )
        sent.clear()
        return out


class ScratchJournal:
    """Writes as the journal appends (frame + write), into a file of no name on the
    journal's filesystem (O_TMPFILE: nothing appears in the day's directory, and it
    is gone when closed), so the kernel's write path on that filesystem is warmed
    too (~28 µs cold on the order's path, traced). Records go round a `SIZE` bytes
    region allocated once: no growth, truncation or block allocation afterwards
    (metadata work that could hold up the real journal's appends)."""

    SIZE = 1 << 16

    def __init__(self, directory: Path) -> None:
        self.fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(self.fd, 0, self.SIZE)
        except OSError:
            os.close(self.fd)
            raise
        self.offset = 0
        self.n = 0

    def append(self, payload: bytes) -> None:
        rec = frame(payload)
        if self.offset + len(rec) > self.SIZE:
            self.offset = 0
        os.pwrite(self.fd, rec, self.offset)
        self.offset += len(rec)
        self.n += 1

    def commit(self) -> None:
        """Appends are written at once: nothing waits."""

    def close(self) -> None:
        os.close(self.fd)


class GatewayWarm:
    """The gateway's stage on a scratch core, answered by a canned venue."""

    def __init__(self, cfg: HftdConfig) -> None:
        # the scratch risk and breaker never run out of order rate or cancels
        unlimited = 1 << 40
        risk = msgspec.structs.replace(
            cfg.risk,
            max_orders_per_s=unlimited,
            max_messages_per_s=unlimited,
            max_working_orders=unlimited,
        )
        breaker = msgspec.structs.replace(
            cfg.breaker,
            max_venue_rejects=unlimited,
            max_risk_rejects=unlimited,
            max_cancels=unlimited,
            md_stale_s=1e9,
        )
        scratch = msgspec.structs.replace(cfg, risk=risk, breaker=breaker)
        self.core = GatewayCore(scratch, time.monotonic_ns, OuchAdapter())
        self.journal: ScratchJournal | None = None  # `attach_journal`, once there is one
        self.core.venue_up = True
        self.core.on_command(
            OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0), time.monotonic_ns()
        )
        self.seq = 0
        self.cl_id = 0
        self.commands = itertools.cycle(
            [
                OrderCommand(
                    CMD_NEW, 0, s.symbol, "B", 100, s.reference_price_fp, "3", 0, "warm", 0, 0
                )
                for s in cfg.symbols
            ]
        )

    def attach_journal(self, journal: Journal | None) -> None:
        """Warm appends on the filesystem of the gateway's journal (none: no appends).
        One that cannot be made (no O_TMPFILE there) only goes without."""
        if journal is not None and self.journal is None:
            try:
                self.journal = ScratchJournal(Path(journal.path).parent)
            except OSError:
                self.journal = None
            self.core.journal = self.journal

    def run(self, c: OrderCommand | None) -> None:
        core = self.core
        now = time.monotonic_ns()
        if c is None:
            self.cl_id += 1
            c = msgspec.structs.replace(next(self.commands), cl_id=self.cl_id, t1=now, t2=now)
        core.on_command(c, now)
        if core.to_venue:
            b"".join(soup.unsequenced(p) for p in core.to_venue)
            core.to_venue.clear()
            core.stamp_sent(now)
            core.after_send()
        o = core.orders.get(c.cl_id)
        if o is not None:
            # The venue cancels it (an IOC that did not trade): it leaves the scratch
            # books. Only this much of the reply path: the rest is after T4, and the
            # pass is paid for in CPU time on every idle millisecond.
            self.seq += 1
            core.on_venue_payload(_canceled_payload(now, o.user_ref, o.qty), self.seq, now)
        core.reports.clear()
