#!/usr/bin/env python3
"""The split layout against the bare floor of its own topology, alternating.

    python bench/bench_split_floor.py [--pairs 3] [--seconds 10] [--rate 1000]
                                      [--pin packed|spread|none] [--spin-us 20]
                                      [--with-monitor] [--rt-priority P]

Floor: three bare processes in a line, as the split layout's feed, strategy and
gateway, over two shm rings of the real `Ring` class, each run by the real
`HotLoop` (the same wait: the first sleeps on its socket as the feed does, the
other two spin ``--spin-us`` then sleep on the ring's FIFO doorbell), the GC
settled as the daemons settle it (`gcpolicy.settle`), pinned as the pipeline's
daemons are. This process plays the venue: it sends 16-byte messages (sequence,
send stamp) over TCP, one every ``1/--rate`` s on average (exponential gaps,
like the synthetic flow), to the first process, which stamps T1 after its
``recv`` and writes (seq, T1) into ring 1; the middle stamps T2 on reading it
and writes into ring 2; the last stamps T4 and sends 40 bytes back over TCP
(T4 before the ``send``, as the gateway does). No work besides.

Pipeline: `hftd up` (bench_tick_to_trade's config) with ``[hotpath] layout =
"split"``, ``rings.strategy_wait = rings.gateway_wait = "spin-then-sleep"``,
``rings.spin_us``, ``daemons.<name>.cpus`` as ``--pin`` says; the window's
T1->T4 (and per hop) from the gateway's Status ``latency_hdr``, from 2 s after
READY.

Pinning (``--pin``; CPU numbers are the first two this process may use):

- ``packed``: exchange (the floor's venue: this process) and monitor on CPU a,
  feed, strategy, gateway (the floor's three) on CPU b;
- ``spread``: exchange on a, feed on b, strategy on a, gateway on b: every hop
  crosses CPUs;
- ``none``: nothing pinned.

Each pair runs the floor then the pipeline (every second pair the other way
round); the ratio pipeline/floor is taken per pair and its median reported.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_tick_to_trade as btt  # noqa: E402

from hftd.ipc.control import request_sync  # noqa: E402
from hftd.ipc.ring import Ring  # noqa: E402
from hftd.msg.control import Status  # noqa: E402
from hftd.runtime import gcpolicy  # noqa: E402
from hftd.runtime.hdr import SparseHistogram  # noqa: E402
from hftd.runtime.hotloop import HotLoop  # noqa: E402

MSG = struct.Struct("<QQ")  # venue -> first: seq, t0 (venue send)
REC1 = struct.Struct("<QQQ")  # ring 1: seq, t0, t1
REC2 = struct.Struct("<QQQQ")  # ring 2: seq, t0, t1, t2
REPLY = struct.Struct("<QQQQQ")  # last -> venue: seq, t0, t1, t2, t4
CAPACITY = 1 << 20
now = time.monotonic_ns  # the daemons' T1..T4 clock (CLOCK_MONOTONIC)
PERCENTILES = (50.0, 99.0, 99.9)


# ------------------------------------------------------------- floor processes


class FeedFloor:
    """Socket -> ring 1, stamping T1 after each recv (the feed's agent, bare)."""

    def __init__(self, sock: socket.socket, ring: Ring) -> None:
        self.sock, self.ring = sock, ring
        self.buf = bytearray(1 << 16)
        self.view = memoryview(self.buf)
        self.pending = b""

    def do_work(self) -> int:
        try:
            n = self.sock.recv_into(self.buf)
        except BlockingIOError:
            return 0
        t1 = now()
        if n == 0:
            raise EOFError("venue closed")
        data = self.pending + bytes(self.view[:n]) if self.pending else self.view[:n]
        whole = len(data) - len(data) % MSG.size
        work = 0
        for off in range(0, whole, MSG.size):
            seq, t0 = MSG.unpack_from(data, off)
            self.ring.try_write(REC1.pack(seq, t0, t1))
            work += 1
        self.pending = bytes(data[whole:])
        return work or 1

    def wait_fds(self) -> list[int]:
        return [self.sock.fileno()]

    def next_timer_s(self) -> float:
        return 0.1


class MiddleFloor:
    """Ring 1 -> ring 2, stamping T2 on reading (the strategy's agent, bare)."""

    def __init__(self, src: Ring, dst: Ring) -> None:
        self.src, self.dst = src, dst

    def do_work(self) -> int:
        read, work = self.src.read, 0
        rec = read()
        while rec is not None:
            t2 = now()
            seq, t0, t1 = REC1.unpack(rec)
            self.dst.try_write(REC2.pack(seq, t0, t1, t2))
            work += 1
            rec = read()
        if work:
            self.src.commit()
        return work

    def wait_fds(self) -> list[int]:
        return []

    def next_timer_s(self) -> float:
        return 0.1


class LastFloor:
    """Ring 2 -> socket, stamping T4 before the send (the gateway's agent, bare)."""

    def __init__(self, src: Ring, sock: socket.socket) -> None:
        self.src, self.sock = src, sock

    def do_work(self) -> int:
        read, work = self.src.read, 0
        rec = read()
        while rec is not None:
            seq, t0, t1, t2 = REC2.unpack(rec)
            t4 = now()
            self.sock.send(REPLY.pack(seq, t0, t1, t2, t4))
            work += 1
            rec = read()
        if work:
            self.src.commit()
        return work

    def wait_fds(self) -> list[int]:
        return [self.sock.fileno()]

    def next_timer_s(self) -> float:
        return 0.1


def child(args: argparse.Namespace) -> int:
    """One floor process: connect, attach, settle the GC, run a HotLoop until killed."""
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    agent: Any
    inputs: list[Ring] = []
    if args.role == "feed":
        sock = socket.create_connection(("127.0.0.1", args.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        agent = FeedFloor(sock, Ring.attach(f"{args.prefix}-r1"))
        wait = "sleep"  # the feed's hot loop sleeps on its socket (hftd/feed/daemon.py)
    elif args.role == "middle":
        src = Ring.attach(f"{args.prefix}-r1")
        agent, inputs, wait = MiddleFloor(src, Ring.attach(f"{args.prefix}-r2")), [src], args.wait
    else:
        sock = socket.create_connection(("127.0.0.1", args.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        src = Ring.attach(f"{args.prefix}-r2")
        agent, inputs, wait = LastFloor(src, sock), [src], args.wait
    loop = HotLoop(args.role, agent, inputs, wait, args.spin_us)
    loop.rt_priority = args.rt_priority
    gcpolicy.settle()
    loop.start()
    print("ready", flush=True)
    loop.thread.join()
    return 0


def spawn(role: str, cpu: int | None, prefix: str, port: int, a: argparse.Namespace) -> Any:
    cmd = [
        sys.executable,
        __file__,
        "--role",
        role,
        "--cpu",
        str(-1 if cpu is None else cpu),
        "--prefix",
        prefix,
        "--port",
        str(port),
        "--spin-us",
        str(a.spin_us),
        "--wait",
        a.wait,
        "--rt-priority",
        str(a.rt_priority),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)


def listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def floor_run(a: argparse.Namespace, pins: dict[str, int | None], seed: int) -> dict[str, Any]:
    """One floor run; stamps per message, from 1 s after the start."""
    if pins["exchange"] is not None:
        os.sched_setaffinity(0, {pins["exchange"]})
    prefix = f"hftd-floor{os.getpid()}-{seed}"
    rings = [Ring.create(f"{prefix}-r{i}", CAPACITY) for i in (1, 2)]
    md_l, ord_l = listener(), listener()
    procs = []
    try:
        procs.append(spawn("last", pins["gateway"], prefix, ord_l.getsockname()[1], a))
        order_sock, _ = ord_l.accept()
        procs.append(spawn("middle", pins["strategy"], prefix, 0, a))
        procs.append(spawn("feed", pins["feed"], prefix, md_l.getsockname()[1], a))
        md_sock, _ = md_l.accept()
        for p in procs:
            if p.stdout.readline().strip() != b"ready":
                raise SystemExit("a floor process failed to start")
        for s in (md_sock, order_sock):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        order_sock.setblocking(False)
        gc.collect()
        gc.freeze()
        gc.disable()
        rng = random.Random(seed)
        buf = bytearray(1 << 16)
        rows: list[tuple[int, ...]] = []
        pending = b""
        start = now()
        end = start + int(a.seconds * 1e9) + 1_000_000_000  # + 1 s warm-up
        warm = start + 1_000_000_000
        seq = 0
        next_send = start
        first_seq = None
        while True:
            t = now()
            if t >= next_send:
                if t >= end:
                    break
                seq += 1
                if first_seq is None and t >= warm:
                    first_seq = seq
                md_sock.send(MSG.pack(seq, now()))
                next_send += int(rng.expovariate(a.rate) * 1e9)
                continue
            r, _, _ = select.select([order_sock], [], [], (next_send - t) / 1e9)
            if r:
                pending = _read_replies(order_sock, buf, pending, rows)
        deadline = now() + 500_000_000
        while now() < deadline and (not rows or rows[-1][0] < seq):
            r, _, _ = select.select([order_sock], [], [], 0.05)
            if r:
                pending = _read_replies(order_sock, buf, pending, rows)
        gc.enable()
        gc.unfreeze()
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        for ring in rings:
            ring.close()
            Ring.unlink(ring.name, missing_ok=True)
        md_l.close()
        ord_l.close()
        os.sched_setaffinity(0, set(ALL_CPUS))
    kept = [row for row in rows if first_seq is not None and row[0] >= first_seq]
    hops = {
        "t1_t2": array("q", (r[3] - r[2] for r in kept)),
        "t2_t4": array("q", (r[4] - r[3] for r in kept)),
        "t1_t4": array("q", (r[4] - r[2] for r in kept)),
        "wire": array("q", (r[5] - r[1] for r in kept)),
    }
    sent = seq - (first_seq or seq)
    return {"n": len(kept), "sent": sent + 1, "pct": {h: exact_pct(v) for h, v in hops.items()}}


def _read_replies(
    sock: socket.socket, buf: bytearray, pending: bytes, rows: list[tuple[int, ...]]
) -> bytes:
    try:
        n = sock.recv_into(buf)
    except BlockingIOError:
        return pending
    t5 = now()
    data = pending + bytes(buf[:n])
    whole = len(data) - len(data) % REPLY.size
    for off in range(0, whole, REPLY.size):
        rows.append((*REPLY.unpack_from(data, off), t5))
    return data[whole:]


def exact_pct(values: array[int]) -> tuple[float, ...]:
    data = sorted(values)
    if not data:
        return tuple(0.0 for _ in PERCENTILES)
    return tuple(data[min(len(data) - 1, int(q / 100 * len(data)))] / 1000 for q in PERCENTILES)


# ------------------------------------------------------------------- pipeline


def dump_toml(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[str]:
    """Enough TOML for bench configs: tables, arrays of tables, scalars and lists."""

    def is_aot(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict) and not is_aot(v)]
    tables = [(k, v) for k, v in d.items() if isinstance(v, dict)]
    aots = [(k, v) for k, v in d.items() if is_aot(v)]
    out: list[str] = []
    if prefix and (scalars or not (tables or aots)):
        out.append(f"[{'.'.join(prefix)}]")
    out += [f"{k} = {btt.toml_value(v)}" for k, v in scalars]
    out.append("")
    for k, v in tables:
        out += dump_toml(v, (*prefix, k))
    for k, items in aots:
        for item in items:
            out.append(f"[[{'.'.join((*prefix, k))}]]")
            out += [f"{ik} = {btt.toml_value(iv)}" for ik, iv in item.items()]
            out.append("")
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    *path, last = key.split(".")
    for p in path:
        d = d.setdefault(p, {})
    d[last] = value


def pipeline_config(tmp: Path, a: argparse.Namespace, pins: dict[str, int | None]) -> Path:
    btt.LAYOUT[:] = ["split", "auto"]
    path = btt.write_config(tmp, "latency", a.pipeline_rate, a.with_monitor)
    data = tomllib.loads(path.read_text())
    set_dotted(data, "rings.strategy_wait", a.wait)
    set_dotted(data, "rings.gateway_wait", a.wait)
    set_dotted(data, "rings.spin_us", float(a.spin_us))
    set_dotted(data, "hotpath.rt_priority", a.rt_priority)
    for name in ("exchange", "feed", "strategy", "gateway") + (
        ("monitor",) if a.with_monitor else ()
    ):
        cpu = pins["exchange" if name == "monitor" else name]
        if cpu is not None:
            set_dotted(data, f"daemons.{name}.cpus", [cpu])
    for item in a.set:
        key, _, raw = item.partition("=")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        set_dotted(data, key.strip(), value)
    path.write_text("\n".join(dump_toml(data)))
    return path


HOPS = ("t1_t2", "t2_t3", "t3_t4", "t1_t4")
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def start_spies(system: Any, a: argparse.Namespace, tmp: Path) -> list[Any]:
    """py-spy on the feed, strategy and gateway for the window (raw, 250 Hz, threads)."""
    spies = []
    for name in ("feed", "strategy", "gateway"):
        reply = request_sync(system.run_dir / f"{name}.sock", Status())
        out = Path(a.spy) / f"{name}-{tmp.name}.txt"
        cmd = [
            str(PY_SPY),
            "record",
            "--pid",
            str(reply.result["pid"]),
            "--threads",
            "--format",
            "raw",
            "-d",
            str(int(a.seconds)),
            "-r",
            "250",
            "-o",
            str(out),
            "--nonblocking",
        ]
        spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def pipeline_run(tmp: Path, a: argparse.Namespace, pins: dict[str, int | None]) -> dict[str, Any]:
    system = btt.System(pipeline_config(tmp, a, pins))
    try:
        time.sleep(2.0)  # past start-up (the strategy's resync replay)
        g0 = system.status("gateway")
        f0 = system.status("feed")
        spies = start_spies(system, a, tmp) if a.spy else []
        time.sleep(a.seconds)
        for spy in spies:
            spy.wait()
        g1 = system.status("gateway")
        f1 = system.status("feed")
    finally:
        system.stop()
    win = {
        h: SparseHistogram.from_wire(g1["latency_hdr"][h])
        - SparseHistogram.from_wire(g0["latency_hdr"][h])
        for h in HOPS
    }
    return {
        "n": win["t1_t4"].total,
        "messages": f1["messages"] - f0["messages"],
        "pct": {h: tuple(v / 1000 for v in win[h].percentiles_ns(list(PERCENTILES))) for h in HOPS},
    }


# ---------------------------------------------------------------------- main


ALL_CPUS = sorted(os.sched_getaffinity(0))


def pinning(kind: str) -> dict[str, int | None]:
    if kind == "none" or len(ALL_CPUS) < 2:
        return dict.fromkeys(("exchange", "feed", "strategy", "gateway"))
    a, b = ALL_CPUS[0], ALL_CPUS[1]
    if kind == "packed":
        return {"exchange": a, "feed": b, "strategy": b, "gateway": b}
    return {"exchange": a, "feed": b, "strategy": a, "gateway": b}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_idle(seconds: float = 0.5) -> dict[int, float]:
    """Per-CPU idle share (%) over `seconds`, from /proc/stat."""

    def snap() -> dict[int, tuple[int, int]]:
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            f = line.split()
            if f[0].startswith("cpu") and f[0] != "cpu":
                ticks = [int(x) for x in f[1:]]
                out[int(f[0][3:])] = (ticks[3] + ticks[4], sum(ticks))
        return out

    a = snap()
    time.sleep(seconds)
    b = snap()
    return {c: 100 * (i - a[c][0]) / max(1, t - a[c][1]) for c, (i, t) in b.items()}


def wait_quiet(max_s: float, min_idle: float) -> str:
    """Wait up to `max_s` for every CPU to be `min_idle`% idle; describe what was found."""
    deadline = time.monotonic() + max_s
    while True:
        idle = cpu_idle()
        shown = ", ".join(f"cpu{c} {v:.0f}%" for c, v in idle.items())
        if min(idle.values(), default=100.0) >= min_idle:
            return f"idle {shown}"
        if time.monotonic() >= deadline:
            return f"idle {shown} (BUSY: not quiet after {max_s:g} s)"


def fmt(p: tuple[float, ...]) -> str:
    return " / ".join(f"{x:.1f}" for x in p)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window of each run")
    ap.add_argument("--rate", type=float, default=1000.0, help="floor messages/s (exponential)")
    ap.add_argument(
        "--pipeline-rate",
        type=float,
        default=250.0,
        help="pipeline synthetic flow, events/s per symbol x 4",
    )
    ap.add_argument("--pin", choices=("packed", "spread", "none"), default="packed")
    ap.add_argument("--spin-us", type=float, default=20.0)
    ap.add_argument(
        "--wait",
        default="spin-then-sleep",
        help="strategy/gateway (floor: middle/last) wait strategy",
    )
    ap.add_argument("--rt-priority", type=int, default=0, help="[hotpath] rt_priority, both")
    ap.add_argument("--with-monitor", action="store_true", help="pipeline: run the monitor too")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline config override, dotted (TOML value), repeatable",
    )
    ap.add_argument(
        "--spy",
        default="",
        metavar="DIR",
        help="pipeline: py-spy the three hot daemons into DIR during the window",
    )
    ap.add_argument(
        "--quiet-s",
        type=float,
        default=20.0,
        help="before each run, wait up to this long for the CPUs to be idle",
    )
    ap.add_argument("--min-idle", type=float, default=85.0, help="per CPU, %%")
    ap.add_argument("--only", choices=("floor", "pipeline"), default=None)
    ap.add_argument("--role", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        return child(a)

    pins = pinning(a.pin)
    print(f"split layout vs its floor: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus (usable {ALL_CPUS}), "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    print(
        f"pinning {a.pin}: {pins}; wait {a.wait}, spin_us {a.spin_us:g}, "
        f"rt_priority {a.rt_priority}, monitor {'on' if a.with_monitor else 'off'}; "
        f"overrides {a.set or 'none'}"
    )
    print(
        f"floor: {a.rate:g} msg/s exponential; pipeline: flow {a.pipeline_rate:g} events/s/sym"
        f" x 4; windows {a.seconds:g} s"
    )
    ratios: dict[str, list[tuple[float, ...]]] = {"t1_t4": [], "t1_t2": []}
    floors: list[dict[str, Any]] = []
    pipes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hftd-splitfloor-") as d:
        for i in range(a.pairs):
            order: tuple[str, ...] = ("floor", "pipeline") if i % 2 == 0 else ("pipeline", "floor")
            if a.only:
                order = (a.only,)
            fl: dict[str, Any] | None = None
            pl: dict[str, Any] | None = None
            for kind in order:
                la = f"{loadavg()}, {wait_quiet(a.quiet_s, a.min_idle)}"
                if kind == "floor":
                    fl = floor_run(a, pins, i)
                    floors.append(fl)
                    pc = fl["pct"]
                    print(
                        f"pair {i + 1} floor    (load {la}): n={fl['n']}/{fl['sent']} "
                        f"T1->T4 {fmt(pc['t1_t4'])}  T1->T2 {fmt(pc['t1_t2'])}  "
                        f"T2->T4 {fmt(pc['t2_t4'])}  wire {fmt(pc['wire'])} us "
                        f"(p50 / p99 / p99.9)",
                        flush=True,
                    )
                else:
                    tmp = Path(d) / f"run{i}"
                    tmp.mkdir()
                    pl = pipeline_run(tmp, a, pins)
                    pipes.append(pl)
                    pc = pl["pct"]
                    print(
                        f"pair {i + 1} pipeline (load {la}): n={pl['n']} orders "
                        f"({pl['messages']} md msgs) T1->T4 {fmt(pc['t1_t4'])}  "
                        f"T1->T2 {fmt(pc['t1_t2'])}  T2->T3 {fmt(pc['t2_t3'])}  "
                        f"T3->T4 {fmt(pc['t3_t4'])} us",
                        flush=True,
                    )
            if fl is not None and pl is not None:
                for h in ratios:
                    ratios[h].append(
                        tuple(p / f for p, f in zip(pl["pct"][h], fl["pct"][h], strict=True))
                    )
                r = ratios["t1_t4"][-1]
                print(
                    f"pair {i + 1} ratio pipeline/floor T1->T4: "
                    + " / ".join(f"x{x:.2f}" for x in r),
                    flush=True,
                )

    def med(runs: list[dict[str, Any]], hop: str) -> str:
        return fmt(tuple(statistics.median(r["pct"][hop][k] for r in runs) for k in range(3)))

    print(f"\nmedians over {a.pairs} pairs (p50 / p99 / p99.9 us); load after {loadavg()}")
    if floors:
        for h in ("t1_t4", "t1_t2", "t2_t4", "wire"):
            print(f"  floor    {h:6s} {med(floors, h)}")
    if pipes:
        for h in HOPS:
            print(f"  pipeline {h:6s} {med(pipes, h)}")
    for h, rs in ratios.items():
        if rs:
            m = [statistics.median(r[k] for r in rs) for k in range(3)]
            print(
                f"  ratio pipeline/floor {h}: "
                + " / ".join(f"x{x:.2f}" for x in m)
                + "  (median of per-pair ratios)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
