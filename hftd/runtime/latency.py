"""Hop latency recording: preallocated arrays on the hot path, histograms off it.

Recording a value into an `HdrHistogram` costs ~2.7 µs in Python: too much
per order. The hot path writes its timestamps into a preallocated ring of
int64 slots (~0.2 µs); `fold()` runs off the hot path (a timer in the control
thread) and counts new rows into sparse HDR counters (`hftd.runtime.hdr`).
Status polls get copies of those counters and nothing computed from them: a
gateway answering its monitor must not hold the GIL its hot loop waits for.
"""

from __future__ import annotations

import threading
from array import array
from typing import Any

import msgspec

from hftd.runtime.hdr import SparseHistogram, hdr_index

HOPS = ("t1_t2", "t2_t3", "t3_t4", "t4_t5", "t1_t4")
_COLS = 5  # t1..t5 per row


class HopLatency(msgspec.Struct, kw_only=True):
    """Percentiles of one hop in microseconds (the monitor's state shows these too)."""

    hop: str
    count: int
    p50: float
    p95: float
    p99: float
    p999: float
    max: float
    mean: float = 0.0


def summarize(hop: str, h: SparseHistogram) -> HopLatency:
    """Percentiles as `HdrHistogram.get_value_at_percentile` gives them."""
    p50, p95, p99, p999 = (v / 1e3 for v in h.percentiles_ns([50.0, 95.0, 99.0, 99.9]))
    mean = h.sum_ns() / h.total / 1e3 if h.total else 0.0
    return HopLatency(
        hop=hop,
        count=h.total,
        p50=p50,
        p95=p95,
        p99=p99,
        p999=p999,
        max=h.max_ns() / 1e3,
        mean=mean,
    )


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
        self.hist: dict[str, dict[int, int]] = {hop: {} for hop in HOPS}  # index -> count
        self._lock = threading.Lock()

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
            rows, hist, idx = self.rows, self.hist, hdr_index
            h12, h23, h34, h45, h14 = (hist[h] for h in HOPS)
            for n in range(start, end):
                i = (n & self.mask) * _COLS
                t1, t2, t3, t4, t5 = rows[i : i + _COLS]
                if t1 and t2 >= t1:
                    k = idx(t2 - t1)
                    h12[k] = h12.get(k, 0) + 1
                if t2 and t3 >= t2:
                    k = idx(t3 - t2)
                    h23[k] = h23.get(k, 0) + 1
                if t3 and t4 >= t3:
                    k = idx(t4 - t3)
                    h34[k] = h34.get(k, 0) + 1
                if t4 and t5 >= t4:
                    k = idx(t5 - t4)
                    h45[k] = h45.get(k, 0) + 1
                if t1 and t4 >= t1:
                    k = idx(t4 - t1)
                    h14[k] = h14.get(k, 0) + 1
            self.folded = end
            return end - start

    def histograms(self) -> dict[str, dict[int, int]]:
        """Per-hop sparse HDR counters ({index: count}), cumulative since start:
        what the gateway's Status carries (`SparseHistogram.from_wire`). Copies
        of dicts only (C speed): percentiles are the reader's work."""
        self.fold()
        with self._lock:
            return {hop: dict(self.hist[hop]) for hop in HOPS}

    def summaries(self) -> list[HopLatency]:
        """Per-hop percentiles, in this process (tests, tools; not the Status path)."""
        return summaries(self.histograms())


def summaries(latency_hdr: dict[str, Any]) -> list[HopLatency]:
    """Per-hop percentiles from a gateway Status' ``latency_hdr`` (missing hops: empty)."""
    return [summarize(hop, SparseHistogram.from_wire(latency_hdr.get(hop, {}))) for hop in HOPS]
