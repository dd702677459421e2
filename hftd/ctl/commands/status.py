"""`hftctl status [--json]`: every daemon's state, pid, uptime, restarts, last error.

Asks the embedded supervisor (`supervisor.sock`) when `hftd up` runs;
otherwise (systemd) asks each daemon's own control socket and systemd for the
restart count; there each daemon's Status detail is decoded as its Struct
(hftd.msg.status), and one that is not (a field missing or mistyped) is the
row's last error, naming the field. Exit status: 0 all ready, 1 some daemon
not ready, 3 nothing running.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec

from hftd.ctl.context import CtlContext
from hftd.ipc.control import request_sync
from hftd.msg.control import DaemonStatus, Status, StatusInfo
from hftd.msg.status import DETAILS, StatusDetailError, decode_detail

NOT_RUNNING = 3


def _ask(path: Path) -> Any:
    """A Status reply's result, or None if nothing answers there."""
    if not path.exists():
        return None
    try:
        reply = request_sync(path, Status(), timeout=2.0)
    except OSError:
        return None
    return reply.result if reply.ok else None


def _systemd_restarts(name: str) -> int:
    if shutil.which("systemctl") is None:
        return 0
    try:
        out = subprocess.run(
            ["systemctl", "show", "-p", "NRestarts", "--value", f"hft@{name}"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return int(out) if out.isdigit() else 0


def _detail_problem(name: str, info: StatusInfo) -> str:
    """ "" if the daemon's Status detail is what its Struct says (hftd.msg.status:
    what the monitor and the strategy's recovery rely on), else which field is not."""
    kind = DETAILS.get(name)
    if kind is None:
        return ""
    try:
        decode_detail(kind, info.detail, name)
    except StatusDetailError as exc:
        return str(exc)
    return ""


def collect(ctx: CtlContext) -> tuple[str, list[DaemonStatus]]:
    """(source, statuses); source is "supervisor", "daemons" or "" if nothing runs."""
    sup = _ask(ctx.socket("supervisor"))
    if sup is not None:
        return "supervisor", msgspec.convert(sup, list[DaemonStatus])
    rows: list[DaemonStatus] = []
    any_up = False
    for name in ctx.cfg.start_order():
        raw = _ask(ctx.socket(name))
        host = ctx.cfg.host_of(name)  # its unit: hft@hotpath in the composite layout
        process = host if host != name else ""
        if raw is None:
            rows.append(
                DaemonStatus(
                    name,
                    "down",
                    0,
                    0.0,
                    _systemd_restarts(host),
                    "control socket not answering",
                    0.0,
                    process,
                )
            )
            continue
        any_up = True
        info = msgspec.convert(raw, StatusInfo)
        state = "ready" if info.state == "running" else info.state
        rows.append(
            DaemonStatus(
                name,
                state,
                info.pid,
                info.uptime_s,
                _systemd_restarts(host),
                _detail_problem(name, info),
                0.0,
                process,
            )
        )
    return ("daemons" if any_up else ""), rows


def _uptime(s: float) -> str:
    s = int(s)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run(ctx: CtlContext, args: argparse.Namespace) -> int:
    source, rows = collect(ctx)
    if args.json:
        print(
            json.dumps(
                {
                    "running": bool(source),
                    "source": source,
                    "run_dir": str(ctx.run_dir),
                    "daemons": msgspec.to_builtins(rows),
                },
                indent=2,
            )
        )
    elif not source:
        print(f"hftd is not running: no supervisor and no daemon answers in {ctx.run_dir}")
    else:
        print(f"{'DAEMON':<10} {'STATE':<11} {'PID':>7} {'UPTIME':>9} {'RESTARTS':>8}  LAST ERROR")
        for r in rows:
            pid = str(r.pid) if r.pid else "-"
            err = r.last_error or "-"
            if r.last_recovery_ms:
                err += f" (back in {r.last_recovery_ms:.0f} ms)"
            print(
                f"{r.name:<10} {r.state:<11} {pid:>7} {_uptime(r.uptime_s):>9} "
                f"{r.restarts:>8}  {err}"
            )
        hosts: dict[str, list[str]] = {}
        for r in rows:
            if r.process:
                hosts.setdefault(r.process, []).append(r.name)
        for host, names in hosts.items():
            print(f"({', '.join(names)}: one process, {host}; layout composite)")
    if not source:
        return NOT_RUNNING
    return 0 if all(r.state == "ready" for r in rows) else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="show every daemon's state")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)
