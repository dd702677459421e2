#!/usr/bin/env python3
"""Soak: the whole system under steady flow for a long time, sampled per minute.

    python bench/bench_soak.py [--minutes 60] [--rate 100] [--sample-s 60]
                               [--warmup-s 360] [--cwd CHECKOUT]

`hftd up` on default.toml (as bench/bench_memory.py sets it up: the synthetic
flow at `--rate` events/s per symbol, the default strategies trading, risk
limits out of the way), log level "warning". Every `--sample-s` it samples,
per process: RSS and open file descriptors; for the system: the journal
dir's size (every daemon's journals of the day), the strategy's and the
gateway's counters, and the gateway's tick-to-trade (T1->T4) percentiles over
the last interval (its HDR histograms, differenced). At the end, for each
series, its first and last values and the least-squares slope per hour over
the samples after `--warmup-s`: flat memory and descriptors are ~0 per hour;
journals grow with the day's traffic by design (they are the books and
records), so their figure is MB per hour at that traffic. 1 hour is the
documented run (docs/performance.md); 24 hours is possible (`--minutes 1440`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_memory import DAEMONS, processes, rss_kib, running_system, status  # noqa: E402

from hftd.runtime.hdr import SparseHistogram  # noqa: E402
from hftd.runtime.latency import summarize  # noqa: E402


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def slope_per_h(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den * 3600 if den else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=100.0, help="flow events/s per symbol")
    ap.add_argument("--sample-s", type=float, default=60.0)
    ap.add_argument("--warmup-s", type=float, default=360.0)
    ap.add_argument("--cwd", type=Path, default=None, help="run the system from this checkout")
    args = ap.parse_args()
    code = (args.cwd or ROOT).resolve()
    series: dict[str, list[tuple[float, float]]] = {}

    def add(name: str, t: float, v: float) -> None:
        series.setdefault(name, []).append((t, v))

    with running_system(code, args.rate, "hftd-bench-soak-") as tmp:
        run_dir, journal = tmp / "run", tmp / "journal"
        t0 = time.monotonic()
        pids = {d: int(status(run_dir, d)["pid"]) for d in DAEMONS}
        procs = processes(pids)
        print(f"pids {pids}; {args.minutes:g} min at {args.rate:g} events/s per symbol", flush=True)
        print(
            f"{'min':>5} "
            + " ".join(f"{n + ' MiB':>12} {'fds':>4}" for n in procs)
            + f" {'journal MB':>10} {'fills':>8} {'t2t p50':>8} {'p99':>7}  load",
            flush=True,
        )
        prev_hdr = SparseHistogram.from_wire(
            status(run_dir, "gateway")["detail"]["latency_hdr"].get("t1_t4", {})
        )
        end = t0 + args.minutes * 60
        next_at = t0 + args.sample_s
        while True:
            time.sleep(max(0.0, min(next_at, end) - time.monotonic()))
            t = time.monotonic() - t0
            for d in DAEMONS:
                if int(status(run_dir, d)["pid"]) != pids[d]:
                    raise RuntimeError(f"{d} restarted")
            cells = []
            for name, (pid, _parts) in procs.items():
                mib, n = rss_kib(pid) / 1024, fds(pid)
                add(f"{name} RSS MiB", t, mib)
                add(f"{name} fds", t, n)
                cells.append(f"{mib:>12.1f} {n:>4}")
            jmb = dir_bytes(journal) / 1e6
            add("journals MB", t, jmb)
            gw = status(run_dir, "gateway")["detail"]
            hdr = SparseHistogram.from_wire(gw["latency_hdr"].get("t1_t4", {}))
            s = summarize("t1_t4", hdr - prev_hdr)
            prev_hdr = hdr
            if s.count:
                add("t1_t4 p50 us", t, s.p50)
                add("t1_t4 p99 us", t, s.p99)
            print(
                f"{t / 60:5.1f} "
                + " ".join(cells)
                + f" {jmb:>10.1f} {gw.get('fills', 0):>8,} {s.p50:>8.0f} {s.p99:>7.0f}"
                + f"  {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            next_at += args.sample_s
            if time.monotonic() >= end:
                break
    print(f"\nper series: first -> last, slope per hour after {args.warmup_s:g} s (and overall)")
    for name, pts in series.items():
        late = [p for p in pts if p[0] >= args.warmup_s]
        print(
            f"  {name:22} {pts[0][1]:>10.1f} -> {pts[-1][1]:>10.1f}   "
            f"{slope_per_h(late):+10.2f}/h after warm-up ({len(late)} samples), "
            f"{slope_per_h(pts):+10.2f}/h overall"
        )
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
