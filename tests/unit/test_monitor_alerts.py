"""Alert rules: each raises on its condition and clears when it ends, with timestamps."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hftd.config import ALERT_RULES, AlertRulesConfig, ConfigError, parse_config
from hftd.monitor.alerts import AlertBook, Condition, DaemonFacts, Facts, evaluate
from hftd.monitor.model import Aggregator
from hftd.monitor.state import HopLatency
from tests.unit import monitor_fixtures as fx

RULES = AlertRulesConfig()


def up(name: str) -> DaemonFacts:
    return DaemonFacts(name=name, state="ready", answering=True, silent_s=0.1, ever_seen=True)


def keys(conds: list[Condition]) -> set[str]:
    return {c.key for c in conds}


def test_quiet_system_raises_nothing() -> None:
    assert evaluate(RULES, Facts(monitor_age_s=100, daemons=[up("feed")], mode="active")) == []


@pytest.mark.parametrize(
    ("facts", "key", "severity"),
    [
        (
            Facts(
                monitor_age_s=100,
                daemons=[
                    DaemonFacts(
                        name="feed", state="ready", answering=False, silent_s=1.5, ever_seen=True
                    )
                ],
            ),
            "daemon_down:feed",
            "critical",
        ),
        (
            Facts(
                monitor_age_s=100,
                daemons=[
                    DaemonFacts(
                        name="feed",
                        state="restarting",
                        answering=False,
                        silent_s=0.1,
                        ever_seen=True,
                        last_error="killed by SIGKILL",
                    )
                ],
            ),
            "daemon_down:feed",
            "critical",
        ),
        (
            Facts(
                monitor_age_s=100,
                daemons=[
                    DaemonFacts(
                        name="gateway",
                        state="ready",
                        answering=True,
                        silent_s=0,
                        ever_seen=True,
                        restarted_ago_s=5.0,
                        recovery_ms=300,
                    )
                ],
            ),
            "daemon_restarted:gateway",
            "warning",
        ),
        (
            Facts(
                monitor_age_s=1,
                latency=HopLatency(
                    hop="t1_t4", count=10, p50=1, p95=2, p99=6000.0, p999=7000, max=8000
                ),
            ),
            "latency:t1_t4",
            "warning",
        ),
        (Facts(monitor_age_s=1, gaps_last_min=1), "feed_gaps:feed", "warning"),
        (Facts(monitor_age_s=1, drops_last_min=3), "ring_drops:rings", "critical"),
        (
            Facts(monitor_age_s=1, risk={"position.AAPL": 0.85}),
            "risk_utilisation:position.AAPL",
            "warning",
        ),
        (Facts(monitor_age_s=1, risk={"rate": 0.8}), "risk_utilisation:rate", "warning"),
        (
            Facts(monitor_age_s=1, risk={"loss": 0.9}, pnl_total=-45_000),
            "pnl_stop:daily_loss",
            "critical",
        ),
        (
            Facts(monitor_age_s=1, breaker_tripped=True, breaker_reason="21 venue rejects in 1 s"),
            "breaker:gateway",
            "critical",
        ),
        (Facts(monitor_age_s=1, mode="paused"), "trading_mode:gateway", "warning"),
        (Facts(monitor_age_s=1, mode="halted"), "trading_mode:gateway", "critical"),
        (Facts(monitor_age_s=1, venue_down_s=2.5), "link_down:venue", "critical"),
        (Facts(monitor_age_s=1, md_down_s=3.0, feed_link="connecting"), "link_down:md", "critical"),
        (Facts(monitor_age_s=1, strategy_down_s=2.0), "link_down:strategy", "critical"),
        (
            Facts(
                monitor_age_s=1,
                limit_hits={"exchange": 3, "feed": 0},
                limit_where={"exchange": ["md"]},
            ),
            "listener_limits:exchange",
            "warning",
        ),
    ],
)
def test_each_rule(facts: Facts, key: str, severity: str) -> None:
    conds = evaluate(RULES, facts)
    assert keys(conds) == {key}
    assert conds[0].severity == severity
    assert conds[0].message
    rule = key.split(":")[0]
    assert rule in ALERT_RULES
    off = AlertRulesConfig(disabled=[rule])
    assert evaluate(off, facts) == []


def test_risk_alerts_say_used_over_limit_when_the_gateway_does() -> None:
    figures = {"position.AAPL": "1,700/2,000", "loss": "-$45,000.00 / -$50,000.00"}
    facts = Facts(
        monitor_age_s=1,
        risk={"position.AAPL": 0.85, "loss": 0.9, "rate": 0.8},
        risk_figures=figures,
        pnl_total=-45_000,
    )
    msgs = {c.key: c.message for c in evaluate(RULES, facts)}
    assert msgs == {
        "risk_utilisation:position.AAPL": "risk position.AAPL at 85% of its limit (1,700/2,000)",
        "pnl_stop:daily_loss": "P&L -45,000.00 is 90% of the daily loss limit "
        "(-$45,000.00 / -$50,000.00)",
        "risk_utilisation:rate": "risk rate at 80% of its limit",  # no figure: none said
    }


def test_thresholds_are_edges() -> None:
    lat = HopLatency(hop="t1_t4", count=4, p50=1, p95=2, p99=9999.0, p999=1e4, max=1e4)
    assert evaluate(RULES, Facts(monitor_age_s=1, latency=lat)) == []  # < min samples
    ok = HopLatency(hop="t1_t4", count=50, p50=1, p95=2, p99=5000.0, p999=1e4, max=1e4)
    assert evaluate(RULES, Facts(monitor_age_s=1, latency=ok)) == []  # not over
    assert (
        evaluate(
            RULES,
            Facts(
                monitor_age_s=1,
                risk={
                    "position.AAPL": 0.79,
                    "position_worst.AAPL": 0.99,
                    "gross_worst": 1.0,
                    "loss": 0.79,
                },
            ),
        )
        == []
    )
    assert evaluate(RULES, Facts(monitor_age_s=1, venue_down_s=1.9)) == []
    quiet = DaemonFacts(name="feed", state="ready", answering=False, silent_s=0.9, ever_seen=True)
    assert evaluate(RULES, Facts(monitor_age_s=100, daemons=[quiet])) == []  # < down_after_s
    long_ago = DaemonFacts(
        name="feed", state="ready", answering=True, silent_s=0, ever_seen=True, restarted_ago_s=61.0
    )
    assert evaluate(RULES, Facts(monitor_age_s=100, daemons=[long_ago])) == []


def test_a_daemon_never_seen_is_down_only_after_the_grace() -> None:
    never = DaemonFacts(
        name="strategy", state="down", answering=False, silent_s=math.inf, ever_seen=False
    )
    assert evaluate(RULES, Facts(monitor_age_s=29, daemons=[never])) == []
    (c,) = evaluate(RULES, Facts(monitor_age_s=31, daemons=[never]))
    assert c.key == "daemon_down:strategy" and "never answered" in c.message


def test_book_raises_refreshes_and_clears_with_timestamps() -> None:
    book = AlertBook()
    a = Condition(rule="breaker", subject="gateway", severity="critical", message="tripped: x")
    b = Condition(
        rule="latency", subject="t1_t4", severity="warning", message="p99 6000", value=6000
    )
    changes = book.update([b, a], now=100.0)
    assert {c.key for c in changes} == {"breaker:gateway", "latency:t1_t4"}
    assert [x.key for x in book.current()] == ["breaker:gateway", "latency:t1_t4"]  # critical 1st
    b2 = Condition(
        rule="latency", subject="t1_t4", severity="warning", message="p99 7000", value=7000
    )
    assert book.update([a, b2], now=101.0) == []  # held: no change, refreshed text
    held = book.active["latency:t1_t4"]
    assert (held.raised_at, held.message, held.value) == (100.0, "p99 7000", 7000)
    (cleared,) = book.update([a], now=105.0)
    assert cleared.key == "latency:t1_t4" and cleared.cleared_at == 105.0
    assert cleared.raised_at == 100.0
    assert [x.key for x in book.current()] == ["breaker:gateway"]
    assert [(x.key, x.cleared_at) for x in book.log][:1] == [("latency:t1_t4", 105.0)]
    book.update([], now=106.0)
    assert book.current() == []
    assert len(book.log) == 4  # two raises, two clears, newest first
    assert book.log[0].key == "breaker:gateway" and book.log[0].cleared_at == 106.0


def test_unknown_rule_in_config_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "symbols": fx.SYMBOLS,
                "monitor": {"alerts": {"disabled": ["nope"]}, "metrics_port": 8080},
            }
        )
    text = str(info.value)
    assert "monitor.alerts.disabled: unknown rule 'nope'" in text
    assert "monitor.metrics_port: must differ from web_port" in text


# --- through the aggregator, with a manual clock ---------------------------------------


def test_daemon_down_raised_and_cleared() -> None:
    agg = Aggregator(fx.config(alerts={"down_after_s": 1.0}))
    agg.ingest(fx.poll(1.0, {"gateway": fx.gateway()}))
    # The feed stops answering: its last answer stays at t=1.
    p = fx.poll(2.5, {"gateway": fx.gateway()})
    p.readings["feed"] = fx.reading("feed", 1.0, fx.feed())
    s = agg.ingest(p)
    assert [a.key for a in s.alerts] == ["daemon_down:feed"]
    assert s.alerts[0].raised_at == 1_800_000_002.5
    feed = s.daemon("feed")
    assert feed is not None and not feed.up and feed.state == "not answering"
    s = agg.ingest(fx.poll(3.0, {"gateway": fx.gateway()}))
    assert s.alerts == []
    assert s.alert_log[0].key == "daemon_down:feed" and s.alert_log[0].cleared_at > 0


def test_restart_seen_by_supervisor_count_and_by_pid() -> None:
    agg = Aggregator(fx.config(alerts={"restart_hold_s": 10.0}))
    agg.ingest(fx.poll(1.0, {}, supervisor=fx.sup({"feed": 2})))  # earlier restarts: baseline
    s = agg.ingest(fx.poll(2.0, {}, supervisor=fx.sup({"feed": 2})))
    assert s.alerts == []
    s = agg.ingest(fx.poll(3.0, {}, supervisor=fx.sup({"feed": 3}, error="killed by SIGKILL")))
    assert [a.key for a in s.alerts] == ["daemon_restarted:feed"]
    assert "killed by SIGKILL" in s.alerts[0].message
    feed = s.daemon("feed")
    assert feed is not None and feed.restarts == 3
    s = agg.ingest(fx.poll(13.5, {}, supervisor=fx.sup({"feed": 3})))
    assert s.alerts == []  # held restart_hold_s, then cleared
    # Under systemd (no supervisor): a new pid is a restart.
    agg2 = Aggregator(fx.config(alerts={"restart_hold_s": 10.0}))
    agg2.ingest(fx.poll(1.0, {}))
    s = agg2.ingest(fx.poll(2.0, {}, pids={"gateway": 999}))
    assert [a.key for a in s.alerts] == ["daemon_restarted:gateway"]
    gateway = s.daemon("gateway")
    assert gateway is not None and gateway.restarts == 1


def test_supervisor_restarting_state_is_down() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {}, supervisor=fx.sup(states={"strategy": "restarting"})))
    assert "daemon_down:strategy" in {a.key for a in s.alerts}
    strategy = s.daemon("strategy")
    assert strategy is not None and strategy.state == "restarting" and not strategy.up


def test_gateway_mode_breaker_latency_and_gaps() -> None:
    agg = Aggregator(fx.config(alerts={"latency_p99_us": 1000.0, "latency_min_samples": 1}))
    slow = [3_000_000] * 5
    s = agg.ingest(
        fx.poll(
            1.0,
            {
                "gateway": fx.gateway(
                    mode="halted", breaker={"tripped": True, "reason": "md stale"}, latency_ns=slow
                ),
                "feed": fx.feed(gaps=0),
            },
        )
    )
    assert {a.key for a in s.alerts} == {"trading_mode:gateway", "breaker:gateway", "latency:t1_t4"}
    assert s.mode == "halted" and s.breaker_tripped and s.breaker_reason == "md stale"
    s = agg.ingest(
        fx.poll(
            2.0, {"gateway": fx.gateway(mode="active", latency_ns=slow), "feed": fx.feed(gaps=2)}
        )
    )
    assert {a.key for a in s.alerts} == {"latency:t1_t4", "feed_gaps:feed"}
    s = agg.ingest(
        fx.poll(
            70.0, {"gateway": fx.gateway(mode="active", latency_ns=slow), "feed": fx.feed(gaps=2)}
        )
    )
    assert s.alerts == []  # gaps older than a minute; no orders in the latency window


def test_link_down_needs_to_last() -> None:
    agg = Aggregator(fx.config(alerts={"link_down_after_s": 2.0}))
    for t in (1.0, 2.0):
        s = agg.ingest(fx.poll(t, {"gateway": fx.gateway(venue_up=False)}))
    assert s.alerts == []
    s = agg.ingest(fx.poll(3.5, {"gateway": fx.gateway(venue_up=False)}))
    assert [a.key for a in s.alerts] == ["link_down:venue"]
    s = agg.ingest(fx.poll(4.0, {"gateway": fx.gateway(venue_up=True)}))
    assert s.alerts == []


def test_reload_changes_thresholds_live() -> None:
    agg = Aggregator(fx.config(alerts={"latency_p99_us": 100.0, "latency_min_samples": 1}))
    s = agg.ingest(fx.poll(1.0, {"gateway": fx.gateway()}))
    assert [a.key for a in s.alerts] == ["latency:t1_t4"]
    agg.reconfigure(fx.config(alerts={"latency_p99_us": 1e6, "latency_min_samples": 1}))
    s = agg.ingest(fx.poll(1.5, {"gateway": fx.gateway()}))
    assert s.alerts == []


def test_listener_limits_hit_in_the_last_minute() -> None:
    """A daemon's listeners (`Status` detail ``listeners``) had to act on a limit: warned
    while that happened within the last minute, whatever its counters were at the start."""

    def control(hit: int) -> dict[str, Any]:
        return {
            "listeners": {"control": {"refused": hit, "limits_hit": hit}, "web": {"limits_hit": 0}}
        }

    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"exchange": control(5)}))  # before we watched: a baseline
    assert s.alerts == []
    s = agg.ingest(fx.poll(2.0, {"exchange": control(7)}))
    (alert,) = s.alerts
    assert alert.key == "listener_limits:exchange" and alert.value == 2
    assert "control" in alert.message and "web" not in alert.message
    exchange = s.daemon("exchange")
    assert exchange is not None and exchange.limits_hit == 7
    s = agg.ingest(fx.poll(40.0, {"exchange": control(7)}))
    assert [a.key for a in s.alerts] == ["listener_limits:exchange"]  # still within a minute
    s = agg.ingest(fx.poll(70.0, {"exchange": control(7)}))
    assert s.alerts == []
    s = agg.ingest(fx.poll(71.0, {"exchange": control(1)}))  # restarted: counters from 0
    assert [a.key for a in s.alerts] == ["listener_limits:exchange"]
    loose = Aggregator(fx.config(alerts={"max_limit_hits_per_min": 5}))
    loose.ingest(fx.poll(1.0, {"exchange": control(0)}))
    assert loose.ingest(fx.poll(2.0, {"exchange": control(5)})).alerts == []


def test_ring_drops_says_which_ring() -> None:
    """A strategy too slow for the md ring and a gateway behind on the orders ring are
    different problems: the alert names each with its count."""
    cfg = AlertRulesConfig()
    md = Facts(monitor_age_s=1, drops_last_min=548, md_drops_last_min=548)
    (c,) = [c for c in evaluate(cfg, md) if c.rule == "ring_drops"]
    assert c.message == (
        "548 messages dropped on full rings in the last minute (max 0): 548 market-data "
        "updates on the md ring (feed -> strategy: the strategy reads slower than the feed "
        "writes; it resyncs its books)"
    )
    both = Facts(monitor_age_s=1, drops_last_min=12, md_drops_last_min=5, orders_refused_last_min=7)
    (c,) = [c for c in evaluate(cfg, both) if c.rule == "ring_drops"]
    assert "5 market-data updates on the md ring" in c.message
    assert c.message.endswith(
        "; 7 commands refused on the orders ring (strategy -> gateway: the gateway is behind; "
        "orders, cancels, replaces and heartbeats not sent: a refused cancel leaves its order "
        "working)"
    )
