#!/usr/bin/env python3
"""What an idle gap costs the next piece of Python work on this machine.

    python bench/bench_cold.py [--samples 300] [--cpu N]

The same small piece of work (20 msgspec encode/decode round trips of a
hot-path-sized struct and a dict update: ~12 µs back to back on the 2-vCPU VM)
is timed with `time.perf_counter_ns()` after a gap of 0, 1, 12 and 50 ms:
spent asleep in poll() (the hot loop's sleep), spent spinning (the thread never
leaves the CPU), or asleep but running the work every ~1 ms in between (a
cache-warming pass). Prints p50/p99 per case and the ratio to back to back.

Why it matters: at the default synthetic flow (20 events/s per symbol, ~80
market-data messages/s) the hot path runs ~12 ms apart, and every stage of
it costs several times its warm figure (docs/performance.md, "Cold caches").
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import time

import msgspec


class Update(msgspec.Struct, array_like=True, gc=False):
    seq: int
    kind: int
    symbol: str
    price: int
    qty: int
    t1: int


ENC = msgspec.msgpack.Encoder()
DEC = msgspec.msgpack.Decoder(Update)
STATE: dict[str, int] = {}


def work() -> int:
    n = 0
    for i in range(20):
        u = DEC.decode(ENC.encode(Update(i, 1, "AAPL", 1_895_000 + i, 100, time.monotonic_ns())))
        STATE[u.symbol] = STATE.get(u.symbol, 0) + u.price
        n += u.qty
    return n


def measure(samples: int, gap_ms: int, mode: str, poller: select.poll) -> list[int]:
    out = []
    for _ in range(samples):
        end = time.perf_counter_ns() + gap_ms * 1_000_000
        if mode == "sleep" and gap_ms:
            poller.poll(gap_ms)
        elif mode == "spin":
            while time.perf_counter_ns() < end:
                pass
        elif mode == "warm":
            while (now := time.perf_counter_ns()) < end:
                poller.poll(max(0, min(1, (end - now) // 1_000_000)))
                work()
        t = time.perf_counter_ns()
        work()
        out.append(time.perf_counter_ns() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--cpu", type=int, default=-1, help="pin to this CPU (default: not pinned)")
    args = ap.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    r, _w = os.pipe()
    poller = select.poll()
    poller.register(r, select.POLLIN)
    for _ in range(2000):
        work()
    warm = sorted(measure(args.samples, 0, "sleep", poller))
    base = statistics.median(warm)
    print(
        f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, pinned to "
        f"{args.cpu if args.cpu >= 0 else 'none'}; {args.samples} samples per row"
    )
    print(f"{'gap':>6} {'how':>6} {'p50 us':>8} {'p99 us':>8} {'x p50':>6}")
    print(
        f"{0:>4}ms {'-':>6} {base / 1000:8.1f} {warm[int(len(warm) * 0.99)] / 1000:8.1f} {1:6.2f}"
    )
    for gap in (1, 12, 50):
        for mode in ("sleep", "spin", "warm"):
            if mode != "sleep" and gap == 50:
                continue
            xs = sorted(measure(args.samples if gap < 50 else args.samples // 3, gap, mode, poller))
            p50 = statistics.median(xs)
            print(
                f"{gap:>4}ms {mode:>6} {p50 / 1000:8.1f} {xs[int(len(xs) * 0.99)] / 1000:8.1f} "
                f"{p50 / base:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
