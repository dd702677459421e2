"""The monitor's windows reach a plateau: once full, its memory no longer grows with the
day, however many counters the gateway's cumulative latency histograms come to have."""

from __future__ import annotations

import gc
import random
import tracemalloc

from hftd.monitor.model import Aggregator
from hftd.runtime.hdr import hdr_index
from hftd.runtime.latency import HOPS
from tests.unit import monitor_fixtures as fx


class Gateway:
    """A gateway's Status: ~100 orders a second, latencies mostly 50-500 us, and a tail
    that keeps reaching counters it never reached before (as a real day's does, more
    and more slowly: here steadily, to see it in minutes)."""

    def __init__(self) -> None:
        self.rng = random.Random(3)
        self.counts: dict[int, int] = {}
        self.detail = fx.gateway(latency_ns=[100_000])
        self.next_tail = hdr_index(2_000_000)
        self.sent = 0

    def second(self) -> dict[str, object]:
        rng, counts = self.rng, self.counts
        for _ in range(100):
            i = hdr_index(int(rng.lognormvariate(11.5, 0.6)))
            counts[i] = counts.get(i, 0) + 1
        for _ in range(3):  # new counters out in the tail
            counts[self.next_tail] = counts.get(self.next_tail, 0) + 1
            self.next_tail += 1
        self.sent += 100
        return {
            **self.detail,
            "sent": self.sent,
            "fills": self.sent // 3,
            "latency_hdr": {hop: dict(counts) for hop in HOPS},
        }


def test_the_monitor_model_reaches_a_plateau_once_its_windows_are_full() -> None:
    """It kept a cumulative histogram per hop for every second of the latency window
    (65 of them), each as large as the day's: +16 MB/h while "filling its window", and
    on as the histograms grew. Now, per second, only what that second added."""
    cfg = fx.config()
    agg = Aggregator(cfg)
    gw = Gateway()
    t = 1000.0

    def run(seconds: int) -> None:
        nonlocal t
        for _ in range(seconds):
            detail = gw.second()
            for _ in range(2):  # polls every 0.5 s; the gateway's figures once a second
                t += 0.5
                agg.ingest(
                    fx.poll(t, {"gateway": detail, "feed": fx.feed(), "strategy": fx.strategy()})
                )

    full = int(max(cfg.monitor.window_s, cfg.monitor.latency_window_s)) + 30
    run(full)  # every window full
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(300)  # 900 more counters in every hop's histogram
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    s = agg.state
    lat = s.hop("t1_t4")
    assert lat is not None and 5_500 <= lat.count <= 6_500  # the last 60 s: ~6,000 orders
    total = s.hop("t1_t4", total=True)
    assert total is not None and total.count == gw.sent + 3 * (full + 300)
    # What may grow: the one cumulative histogram per hop, the gateway's reply it came
    # from and this test's own copy: ~1.5 KB per new counter (5 hops). Keeping 65
    # cumulative snapshots per hop, it was ~16 KB per new counter (14.8 MB here).
    new_counters = 3 * 300
    assert grown < 2_000 * new_counters, f"the monitor's model grew {grown} bytes in 300 s"


def test_added_since_is_the_difference_or_a_reset() -> None:
    """`added_since` (one pass) agrees with `is_reset_of` and `-` (two)."""
    from hftd.runtime.hdr import SparseHistogram

    rng = random.Random(5)
    for _ in range(300):
        old = {rng.randrange(50): rng.randint(1, 9) for _ in range(rng.randint(0, 20))}
        new = dict(old)
        for _ in range(rng.randint(0, 10)):
            i = rng.randrange(60)
            new[i] = new.get(i, 0) + rng.randint(1, 5)
        if old and rng.random() < 0.3:  # a restarted gateway: a counter lower, or gone
            i = rng.choice(list(old))
            new[i] = rng.randint(0, old[i] - 1) if old[i] > 1 else 0
        a, b = SparseHistogram(old.items()), SparseHistogram(new.items())
        got = b.added_since(a)
        if b.is_reset_of(a):
            assert got is None
        else:
            assert got is not None and got.to_wire() == (b - a).to_wire()
