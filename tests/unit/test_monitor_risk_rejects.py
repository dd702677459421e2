"""The risk_rejects alert: risk refusing every order trades nothing while the mode
stays active and the default breaker does not trip (tests/chaos/test_chaos_links.py
found no alert at all for it): the monitor says so."""

from __future__ import annotations

from typing import Any

from hftd.config import ALERT_RULES, AlertRulesConfig, load_config
from hftd.monitor.alerts import Facts, evaluate
from hftd.monitor.model import Aggregator
from tests.support import DEFAULT_CONFIG
from tests.unit import monitor_fixtures as fx


def test_rule_raises_past_the_threshold_of_the_last_minute() -> None:
    assert "risk_rejects" in ALERT_RULES
    assert load_config(DEFAULT_CONFIG).monitor.alerts.max_risk_rejects_per_min == 100
    many = Facts(monitor_age_s=100, risk_rejects_last_min=101)
    (c,) = evaluate(AlertRulesConfig(), many)
    assert (c.key, c.severity, c.value, c.threshold) == (
        "risk_rejects:gateway",
        "warning",
        101,
        100,
    )
    assert "101 orders refused by risk" in c.message
    assert evaluate(AlertRulesConfig(), Facts(monitor_age_s=100, risk_rejects_last_min=100)) == []
    assert evaluate(AlertRulesConfig(disabled=["risk_rejects"]), many) == []


def gateway(**over: Any) -> dict[str, Any]:
    d = fx.gateway()
    d.update(over)
    return d


def test_from_the_gateways_count_to_the_alert_and_clear_after_a_quiet_minute() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": gateway(risk_rejects=7)}))  # a baseline
    assert "risk_rejects:gateway" not in {a.key for a in s.alerts}
    s = agg.ingest(fx.poll(30.0, {"gateway": gateway(risk_rejects=7 + 150)}))
    assert "risk_rejects:gateway" in {a.key for a in s.alerts}
    s = agg.ingest(fx.poll(95.0, {"gateway": gateway(risk_rejects=7 + 150)}))
    assert "risk_rejects:gateway" not in {a.key for a in s.alerts}
