#!/usr/bin/env python3
"""Tick-to-trade and order throughput of the whole system (real processes).

    python bench/bench_tick_to_trade.py [--seconds S] [--rate R] [--throughput-seconds T]
        [--strategy-throughput-seconds T] [--load-rate R] [--layout L]

Phase 1, latency: `hftd up` runs exchange, feed, gateway and strategy. The
venue's synthetic flow publishes a fixed load (`--rate` events per second per
symbol, 4 symbols); the strategies trade on it. After `--seconds`, the
gateway's HDR histograms give every hop: T1 feed receive -> T2 strategy
decision -> T3 risk done -> T4 on the socket -> T5 venue acknowledgement, and
tick-to-trade T1 -> T4. Logging is at "warning" so log lines do not sit on the
hot path.

Phase 2, throughput: the strategy is replaced by this process writing order
commands straight into the orders ring as fast as the ring takes them
(non-marketable IOC orders: the venue acknowledges and cancels each), for
`--throughput-seconds`; orders/s = orders the venue acknowledged / time. When
the ring is full the writer waits 0.2 ms (a writer retrying at once would take
a CPU from the system it measures).

Phase 3, throughput from a strategy (`--strategy-throughput-seconds`): the
strategy daemon runs a `load` instance (a load generator: non-marketable IOC
orders at `--load-rate` per second across 4 symbols, made by the strategy
engine's order manager), so the orders take the whole path: order manager,
orders ring, risk, gateway, venue. Same orders/s.

`--monitor-ratio N` / `--log-ratio N`: only the latency phase, N runs without
and N with the monitor daemon / with log_level "info" (the brief's per-order
lines), alternating; prints the with/without ratio on the pooled orders and
the noise floor (the same ratio between halves of the runs without).

Targets from the brief (reported, not asserted): tick-to-trade p50 < 50 us,
p99 < 200 us; > 10,000 orders/s sustained for 60 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from hftd.ipc.control import request_sync  # noqa: E402
from hftd.ipc.ring import Ring  # noqa: E402
from hftd.msg import ids  # noqa: E402
from hftd.msg.control import Status  # noqa: E402
from hftd.msg.hot import (  # noqa: E402
    CMD_HEARTBEAT,
    CMD_NEW,
    EX_CANCELED,
    EX_REJECTED,
    ExecutionReport,
    OrderCommand,
)
from hftd.runtime.latency import HopLatency, summaries  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


LOAD_RATE = [60000.0]  # --load-rate: what the load strategy offers, orders/s
# Orders in flight (written, not reported finished) at most: an open loop outruns the
# venue on this box, its backlog grows for the whole run (seconds of queue: orders
# time out, max_working_orders rejects); a window keeps the queue, not the rate, bounded.
WINDOW = [4000]
FULL_WAIT_S = 0.0002  # the throughput phase's injector, when the orders ring is full
LAYOUT = ["auto", "auto"]  # [hotpath] layout and wait (--layout, --wait)


def write_config(
    tmp: Path, phase: str, rate: float, with_monitor: bool = False, log_level: str = "warning"
) -> Path:
    """default.toml, with the bench's load, limits and a private run dir/ports/rings."""
    text = (ROOT / "config" / "default.toml").read_text()
    data = tomllib.loads(text)
    prefix = f"hftd-bench{os.getpid()}-{phase}"
    lines = [
        "[system]",
        f'run_dir = "{tmp / "run"}"',
        f'journal_dir = "{tmp / "journal"}"',
        f'log_level = "{log_level}"',
        "",
    ]
    for s in data["symbols"]:
        lines += ["[[symbols]]", *(f"{k} = {toml_value(v)}" for k, v in s.items()), ""]
    ex = dict(data["exchange"])
    users = ex.pop("users")
    md_users = ex.pop("md_users", [])
    for sub in ("ack_latency", "md_latency", "flow"):
        ex.pop(sub, None)
    ex.update(order_port=free_port(), md_port=free_port())
    lines += ["[exchange]", *(f"{k} = {toml_value(v)}" for k, v in ex.items()), ""]
    for table, entries in (("users", users), ("md_users", md_users)):
        for u in entries:
            fields = (f"{k} = {toml_value(v)}" for k, v in u.items())
            lines += [f"[[exchange.{table}]]", *fields, ""]
    lines += [
        "[exchange.flow]",
        f"arrival_rate_per_s = {rate if phase == 'latency' else 5.0}",
        "cancel_ratio = 0.35",
        "marketable_ratio = 0.15",
        "max_resting_per_side = 300",
        "",
    ]
    lines += ["[rings]", f'prefix = "{prefix}"', ""]
    lines += ["[hotpath]", f'layout = "{LAYOUT[0]}"', f'wait = "{LAYOUT[1]}"', ""]
    # Limits out of the way: this measures the path, not the controls (a burst of
    # rejects would otherwise trip the circuit breaker and halt the run).
    lines += [
        "[risk]",
        "max_orders_per_s = 1000000",
        "max_messages_per_s = 3000000",
        "max_working_orders = 100000",
        "max_position = 1000000000",
        "max_gross_position = 4000000000",
        "max_net_position = 4000000000",
        "max_exposure_notional = 100000000000000",
        "daily_loss_limit = 100000000000000",
        "",
    ]
    lines += [
        "[breaker]",
        "max_venue_rejects = 1000000",
        "max_risk_rejects = 1000000",
        "max_cancels = 10000000",
        "",
    ]
    lines += [
        "[daemons.exchange]",
        "",
        "[daemons.feed]",
        'after = ["exchange"]',
        "",
        "[daemons.gateway]",
        'after = ["exchange"]',
        "",
    ]
    if phase == "latency":
        lines += ["[daemons.strategy]", 'after = ["feed", "gateway"]', ""]
        lines += [
            "[[strategy.instances]]",
            'name = "mr1"',
            'kind = "mean_reversion"',
            'symbols = ["AAPL", "MSFT", "GOOG", "AMZN"]',
            "order_qty = 100",
            "max_position = 100000000",
            "window = 20",
            "threshold_sigma = 1.0",
            "cooldown_ms = 1.0",
            "aggression_ticks = 1",
            "",
        ]
        lines += [
            "[[strategy.instances]]",
            'name = "mom1"',
            'kind = "momentum"',
            'symbols = ["AAPL", "MSFT", "GOOG", "AMZN"]',
            "order_qty = 100",
            "max_position = 100000000",
            "fast_window = 5",
            "slow_window = 20",
            "cooldown_ms = 1.0",
            "order_timeout_ms = 200.0",
            "",
        ]
    if phase == "strategy":  # the orders come from a strategy: kind "load"
        lines += ["[daemons.strategy]", 'after = ["feed", "gateway"]', ""]
        lines += [
            "[[strategy.instances]]",
            'name = "load1"',
            'kind = "load"',
            'symbols = ["AAPL", "MSFT", "GOOG", "AMZN"]',
            "order_qty = 100",
            "max_position = 100000000",
            f"rate_per_s = {LOAD_RATE[0]}",
            "offset_ticks = 5",
            f"max_working = {WINDOW[0]}",
            "",
        ]
    if with_monitor:
        lines += [
            "[daemons.monitor]",
            "cpu_policy = 'idle'",
            "",
            "[monitor]",
            f"web_port = {free_port()}",
            "",
        ]
    path = tmp / f"{phase}.toml"
    path.write_text("\n".join(lines))
    return path


class System:
    """`hftd up` in a subprocess, ready once the supervisor sends READY=1."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.run_dir = config.parent / "run"
        notify = config.parent / f"notify-{config.stem}.sock"
        notify.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(notify))
        self.log = open(config.parent / f"{config.stem}.log", "wb")  # noqa: SIM115
        env = dict(os.environ, NOTIFY_SOCKET=str(notify))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hftd.cli", "up", "--config", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        self.sock.settimeout(60)
        while b"READY=1" not in self.sock.recv(4096):
            pass

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of each process under the supervisor, by
        component ("hotpath", "exchange", ...): per order, a figure that a shared
        machine's noise moves much less than orders/s."""
        out: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for pid in _descendants(self.proc.pid):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = args[args.index(b"hftd.cli") + 1].decode() if b"hftd.cli" in args else "?"
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return out

    def status(self, name: str) -> dict[str, Any]:
        reply = request_sync(self.run_dir / f"{name}.sock", Status())
        if not reply.ok:
            raise RuntimeError(f"{name} Status failed: {reply.error}")
        detail: dict[str, Any] = reply.result["detail"]
        return detail

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.sock.close()
        self.log.close()
        # the rings are gone with the system; its prefix's lock file stays (never
        # deleted while a system may run): this bench's prefixes are its own
        prefix = tomllib.loads(self.config.read_text())["rings"]["prefix"]
        (Path("/dev/shm") / f"{prefix}-supervisor.lock").unlink(missing_ok=True)


def _descendants(root: int) -> list[int]:
    """`root`'s descendant processes, from /proc (no psutil)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def print_cpu(c0: dict[str, float], c1: dict[str, float], orders: int) -> None:
    """CPU microseconds per acknowledged order, per component, over the window."""
    if orders:
        per = {k: 1e6 * (c1[k] - c0.get(k, 0.0)) / orders for k in sorted(c1)}
        text = ", ".join(f"{k} {v:.1f}" for k, v in per.items() if k != "?")
        print(f"  CPU µs per acknowledged order: {text}")


def print_hops(hops: list[HopLatency]) -> None:
    names = {
        "t1_t2": "T1->T2 feed->strategy",
        "t2_t3": "T2->T3 strategy->risk",
        "t3_t4": "T3->T4 risk->wire",
        "t4_t5": "T4->T5 wire->venue ack",
        "t1_t4": "T1->T4 tick-to-trade",
    }
    print(
        f"  {'hop (us)':<26} {'count':>7} {'p50':>9} {'p95':>9} {'p99':>9} {'p99.9':>9} {'max':>9}"
    )
    for s in hops:
        print(
            f"  {names[s.hop]:<26} {s.count:>7} {s.p50:>9.1f} {s.p95:>9.1f} "
            f"{s.p99:>9.1f} {s.p999:>9.1f} {s.max:>9.1f}"
        )


def latency_phase(tmp: Path, seconds: float, rate: float, with_monitor: bool) -> dict[str, Any]:
    system = System(write_config(tmp, "latency", rate, with_monitor))
    try:
        g0 = system.status("gateway")
        time.sleep(seconds)  # the measurement window (a fixed load runs meanwhile)
        g1 = system.status("gateway")
        f1 = system.status("feed")
    finally:
        system.stop()
    sent = g1["sent"] - g0["sent"]
    print(
        f"latency phase: {seconds:.0f} s, synthetic flow {rate:g} events/s/symbol x 4, "
        f"feed {f1['messages']} ITCH messages ({f1['messages'] / seconds:.0f}/s), "
        f"orders sent {sent} ({sent / seconds:.1f}/s), fills {g1['fills']}, "
        f"md drops {f1['drops']}"
    )
    print_hops(summaries(g1["latency_hdr"]))
    return g1


def throughput_phase(tmp: Path, seconds: float) -> float:
    cfg_path = write_config(tmp, "throughput", 5.0)
    system = System(cfg_path)
    prefix = tomllib.loads(cfg_path.read_text())["rings"]["prefix"]
    ring = Ring.attach(f"{prefix}-orders")
    execs = Ring.attach(f"{prefix}-executions")  # read here, as a strategy would
    rdec = msgspec.msgpack.Decoder(ExecutionReport)
    enc = msgspec.msgpack.Encoder()
    try:
        hb = OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0)
        ring.write(enc.encode(hb))
        time.sleep(0.3)  # let the gateway see the strategy as up (heartbeat timeout path)
        g0, c0 = system.status("gateway"), system.cpu()
        cl = ids.first_id(0, ids.MAX_RUN)  # as a strategy would, in a run none claims
        t0 = time.monotonic()
        next_hb = t0
        full = 0
        sent = 0
        done = 0  # orders the gateway reported finished (cancelled by the venue, rejected)
        while True:
            now = time.monotonic()
            if now - t0 >= seconds:
                break
            if now >= next_hb and ring.try_write(enc.encode(hb)):
                next_hb = now + 0.05
            n = 0
            while (raw := execs.read()) is not None:
                n += 1
                if rdec.decode(raw).kind in (EX_CANCELED, EX_REJECTED):
                    done += 1
            if n:
                execs.commit()
            if sent - done >= WINDOW[0]:  # enough in flight: the path is the limit
                full += 1
                time.sleep(FULL_WAIT_S)
                continue
            for _ in range(64):
                side = "B" if cl & 1 else "S"
                price = 1_880_000 if side == "B" else 1_910_000  # off the touch, in the band
                cmd = OrderCommand(
                    CMD_NEW, cl, "AAPL", side, 100, price, "3", 0, "bench", 0, time.monotonic_ns()
                )
                if ring.try_write(enc.encode(cmd)):
                    cl += 1
                    sent += 1
                else:
                    # Full: wait a little instead of retrying at once. On a 2-CPU box a
                    # spinning injector takes a third of the CPUs from the hot path and
                    # the venue it measures; 0.2 ms is ~5 orders of the ring's ~17,000.
                    full += 1
                    time.sleep(FULL_WAIT_S)
                    break
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        g1, c1 = system.status("gateway"), system.cpu()
    finally:
        ring.close()
        execs.close()
        system.stop()
    acked = summaries(g1["latency_hdr"])[3].count - summaries(g0["latency_hdr"])[3].count
    rejects = g1["risk_rejects"] - g0["risk_rejects"]
    print(
        f"throughput phase: {elapsed:.1f} s, commands written {sent} ({sent / elapsed:.0f}/s), "
        f"venue acknowledgements {acked} ({acked / elapsed:.0f} orders/s), risk rejects "
        f"{rejects}, timeouts {g1['timeouts'] - g0['timeouts']}, waits (window or ring "
        f"full) {full}"
    )
    print_cpu(c0, c1, acked)
    print_hops(summaries(g1["latency_hdr"]))
    return acked / elapsed


def strategy_throughput_phase(tmp: Path, seconds: float) -> float:
    """The orders come from the strategy engine: a `load` instance (hftd/strategy/
    kinds/load.py) offers `--load-rate` non-marketable IOC orders a second across the
    four symbols through its order manager, the orders ring, risk, the gateway and the
    venue; orders/s = acknowledgements the venue sent in the window / its length."""
    system = System(write_config(tmp, "strategy", 5.0))
    try:
        deadline = time.monotonic() + 30
        while not system.status("strategy")["strategies"]["load1"]["sent"]:
            if time.monotonic() > deadline:  # no book with both sides yet?
                raise RuntimeError("the load strategy sent nothing in 30 s")
            time.sleep(0.2)
        time.sleep(2.0)  # the books of the other symbols fill too: the whole rate runs
        g0, s0, c0 = system.status("gateway"), system.status("strategy"), system.cpu()
        t0 = time.monotonic()
        time.sleep(seconds)
        g1, s1, c1 = system.status("gateway"), system.status("strategy"), system.cpu()
        elapsed = time.monotonic() - t0
    finally:
        system.stop()
    acked = summaries(g1["latency_hdr"])[3].count - summaries(g0["latency_hdr"])[3].count
    made = s1["strategies"]["load1"]["sent"] - s0["strategies"]["load1"]["sent"]
    refused = s1["orders_refused"] - s0["orders_refused"]
    rejects = g1["risk_rejects"] - g0["risk_rejects"]
    print(
        f"strategy throughput phase: {elapsed:.1f} s, load strategy offering "
        f"{LOAD_RATE[0]:g}/s: orders made {made} ({made / elapsed:.0f}/s), refused by the "
        f"full ring {refused}, venue acknowledgements {acked} ({acked / elapsed:.0f} "
        f"orders/s), risk rejects {rejects}, timeouts {g1['timeouts'] - g0['timeouts']}, "
        f"venue rejects "
        f"{g1['venue_rejects'] - g0['venue_rejects']}, fills {g1['fills'] - g0['fills']}"
    )
    print_cpu(c0, c1, acked)
    print_hops(summaries(g1["latency_hdr"]))
    return acked / elapsed


def _pooled(hists: list[Any]) -> Any:
    """The runs' window histograms added up (orders from all of them)."""
    from hftd.runtime.hdr import SparseHistogram

    acc: dict[int, int] = {}
    for h in hists:
        for i, c in zip(h.indexes, h.counts, strict=True):
            acc[i] = acc.get(i, 0) + c
    return SparseHistogram(acc.items())


def ab_ratio(tmp: Path, seconds: float, rate: float, rounds: int, what: str) -> None:
    """The latency phase without and with `what` ("monitor": the monitor daemon;
    "log": log_level "info", i.e. the brief's per-order lines, instead of
    "warning"), alternated `rounds` times each; each run's window is its HDR
    histogram now minus at its start.

    Compared on the pooled orders of all runs of a kind (the p99.9 of one short run
    is its 3rd-worst order: noise). The noise floor is the same comparison between
    two halves of the runs *without* it (odd vs even rounds): a with/without
    ratio no further from 1 than that is not measurable here."""
    from hftd.runtime.hdr import SparseHistogram

    hops = ("t1_t4", "t1_t2")
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for i in range(2 * rounds):
        on = bool(i % 2)
        with_monitor = on and what == "monitor"
        level = "info" if on and what == "log" else "warning"
        system = System(write_config(tmp, "latency", rate, with_monitor, level))
        try:
            time.sleep(2.0)  # past start-up
            g0 = system.status("gateway")
            time.sleep(seconds)
            g1 = system.status("gateway")
            polls = system.status("monitor")["polls"] if with_monitor else 0
        finally:
            system.stop()
        win = {
            hop: SparseHistogram.from_wire(g1["latency_hdr"][hop])
            - SparseHistogram.from_wire(g0["latency_hdr"][hop])
            for hop in hops
        }
        runs[on].append(win)
        p50, p99, p999 = (v / 1000 for v in win["t1_t4"].percentiles_ns([50.0, 99.0, 99.9]))
        print(
            f"  run {i + 1}: {what} {'on ' if on else 'off'} ({polls} monitor polls), "
            f"T1->T4 n={win['t1_t4'].total} p50 {p50:.1f} p99 {p99:.1f} p99.9 {p999:.1f} us"
        )

    def compare(label: str, base: list[dict[str, Any]], other: list[dict[str, Any]]) -> None:
        print(label)
        for hop, name in (("t1_t4", "T1->T4 tick-to-trade"), ("t1_t2", "T1->T2 feed->strategy")):
            a = _pooled([r[hop] for r in base])
            b = _pooled([r[hop] for r in other])
            qa = a.percentiles_ns([50.0, 99.0, 99.9])
            qb = b.percentiles_ns([50.0, 99.0, 99.9])
            parts = [
                f"{q} {x / 1000:.1f} -> {y / 1000:.1f} us (x{y / x:.2f})" if x else f"{q} -"
                for q, x, y in zip(("p50", "p99", "p99.9"), qa, qb, strict=True)
            ]
            print(f"  {name} (n {a.total} / {b.total}): " + ", ".join(parts))

    compare(
        f"{what} ratio, with / without ({rounds} runs of {seconds:g} s each, pooled):",
        runs[False],
        runs[True],
    )
    if rounds >= 2:
        compare(
            f"noise floor, without / without (odd vs even runs without {what}):",
            runs[False][0::2],
            runs[False][1::2],
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="latency phase length")
    ap.add_argument("--rate", type=float, default=250.0, help="flow events/s per symbol")
    ap.add_argument("--throughput-seconds", type=float, default=20.0)
    ap.add_argument(
        "--strategy-throughput-seconds",
        type=float,
        default=0.0,
        help='throughput with the orders made by a strategy (kind "load")',
    )
    ap.add_argument(
        "--load-rate",
        type=float,
        default=LOAD_RATE[0],
        help="orders/s the load strategy offers (above what the path takes)",
    )
    ap.add_argument(
        "--window",
        type=int,
        default=WINDOW[0],
        help="orders in flight at most, injected or from the strategy",
    )
    ap.add_argument("--with-monitor", action="store_true", help="also run the monitor daemon")
    ap.add_argument(
        "--monitor-ratio",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only the latency phase, ROUNDS runs without and ROUNDS with the "
        "monitor (alternating); print the with/without ratio",
    )
    ap.add_argument(
        "--log-ratio",
        type=int,
        default=0,
        metavar="ROUNDS",
        help='the same, log_level "info" (per-order lines) against "warning"',
    )
    ap.add_argument(
        "--layout",
        choices=("auto", "split", "composite"),
        default="auto",
        help="[hotpath] layout (auto: composite on fewer than 4 CPUs)",
    )
    ap.add_argument(
        "--wait",
        choices=("auto", "spin", "spin-then-sleep", "sleep"),
        default="auto",
        help="[hotpath] wait: the composite hot thread's",
    )
    args = ap.parse_args()
    LAYOUT[:] = [args.layout, args.wait]
    LOAD_RATE[:] = [args.load_rate]
    WINDOW[:] = [args.window]
    print(f"layout {args.layout}, wait {args.wait}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus (affinity "
        f"{len(os.sched_getaffinity(0))}), Python {platform.python_version()}, "
        f"{platform.platform()}"
    )
    with tempfile.TemporaryDirectory(prefix="hftd-bench-") as d:
        if args.monitor_ratio:
            ab_ratio(Path(d), args.seconds, args.rate, args.monitor_ratio, "monitor")
            return
        if args.log_ratio:
            ab_ratio(Path(d), args.seconds, args.rate, args.log_ratio, "log")
            return
        if args.seconds > 0:
            latency_phase(Path(d), args.seconds, args.rate, args.with_monitor)
        if args.throughput_seconds > 0:
            throughput_phase(Path(d), args.throughput_seconds)
        if args.strategy_throughput_seconds > 0:
            strategy_throughput_phase(Path(d), args.strategy_throughput_seconds)


if __name__ == "__main__":
    main()
