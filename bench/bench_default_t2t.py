#!/usr/bin/env python3
"""Tick-to-trade of the default configuration, as issue 12's "done when" states it.

    python bench/bench_default_t2t.py [--seconds 40] [--runs 3]
                                      [--tree NAME=PATH ...] [--set KEY=JSON ...]

`hftd up --new-day` on config/default.toml (default synthetic flow, both default
strategies, log level "info", the monitor, the layout `auto` picks here), with
fresh ports, run dir and journal dir (tests/support.py `make_config`). After the
first fill and 2 s more, the gateway's T1..T4 histograms (`latency_hdr` in its
Status) are read, and again after `--seconds`; the difference is summarized
per hop (p50/p99/p99.9 in µs, and the count of orders), with the CPU the
gateway's process (the hotpath process in the composite layout) used meanwhile.

`--tree NAME=PATH` runs the daemons from another checkout (PYTHONPATH=PATH:
`hftd up`'s children run `python -P -m hftd.cli`, and PYTHONPATH comes before
the editable install), several of them alternating run by run, for a
before/after in one sitting on a shared machine: compare the medians.
`--set` overrides config keys (e.g. `--set hotpath.layout='"split"'`).
The load average before each run is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOPS = ("t1_t2", "t2_t3", "t3_t4", "t1_t4")

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from tests.support import RING_PREFIXES, ask, make_config, start_daemon, status, wait_for
from hftd.msg.control import Status
from hftd.runtime.hdr import SparseHistogram
from hftd.runtime.latency import summarize
tmp, over, seconds = Path(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])


def cpu_s(pid):  # user + system CPU seconds of a process
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


cfg = make_config(tmp, over)
try:
    with start_daemon("up", cfg, args=("--new-day",), ready_timeout=60) as up:
        wait_for(lambda: status(up, "gateway").get("fills", 0) >= 1, 90, "a first fill")
        time.sleep(2)
        pid = ask(up, "gateway", Status())["pid"]
        g0, c0, w0 = status(up, "gateway")["latency_hdr"], cpu_s(pid), time.monotonic()
        time.sleep(seconds)
        g1, c1, w1 = status(up, "gateway")["latency_hdr"], cpu_s(pid), time.monotonic()
        same = ask(up, "gateway", Status())["pid"] == ask(up, "feed", Status())["pid"]
        layout = "composite" if same else "split"
finally:  # rings and the supervisor's lock, even after a failed run (as tests/conftest.py)
    for prefix in RING_PREFIXES:
        for path in Path("/dev/shm").glob(f"{prefix}-*"):
            path.unlink(missing_ok=True)
out = {"layout": layout, "cpu": 100 * (c1 - c0) / (w1 - w0)}
for hop in ("t1_t2", "t2_t3", "t3_t4", "t1_t4"):
    h = SparseHistogram.from_wire(g1.get(hop, {})) - SparseHistogram.from_wire(g0.get(hop, {}))
    s = summarize(hop, h)
    out[hop] = [s.p50, s.p99, s.p999, s.count]
print(json.dumps(out))
"""


def set_key(over: dict[str, object], key: str, value: object) -> None:
    *path, last = key.split(".")
    d = over
    for p in path:
        d = d.setdefault(p, {})  # type: ignore[assignment]
    d[last] = value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="measured window per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per tree (alternating)")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    args = ap.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(ROOT)}
    over: dict[str, object] = {}
    for s in args.set:
        k, v = s.split("=", 1)
        set_key(over, k, json.loads(v))
    print(
        f"default config, {args.seconds:.0f} s windows, {args.runs} runs per tree, "
        f"{os.cpu_count()} CPUs, overrides {over or 'none'}"
    )
    results: dict[str, list[dict[str, list[float]]]] = {n: [] for n in trees}
    for i in range(args.runs):
        for name, path in trees.items():
            env = dict(os.environ, PYTHONPATH=f"{path}:{ROOT}")
            load = os.getloadavg()[0]
            with tempfile.TemporaryDirectory(prefix="bench-t2t-") as tmp:
                r = subprocess.run(
                    # -P and cwd=path: the tree's own tests.support (make_config, its
                    # config/default.toml) and hftd, never this checkout's by way of cwd
                    [sys.executable, "-P", "-c", CHILD, tmp, json.dumps(over), str(args.seconds)],
                    cwd=path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=args.seconds + 300,
                )
            if r.returncode != 0:
                sys.exit(f"{name} run {i + 1} failed:\n{r.stderr[-3000:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            results[name].append(res)
            hops = " | ".join(
                f"{h} {res[h][0]:6.1f}/{res[h][1]:6.1f}/{res[h][2]:7.1f}" for h in HOPS
            )
            print(
                f"{name:>8} run {i + 1} ({res['layout']}) n={res['t1_t4'][3]:4.0f} "
                f"load {load:.2f} | {hops}  (p50/p99/p99.9 us) | gateway's process "
                f"{res['cpu']:.1f}% CPU",
                flush=True,
            )
    print("medians of the runs (T1->T4 p50 / p99 / p99.9, us):")
    base = None
    for name, rs in results.items():
        m = [statistics.median(r["t1_t4"][k] for r in rs) for k in range(3)]
        ratio = "" if base is None else f"  x{m[0] / base:.2f} of {next(iter(results))} at p50"
        base = base if base is not None else m[0]
        print(f"{name:>8}: {m[0]:.1f} / {m[1]:.1f} / {m[2]:.1f}{ratio}")


if __name__ == "__main__":
    main()
