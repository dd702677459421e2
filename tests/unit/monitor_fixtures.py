"""Status replies made of the real daemons' detail Structs (hftd.msg.status), for monitor tests."""

from __future__ import annotations

from typing import Any

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from hftd.config import HftdConfig, parse_config
from hftd.monitor.model import Poll, Reading, typed_detail
from hftd.msg.control import DaemonStatus, StatusInfo
from hftd.msg.status import (
    DOLLARS,
    MESSAGES_PER_S,
    ORDERS,
    ORDERS_PER_S,
    SHARES,
    BookSnapshot,
    BreakerStatus,
    FeedDetail,
    FillStatus,
    GatewayDetail,
    MarketStatus,
    PositionSnapshot,
    ReconcileStatus,
    RingStats,
    RiskFigure,
    StrategyDetail,
    StrategyInstanceStatus,
    WorkingOrderStatus,
)
from hftd.runtime.hdr import SparseHistogram
from hftd.runtime.latency import HOPS

SYMBOLS = [
    {"symbol": "AAPL", "reference_price": "189.50"},
    {"symbol": "MSFT", "reference_price": "415.20"},
]


def config(**monitor: Any) -> HftdConfig:
    return parse_config(
        {
            "symbols": SYMBOLS,
            "daemons": {n: {} for n in ("exchange", "feed", "strategy", "gateway", "monitor")},
            "monitor": monitor,
        }
    )


# What the gateway's risk would say of the positions in `gateway()`, under default.toml's
# [risk] (max_position 2,000, max_gross_position 8,000, max_orders_per_s 200,
# max_working_orders 100, daily_loss_limit $50,000) and the other limits' defaults.
RISK_FIGURES = {
    "position.AAPL": RiskFigure(used=300, limit=2_000, unit=SHARES),
    "position_worst.AAPL": RiskFigure(used=400, limit=2_000, unit=SHARES),
    "position.MSFT": RiskFigure(used=100, limit=2_000, unit=SHARES),
    "position_worst.MSFT": RiskFigure(used=100, limit=2_000, unit=SHARES),
    "gross": RiskFigure(used=400, limit=8_000, unit=SHARES),
    "gross_worst": RiskFigure(used=500, limit=8_000, unit=SHARES),
    "net": RiskFigure(used=200, limit=20_000, unit=SHARES),
    "exposure": RiskFigure(  # 300 x $189.60 + 100 x $415.00
        used=300 * 1_896_000 + 100 * 4_150_000, limit=5_000_000 * 10_000, unit=DOLLARS
    ),
    "rate": RiskFigure(used=4, limit=200, unit=ORDERS_PER_S),
    "messages": RiskFigure(used=6, limit=1_000, unit=MESSAGES_PER_S),
    "working": RiskFigure(used=1, limit=100, unit=ORDERS),
    "loss": RiskFigure(used=173_400, limit=-50_000 * 10_000, unit=DOLLARS),  # P&L +$17.34
}


def hdr(values_ns: list[int]) -> dict[int, int]:
    """A gateway's `latency_hdr` entry for these values."""
    return SparseHistogram.from_values(values_ns).to_wire()


def gateway(
    *,
    sent: int = 10,
    fills: int = 4,
    cancels: int = 2,
    risk_rejects: int = 1,
    venue_rejects: int = 0,
    latency_ns: list[int] | None = None,
    mode: str = "active",
    breaker: dict[str, Any] | None = None,
    risk: dict[str, float] | None = None,
    risk_figures: dict[str, RiskFigure] | None = None,
    venue_up: bool = True,
    venue_heard_ms_ago: int | None = 200,
    strategy_up: bool = True,
    recent_fills: list[FillStatus] | None = None,
) -> dict[str, Any]:
    """A gateway detail: AAPL long 300 @ 189.50 marked 189.60, MSFT short 100, realized 12.34.

    Risk: `RISK_FIGURES` (default.toml's limits), and `risk` their fractions; a `risk`
    given alone comes without figures (a gateway older than them)."""
    values = latency_ns if latency_ns is not None else [100_000, 200_000, 300_000, 4_000_000]
    counters = dict.fromkeys(
        (f.name for f in msgspec.structs.fields(GatewayDetail) if f.type is int), 0
    )
    figures = {} if risk is not None else RISK_FIGURES
    figures = risk_figures if risk_figures is not None else figures
    detail = GatewayDetail(
        **{
            **counters,
            "venue_seq": 7,
            "next_user_ref": 2,
            "sent": sent,
            "fills": fills,
            "cancels": cancels,
            "risk_rejects": risk_rejects,
            "venue_rejects": venue_rejects,
        },
        mode=mode,
        breaker=BreakerStatus(**{"tripped": False, "reason": "", "trips": 0, **(breaker or {})}),
        venue_up=venue_up,
        venue_heard_ms_ago=venue_heard_ms_ago,
        strategy_up=strategy_up,
        last_unusable="",
        reconcile=ReconcileStatus(state="agreed", problems=[]),
        market=MarketStatus(
            synced=True,
            last_seq=1000,
            gaps=0,
            resyncs=0,
            resync_loop=False,
            last_loss="",
            book_errors=0,
            last_book_error="",
            reference={"AAPL": 1_896_000, "MSFT": 4_150_000},
        ),
        venue_session="S1",
        working=[
            WorkingOrderStatus(
                cl_id=1,
                user_ref=1,
                symbol="AAPL",
                side="B",
                leaves=100,
                price=1_890_000,
                order_ref=9001,
                tif="0",
                state="live",
                strategy="mr1",
            )
        ],
        positions=BookSnapshot(
            positions=(
                PositionSnapshot(
                    "MSFT", -100, 4_152_000.0, 0, 123_400, 4_150_000, 20_000, 0, 100, 1
                ),
                PositionSnapshot("AAPL", 300, 1_895_000.0, 0, 0, 1_896_000, 30_000, 300, 0, 1),
            ),
            realized=123_400,
            unrealized=50_000,
            total=173_400,
            gross_shares=400,
            net_shares=200,
            gross_notional=400 * 1_896_000,
            net_notional=200 * 1_896_000,
        ),
        risk=risk if risk is not None else {k: f.fraction for k, f in figures.items()},
        risk_figures=figures,
        latency_hdr={hop: hdr(values) for hop in HOPS},
        recent_fills=recent_fills
        if recent_fills is not None
        else [
            FillStatus(
                time_ns=1_700_000_000_000_000_000,
                symbol="AAPL",
                side="B",
                qty=300,
                price=1_895_000,
                tick_to_trade_us=123.4,
            ),
            FillStatus(
                time_ns=1_700_000_001_500_000_000,
                symbol="MSFT",
                side="S",
                qty=100,
                price=4_152_000,
                tick_to_trade_us=456.7,
            ),
        ],
    )
    out: dict[str, Any] = msgspec.to_builtins(detail)
    return out


def _ring(name: str) -> RingStats:
    return RingStats(name, 1024, 256, 10, 10, 0, 1024, 0, 0, 0, 0, 0, 0, False)


def feed(
    *,
    messages: int = 1000,
    gaps: int = 0,
    drops: int = 0,
    link: str = "live",
    venue_heard_ms_ago: int | None = 100,
    unread_bytes: int | None = 0,
) -> dict[str, Any]:
    detail = FeedDetail(
        link=link,
        venue_heard_ms_ago=venue_heard_ms_ago,
        unread_bytes=unread_bytes,
        reconnects=0,
        next_sequence=messages + 1,
        messages=messages,
        published=messages,
        drops=drops,
        risk_drops=0,
        gaps=gaps,
        resets=0,
        bytes=messages * 30,
        unknown_types=0,
        malformed=0,
        ring=_ring("md"),
        risk_ring=_ring("risk_md"),
    )
    out: dict[str, Any] = msgspec.to_builtins(detail)
    return out


def strategy(*, refused: int = 0) -> dict[str, Any]:
    detail = StrategyDetail(
        synced=True,
        last_seq=10,
        updates=10,
        skipped=0,
        gaps=0,
        resets=0,
        resyncs=0,
        resync_failures=0,
        resync_loop=False,
        resync_failures_in_a_row=0,
        resync_backoff_s=0.0,
        resync_hole=0,
        last_loss="",
        reports=0,
        orders_refused=refused,
        run=1,
        book_errors=0,
        last_book_error="",
        working=0,
        untracked=0,
        stale_reports=0,
        invalid_reports=0,
        gateway_heard_ms_ago=None,
        gateway_mode="active",
        strategies={
            "mr1": StrategyInstanceStatus(
                signals=12,
                sent=10,
                fills=4,
                partial_fills=1,
                rejects=1,
                cancels=2,
                held=3,
                working=1,
                positions={"AAPL": 300, "MSFT": -100},
                net={"AAPL": 200},
                realized=56_700,  # $5.67
                unrealized=-12_000,  # -$1.20
                pnl=44_700,
            )
        },
    )
    out: dict[str, Any] = msgspec.to_builtins(detail)
    return out


PIDS = {"exchange": 101, "feed": 102, "strategy": 103, "gateway": 104, "monitor": 105}


def reading(
    name: str, t: float, detail: dict[str, Any] | None = None, pid: int | None = None
) -> Reading:
    info = StatusInfo(
        component=name, pid=pid or PIDS[name], state="running", uptime_s=10.0, detail=detail or {}
    )
    return Reading(name=name, info=info, detail=typed_detail(name, info), ok_at=t)


def poll(
    t: float,
    details: dict[str, dict[str, Any]],
    *,
    silent: tuple[str, ...] = (),
    supervisor: list[DaemonStatus] | None = None,
    pids: dict[str, int] | None = None,
) -> Poll:
    """Every daemon answering at `t` (those in `silent` never answered)."""
    readings = {}
    for name in PIDS:
        if name in silent:
            readings[name] = Reading(name=name, error="no control socket")
        else:
            readings[name] = reading(name, t, details.get(name, {}), (pids or {}).get(name))
    return Poll(mono=t, wall=1_800_000_000.0 + t, readings=readings, supervisor=supervisor)


def sup(
    restarts: dict[str, int] | None = None, states: dict[str, str] | None = None, error: str = ""
) -> list[DaemonStatus]:
    return [
        DaemonStatus(
            name=n,
            state=(states or {}).get(n, "ready"),
            pid=pid,
            uptime_s=5.0,
            restarts=(restarts or {}).get(n, 0),
            last_error=error,
            last_recovery_ms=250.0 if (restarts or {}).get(n) else 0.0,
        )
        for n, pid in PIDS.items()
    ]


def metric(text: str, name: str) -> float:
    """The value of sample `name` in a /metrics exposition."""
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                return float(s.value)
    raise KeyError(name)
