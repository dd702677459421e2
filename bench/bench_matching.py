#!/usr/bin/env python3
"""Latency/throughput benchmark of the pure matching engine (no I/O).

    python bench/bench_matching.py [--orders N] [--seed S] [--symbols K] [--depth D]

Drives `hftd.exchange.engine.MatchingEngine` with a seeded mixed workload:

- ~50% passive limit adds 1-10 ticks from the mid (day or GTX),
- ~20% cancels of live orders (most full, some partial reductions),
- ~15% replaces of live orders (half reduce size in place, half re-price),
- ~15% marketable orders: IOC limits through the touch, market orders, and
  day limits through the touch whose remainder rests. Their size leans
  against book growth (bigger while the book is deeper than --depth), so the
  book hovers around that depth instead of draining or piling up.

Only the call into the engine is timed (`time.perf_counter_ns()` before and
after), into preallocated `array` buffers; generating the workload and tracking
live orders from the returned events happens outside the timed window. The
garbage collector is frozen and disabled for the timed loop.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import time
from array import array
from pathlib import Path

try:
    from hftd.exchange.engine import (
        Fill,
        MatchingEngine,
        OrderCanceled,
        OrderReplaced,
        OrderRested,
        SymbolRules,
    )
    from hftd.wire.ouch import MARKET_PRICE, TIF_DAY, TIF_GTX, TIF_IOC
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hftd.exchange.engine import (
        Fill,
        MatchingEngine,
        OrderCanceled,
        OrderReplaced,
        OrderRested,
        SymbolRules,
    )
    from hftd.wire.ouch import MARKET_PRICE, TIF_DAY, TIF_GTX, TIF_IOC

TICK = 100
MID = 1_000_000  # 100.00 with 4 implied decimals

# op type codes (index into OP_NAMES)
ADD, CANCEL, REPLACE, TAKE_IOC, TAKE_MKT, TAKE_DAY = range(6)
OP_NAMES = ("add", "cancel", "replace", "take_ioc", "take_market", "take_day_limit")


class Live:
    """Live order refs with O(1) random pick and removal (swap-remove)."""

    __slots__ = ("pos", "refs")

    def __init__(self) -> None:
        self.refs: list[int] = []
        self.pos: dict[int, int] = {}

    def add(self, ref: int) -> None:
        self.pos[ref] = len(self.refs)
        self.refs.append(ref)

    def discard(self, ref: int) -> None:
        i = self.pos.pop(ref, None)
        if i is None:
            return
        last = self.refs.pop()
        if last != ref:
            self.refs[i] = last
            self.pos[last] = i

    def pick(self, rng: random.Random) -> int | None:
        return self.refs[rng.randrange(len(self.refs))] if self.refs else None

    def __len__(self) -> int:
        return len(self.refs)


def track(events: list, live: Live) -> int:
    """Update the live set from one command's events; return the number of fills."""
    n_fills = 0
    for ev in events:
        if isinstance(ev, Fill):
            n_fills += 1
            if ev.resting_open_qty == 0:
                live.discard(ev.resting_ref)
        elif isinstance(ev, OrderRested):
            live.add(ev.order.order_ref)
        elif isinstance(ev, OrderCanceled):
            if ev.open_qty == 0:
                live.discard(ev.order_ref)
        elif isinstance(ev, OrderReplaced) and not ev.kept_priority:
            live.discard(ev.old_ref)
            if not ev.crossed:  # went straight onto the book, no OrderRested follows
                live.add(ev.order.order_ref)
    return n_fills


def percentile(sorted_ns: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_ns:
        return 0
    k = max(0, min(len(sorted_ns) - 1, int(-(-q * len(sorted_ns) // 100)) - 1))
    return sorted_ns[k]


def run(n_ops: int, seed: int, n_symbols: int, target_depth: int) -> None:
    rng = random.Random(seed)
    symbols = [f"SYM{i}" for i in range(n_symbols)]
    engine = MatchingEngine({s: SymbolRules(tick=TICK) for s in symbols}, max_order_size=1_000_000)
    live = {s: Live() for s in symbols}
    mids = dict.fromkeys(symbols, MID)
    user_ref = 0

    for s in symbols:  # untimed prefill: a two-sided book around the mid
        for _ in range(target_depth):
            user_ref += 1
            buy = rng.random() < 0.5
            off = rng.randint(1, 10) * TICK
            track(
                engine.enter(
                    owner="mm",
                    user_ref=user_ref,
                    symbol=s,
                    side="B" if buy else "S",
                    quantity=rng.randint(1, 5) * 100,
                    price=MID - off if buy else MID + off,
                    tif=TIF_DAY,
                ),
                live[s],
            )

    lat = array("q", bytes(8 * n_ops))  # preallocated: ns per op
    kind = array("B", bytes(n_ops))  # op type per op
    n_fills = 0
    n_events = 0
    depth_samples: list[int] = []
    perf = time.perf_counter_ns
    enter, cancel, replace = engine.enter, engine.cancel, engine.replace

    gc.collect()
    gc.freeze()
    gc.disable()
    wall0 = perf()
    for i in range(n_ops):
        s = symbols[i % n_symbols]
        lv = live[s]
        if i % 1000 == 0:  # the mid wanders a tick now and then
            mids[s] += rng.choice((-TICK, 0, TICK))
            depth_samples.append(len(lv))
        mid = mids[s]
        user_ref += 1
        r = rng.random()
        if r < 0.50:
            op = ADD
        elif r < 0.70:
            op = CANCEL if len(lv) else ADD
        elif r < 0.85:
            op = REPLACE if len(lv) else ADD
        else:
            op = (TAKE_IOC, TAKE_MKT, TAKE_DAY)[rng.randrange(3)]

        if op == ADD:
            buy = rng.random() < 0.5
            off = rng.randint(1, 10) * TICK
            price = mid - off if buy else mid + off
            qty = rng.randint(1, 5) * 100
            tif = TIF_GTX if rng.random() < 0.1 else TIF_DAY
            side = "B" if buy else ("S", "S", "S", "T")[rng.randrange(4)]
            t0 = perf()
            ev = enter(
                owner="mm",
                user_ref=user_ref,
                symbol=s,
                side=side,
                quantity=qty,
                price=price,
                tif=tif,
            )
            t1 = perf()
        elif op == CANCEL:
            ref = lv.pick(rng)
            order = engine.orders[ref]
            keep = 0 if rng.random() < 0.8 else order.open_qty // 2
            t0 = perf()
            ev = cancel(ref, keep)
            t1 = perf()
        elif op == REPLACE:
            ref = lv.pick(rng)
            order = engine.orders[ref]
            if rng.random() < 0.5 and order.open_qty > 1:  # shrink in place: keeps priority
                qty, price = max(1, order.open_qty - rng.randint(1, 100)), order.price
            else:  # re-price (and re-size): new ref, back of the queue
                off = rng.randint(1, 10) * TICK
                price = mid - off if order.side == "B" else mid + off
                qty = rng.randint(1, 5) * 100
            t0 = perf()
            ev = replace(ref, new_user_ref=user_ref, quantity=qty, price=price)
            t1 = perf()
        else:
            buy = rng.random() < 0.5
            # taker size leans against book growth so the depth hovers near the target
            qty = rng.randint(1, 30 if len(lv) > target_depth else 10) * 100
            if op == TAKE_MKT:
                price, tif = MARKET_PRICE, TIF_IOC
            else:
                off = rng.randint(0, 5) * TICK
                price = mid + off if buy else mid - off
                tif = TIF_IOC if op == TAKE_IOC else TIF_DAY
            t0 = perf()
            ev = enter(
                owner="taker",
                user_ref=user_ref,
                symbol=s,
                side="B" if buy else "S",
                quantity=qty,
                price=price,
                tif=tif,
            )
            t1 = perf()
        lat[i] = t1 - t0
        kind[i] = op
        n_events += len(ev)
        n_fills += track(ev, lv)
    wall_ns = perf() - wall0
    gc.enable()
    gc.unfreeze()

    in_engine_ns = sum(lat)
    by_kind: list[list[int]] = [[] for _ in OP_NAMES]
    for k, v in zip(kind, lat, strict=True):
        by_kind[k].append(v)

    print("hftd matching engine benchmark")
    print(f"  machine : {platform.platform()} ({platform.machine()}), cpu_count={os.cpu_count()}")
    print(f"  python  : {platform.python_implementation()} {sys.version.split()[0]}")
    print(
        f"  workload: seed={seed} ops={n_ops:,} symbols={n_symbols} "
        f"target depth={target_depth} orders/symbol (prefilled, untimed), tick={TICK}"
    )
    print("  gc      : collected + frozen, then DISABLED during the timed loop")
    print("  timing  : perf_counter_ns() around each engine call only")
    print()
    print(f"  total ops         : {n_ops:,}")
    print(f"  fills / events    : {n_fills:,} / {n_events:,}")
    print(
        f"  resting orders    : min {min(depth_samples):,} / mean "
        f"{sum(depth_samples) // len(depth_samples):,} / max {max(depth_samples):,} "
        f"per symbol (sampled every 1000 ops); {len(engine.orders):,} at the end"
    )
    print(
        f"  time in engine    : {in_engine_ns / 1e9:.3f} s "
        f"-> {n_ops / (in_engine_ns / 1e9):,.0f} ops/s (engine calls only)"
    )
    print(
        f"  wall time of loop : {wall_ns / 1e9:.3f} s "
        f"-> {n_ops / (wall_ns / 1e9):,.0f} ops/s (incl. workload generation)"
    )
    print()
    header = (
        f"  {'op':<15}{'count':>9}{'share':>7}{'mean':>9}{'p50':>9}{'p95':>9}"
        f"{'p99':>9}{'p99.9':>9}{'max':>10}"
    )
    print(header + "   (latency in microseconds)")
    print("  " + "-" * (len(header) - 2))
    rows = [(name, by_kind[k]) for k, name in enumerate(OP_NAMES)]
    rows.append(("ALL", list(lat)))
    for name, values in rows:
        values.sort()
        n = len(values)
        if not n:
            print(f"  {name:<15}{0:>9}")
            continue
        us = [percentile(values, q) / 1000 for q in (50, 95, 99, 99.9)]
        print(
            f"  {name:<15}{n:>9,}{100 * n / n_ops:>6.1f}%{sum(values) / n / 1000:>9.2f}"
            f"{us[0]:>9.2f}{us[1]:>9.2f}{us[2]:>9.2f}{us[3]:>9.2f}{values[-1] / 1000:>10.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--orders",
        type=int,
        default=1_500_000,
        help="number of timed operations (default 1,500,000)",
    )
    ap.add_argument("--seed", type=int, default=1, help="workload RNG seed (default 1)")
    ap.add_argument("--symbols", type=int, default=1, help="symbols, round-robin (default 1)")
    ap.add_argument(
        "--depth",
        type=int,
        default=2_000,
        help="resting orders per symbol to prefill and hover around (default 2000)",
    )
    args = ap.parse_args(argv)
    if args.orders <= 0 or args.symbols <= 0 or args.depth < 0:
        ap.error("--orders and --symbols must be positive, --depth not negative")
    run(args.orders, args.seed, args.symbols, args.depth)


if __name__ == "__main__":
    main()
