"""Venue checkpoints: a restart from one is the venue a full replay gives, byte for byte,
and replays only the journal after it; a missing or damaged one means a full replay."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import HftdConfig
from hftd.exchange.checkpoint import CHECKPOINT, UNUSABLE, decode, state_dir
from hftd.exchange.journal import JournaledVenue, load_md_file, open_venue
from hftd.exchange.stream import StreamMeta
from hftd.runtime.days import exchange_journal_path
from hftd.runtime.journal import read_all
from hftd.wire import ouch
from hftd.wire import soupbintcp as soup
from tests.support import ITCH_FILE
from tests.unit.test_exchange_recovery import Driver, FakeClock, config, no_clock, state


def full_state(jv: JournaledVenue) -> dict[str, Any]:
    """`state` and everything else a checkpoint must carry (what the next inputs use)."""
    v = jv.venue
    return {
        **state(jv),
        "frames": {u: s.stream.frames(1, s.stream.next_sequence) for u, s in v.users.items()},
        "md_frames": v.md.frames(1, v.md.next_sequence),
        "extras": list(v.extras.items()),
        "users": [
            (u, s.last_user_ref, list(s.live.items()), sorted(s.fills.broken))
            for u, s in v.users.items()
        ],
        "orders": [
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
            for o in v.engine.orders.values()
        ],
        "levels": {
            sym: (
                [(p, b.bids[p].total, list(b.bids[p].orders)) for p in b.bid_prices],
                [(p, b.asks[p].total, list(b.asks[p].orders)) for p in b.ask_prices],
            )
            for sym, b in v.engine.books.items()
        },
        "file": (jv.file_pos, dict(v.file_locate), dict(v.file_counters)),
        "venue": (jv.begun, jv.started, jv.ended, jv.inputs, jv.clock.now),
    }


def full_replay(cfg: HftdConfig, path: Path) -> JournaledVenue:
    """The venue rebuilt in memory from every record of the journal at `path`."""
    records, torn = read_all(path)
    assert torn is None
    jv = JournaledVenue(cfg, no_clock, md_file=load_md_file(cfg))
    jv.replay(records)
    return jv


def carry_on(jv: JournaledVenue, seed: int, steps: int, reloads: bool = True) -> None:
    jv.live_clock = FakeClock(seed)
    d = Driver(jv, seed, reloads)
    d.next_ref = dict.fromkeys(d.next_ref, 100_000)  # above any UserRefNum used so far
    for _ in range(steps):
        d.step()


def day(
    tmp: Path, seed: int, before: int, after: int, **exchange: Any
) -> tuple[HftdConfig, Path, dict[str, Any], int]:
    """A day's journal: `before` inputs, a checkpoint, `after` more. Returns the config,
    the journal, the venue's state at the end and the records the checkpoint covers."""
    cfg = config(tmp, **exchange)
    live, rec = open_venue(cfg, FakeClock(seed))
    assert rec.records == 0 and rec.checkpoint == 0 and rec.checkpoint_problem == ""
    live.start_of_day()
    d = Driver(live, seed, reloads=False)
    for _ in range(before // 2):
        d.step()
    # A reload the checkpoint holds, undone after it: a restart sets the config's flow
    # again (open_venue), so the day ends with it to compare like with like.
    flow = live.flows[1].cfg
    live.set_flow(1, msgspec.structs.replace(flow, cancel_ratio=0.7, arrival_rate_per_s=300.0))
    for _ in range(before - before // 2):
        d.step()
    assert live.checkpointer is not None
    live.checkpointer.checkpoint()
    covered = live.checkpointer.covered
    for _ in range(after):
        d.step()
    live.set_flow(1, flow)
    want = full_state(live)
    live.close()
    return cfg, exchange_journal_path(cfg), want, covered


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restart_from_a_checkpoint_is_byte_identical_to_a_full_replay(
    tmp_path: Path, seed: int
) -> None:
    cfg, path, want, covered = day(tmp_path, seed, 1500, 700)
    records = len(read_all(path)[0])
    again, rec = open_venue(cfg, FakeClock(seed + 10))
    assert rec.checkpoint == covered and rec.records == records - covered
    assert rec.checkpoint_problem == ""
    full = full_replay(cfg, path)
    got = full_state(again)
    assert len(want["md"]) > 1000 and any(s.fills for s in want["snapshots"].values())
    assert got["md"] == want["md"] and got["ouch"] == want["ouch"]  # every sequence from 1
    assert got == want
    assert full_state(full) == want
    # The same packets a session sends: SoupBinTCP Sequenced Data, back to back.
    md = again.venue.md
    assert md.frames(1, md.next_sequence) == b"".join(map(soup.sequenced, want["md"]))
    # And from there both carry on as one (the RNGs, order maps and priorities held).
    carry_on(again, seed + 20, 600)
    carry_on(full, seed + 20, 600)
    assert full_state(again) == full_state(full)
    again.close()


def test_restart_replays_only_what_follows_the_checkpoint(tmp_path: Path) -> None:
    """The cost of a restart is the records after the checkpoint, not the day's."""
    cfg, _, want, covered = day(tmp_path, 4, 6000, 25)
    again, rec = open_venue(cfg, FakeClock(9))
    assert rec.checkpoint == covered > 5000 and rec.records == 25 + 1  # + the flow reload
    assert full_state(again) == want
    # A clean stop's checkpoint (the daemon's): the next start replays nothing.
    assert again.checkpointer is not None and again.checkpointer.pending == 26
    again.checkpointer.checkpoint()
    again.close()
    third, rec = open_venue(cfg, FakeClock(10))
    assert (rec.checkpoint, rec.records) == (covered + 26, 0)
    assert full_state(third) == want
    third.close()


def test_checkpoints_follow_one_another_and_journaling_goes_on(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    jv, _ = open_venue(cfg, FakeClock(1))
    jv.start_of_day()
    d = Driver(jv, 5, reloads=False)
    for round_ in range(4):  # restart after each checkpoint, carry on, checkpoint again
        for _ in range(400):
            d.step()
        assert jv.checkpointer is not None
        jv.checkpointer.checkpoint()
        for _ in range(50):
            d.step()
        want = full_state(jv)
        jv.close()
        jv, rec = open_venue(cfg, FakeClock(2 + round_))
        assert rec.records == 50, round_
        assert full_state(jv) == want, round_
        d.jv = jv
    jv.close()
    assert full_state(full_replay(cfg, exchange_journal_path(cfg))) == want


def _meta(ck: Path, name: str) -> StreamMeta:
    return next(m for m in decode(ck.read_bytes()).streams if m.name == name)


def _damage(kind: str, tmp: Path, path: Path) -> None:
    states = state_dir(path)
    ck = states / CHECKPOINT
    streams = next(states.glob("streams.*"))
    if kind == "missing":
        ck.unlink()
    elif kind == "flipped byte":
        data = bytearray(ck.read_bytes())
        data[len(data) // 2] ^= 0x10
        ck.write_bytes(bytes(data))
    elif kind == "cut short":
        ck.write_bytes(ck.read_bytes()[:-7])
    elif kind == "not a checkpoint":
        ck.write_bytes(b"hello")
    elif kind == "stream data cut":
        md = streams / "md.data"
        with open(md, "r+b") as f:
            f.truncate(md.stat().st_size // 2)
    elif kind == "stream data changed":
        # Within the last bytes the checkpoint covers (what it checks: the files end
        # where it says, with the bytes it says; not every byte before).
        size = _meta(ck, "md").size
        md = streams / "md.data"
        data = bytearray(md.read_bytes())
        data[size - 100] ^= 0x01
        md.write_bytes(bytes(data))
    elif kind == "stream index changed":
        count = _meta(ck, "md").count
        idx = streams / "md.index"
        data = bytearray(idx.read_bytes())
        data[8 * (count - 1)] ^= 0x01  # the offset the last message ends at
        idx.write_bytes(bytes(data))
    elif kind == "streams gone":
        for p in streams.iterdir():
            p.unlink()
        streams.rmdir()
    elif kind == "another journal":
        # The checkpoint of this day, beside an older copy of its journal (restored
        # from a backup, say): its position is not what the journal holds there.
        records = read_all(path)[0]
        from hftd.runtime.journal import frame

        path.write_bytes(b"".join(frame(r) for r in records[:300]))
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "flipped byte",
        "cut short",
        "not a checkpoint",
        "stream data cut",
        "stream data changed",
        "stream index changed",
        "streams gone",
        "another journal",
    ],
)
def test_a_missing_or_damaged_checkpoint_means_a_full_replay(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, path, want, _ = day(tmp_path, 6, 1200, 300)
    _damage(kind, tmp_path, path)
    with caplog.at_level(logging.WARNING, logger="hftd.exchange"):
        again, rec = open_venue(cfg, FakeClock(7))
    assert rec.checkpoint == 0
    expect = want if kind != "another journal" else full_state(full_replay(cfg, path))
    assert full_state(again) == expect
    states = state_dir(path)
    if kind == "missing":
        assert rec.checkpoint_problem == "" and "unusable" not in caplog.text
    else:
        assert rec.checkpoint_problem and "replaying the whole journal" in caplog.text
        assert (states / UNUSABLE).exists()  # kept to look at, never tried again
    assert not (states / CHECKPOINT).exists()
    assert len(list(states.glob("streams.*"))) == 1  # a new generation, the old one gone
    # The day goes on and checkpoints again from the full replay.
    assert again.checkpointer is not None
    again.checkpointer.checkpoint()
    carry_on(again, 8, 200, reloads=False)
    want2 = full_state(again)
    again.close()
    third, rec = open_venue(cfg, FakeClock(9))
    assert rec.checkpoint > 0 and rec.records == 200
    assert full_state(third) == want2
    third.close()


def test_a_checkpoint_of_another_venue_is_not_used(tmp_path: Path) -> None:
    """A config that changed the venue (here its users): the checkpoint is not used,
    and the full replay refuses the journal as before."""
    from hftd.exchange.journal import JournalMismatch

    cfg, _, _, _ = day(tmp_path, 3, 300, 10)
    other = msgspec.structs.replace(
        cfg, exchange=msgspec.structs.replace(cfg.exchange, users=cfg.exchange.users[:1])
    )
    with pytest.raises(JournalMismatch, match="written for another venue"):
        open_venue(other, FakeClock(1))


def test_the_journal_is_never_rewritten(tmp_path: Path) -> None:
    cfg, path, _, _ = day(tmp_path, 2, 800, 100)
    kept = path.read_bytes()
    again, _ = open_venue(cfg, FakeClock(3))
    assert again.checkpointer is not None
    again.checkpointer.checkpoint()
    carry_on(again, 4, 100)
    again.close()
    assert path.read_bytes()[: len(kept)] == kept and path.stat().st_size > len(kept)


def test_a_market_data_file_plays_on_across_a_checkpoint(tmp_path: Path) -> None:
    """exchange.md_file: the file's position, counters, stock locates and resting orders
    come back from the checkpoint, and the rest of the file plays as in one run."""
    cfg = config(tmp_path, md_file=str(ITCH_FILE), md_file_speed=0.0)
    live, _ = open_venue(cfg, FakeClock(1))
    live.start_of_day()
    live.file_step(2500)
    rng = random.Random(5)
    book = live.venue.engine.books["AAPL"]
    for ref in range(1, 40):  # our orders at and through the file's touch: they trade
        side = rng.choice("BS")
        touch = book.best_ask() if side == "B" else book.best_bid()
        assert touch is not None
        order = ouch.EnterOrder(
            ref,
            side,
            100 * rng.randint(1, 5),
            "AAPL",
            touch,
            rng.choice((ouch.TIF_DAY, ouch.TIF_IOC)),
        )
        live.handle("HFTD", ouch.encode_inbound(order))
        live.file_step(40)
    assert live.checkpointer is not None
    live.checkpointer.checkpoint()
    live.file_step(1500)
    want = full_state(live)
    assert want["file"][0] > 4000 and want["file"][2]["traded"] > 0
    assert live.venue.snapshot("HFTD").fills
    live.close()
    again, rec = open_venue(cfg, FakeClock(2))
    assert rec.checkpoint > 0 and rec.records == 1
    assert full_state(again) == want == full_state(full_replay(cfg, exchange_journal_path(cfg)))
    full = full_replay(cfg, exchange_journal_path(cfg))
    for jv in (again, full):
        jv.live_clock = FakeClock(3)
        jv.file_step(10_000)  # the rest of the file
    assert again.file_pos == len(again.md_file or []) and full_state(again) == full_state(full)
    again.close()


def test_stream_files_live_beside_the_journal_and_only_there(tmp_path: Path) -> None:
    cfg, path, _, _ = day(tmp_path, 1, 200, 0)
    states = state_dir(path)
    assert states.parent == path.parent and states.name == "exchange.state"
    (streams,) = states.glob("streams.*")
    names = sorted(p.name for p in streams.iterdir())
    users = [u.username.encode().hex() for u in cfg.exchange.users]
    assert names == sorted(
        ["md.data", "md.index"]
        + [
            f"{kind}-{u}.{ext}"
            for u in users
            for kind in ("ouch", "fills")
            for ext in ("data", "index")
        ]
    )
    assert os.stat(states).st_mode & 0o077 == 0


def test_a_flow_delay_drawn_before_the_checkpoint_is_not_drawn_again(tmp_path: Path) -> None:
    """The daemon draws each symbol's next delay, then sleeps: a checkpoint always
    finds them drawn. The restarted venue takes the same steps as one replayed in
    full, and the daemon's first delays are the same too."""
    cfg = config(tmp_path)
    live, _ = open_venue(cfg, FakeClock(1))
    live.start_of_day()
    d = Driver(live, 3, reloads=False)
    for _ in range(800):
        d.step()
    delays = [live.next_flow_delay(i) for i in range(4)]  # as the daemon's flow tasks
    assert live.checkpointer is not None
    live.checkpointer.checkpoint()
    for i in (0, 1, 0):  # steps of two symbols; the other two still have theirs drawn
        live.flow_step(i)
        live.next_flow_delay(i)
    live.close()
    again, rec = open_venue(cfg, FakeClock(2))
    assert rec.records == 3
    full = full_replay(cfg, exchange_journal_path(cfg))
    assert [again.next_flow_delay(i) for i in (2, 3)] == delays[2:]
    assert [again.next_flow_delay(i) for i in range(4)] == [
        full.next_flow_delay(i) for i in range(4)
    ]
    assert full_state(again) == full_state(full)
    for jv in (again, full):
        jv.live_clock = FakeClock(5)
        for i in (3, 2, 1, 0, 2, 3) * 50:
            jv.next_flow_delay(i)
            jv.flow_step(i)
    assert full_state(again) == full_state(full)
    again.close()
