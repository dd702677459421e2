"""The live system's measured latency as the backtest's model (pure).

`hftctl latency --save FILE` writes the gateway's per-hop HDR histograms (T1
feed receive, T2 strategy decision, T3 risk done, T4 bytes to the socket, T5
the venue's acknowledgement). With `backtest.latency_histograms = FILE` a
backtest draws its delays from them, seeded:

- entry (our order to the venue): a T1->T4 draw (the decision, risk and the
  send, as the live path took them) plus half a T4->T5 draw (the wire);
- response (the venue's reply to the gateway): half a T4->T5 draw;
- the feed's delay is not measured live (T1 is our receipt; the venue's send
  time is not ours to stamp): it stays `backtest.feed_latency`.

A draw picks a counter in proportion to its count and a value uniformly within
its range (the histograms keep 2 significant digits: within 1%).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from hftd.runtime.hdr import HIGH, LOW, SparseHistogram


class HopDraw:
    """Seeded draws (ns) from one hop's histogram."""

    def __init__(self, h: SparseHistogram, rng: random.Random) -> None:
        if not h.total:
            raise ValueError("an empty histogram")
        self.cum = list(accumulate(h.counts))
        self.indexes = h.indexes
        self.rng = rng

    def __call__(self) -> int:
        i = self.indexes[bisect_right(self.cum, self.rng.randrange(self.cum[-1]))]
        return self.rng.randint(LOW[i], HIGH[i])


def load_hops(data: Any) -> dict[str, SparseHistogram]:
    """{hop: {index: count}} (as `hftctl latency --save` writes, JSON keys as text)
    -> histograms; ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("expected {hop: {index: count}}")
    out: dict[str, SparseHistogram] = {}
    for hop, counts in data.items():
        if not isinstance(counts, dict):
            raise ValueError(f"{hop}: expected {{index: count}}")
        try:
            out[str(hop)] = SparseHistogram.from_wire({int(k): v for k, v in counts.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{hop}: {exc}") from exc
    return out


def measured(
    hops: dict[str, SparseHistogram], seed: int
) -> tuple[Callable[[], int], Callable[[], int]]:
    """(entry delay, response delay) draws in ns from the live hops (module doc)."""
    for hop in ("t1_t4", "t4_t5"):
        if not hops.get(hop) or not hops[hop].total:
            raise ValueError(f"no {hop} figures (the live system measured no orders?)")
    rng = random.Random(seed)
    decide, wire = HopDraw(hops["t1_t4"], rng), HopDraw(hops["t4_t5"], rng)

    def entry() -> int:
        return decide() + wire() // 2

    def response() -> int:
        return wire() // 2

    return entry, response
