#!/usr/bin/env python3
"""Memory of every daemon under steady flow: RSS sampled, the slope per hour printed.

    python bench/bench_memory.py [--minutes 15] [--rate 100] [--sample-s 60]
                                 [--warmup-s 360] [--cwd CHECKOUT]

`hftd up` runs the whole system (exchange, feed, gateway, strategy, monitor) on
default.toml with the synthetic flow raised to `--rate` events/s per symbol
(4 symbols; 100/s gave the ~380 journal records/s of the day the exchange grew
+53 MB/h), the two default strategies trading on it and risk limits out of the
way (a tripped breaker would stop the trading). Every `--sample-s` it reads
VmRSS of each daemon (/proc/<pid>/status) and a few counters (ITCH messages
published, journal records, gateway fills). At the end, per daemon: RSS at the
start and the end, and the least-squares slope in MB/h over the samples after
`--warmup-s` (the monitor's chart window, 300 s, fills during the first five
minutes: its memory is expected to rise until then and stay flat after) and
over the whole run. RSS is per process: in the composite layout (`[hotpath]`,
the default on fewer than 4 CPUs) feed, strategy and gateway share one process,
reported once as "hotpath" (their control sockets all give its pid). `--cwd`:
run the system from another checkout (a worktree of the commit before, say) to
compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hftd.ipc.control import request_sync  # noqa: E402
from hftd.msg.control import Status  # noqa: E402
from tests.support import dump_toml, free_port  # noqa: E402

DAEMONS = ("exchange", "feed", "gateway", "strategy", "monitor")


def write_config(tmp: Path, code: Path, rate: float) -> Path:
    data = tomllib.loads((code / "config" / "default.toml").read_text())
    data["system"].update(
        run_dir=str(tmp / "run"),
        journal_dir=str(tmp / "journal"),
        log_level="warning",
        trading_day_starts="",
    )
    data["exchange"].update(order_port=free_port(), md_port=free_port())
    data["exchange"]["flow"]["arrival_rate_per_s"] = rate
    data["rings"]["prefix"] = f"hftd-mem{os.getpid()}"
    data["monitor"]["web_port"] = free_port()
    data["risk"].update(
        max_position=10**9,
        max_gross_position=4 * 10**9,
        max_order_notional=10**14,
        daily_loss_limit=10**14,
        max_orders_per_s=100_000,
        max_working_orders=100_000,
    )
    data["breaker"] = {"max_venue_rejects": 10**9, "max_risk_rejects": 10**9, "max_cancels": 10**9}
    for inst in data["strategy"]["instances"]:
        inst["max_position"] = 10**8
    path = tmp / "memory.toml"
    path.write_text(dump_toml(data))
    return path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def status(run_dir: Path, name: str) -> Any:
    reply = request_sync(run_dir / f"{name}.sock", Status(), timeout=5.0)
    if not reply.ok:
        raise RuntimeError(f"{name}: {reply.error}")
    return reply.result


def processes(pids: dict[str, int]) -> dict[str, tuple[int, list[str]]]:
    """The processes to sample, by name: (pid, daemons it runs). Daemons that share a
    pid (the composite layout's hot path) are one process, so its RSS is counted once."""
    by_pid: dict[int, list[str]] = {}
    for d, pid in pids.items():
        by_pid.setdefault(pid, []).append(d)
    return {
        (parts[0] if len(parts) == 1 else "hotpath"): (pid, parts) for pid, parts in by_pid.items()
    }


def slope_mb_per_h(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) in MB/h (MB = 10^6 bytes)."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    num = sum((t - mt) * (v - mv) for t, v in points)
    return num / den * 3600 * 1024 / 1e6 if den else float("nan")


@contextlib.contextmanager
def running_system(code: Path, rate: float, prefix: str) -> Iterator[Path]:
    """`hftd up` on `write_config`'s config (from checkout `code`) in a fresh temp dir,
    ready (its READY=1); yields the temp dir (run dir: tmp/run, journals: tmp/journal).
    Stopped with SIGTERM at the end, its rings removed."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    cfg = write_config(tmp, code, rate)
    notify = tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}; code {code}; load average before "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    log = open(tmp / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "hftd.cli", "up", "--config", str(cfg), "--new-day"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=code,
        env=dict(os.environ, NOTIFY_SOCKET=str(notify)),
    )
    try:
        sock.settimeout(90)
        while "READY=1" not in sock.recv(4096).decode().split("\n"):
            pass
        yield tmp
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sock.close()
        log.close()
        for ring in Path("/dev/shm").glob(f"hftd-mem{os.getpid()}*"):
            ring.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=100.0, help="flow events/s per symbol")
    ap.add_argument("--sample-s", type=float, default=60.0)
    ap.add_argument("--warmup-s", type=float, default=360.0)
    ap.add_argument("--cwd", type=Path, default=None, help="run the system from this checkout")
    args = ap.parse_args()
    code = (args.cwd or ROOT).resolve()
    samples: dict[str, list[tuple[float, int]]] = {}
    with running_system(code, args.rate, "hftd-bench-memory-") as tmp:
        run_dir = tmp / "run"
        t0 = time.monotonic()
        pids = {d: int(status(run_dir, d)["pid"]) for d in DAEMONS}
        procs = processes(pids)
        samples.update((name, []) for name in procs)
        print(
            f"pids {pids}; {args.minutes:g} min at {args.rate:g} events/s per symbol, "
            f"RSS every {args.sample_s:g} s",
            flush=True,
        )
        for name, (pid, parts) in procs.items():
            if len(parts) > 1:
                print(f"{name} = {' + '.join(parts)}: one process (pid {pid})", flush=True)
        print(
            f"{'t (s)':>6} "
            + " ".join(f"{name + ' KiB':>13}" for name in procs)
            + f" {'ITCH msgs':>10} {'journal':>9} {'fills':>7}  load",
            flush=True,
        )
        end = t0 + args.minutes * 60
        next_at = t0
        while True:
            now = time.monotonic()
            if now >= next_at:
                t = now - t0
                for d in DAEMONS:
                    pid = int(status(run_dir, d)["pid"])
                    if pid != pids[d]:
                        raise RuntimeError(f"{d} restarted (pid {pids[d]} -> {pid})")
                row = []
                for name, (pid, _parts) in procs.items():
                    kib = rss_kib(pid)
                    samples[name].append((t, kib))
                    row.append(kib)
                ex = status(run_dir, "exchange")["detail"]
                gw = status(run_dir, "gateway")["detail"]
                journal = ex.get("journal_appended", 0) + ex.get("journal_replayed", 0)
                print(
                    f"{t:6.0f} "
                    + " ".join(f"{v:>13,}" for v in row)
                    + f" {ex.get('md_messages', 0):>10,} {journal:>9,} "
                    f"{gw.get('fills', 0):>7,}  {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                next_at += args.sample_s
                if now >= end:
                    break
            time.sleep(max(0.0, min(next_at, end) - time.monotonic()))
        ex = status(run_dir, "exchange")["detail"]
        print(
            f"exchange: {ex.get('md_messages', 0):,} ITCH messages, "
            f"{ex.get('checkpoints', 'n/a')} checkpoints",
            flush=True,
        )
    minutes = samples["exchange"][-1][0] / 60 if samples.get("exchange") else 0.0
    print(
        f"\nRSS over {minutes:.1f} min (MB/h: least-squares slope; after warm-up = "
        f"samples from {args.warmup_s:g} s on):"
    )
    for d, pts in samples.items():
        if not pts:
            continue
        late = [p for p in pts if p[0] >= args.warmup_s]
        print(
            f"  {d:9} {pts[0][1] / 1024:7.1f} -> {pts[-1][1] / 1024:7.1f} MiB   "
            f"slope {slope_mb_per_h(pts):+7.2f} MB/h overall, "
            f"{slope_mb_per_h(late):+7.2f} MB/h after warm-up ({len(late)} samples)"
        )
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
