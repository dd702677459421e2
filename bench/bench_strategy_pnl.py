#!/usr/bin/env python3
"""What each strategy instance earns on the simulator's synthetic flow, per hour.

    python bench/bench_strategy_pnl.py [--seconds 300] [--samples 10]
                                       [--strategies default|market_maker|all] [--mm KEY=JSON ...]

`hftd up --new-day` with config/default.toml's venue and flow (fresh ports and
dirs, tests/support.py `make_config`), the strategy instances chosen by
`--strategies`: `default` (the config's mean reversion and momentum),
`market_maker` (one market maker on AAPL and MSFT, its default parameters), or
`all`. Every instance's own figures are read from the strategy's Status
(hftd.msg.status StrategyInstanceStatus: its own fills, P&L marked at its
books' mids) `--samples` times over `--seconds`, and printed per instance:
P&L at each sample, P&L per hour (the last sample over the elapsed time),
fills, orders, rejects, the largest drawdown seen at the samples, and the
position it ends with. A synthetic flow is not a market: a P&L here says how
the strategy behaves against this simulator's flow (docs/venue.md), nothing
about a real one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MARKET_MAKER = {
    "name": "mm1",
    "kind": "market_maker",
    "symbols": ["AAPL", "MSFT"],
    "order_qty": 100,
    "max_position": 500,
}

CHILD = r"""
import json, sys, time
from pathlib import Path
from tests.support import RING_PREFIXES, make_config, start_daemon, status, wait_for
tmp, over = Path(sys.argv[1]), json.loads(sys.argv[2])
seconds, samples = float(sys.argv[3]), int(sys.argv[4])
cfg = make_config(tmp, over)
rows = []
try:
    with start_daemon("up", cfg, args=("--new-day",), ready_timeout=60) as up:
        wait_for(lambda: status(up, "strategy").get("synced", False), 60, "books in sync")
        t0 = time.monotonic()
        for i in range(1, samples + 1):
            time.sleep(seconds / samples)
            rows.append([time.monotonic() - t0, status(up, "strategy")["strategies"]])
finally:
    for prefix in RING_PREFIXES:
        for path in Path("/dev/shm").glob(f"{prefix}-*"):
            path.unlink(missing_ok=True)
print(json.dumps(rows))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--strategies", choices=("default", "market_maker", "all"), default="all")
    ap.add_argument(
        "--mm", action="append", default=[], metavar="KEY=JSON", help="a market maker parameter"
    )
    args = ap.parse_args()
    mm = dict(MARKET_MAKER)
    for kv in args.mm:
        k, v = kv.split("=", 1)
        mm[k] = json.loads(v)
    over: dict[str, object] = {"system": {"log_level": "warning"}}
    if args.strategies != "default":
        import tomllib

        base = tomllib.loads((ROOT / "config" / "default.toml").read_text())
        mine = [] if args.strategies == "market_maker" else base["strategy"]["instances"]
        over["strategy"] = {"instances": [*mine, mm]}
    with tempfile.TemporaryDirectory(prefix="hftd-pnl-") as tmp:
        out = subprocess.run(
            [
                sys.executable,
                "-P",
                "-c",
                CHILD,
                tmp,
                json.dumps(over),
                str(args.seconds),
                str(args.samples),
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),  # this checkout's tests.support
            capture_output=True,
            text=True,
            timeout=args.seconds + 180,
            check=False,
        )
    if out.returncode != 0:
        sys.exit(f"run failed:\n{out.stderr[-3000:]}")
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"synthetic flow, config/default.toml's venue; {args.seconds:.0f} s, "
        f"{args.samples} samples; instances: {args.strategies}"
        + (f"; market maker {mm}" if args.strategies != "default" else "")
    )
    names = sorted(rows[-1][1])
    for name in names:
        pnls = [r[1][name]["pnl"] / 10_000 for r in rows]
        peak, dd = 0.0, 0.0
        for p in pnls:
            peak = max(peak, p)
            dd = max(dd, peak - p)
        last = rows[-1][1][name]
        hours = rows[-1][0] / 3600
        print(
            f"  {name:<6} P&L ${pnls[-1]:>10,.2f}  per hour ${pnls[-1] / hours:>10,.2f}  "
            f"fills {last['fills']:>5}  orders {last['sent']:>6}  rejects {last['rejects']:>4}  "
            f"max drawdown ${dd:,.2f}  ends {last['net'] or 'flat'}"
        )
        print("         P&L at each sample: " + " ".join(f"{p:,.0f}" for p in pnls))


if __name__ == "__main__":
    main()
