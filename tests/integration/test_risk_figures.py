"""Risk as used/limit and a reducing fill's P&L per share, in every front end, against a
running system (issue 16 item 4).

`hftd up` with the monitor trades until the gateway has a fill that reduced a
position; then the venue's flow is switched off (a live reload) and, once the
order-rate window has slid past the last order, every figure holds still. The
gateway's `risk_figures` must be what its positions and the config's limits say
(AAPL has a max_position of its own), and the monitor's state (the page's
`/api/state` and its HTML, the console's source), `/metrics` and `hftctl status`
(text and `--json`) must show those figures. The P&L per share of each recent fill
is checked against a replay of the day's fills (average cost), when the gateway's
recent fills hold the whole day.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.gateway.positions import Position
from hftd.monitor.state import SystemState
from hftd.msg.status import format_dollars
from tests.integration.frontends import (
    hftctl_path,
    http_get,
    monitor_config,
    monitor_state,
    quiesce,
    status,
    wait_for,
)
from tests.support import start_daemon
from tests.unit.test_monitor_prom import samples

pytestmark = pytest.mark.integration

AAPL_LIMIT = 1_500  # risk.symbols.AAPL.max_position; the others have the global one


def reduced(gw: dict[str, Any]) -> bool:
    """A fill reduced a position, and AAPL (the symbol with a limit of its own) traded."""
    aapl = any(p["symbol"] == "AAPL" and p["fills"] for p in gw["positions"]["positions"])
    return aapl and any(f["pnl_per_share"] is not None for f in gw["recent_fills"])


def expected_figures(gw: dict[str, Any], risk: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(used, limit) of each limit the front ends show, from the gateway's positions
    and the config's [risk] alone (money in fixed point, as on the wire)."""
    book = gw["positions"]
    out = {}
    for p in (p for p in book["positions"] if p["qty"]):  # (flat: maybe never sent)
        limit = AAPL_LIMIT if p["symbol"] == "AAPL" else risk["max_position"]
        out[f"position.{p['symbol']}"] = (abs(p["qty"]), limit)
    out["gross"] = (book["gross_shares"], risk["max_gross_position"])
    out["net"] = (abs(book["net_shares"]), 20_000)  # the default max_net_position
    out["working"] = (0, risk["max_working_orders"])  # settled: nothing working
    out["rate"] = (0, risk["max_orders_per_s"])  # and no order in the last second
    out["loss"] = (book["total"], -risk["daily_loss_limit"])
    return out


def hftctl(config: Path, *args: str) -> str:
    res = subprocess.run(
        [*hftctl_path(), "--config", str(config), "status", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_risk_figures_and_pnl_per_share_in_every_front_end(tmp_path: Path) -> None:
    cfg, port = monitor_config(tmp_path, {"risk": {"symbols": {"AAPL": {"max_position": 1500}}}})
    with start_daemon("up", cfg) as up:
        run_dir = Path(up.config["system"]["run_dir"])
        risk = up.config["risk"]
        wait_for(lambda: reduced(status(run_dir, "gateway")["detail"]), 120, "a reducing fill")
        quiesce(cfg, run_dir)

        def settled() -> dict[str, Any] | None:
            """The gateway's detail once its order-rate window is empty, and the
            monitor's state has caught up with it (same figures)."""
            gw = status(run_dir, "gateway")["detail"]
            figs = gw["risk_figures"]
            if figs["rate"]["used"] or figs["messages"]["used"]:
                return None
            state = monitor_state(run_dir)
            shown = {b["key"]: (b["used"], b["limit"]) for b in state["risk"]}
            want = {
                k: (f["used"] / 10_000, f["limit"] / 10_000)
                if f["unit"] == "dollars"
                else (f["used"], f["limit"])
                for k, f in figs.items()
                if "_worst" not in k
            }
            return gw if shown == want else None

        gw = wait_for(settled, 20, "the order-rate window to empty, the monitor to follow")
        figs = gw["risk_figures"]

        # The gateway's figures are what its positions and the config's limits say.
        for key, (used, limit) in expected_figures(gw, risk).items():
            assert (figs[key]["used"], figs[key]["limit"]) == (used, limit), key
            assert gw["risk"][key] == pytest.approx(max(0, used / limit)), key
        assert figs["position.AAPL"]["limit"] == AAPL_LIMIT
        held = [p for p in gw["positions"]["positions"] if p["qty"]]
        assert figs["exposure"]["limit"] == 5_000_000 * 10_000  # the default
        assert figs["exposure"]["used"] == pytest.approx(
            sum(abs(p["qty"]) * p["mark"] for p in held),
            rel=0.05,  # risk prices at the last trade, the book at its mark: about the same
        )

        # The page's state (/api/state) shows the same, with its text.
        code, body = http_get(port, "/api/state?history=0")
        assert code == 200
        web = msgspec.json.decode(body, type=SystemState)
        bars = {b.key: b for b in web.risk}
        assert set(bars) == {k for k in figs if "_worst" not in k}
        for sym in (p["symbol"] for p in held):
            b = bars[f"position.{sym}"]
            f = figs[f"position.{sym}"]
            assert (b.used, b.limit) == (f["used"], f["limit"])
            assert b.figure == f"{f['used']:,}/{f['limit']:,}"
        loss = bars["loss"]
        stop = -risk["daily_loss_limit"]
        assert loss.figure == f"{format_dollars(gw['positions']['total'])} / {format_dollars(stop)}"
        assert loss.label == "daily P&L"

        # /metrics: used and limit beside the ratio.
        code, body = http_get(port, "/metrics")
        m = samples(body.decode())
        aapl = (("limit", "position.AAPL"), ("unit", "shares"))
        assert m[("hftd_risk_used", aapl)] == figs["position.AAPL"]["used"]
        assert m[("hftd_risk_limit", aapl)] == AAPL_LIMIT
        dollars = (("limit", "loss"), ("unit", "dollars"))
        assert m[("hftd_risk_used", dollars)] == pytest.approx(gw["positions"]["total"] / 10_000)
        assert m[("hftd_risk_limit", dollars)] == -risk["daily_loss_limit"] / 10_000

        # hftctl status: a RISK line per limit; --json: the same bars.
        text = hftctl(cfg)
        lines = text.splitlines()
        at = next(i for i, ln in enumerate(lines) if ln.startswith("RISK"))
        rows = [ln[11:].split() for ln in lines[at : at + len(bars)]]
        assert rows == [
            [*b.label.split(), *b.figure.split(), f"{b.fraction * 100:.1f}%"] for b in web.risk
        ], text
        js = json.loads(hftctl(cfg, "--json"))
        assert {b["key"]: (b["used"], b["limit"], b["figure"]) for b in js["trading"]["risk"]} == {
            k: (b.used, b.limit, b.figure) for k, b in bars.items()
        }

        # P&L per share: the page's trades carry the gateway's, in dollars ...
        fills = gw["recent_fills"]
        newest_first = list(reversed(fills))[: len(web.trades)]
        assert [t.pnl_per_share for t in web.trades] == [
            None if f["pnl_per_share"] is None else pytest.approx(f["pnl_per_share"] / 10_000)
            for f in newest_first
        ]
        assert any(t.pnl_per_share is not None for t in web.trades)
        # ... and each is what the fill realized per share closed, average cost, when
        # the recent fills are the whole day (the gateway keeps its last 50).
        if gw["fills"] == len(fills):
            book: dict[str, Position] = {}
            for f in fills:
                pos = book.setdefault(f["symbol"], Position(f["symbol"]))
                held = pos.qty
                pnl = pos.on_fill(f["side"], f["qty"], f["price"])
                reduces = held < 0 if f["side"] == "B" else held > 0
                if reduces:
                    closed = min(f["qty"], abs(held))
                    assert f["pnl_per_share"] == pytest.approx(pnl / closed), f
                else:
                    assert f["pnl_per_share"] is None, f
            assert {s: p.qty for s, p in book.items() if p.qty} == {
                p["symbol"]: p["qty"] for p in gw["positions"]["positions"] if p["qty"]
            }
