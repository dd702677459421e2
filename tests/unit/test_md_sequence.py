"""Every sequenced ITCH message keeps the sequence downstream; the strategy's sync
state (gaps, resets, an empty stream, resync loops and their backoff)."""

from __future__ import annotations

import pytest

from hftd.book.sync import APPLY, LOST, REBUILD, SKIP, MdSync
from hftd.feed.normalize import Normalizer, normalize
from hftd.msg.hot import (
    MD_ADD,
    MD_HEARTBEAT,
    MD_RESET,
    MD_SEQUENCE,
    MarketDataUpdate,
)
from hftd.wire import itch
from tests.support import ITCH_FILE
from tests.unit.test_wire import EVERY_ITCH_TYPE

# --- the normalizer ------------------------------------------------------------------


def test_every_message_of_the_real_sample_gives_one_update_with_its_sequence() -> None:
    """The NASDAQ sample's 52 L and 1 Y used to vanish (normalize -> None): the
    strategy saw a gap at the first of them, resynced, and saw it again."""
    raws = list(itch.iter_binary_file(ITCH_FILE.read_bytes()))
    updates = [normalize(itch.decode(raw), seq, 0) for seq, raw in enumerate(raws, start=1)]
    assert [u.seq if u is not None else None for u in updates] == list(range(1, 10_001))
    kinds = {chr(raws[i][0]): u.kind for i, u in enumerate(updates) if u is not None}
    assert kinds["L"] == kinds["Y"] == MD_SEQUENCE


def test_the_feeds_normalizer_agrees_with_decode_then_normalize() -> None:
    norm = Normalizer()
    for seq, raw in enumerate(itch.iter_binary_file(ITCH_FILE.read_bytes()), start=1):
        fast = norm.update(raw, seq, 7)
        assert fast == normalize(itch.decode(raw), seq, 7)
    assert (norm.unknown, norm.malformed) == (0, 0)


def test_every_itch_5_type_keeps_its_sequence() -> None:
    norm = Normalizer()
    for seq, m in enumerate(EVERY_ITCH_TYPE, start=1):
        u = norm.update(itch.encode(m), seq, 0)
        assert u.seq == seq
        if u.kind == MD_SEQUENCE:
            assert u.side == itch.TYPE_OF[type(m)]
    assert norm.problems == 0


def test_not_itch_and_wrong_size_keep_the_sequence_and_are_counted() -> None:
    norm = Normalizer()
    alien = norm.update(b"z" + b"\x00" * 20, 5, 0)
    short_add = norm.update(itch.encode(itch.AddOrder(1, 0, 1, 9, "B", 1, "X", 1))[:-1], 6, 0)
    empty = norm.update(b"", 7, 0)
    assert [(u.seq, u.kind) for u in (alien, short_add, empty)] == [
        (5, MD_SEQUENCE),
        (6, MD_SEQUENCE),
        (7, MD_SEQUENCE),
    ]
    assert (norm.unknown, norm.malformed, norm.problems) == (1, 2, 3)
    assert "sequence 7" in norm.last_problem
    assert normalize(itch.Unknown(b"z\x00"), 8, 0).kind == MD_SEQUENCE


# --- the strategy's sync state ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def upd(seq: int, kind: int = MD_ADD) -> MarketDataUpdate:
    return MarketDataUpdate(seq, kind, 1, "AAPL", seq, "B", 100, 1_000_000, 0, 0, 0)


def hb(seq: int) -> MarketDataUpdate:
    return MarketDataUpdate(seq, MD_HEARTBEAT, 0, "", 0, "", 0, 0, 0, 0, 0)


RESET = MarketDataUpdate(0, MD_RESET, 0, "", 0, "", 0, 0, 0, 0, 0)


def test_a_fresh_stream_syncs_at_sequence_1() -> None:
    s = MdSync(Clock())
    assert s.on_update(upd(1)) == APPLY and s.synced
    assert s.on_update(upd(2, MD_SEQUENCE)) == SKIP  # nothing for the books...
    assert s.last_seq == 2  # ...but the sequence moved on
    assert s.on_update(upd(3)) == APPLY
    assert s.counters["gaps"] == 0


def test_an_empty_stream_is_in_sync() -> None:
    """Before the open the venue has sequenced nothing: the feed's heartbeats say
    sequence 0, and empty books are the right books."""
    s = MdSync(Clock())
    assert s.on_update(hb(0)) == REBUILD
    assert s.synced and s.last_seq == 0
    assert s.on_update(hb(0)) == SKIP  # once
    assert s.on_update(upd(1)) == APPLY
    assert s.counters["gaps"] == 0


def test_a_joined_stream_waits_for_its_start_or_a_reset() -> None:
    s = MdSync(Clock())
    assert s.on_update(hb(40)) == SKIP and not s.synced  # not an empty stream
    assert s.on_update(upd(41)) == SKIP and s.counters["skipped"] == 1
    s.rejoin()
    assert s.take_resync() and not s.take_resync()
    assert s.on_update(RESET) == REBUILD and s.synced


def test_a_resync_no_reset_answers_is_asked_again() -> None:
    """Asked for a resync, and the reset never came (a feed restarted with its reset
    still owed to a full ring forgets it): out of sync, skipping records or
    heartbeats, the sync asks again after RESYNC_RETRY_S instead of staying blind.
    A reset in time ends the wait."""
    from hftd.book.sync import RESYNC_RETRY_S

    clock = Clock()
    s = MdSync(clock)
    s.rejoin()
    assert s.take_resync()
    clock.now += RESYNC_RETRY_S - 1
    assert s.on_update(upd(2049)) == SKIP and not s.want_resync  # not yet
    clock.now += 2
    assert s.on_update(hb(2049)) == SKIP and s.want_resync  # asks again
    assert "no reset came" in s.last_loss and s.take_resync()
    assert s.on_update(RESET) == REBUILD and s.synced
    clock.now += 3 * RESYNC_RETRY_S
    assert s.on_update(upd(1)) == APPLY and not s.want_resync  # answered: no more asking


def test_a_gap_wants_one_resync_at_once_and_the_replay_heals_it() -> None:
    clock = Clock()
    s = MdSync(clock)
    for seq in (1, 2, 3):
        s.on_update(upd(seq))
    assert s.on_update(upd(5)) == LOST
    assert not s.synced and s.want_resync and "expected 4, got 5" in s.last_loss
    assert s.take_resync() and not s.take_resync()
    assert s.on_update(upd(6)) == SKIP  # stale updates before the reset
    assert s.on_update(RESET) == REBUILD
    for seq in range(1, 7):
        assert s.on_update(upd(seq)) == APPLY
    assert not s.looping and s.hole == 0
    assert s.counters["gaps"] == 1 and s.counters["resyncs"] == 1


def test_a_feed_drop_seen_in_a_heartbeat_loses_sync() -> None:
    s = MdSync(Clock())
    s.on_update(upd(1))
    assert s.on_update(hb(1)) == SKIP
    assert s.on_update(hb(3)) == LOST and s.hole == 2


def replay_to_the_same_hole(s: MdSync, hole: int) -> int:
    """Resync and replay 1..hole-1 then skip the hole (as the old feed did for an L)."""
    s.on_update(RESET)
    for seq in range(1, hole):
        s.on_update(upd(seq))
    return s.on_update(upd(hole + 1))


def test_the_same_gap_after_a_resync_is_a_loop_that_backs_off() -> None:
    clock = Clock()
    s = MdSync(clock)
    assert replay_to_the_same_hole(s, 10) == LOST  # the first time: an ordinary gap
    assert not s.looping and s.take_resync()
    backoffs = []
    for _ in range(7):
        assert replay_to_the_same_hole(s, 10) == LOST
        assert s.looping and s.hole == 10
        backoffs.append(s.backoff_s())
        assert not s.take_resync()  # not at the feed's reconnect rate...
        clock.now += s.backoff_s() - 0.01
        assert not s.take_resync()
        clock.now += 0.01
        assert s.take_resync()  # ...but after the backoff
    assert backoffs == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert s.counters["resync_failures"] == 7 and s.counters["resyncs"] == 8
    st = s.status()
    assert st["resync_loop"] is True and st["resync_failures_in_a_row"] == 7
    # The hole is filled at last: the loop is over.
    s.on_update(RESET)
    for seq in range(1, 13):
        assert s.on_update(upd(seq)) == APPLY
    assert not s.looping and s.backoff_s() == 0.0 and s.status()["resync_loop"] is False


def test_a_gap_elsewhere_before_the_old_hole_is_a_failed_resync_too() -> None:
    """E.g. a ring too small for the replay: it drops at a different place each time."""
    s = MdSync(Clock())
    replay_to_the_same_hole(s, 50)
    assert s.take_resync()
    assert replay_to_the_same_hole(s, 30) == LOST
    assert s.looping and s.hole == 30


def test_an_update_the_books_reject_again_is_a_loop() -> None:
    clock = Clock()
    s = MdSync(clock)
    for _ in range(2):
        s.on_update(RESET)
        for seq in range(1, 8):
            assert s.on_update(upd(seq)) == APPLY
        s.lost("book inconsistent at sequence 7", 7)  # the daemon, on BookError
        clock.now += 100
        assert s.take_resync()
    assert s.looping and s.counters["resync_failures"] == 1


@pytest.mark.parametrize("kind", [MD_HEARTBEAT, MD_RESET])
def test_control_records_are_not_for_the_books(kind: int) -> None:
    s = MdSync(Clock())
    s.on_update(upd(1))
    act = s.on_update(hb(1) if kind == MD_HEARTBEAT else RESET)
    assert act in (SKIP, REBUILD)
