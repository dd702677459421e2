#!/usr/bin/env python3
"""What a neighbour process does to tick-to-trade: alternating phases on one running system.

    python bench/bench_interference.py [--phase S] [--cycles N] [--variants a,b,...]

`hftd up` runs exchange, feed, gateway and strategy under the latency phase's
load (as `bench_tick_to_trade.py`). Then, for `--cycles` rounds, each variant
runs for `--phase` seconds while the gateway's histograms give T1->T2 and
T1->T4 over exactly that phase; the variants alternate, so host drift hits
them all alike. Variants:

- ``none``: nothing added;
- ``monitor``: `hftd monitor` as configured by default (SCHED_IDLE);
- ``poller``: a SCHED_IDLE process asking every daemon `Status` at 2 Hz on
  kept-open connections, decoding nothing (the daemons' share of monitoring);
- ``burnB/P``: a SCHED_IDLE process computing B ms out of every B+P ms (no
  system calls while it computes), e.g. ``burn15/500``, ``burn0.2/6.6``.

Prints each phase and, per variant, the percentiles over all its phases'
orders pooled.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_tick_to_trade as t2t  # noqa: E402

from hftd.runtime.hdr import SparseHistogram  # noqa: E402

HOPS = ("t1_t4", "t1_t2")

POLLER = """
import os, socket, struct, sys, time
sys.path.insert(0, {root!r})
from hftd.msg.control import Status, encoder
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
conns = {{}}
def recv(c, n):
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise SystemExit("daemon closed the connection")
        buf += chunk
    return buf
while True:
    t0 = time.monotonic()
    for name in ("exchange", "feed", "strategy", "gateway", "supervisor"):
        c = conns.get(name)
        if c is None:
            c = conns[name] = socket.socket(socket.AF_UNIX)
            c.connect(os.path.join({run_dir!r}, name + ".sock"))
        body = encoder.encode(Status())
        c.sendall(struct.pack(">I", len(body)) + body)
        (n,) = struct.unpack(">I", recv(c, 4))
        recv(c, n)
    time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))
"""

BURNER = """
import os, time
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < {busy_ms} / 1000:
        pass
    time.sleep({pause_ms} / 1000)
"""


def start_neighbour(variant: str, tmp: Path, run_dir: Path, base: str) -> subprocess.Popen[bytes]:
    """The variant's process, started and (for the monitor) READY."""
    if variant == "poller":
        code = POLLER.format(root=str(ROOT), run_dir=str(run_dir))
        return subprocess.Popen([sys.executable, "-c", code])
    if variant.startswith("burn"):
        busy, pause = (float(x) for x in variant.removeprefix("burn").split("/"))
        return subprocess.Popen([sys.executable, "-c", BURNER.format(busy_ms=busy, pause_ms=pause)])
    if variant != "monitor":
        raise SystemExit(f"unknown variant {variant!r} (none, monitor, poller, burnB/P)")
    cfg = tmp / "monitor.toml"
    cfg.write_text(
        base + "\n[daemons.monitor]\ncpu_policy = 'idle'\n\n[monitor]\n"
        f"web_port = {t2t.free_port()}\n"
    )
    notify = tmp / "monitor-notify.sock"
    notify.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
        ns.bind(str(notify))
        ns.settimeout(30)
        proc = subprocess.Popen(
            [sys.executable, "-m", "hftd.cli", "monitor", "--config", str(cfg)],
            env=dict(os.environ, NOTIFY_SOCKET=str(notify)),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while b"READY=1" not in ns.recv(4096):
            pass
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", type=float, default=10.0, help="seconds per phase")
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--variants", default="none,monitor,poller,burn15/500,burn0.2/6.6")
    ap.add_argument("--rate", type=float, default=250.0, help="flow events/s per symbol")
    args = ap.parse_args()
    variants = args.variants.split(",")
    pooled: dict[str, dict[str, list[Any]]] = {v: {h: [] for h in HOPS} for v in variants}
    with tempfile.TemporaryDirectory(prefix="hftd-bench-") as d:
        tmp = Path(d)
        cfg = t2t.write_config(tmp, "latency", args.rate)
        base = cfg.read_text()
        system = t2t.System(cfg)
        try:
            time.sleep(2.0)  # past start-up

            def snap() -> dict[str, SparseHistogram]:
                g = system.status("gateway")["latency_hdr"]
                return {h: SparseHistogram.from_wire(g[h]) for h in HOPS}

            for cycle in range(args.cycles):
                for v in variants:
                    proc = None if v == "none" else start_neighbour(v, tmp, system.run_dir, base)
                    try:
                        time.sleep(1.0)  # the neighbour settles in
                        a = snap()
                        time.sleep(args.phase)
                        b = snap()
                    finally:
                        if proc is not None:
                            proc.send_signal(signal.SIGTERM)
                            proc.wait(10)
                    parts = []
                    for h in HOPS:
                        w = b[h] - a[h]
                        pooled[v][h].append(w)
                        p50, p99, p999 = (x / 1000 for x in w.percentiles_ns([50.0, 99.0, 99.9]))
                        parts.append(
                            f"{h} n={w.total} p50 {p50:.0f} p99 {p99:.0f} p99.9 {p999:.0f} us"
                        )
                    print(f"  cycle {cycle + 1} {v:<12} " + " | ".join(parts), flush=True)
        finally:
            system.stop()
    print(f"pooled over {args.cycles} phases of {args.phase:g} s each:")
    for v in variants:
        parts = []
        for h in HOPS:
            acc = t2t._pooled(pooled[v][h])
            p50, p99, p999 = (x / 1000 for x in acc.percentiles_ns([50.0, 99.0, 99.9]))
            parts.append(f"{h} p50 {p50:.0f} p99 {p99:.0f} p99.9 {p999:.0f} us")
        print(f"  {v:<12} " + " | ".join(parts))


if __name__ == "__main__":
    main()
