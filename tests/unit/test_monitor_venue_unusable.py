"""The venue_unusable alert: from the gateway's Status to the alert, the state and /metrics.

A sequenced venue message the gateway cannot use (not OUCH 5.0, or about an
order or fill it does not know) is journaled and counted, never skipped
(issue 11, item 2): the monitor raises it so that it is seen, not only logged.
"""

from __future__ import annotations

from typing import Any

from hftd.config import ALERT_RULES, AlertRulesConfig, load_config
from hftd.monitor.alerts import Facts, evaluate
from hftd.monitor.model import Aggregator
from hftd.monitor.prom import exposition, make_registry
from tests.support import DEFAULT_CONFIG
from tests.unit import monitor_fixtures as fx

WHY = "sequence 42: not OUCH 5.0 (unknown message type b'Z'): 5a00686f7374696c65"


def test_rule_raises_while_the_gateway_could_not_use_venue_messages_in_the_last_minute() -> None:
    assert "venue_unusable" in ALERT_RULES
    two = Facts(monitor_age_s=100, unusable_last_min=2, last_unusable=WHY)
    assert load_config(DEFAULT_CONFIG).monitor.alerts.max_unusable_per_min == 0
    (c,) = evaluate(AlertRulesConfig(), two)
    assert (c.key, c.severity, c.value, c.threshold) == ("venue_unusable:gateway", "warning", 2, 0)
    assert "2 sequenced venue messages" in c.message and WHY in c.message
    assert evaluate(AlertRulesConfig(), Facts(monitor_age_s=100)) == []
    assert evaluate(AlertRulesConfig(max_unusable_per_min=2), two) == []  # the edge
    assert evaluate(AlertRulesConfig(disabled=["venue_unusable"]), two) == []


def gateway(**over: Any) -> dict[str, Any]:
    d = fx.gateway()
    d.update(unusable=0, last_unusable="")
    d.update(over)
    return d


def test_gateway_status_to_alert_state_and_metrics() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": gateway()}))
    assert "venue_unusable:gateway" not in {a.key for a in s.alerts}
    s = agg.ingest(fx.poll(2.0, {"gateway": gateway(unusable=1, last_unusable=WHY)}))
    alert = next(a for a in s.alerts if a.key == "venue_unusable:gateway")
    assert alert.severity == "warning" and WHY in alert.message
    assert s.counters.unusable == 1
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert fx.metric(text, "hftd_gateway_unusable_total") == 1.0
    assert (
        'hftd_alert_firing{alert="venue_unusable",severity="warning",subject="gateway"} 1.0' in text
    )
    # A minute without another: the alert clears (the count stays).
    s = agg.ingest(fx.poll(30.0, {"gateway": gateway(unusable=1, last_unusable=WHY)}))
    assert "venue_unusable:gateway" in {a.key for a in s.alerts}
    s = agg.ingest(fx.poll(63.0, {"gateway": gateway(unusable=1, last_unusable=WHY)}))
    assert "venue_unusable:gateway" not in {a.key for a in s.alerts}
    assert s.counters.unusable == 1
    assert s.alert_log[0].key == "venue_unusable:gateway" and s.alert_log[0].cleared_at > 0


def test_the_first_sight_of_a_gateway_count_is_a_baseline() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": gateway(unusable=5, last_unusable=WHY)}))
    assert "venue_unusable:gateway" not in {a.key for a in s.alerts}
    assert s.counters.unusable == 5  # shown as the gateway reports it
    s = agg.ingest(fx.poll(2.0, {"gateway": gateway(unusable=5, last_unusable=WHY)}))
    assert "venue_unusable:gateway" not in {a.key for a in s.alerts}


def test_a_restarted_gateway_counting_from_zero_again_still_alerts() -> None:
    agg = Aggregator(fx.config())
    agg.ingest(fx.poll(1.0, {"gateway": gateway(unusable=3)}))  # a baseline
    agg.ingest(fx.poll(100.0, {"gateway": gateway(unusable=3)}))
    s = agg.ingest(
        fx.poll(101.0, {"gateway": gateway(unusable=1, last_unusable=WHY)}, pids={"gateway": 999})
    )
    assert "venue_unusable:gateway" in {a.key for a in s.alerts}
    assert s.counters.unusable == 1
