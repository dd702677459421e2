"""`hftctl console [--refresh S] [--direct | --monitor]`: the operator's terminal dashboard.

Throughput, latency, positions, risk, recent trades, component health and
alerts, refreshed twice a second; keys P pause, R resume, F flatten, H halt
(the last two ask first), Q quit. Reads the monitor daemon's state when it
runs, else polls the daemons itself (see `hftd.console.source`). Needs a
terminal (80x24 or larger); works over SSH.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hftd.ctl.context import CtlContext


def run(ctx: CtlContext, args: argparse.Namespace) -> int:
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        print(
            "hftctl console: needs a terminal (try `hftctl status` for a one-shot view)",
            file=sys.stderr,
        )
        return 2
    from hftd.console.app import run_console

    mode = "direct" if args.direct else "monitor" if args.monitor else "auto"
    return run_console(ctx.cfg, ctx.run_dir, args.refresh, mode)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("console", help="live dashboard in the terminal (urwid)")
    p.add_argument("--refresh", type=float, default=0.5, help="seconds between refreshes")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--direct", action="store_true", help="poll the daemons directly, even if a monitor runs"
    )
    src.add_argument(
        "--monitor", action="store_true", help="only show the monitor daemon's state (no fallback)"
    )
    p.set_defaults(run=run)
