"""The risk_view alert: the gateway's own market view out of sync, from its
Status to the alert (hftd.monitor.alerts, hftd.monitor.model)."""

from __future__ import annotations

from typing import Any

from hftd.config import ALERT_RULES, AlertRulesConfig
from hftd.monitor.alerts import Facts, evaluate
from hftd.monitor.model import Aggregator
from tests.unit import monitor_fixtures as fx


def test_the_rule_waits_for_link_down_after_s_then_names_why() -> None:
    assert "risk_view" in ALERT_RULES
    cfg = AlertRulesConfig(link_down_after_s=2.0)
    early = Facts(monitor_age_s=100.0, risk_view_down_s=1.5, risk_view_loss="md gap: expected 5")
    assert [c.rule for c in evaluate(cfg, early)] == []
    late = Facts(monitor_age_s=100.0, risk_view_down_s=3.0, risk_view_loss="md gap: expected 5")
    [c] = evaluate(cfg, late)
    assert (c.key, c.severity, c.value, c.threshold) == ("risk_view:gateway", "critical", 3.0, 2.0)
    assert "md gap: expected 5" in c.message and "last good reference" in c.message
    assert evaluate(AlertRulesConfig(link_down_after_s=2.0, disabled=["risk_view"]), late) == []


def gateway(synced: bool) -> dict[str, Any]:
    d = fx.gateway()
    d["market"] = dict(d["market"], synced=synced, last_loss="" if synced else "md drop: 9 > 3")
    return d


def test_a_gateway_whose_view_stays_out_of_sync_raises_it_and_clears_when_back() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": gateway(True)}))
    assert "risk_view:gateway" not in {a.key for a in s.alerts}
    s = agg.ingest(fx.poll(2.0, {"gateway": gateway(False)}))
    assert "risk_view:gateway" not in {a.key for a in s.alerts}  # not yet: a resync is quick
    s = agg.ingest(fx.poll(5.0, {"gateway": gateway(False)}))
    alert = next(a for a in s.alerts if a.key == "risk_view:gateway")
    assert alert.severity == "critical" and "md drop: 9 > 3" in alert.message
    s = agg.ingest(fx.poll(6.0, {"gateway": gateway(True)}))
    assert "risk_view:gateway" not in {a.key for a in s.alerts}
