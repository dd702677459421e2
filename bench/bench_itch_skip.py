#!/usr/bin/env python3
"""Skipping other symbols' messages in an ITCH 5.0 BinaryFILE (issue 15, item 1).

    python bench/bench_itch_skip.py [--messages 10000000] [--locates 50] [--runs 3]
                                    [--gzip] [--dir DIR]

Why: a NASDAQ day is ~400 M messages over ~8,000 symbols, and a backtest
wants a few of them, so the time to pass over everyone else's messages is
most of the time to read a day (issue target: >= 3 M skipped messages/s, in
pure Python). And the file is read in chunks, so memory must not grow with it.

The file is built in a temp dir (`--dir`, default the system's; removed
after): a Stock Directory ('R') message for each of `--locates` locate codes
(locate 13 is AAPL, the others SYM0001...), then the real NASDAQ sample's
messages (its own 'R' left out) over and over, their locate bytes rewritten
round-robin over the locates, up to `--messages` messages in all. Timed, each
`--runs` times (medians printed):

- count_skip(file, ["AAPL"]): the skip loop alone (all messages / s);
- iterating ItchFile(file, ["AAPL"]): the kept updates normalized and
  yielded (kept updates / s, and all messages / s);
- with `--gzip`, both again on a gzip copy (level 1).

Peak RSS (getrusage ru_maxrss) is printed before the first run and after
the last: flat memory means the two stay close whatever the file's size.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hftd.backtest.itch_file import ItchFile, count_skip  # noqa: E402
from hftd.wire import itch  # noqa: E402

SAMPLE = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
WANTED_LOCATE = 13
WANTED = "AAPL"


def directory(locate: int, symbol: str) -> bytes:
    msg = itch.StockDirectory(
        locate, 0, 0, symbol, "Q", "N", 100, "N", "C", "Z", "P", "N", "N", "1", "N", 0, "N"
    )
    return itch.encode(msg)


def build(path: Path, messages: int, locates: int) -> int:
    """Write the file (streamed: one block of the sample at a time); returns its size."""
    sample = [bytes(m) for m in itch.iter_binary_file(SAMPLE.read_bytes())]
    sample = [m for m in sample if m[:1] != b"R"]
    codes = list(range(1, locates + 1))
    if WANTED_LOCATE not in codes:
        codes[-1] = WANTED_LOCATE
    head = [directory(c, WANTED if c == WANTED_LOCATE else f"SYM{c:04d}") for c in codes]
    # One block: the sample's messages with locates round-robin; len(sample) and
    # len(codes) share no factor in general, so successive blocks differ.
    framed: list[bytes] = []
    for i, m in enumerate(sample):
        loc = codes[i % len(codes)]
        framed.append(len(m).to_bytes(2, "big") + m[:1] + loc.to_bytes(2, "big") + m[3:])
    left = messages - len(head)
    with path.open("wb") as f:
        f.write(itch.frame_binary_file(head))
        block = b"".join(framed)
        while left >= len(framed):
            f.write(block)
            left -= len(framed)
        f.write(b"".join(framed[:left]))
    return path.stat().st_size


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn: Callable[[], int], runs: int) -> tuple[float, int]:
    """Median seconds of `runs` calls, and what the last returned."""
    times: list[float] = []
    out = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def iterate(path: Path) -> int:
    n = 0
    for _ in ItchFile(path, [WANTED]):
        n += 1
    return n


def measure(path: Path, label: str, runs: int) -> None:
    seen_kept = count_skip(path, [WANTED])
    seen, kept = seen_kept
    dt, _ = timed(lambda: count_skip(path, [WANTED])[0], runs)
    print(
        f"{label} count_skip(['{WANTED}']): {seen:,} messages, {kept:,} kept, "
        f"median {dt:.2f} s: {seen / dt / 1e6:.2f} M messages/s"
    )
    dt, got = timed(lambda: iterate(path), runs)
    assert got == kept, (got, kept)
    print(
        f"{label} ItchFile(['{WANTED}']) iterated: {got:,} updates, median {dt:.2f} s: "
        f"{got / dt / 1e3:.0f} k updates/s ({seen / dt / 1e6:.2f} M messages/s over the file)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=10_000_000)
    ap.add_argument("--locates", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gzip", action="store_true", help="also time a gzip copy")
    ap.add_argument("--dir", type=Path, default=None, help="where to build the file")
    args = ap.parse_args()
    if args.messages < args.locates or args.locates < 1 or args.runs < 1:
        ap.error("need --messages >= --locates >= 1 and --runs >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="bench_itch_skip.", dir=args.dir))
    try:
        path = tmp / "itch.bin"
        t0 = time.perf_counter()
        size = build(path, args.messages, args.locates)
        print(
            f"file: {args.messages:,} messages over {args.locates} locates, "
            f"{size / 2**20:.0f} MiB, built in {time.perf_counter() - t0:.1f} s"
        )
        rss0 = max_rss_mib()
        print(f"peak RSS before: {rss0:.1f} MiB")
        measure(path, "plain", args.runs)
        if args.gzip:
            gz = tmp / "itch.bin.gz"
            with path.open("rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            print(f"gzip copy: {gz.stat().st_size / 2**20:.0f} MiB")
            measure(gz, "gzip ", args.runs)
        rss1 = max_rss_mib()
        print(
            f"peak RSS after: {rss1:.1f} MiB (+{rss1 - rss0:.1f} MiB for a "
            f"{size / 2**20:.0f} MiB file)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
