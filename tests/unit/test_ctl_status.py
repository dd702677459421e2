"""`hftctl status`'s trading lines: the gateway's typed Status detail as the
operator reads it, with what to do next (hftd/ctl/commands/status.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hftd.ctl.commands import status
from hftd.ctl.commands.status import trading_summary
from hftd.msg.status import (
    GatewayDetail,
    RiskFigure,
    StrategyDetail,
    decode_detail,
    strategy_rows,
)
from tests.unit import monitor_fixtures as fx


def summary(**over: Any) -> Any:
    raw = fx.gateway(**{k: v for k, v in over.items() if k not in ("market", "mode_reason")})
    if "mode_reason" in over:
        raw["mode_reason"] = over["mode_reason"]
    if "market" in over:
        raw["market"] = dict(raw["market"], **over["market"])
    d = decode_detail(GatewayDetail, raw)
    assert d is not None
    return trading_summary(d)


def test_trading_normally_says_so_and_asks_nothing() -> None:
    t = summary()
    assert (t.mode, t.breaker, t.venue, t.strategy, t.market_view) == (
        "active",
        "ok",
        "up",
        "up",
        "in sync",
    )
    assert t.positions == {"AAPL": 300, "MSFT": -100} and t.working == len(fx.gateway()["working"])
    assert t.realized == pytest.approx(12.34) and t.next == ""


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"mode": "reducing"}, "mode reducing: closing positions"),
        ({"mode": "paused"}, "paused: new orders held"),
        ({"mode": "halted"}, "trading halted: `hftctl resume`"),
        (
            {"mode": "halted", "mode_reason": "halt: reconciliation: order UserRefNum 7 differs"},
            "trading halted (reconciliation: order UserRefNum 7 differs): `hftctl resume`",
        ),
        (
            {"mode": "halted", "breaker": {"tripped": True, "reason": "21 venue rejects"}},
            "circuit breaker tripped (21 venue rejects)",
        ),
        ({"venue_up": False}, "no venue session"),
        ({"market": {"synced": False, "last_loss": "md gap"}}, "market view is resyncing"),
    ],
)
def test_each_state_to_act_on_says_what_next(over: dict[str, Any], says: str) -> None:
    t = summary(**over)
    assert says in t.next and ("resume" in t.next) == (over.get("mode") is not None)


def test_flat_and_reducing_says_resume_to_trade_again() -> None:
    raw = fx.gateway(mode="reducing")
    for p in raw["positions"]["positions"]:
        p["qty"] = 0
    d = decode_detail(GatewayDetail, raw)
    assert d is not None
    t = trading_summary(d)
    assert t.positions == {} and t.next == "flat, mode reducing: `hftctl resume` to trade again"


def test_a_line_per_strategy_instance_with_its_own_figures() -> None:
    d = decode_detail(StrategyDetail, fx.strategy())
    assert d is not None
    [mr1] = strategy_rows(d)
    assert (mr1.name, mr1.signals, mr1.orders, mr1.fills, mr1.rejects, mr1.held) == (
        "mr1",
        12,
        10,
        4,
        1,
        3,
    )
    assert mr1.positions == {"AAPL": 200} and mr1.pnl == pytest.approx(4.47)


# --- risk: used/limit and % --------------------------------------------------------------


def run_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raw: dict[str, Any],
    *a: str,
) -> str:
    """`hftctl status [--json]`'s output for a gateway Status detail `raw` (no sockets)."""
    d = decode_detail(GatewayDetail, raw)
    assert d is not None
    monkeypatch.setattr(status, "collect", lambda ctx: ("supervisor", fx.sup()))
    monkeypatch.setattr(status, "trading", lambda ctx, names: (trading_summary(d), ""))
    monkeypatch.setattr(status, "strategies", lambda ctx, names: [])
    ctx = SimpleNamespace(run_dir=Path("/run/hftd"))
    assert status.run(ctx, argparse.Namespace(json="--json" in a)) == 0  # type: ignore[arg-type]
    return capsys.readouterr().out


def test_status_shows_every_limit_as_used_over_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = dict(
        fx.RISK_FIGURES,
        **{  # AAPL with a limit of its own; a losing day
            "position.AAPL": RiskFigure(used=300, limit=500, unit="shares"),
            "loss": RiskFigure(used=-1_280_000, limit=-50_000_000, unit="dollars"),
        },
    )
    raw = fx.gateway(risk_figures=figures)
    for key in ("realized", "total"):
        raw["positions"][key] = -1_280_000 if key == "total" else -1_330_000
    lines = run_status(monkeypatch, capsys, raw).splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("RISK"))
    risk = [ln.split() for ln in lines[at : at + 9]]
    assert risk == [
        ["RISK", "position", "AAPL", "300/500", "60.0%"],
        ["position", "MSFT", "100/2,000", "5.0%"],
        ["gross", "position", "400/8,000", "5.0%"],
        ["net", "position", "200/20,000", "1.0%"],
        ["exposure", "$98,380.00", "/", "$5,000,000.00", "2.0%"],
        ["order", "rate", "4/200", "2.0%"],
        ["message", "rate", "6/1,000", "0.6%"],
        ["working", "orders", "1/100", "1.0%"],
        ["daily", "P&L", "-$128.00", "/", "-$5,000.00", "2.6%"],
    ]
    # one column of figures, right-aligned, and one of percentages
    assert len({len(ln) for ln in lines[at : at + 9]}) == 1
    assert "P&L -$128.00 (realized -$133.00, unrealized $5.00)" in "\n".join(lines)

    out = json.loads(run_status(monkeypatch, capsys, raw, "--json"))
    bars = {b["key"]: b for b in out["trading"]["risk"]}
    assert bars["position.AAPL"] == {
        "key": "position.AAPL",
        "label": "position AAPL",
        "fraction": 0.6,
        "used": 300,
        "limit": 500,
        "unit": "shares",
        "figure": "300/500",
    }
    assert (bars["loss"]["used"], bars["loss"]["limit"], bars["loss"]["unit"]) == (
        -128.0,
        -5_000.0,
        "dollars",
    )
    assert bars["loss"]["figure"] == "-$128.00 / -$5,000.00"
    assert bars["loss"]["fraction"] == pytest.approx(0.0256)
    assert list(bars) == [
        "position.AAPL",
        "position.MSFT",
        "gross",
        "net",
        "exposure",
        "rate",
        "messages",
        "working",
        "loss",
    ]


def test_status_from_a_gateway_without_figures_shows_the_fractions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_status(monkeypatch, capsys, fx.gateway(risk={"position.AAPL": 0.5, "loss": 0.1}))
    risk = [ln.split() for ln in out.splitlines() if ln.startswith(("RISK", "    "))]
    assert risk == [["RISK", "position", "AAPL", "50.0%"], ["daily", "P&L", "10.0%"]]
