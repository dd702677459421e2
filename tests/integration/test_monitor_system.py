"""The monitor against a running system: /metrics, its state and the console's views
show exactly what the daemons report.

One system for the module (`hftd up` with the monitor on a free port). It
trades for a few seconds; then the venue's background flow is switched off
by a live reload, so no market data arrives, no new orders go out, and every
figure holds still: the daemons' own Status and every face of the monitor
can be compared number for number.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hdrh.histogram import HdrHistogram
from prometheus_client.parser import text_string_to_metric_families

from hftd.config import load_config
from hftd.console.source import StateSource
from hftd.console.views import Dashboard, fmt_us, fmt_us_unit, render_text
from hftd.monitor.state import SystemState
from hftd.runtime.hdr import HIGHEST_NS, LOWEST_NS, SIG_DIGITS
from tests.integration.frontends import (
    http_get,
    latency_us,
    monitor_config,
    monitor_state,
    quiesce,
    status,
    wait_for,
)
from tests.support import RING_PREFIXES, Daemon, start_daemon

pytestmark = pytest.mark.integration


class System:
    def __init__(self, up: Daemon, config: Path, port: int) -> None:
        self.up = up
        self.config = config
        self.port = port
        self.run_dir = Path(up.config["system"]["run_dir"])


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("monitor-system")
    cfg, port = monitor_config(tmp)
    # This module's system outlives single tests: its rings are removed here, at the end,
    # not by the per-test cleanup in conftest.py.
    prefix = RING_PREFIXES.pop()
    try:
        with start_daemon("up", cfg) as up:
            yield System(up, cfg, port)
    finally:
        for path in Path("/dev/shm").glob(f"{prefix}-*"):
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def live(system: System) -> System:
    """The system after some trading (still trading)."""
    wait_for(lambda: monitor_state(system.run_dir)["counters"]["fills"] >= 3, 60, "3 fills")
    return system


@pytest.fixture(scope="module")
def settled(live: System) -> dict[str, Any]:
    """Flow off, trading settled; the gateway's final Status detail."""
    gw = quiesce(live.config, live.run_dir)
    time.sleep(1.5)  # a few monitor polls, and the 1 s order-rate window slides past
    return gw


def test_console_views_show_the_daemons_numbers(live: System) -> None:
    """The console's own path (polling the daemons, `--direct`), while trading: the screen
    shows the numbers of the very replies it was built from."""
    cfg = load_config(live.config)
    source = StateSource(cfg, live.run_dir, mode="direct")

    async def two_polls() -> SystemState:
        await source.fetch()
        await trio.sleep(1.1)  # rates need two polls; latency is folded once a second
        return await source.fetch()

    state = trio.run(two_polls)
    raw = {n: r.info.detail for n, r in source.poller.readings.items() if r.info is not None}
    gw = raw["gateway"]
    dash = Dashboard()
    dash.update(state)
    lines = render_text(dash.widget, 100, 40)
    text = "\n".join(lines)
    assert "via direct" in lines[0]
    # Positions: every symbol the gateway reports, with its quantity and P&L.
    for p in gw["positions"]["positions"]:
        cells = next(ln.split() for ln in lines if ln.startswith(p["symbol"] + " "))
        assert int(cells[1]) == p["qty"], (p, cells)
        assert cells[3] == f"{p['mark'] / 10_000:.4f}"
        assert cells[4] == f"{p['unrealized'] / 10_000:,.2f}"
        assert cells[5] == f"{p['realized'] / 10_000:,.2f}"
    total = next(ln.split() for ln in lines if ln.startswith("TOTAL"))
    assert total[1] == f"{gw['positions']['unrealized'] / 10_000:,.2f}"  # no share total
    assert total[-1] == f"{gw['positions']['total'] / 10_000:,.2f}"
    # Latency: the gateway's histograms, recounted here by hdrh itself (the window still covers
    # the gateway's whole life). (Its `latency_us` summary is folded a moment apart from the
    # histograms in the same reply, so while trading it can be one order behind them.)
    for hop, label in (("t1_t4", "tick-to-trade"), ("t1_t2", "feed>strategy")):
        h = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIG_DIGITS)
        for i, c in gw["latency_hdr"][hop].items():
            h.record_value(h.get_value_from_index(i), c)
        n = h.get_total_count()
        cells = next(ln.split() for ln in lines if ln.startswith(label))
        assert int(cells[1]) == n > 0
        assert cells[2:6] == [
            fmt_us(h.get_value_at_percentile(p) / 1000, n) for p in (50, 95, 99, 99.9)
        ]
    # Health: the supervisor's pids.
    health = [ln[48:].split() for ln in lines]  # the pane right of the latency table
    for d in status(live.run_dir, "supervisor"):
        assert [d["name"], "ready", str(d["pid"])] in [h[:3] for h in health], d
    # Recent trades: the gateway's newest fill, with its latency.
    newest = gw["recent_fills"][-1]
    assert f"{newest['price'] / 10_000:.2f}" in text
    assert fmt_us_unit(newest["tick_to_trade_us"]) in text


def test_metrics_match_the_settled_system(live: System, settled: dict[str, Any]) -> None:
    gw = settled
    feed = status(live.run_dir, "feed")["detail"]
    code, body = http_get(live.port, "/metrics")
    assert code == 200
    text = body.decode()
    promtool = shutil.which("promtool")
    if promtool is not None:  # the value checks below run either way
        r = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert r.returncode == 0, r.stdout + r.stderr
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            m[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert m[("hftd_orders_sent_total", ())] == gw["sent"]
    assert m[("hftd_fills_total", ())] == gw["fills"] >= 3
    assert m[("hftd_cancels_total", ())] == gw["cancels"]
    assert m[("hftd_rejects_total", (("source", "risk"),))] == gw["risk_rejects"]
    assert m[("hftd_rejects_total", (("source", "venue"),))] == gw["venue_rejects"]
    assert m[("hftd_md_messages_total", ())] == feed["messages"]
    assert m[("hftd_md_gaps_total", ())] == feed["gaps"]
    assert m[("hftd_md_drops_total", ())] == feed["drops"]
    pos = gw["positions"]
    for p in pos["positions"]:
        assert m[("hftd_position_shares", (("symbol", p["symbol"]),))] == p["qty"]
        for kind in ("realized", "unrealized"):
            key = ("hftd_symbol_pnl_dollars", (("kind", kind), ("symbol", p["symbol"])))
            assert m[key] == pytest.approx(p[kind] / 10_000)
    for kind in ("realized", "unrealized", "total"):
        assert m[("hftd_pnl_dollars", (("kind", kind),))] == pytest.approx(pos[kind] / 10_000)
    for limit in ("gross", "rate", "working", "loss"):
        assert m[("hftd_risk_utilisation_ratio", (("limit", limit),))] == pytest.approx(
            gw["risk"][limit]
        )
    for d in status(live.run_dir, "supervisor"):
        assert m[("hftd_up", (("daemon", d["name"]),))] == 1
        assert m[("hftd_daemon_restarts_total", (("daemon", d["name"]),))] == d["restarts"]
    for hop in latency_us(gw):
        labels = (("hop", hop["hop"]),)
        assert m[("hftd_hop_latency_seconds_count", labels)] == hop["count"]
        assert m[("hftd_hop_latency_window_seconds_count", labels)] == hop["count"]
        for q in ("p50", "p99"):
            quantile = {"p50": "0.5", "p99": "0.99"}[q]
            key = ("hftd_hop_latency_window_seconds", (*labels, ("quantile", quantile)))
            assert m[key] == pytest.approx(hop[q] / 1e6)
    assert m[("hftd_venue_session_up", ())] == 1


def test_monitor_state_and_web_api_match(live: System, settled: dict[str, Any]) -> None:
    gw = settled
    state = msgspec.convert(monitor_state(live.run_dir), SystemState)
    code, body = http_get(live.port, "/api/state")
    assert code == 200
    web = msgspec.json.decode(body, type=SystemState)
    for s in (state, web):
        assert s.counters.orders == gw["sent"] and s.counters.fills == gw["fills"]
        assert {p.symbol: p.qty for p in s.positions} == {
            p["symbol"]: p["qty"] for p in gw["positions"]["positions"]
        }
        assert s.totals is not None
        assert s.totals.total == pytest.approx(gw["positions"]["total"] / 10_000)
        t2t = s.hop("t1_t4")
        ref = next(h for h in latency_us(gw) if h["hop"] == "t1_t4")
        assert t2t is not None and (t2t.count, t2t.p99) == (ref["count"], ref["p99"])
        assert [d.name for d in s.daemons] == ["exchange", "feed", "strategy", "gateway", "monitor"]
    assert len(web.history) >= 3  # the page's charts have points; Status leaves them out
    assert state.history == []
    assert status(live.run_dir, "monitor")["detail"]["web"]["web"] == (
        f"http://127.0.0.1:{live.port}/"
    )


def test_reload_applies_alert_thresholds_live(live: System, settled: dict[str, Any]) -> None:
    """A tight latency threshold raises the latency alert; a reload with the old one clears it;
    an unrelated reload (risk limits) is accepted by the monitor too."""
    import tomllib

    from hftd.ctl.registry import VERBS, execute
    from tests.support import deep_merge, dump_toml

    original = live.config.read_text()
    data = tomllib.loads(original)
    tight = {
        "monitor": {"alerts": {"latency_p99_us": 1.0, "latency_min_samples": 1}},
        "risk": {"max_orders_per_s": 150},
    }
    live.config.write_text(dump_toml(deep_merge(data, tight)))
    replies = execute(live.run_dir, VERBS["reload"])
    assert replies["monitor"].ok and not replies["monitor"].result["refused"], replies
    assert "monitor.alerts.latency_p99_us" in replies["monitor"].result["applied"]
    wait_for(
        lambda: any(a["key"] == "latency:t1_t4" for a in monitor_state(live.run_dir)["alerts"]),
        5,
        "latency alert",
    )
    loose = {"monitor": {"alerts": {"latency_p99_us": 1e7}}}
    live.config.write_text(dump_toml(deep_merge(data, loose)))
    assert execute(live.run_dir, VERBS["reload"])["monitor"].ok
    wait_for(
        lambda: all(a["key"] != "latency:t1_t4" for a in monitor_state(live.run_dir)["alerts"]),
        5,
        "latency cleared",
    )
    last = next(a for a in monitor_state(live.run_dir)["alert_log"] if a["key"] == "latency:t1_t4")
    assert last["cleared_at"] > last["raised_at"] > 0
    live.config.write_text(original)
