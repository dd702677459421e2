"""The `memory` alert: a daemon's memory cgroup (its systemd unit's) near its limit
(`MemoryMax=`, `MemoryHigh=`), and a restart right after read as a likely OOM kill.

tests/chaos/test_chaos_pressure.py found the monitor blind to it: a unit killed by
the kernel at its `MemoryMax=` was only "restarted (new pid)"."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hftd.config import ALERT_RULES, AlertRulesConfig, ConfigError, load_config, parse_config
from hftd.monitor import prom
from hftd.monitor.alerts import DaemonFacts, Facts, evaluate
from hftd.monitor.cgroup import (
    CgroupMemory,
    lowest_limit,
    memory_cgroup,
    parse_limit,
    parse_oom_kills,
    read_memory,
)
from hftd.monitor.model import Aggregator, Poll, memory_note
from tests.support import DEFAULT_CONFIG
from tests.unit import monitor_fixtures as fx

MIB = 2**20
V1_NO_LIMIT = "9223372036854771712\n"  # what a v1 memory.limit_in_bytes without a limit says
UNIT = "/system.slice/system-hft.slice/hft@strategy.service"

V2_EVENTS = "low 0\nhigh 12\nmax 40\noom 1\noom_kill 1\noom_group_kill 0\n"
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
HYBRID = (
    "9:name=systemd:/system.slice/system-hft.slice/hft@strategy.service\n"
    "8:pids:/\n4:memory:/system.slice/system-hft.slice/hft@strategy.service\n"
    "1:cpu,cpuacct:/\n0::/system.slice/system-hft.slice/hft@strategy.service\n"
)


def mem(used_mib: float, limit_mib: float, cgroup: str = UNIT, **kw: object) -> CgroupMemory:
    return CgroupMemory(
        cgroup=cgroup,
        used=int(used_mib * MIB),
        limit=int(limit_mib * MIB),
        limit_file=str(kw.get("limit_file", "memory.max")),
        oom_kills=int(kw.get("oom_kills", 0)),  # type: ignore[call-overload]
    )


# --- reading the cgroup files ----------------------------------------------------------


def test_which_cgroup_v1_memory_line_wins_over_the_unified_one() -> None:
    assert memory_cgroup("0::/user.slice/session-3.scope\n") == (2, "/user.slice/session-3.scope")
    assert memory_cgroup(HYBRID) == (1, UNIT)
    assert memory_cgroup("4:cpuset,memory:/a\n0::/b\n") == (1, "/a")
    # outside this cgroup namespace: nothing under /sys/fs/cgroup is that cgroup
    assert memory_cgroup("4:memory:/../..\n0::/../x\n") is None
    assert memory_cgroup("") is None
    assert memory_cgroup("9:name=systemd:/x\n") is None


def test_limits_and_oom_kills_parse() -> None:
    assert parse_limit("max\n") == 0
    assert parse_limit("104857600\n") == 100 * MIB
    assert parse_limit(V1_NO_LIMIT) == 0
    assert parse_oom_kills(V2_EVENTS) == 1
    assert parse_oom_kills(V1_OOM_CONTROL) == 3
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n") == 0  # a kernel before 4.13
    assert lowest_limit({"memory.max": 200, "memory.high": 150}) == (150, "memory.high")
    assert lowest_limit({"memory.max": 200, "memory.high": 0}) == (200, "memory.max")
    assert lowest_limit({"memory.max": 0, "memory.high": 0}) == (0, "")
    with pytest.raises(ValueError):
        parse_limit("lots")


def tree(tmp: Path, proc_cgroup: str, files: dict[str, str], pid: int = 4242) -> tuple[Path, Path]:
    """A /proc/<pid>/cgroup and cgroup files under a fake /sys/fs/cgroup."""
    proc, root = tmp / "proc", tmp / "cgroup"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(proc_cgroup)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root, proc


def test_read_v2(tmp_path: Path) -> None:
    d = UNIT.lstrip("/")
    root, proc = tree(
        tmp_path,
        f"0::{UNIT}\n",
        {
            f"{d}/memory.current": f"{92 * MIB}\n",
            f"{d}/memory.max": f"{100 * MIB}\n",
            f"{d}/memory.high": "max\n",
            f"{d}/memory.events": V2_EVENTS,
        },
    )
    m = read_memory(4242, root, proc)
    assert m == CgroupMemory(
        cgroup=UNIT, used=92 * MIB, limit=100 * MIB, limit_file="memory.max", oom_kills=1
    )
    assert m.fraction == pytest.approx(0.92)
    (root / d / "memory.high").write_text(f"{95 * MIB}\n")  # MemoryHigh= bites first
    m = read_memory(4242, root, proc)
    assert m is not None and (m.limit, m.limit_file) == (95 * MIB, "memory.high")


def test_read_v1_and_hybrid(tmp_path: Path) -> None:
    d = "memory" + UNIT
    root, proc = tree(
        tmp_path,
        HYBRID,
        {
            f"{d}/memory.usage_in_bytes": f"{50 * MIB}\n",
            f"{d}/memory.limit_in_bytes": f"{100 * MIB}\n",
            f"{d}/memory.oom_control": V1_OOM_CONTROL,
        },
    )
    m = read_memory(4242, root, proc)
    assert m == CgroupMemory(
        cgroup=UNIT,
        used=50 * MIB,
        limit=100 * MIB,
        limit_file="memory.limit_in_bytes",
        oom_kills=3,
    )
    (root / d / "memory.limit_in_bytes").write_text(V1_NO_LIMIT)
    m = read_memory(4242, root, proc)
    assert m is not None and (m.limit, m.limit_file, m.fraction) == (0, "", 0.0)


def test_read_v2_of_a_hybrid_host_under_unified(tmp_path: Path) -> None:
    d = "unified/user.slice"
    root, proc = tree(
        tmp_path,
        "0::/user.slice\n",
        {
            f"{d}/memory.current": "4096\n",
            f"{d}/memory.max": "max\n",
            f"{d}/memory.high": "max\n",
        },  # no memory.events: counted as no kills
    )
    assert read_memory(4242, root, proc) == CgroupMemory(
        cgroup="/user.slice", used=4096, limit=0, limit_file="", oom_kills=0
    )


def test_nothing_to_read_is_none_never_an_error(tmp_path: Path) -> None:
    # v2 root cgroup (no memory.current), a process gone, a hybrid host whose v2
    # hierarchy has no memory controller, junk in a file
    root, proc = tree(tmp_path, "0::/\n", {"cgroup.procs": "1\n"})
    assert read_memory(4242, root, proc) is None
    assert read_memory(999_999, root, proc) is None
    (proc / "4242" / "cgroup").write_text("4:memory:/x\n")
    (root / "memory/x").mkdir(parents=True)
    (root / "memory/x/memory.usage_in_bytes").write_text("junk\n")
    assert read_memory(4242, root, proc) is None


def test_read_this_process() -> None:
    """On the real /proc and /sys/fs/cgroup: a reading or None, never an exception."""
    m = read_memory(os.getpid())
    assert m is None or (m.used > 0 and m.limit >= 0 and m.cgroup.startswith("/"))


# --- the rule --------------------------------------------------------------------------


def facts(**memory: CgroupMemory | None) -> Facts:
    return Facts(
        monitor_age_s=100,
        daemons=[
            DaemonFacts(
                name=n, state="ready", answering=True, silent_s=0.1, ever_seen=True, memory=m
            )
            for n, m in memory.items()
        ],
    )


def test_the_rule_raises_at_the_fraction_of_the_limit() -> None:
    assert "memory" in ALERT_RULES
    assert load_config(DEFAULT_CONFIG).monitor.alerts.memory_near_limit == 0.9
    cfg = AlertRulesConfig()
    (c,) = evaluate(cfg, facts(strategy=mem(92, 100), gateway=mem(40, 100, "/gw")))
    assert (c.key, c.severity, c.threshold) == ("memory:strategy", "warning", 0.9)
    assert c.value == pytest.approx(0.92)
    assert c.message == (
        f"strategy: 92 MiB in use, 92% of its memory limit 100 MiB (memory.max of cgroup "
        f"{UNIT}): the kernel's OOM killer kills it at that limit"
    )
    assert evaluate(cfg, facts(strategy=mem(89, 100))) == []
    assert evaluate(cfg, facts(strategy=mem(90, 100))) != []  # at the fraction
    assert evaluate(cfg, facts(strategy=mem(500, 0))) == []  # no limit
    assert evaluate(cfg, facts(strategy=None)) == []  # not read
    assert evaluate(AlertRulesConfig(disabled=["memory"]), facts(strategy=mem(99, 100))) == []
    assert evaluate(AlertRulesConfig(memory_near_limit=0.5), facts(strategy=mem(60, 100)))


def test_one_alert_per_cgroup_and_what_it_says() -> None:
    shared = mem(95, 100, "/user.slice/hftd.scope", oom_kills=2)
    (c,) = evaluate(AlertRulesConfig(), facts(exchange=shared, feed=shared, monitor=shared))
    assert c.key == "memory:exchange"
    assert c.message.startswith("exchange, feed, monitor (one cgroup): 95 MiB in use")
    assert c.message.endswith("kills one of them at that limit; 2 OOM kills in it so far")
    (c,) = evaluate(AlertRulesConfig(), facts(strategy=mem(96, 100, limit_file="memory.high")))
    assert c.message.endswith(
        f"(memory.high of cgroup {UNIT}): the kernel throttles it above that limit"
    )


def test_memory_near_limit_is_checked() -> None:
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="memory_near_limit"):
            parse_config({"symbols": fx.SYMBOLS, "monitor": {"alerts": {"memory_near_limit": bad}}})


# --- the model: readings in, a restart explained ---------------------------------------


def poll_with(t: float, memory: dict[str, CgroupMemory | None], **kw: object) -> Poll:
    p = fx.poll(t, {}, **kw)  # type: ignore[arg-type]
    for name, m in memory.items():
        p.readings[name].memory = m
    return p


def test_a_restart_right_after_the_limit_reads_as_an_oom_kill() -> None:
    agg = Aggregator(fx.config())
    agg.ingest(poll_with(1.0, {"strategy": mem(40, 100)}, pids={"strategy": 500}))
    s = agg.ingest(poll_with(2.0, {"strategy": mem(93, 100)}, pids={"strategy": 500}))
    assert [a.key for a in s.alerts if a.rule == "memory"] == ["memory:strategy"]
    [h] = [d for d in s.daemons if d.name == "strategy"]
    assert (h.memory_bytes, h.memory_limit_bytes) == (93 * MIB, 100 * MIB)
    s = agg.ingest(poll_with(2.2, {"strategy": mem(99, 100)}, pids={"strategy": 500}))
    # the kernel kills it; systemd starts a new process in a new cgroup
    s = agg.ingest(poll_with(3.0, {"strategy": mem(20, 100)}, pids={"strategy": 501}))
    alerts = {a.key: a for a in s.alerts}
    assert "memory:strategy" not in alerts
    assert alerts["daemon_restarted:strategy"].message == (
        "strategy restarted 0 s ago (new pid (restarted); its memory was at 99% of its "
        "limit (99/100 MiB, memory.max) when last read: OOM-killed?)"
    )
    assert any(a.key == "memory:strategy" and a.cleared_at for a in s.alert_log)
    # a later restart far from the limit says nothing of memory
    s = agg.ingest(poll_with(4.0, {"strategy": mem(30, 100)}, pids={"strategy": 502}))
    msg = {a.key: a for a in s.alerts}["daemon_restarted:strategy"].message
    assert "memory" not in msg and "new pid" in msg


def test_a_kill_counted_in_a_cgroup_that_outlives_it() -> None:
    """`hftd up` in one limited cgroup: the supervisor restarts the daemon, the
    cgroup's oom_kill count says who did it."""
    agg = Aggregator(fx.config())
    shared = "/user.slice/hftd.scope"
    agg.ingest(
        poll_with(1.0, {"gateway": mem(85, 100, shared)}, supervisor=fx.sup(), pids={"gateway": 7})
    )
    s = agg.ingest(
        poll_with(
            2.0,
            {"gateway": mem(60, 100, shared, oom_kills=1)},
            supervisor=fx.sup(restarts={"gateway": 1}, error="killed by signal 9"),
            pids={"gateway": 8},
        )
    )
    msg = {a.key: a for a in s.alerts}["daemon_restarted:gateway"].message
    assert "killed by signal 9; OOM-killed at its memory limit (memory.max, 85/100 MiB" in msg


def test_memory_note_needs_a_limit() -> None:
    assert memory_note(None, mem(1, 100), 0.9) == ""
    assert memory_note(mem(99, 0), mem(1, 0), 0.9) == ""
    assert memory_note(mem(50, 100), mem(1, 100, "/other", oom_kills=5), 0.9) == ""


def test_prometheus_has_each_daemons_memory_and_limit() -> None:
    agg = Aggregator(fx.config())
    s = agg.ingest(poll_with(1.0, {"strategy": mem(93, 100), "gateway": mem(40, 0)}))
    text = prom.exposition(prom.make_registry(lambda: (s, agg.histograms()))).decode()
    got = {
        (x.name, x.labels["daemon"]): x.value
        for fam in text_string_to_metric_families(text)
        if fam.name.startswith("hftd_memory")
        for x in fam.samples
    }
    assert got == {
        ("hftd_memory_bytes", "strategy"): 93 * MIB,
        ("hftd_memory_limit_bytes", "strategy"): 100 * MIB,
        ("hftd_memory_bytes", "gateway"): 40 * MIB,  # no limit: no limit sample; feed: not read
    }
