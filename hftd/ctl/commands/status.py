"""`hftctl status [--json]`: every daemon's state, pid, uptime, restarts, last error,
and what the operator must know about trading: the gateway's mode, breaker,
venue session, risk's market view, positions and P&L, and what to do next
(`trading_summary`, from the gateway's Status detail decoded as its Struct).

Asks the embedded supervisor (`supervisor.sock`) when `hftd up` runs;
otherwise (systemd) asks each daemon's own control socket and systemd for the
restart count; there each daemon's Status detail is decoded as its Struct
(hftd.msg.status), and one that is not (a field missing or mistyped) is the
row's last error, naming the field. Exit status: 0 all ready, 1 some daemon
not ready, 3 nothing running (a halted or paused gateway is ready: its mode
is in the trading line, not in the exit status).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec

from hftd.config import COMPONENTS, ConfigError
from hftd.ctl.context import CtlContext
from hftd.ipc.control import request_sync
from hftd.msg.control import DaemonStatus, Status, StatusInfo
from hftd.msg.hot import PRICE_SCALE
from hftd.msg.status import (
    DETAILS,
    GatewayDetail,
    RiskBar,
    StatusDetailError,
    StrategyDetail,
    StrategyRow,
    decode_detail,
    format_dollars,
    format_fraction,
    next_step,
    risk_bars,
    strategy_rows,
)

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


class TradingSummary(msgspec.Struct, kw_only=True, frozen=True):
    """What the gateway says about trading, for the operator."""

    mode: str  # active, paused, reducing, halted
    breaker: str  # "ok", or "tripped: <reason>"
    venue: str  # "up" or "down"
    strategy: str  # "up" or "down" (its heartbeats)
    market_view: str  # "in sync", or why not (risk's own books, hftd/risk/market.py)
    working: int  # orders at the venue
    positions: dict[str, int]  # symbol -> signed shares (non-zero ones)
    realized: float  # dollars
    unrealized: float
    total: float
    next: str  # what the operator does now ("" while trading normally)
    # every risk limit's use: used/limit as the console and the page show it
    risk: list[RiskBar] = msgspec.field(default_factory=list)


def trading_summary(d: GatewayDetail) -> TradingSummary:
    """The gateway's detail as the operator reads it, with the next step."""
    b = d.breaker
    book = d.positions
    held = {p.symbol: p.qty for p in book.positions if p.qty}
    m = d.market
    return TradingSummary(
        mode=d.mode,
        breaker=f"tripped: {b.reason}" if b.tripped else "ok",
        venue="up" if d.venue_up else "down",
        strategy="up" if d.strategy_up else "down",
        market_view="in sync" if m.synced else f"out of sync ({m.last_loss or 'starting'})",
        working=len(d.working),
        positions=held,
        realized=book.realized / PRICE_SCALE,
        unrealized=book.unrealized / PRICE_SCALE,
        total=book.total / PRICE_SCALE,
        next=next_step(d),
        risk=risk_bars(d),
    )


def trading(ctx: CtlContext, names: Collection[str]) -> tuple[TradingSummary | None, str]:
    """The gateway's trading summary, or None and why there is none (`names`: the
    system's components, as the status rows name them)."""
    if "gateway" not in names:
        return None, ""  # nothing trades: no trading lines
    raw = _ask(ctx.socket("gateway"))
    if raw is None:
        return None, "the gateway does not answer"
    try:
        d = decode_detail(GatewayDetail, msgspec.convert(raw, StatusInfo).detail, "gateway")
    except (StatusDetailError, msgspec.ValidationError) as exc:
        return None, str(exc)
    if d is None:
        return None, "the gateway is starting"
    return trading_summary(d), ""


def strategies(ctx: CtlContext, names: Collection[str]) -> list[StrategyRow]:
    """Every strategy instance's figures; none when the strategy does not answer."""
    if "strategy" not in names:
        return []
    raw = _ask(ctx.socket("strategy"))
    try:
        d = decode_detail(StrategyDetail, msgspec.convert(raw, StatusInfo).detail, "strategy")
    except (StatusDetailError, msgspec.ValidationError):
        return []  # its row in the daemon table says what is wrong
    return strategy_rows(d) if d is not None else []


def collect(ctx: CtlContext) -> tuple[str, list[DaemonStatus]]:
    """(source, statuses); source is "supervisor", "daemons" or "" if nothing runs.

    The supervisor knows its daemons: no config needed. Without it (systemd) the
    config says which daemons should run; if it cannot be read, ConfigError,
    unless no daemon answers at all (then nothing runs, whatever the config)."""
    sup = _ask(ctx.socket("supervisor"))
    if sup is not None:
        return "supervisor", msgspec.convert(sup, list[DaemonStatus])
    try:
        names = ctx.cfg.start_order()
    except ConfigError:
        if all(_ask(ctx.socket(n)) is None for n in COMPONENTS):
            return "", []
        raise
    rows: list[DaemonStatus] = []
    any_up = False
    for name in names:
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
    components = {r.name for r in rows}
    summary, why = trading(ctx, components) if source else (None, "nothing runs")
    lines = strategies(ctx, components) if source else []
    if args.json:
        print(
            json.dumps(
                {
                    "running": bool(source),
                    "source": source,
                    "run_dir": str(ctx.run_dir),
                    "daemons": msgspec.to_builtins(rows),
                    "trading": msgspec.to_builtins(summary) if summary else None,
                    "trading_unknown": why,  # why "trading" is null ("" no gateway)
                    "strategies": msgspec.to_builtins(lines),
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
        _print_trading(summary, why)
        for ln in lines:
            pos = ", ".join(f"{s} {q:+d}" for s, q in sorted(ln.positions.items())) or "flat"
            print(
                f"STRATEGY   {ln.name}: {ln.signals} signals, {ln.orders} orders, {ln.fills} "
                f"fills, {ln.rejects} rejects, {ln.held} held; {pos}; P&L {_dollars(ln.pnl)}"
            )
    if not source:
        return NOT_RUNNING
    return 0 if all(r.state == "ready" for r in rows) else 1


def _print_trading(t: TradingSummary | None, why: str) -> None:
    if t is None:
        if why:
            print(f"\nTRADING    unknown: {why}")
        return
    pos = ", ".join(f"{s} {q:+d}" for s, q in sorted(t.positions.items())) or "flat"
    print(
        f"\nTRADING    mode {t.mode}, breaker {t.breaker}, venue {t.venue}, "
        f"strategy {t.strategy}, market view {t.market_view}"
    )
    print(
        f"POSITIONS  {pos}; {t.working} working; P&L {_dollars(t.total)} "
        f"(realized {_dollars(t.realized)}, unrealized {_dollars(t.unrealized)})"
    )
    for line in risk_lines(t.risk):
        print(line)
    if t.next:
        print(f"NEXT       {t.next}")


def _dollars(v: float) -> str:
    return format_dollars(round(v * PRICE_SCALE))


def risk_lines(bars: list[RiskBar]) -> list[str]:
    """A line per limit: label, used/limit, % in use (figures right-aligned)."""
    if not bars:
        return []
    label_w = max(len(b.label) for b in bars)
    fig_w = max(len(b.figure) for b in bars)
    head = ["RISK      "] + [" " * 10] * (len(bars) - 1)
    return [
        f"{h} {b.label:<{label_w}}  {b.figure:>{fig_w}}  {format_fraction(b.fraction):>6}".rstrip()
        for h, b in zip(head, bars, strict=True)
    ]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="show every daemon's state")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)
