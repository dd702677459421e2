"""The book_errors alert: from the strategy's Status to the alert, the state and /metrics."""

from __future__ import annotations

from typing import Any

from hftd.config import ALERT_RULES, AlertRulesConfig, load_config
from hftd.monitor.alerts import Facts, evaluate
from hftd.monitor.model import Aggregator
from hftd.monitor.prom import exposition, make_registry
from tests.support import DEFAULT_CONFIG
from tests.unit import monitor_fixtures as fx

WHY = "book inconsistent at sequence 2001: AAPL: unknown order 999999999"


def test_rule_raises_while_the_books_rejected_updates_in_the_last_minute() -> None:
    assert "book_errors" in ALERT_RULES
    two = Facts(monitor_age_s=100, book_errors_last_min=2, book_error=WHY)
    assert load_config(DEFAULT_CONFIG).monitor.alerts.max_book_errors_per_min == 0
    (c,) = evaluate(AlertRulesConfig(), two)
    assert (c.key, c.severity, c.value, c.threshold) == ("book_errors:strategy", "warning", 2, 0)
    assert "2 market-data updates" in c.message and WHY in c.message
    assert evaluate(AlertRulesConfig(), Facts(monitor_age_s=100)) == []
    assert evaluate(AlertRulesConfig(max_book_errors_per_min=2), two) == []  # the edge
    assert evaluate(AlertRulesConfig(disabled=["book_errors"]), two) == []


def strategy(**over: Any) -> dict[str, Any]:
    d = fx.strategy()
    d.update(book_errors=0, last_book_error="")
    d.update(over)
    return d


def test_strategy_status_to_alert_state_and_metrics() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": fx.gateway(), "strategy": strategy()}))
    assert "book_errors:strategy" not in {a.key for a in s.alerts}
    s = agg.ingest(
        fx.poll(
            2.0, {"gateway": fx.gateway(), "strategy": strategy(book_errors=1, last_book_error=WHY)}
        )
    )
    alert = next(a for a in s.alerts if a.key == "book_errors:strategy")
    assert alert.severity == "warning" and "sequence 2001" in alert.message
    assert s.counters.book_errors == 1
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert fx.metric(text, "hftd_md_book_errors_total") == 1.0
    assert (
        'hftd_alert_firing{alert="book_errors",severity="warning",subject="strategy"} 1.0' in text
    )
    # Resynced, and a minute without another: the alert clears (the count stays).
    s = agg.ingest(
        fx.poll(
            30.0,
            {"gateway": fx.gateway(), "strategy": strategy(book_errors=1, last_book_error=WHY)},
        )
    )
    assert "book_errors:strategy" in {a.key for a in s.alerts}
    s = agg.ingest(
        fx.poll(
            63.0,
            {"gateway": fx.gateway(), "strategy": strategy(book_errors=1, last_book_error=WHY)},
        )
    )
    assert "book_errors:strategy" not in {a.key for a in s.alerts}
    assert s.counters.book_errors == 1
    assert s.alert_log[0].key == "book_errors:strategy" and s.alert_log[0].cleared_at > 0


def test_a_restarted_strategy_counting_from_zero_again_still_alerts() -> None:
    agg = Aggregator(fx.config())
    agg.ingest(fx.poll(1.0, {"strategy": strategy(book_errors=3)}))  # a baseline
    agg.ingest(fx.poll(100.0, {"strategy": strategy(book_errors=3)}))
    s = agg.ingest(
        fx.poll(
            101.0,
            {"strategy": strategy(book_errors=1, last_book_error=WHY)},
            pids={"strategy": 999},
        )
    )
    assert "book_errors:strategy" in {a.key for a in s.alerts}
