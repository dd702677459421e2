#!/usr/bin/env python3
"""Allocations and garbage collection on the hot path, in steady state.

    python bench/bench_alloc.py [--messages 1050000] [--policy gcpolicy|freeze|none|all]
                                [--depth N] [--young N] [--no-control] [--tracemalloc N]

One process, one hot thread, the real agents: SoupBinTCP/ITCH packets into
`FeedAgent` -> md ring -> `StrategyAgent` (books, strategies, order manager) ->
orders ring -> `GatewayCore` (risk, OUCH out; the venue's OUCH replies back in
through a SoupBinTCP session) -> executions ring -> `StrategyAgent`. The market
is the NASDAQ AAPL ITCH sample, looped: each lap ends with deletes of the orders
still resting, so every lap leaves the books as it found them. The venue
accepts every order and cancels the rest of each IOC at once (no fills).
Logging is at "info" through the deferred hot-thread handler (to /dev/null).

The packets arrive `--chunk` at a time (one "recv"); after each chunk the loop
is idle once, as a hot loop is between reads: it writes a deferred log line and,
under `gcpolicy`, calls `hftd.runtime.gcpolicy.idle_collect`.

A control thread runs beside it as in a daemon (trio; a 50 ms tick folding the
gateway's latency rows, a Status-like reply every 0.5 s; `--no-control` without).
`--depth N` adds N orders that rest during each lap and leave at its end (far
from the touch): a book that fills and empties, as at the open, so that tracked
objects pile up for a while; the sample alone allocates almost nothing that
lives (no collection at all within 1M messages, whatever the policy).

Policies: `none` (CPython's defaults), `freeze` (collect + gc.freeze() after
start-up, default thresholds: what the daemons did before gcpolicy), `gcpolicy`
(`gcpolicy.settle()` after start-up, `idle_collect()` in the idle moments).

Printed per policy: blocks allocated (sys.getallocatedblocks) and the gen-0 count
at the first lap end past every 100k messages of the window (whole laps: the
books as they began) and the growth over it, collections of each
generation per 100k messages, split into those that ran while messages were
being handled ("hot") and in idle moments ("idle"), the longest pause of each,
and the longest chunk-handling time. `--tracemalloc N` adds a pass of N
messages under tracemalloc (whole laps): net bytes and blocks per message and the
top sites of what grew (tuples parked in CPython's free lists count as live there).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import sys
import threading
import time
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import trio  # noqa: E402

from hftd.book.l3 import BookBuilder  # noqa: E402
from hftd.config import HftdConfig, load_config  # noqa: E402
from hftd.feed.daemon import FeedAgent  # noqa: E402
from hftd.feed.normalize import Normalizer  # noqa: E402
from hftd.gateway.core import GatewayCore  # noqa: E402
from hftd.gateway.ouch_adapter import OuchAdapter  # noqa: E402
from hftd.ipc.ring import Ring  # noqa: E402
from hftd.msg.hot import MarketDataUpdate, OrderCommand  # noqa: E402
from hftd.risk.market import MarketView  # noqa: E402
from hftd.runtime import gcpolicy  # noqa: E402
from hftd.runtime import log as hlog  # noqa: E402
from hftd.strategy.daemon import StrategyAgent  # noqa: E402
from hftd.wire import itch, ouch  # noqa: E402
from hftd.wire import soupbintcp as soup  # noqa: E402

DATA = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
CHECKPOINT = 100_000
YOUNG = gcpolicy.GcPolicy().young  # --young: the policy's young-generation size


def lap(path: Path, depth: int = 0) -> list[bytes]:
    """The sample, plus a delete of every order still resting at its end.

    `depth` > 0: as many more orders join the book during the lap, spread over it,
    far from the touch (bids at $100, asks at $900: the BBO and the strategies do
    not see them), and leave it at the end: a book that builds up and empties
    every lap, as a day's open does, so tracked objects pile up between deletes."""
    msgs = [bytes(m) for m in itch.iter_binary_file(path.read_bytes())]
    if depth:
        every = max(1, len(msgs) // depth)
        out: list[bytes] = []
        n = 0
        for i, m in enumerate(msgs):
            out.append(m)
            if i % every == 0 and n < depth:
                n += 1
                side = "B" if n % 2 else "S"
                price = 1_000_000 + (n % 50) * 100 if side == "B" else 9_000_000 - (n % 50) * 100
                ts = itch.decode(m).timestamp  # type: ignore[union-attr]
                out.append(
                    itch.encode(itch.AddOrder(13, 0, ts, 10**12 + n, side, 100, "AAPL", price))
                )
        msgs = out
    books, norm = BookBuilder(), Normalizer()
    for i, m in enumerate(msgs):
        books.apply_update(norm.update(m, i + 1, 0))
    ts = itch.decode(msgs[-1]).timestamp  # type: ignore[union-attr]
    for locate, book in books.by_locate.items():
        for ref in list(book.orders):
            msgs.append(itch.encode(itch.OrderDelete(locate, 0, ts, ref)))
    return msgs


class Venue:
    """Answers the gateway's OUCH at once: Accepted, and Canceled for an IOC's rest
    and for a cancel; sequenced SoupBinTCP packets, as a venue sends them."""

    def __init__(self) -> None:
        self.seq = 0
        self.ref = 0
        self.live: dict[int, int] = {}  # user_ref -> open qty

    def answer(self, payload: bytes, now: int) -> list[bytes]:
        m = ouch.decode_inbound(payload)
        out: list[ouch.Outbound] = []
        if type(m) is ouch.EnterOrder:
            self.ref += 1
            out.append(
                ouch.Accepted(
                    now,
                    m.user_ref,
                    m.side,
                    m.quantity,
                    m.symbol,
                    m.price,
                    m.time_in_force,
                    "Y",
                    self.ref,
                    "A",
                    "N",
                    "N",
                    "L",
                    m.cl_ord_id,
                )
            )
            if m.time_in_force == ouch.TIF_IOC:
                out.append(ouch.Canceled(now, m.user_ref, m.quantity, ouch.CANCEL_IOC))
            else:
                self.live[m.user_ref] = m.quantity
        elif type(m) is ouch.CancelOrder:
            qty = self.live.pop(m.user_ref, 0)
            if qty:
                out.append(ouch.Canceled(now, m.user_ref, qty, ouch.CANCEL_USER))
        return [soup.sequenced(ouch.encode_outbound(x)) for x in out]


class Gateway:
    """GatewayAgent's hot-loop work around GatewayCore, with the venue in process."""

    def __init__(self, cfg: HftdConfig, orders: Ring, execs: Ring, md: Ring) -> None:
        self.core = GatewayCore(cfg, time.monotonic_ns, OuchAdapter())
        self.core.venue_up = True
        self.orders, self.execs, self.md = orders, execs, md
        self.dec = msgspec.msgpack.Decoder(OrderCommand)
        self.md_dec = msgspec.msgpack.Decoder(MarketDataUpdate)
        self.market = MarketView([s.symbol for s in cfg.symbols], time.monotonic)
        self.enc = msgspec.msgpack.Encoder()
        self.session = soup.ClientSession()
        list(self.session.iter_events(soup.login_accepted("BENCH", 1)))
        self.venue = Venue()
        self.pending: deque[bytes] = deque()
        self.next_hb = 0

    def do_work(self) -> int:
        core, orders, dec = self.core, self.orders, self.dec
        md, market = self.md, self.market
        m = 0
        for _ in range(256):  # risk's own market view (GatewayAgent._market)
            raw = md.read()
            if raw is None:
                break
            m += 1
            sym = market.on_update(self.md_dec.decode(raw))
            if sym:
                core.on_reference(sym, market.reference[sym])
        if m:
            md.commit()
        n = 0
        for _ in range(256):
            raw = orders.read()
            if raw is None:
                break
            n += 1
            core.on_command(dec.decode(raw), time.monotonic_ns())
        if n:
            orders.commit()
        now = time.monotonic_ns()
        if now >= self.next_hb:
            self.next_hb = now + 100_000_000
            core.on_timer(now)
            core.reports.append(core.heartbeat())
        replies: list[bytes] = []
        if core.to_venue:
            wire = b"".join(soup.unsequenced(p) for p in core.to_venue)
            for p in core.to_venue:
                replies += self.venue.answer(p, now)
            core.to_venue.clear()
            core.stamp_sent(time.monotonic_ns())
            core.after_send()
            del wire
        if replies:
            t5 = time.monotonic_ns()
            for ev in self.session.iter_events(b"".join(replies)):
                if type(ev) is soup.SequencedData:
                    core.on_venue_payload(ev.payload, ev.sequence, t5)
        self._flush()
        return n

    def _flush(self) -> None:
        core = self.core
        if core.to_venue:  # cancels made by on_timer or by a reply
            for p in core.to_venue:
                self.venue.answer(p, time.monotonic_ns())
            core.to_venue.clear()
        if core.reports:
            for r in core.reports:
                self.pending.append(self.enc.encode(core.stamp(r)))
            core.reports.clear()
        while self.pending and self.execs.try_write(self.pending[0]):
            self.pending.popleft()


class Control:
    """A daemon's control thread beside the hot one: trio, a 50 ms tick folding the
    latency rows (the gateway's), a Status-like reply encoded every 0.5 s (what the
    monitor's polls cost), stale log lines every 0.1 s. Its allocations count toward
    the same collector thresholds, and its collections stop the hot thread too."""

    def __init__(self, feed: FeedAgent, strat: StrategyAgent, gw: Gateway) -> None:
        self.feed, self.strat, self.gw = feed, strat, gw
        self.stop = threading.Event()
        self.replies = 0
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        enc = msgspec.msgpack.Encoder()
        n = 0
        while not self.stop.is_set():
            await trio.sleep(0.05)
            n += 1
            self.gw.core.latency.fold()
            if n % 2 == 0:
                hlog.flush_stale()
            if n % 10 == 0:
                core = self.gw.core
                detail = {
                    "feed": dict(self.feed.counters),
                    "ring": msgspec.to_builtins(self.feed.ring.statistics()),
                    "gateway": dict(core.counters),
                    "mode": core.mode,
                    "positions": core.book.snapshot(),
                    "latency_hdr": core.latency.histograms(),
                    "sync": self.strat.sync.status(),
                    "working": self.strat.engine.working(),
                }
                enc.encode({"ok": True, "result": {"detail": detail}})
                self.replies += 1

    def __enter__(self) -> Control:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


class GcWatch:
    """gc.callbacks: every collection, its generation and pause, hot or idle."""

    def __init__(self) -> None:
        self.idle = False
        self.t0 = 0
        self.count = {("hot", g): 0 for g in range(3)} | {("idle", g): 0 for g in range(3)}
        self.max_pause = {"hot": 0, "idle": 0}
        self.total_pause = {"hot": 0, "idle": 0}
        self.gen_pause = {("hot", g): 0 for g in range(3)} | {("idle", g): 0 for g in range(3)}
        self.on = False

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.t0 = time.perf_counter_ns()
            return
        if not self.on:
            return
        pause = time.perf_counter_ns() - self.t0
        where = "idle" if self.idle else "hot"
        self.count[(where, info["generation"])] += 1
        self.max_pause[where] = max(self.max_pause[where], pause)
        key = (where, info["generation"])
        self.gen_pause[key] = max(self.gen_pause[key], pause)
        self.total_pause[where] += pause


def run(
    policy: str, messages: int, chunk: int, lap_msgs: list[bytes], trace: int, control: bool
) -> dict[str, Any]:
    cfg = load_config(ROOT / "config" / "default.toml")
    prefix = f"hftd-bench-alloc-{os.getpid()}-{policy}"
    rings = {
        e: Ring.open(f"{prefix}-{e}", c)
        for e, c in (
            ("md", 1 << 22),
            ("risk_md", 1 << 22),
            ("orders", 1 << 20),
            ("executions", 1 << 20),
        )
    }
    try:
        return _run(cfg, rings, policy, messages, chunk, lap_msgs, trace, control)
    finally:
        for r in rings.values():
            r.close()
            Ring.unlink(r.name, missing_ok=True)


def _run(
    cfg: HftdConfig,
    rings: dict[str, Ring],
    policy: str,
    messages: int,
    chunk: int,
    lap_msgs: list[bytes],
    trace: int,
    control: bool,
) -> dict[str, Any]:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    feed = FeedAgent(cfg, rings["md"], rings["risk_md"])
    feed.link.requested = 1
    strat = StrategyAgent(cfg, rings["md"], rings["executions"], rings["orders"])
    gw = Gateway(cfg, rings["orders"], rings["executions"], rings["risk_md"])
    # the stream: login, then the laps; chunk = one recv
    feed._on_data(memoryview(soup.login_accepted("BENCH", 1)), time.monotonic_ns())
    packets = [soup.sequenced(m) for m in lap_msgs]
    chunks = [b"".join(packets[i : i + chunk]) for i in range(0, len(packets), chunk)]
    per_lap = len(chunks)
    watch = GcWatch()
    gc.callbacks.append(watch)
    clock = time.perf_counter_ns
    idle_hook = gcpolicy.idle_collect if policy == "gcpolicy" else None
    flush = hlog.flush_deferred

    def step(data: bytes) -> int:
        t0 = clock()
        feed._on_data(memoryview(data), time.monotonic_ns())
        strat.do_work()
        gw.do_work()
        strat.do_work()  # the execution reports
        t1 = clock()
        watch.idle = True
        flush(8)
        if idle_hook is not None:
            idle_hook()
        watch.idle = False
        return t1 - t0

    ctl = Control(feed, strat, gw) if control else None
    if ctl is not None:
        sys.setswitchinterval(0.0001)  # as HotLoop.start sets it
        ctl.__enter__()
    # start-up: one lap, then the policy (as a daemon does once READY)
    boot0 = [st["collections"] for st in gc.get_stats()]
    for c in chunks:
        step(c)
    boot = [st["collections"] - b for st, b in zip(gc.get_stats(), boot0, strict=True)]
    if policy == "freeze":
        gc.collect()
        gc.freeze()
    elif policy == "gcpolicy":
        gcpolicy.settle(gcpolicy.GcPolicy(young=YOUNG))
    # measured window
    stats0 = gc.get_stats()
    rows: list[tuple[int, int, int]] = []
    done = 0
    i = 0
    worst = 0
    total_ns = 0
    watch.on = True
    b_start = sys.getallocatedblocks()  # the start-up lap ended: a lap boundary
    next_cp = CHECKPOINT
    # whole laps (the window starts and ends where the books are as they began);
    # blocks are read at the first lap end past every 100k messages
    while done < messages or i:
        ns = step(chunks[i])
        total_ns += ns
        worst = max(worst, ns)
        done += chunk
        i += 1
        if i == per_lap:
            i = 0
            if done >= next_cp:
                next_cp += CHECKPOINT
                watch.on = False
                rows.append((done, sys.getallocatedblocks() - b_start, gc.get_count()[0]))
                watch.on = True
    watch.on = False
    b_end = sys.getallocatedblocks()
    stats1 = gc.get_stats()
    replies = 0
    if ctl is not None:
        ctl.__exit__()
        replies = ctl.replies
    gcs = [stats1[g]["collections"] - stats0[g]["collections"] for g in range(3)]
    traced: dict[str, Any] = {}
    if trace:
        tracemalloc.start(8)
        for _ in range(per_lap):  # one lap under tracing before the snapshot
            step(chunks[i])
            i = (i + 1) % per_lap
        snap0 = tracemalloc.take_snapshot()
        cur0 = tracemalloc.get_traced_memory()[0]
        done_t = 0
        while done_t < trace or i:  # whole laps, as the window
            step(chunks[i])
            i = (i + 1) % per_lap
            done_t += chunk
        cur1 = tracemalloc.get_traced_memory()[0]
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        diff = [d for d in snap1.compare_to(snap0, "lineno") if d.size_diff > 0]
        diff.sort(key=lambda d: -d.size_diff)
        traced = {
            "messages": done_t,
            "bytes_per_msg": (cur1 - cur0) / done_t,
            "blocks_per_msg": sum(d.count_diff for d in snap1.compare_to(snap0, "lineno")) / done_t,
            "top": [
                f"{d.traceback[0].filename.split('/hftd/')[-1]}:{d.traceback[0].lineno} "
                f"+{d.size_diff} B +{d.count_diff}"
                for d in diff[:5]
            ],
        }
    gc.callbacks.remove(watch)
    gp = gcpolicy.active()
    gcpolicy.restore()
    gc.unfreeze()
    return {
        "policy": policy,
        "messages": done,
        "orders": gw.core.counters["sent"],
        "replies": replies,
        "startup_gcs": boot,
        "rows": rows,
        "growth": b_end - b_start,
        "gcs": gcs,
        "hot": [watch.count[("hot", g)] for g in range(3)],
        "idle": [watch.count[("idle", g)] for g in range(3)],
        "max_pause": watch.max_pause,
        "total_pause": watch.total_pause,
        "gen_pause": {f"{w}{g}": p / 1e3 for (w, g), p in watch.gen_pause.items()},
        "worst_chunk_us": worst / 1e3,
        "mean_msg_us": total_ns / done / 1e3,
        "policy_stats": gp.stats.as_dict() if gp is not None else {},
        "traced": traced,
        "book_errors": strat.engine.book_errors,
        "book_error": strat.engine.last_book_error,
        "drops": feed.counters["drops"],
    }


def report(r: dict[str, Any]) -> None:
    n = r["messages"]
    per = CHECKPOINT / n
    print(
        f"\n## policy {r['policy']}: {n} messages, {r['orders']} orders, "
        f"book errors {r['book_errors']} {r['book_error']!r}, md drops {r['drops']}, "
        f"mean {r['mean_msg_us']:.2f} µs/message, longest chunk {r['worst_chunk_us']:.0f} µs, "
        f"control thread: {r['replies']} Status replies"
    )
    print("start-up lap: collections gen0/gen1/gen2 " + "/".join(str(g) for g in r["startup_gcs"]))
    print("blocks allocated since the window began (sys.getallocatedblocks) / gen-0 count:")
    print("  " + "  ".join(f"{d // 1000}k:{b:+d}/{c}" for d, b, c in r["rows"]))
    print(f"growth over the window: {r['growth']:+d} blocks ({r['growth'] / n:+.4f} per message)")
    rows = r["rows"]
    if len(rows) >= 2:
        (d0, b0, _), (d1, b1, _) = rows[0], rows[-1]
        print(
            f"  from the first checkpoint to the last ({d0 // 1000}k..{d1 // 1000}k): "
            f"{b1 - b0:+d} blocks ({(b1 - b0) / (d1 - d0):+.5f} per message)"
        )
    gcs, hot, idle = r["gcs"], r["hot"], r["idle"]
    print(
        "collections per 100k messages, gen0/gen1/gen2: "
        f"all {'/'.join(f'{g * per:.1f}' for g in gcs)}; "
        f"hot (while handling messages) {'/'.join(f'{g * per:.1f}' for g in hot)}; "
        f"idle {'/'.join(f'{g * per:.1f}' for g in idle)}"
    )
    print(
        f"  hot collections in the window: {sum(hot)}, longest pause "
        f"{r['max_pause']['hot'] / 1e3:.0f} µs; idle: {sum(idle)}, longest "
        f"{r['max_pause']['idle'] / 1e3:.0f} µs"
    )
    tp, hot_n, idle_n = r["total_pause"], sum(hot), sum(idle)
    print(
        f"  mean pause: hot {tp['hot'] / hot_n / 1e3 if hot_n else 0:.0f} µs, "
        f"idle {tp['idle'] / idle_n / 1e3 if idle_n else 0:.0f} µs; time in collections "
        f"{(tp['hot'] + tp['idle']) / n:.1f} ns per message"
    )
    gp = r["gen_pause"]
    print(
        "  longest pause by generation (gen0/gen1/gen2), µs: hot "
        + "/".join(f"{gp[f'hot{g}']:.0f}" for g in range(3))
        + ", idle "
        + "/".join(f"{gp[f'idle{g}']:.0f}" for g in range(3))
    )
    t = r["traced"]
    if t:
        print(
            f"tracemalloc over {t['messages']} more messages: {t['bytes_per_msg']:+.3f} bytes and "
            f"{t['blocks_per_msg']:+.4f} blocks per message; top growth:"
        )
        for line in t["top"]:
            print(f"    {line}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=1_050_000, help="measured window")
    ap.add_argument("--chunk", type=int, default=4, help="packets per recv")
    ap.add_argument("--policy", default="all", choices=["all", "gcpolicy", "freeze", "none"])
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="N",
        help="then N messages under tracemalloc (slow)",
    )
    ap.add_argument(
        "--depth", type=int, default=0, help="orders more that rest and leave every lap"
    )
    ap.add_argument(
        "--young", type=int, default=gcpolicy.GcPolicy().young, help="gcpolicy: young objects"
    )
    ap.add_argument("--no-control", action="store_true", help="no control thread beside")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args()
    globals()["YOUNG"] = args.young
    hlog.setup_logging("strategy", "info")
    deferred = logging.getLogger().handlers[0]
    assert isinstance(deferred, hlog.DeferredHandler)
    deferred.target = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    deferred.target.setFormatter(hlog.BriefFormatter("STRAT"))
    hlog.register_hot_thread()
    lap_msgs = lap(Path(args.data), args.depth)
    print(
        f"# bench_alloc: Python {platform.python_version()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; lap {len(lap_msgs)} "
        f"messages, {args.chunk} per recv"
    )
    policies = ["none", "freeze", "gcpolicy"] if args.policy == "all" else [args.policy]
    for p in policies:
        report(run(p, args.messages, args.chunk, lap_msgs, args.tracemalloc, not args.no_control))


if __name__ == "__main__":
    main()
