"""A daemon starved of CPU: the `cpu_wait` alert (issue 16 item 6).

Found by tests/chaos/test_chaos_pressure.py: under CPU overload the latency stamps
do not degrade (T1 is stamped once the hot thread runs and reads: the time it
waited for a CPU before that is invisible to them) and nothing else alerted. The
kernel counts that wait per thread (/proc/<pid>/task/<tid>/schedstat, second
field); the monitor reads it with each Status answer, keeps a window of readings
per process and raises `cpu_wait` when the most-waiting thread waited more than
`cpu_wait_ms_per_s` per second on average over `cpu_wait_window_s`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hftd.config import (
    ALERT_RULES,
    AlertRulesConfig,
    ConfigError,
    HftdConfig,
    load_config,
    parse_config,
)
from hftd.monitor.alerts import DaemonFacts, Facts, evaluate
from hftd.monitor.model import Aggregator, Poll
from hftd.monitor.prom import exposition, make_registry
from hftd.monitor.schedstat import (
    PressureRate,
    ThreadWaits,
    WaitRate,
    parse_pressure_us,
    parse_wait_ns,
    read_pressure,
    read_waits,
)
from tests.support import DEFAULT_CONFIG
from tests.unit import monitor_fixtures as fx

MS = 1_000_000  # ns

# --- reading /proc ---------------------------------------------------------------------------


def test_parse_the_wait_field() -> None:
    assert parse_wait_ns("244690697 35531775 1324\n") == 35531775
    with pytest.raises(ValueError, match="schedstat: expected 3 figures"):
        parse_wait_ns("")
    with pytest.raises(ValueError):
        parse_wait_ns("1 x 3")


def fake_proc(tmp: Path, pid: int, threads: dict[int, str]) -> Path:
    for tid, text in threads.items():
        d = tmp / str(pid) / "task" / str(tid)
        d.mkdir(parents=True)
        if text:
            (d / "schedstat").write_text(text)
    return tmp


def test_read_every_thread_of_a_process(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 7, {7: "10 500 3\n", 8: "20 900 4\n", 9: "", 10: "1 bad 1\n"})
    w = read_waits(7, 12.5, str(proc))
    # a thread gone between the listing and its read (9), or unreadable (10): left out
    assert w == ThreadWaits(pid=7, at=12.5, waits={7: 500, 8: 900})
    assert read_waits(99, 1.0, str(proc)) is None  # no such process: None, never an error
    assert read_waits(7, 1.0, str(tmp_path / "nowhere")) is None


def test_read_this_process() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        w = read_waits(os.getpid(), time.monotonic())
    finally:
        stop.set()
        t.join()
    assert w is not None and w.pid == os.getpid()
    assert os.getpid() in w.waits and t.native_id in w.waits
    assert all(v >= 0 for v in w.waits.values())


# --- the rate --------------------------------------------------------------------------------


def tw(at: float, **waits_ms: float) -> ThreadWaits:
    """A reading of process 1: thread t<N> has waited `ms` so far."""
    return ThreadWaits(pid=1, at=at, waits={int(k[1:]): int(v * MS) for k, v in waits_ms.items()})


def test_the_rate_is_the_most_waiting_threads_mean_over_the_window() -> None:
    r = WaitRate()
    r.add(tw(0.0, t1=0, t2=0), 5.0)
    assert r.rate(5.0) is None  # one reading
    r.add(tw(2.0, t1=100, t2=400), 5.0)
    assert r.rate(5.0) is None  # 2 s of a 5 s window: no verdict yet
    r.add(tw(4.5, t1=200, t2=900), 5.0)
    assert r.rate(5.0) == (pytest.approx(200.0), 2)  # 4.5 s >= 90% of 5 s: 900 ms / 4.5 s
    r.add(tw(4.4, t1=999, t2=999), 5.0)  # older than the newest: ignored
    assert r.rate(5.0) == (pytest.approx(200.0), 2)
    # The window slides: the reading at 0 goes once the one at 2.0 is 5 s old or more
    # (the reading just before the window's start is kept: the span is >= the window).
    r.add(tw(7.0, t1=1200, t2=1000), 5.0)
    assert [x.at for x in r.readings] == [2.0, 4.5, 7.0]
    assert r.rate(5.0) == (pytest.approx(1100 / 5.0), 1)  # t1: 1,100 ms over 5 s
    r.add(tw(9.5, t1=1300, t2=1100), 5.0)
    assert [x.at for x in r.readings] == [4.5, 7.0, 9.5]
    assert r.rate(5.0) == (pytest.approx(1100 / 5.0), 1)


def test_a_thread_born_inside_the_window_counts_from_its_first_reading() -> None:
    r = WaitRate()
    r.add(tw(0.0, t1=0), 2.0)
    r.add(tw(1.0, t1=10, t5=50), 2.0)
    r.add(tw(2.0, t1=20, t5=450), 2.0)
    assert r.rate(2.0) == (pytest.approx(200.0), 5)  # 400 ms since its first reading, / 2 s
    r.add(tw(3.0, t1=30), 2.0)  # it ended: the others still count
    assert r.rate(2.0) == (pytest.approx(10.0), 1)


# --- the rule --------------------------------------------------------------------------------


def dfacts(name: str, pid: int, ms: float | None, **kw: object) -> DaemonFacts:
    return DaemonFacts(
        name=name,
        state="ready",
        answering=True,
        silent_s=0.0,
        ever_seen=True,
        pid=pid,
        cpu_wait_ms_per_s=ms,
        cpu_wait_tid=kw.pop("tid", pid + 1),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_the_rule() -> None:
    assert "cpu_wait" in ALERT_RULES
    alerts = load_config(DEFAULT_CONFIG).monitor.alerts
    assert (alerts.cpu_wait_ms_per_s, alerts.cpu_wait_window_s) == (150.0, 5.0)
    cfg = AlertRulesConfig()
    f = Facts(monitor_age_s=100, daemons=[dfacts("exchange", 10, 190.4), dfacts("feed", 20, 80)])
    (c,) = evaluate(cfg, f)
    assert (c.key, c.severity, c.value, c.threshold) == (
        "cpu_wait:exchange",
        "warning",
        190.4,
        150.0,
    )
    assert c.message == (
        "exchange starved of CPU: its thread 11 waited 190 ms a second for a CPU over the "
        "last 5 s (more than 150): more runnable threads than CPUs, every message waits "
        "before it is read"
    )
    at = Facts(monitor_age_s=100, daemons=[dfacts("exchange", 10, 150.0)])
    assert evaluate(cfg, at) == []  # at the threshold: not more
    assert evaluate(AlertRulesConfig(cpu_wait_ms_per_s=200), f) == []
    assert evaluate(AlertRulesConfig(disabled=["cpu_wait"]), f) == []
    not_read = Facts(monitor_age_s=100, daemons=[dfacts("exchange", 10, None)])
    assert evaluate(cfg, not_read) == []
    # a daemon at SCHED_IDLE (the monitor) waits by design
    idle = Facts(monitor_age_s=100, daemons=[dfacts("monitor", 30, 900, cpu_idle_policy=True)])
    assert evaluate(cfg, idle) == []


def test_one_alert_per_process() -> None:
    """The composite hot path answers as feed, strategy and gateway: one process."""
    hot = [dfacts(n, 50, 300.0, tid=50) for n in ("feed", "strategy", "gateway")]
    (c,) = evaluate(AlertRulesConfig(), Facts(monitor_age_s=100, daemons=hot))
    assert c.key == "cpu_wait:feed"
    assert c.message.startswith(
        "feed, strategy, gateway (one process) starved of CPU: its main thread waited 300 ms"
    )


def test_the_thresholds_are_checked() -> None:
    for key, bad in (
        ("cpu_wait_ms_per_s", 0.0),
        ("cpu_wait_ms_per_s", 1001.0),
        ("cpu_wait_window_s", 0.5),
    ):
        with pytest.raises(ConfigError, match=key):
            parse_config({"symbols": fx.SYMBOLS, "monitor": {"alerts": {key: bad}}})


# --- the model: readings in, the alert, the state and /metrics out -----------------------------


def poll_with(t: float, waits_ms: dict[str, float], pids: dict[str, int] | None = None) -> Poll:
    """Every daemon answering at `t`; daemon `name`'s process has one thread (its pid + 1)
    that has waited waits_ms[name] so far (the others: nothing read)."""
    p = fx.poll(t, {}, pids=pids)
    for name, ms in waits_ms.items():
        r = p.readings[name]
        assert r.info is not None
        pid = r.info.pid
        r.cpu_wait = ThreadWaits(pid=pid, at=t, waits={pid: 0, pid + 1: int(ms * MS)})
    return p


def config(**alerts: float) -> HftdConfig:
    """The fixtures' config, the monitor at SCHED_IDLE as in default.toml."""
    daemons: dict[str, Any] = {n: {} for n in fx.PIDS}
    daemons["monitor"] = {"cpu_policy": "idle"}
    return parse_config({"symbols": fx.SYMBOLS, "daemons": daemons, "monitor": {"alerts": alerts}})


def keys(agg: Aggregator) -> set[str]:
    return {a.key for a in agg.state.alerts if a.rule == "cpu_wait"}


def health(agg: Aggregator, name: str) -> float | None:
    return next(d.cpu_wait_ms_per_s for d in agg.state.daemons if d.name == name)


def test_from_readings_to_the_alert_the_state_and_metrics() -> None:
    agg = Aggregator(config())
    # The exchange waits 250 ms a second, the feed 50; the monitor (SCHED_IDLE) 600.
    for i in range(5):
        t = 1.0 + i
        agg.ingest(poll_with(t, {"exchange": 250 * i, "feed": 50 * i, "monitor": 600 * i}))
        assert keys(agg) == set()  # less than 90% of the 5 s window read
        assert health(agg, "exchange") is None
    s = agg.ingest(poll_with(6.0, {"exchange": 1250, "feed": 250, "monitor": 3000}))
    assert keys(agg) == {"cpu_wait:exchange"}
    (a,) = (x for x in s.alerts if x.rule == "cpu_wait")
    assert a.value == pytest.approx(250.0) and "exchange starved of CPU" in a.message
    assert (health(agg, "exchange"), health(agg, "feed"), health(agg, "monitor")) == (
        250.0,
        50.0,
        600.0,
    )
    assert health(agg, "gateway") is None  # nothing read
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert 'hftd_cpu_wait_ratio{daemon="exchange"} 0.25' in text
    assert 'hftd_cpu_wait_ratio{daemon="monitor"} 0.6' in text
    assert 'hftd_cpu_wait_ratio{daemon="gateway"}' not in text
    assert 'hftd_alert_firing{alert="cpu_wait",severity="warning",subject="exchange"} 1.0' in text

    # The load gone: the mean over the window falls back under the threshold, cleared.
    for i, t in enumerate((7.0, 8.0, 9.0, 10.0), start=1):
        agg.ingest(poll_with(t, {"exchange": 1250 + 20 * i, "feed": 250, "monitor": 3000}))
    assert keys(agg) == set()
    assert any(x.key == "cpu_wait:exchange" and x.cleared_at for x in agg.state.alert_log)


def test_the_composite_hot_path_is_one_process_and_one_alert() -> None:
    agg = Aggregator(config())
    hot = {"feed": 400, "strategy": 400, "gateway": 400}
    for i in range(7):
        p = poll_with(1.0 + i, {n: ms * i for n, ms in hot.items()}, pids=dict.fromkeys(hot, 77))
        # the three readings of one process are a few ms apart; the newest counts
        p.readings["strategy"].cpu_wait = None
        s = agg.ingest(p)
    assert keys(agg) == {"cpu_wait:feed"}
    (a,) = (x for x in s.alerts if x.rule == "cpu_wait")
    assert a.message.startswith("feed, strategy, gateway (one process) starved of CPU")
    assert {health(agg, n) for n in hot} == {400.0}
    assert list(agg.cpu_waits) == [77]


def test_a_daemon_not_answering_or_restarted_says_nothing() -> None:
    """Not answering: its last reading is old, daemon_down speaks. A restart is a new
    process: its window starts again (the old one's readings are forgotten)."""
    agg = Aggregator(config())
    for i in range(7):
        agg.ingest(poll_with(1.0 + i, {"exchange": 300 * i}))
    assert keys(agg) == {"cpu_wait:exchange"}
    stale = poll_with(20.0, {})
    stale.readings["exchange"] = fx.reading("exchange", 7.0)  # answered last at 7.0
    stale.readings["exchange"].cpu_wait = ThreadWaits(pid=101, at=7.0, waits={102: 1800 * MS})
    agg.ingest(stale)
    assert keys(agg) == set() and health(agg, "exchange") is None

    for i in range(3):
        agg.ingest(poll_with(21.0 + i, {"exchange": 300 * i}, pids={"exchange": 900}))
    assert keys(agg) == set() and health(agg, "exchange") is None  # 2 s of the new one
    assert sorted(agg.cpu_waits) == [900]


def test_the_window_and_threshold_apply_live() -> None:
    agg = Aggregator(config())
    for i in range(3):
        agg.ingest(poll_with(1.0 + i, {"exchange": 120 * i}))
    assert health(agg, "exchange") is None
    agg.reconfigure(config(cpu_wait_window_s=2.0, cpu_wait_ms_per_s=100.0))
    agg.ingest(poll_with(4.0, {"exchange": 360}))
    assert health(agg, "exchange") == pytest.approx(120.0)
    assert keys(agg) == {"cpu_wait:exchange"}


# --- the machine's CPU pressure (PSI) ----------------------------------------------------------

PSI = (
    "some avg10=91.20 avg60=40.10 avg300=12.00 total=7782526418\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)


def test_parse_and_read_the_pressure(tmp_path: Path) -> None:
    assert parse_pressure_us(PSI) == 7782526418
    with pytest.raises(ValueError, match=r"no 'some \.\.\. total='"):
        parse_pressure_us("full avg10=0.00 total=5\n")
    (tmp_path / "pressure").mkdir()
    assert read_pressure(str(tmp_path)) is None  # no PSI in this kernel
    (tmp_path / "pressure" / "cpu").write_text("garbage")
    assert read_pressure(str(tmp_path)) is None
    (tmp_path / "pressure" / "cpu").write_text(PSI)
    assert read_pressure(str(tmp_path)) == 7782526418
    if os.path.exists("/proc/pressure/cpu"):  # this machine's own
        first = read_pressure()
        assert first is not None and first >= 0


def test_the_pressure_share_over_the_window() -> None:
    r = PressureRate()
    assert r.share(5.0) is None
    for i in range(5):  # 300 ms of pressure a second
        r.add(1.0 + i, 300_000 * i, 5.0)
    assert r.share(5.0) is None  # 4 s of a 5 s window
    r.add(6.0, 1_500_000, 5.0)
    assert r.share(5.0) == pytest.approx(0.3)
    for t in (7.0, 8.0, 9.0, 10.0, 11.0):  # then fully pressed: the window slides to it
        r.add(t, 1_500_000 + int((t - 6.0) * 1e6), 5.0)
    assert r.share(5.0) == pytest.approx(1.0)
    r.add(11.0, 9_999_999_999, 5.0)  # not newer: ignored
    assert r.share(5.0) == pytest.approx(1.0)
    r.add(12.0, 1, 5.0)  # a total that went back (not the same counter): starts again
    assert r.share(5.0) is None
    r.add(17.0, 1 + 2_500_000, 5.0)
    assert r.share(5.0) == pytest.approx(0.5)


def test_the_machine_rule() -> None:
    cfg = AlertRulesConfig()
    assert load_config(DEFAULT_CONFIG).monitor.alerts.cpu_pressure_max == 0.6
    daemons = [
        dfacts("exchange", 10, 90.0),
        dfacts("feed", 20, 60.0),
        dfacts("gateway", 20, 60),  # the same process as the feed (composite): once
        dfacts("monitor", 30, 850.0, cpu_idle_policy=True),  # waits by design: not named
    ]
    (c,) = evaluate(cfg, Facts(monitor_age_s=100, daemons=daemons, cpu_pressure=0.93))
    assert (c.key, c.severity, c.value, c.threshold) == ("cpu_wait:machine", "warning", 0.93, 0.6)
    assert c.message == (
        "the machine is short of CPU: some runnable thread waited for a CPU 93% of the last "
        "5 s (more than 60%; /proc/pressure/cpu): more runnable threads than CPUs; hftd's "
        "threads wait too unless they have cores of their own (its most-waiting processes: "
        "exchange 90 ms/s, feed 60 ms/s)"
    )
    # Raised, it holds down to 80% of the max (a window sliding off a load hovers there).
    held = Facts(monitor_age_s=100, daemons=daemons, cpu_pressure=0.5, cpu_pressure_raised=True)
    assert [c.key for c in evaluate(cfg, held)] == ["cpu_wait:machine"]
    below = Facts(monitor_age_s=100, daemons=daemons, cpu_pressure=0.47, cpu_pressure_raised=True)
    assert evaluate(cfg, below) == []
    for pressure in (0.6, 0.2, None):  # at the threshold, under it, no PSI
        assert evaluate(cfg, Facts(monitor_age_s=100, daemons=daemons, cpu_pressure=pressure)) == []
    pressed = Facts(monitor_age_s=100, daemons=daemons, cpu_pressure=0.93)
    assert evaluate(AlertRulesConfig(cpu_pressure_max=1.0), pressed) == []  # off
    assert evaluate(AlertRulesConfig(disabled=["cpu_wait"]), pressed) == []
    with pytest.raises(ConfigError, match="cpu_pressure_max"):
        parse_config({"symbols": fx.SYMBOLS, "monitor": {"alerts": {"cpu_pressure_max": 1.5}}})


def test_the_machine_pressure_from_polls_to_the_state_and_metrics() -> None:
    agg = Aggregator(config())
    for i in range(7):  # 800 ms of pressure a second
        p = poll_with(1.0 + i, {})
        p.cpu_pressure_us = 800_000 * i
        agg.ingest(p)
    assert keys(agg) == {"cpu_wait:machine"}
    assert agg.state.cpu_pressure == pytest.approx(0.8)
    text = exposition(make_registry(lambda: (agg.state, {}))).decode()
    assert "hftd_cpu_pressure_ratio 0.8" in text
    for i in range(7, 14):  # then none: cleared
        p = poll_with(1.0 + i, {})
        p.cpu_pressure_us = 800_000 * 6
        agg.ingest(p)
    assert keys(agg) == set() and agg.state.cpu_pressure == pytest.approx(0.0)
    for i in range(14, 21):  # pressed again, raised; then a poll with no reading
        p = poll_with(1.0 + i, {})
        p.cpu_pressure_us = 800_000 * 6 + 900_000 * (i - 13)
        agg.ingest(p)
    assert keys(agg) == {"cpu_wait:machine"}
    agg.ingest(poll_with(22.0, {}))  # PSI gone (not read): no figure, not a frozen one
    assert agg.state.cpu_pressure is None and keys(agg) == set()
    bare = Aggregator(config())  # a monitor that reads no PSI: no figure, no metric
    for i in range(7):
        bare.ingest(poll_with(1.0 + i, {}))
    assert bare.state.cpu_pressure is None
    bare_text = exposition(make_registry(lambda: (bare.state, {}))).decode()
    assert "\nhftd_cpu_pressure_ratio " not in bare_text  # the family, without a sample
