#!/usr/bin/env python3
"""The backtest's whole loop: how fast, and whether memory stays flat (issue 15).

    python bench/bench_backtest.py [--data FILE] [--config config/backtest.toml]
                                   [--runs 3] [--memory-messages 10000000]
                                   [--wanted-every 10] [--skip-speed] [--skip-memory]
                                   [--keep-results] [--stages]

Speed: the data's updates are read into memory first (the source's own rate
is printed apart), then played through `hftd.backtest.runner.Backtest` (queue
model, risk's market view, the gateway core, the strategy engine and its
books) with: no strategy instances (the loop's floor), each configured instance
alone, and all of them. Market-data events per second, median of `--runs`.
`--stages`: each stage alone over the same updates (the queue model, risk's
market view, the strategy engine's book, each strategy's decisions with its
orders refused), CPU microseconds per update: the floors under the loop.
Default data: the LOBSTER AMZN day (../shared/data/lobster), else the NASDAQ
ITCH sample in tests/data.

Memory: builds in a temp dir an ITCH 5.0 BinaryFILE of `--memory-messages`
messages: the NASDAQ AAPL sample repeated as one AAPL day (each repetition's
order references and timestamps shifted past the previous one's, so the
stream stays a valid book; timestamps 1 ms apart; each repetition ends with
deletes of the orders the sample leaves open, so the book does not grow with
the file) for one message in `--wanted-every`, and the
sample's messages under 49 other locate codes for the rest (skipped unread by
the symbol filter). The full backtest (all configured strategies, on AAPL)
streams it from disk, its results streamed as `hftd backtest` does (orders,
fills and the equity curve written to CSV files as they come, running figures
kept: hftd.backtest.results); RSS and Python's allocated blocks are sampled
every 100,000 events. It prints the first and last samples and the growth per
million events over the second half (flat: ~0), with the rows written.
`--keep-results` keeps every row in memory instead (the growth they cost).
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import resource
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from hftd.backtest.detect import open_source  # noqa: E402
from hftd.backtest.itch_file import ItchFile  # noqa: E402
from hftd.backtest.queue import QueueVenue  # noqa: E402
from hftd.backtest.report import summarize, write_results  # noqa: E402
from hftd.backtest.results import Results  # noqa: E402
from hftd.backtest.runner import Backtest  # noqa: E402
from hftd.book.l3 import BookBuilder  # noqa: E402
from hftd.config import HftdConfig, parse_config  # noqa: E402
from hftd.msg.hot import MarketDataUpdate  # noqa: E402
from hftd.risk.market import MarketView  # noqa: E402
from hftd.strategy.engine import StrategyEngine  # noqa: E402
from hftd.wire import itch  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
LOBSTER = ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
REF_TYPES = frozenset(b"AFECXDUP")  # order reference at bytes 11..19 (U: new one at 19..27)
DIRECTORY_REST = ("Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N")


def with_instances(cfg: HftdConfig, names: list[str] | None) -> HftdConfig:
    insts = [i for i in cfg.strategy.instances if names is None or i.name in names]
    return msgspec.structs.replace(
        cfg, strategy=msgspec.structs.replace(cfg.strategy, instances=insts)
    )


def on_symbol(config: Path, symbol: str) -> HftdConfig:
    """The config with its (one) symbol and every instance moved to `symbol`."""
    data = tomllib.loads(config.read_text())
    data["symbols"] = [{**data["symbols"][0], "symbol": symbol}]
    for inst in data["strategy"]["instances"]:
        inst["symbols"] = [symbol]
    return parse_config(data, str(config))


def rate(cfg: HftdConfig, ups: list[MarketDataUpdate], runs: int) -> tuple[float, int]:
    rates, fills = [], 0
    for _ in range(runs):
        bt = Backtest(cfg)
        gc.collect()
        t = time.perf_counter()
        bt.run(ups)
        rates.append(len(ups) / (time.perf_counter() - t))
        fills = bt.results.fill_count
    return statistics.median(rates), fills


def speed(args: argparse.Namespace) -> None:
    data = Path(args.data) if args.data else (LOBSTER if LOBSTER.exists() else SAMPLE)
    src = open_source(data)
    t = time.perf_counter()
    ups = list(src)
    src_rate = len(ups) / (time.perf_counter() - t)
    symbol = next(u.symbol for u in ups if u.symbol)
    cfg = on_symbol(Path(args.config), symbol)
    print(f"data: {data.name} ({src.name}), {len(ups):,} updates, symbol {symbol}")
    print(f"  source alone (parse + normalize): {src_rate:>12,.0f} updates/s")
    rows = [("loop, no strategies", with_instances(cfg, []))]
    rows += [
        (f"loop + {i.name} ({i.kind})", with_instances(cfg, [i.name]))
        for i in cfg.strategy.instances
    ]
    rows.append(("loop + all strategies", cfg))
    for label, c in rows:
        r, fills = rate(c, ups, args.runs)
        print(f"  {label:<36} {r:>12,.0f} events/s   ({fills:,} fills, median of {args.runs})")
    if args.stages:
        stages(cfg, ups, args.runs)


def stages(cfg: HftdConfig, ups: list[MarketDataUpdate], runs: int) -> None:
    """Each stage of the loop alone over the same updates, CPU time per update (the
    least of `runs`): the floor each one puts under the whole loop."""
    symbols = [s.symbol for s in cfg.symbols]

    def cost(work: Callable[[], None]) -> float:
        best = math.inf
        for _ in range(runs):
            gc.collect()
            t = time.process_time()
            work()
            best = min(best, time.process_time() - t)
        return best / len(ups) * 1e6

    def queue() -> None:
        on_market = QueueVenue(symbols).on_market
        for u in ups:
            on_market(u)

    def market() -> None:
        on_update = MarketView(symbols, lambda: 0.0).on_update
        for u in ups:
            on_update(u)

    def engine(c: HftdConfig) -> Callable[[], None]:
        def work() -> None:  # orders refused: the decisions alone, no order path
            on_update = StrategyEngine(c, lambda _cmd: False, lambda: 0).on_update
            for u in ups:
                on_update(u)

        return work

    print(f"  per update alone (CPU time, least of {runs}):")
    print(f"    queue model (QueueVenue.on_market)          {cost(queue):6.2f} us")
    print(f"    risk's market view (MarketView.on_update)   {cost(market):6.2f} us")
    bare = cost(engine(with_instances(cfg, [])))
    print(f"    strategy engine, its book, no strategy      {bare:6.2f} us")
    for i in cfg.strategy.instances:
        d = cost(engine(with_instances(cfg, [i.name]))) - bare
        print(f"    + {i.name + ' (' + i.kind + ')':<26} decision {d:6.2f} us (orders refused)")
    d = cost(engine(cfg)) - bare
    print(f"    + all strategies, decisions                 {d:6.2f} us (orders refused)")


def shifted(msgs: list[bytes], k: int, start: int) -> list[bytes]:
    """The sample's AAPL messages for repetition `k`: references moved past every
    earlier repetition's, and timestamps re-spaced 1 ms apart from `start` (a real
    day's span repeated would run past ITCH's 48-bit timestamp)."""
    out = []
    off = k << 40
    base = start + k * len(msgs) * 1_000_000
    for i, m in enumerate(msgs):
        b = bytearray(m)
        b[5:11] = (base + i * 1_000_000).to_bytes(6, "big")
        if b[0] in REF_TYPES and len(b) >= 19:
            ref = int.from_bytes(b[11:19], "big")
            if ref:
                b[11:19] = (ref + off).to_bytes(8, "big")
            if b[0] == ord("U"):
                b[19:27] = (int.from_bytes(b[19:27], "big") + off).to_bytes(8, "big")
        out.append(bytes(b))
    return out


def left_open(aapl: list[bytes]) -> list[bytes]:
    """Deletes of the orders the sample's AAPL messages leave in the book: each
    repetition ends with them, so the book is empty again where the next begins
    (else every repetition would leave its resting orders behind, and the books
    would grow with the file for a reason of the data's)."""
    book = BookBuilder(["AAPL"])
    book.apply(itch.StockDirectory(13, 0, 0, "AAPL", *DIRECTORY_REST))
    for m in aapl:
        book.apply(itch.decode(m))
    return [itch.encode(itch.OrderDelete(13, 0, 0, r)) for r in book.books["AAPL"].orders]


def build(path: Path, messages: int, every: int) -> int:
    sample = [bytes(m) for m in itch.iter_binary_file(SAMPLE.read_bytes())]
    aapl = [m for m in sample if m[:1] not in b"RS"]
    aapl += left_open(aapl)
    first = int.from_bytes(aapl[0][5:11], "big")
    codes = [c for c in range(1, 51) if c != 13]
    head = [
        itch.encode(
            itch.StockDirectory(c, 0, 0, "AAPL" if c == 13 else f"SYM{c:04d}", *DIRECTORY_REST)
        )
        for c in [13, *codes]
    ]
    # Times are kept increasing across repetitions only for AAPL; other locates'
    # messages are never read (skipped by locate), so theirs do not matter.
    written = len(head)
    k = 0
    with path.open("wb") as f:
        f.write(itch.frame_binary_file(head))
        while written < messages:
            mine = shifted(aapl, k, first)
            k += 1
            block = []
            o = 0
            for m in mine:
                block.append(m)
                for _ in range(every - 1):
                    other = sample[o % len(sample)]
                    o += 1
                    loc = codes[o % len(codes)]
                    block.append(other[:1] + loc.to_bytes(2, "big") + other[3:])
            block = block[: messages - written]
            f.write(itch.frame_binary_file(block))
            written += len(block)
    return written


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def memory(args: argparse.Namespace) -> None:
    cfg = on_symbol(Path(args.config), "AAPL")
    # trading all along: the repeated sample's losses must not stop it (loss stop)
    cfg = msgspec.structs.replace(
        cfg, risk=msgspec.structs.replace(cfg.risk, daily_loss_limit=1 << 62)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "day.bin"
        t = time.perf_counter()
        n = build(path, args.memory_messages, args.wanted_every)
        print(
            f"built {n:,} messages ({path.stat().st_size / 2**20:,.0f} MiB), 1 in "
            f"{args.wanted_every} AAPL, in {time.perf_counter() - t:.0f} s"
        )
        samples: list[tuple[int, float, int, int, int]] = []

        def progress(events: int, _t: int) -> None:
            if events % 100_000 < 65_536:  # called every 65,536 events
                r = bt.results
                kept = len(r.orders) + len(r.fills) + len(r.samples) + len(r.chart)
                rows = r.order_count + r.fill_count
                samples.append((events, rss_mib(), sys.getallocatedblocks(), kept, rows))

        logging.getLogger("hftd").setLevel(logging.ERROR)  # risk's reject lines
        out = Path(tmp) / "out"
        names = [i.name for i in cfg.strategy.instances]
        keep = args.keep_results
        bt = Backtest(cfg, progress, results=Results(names, None if keep else out, keep=keep))
        t = time.perf_counter()
        bt.run(ItchFile(path, ["AAPL"]))
        dt = time.perf_counter() - t
        write_results(bt, summarize(bt, [path.name]), out)
        sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    r = bt.results
    print(
        f"full loop, all strategies: {bt.events:,} AAPL events of {n:,} messages in {dt:.0f} s "
        f"({bt.events / dt:,.0f} events/s, {n / dt:,.0f} file messages/s), "
        f"{r.fill_count:,} fills, {r.order_count:,} orders, {r.sample_count:,} equity points "
        f"({'kept in memory' if keep else 'streamed'}: orders.csv "
        f"{sizes['orders.csv'] / 2**20:.1f} MiB, fills.csv {sizes['fills.csv'] / 2**20:.1f} MiB)"
    )
    if len(samples) < 4:
        print("too few samples for a slope")
        return
    for label, (events, rss, blocks, kept, _) in (("first", samples[0]), ("last", samples[-1])):
        print(
            f"  {label} sample: {events:>10,} events  RSS {rss:.1f} MiB  blocks {blocks:,}  "
            f"rows held {kept:,}"
        )
    half = samples[len(samples) // 2 :]
    de = (half[-1][0] - half[0][0]) / 1e6
    dk = half[-1][3] - half[0][3]
    db = half[-1][2] - half[0][2]
    dr = half[-1][4] - half[0][4]
    print(
        f"  second half: RSS {(half[-1][1] - half[0][1]) / de:+.2f} MiB and {db / de:+,.0f} "
        f"blocks per million events, while {dr / de:,.0f} orders and fills a million events "
        f"were made; rows held (orders, fills, equity and chart points) {dk / de:+,.0f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data", help="a recorded file (default: the LOBSTER AMZN day, else the ITCH sample)"
    )
    p.add_argument("--config", default=str(ROOT / "config" / "backtest.toml"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--memory-messages", type=int, default=10_000_000)
    p.add_argument("--wanted-every", type=int, default=10)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--stages", action="store_true", help="speed: each stage alone too (the floors)")
    p.add_argument(
        "--keep-results", action="store_true", help="memory: keep every row (not streamed)"
    )
    args = p.parse_args()
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().split()[0]}")
    if not args.skip_speed:
        speed(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
