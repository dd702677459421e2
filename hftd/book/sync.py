"""Where a book builder stands in the venue's ITCH stream (pure).

Books need every sequenced message, in order. `MdSync` decides, update by
update, whether the books are in sync (the strategy's, and the gateway's own
view for risk, `hftd.risk.market`): what to apply, what to skip, when a
gap (or a feed drop) means the books must be rebuilt from a resync (the feed
publishes MD_RESET and replays from sequence 1), and when to ask for it.

States and what moves them:

- not synced, fresh: waiting for the stream's start. Sequence 1 starts it.
  So does a feed heartbeat carrying sequence 0: the venue has sequenced
  nothing yet (before the open an empty stream is normal), so empty books
  are the right books.
- synced: each update must be `last_seq + 1`. Anything else, a heartbeat
  saying the feed published more than we saw (a drop on a full ring), or a
  book error on applying an update, loses sync: a resync is wanted.
- MD_RESET: synced again from nothing; the replay from 1 follows.
- catching up (synced): the stream from sequence 1 up to `replay_to` repeats
  what the feed had published before the resync (hours of the day, perhaps).
  The books must go through it, but nobody may act on it: risk's reference
  prices and P&L marks would move through the day's old prices (and could
  latch the loss stop on a price from hours ago), strategies would send
  orders on them. Such updates come back QUIET (books only); the one that
  reaches `replay_to` comes back LIVE (apply it, then act on the books as they
  stand: they are at the live edge). `replay_to` is the MD_RESET's `seq`:
  the feed's high-water mark when it started the replay (0, an older feed or
  nothing known: no catch-up, every update APPLY as before). A consumer that
  joins mid-day on a ring nobody read syncs at the ring's sequence 1 without
  a reset: what the feed had published when it started (`catch_up_to`, from
  the feed's Status) is its replay.

Resync loops. A hole the replay does not fill (a message the feed cannot
publish, a ring too small for the replay, an update the books reject) comes
back every time: gap -> resync -> the same gap, as fast as the feed can
reconnect. A resync *failed* when sync is lost again before the stream got
past the previous hole; consecutive failures are a loop (`looping`): counted,
reported (the monitor's `resync_loop` alert) and broken by backing off: the
n-th failure waits `backoff_min_s * 2**(n-1)` (at most `backoff_max_s`)
before the next resync is asked for. Getting past the hole ends the loop.

Time comes from the `clock` given (monotonic seconds), so tests drive it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from hftd.msg.hot import MD_HEARTBEAT, MD_RESET, MD_SEQUENCE, MarketDataUpdate

SKIP: Final = 0  # nothing for the books
APPLY: Final = 1  # apply this update to the books
REBUILD: Final = 2  # empty the books (a reset, or a stream that is still empty)
LOST: Final = 3  # nothing for the books: sync was just lost (`last_loss` says why)
QUIET: Final = 4  # catching up: apply this update to the books, act on nothing
LIVE: Final = 5  # caught up with this update: apply it (unless MD_SEQUENCE), then act

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
# Asked for a resync and no reset came in this long (a feed restarted before its
# reset was written, a request lost): ask again.
RESYNC_RETRY_S = 10.0


class MdSync:
    def __init__(
        self,
        clock: Callable[[], float],
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.clock = clock
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.synced = False
        self.last_seq = 0
        self.want_resync = False
        self.resync_at = 0.0  # clock(): the wanted resync not before this
        self.hole = 0  # the sequence number sync was last lost at (0: none open)
        self.asked_at = 0.0  # clock() of the resync asked and not answered yet (0: none)
        self.failures = 0  # consecutive resyncs that lost sync again before the hole
        self.last_loss = ""
        # The stream up to this sequence number repeats what was published before:
        # rebuild through it, act on nothing (0: no catch-up pending or under way).
        self.replay_to = 0
        self.catching_up = False  # synced, last_seq < replay_to (the hot path's one check)
        self.counters = {
            "updates": 0,  # applied in sequence (sequence-only records included)
            "skipped": 0,  # seen while not in sync
            "gaps": 0,  # times sync was lost
            "resets": 0,  # MD_RESET seen
            "resyncs": 0,  # resyncs asked of the feed
            "resync_failures": 0,  # resyncs that hit a gap again before the hole
            "catch_ups": 0,  # replays gone through to the live edge
        }

    # --- per update (the hot path) ------------------------------------------------------

    def on_update(self, u: MarketDataUpdate) -> int:
        """SKIP, APPLY, REBUILD, LOST, QUIET or LIVE for one update from the md ring."""
        kind = u.kind
        if kind == MD_HEARTBEAT:
            if self.synced:
                if u.seq > self.last_seq:
                    self.lost(
                        f"md drop: feed published up to {u.seq}, last seen {self.last_seq}",
                        self.last_seq + 1,
                    )
                    return LOST
            elif u.seq == 0:
                # The venue has sequenced nothing yet: empty books are in sync.
                self.asked_at = 0.0
                self.synced = True
                self.last_seq = 0
                self.catching_up = self.replay_to > 0  # what follows, if `catch_up_to` said
                return REBUILD
            self._overdue()
            return SKIP
        if kind == MD_RESET:
            self.counters["resets"] += 1
            self.asked_at = 0.0
            self.synced = True
            self.want_resync = False
            self.last_seq = 0
            # The feed's word on where the replay ends (0: it does not say): it
            # replaces what we guessed (the venue's stream may be shorter now).
            self.replay_to = u.seq
            self.catching_up = u.seq > 0
            return REBUILD
        seq = u.seq
        if not self.synced:
            if seq != 1:
                self.counters["skipped"] += 1
                self._overdue()
                return SKIP
            self.asked_at = 0.0
            self.synced = True
            self.catching_up = self.replay_to > 0
        if seq != self.last_seq + 1:
            self.lost(f"md gap: expected {self.last_seq + 1}, got {seq}", self.last_seq + 1)
            return LOST
        self.last_seq = seq
        self.counters["updates"] += 1
        if self.hole and seq > self.hole:
            self._past_hole()
        if self.catching_up:
            if seq < self.replay_to:
                return SKIP if kind == MD_SEQUENCE else QUIET
            self.catching_up = False
            self.replay_to = 0
            self.counters["catch_ups"] += 1
            return LIVE
        return SKIP if kind == MD_SEQUENCE else APPLY

    # --- losing and regaining sync ------------------------------------------------------

    def lost(self, why: str, hole: int) -> None:
        """Sync is lost at sequence `hole` (the first one the books lack, or the one
        they rejected): a resync is wanted, at once or after the loop's backoff."""
        self.counters["gaps"] += 1
        self.synced = False
        self.catching_up = False
        self.want_resync = True
        self.last_loss = why
        now = self.clock()
        if self.hole:  # never got past the previous hole: that resync failed
            self.failures += 1
            self.counters["resync_failures"] += 1
            self.resync_at = now + self.backoff_s()
        else:
            self.resync_at = now
        self.hole = hole

    def rejoin(self) -> None:
        """Started on a ring another run consumed: the books are gone, resync at once."""
        self.synced = False
        self.catching_up = False
        self.want_resync = True
        self.resync_at = self.clock()

    def catch_up_to(self, seq: int) -> None:
        """The stream up to `seq` was published before we started (the feed's
        high-water mark, asked at start): a consumer joining mid-day rebuilds its
        books through it and acts only from the live edge. A reset says better."""
        if seq <= self.replay_to or (self.synced and self.last_seq >= seq):
            return
        self.replay_to = seq
        self.catching_up = self.synced

    def backoff_s(self) -> float:
        """How long the next resync waits (0 unless looping)."""
        if not self.failures:
            return 0.0
        return min(self.backoff_min_s * 2.0 ** (self.failures - 1), self.backoff_max_s)

    def _past_hole(self) -> None:
        self.hole = 0
        self.failures = 0

    @property
    def looping(self) -> bool:
        """The last resync hit a gap again before the stream got past the hole."""
        return self.failures > 0

    def take_resync(self) -> bool:
        """True (once) when a wanted resync is due: the caller asks the feed for it."""
        if not self.want_resync or self.clock() < self.resync_at:
            return False
        self.want_resync = False
        self.asked_at = self.clock()
        self.counters["resyncs"] += 1
        return True

    def _overdue(self) -> None:
        """Out of sync, a resync asked RESYNC_RETRY_S ago and no reset since: the
        request or the reset was lost (a feed restarted with its reset still owed to
        a full ring forgets it). Ask again rather than stay blind."""
        if self.asked_at and not self.want_resync:
            now = self.clock()
            if now - self.asked_at > RESYNC_RETRY_S:
                self.asked_at = 0.0
                self.want_resync = True
                self.resync_at = now
                self.last_loss = (
                    f"no reset came within {RESYNC_RETRY_S:.0f} s of asking for a resync: "
                    "asking again"
                )

    def status(self) -> dict[str, object]:
        return {
            "synced": self.synced,
            "last_seq": self.last_seq,
            "catching_up": self.catching_up,
            "replay_to": self.replay_to,
            **self.counters,
            "resync_loop": self.looping,
            "resync_failures_in_a_row": self.failures,
            "resync_backoff_s": self.backoff_s(),
            "resync_hole": self.hole,
            "last_loss": self.last_loss,
        }
