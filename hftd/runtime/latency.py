"""Hop latency recording: preallocated arrays on the hot path, HDR histograms off it.

Recording a value into an HDR histogram costs ~2.7 µs in Python: too much per
order. The hot path writes its timestamps into a preallocated ring of int64
slots (~0.2 µs); `fold()` runs off the hot path (a timer in the control
thread) and moves new rows into one `HdrHistogram` per hop.
"""

from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_left
from itertools import accumulate

import msgspec
from hdrh.histogram import HdrHistogram

HOPS = ("t1_t2", "t2_t3", "t3_t4", "t4_t5", "t1_t4")
_COLS = 5  # t1..t5 per row
LOWEST_NS = 1
HIGHEST_NS = 60_000_000_000
SIG_DIGITS = 3
CACHE_S = 0.5  # status polls reuse a summary this young


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIG_DIGITS)


class HopSummary(msgspec.Struct, frozen=True):
    """Percentiles of one hop in microseconds."""

    hop: str
    count: int
    p50: float
    p95: float
    p99: float
    p999: float
    max: float


def summarize(hop: str, h: HdrHistogram) -> HopSummary:
    """Percentiles in one pass over the counts (hdrh walks them once per
    percentile: ~40 ms for a whole summary, holding the GIL the hot loop needs).
    Same values as `get_value_at_percentile`."""
    total = h.get_total_count()
    if not total:
        return HopSummary(hop, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    cum = list(accumulate(h.counts[: h.counts_len]))

    def q(p: float) -> float:
        i = bisect_left(cum, max(int(p * total / 100 + 0.5), 1))
        return float(h.get_highest_equivalent_value(h.get_value_from_index(i))) / 1000.0

    return HopSummary(hop, total, q(50), q(95), q(99), q(99.9), float(h.get_max_value()) / 1000.0)


class HopRecorder:
    """T1..T5 per order into a preallocated ring; folded into histograms later.

    One writer (the hot loop) and one folder (another thread): `written` is
    published after the row, and a fold that finds itself lapped counts the
    rows it lost instead of misreading them.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        if capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self.mask = capacity - 1
        self.rows = array("q", bytes(8 * _COLS * capacity))
        self.written = 0
        self.folded = 0
        self.lost = 0
        self.hist = {hop: new_histogram() for hop in HOPS}
        self._lock = threading.Lock()
        self._cached: tuple[list[HopSummary], dict[str, bytes]] | None = None
        self._cached_at = 0.0

    def record(self, t1: int, t2: int, t3: int, t4: int, t5: int) -> None:
        """Hot path: store one order's timestamps (0 = not known)."""
        i = (self.written & self.mask) * _COLS
        rows = self.rows
        rows[i] = t1
        rows[i + 1] = t2
        rows[i + 2] = t3
        rows[i + 3] = t4
        rows[i + 4] = t5
        self.written += 1

    def fold(self) -> int:
        """Move new rows into the histograms; returns how many were folded."""
        with self._lock:
            end = self.written
            start = self.folded
            cap = self.mask + 1
            if end - start > cap:
                self.lost += end - start - cap
                start = end - cap
            rows, hist = self.rows, self.hist
            for n in range(start, end):
                i = (n & self.mask) * _COLS
                t1, t2, t3, t4, t5 = rows[i : i + _COLS]
                if t1 and t2 >= t1:
                    hist["t1_t2"].record_value(max(t2 - t1, LOWEST_NS))
                if t2 and t3 >= t2:
                    hist["t2_t3"].record_value(max(t3 - t2, LOWEST_NS))
                if t3 and t4 >= t3:
                    hist["t3_t4"].record_value(max(t4 - t3, LOWEST_NS))
                if t4 and t5 >= t4:
                    hist["t4_t5"].record_value(max(t5 - t4, LOWEST_NS))
                if t1 and t4 >= t1:
                    hist["t1_t4"].record_value(max(t4 - t1, LOWEST_NS))
            self.folded = end
            return end - start

    def summaries(self, max_age_s: float = CACHE_S) -> list[HopSummary]:
        """Per-hop percentiles (from the same fold as `encoded`)."""
        return self._snapshot(max_age_s)[0]

    def encoded(self, max_age_s: float = CACHE_S) -> dict[str, bytes]:
        """HDR-encoded histograms for the monitor (from the same fold as `summaries`)."""
        return self._snapshot(max_age_s)[1]

    def _snapshot(self, max_age_s: float) -> tuple[list[HopSummary], dict[str, bytes]]:
        """Fold, summarize and encode together, at most every `max_age_s`: status
        polls stay cheap, and the two views always describe the same orders."""
        now = time.monotonic()
        if self._cached is None or now - self._cached_at >= max_age_s:
            self.fold()
            self._cached = (
                [summarize(hop, self.hist[hop]) for hop in HOPS],
                {hop: self.hist[hop].encode() for hop in HOPS},
            )
            self._cached_at = now
        return self._cached
