"""`hftctl latency [--save FILE]`: the gateway's per-hop latency since it started.

Prints p50 / p99 / p99.9 and the count of each hop (T1 feed receive, T2
strategy decision, T3 risk done, T4 bytes to the socket, T5 the venue's
acknowledgement). `--save FILE` writes the histograms themselves (JSON:
hop -> {HDR index: count}), which a backtest loads as its latency model
(`backtest.latency_histograms`, docs/backtesting.md): the live system's
measured delays, not a guess. Exit status: 0, 1 no gateway detail yet, 3 the
gateway is not running.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from hftd.ctl.context import CtlContext
from hftd.ipc.control import request_sync
from hftd.msg.control import Status, StatusInfo
from hftd.runtime.hdr import SparseHistogram
from hftd.runtime.latency import summarize

NOT_RUNNING = 3


def run(ctx: CtlContext, args: argparse.Namespace) -> int:
    path = ctx.socket("gateway")
    try:
        reply = request_sync(path, Status(), timeout=5.0)
    except OSError as exc:
        print(f"hftd's gateway is not running: no answer on {path} ({exc})", file=sys.stderr)
        return NOT_RUNNING
    detail: Any = msgspec.convert(reply.result, StatusInfo).detail if reply.ok else None
    hdr = detail.get("latency_hdr") if isinstance(detail, dict) else None
    if not isinstance(hdr, dict):
        print("hftctl latency: the gateway has no latency figures yet", file=sys.stderr)
        return 1
    print(f"{'HOP':<7} {'COUNT':>9} {'p50 µs':>9} {'p99 µs':>9} {'p99.9 µs':>9}")
    for hop, counts in sorted(hdr.items()):
        s = summarize(hop, SparseHistogram.from_wire({int(k): v for k, v in counts.items()}))
        print(f"{hop:<7} {s.count:>9,} {s.p50:>9.1f} {s.p99:>9.1f} {s.p999:>9.1f}")
    if args.save:
        out = Path(args.save)
        out.write_text(json.dumps(hdr, indent=1, sort_keys=True) + "\n")
        print(f"histograms written to {out} (backtest.latency_histograms)")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("latency", help="per-hop latency percentiles; --save for a backtest")
    p.add_argument("--save", metavar="FILE", help="write the HDR histograms (JSON)")
    p.set_defaults(run=run)
