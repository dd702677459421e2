"""HDR histograms as the monitor sees them: decoded once, kept sparse, subtracted.

The gateway reports each hop as a cumulative, HDR-encoded histogram (see
`hftd.runtime.latency`). The monitor needs two things from it:

- percentiles over a recent window: the histogram now minus the one seen
  `latency_window_s` ago (counts are cumulative, so the difference is exactly
  the orders recorded in between);
- Prometheus histogram buckets (cumulative counts at fixed bounds).

A decoded `HdrHistogram` holds ~27,000 counters; this keeps only the non-zero
ones as sorted ``(index, count)`` pairs, and maps indexes back to values with
the histogram's own arithmetic, so percentiles equal `get_value_at_percentile`
on the same data (the gateway's own `latency_us` figures). Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from hftd.runtime.latency import HIGHEST_NS, LOWEST_NS, SIG_DIGITS

# Index <-> value arithmetic of the gateway's histograms (same parameters).
_REF = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIG_DIGITS)


def _value_at(index: int, percentile: float) -> int:
    """The value HdrHistogram reports for a percentile landing on `index`."""
    v = _REF.get_value_from_index(index)
    if percentile:
        return int(_REF.get_highest_equivalent_value(v))
    return int(_REF.get_lowest_equivalent_value(v))


class SparseHistogram:
    """Non-zero counters of one HDR histogram (values in nanoseconds)."""

    __slots__ = ("counts", "indexes", "total")

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        kept = sorted((i, c) for i, c in pairs if c > 0)
        self.indexes = [i for i, _ in kept]
        self.counts = [c for _, c in kept]
        self.total = sum(self.counts)

    @classmethod
    def decode(cls, blob: bytes) -> SparseHistogram:
        """From `HdrHistogram.encode()` output (raises ValueError if it is not one)."""
        try:
            h = HdrHistogram.decode(blob)
        except Exception as exc:  # hdrh raises assorted types on corrupt input
            raise ValueError(f"not an HDR histogram: {exc}") from exc
        n = min(h.counts_len, h.encoder.payload.counts_len)
        return cls((i, c) for i, c in enumerate(h.counts[:n]) if c)

    @classmethod
    def from_values(cls, values_ns: Iterable[int]) -> SparseHistogram:
        """Record values into a fresh histogram (tests, reference)."""
        acc: dict[int, int] = {}
        for v in values_ns:
            i = _REF.get_counts_array_index(max(int(v), LOWEST_NS))
            acc[i] = acc.get(i, 0) + 1
        return cls(acc.items())

    def __sub__(self, older: SparseHistogram) -> SparseHistogram:
        """What was recorded after `older` (a counter that went down: restarted, keep self)."""
        if older.total > self.total:
            return self
        prev = dict(zip(older.indexes, older.counts, strict=True))
        return SparseHistogram(
            (i, c - prev.get(i, 0)) for i, c in zip(self.indexes, self.counts, strict=True)
        )

    def is_reset_of(self, older: SparseHistogram) -> bool:
        """True if some counter went down: the histogram was started afresh."""
        mine = dict(zip(self.indexes, self.counts, strict=True))
        return any(mine.get(i, 0) < c for i, c in zip(older.indexes, older.counts, strict=True))

    def percentile_ns(self, percentile: float) -> int:
        """As `HdrHistogram.get_value_at_percentile` (0 when empty)."""
        if not self.total:
            return 0
        target = max(int(min(percentile, 100.0) * self.total / 100 + 0.5), 1)
        run = 0
        for i, c in zip(self.indexes, self.counts, strict=True):
            run += c
            if run >= target:
                return _value_at(i, percentile)
        return _value_at(self.indexes[-1], percentile)

    def max_ns(self) -> int:
        return _value_at(self.indexes[-1], 100.0) if self.indexes else 0

    def sum_ns(self) -> float:
        """Sum of recorded values (each counter at the middle of its value range)."""
        total = 0.0
        for i, c in zip(self.indexes, self.counts, strict=True):
            lo = _value_at(i, 0.0)
            hi = _value_at(i, 100.0)
            total += c * (lo + hi) / 2
        return total

    def cumulative(self, bounds_ns: list[int]) -> list[int]:
        """Counts of values <= each bound (bounds ascending): Prometheus `le` buckets."""
        highs = [_value_at(i, 100.0) for i in self.indexes]
        out = []
        run = 0
        k = 0
        for b in bounds_ns:
            j = bisect_right(highs, b)
            while k < j:
                run += self.counts[k]
                k += 1
            out.append(run)
        return out
