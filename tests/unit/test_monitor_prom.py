"""/metrics: the exposition carries the state's figures, promtool accepts it and ops/ rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hftd.monitor import prom
from hftd.monitor.model import Aggregator
from tests.support import ROOT
from tests.unit import monitor_fixtures as fx

OPS = ROOT / "ops" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not installed (Debian package prometheus; "
            "scripts/install-system-deps installs it)"
        )
    return path


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def exposition() -> tuple[str, Aggregator]:
    agg = Aggregator(fx.config(alerts={"latency_p99_us": 1000.0, "latency_min_samples": 1}))
    # Counters seen at the first poll are a baseline; gaps and drops come after it.
    agg.ingest(
        fx.poll(1.0, {"gateway": fx.gateway(), "feed": fx.feed(), "strategy": fx.strategy()})
    )
    agg.ingest(
        fx.poll(
            1.25,
            {
                "gateway": fx.gateway(),
                "feed": fx.feed(gaps=1, drops=2),
                "strategy": fx.strategy(refused=3),
            },
        )
    )
    reg = prom.make_registry(lambda: (agg.state, agg.histograms()))
    return prom.exposition(reg).decode(), agg


def test_values_match_the_state() -> None:
    text, agg = exposition()
    m = samples(text)
    s = agg.state
    assert m[("hftd_orders_sent_total", ())] == s.counters.orders == 10
    assert m[("hftd_fills_total", ())] == 4
    assert m[("hftd_cancels_total", ())] == 2
    assert m[("hftd_rejects_total", (("source", "risk"),))] == 1
    assert m[("hftd_rejects_total", (("source", "venue"),))] == 0
    assert m[("hftd_md_messages_total", ())] == 1000
    assert m[("hftd_md_gaps_total", ())] == 1
    assert m[("hftd_md_drops_total", ())] == 2
    assert m[("hftd_orders_refused_total", ())] == 3
    assert m[("hftd_position_shares", (("symbol", "AAPL"),))] == 300
    assert m[("hftd_position_shares", (("symbol", "MSFT"),))] == -100
    assert m[("hftd_symbol_pnl_dollars", (("kind", "realized"), ("symbol", "MSFT")))] == 12.34
    assert m[("hftd_pnl_dollars", (("kind", "total"),))] == pytest.approx(17.34)
    assert m[("hftd_risk_utilisation_ratio", (("limit", "position.AAPL"),))] == 0.15
    # ... and what that is of: used and limit, in the limit's units (money in dollars)
    shares = (("limit", "position.AAPL"), ("unit", "shares"))
    assert (m[("hftd_risk_used", shares)], m[("hftd_risk_limit", shares)]) == (300, 2_000)
    rate = (("limit", "rate"), ("unit", "orders_per_second"))
    assert (m[("hftd_risk_used", rate)], m[("hftd_risk_limit", rate)]) == (4, 200)
    loss = (("limit", "loss"), ("unit", "dollars"))
    assert m[("hftd_risk_used", loss)] == pytest.approx(17.34)
    assert m[("hftd_risk_limit", loss)] == -50_000
    exposure = (("limit", "exposure"), ("unit", "dollars"))
    assert m[("hftd_risk_used", exposure)] == pytest.approx(98_380)
    assert (
        {k[1][0][1] for k in m if k[0] == "hftd_risk_used"}
        == {b.key for b in s.risk}
        == {k[1][0][1] for k in m if k[0] == "hftd_risk_utilisation_ratio"}
    )
    assert m[("hftd_up", (("daemon", "feed"),))] == 1
    assert m[("hftd_daemon_restarts_total", (("daemon", "gateway"),))] == 0
    assert m[("hftd_listener_limits_hit_total", (("daemon", "gateway"),))] == 0
    assert m[("hftd_trading_mode", (("mode", "active"),))] == 1
    # Latency: a histogram per hop (4 orders: 100, 200, 300 us and 4 ms) ...
    le = {
        k[1][1][1]: v
        for k, v in m.items()
        if k[0] == "hftd_hop_latency_seconds_bucket" and ("hop", "t1_t4") in k[1]
    }
    assert le["0.0001"] == 0 and le["0.00025"] == 2 and le["0.0005"] == 3
    assert le["0.0025"] == 3 and le["0.005"] == 4 and le["+Inf"] == 4
    assert m[("hftd_hop_latency_seconds_count", (("hop", "t1_t4"),))] == 4
    assert m[("hftd_hop_latency_seconds_sum", (("hop", "t1_t4"),))] == pytest.approx(
        0.0046, rel=0.01
    )
    # ... and the window's percentiles as a summary.
    h = s.hop("t1_t4")
    assert h is not None
    assert m[("hftd_hop_latency_window_seconds", (("hop", "t1_t4"), ("quantile", "0.99")))] == (
        pytest.approx(h.p99 / 1e6)
    )
    assert m[("hftd_hop_latency_window_seconds_count", (("hop", "t1_t4"),))] == 4
    # Alerts raised by the monitor are series too.
    firing = {k[1] for k, v in m.items() if k[0] == "hftd_alert_firing" and v == 1}
    assert (("alert", "feed_gaps"), ("severity", "warning"), ("subject", "feed")) in firing
    assert (("alert", "latency"), ("severity", "warning"), ("subject", "t1_t4")) in firing
    assert (("alert", "ring_drops"), ("severity", "critical"), ("subject", "rings")) in firing
    assert m[("hftd_alerts_active", ())] == len(s.alerts)


def test_a_gateway_without_figures_still_has_its_ratios() -> None:
    """A gateway older than `risk_figures`: the utilisation ratios, no used/limit."""
    agg = Aggregator(fx.config())
    agg.ingest(fx.poll(1.0, {"gateway": fx.gateway(risk={"rate": 0.25, "loss": 0.1})}))
    m = samples(prom.exposition(prom.make_registry(lambda: (agg.state, {}))).decode())
    assert m[("hftd_risk_utilisation_ratio", (("limit", "rate"),))] == 0.25
    assert not [k for k in m if k[0] in ("hftd_risk_used", "hftd_risk_limit")]


def test_own_registry_only() -> None:
    text, _ = exposition()
    assert "python_gc" not in text and "process_" not in text  # nothing from the global one
    assert all(line.startswith(("#", "hftd_")) for line in text.splitlines() if line)


def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    text, _ = exposition()
    r = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_ops_rules_config_and_rule_tests_pass() -> None:
    tool = promtool()
    for args in (
        ["check", "rules", "hftd-alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "hftd-alerts.test.yml"],
    ):
        r = subprocess.run([tool, *args], cwd=OPS, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}"


def test_rules_only_use_metrics_the_monitor_exports() -> None:
    text, _ = exposition()
    exported = {f.name for f in text_string_to_metric_families(text)}
    rules = (OPS / "hftd-alerts.yml").read_text()
    used = set(re.findall(r"\b(hftd_[a-z_]+)", rules))
    bases = {u.removesuffix("_total").removesuffix("_bucket") for u in used}
    assert bases <= exported | {"hftd_hop_latency_seconds"}, bases - exported


def test_the_ring_drops_alert_counts_each_ring_from_the_daemons() -> None:
    _, agg = exposition()  # the feed dropped 2 on the md ring, the strategy had 3 refused
    (a,) = [a for a in agg.state.alerts if a.rule == "ring_drops"]
    assert "5 messages dropped on full rings" in a.message
    assert "2 market-data updates on the md ring" in a.message
    assert "3 commands refused on the orders ring" in a.message
