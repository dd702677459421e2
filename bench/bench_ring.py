#!/usr/bin/env python3
"""One-way hop latency and throughput of the shared-memory ring, between two processes.

    python bench/bench_ring.py [--count N] [--interval-us U] [--throughput-count M]
                               [--size B] [--strategies spin,sleep,...] [--no-pin]

For each consumer wait strategy (``spin``, ``spin-then-sleep``, ``sleep``), and
for a Unix-socket baseline (``socketpair(AF_UNIX, SOCK_STREAM)``, one blocking
``recv_into(..., MSG_WAITALL)`` per record) in the same run:

- latency: the producer (this process) sends N records paced one every U µs,
  stamping ``time.perf_counter_ns()`` into each just before ``try_write``; the
  consumer (a forked child) takes the difference on receipt, into a
  preallocated array. ``perf_counter_ns`` is CLOCK_MONOTONIC on Linux, one
  clock shared by all processes, so the difference is a true one-way time.
  The first ``--warmup`` records are discarded.
- throughput: M records sent unpaced; records/s from the producer's first
  write to the consumer's last read. The ring consumer commits every 64
  records (and before it waits); the socket consumer makes one ``recv`` per
  record, as a message-passing consumer would.

With 2+ usable CPUs the producer and the consumer are pinned to different
CPUs (``os.sched_setaffinity``): a spinning consumer and a busy-waiting
(pacing) producer on one CPU would starve each other. With one CPU nothing is
pinned, pacing sleeps instead of spinning and ``spin`` is skipped unless named
in ``--strategies``. The garbage collector is frozen and disabled in both
processes while measuring.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import socket
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path

try:
    from hftd.ipc.ring import Ring, RingStats, Waiter
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hftd.ipc.ring import Ring, RingStats, Waiter

HDR = struct.Struct("<QQ")  # seq, stamp (perf_counter_ns)
STRATEGIES = ("spin", "spin-then-sleep", "sleep")
now = time.perf_counter_ns


# ------------------------------------------------------------------ machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_idle(seconds: float = 0.3) -> dict[int, float]:
    """Per-CPU idle share over `seconds` (from /proc/stat): is anything else running?"""

    def snap() -> dict[int, tuple[int, int]]:
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            f = line.split()
            if f[0].startswith("cpu") and f[0] != "cpu":
                ticks = [int(x) for x in f[1:]]
                out[int(f[0][3:])] = (ticks[3] + ticks[4], sum(ticks))  # idle + iowait, all
        return out

    try:
        a = snap()
        time.sleep(seconds)
        b = snap()
    except (OSError, ValueError, IndexError):
        return {}
    idle = {}
    for cpu, (i, total) in b.items():
        d_total = total - a[cpu][1]
        idle[cpu] = 100 * (i - a[cpu][0]) / d_total if d_total else 100.0
    return idle


def pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def quiet_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.disable()


# ------------------------------------------------------------ child process


def fork_consumer(cpu: int | None, body: Callable[[], array[int]]) -> tuple[int, Path]:
    """Fork a consumer running `body`; its result array goes to a temporary file."""
    fd, name = tempfile.mkstemp(prefix="bench-ring-", suffix=".bin")
    os.close(fd)
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            pin(cpu)
            quiet_gc()
            result = body()
            with open(name, "wb") as f:
                result.tofile(f)
            code = 0
        except BaseException as exc:  # report, never return into the parent's code
            print(f"consumer failed: {exc!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    return pid, Path(name)


def join_consumer(pid: int, path: Path) -> array[int]:
    _, status = os.waitpid(pid, 0)
    try:
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"consumer exited with status {status}")
        out = array("q")
        out.frombytes(path.read_bytes())
        return out
    finally:
        path.unlink(missing_ok=True)


def wait_ready(fd: int) -> None:
    if os.read(fd, 1) != b"r":
        raise SystemExit("consumer died before it was ready")


# ------------------------------------------------------------------ pacing


def paced_sender(interval_ns: int, spin: bool) -> Callable[[int, int], None]:
    """Returns wait(t0, i): returns at t0 + i * interval (busy-wait, or sleep on 1 CPU)."""
    if spin:

        def wait(t0: int, i: int) -> None:
            target = t0 + i * interval_ns
            while now() < target:
                pass

    else:

        def wait(t0: int, i: int) -> None:
            left = t0 + i * interval_ns - now()
            if left > 0:
                time.sleep(left / 1e9)

    return wait


# -------------------------------------------------------------------- ring


def ring_latency(
    args: argparse.Namespace, strategy: str, cpus: tuple[int | None, int | None]
) -> tuple[array[int], RingStats]:
    name = f"hftd-bench-{os.getpid()}-{strategy}"
    ring = Ring.create(name, args.capacity)
    filler = bytes(max(0, args.size - HDR.size))
    n = args.count
    r_fd, w_fd = os.pipe()

    def consumer() -> array[int]:
        cons = Ring.attach(name)
        waiter = Waiter(cons, strategy, spin_us=args.spin_us)
        lat = array("q", bytes(8 * n))
        read, wait, commit, unpack = cons.read, waiter.wait, cons.commit, HDR.unpack_from
        os.write(w_fd, b"r")
        for i in range(n):
            rec = read()
            while rec is None:
                wait()
                rec = read()
            t = now()
            lat[i] = t - unpack(rec)[1]
            commit()
        return lat

    try:
        pid, path = fork_consumer(cpus[1], consumer)
        wait_ready(r_fd)
        pacer = paced_sender(args.interval_us * 1000, spin=cpus[0] is not None)
        try_write, pack = ring.try_write, HDR.pack
        t0 = now() + 1_000_000
        for i in range(n):
            pacer(t0, i)
            payload = pack(i, now()) + filler
            while not try_write(payload):
                pass
        lat = join_consumer(pid, path)
        stats = ring.statistics()
    finally:
        os.close(r_fd)
        os.close(w_fd)
        ring.close()
        Ring.unlink(name, missing_ok=True)
    return lat, stats


def ring_throughput(
    args: argparse.Namespace, strategy: str, cpus: tuple[int | None, int | None]
) -> float:
    name = f"hftd-bench-{os.getpid()}-tp-{strategy}"
    ring = Ring.create(name, args.capacity)
    payload = bytes(args.size)
    m: int = args.throughput_count
    r_fd, w_fd = os.pipe()

    def consumer() -> array[int]:
        cons = Ring.attach(name)
        waiter = Waiter(cons, strategy, spin_us=args.spin_us)
        read, commit, wait = cons.read, cons.commit, waiter.wait
        os.write(w_fd, b"r")
        got = 0
        while got < m:
            if read() is None:
                commit()
                wait()
                continue
            got += 1
            if not got & 63:
                commit()
        commit()
        return array("q", [now()])

    try:
        pid, path = fork_consumer(cpus[1], consumer)
        wait_ready(r_fd)
        try_write = ring.try_write
        backoff: Callable[[], None] = (lambda: None) if cpus[0] is not None else os.sched_yield
        start = now()
        for _ in range(m):
            while not try_write(payload):
                backoff()
        end = join_consumer(pid, path)[0]
    finally:
        os.close(r_fd)
        os.close(w_fd)
        ring.close()
        Ring.unlink(name, missing_ok=True)
    return m / ((end - start) / 1e9)


# ---------------------------------------------------------- socket baseline


def socket_latency(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> array[int]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    size = max(args.size, HDR.size)
    filler = bytes(size - HDR.size)
    n = args.count
    r_fd, w_fd = os.pipe()

    def consumer() -> array[int]:
        parent.close()
        buf = bytearray(size)
        lat = array("q", bytes(8 * n))
        recv, unpack, waitall = child.recv_into, HDR.unpack_from, socket.MSG_WAITALL
        os.write(w_fd, b"r")
        for i in range(n):
            if recv(buf, size, waitall) != size:
                raise EOFError("short read")
            t = now()
            lat[i] = t - unpack(buf)[1]
        return lat

    try:
        pid, path = fork_consumer(cpus[1], consumer)
        child.close()
        wait_ready(r_fd)
        pacer = paced_sender(args.interval_us * 1000, spin=cpus[0] is not None)
        send, pack = parent.sendall, HDR.pack
        t0 = now() + 1_000_000
        for i in range(n):
            pacer(t0, i)
            send(pack(i, now()) + filler)
        return join_consumer(pid, path)
    finally:
        os.close(r_fd)
        os.close(w_fd)
        parent.close()
        child.close()


def socket_throughput(args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> float:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    size = max(args.size, HDR.size)
    payload = bytes(size)
    m: int = args.throughput_count
    r_fd, w_fd = os.pipe()

    def consumer() -> array[int]:
        parent.close()
        buf = bytearray(size)
        recv, waitall = child.recv_into, socket.MSG_WAITALL
        os.write(w_fd, b"r")
        for _ in range(m):
            if recv(buf, size, waitall) != size:
                raise EOFError("short read")
        return array("q", [now()])

    try:
        pid, path = fork_consumer(cpus[1], consumer)
        child.close()
        wait_ready(r_fd)
        send = parent.sendall
        start = now()
        for _ in range(m):
            send(payload)
        end = join_consumer(pid, path)[0]
    finally:
        os.close(r_fd)
        os.close(w_fd)
        parent.close()
        child.close()
    return m / ((end - start) / 1e9)


# ----------------------------------------------------------------- report


def percentiles(lat: array[int], warmup: int) -> tuple[float, float, float, float]:
    data = sorted(lat[warmup:])
    if not data:
        raise SystemExit("no samples left after warm-up")

    def at(q: float) -> float:
        return data[min(len(data) - 1, int(q * len(data)))] / 1000

    return at(0.50), at(0.99), at(0.999), data[-1] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="latency records per run")
    parser.add_argument("--warmup", type=int, default=1_000, help="latency records discarded")
    parser.add_argument("--interval-us", type=int, default=50, help="latency pacing")
    parser.add_argument("--throughput-count", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=64, help="record payload bytes (>= 16)")
    parser.add_argument("--capacity", type=int, default=1 << 20, help="ring data bytes")
    parser.add_argument("--spin-us", type=float, default=20.0, help="spin-then-sleep spin time")
    parser.add_argument("--strategies", default=None, help="comma-separated (default: all)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to separate CPUs")
    args = parser.parse_args()
    if args.size < HDR.size:
        parser.error(f"--size must be at least {HDR.size}")
    if args.warmup >= args.count:
        parser.error("--warmup must be smaller than --count")

    usable = sorted(os.sched_getaffinity(0))
    two = len(usable) >= 2 and not args.no_pin
    cpus: tuple[int | None, int | None] = (usable[0], usable[1]) if two else (None, None)
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    else:
        strategies = [s for s in STRATEGIES if two or s != "spin"]

    print("hftd ring benchmark: one-way hop between two processes")
    print(
        f"machine: {os.cpu_count()} CPUs ({len(usable)} usable: {usable}), {cpu_model()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()} "
        f"({platform.python_implementation()})"
    )
    if two:
        print(f"pinning: producer -> CPU {cpus[0]}, consumer -> CPU {cpus[1]} (sched_setaffinity)")
    else:
        print("pinning: none (one usable CPU or --no-pin); pacing sleeps instead of spinning")
    print("clock: time.perf_counter_ns() = CLOCK_MONOTONIC, shared by both processes")
    idle = cpu_idle()
    shown = ", ".join(f"cpu{c} {v:.0f}%" for c, v in idle.items()) or "n/a"
    print(f"before the run: load average {loadavg()}; idle {shown}")
    busy = [c for c in cpus if c is not None and idle.get(c, 100) < 80]
    if busy:
        print(
            f"WARNING: CPU {', '.join(map(str, busy))} busy with other processes: spinning "
            "strategies and all tails are distorted (a spinner sharing a CPU waits for "
            "the other process's time slices)"
        )
    print(
        f"latency: {args.count} records of {args.size} bytes, one every {args.interval_us} us, "
        f"first {args.warmup} discarded; ring {args.capacity} bytes, spin_us={args.spin_us:g}"
    )
    print()
    pin(cpus[0])
    quiet_gc()
    started = time.monotonic()

    header = f"{'transport':34s} {'p50':>8s} {'p99':>8s} {'p99.9':>8s} {'max':>9s}   (us)"
    print(header)
    print("-" * len(header))
    notes: list[str] = []
    for strategy in strategies:
        lat, stats = ring_latency(args, strategy, cpus)
        p50, p99, p999, mx = percentiles(lat, args.warmup)
        print(f"{'ring, ' + strategy:34s} {p50:8.1f} {p99:8.1f} {p999:8.1f} {mx:9.1f}", flush=True)
        notes.append(summary(strategy, stats))
    lat = socket_latency(args, cpus)
    p50, p99, p999, mx = percentiles(lat, args.warmup)
    print(f"{'unix socket, blocking recv':34s} {p50:8.1f} {p99:8.1f} {p999:8.1f} {mx:9.1f}")
    for note in notes:
        print("  " + note)

    print()
    print(f"throughput: {args.throughput_count} records of {args.size} bytes, unpaced")
    header = f"{'transport':34s} {'records/s':>12s} {'ns/record':>10s}"
    print(header)
    print("-" * len(header))
    for strategy in strategies:
        rate = ring_throughput(args, strategy, cpus)
        print(f"{'ring, ' + strategy:34s} {rate:12,.0f} {1e9 / rate:10.0f}", flush=True)
    rate = socket_throughput(args, cpus)
    print(f"{'unix socket, blocking recv':34s} {rate:12,.0f} {1e9 / rate:10.0f}")
    print(f"\nload average after: {loadavg()}; total time {time.monotonic() - started:.1f} s")
    return 0


def summary(strategy: str, stats: RingStats) -> str:
    return (
        f"{strategy}: sleeps={stats.sleeps} bell-wakeups={stats.wakeups} "
        f"bells={stats.bells} timeouts={stats.timeouts} missed={stats.missed_wakeups} "
        f"full={stats.full_count}"
    )


if __name__ == "__main__":
    sys.exit(main())
