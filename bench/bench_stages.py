#!/usr/bin/env python3
"""Cost of each stage of one market-data message on its way to one order.

    python bench/bench_stages.py [--repeat 5] [--orders 10000] [--data FILE]

In one process, on the NASDAQ AAPL ITCH sample (`tests/data/itch/`), every
stage the hot path runs, called the way the daemons call it, each timed with
`time.perf_counter_ns()` around the call (collector frozen and off while timing):

    socket read        recv_into on loopback TCP, one SoupBinTCP packet per read (feed)
    SoupBinTCP framing ClientSession.iter_events over that read (feed)
    ITCH decode        the per-type decoder hftd.feed.normalize picks
    normalize          ITCH message -> MarketDataUpdate
    ring write         msgpack encode + Ring.try_write (feed -> strategy)
    ring read          Ring.read + msgpack decode (strategy)
    book update        the StrategyEngine's BookBuilder.apply_update
    strategy decision  the rest of StrategyEngine.on_update: every strategy's on_book
                       (and on_trade), order manager, the "signal" log line
    book + strategies  StrategyEngine.on_update as one call, in a loop of its own
                       (warm caches: compare with the two rows above)
    ring write/read    the order command over the orders ring (strategy -> gateway)
    risk check         RiskEngine.check_new as GatewayCore._send_new calls it
    OUCH encode        EnterOrder + encode_inbound + SoupBinTCP framing (gateway)
    socket send        the framed order on loopback TCP, as SoupLink.send does it
    gateway on_command the whole of GatewayCore.on_command for a new order (risk,
                       order book-keeping, OUCH encode, journal record; its "order
                       sent" log line comes after the send, `after_send`, untimed)

Strategies signal on a small fraction of messages, so the order stages run on the
orders the strategies made, cycled to `--orders` samples. Allocations: blocks
(`sys.getallocatedblocks()`) the stage leaves per message when its outputs are
kept, i.e. the objects it builds (temporaries it frees inside are not counted),
and the growth per message when they are not kept (a leak would show here).

The hot thread's log lines go through `hftd.runtime.log` as in a daemon at log
level "info" (deferred; written to /dev/null in the idle rows at the end);
BENCH_LOG_LEVEL=warning runs the same without them. The strategies' clock is the
venue's timestamp of each message (a replay), and every order is answered at
once (accepted, the rest of the IOC cancelled) so that they keep trading.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from hftd.book.l3 import BookBuilder  # noqa: E402
from hftd.config import load_config, parse_config  # noqa: E402
from hftd.feed.normalize import _DECODE, Normalizer, normalize, sequence_only  # noqa: E402
from hftd.gateway.core import GatewayCore  # noqa: E402
from hftd.gateway.ouch_adapter import OuchAdapter, to_b36  # noqa: E402
from hftd.ipc.ring import Ring  # noqa: E402
from hftd.msg.hot import (  # noqa: E402
    CMD_HEARTBEAT,
    EX_ACCEPTED,
    EX_CANCELED,
    MD_DELETE,
    MD_EXECUTE,
    MD_TRADE,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.runtime import log as hlog  # noqa: E402
from hftd.strategy.engine import StrategyEngine  # noqa: E402
from hftd.wire import itch, ouch  # noqa: E402
from hftd.wire import soupbintcp as soup  # noqa: E402

DATA = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"


class Stage:
    """One row: per-call times (ns) and allocation figures."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.times: list[int] = []
        self.kept: float | None = None  # blocks per call with outputs kept
        self.growth: float | None = None  # blocks per call with outputs dropped

    def row(self) -> tuple[str, float, float, float | None, float | None, int]:
        t = sorted(self.times)
        n = len(t)
        return (
            self.name,
            t[n // 2] / 1e3,
            t[min(n - 1, int(n * 0.99))] / 1e3,
            self.kept,
            self.growth,
            n,
        )


def timed(stage: Stage, fn: Callable[[Any], Any], inputs: Sequence[Any]) -> list[Any]:
    """Call fn on every input, timing each call; returns the outputs."""
    out: list[Any] = [None] * len(inputs)
    clock = time.perf_counter_ns
    times = stage.times
    for i, x in enumerate(inputs):
        t0 = clock()
        r = fn(x)
        t1 = clock()
        times.append(t1 - t0)
        out[i] = r
    return out


def blocks(stage: Stage, fn: Callable[[Any], Any], inputs: Sequence[Any]) -> None:
    """Blocks per call left by fn: with its outputs kept, and with them dropped."""
    keep: list[Any] = [None] * len(inputs)
    b0 = sys.getallocatedblocks()
    for i, x in enumerate(inputs):
        keep[i] = fn(x)
    b1 = sys.getallocatedblocks()
    stage.kept = (b1 - b0) / len(inputs)
    del keep
    b0 = sys.getallocatedblocks()
    for x in inputs:
        fn(x)
    b1 = sys.getallocatedblocks()
    stage.growth = (b1 - b0) / len(inputs)


def closed_lap(updates: list[MarketDataUpdate]) -> list[MarketDataUpdate]:
    """The updates, then a delete of every order still resting at their end."""
    books = BookBuilder()
    for u in updates:
        books.apply_update(u)
    last = updates[-1]
    out = list(updates)
    for locate, book in books.by_locate.items():
        for ref in book.orders:
            out.append(
                MarketDataUpdate(0, MD_DELETE, locate, "", ref, "", 0, 0, 0, last.exch_ts, 0)
            )
    return out


def load_messages(path: Path) -> list[bytes]:
    return [bytes(m) for m in itch.iter_binary_file(path.read_bytes())]


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        a = socket.create_connection(lst.getsockname())
        b, _ = lst.accept()
    for s in (a, b):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return a, b


def bench_config(symbols_csv: str = "") -> Any:
    """The default config; risk limits as shipped (the bench's order clock keeps
    the order rate at 100/s)."""
    cfg = load_config(ROOT / "config" / "default.toml")
    return cfg if not symbols_csv else parse_config(msgspec.to_builtins(cfg))


def setup_hot_logging() -> logging.Handler:
    """Log level "info" as a daemon runs it; this thread is a hot thread (deferred
    lines), the lines end up in /dev/null."""
    hlog.setup_logging("strategy", os.environ.get("BENCH_LOG_LEVEL", "info"))
    deferred = logging.getLogger().handlers[0]
    assert isinstance(deferred, hlog.DeferredHandler)
    deferred.target = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    deferred.target.setFormatter(hlog.BriefFormatter("STRAT"))
    hlog.register_hot_thread()
    return deferred


def run(args: argparse.Namespace) -> list[Stage]:
    msgs = load_messages(Path(args.data))
    cfg = bench_config()
    deferred = setup_hot_logging()
    st: dict[str, Stage] = {}

    def stage(name: str) -> Stage:
        if name not in st:
            st[name] = Stage(name)
        return st[name]

    reader, writer = tcp_pair()
    out_a, out_b = tcp_pair()
    out_b.setblocking(False)
    ring_name = f"hftd-bench-stages-{os.getpid()}"
    md_ring = Ring.open(ring_name + "-md", 1 << 22)
    ord_ring = Ring.open(ring_name + "-orders", 1 << 20)
    try:
        packets = [soup.sequenced(m) for m in msgs]
        enc = msgspec.msgpack.Encoder()
        md_dec = msgspec.msgpack.Decoder(MarketDataUpdate)
        cmd_dec = msgspec.msgpack.Decoder(OrderCommand)
        buf = bytearray(1 << 18)
        view = memoryview(buf)
        commands: list[OrderCommand] = []
        for _rep in range(args.repeat):
            gc.collect()
            gc.freeze()
            gc.disable()
            session = soup.ClientSession()
            list(session.iter_events(soup.login_accepted("BENCH", 1)))
            norm = Normalizer()
            clock_now = [0]
            sent: list[OrderCommand] = []

            def send(c: OrderCommand, sent: list[OrderCommand] = sent) -> bool:
                sent.append(c)
                return True

            engine = StrategyEngine(cfg, send, lambda c=clock_now: c[0])
            n = len(packets)
            t_read = stage("socket read (recv_into, 1 packet)").times
            t_frame = stage("SoupBinTCP framing (iter_events)").times
            t_dec = stage("ITCH decode").times
            t_norm = stage("normalize").times
            t_rw = stage("ring write (encode + try_write)").times
            t_rr = stage("ring read (read + decode)").times
            t_book = stage("book update (L3, via engine)").times
            t_strat = stage("strategy decision (on_book ...)").times
            clock = time.perf_counter_ns
            for i in range(n):
                writer.sendall(packets[i])
                t0 = clock()
                k = reader.recv_into(buf)
                t1 = clock()
                t_read.append(t1 - t0)
                data = view[:k]
                t0 = clock()
                evs = [ev for ev in session.iter_events(data)]
                t1 = clock()
                t_frame.append(t1 - t0)
                del data
                ev = evs[0]
                assert type(ev) is soup.SequencedData
                payload, seq = ev.payload, ev.sequence
                t0 = clock()
                decode = _DECODE.get(payload[0])
                m = decode(payload) if decode is not None else None
                t1 = clock()
                t_dec.append(t1 - t0)
                t0 = clock()
                u = (
                    normalize(m, seq, t1)
                    if m is not None
                    else sequence_only(seq, chr(payload[0]), t1)
                )
                t1 = clock()
                t_norm.append(t1 - t0)
                t0 = clock()
                md_ring.try_write(enc.encode(u))
                t1 = clock()
                t_rw.append(t1 - t0)
                t0 = clock()
                raw = md_ring.read()
                u2 = md_dec.decode(raw)  # type: ignore[arg-type]
                t1 = clock()
                t_rr.append(t1 - t0)
                md_ring.commit()
                clock_now[0] = u2.exch_ts  # strategies' clock: the venue's (replay)
                # StrategyEngine.on_update, split at the book (same code, timed in two)
                t0 = clock()
                trade_price = 0
                if u2.kind == MD_EXECUTE:
                    b = engine.builder.by_locate.get(u2.locate)
                    if b is not None:
                        entry = b.orders.get(u2.order_ref)
                        trade_price = u2.price or (entry[1] if entry else 0)
                book = engine.builder.apply_update(u2)
                if u2.kind == MD_TRADE:
                    book = engine.builder.by_locate.get(u2.locate)
                    trade_price = u2.price
                t1 = clock()
                t_book.append(t1 - t0)
                if book is not None:
                    strats = engine.by_symbol.get(book.symbol)
                    if strats:
                        t0 = clock()
                        now = engine.clock()
                        for s in strats:
                            if trade_price:
                                s.on_trade(book.symbol, trade_price, u2.qty, u2, now)
                            s.on_book(book, u2, now)
                        t1 = clock()
                        t_strat.append(t1 - t0)
                # the gateway answers at once (untimed): accepted, then the IOC rest cancelled
                for c in sent:
                    acc = ExecutionReport(
                        EX_ACCEPTED, c.cl_id, 0, c.symbol, c.side, c.qty, c.price, c.qty, 0, "", 0
                    )
                    engine.on_report(acc)
                    can = ExecutionReport(
                        EX_CANCELED, c.cl_id, 0, c.symbol, c.side, c.qty, c.price, 0, 0, "I", 0
                    )
                    engine.on_report(can)
                    commands.append(c)
                sent.clear()
                hlog.flush_deferred(64)
            gc.enable()
            gc.unfreeze()
        # allocations of the market-data stages (one pass each, inputs prepared)
        gc.collect()
        gc.freeze()
        gc.disable()
        session = soup.ClientSession()
        list(session.iter_events(soup.login_accepted("BENCH", 1)))
        pviews = [memoryview(p) for p in packets]
        blocks(
            stage("SoupBinTCP framing (iter_events)"),
            lambda d: list(session.iter_events(d)),
            pviews,
        )
        payloads = msgs
        blocks(
            stage("ITCH decode"), lambda p: _DECODE[p[0]](p) if p[0] in _DECODE else None, payloads
        )
        decoded = [(_DECODE[p[0]](p) if p[0] in _DECODE else None, p) for p in payloads]
        blocks(
            stage("normalize"),
            lambda mp: (
                normalize(mp[0], 1, 2) if mp[0] is not None else sequence_only(1, chr(mp[1][0]), 2)
            ),
            decoded,
        )
        norm = Normalizer()
        updates = [norm.update(p, i + 1, 12345) for i, p in enumerate(payloads)]
        encoded = [enc.encode(u) for u in updates]
        blocks(
            stage("ring write (encode + try_write)"),
            lambda u: md_ring.try_write(enc.encode(u)) and md_ring.read(),
            updates,
        )
        md_ring.commit()
        blocks(stage("ring read (read + decode)"), lambda b: md_dec.decode(b), encoded)
        rb = Stage("x")
        blocks(rb, lambda p: (writer.sendall(p), reader.recv_into(buf))[1], packets[:4000])
        stage("socket read (recv_into, 1 packet)").kept = rb.kept
        stage("socket read (recv_into, 1 packet)").growth = rb.growth
        # book, and book + strategies as one call (engine.on_update), over laps that
        # leave the books as they found them (the sample + deletes of what rests):
        # time and blocks per message from the second lap on
        lap_ups = closed_lap(updates)
        builder = BookBuilder(["AAPL"])
        for u in lap_ups:
            builder.apply_update(u)
        blocks(stage("book update (L3, via engine)"), builder.apply_update, lap_ups)
        whole = stage("book + strategies (engine.on_update, whole)")
        eng_now = [0]
        eng_sent: list[OrderCommand] = []
        eng = StrategyEngine(cfg, lambda c: eng_sent.append(c) or True, lambda: eng_now[0])

        def on_update(u: MarketDataUpdate) -> None:
            eng_now[0] = u.exch_ts
            eng.on_update(u)
            for c in eng_sent:  # answered at once, as above
                eng.on_report(
                    ExecutionReport(
                        EX_ACCEPTED, c.cl_id, 0, c.symbol, c.side, c.qty, c.price, c.qty, 0, "", 0
                    )
                )
                eng.on_report(
                    ExecutionReport(
                        EX_CANCELED, c.cl_id, 0, c.symbol, c.side, c.qty, c.price, 0, 0, "I", 0
                    )
                )
            eng_sent.clear()

        for u in lap_ups:
            on_update(u)
        blocks(whole, on_update, lap_ups)
        for _rep in range(args.repeat):
            timed(whole, on_update, lap_ups)
            hlog.flush_deferred(1 << 20)
        gc.enable()
        gc.unfreeze()

        # --- order stages, on the orders the strategies made --------------------------
        if not commands:
            raise SystemExit("the strategies made no order on this data: nothing to time")
        cyc = [commands[i % len(commands)] for i in range(args.orders)]
        for _rep in range(args.repeat):
            gc.collect()
            gc.freeze()
            gc.disable()
            core = GatewayCore(cfg, time.monotonic_ns, OuchAdapter())
            core.venue_up = core.strategy_up = True
            risk = core.risk
            t_ow = stage("order ring write (encode + try_write)").times
            t_or = stage("order ring read (read + decode)").times
            t_risk = stage("risk check (check_new)").times
            t_ouch = stage("OUCH encode + SoupBinTCP frame").times
            t_send = stage("socket send (SoupLink.send way)").times
            t_send_nb = stage("socket send (non-blocking send)").times
            t_core = stage("gateway on_command (new order, all)").times
            now = 1_000_000_000_000
            seq = 0
            for c in cyc:
                now += 10_000_000  # 100 orders/s: the risk rate limits do not bite
                t0 = clock()
                ord_ring.try_write(enc.encode(c))
                t1 = clock()
                t_ow.append(t1 - t0)
                t0 = clock()
                c2 = cmd_dec.decode(ord_ring.read())  # type: ignore[arg-type]
                t1 = clock()
                t_or.append(t1 - t0)
                ord_ring.commit()
                t0 = clock()
                d = risk.check_new(
                    c2.symbol, c2.side, c2.qty, c2.price, now, c2.price == ouch.MARKET_PRICE
                )
                t1 = clock()
                t_risk.append(t1 - t0)
                assert d.ok, d
                t0 = clock()
                payload = ouch.encode_inbound(
                    ouch.EnterOrder(
                        core.next_user_ref,
                        c2.side,
                        c2.qty,
                        c2.symbol,
                        c2.price,
                        c2.tif,
                        cl_ord_id=to_b36(c2.cl_id),
                    )
                )
                frame = b"".join(soup.unsequenced(p) for p in (payload,))
                t1 = clock()
                t_ouch.append(t1 - t0)
                t0 = clock()
                out_a.settimeout(1.0)
                out_a.sendall(frame)
                out_a.setblocking(False)
                t1 = clock()
                t_send.append(t1 - t0)
                t0 = clock()
                out_a.send(frame)
                t1 = clock()
                t_send_nb.append(t1 - t0)
                try:
                    while out_b.recv(1 << 16):
                        pass
                except BlockingIOError:
                    pass
                # the whole of the gateway's handling, then the venue's answer (untimed)
                core.on_command(
                    OrderCommand(CMD_HEARTBEAT, 0, "", "", 1, 0, "", 0, "", 0, now), now
                )
                t0 = clock()
                core.on_command(c2, now)
                t1 = clock()
                t_core.append(t1 - t0)
                ref = core.next_user_ref - 1
                core.to_venue.clear()
                core.stamp_sent(now)
                core.after_send()
                seq += 1
                core.on_venue_payload(
                    ouch.encode_outbound(
                        ouch.Accepted(
                            now,
                            ref,
                            c2.side,
                            c2.qty,
                            c2.symbol,
                            c2.price,
                            c2.tif,
                            "Y",
                            seq,
                            "A",
                            "N",
                            "N",
                            "L",
                            to_b36(c2.cl_id),
                        )
                    ),
                    seq,
                    now,
                )
                seq += 1
                core.on_venue_payload(
                    ouch.encode_outbound(ouch.Canceled(now, ref, c2.qty, ouch.CANCEL_IOC)),
                    seq,
                    now,
                )
                core.reports.clear()
                hlog.flush_deferred(64)
            gc.enable()
            gc.unfreeze()
        # allocations of the order stages
        gc.collect()
        gc.freeze()
        gc.disable()
        blocks(
            stage("order ring write (encode + try_write)"),
            lambda c: ord_ring.try_write(enc.encode(c)) and ord_ring.read(),
            cyc,
        )
        ord_ring.commit()
        enc_cmds = [enc.encode(c) for c in cyc]
        blocks(stage("order ring read (read + decode)"), lambda b: cmd_dec.decode(b), enc_cmds)
        blocks(
            stage("risk check (check_new)"),
            lambda c: risk.check_new(c.symbol, c.side, c.qty, c.price, now, False),
            cyc,
        )
        blocks(
            stage("OUCH encode + SoupBinTCP frame"),
            lambda c: b"".join(
                soup.unsequenced(p)
                for p in (
                    ouch.encode_inbound(
                        ouch.EnterOrder(
                            7, c.side, c.qty, c.symbol, c.price, c.tif, cl_ord_id=to_b36(c.cl_id)
                        )
                    ),
                )
            ),
            cyc,
        )
        gc.enable()
        gc.unfreeze()

        # --- log lines of the hot thread ------------------------------------------------
        lg = logging.getLogger("hftd.strategy")
        t_log = stage("log.info per order (deferred, hot path)").times
        t_flush = stage("writing that line (idle: flush_deferred)").times
        gc.collect()
        gc.freeze()
        gc.disable()
        for _rep in range(args.repeat):
            for c in cyc[:2000]:
                t0 = clock()
                lg.info(
                    "signal %s %s %s %d @ %.4f (%s) -> order %s",
                    "mr1",
                    c.symbol,
                    "BUY" if c.side == "B" else "SELL",
                    c.qty,
                    c.price / 10_000,
                    "z=-2.10",
                    c.cl_id,
                )
                t1 = clock()
                t_log.append(t1 - t0)
                t0 = clock()
                hlog.flush_deferred(1)
                t1 = clock()
                t_flush.append(t1 - t0)
        gc.enable()
        gc.unfreeze()
        deferred.flush()
    finally:
        hlog.unregister_hot_thread()
        for r in (md_ring, ord_ring):
            r.close()
            Ring.unlink(r.name, missing_ok=True)
        for s in (reader, writer, out_a, out_b):
            s.close()
    st["_orders"] = Stage(f"{len(commands)} orders from {args.repeat} x {len(msgs)} messages")
    return list(st.values())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=5, help="passes over the sample")
    ap.add_argument("--orders", type=int, default=10_000, help="order samples per pass")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"missing {args.data} (the NASDAQ ITCH sample, tests/data/itch/)")
    stages = run(args)
    note = stages.pop()
    print(
        f"# bench_stages: {platform.python_version()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {note.name}"
    )
    head = ("stage", "p50 µs", "p99 µs", "blocks/msg kept", "growth/msg", "samples")
    print(f"| {head[0]:<44} | " + " | ".join(f"{h:>7}" for h in head[1:]) + " |")
    print(
        f"|{'-' * 46}|" + "|".join("-" * (len(h) + 2 if len(h) > 7 else 9) for h in head[1:]) + "|"
    )
    for s in stages:
        name, p50, p99, kept, growth, n = s.row()
        k = "-" if kept is None else f"{kept:.2f}"
        g = "-" if growth is None else f"{growth:.3f}"
        print(f"| {name:<44} | {p50:7.2f} | {p99:7.2f} | {k:>15} | {g:>10} | {n:7d} |")


if __name__ == "__main__":
    main()
