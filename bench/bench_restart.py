#!/usr/bin/env python3
"""Exchange restart time on a long day: a journal of --records records, the real daemon
timed from spawn to READY=1.

    python bench/bench_restart.py [--records 1000000] [--tail 19999] [--runs 5] [--full]
                                  [--cwd CHECKOUT] [--dir DIR]

1. Builds a trading day in a private journal dir, in this process, through the
   venue's own code (`open_venue`): synthetic flow on the 4 symbols and two users
   trading against it (IOC through the touch, day orders at the touch, cancels),
   timestamps from 09:30 on at the pace of the raised flow that halted trading
   (~380 records/s). It checkpoints every `checkpoint_records` (10,000) records, as
   the daemon does, and ends with `--tail` records after the last checkpoint: the
   worst case, a crash just before the next one.
2. Starts `python -m hftd.cli exchange --config ...` (cwd = this checkout, or
   `--cwd`: another checkout, e.g. a worktree of the commit before, which replays
   the whole journal), times spawn -> READY=1 (what the supervisor and the
   clients wait for), reads the daemon's own replay figure from its log, SIGKILLs
   it; `--runs` times. The daemon's own checkpoints are switched off for these runs
   (checkpoint_records and _interval_s out of reach) so every run restarts from the
   same checkpoint. `--full`: one more run with the checkpoint moved away (a full
   replay, as before checkpoints).
3. Prints the figures, the machine and the load average.

The interpreter and imports are part of every restart (`python -c "import
hftd.exchange.daemon"` is timed too, as the floor).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hftd.config import ExchangeConfig, load_config  # noqa: E402
from hftd.exchange.checkpoint import CHECKPOINT, state_dir  # noqa: E402
from hftd.exchange.journal import JournaledVenue, open_venue  # noqa: E402
from hftd.runtime.days import exchange_journal_path  # noqa: E402
from hftd.wire import ouch  # noqa: E402
from tests.support import dump_toml, free_port  # noqa: E402

CHECKPOINT_RECORDS = ExchangeConfig().checkpoint_records  # the default
PACE_NS = 2_640_000  # 1 / 380 records per second


def write_config(tmp: Path, code: Path, checkpoints: bool) -> Path:
    """`code`'s default.toml with a private run dir, journal dir and ports; the daemon's
    own checkpoints out of reach (`checkpoints`: the code knows the settings)."""
    data = tomllib.loads((code / "config" / "default.toml").read_text())
    data["system"].update(
        run_dir=str(tmp / "run"), journal_dir=str(tmp / "journal"), log_level="info"
    )
    ex = data["exchange"]
    ex.update(order_port=free_port(), md_port=free_port())
    for key in ("checkpoint_records", "checkpoint_interval_s"):
        ex.pop(key, None)
    if checkpoints:
        ex.update(checkpoint_records=10**12, checkpoint_interval_s=10.0**9)
    path = tmp / "bench.toml"
    path.write_text(dump_toml(data))
    return path


class DayClock:
    """09:30 and on, one tick per input at the raised flow's pace."""

    def __init__(self) -> None:
        self.now = 34_200_000_000_000

    def __call__(self) -> int:
        self.now += PACE_NS
        return self.now


def build_day(cfg_path: Path, records: int, tail: int, seed: int = 1) -> dict[str, Any]:
    """A day's journal of `records` records, checkpointed every CHECKPOINT_RECORDS
    and `tail` records after the last checkpoint."""
    cfg = load_config(cfg_path)
    t0 = time.perf_counter()
    jv, _ = open_venue(cfg, DayClock())
    jv.start_of_day()
    ck = jv.checkpointer
    assert ck is not None and jv.journal is not None
    rng = random.Random(seed)
    users = [u.username for u in cfg.exchange.users]
    trader = {u: Trader(jv, u, rng) for u in users}
    symbols = len(cfg.symbols)
    last_ck = records - tail
    while ck.records < records:
        if rng.random() < 0.8:
            i = rng.randrange(symbols)
            jv.next_flow_delay(i)
            jv.flow_step(i)
        else:
            trader[rng.choice(users)].step()
        if ck.pending >= CHECKPOINT_RECORDS and ck.records <= last_ck:
            ck.checkpoint()
        if ck.records == last_ck:
            ck.checkpoint()
    figures = {
        "records": ck.records,
        "checkpoint_covers": ck.covered,
        "after_checkpoint": ck.pending,
        "checkpoints": ck.written,
        "checkpoint_bytes": ck.bytes,
        "checkpoint_pause_ms": round(ck.pause_s * 1000, 2),
        "md_messages": len(jv.venue.md),
        "journal_bytes": jv.journal.size,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    jv.close()
    path = exchange_journal_path(cfg)
    figures["stream_bytes"] = sum(
        p.stat().st_size for p in state_dir(path).rglob("*") if p.is_file()
    )
    return figures


class Trader:
    """One user against the flow, its state bounded (like a strategy's)."""

    def __init__(self, jv: JournaledVenue, user: str, rng: random.Random) -> None:
        self.jv, self.user, self.rng = jv, user, rng
        self.ref = 0
        self.resting: list[int] = []

    def step(self) -> None:
        jv, rng = self.jv, self.rng
        if self.resting and (len(self.resting) > 20 or rng.random() < 0.3):
            jv.handle(self.user, ouch.encode_inbound(ouch.CancelOrder(self.resting.pop(0), 0)))
            return
        symbol = rng.choice(jv.cfg.symbols).symbol
        book = jv.venue.engine.books[symbol]
        side = rng.choice("BS")
        ioc = rng.random() < 0.5
        touch = (
            (book.best_ask() if side == "B" else book.best_bid())
            if ioc
            else (book.best_bid() if side == "B" else book.best_ask())
        )
        if touch is None:
            jv.handle(self.user, ouch.encode_inbound(ouch.CancelOrder(10**9, 0)))  # rejected
            return
        self.ref += 1
        order = ouch.EnterOrder(
            self.ref,
            side,
            100 * rng.randint(1, 3),
            symbol,
            touch,
            ouch.TIF_IOC if ioc else ouch.TIF_DAY,
            cl_ord_id=f"b{self.ref}",
        )
        jv.handle(self.user, ouch.encode_inbound(order))
        if not ioc:
            self.resting.append(self.ref)


def restart(cfg: Path, code: Path) -> tuple[float, float, str]:
    """(seconds from spawn to READY=1, the daemon's own replay seconds, its log line)."""
    notify = cfg.parent / "notify.sock"
    notify.unlink(missing_ok=True)
    log_path = cfg.parent / "exchange.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as logf:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "hftd.cli", "exchange", "--config", str(cfg)],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=code,
            )
        try:
            sock.settimeout(120)
            while True:
                msg = sock.recv(4096).decode()
                if "READY=1" in msg.split("\n"):
                    ready = time.perf_counter() - t0
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    text = log_path.read_text(errors="replace")
    line = next((x for x in text.splitlines() if "journal " in x and "replayed" in x), "")
    m = re.search(r" in ([0-9.]+) s", line)
    return ready, float(m.group(1)) if m else float("nan"), line.split("hftd.exchange", 1)[-1]


def floor(code: Path) -> float:
    """Spawn -> exit of an interpreter importing the exchange daemon (best of 3)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import hftd.exchange.daemon, hftd.cli"], cwd=code, check=True
        )
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument(
        "--tail",
        type=int,
        default=CHECKPOINT_RECORDS - 1,
        help="records after the last checkpoint (default: the worst case)",
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--full",
        action="store_true",
        help="also one restart with the checkpoint moved away (full replay)",
    )
    ap.add_argument(
        "--cwd",
        type=Path,
        default=None,
        help="run the daemon from this checkout (e.g. the commit before)",
    )
    ap.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="build the day in a new directory under this one, and keep it",
    )
    ap.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="time restarts of a day built before (a directory --dir made)",
    )
    args = ap.parse_args()
    code = (args.cwd or ROOT).resolve()
    keep = args.dir is not None or args.reuse is not None
    tmp = args.reuse or Path(tempfile.mkdtemp(prefix="hftd-bench-restart-", dir=args.dir))
    try:
        print(
            f"machine: {platform.machine()} {os.cpu_count()} CPUs, Linux "
            f"{platform.release()}, Python {platform.python_version()}; load average "
            f"before {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            flush=True,
        )
        if args.reuse is None:
            build_cfg = write_config(tmp, ROOT, checkpoints=True)
            day = build_day(build_cfg, args.records, args.tail)
            print(
                f"day in {tmp}: "
                + ", ".join(
                    f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in day.items()
                ),
                flush=True,
            )
        cfg = write_config(tmp, code, checkpoints=(code / "hftd/exchange/checkpoint.py").exists())
        print(f"daemon from {code} (load average {os.getloadavg()[0]:.2f})", flush=True)
        print(f"floor (interpreter + imports, best of 3): {floor(code):.3f} s", flush=True)
        readies = []
        for i in range(args.runs):
            ready, replay, line = restart(cfg, code)
            readies.append(ready)
            print(
                f"run {i + 1}: READY after {ready:.3f} s (replay {replay:.3f} s){line}", flush=True
            )
        print(
            f"restart to READY: median {statistics.median(readies):.3f} s, "
            f"max {max(readies):.3f} s over {len(readies)} runs",
            flush=True,
        )
        if args.full:
            ck = state_dir(exchange_journal_path(load_config(cfg))) / CHECKPOINT
            if ck.exists():
                ck.unlink()
            ready, replay, line = restart(cfg, code)
            print(
                f"without the checkpoint (full replay): READY after {ready:.3f} s "
                f"(replay {replay:.3f} s){line}",
                flush=True,
            )
        print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
