"""The resync_loop alert: from the strategy's Status to the alert, the state and /metrics."""

from __future__ import annotations

from typing import Any

from hftd.config import ALERT_RULES, AlertRulesConfig
from hftd.monitor.alerts import Facts, evaluate
from hftd.monitor.model import Aggregator
from hftd.monitor.prom import exposition, make_registry
from tests.unit import monitor_fixtures as fx

LOOP = Facts(
    monitor_age_s=100,
    resync_failures=3,
    resync_hole=3,
    resync_backoff_s=2.0,
    resync_loss="md gap: expected 3, got 4",
)


def test_rule_raises_while_resyncs_fail_in_a_row() -> None:
    assert "resync_loop" in ALERT_RULES
    (c,) = evaluate(AlertRulesConfig(), LOOP)
    assert (c.key, c.severity, c.value, c.threshold) == ("resync_loop:strategy", "critical", 3, 1)
    assert "sequence 3" in c.message and "expected 3, got 4" in c.message
    assert "2.0 s" in c.message
    assert evaluate(AlertRulesConfig(), Facts(monitor_age_s=100, resync_failures=0)) == []
    assert evaluate(AlertRulesConfig(resync_loop_after=4), LOOP) == []  # the edge
    assert evaluate(AlertRulesConfig(disabled=["resync_loop"]), LOOP) == []


def strategy(**over: Any) -> dict[str, Any]:
    d = fx.strategy()
    d.update(
        resyncs=0,
        resync_failures=0,
        resync_loop=False,
        resync_failures_in_a_row=0,
        resync_hole=0,
        resync_backoff_s=0.0,
        last_loss="",
    )
    d.update(over)
    return d


def test_strategy_status_to_alert_state_and_metrics() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": fx.gateway(), "strategy": strategy()}))
    assert not s.resync_loop and "resync_loop:strategy" not in {a.key for a in s.alerts}
    looping = strategy(
        resyncs=9,
        resync_failures=8,
        resync_loop=True,
        resync_failures_in_a_row=8,
        resync_hole=101,
        resync_backoff_s=10.0,
        last_loss="book inconsistent at sequence 101: AAPL: unknown order 999999999",
    )
    s = agg.ingest(fx.poll(2.0, {"gateway": fx.gateway(), "strategy": looping}))
    alert = next(a for a in s.alerts if a.key == "resync_loop:strategy")
    assert "sequence 101" in alert.message and "10.0 s" in alert.message
    assert s.resync_loop and (s.counters.resyncs, s.counters.resync_failures) == (9, 8)
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert fx.metric(text, "hftd_md_resync_loop") == 1.0
    assert fx.metric(text, "hftd_md_resyncs_total") == 9.0
    assert fx.metric(text, "hftd_md_resync_failures_total") == 8.0
    assert (
        'hftd_alert_firing{alert="resync_loop",severity="critical",subject="strategy"} 1.0' in text
    )
    # Past the hole at last: the alert clears.
    s = agg.ingest(fx.poll(3.0, {"gateway": fx.gateway(), "strategy": strategy(resyncs=10)}))
    assert not s.resync_loop and "resync_loop:strategy" not in {a.key for a in s.alerts}
    assert s.alert_log[0].key == "resync_loop:strategy" and s.alert_log[0].cleared_at > 0
