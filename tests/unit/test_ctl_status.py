"""`hftctl status`'s trading lines: the gateway's typed Status detail as the
operator reads it, with what to do next (hftd/ctl/commands/status.py)."""

from __future__ import annotations

from typing import Any

import pytest

from hftd.ctl.commands.status import trading_summary
from hftd.msg.status import GatewayDetail, StrategyDetail, decode_detail, strategy_rows
from tests.unit import monitor_fixtures as fx


def summary(**over: Any) -> Any:
    raw = fx.gateway(**{k: v for k, v in over.items() if k != "market"})
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
