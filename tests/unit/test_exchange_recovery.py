"""The exchange journal: a venue rebuilt from it is the venue that wrote it, byte for byte."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import HftdConfig, load_config
from hftd.exchange.journal import (
    JournaledVenue,
    JournalMismatch,
    open_venue,
)
from hftd.runtime.days import exchange_journal_path, open_day
from hftd.runtime.journal import Journal, JournalCorrupt, frame, read_all
from hftd.wire import itch, ouch
from tests.support import DEFAULT_CONFIG

USERS = ("HFTD", "TEST")


def config(tmp: Path, **exchange: Any) -> HftdConfig:
    cfg = load_config(DEFAULT_CONFIG)
    return msgspec.structs.replace(
        cfg,
        system=msgspec.structs.replace(
            cfg.system, run_dir=str(tmp), journal_dir=str(tmp / "journal")
        ),
        exchange=msgspec.structs.replace(cfg.exchange, **exchange),
    )


class FakeClock:
    """Nanoseconds that advance by a random step per call (sometimes not at all)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 34_200_000_000_000  # 09:30

    def __call__(self) -> int:
        self.now += self.rng.choice((0, 1, 137, 5_000, 1_000_000))
        return self.now


def no_clock() -> int:
    raise AssertionError("a replay must not read the live clock")


def state(jv: JournaledVenue) -> dict[str, Any]:
    """Everything a client or an operator can observe, plus the flow generators' state."""
    v = jv.venue
    return {
        "md": list(v.md.range(1, v.md.next_sequence)),
        "ouch": {u: list(s.stream.range(1, s.stream.next_sequence)) for u, s in v.users.items()},
        "snapshots": {u: v.snapshot(u) for u in v.users},
        "books": {
            sym: (
                b.depth("B"),
                b.depth("S"),
                [(o.order_ref, o.owner, o.side, o.price, o.open_qty) for o in b.orders()],
            )
            for sym, b in v.engine.books.items()
        },
        "engine": (v.engine.next_order_ref, v.engine.next_match_number, sorted(v.engine.orders)),
        "counters": dict(v.counters),
        "last_trade": dict(v.last_trade),
        "flows": [(g.rng.getstate(), list(g.resting), g.mid_ticks, g.cfg) for g in jv.flows],
    }


class Driver:
    """Random OUCH traffic from two users, flow steps on every symbol, a reload."""

    def __init__(self, jv: JournaledVenue, seed: int, reloads: bool = True) -> None:
        self.jv = jv
        self.reloads = reloads
        self.rng = random.Random(seed)
        self.next_ref = dict.fromkeys(USERS, 1)
        self.refs: dict[str, list[int]] = {u: [] for u in USERS}
        self.symbols = [s.symbol for s in jv.cfg.symbols]
        self.mids = {s.symbol: s.reference_price_fp for s in jv.cfg.symbols}

    def _price(self, symbol: str) -> int:
        return self.mids[symbol] + self.rng.randint(-8, 8) * 100

    def ouch_message(self, user: str) -> ouch.Inbound:
        r = self.rng.random()
        refs = self.refs[user]
        if r < 0.5 or not refs:
            ref = self.next_ref[user]
            if self.rng.random() < 0.95:  # sometimes a duplicate UserRefNum
                self.next_ref[user] += 1
            refs.append(ref)
            sym = self.rng.choice([*self.symbols, "ZZZZ"] if r < 0.02 else self.symbols)
            price = self._price(sym) if sym != "ZZZZ" else 1_000_000
            if r < 0.04:
                price += 1  # off tick
            tif = self.rng.choice((ouch.TIF_DAY, ouch.TIF_DAY, ouch.TIF_IOC))
            side = self.rng.choice("BSST")
            return ouch.EnterOrder(
                ref, side, 100 * self.rng.randint(1, 8), sym, price, tif, cl_ord_id=f"c{ref}"
            )
        old = self.rng.choice(refs)
        if r < 0.75:
            new = self.next_ref[user]
            self.next_ref[user] += 1
            refs.append(new)
            sym = self.rng.choice(self.symbols)
            return ouch.ReplaceOrder(old, new, 100 * self.rng.randint(0, 6), self._price(sym))
        return ouch.CancelOrder(old, self.rng.choice((0, 0, 100)))

    def step(self) -> None:
        r = self.rng.random()
        if r < 0.45:
            user = self.rng.choice(USERS)
            msg = self.ouch_message(user)
            raw = ouch.encode_inbound(msg)
            if self.rng.random() < 0.5:
                self.jv.handle(user, raw, ouch.decode_inbound(raw))
            else:
                self.jv.handle(user, raw)
        elif r < 0.995 or not self.reloads:
            i = self.rng.randrange(len(self.symbols))
            self.jv.next_flow_delay(i)
            self.jv.flow_step(i)
        else:  # an operator reload changing one symbol's flow
            i = self.rng.randrange(len(self.symbols))
            flow = self.jv.flows[i].cfg
            self.jv.set_flow(
                i,
                msgspec.structs.replace(
                    flow,
                    cancel_ratio=self.rng.choice((0.1, 0.3, 0.6)),
                    arrival_rate_per_s=self.rng.choice((0.0, 20.0, 500.0)),
                ),
            )


def journaled(tmp: Path, seed: int, steps: int) -> tuple[JournaledVenue, Driver, Path]:
    path = tmp / f"exchange-{seed}.journal"
    jv = JournaledVenue(config(tmp), FakeClock(seed), Journal.open(path, "never"))
    jv.begin()
    jv.start_of_day()
    d = Driver(jv, seed)
    for _ in range(steps):
        d.step()
    return jv, d, path


def rebuilt(tmp: Path, records: list[bytes]) -> JournaledVenue:
    jv = JournaledVenue(config(tmp), no_clock)
    jv.replay(records)
    return jv


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_replay_reproduces_every_stream_byte_for_byte(tmp_path: Path, seed: int) -> None:
    live, _, path = journaled(tmp_path, seed, 1500)
    assert live.journal is not None
    live.journal.close()
    records, torn = read_all(path)
    assert torn is None
    assert len(records) == live.journal.records
    again = rebuilt(tmp_path, records)
    assert again.inputs == live.inputs
    want, got = state(live), state(again)
    assert got["md"] == want["md"] and len(want["md"]) > 500
    assert got["ouch"] == want["ouch"]
    assert any(s.fills for s in want["snapshots"].values()), "no user fills proves little"
    assert got == want


def test_replayed_venue_carries_on_exactly_like_the_original(tmp_path: Path) -> None:
    """The flow generators' RNG and resting lists are restored, not just the books."""
    live, _, path = journaled(tmp_path, 11, 800)
    assert live.journal is not None
    live.journal.close()
    again = rebuilt(tmp_path, read_all(path)[0])
    live.journal = None
    for jv in (live, again):
        jv.live_clock = FakeClock(99)
        d = Driver(jv, 12)
        d.next_ref = dict.fromkeys(USERS, 10_000)
        for _ in range(400):
            d.step()
    assert state(again) == state(live)


def test_end_of_day_is_journaled(tmp_path: Path) -> None:
    live, _, path = journaled(tmp_path, 7, 300)
    live.end_of_day()
    assert live.ended
    again = rebuilt(tmp_path, read_all(path)[0])
    assert again.ended and state(again) == state(live)


def test_a_day_continued_after_its_end_of_day_reopens_and_trades(tmp_path: Path) -> None:
    """Continuing a day whose journal ends with an end of day (a stop that closed the
    venue): the replay leaves it closed, the daemon's start of day reopens it, and
    the reopened day replays byte for byte too."""
    cfg = config(tmp_path)
    live, _ = open_venue(cfg, FakeClock(1))
    live.start_of_day()
    Driver(live, 1, reloads=False).step()
    live.end_of_day()
    assert live.journal is not None
    live.journal.close()
    again, _ = open_venue(cfg, FakeClock(2))
    assert again.ended and not again.started  # so the daemon journals a start of day
    md_closed = len(again.venue.md)
    again.start_of_day()
    assert again.started and not again.ended
    opening = [itch.decode(m) for m in again.venue.md.range(md_closed + 1, md_closed + 2)]
    assert isinstance(opening[0], itch.SystemEvent) and opening[0].event_code == "O"
    stream = again.venue.user("TEST").stream
    (raw,) = stream.range(stream.next_sequence - 1, stream.next_sequence)
    last = ouch.decode_outbound(raw)
    assert isinstance(last, ouch.SystemEventMsg) and last.event_code == "S"
    for ref, side in ((10_001, "S"), (10_002, "B")):  # it trades again
        order = ouch.EnterOrder(ref, side, 100, "AAPL", 1_895_000)
        again.handle("TEST", ouch.encode_inbound(order))
    assert again.venue.snapshot("TEST").fills
    assert again.journal is not None
    again.journal.close()
    third, _ = open_venue(cfg, FakeClock(3))
    assert third.started and state(third) == state(again)
    assert third.journal is not None
    third.journal.close()


def test_torn_last_record_gives_the_state_before_that_input(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    path = exchange_journal_path(cfg)
    assert path.parent.parent == tmp_path / "journal" and path.name == "exchange.journal"
    jv = JournaledVenue(cfg, FakeClock(3), Journal.open(path, "never"))
    jv.begin()
    jv.start_of_day()
    d = Driver(jv, 3, reloads=False)  # the flow config stays the config file's
    for _ in range(500):
        d.step()
    before = state(jv)
    size = path.stat().st_size
    # One more input that trades: its record is torn by the "crash".
    user_ref = d.next_ref["TEST"] + 100
    order = ouch.EnterOrder(user_ref, "B", 5000, "AAPL", ouch.MARKET_PRICE, ouch.TIF_IOC)
    jv.handle("TEST", ouch.encode_inbound(order))
    assert state(jv) != before
    assert jv.journal is not None
    jv.journal.close()
    last = path.stat().st_size - size
    for cut in (1, 7, 8, last - 1):
        with open(path, "r+b") as f:
            f.truncate(size + cut)
        recovered, rec = open_venue(cfg, FakeClock(4))
        assert rec.torn is not None and rec.torn.offset == size, cut
        assert path.stat().st_size == size, cut
        assert state(recovered) == before, cut
        assert recovered.journal is not None
        recovered.journal.close()


def test_open_venue_replays_then_journals_on(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first, rec = open_venue(cfg, FakeClock(1))
    assert rec.records == 0 and not first.started
    first.start_of_day()
    Driver(first, 1).step()
    for _ in range(50):
        first.next_flow_delay(0)
        first.flow_step(0)
    assert first.journal is not None
    first.journal.close()
    second, rec = open_venue(cfg, FakeClock(2))
    assert rec.records == first.journal.records and second.started and rec.torn is None
    assert state(second) == state(first)
    # A flow config changed while the exchange was down is journaled on open.
    changed = msgspec.structs.replace(
        cfg,
        exchange=msgspec.structs.replace(
            cfg.exchange, flow=msgspec.structs.replace(cfg.exchange.flow, cancel_ratio=0.9)
        ),
    )
    assert second.journal is not None
    second.journal.close()
    third, rec = open_venue(changed, FakeClock(3))
    assert [g.cfg.cancel_ratio for g in third.flows] == [0.9] * 4
    assert third.journal is not None
    third.journal.close()
    assert third.journal.records == 4  # one flow change per symbol
    fourth, rec = open_venue(changed, FakeClock(4))
    assert rec.records == len(read_all(exchange_journal_path(cfg))[0]) == 53 + 4
    assert fourth.journal is not None and fourth.journal.records == 0
    assert state(fourth) == state(third)
    assert fourth.journal is not None
    fourth.journal.close()


def test_timestamps_never_go_back_after_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    jv, _ = open_venue(cfg, FakeClock(1))
    jv.start_of_day()
    last = jv.clock.now
    assert jv.journal is not None
    jv.journal.close()
    again, _ = open_venue(cfg, itertools.count(5).__next__)  # a clock far behind
    again.next_flow_delay(1)
    again.flow_step(1)
    assert again.clock.now == last
    assert again.journal is not None
    again.journal.close()


def test_journal_of_another_venue_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    jv, _ = open_venue(cfg, FakeClock(1))
    jv.start_of_day()
    assert jv.journal is not None
    jv.journal.close()
    other = config(tmp_path, flow_seed=43)
    with pytest.raises(JournalMismatch, match="flow_seed: journal 42, config 43"):
        open_venue(other, FakeClock(1))
    kept = exchange_journal_path(cfg).read_bytes()
    day, what = open_day(other, new=True)  # what an operator does: a new day, the old one kept
    assert what.startswith("opened after") and day.name.n == 2
    fresh, rec = open_venue(other, FakeClock(1))
    assert rec.records == 0 and fresh.begun and not fresh.started
    assert rec.path == str(day.exchange_journal)
    assert (day.path.parent / f"{day.name.date}.1" / "exchange.journal").read_bytes() == kept
    assert fresh.journal is not None
    fresh.journal.close()


def test_not_a_journal_and_corruption_are_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    path = exchange_journal_path(cfg)
    path.write_bytes(frame(b"\x92\xa1S\x05"))  # a StartOfDay first: no Begin
    with pytest.raises(JournalMismatch, match="not an exchange journal"):
        open_venue(cfg, FakeClock(1))
    path.write_bytes(frame(b"\xc1"))
    with pytest.raises(JournalMismatch, match="not an exchange record"):
        open_venue(cfg, FakeClock(1))
    path.unlink()  # (a test's own file: hftd never removes a journal)
    jv, _ = open_venue(cfg, FakeClock(1))
    jv.start_of_day()
    assert jv.journal is not None
    jv.journal.close()
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # inside the Begin record; Start of Day follows
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt):
        open_venue(cfg, FakeClock(1))


def test_bad_ouch_is_not_journaled(tmp_path: Path) -> None:
    from hftd.wire.errors import RemoteProtocolError

    jv, _, _ = journaled(tmp_path, 5, 10)
    assert jv.journal is not None
    n = jv.journal.records
    with pytest.raises(RemoteProtocolError):
        jv.handle("TEST", b"Q" + b"\x00" * 10)
    assert jv.journal.records == n


def test_journal_append_stays_off_the_disk_with_batch(tmp_path: Path) -> None:
    """One os.write per input and no fsync on the path: microseconds, not milliseconds."""
    import time

    from hftd.exchange.journal import Inbound

    raw = ouch.encode_inbound(ouch.EnterOrder(1, "B", 100, "AAPL", 1_000_000))
    encode = msgspec.msgpack.Encoder().encode
    with Journal.open(tmp_path / "cost", "batch", batch_interval_s=3600.0) as j:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            for i in range(2000):
                j.append(encode(Inbound(34_200_000_000_000 + i, "HFTD", raw)))
            best = min(best, (time.perf_counter_ns() - t0) / 2000)
        assert j.syncs == 0
    assert best < 200_000, f"{best / 1000:.1f} us per append"


def test_venue_events_are_journaled_and_replayed(tmp_path: Path) -> None:
    """The Inject test hook's events are venue inputs like any other: a restarted
    exchange serves the same streams (a client's sequence numbers stay valid)."""
    live, _, path = journaled(tmp_path, 21, 600)
    user, fills = next((u, f) for u in live.venue.users if (f := live.venue.snapshot(u).fills))
    live.venue_event(user, "broken_trade", fills[0].match_number)
    live.venue_event(user, "raw", 0, b"?")
    with pytest.raises(ValueError, match="no execution"):
        live.venue_event(user, "broken_trade", 10**12)
    assert live.journal is not None
    live.journal.close()
    again = rebuilt(tmp_path, read_all(path)[0])
    assert state(again) == state(live)
    assert again.venue.user(user).stream.get(len(again.venue.user(user).stream)) == b"?"
