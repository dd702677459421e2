"""Chaos under a real systemd: SIGKILL every hft@ unit in turn while trading.

The scenario of test_chaos_supervisor.py, with systemd 252 as the supervisor:
a throwaway `systemd-nspawn` container (tests/nspawn.py) runs the units
`deploy/systemd/install` renders, hft@exchange, hft@feed, hft@gateway and
hft@strategy, reading /etc/hftd/hftd.toml with run_dir and journal_dir "" so
they use the units' HFTD_RUN_DIR=/run/hftd (RuntimeDirectory=, kept across
restarts: the control sockets) and HFTD_JOURNAL_DIR=/var/lib/hftd/journal (the
trading day's journals). Each unit is killed with
`systemctl kill -s KILL --kill-whom=main`, as a crash would kill it, and must
be READY=1 again quickly (systemd's ActiveEnter - ActiveExit timestamps), and
trading must go on. Afterwards, halted via `hftctl` inside the container, the
gateway's positions, P&L and fills must equal the exchange's own record.

Skips, with the reason, where the container cannot run (see tests/nspawn.py).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hftd.ipc.control import request_sync
from hftd.msg.control import Snapshot, Status
from tests.integration.test_trading import STRATEGIES
from tests.nspawn import Container, booted, container_binds, venv_prefix
from tests.support import ROOT, assert_gateway_matches_venue, deep_merge, dump_toml

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ORDER = ["exchange", "feed", "gateway", "strategy"]  # hft@monitor is not part of this
RUN_DIR = "/run/hftd"  # the units' RuntimeDirectory= and HFTD_RUN_DIR
JOURNAL_DIR = "/var/lib/hftd/journal"  # the units' HFTD_JOURNAL_DIR (StateDirectory=)
BUDGET_S = 135.0  # every wait below shares this; pytest-timeout (150 s) is the backstop
# SIGKILL -> READY=1 again: RestartSec=100ms + ~30 ms to relaunch, then Python
# start-up. Measured on a 2-vCPU box: p50 0.5-0.6 s, max 0.6-0.9 s, but up to 1.26 s
# while other test runs loaded it (the supervisor: ~0.45 s). 1 s would be flaky
# here; a quiet box can ask for it with HFTD_CHAOS_SYSTEMD_LIMIT_S=1.
RECOVERY_LIMIT_S = float(os.environ.get("HFTD_CHAOS_SYSTEMD_LIMIT_S", "2.0"))
KILL_PROPS = (
    "ActiveState",
    "SubState",
    "MainPID",
    "NRestarts",
    "ActiveExitTimestampMonotonic",
    "InactiveExitTimestampMonotonic",
    "ActiveEnterTimestampMonotonic",
)


UNITS = {  # layout -> the units killed in turn
    "split": ORDER,
    "composite": ["exchange", "hotpath"],  # feed, strategy, gateway in one process
}


def chaos_config(path: Path, ring_prefix: str, layout: str = "split") -> Path:
    """default.toml as test_chaos_supervisor.py runs it, for the units' /etc/hftd/hftd.toml.

    run_dir and journal_dir "" (the units set HFTD_RUN_DIR and HFTD_JOURNAL_DIR:
    the journals go in <journal_dir>/<day>/), no daemon pins itself (`cpus = []`:
    under systemd, CPUAffinity= pins); daemons other than the four (hft@monitor)
    are not started, and disabled so hftctl skips them.
    """
    data = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    over: dict[str, Any] = {
        "system": {"run_dir": "", "journal_dir": ""},
        "exchange": {"flow": {"enabled": True, "arrival_rate_per_s": 120.0}},
        "gateway": {"strategy_timeout_s": 0.5},
        "strategy": {"instances": STRATEGIES},
        "rings": {"prefix": ring_prefix},
        "hotpath": {"layout": layout},
    }
    if isinstance(data.get("daemons"), dict):  # hftctl lists the enabled ones: these four
        over["daemons"] = {name: {"cpus": [], "enabled": name in ORDER} for name in data["daemons"]}
    path.write_text(dump_toml(deep_merge(data, over)))
    return path


class Desk:
    """The four daemons in the container, seen from the host, within one time budget."""

    def __init__(self, c: Container) -> None:
        self.c = c
        self.deadline = time.monotonic() + BUDGET_S

    def wait_for(
        self,
        what: str,
        pred: Callable[[], Any],
        timeout: float,
        why: Callable[[], str] = lambda: "",
    ) -> Any:
        """Poll `pred()` until truthy (OSError: a daemon between lives), or fail saying `what`."""
        end = min(time.monotonic() + timeout, self.deadline)
        while True:
            try:
                last = pred()
            except OSError:
                last = None
            if last:
                return last
            if time.monotonic() > end:
                pytest.fail(
                    f"timed out after {timeout} s (or the test's {BUDGET_S} s budget)"
                    f" waiting for {what}; {why()}\n{self.journals(60)}"
                    f"\nthe whole journal: {self.save_journal()}"
                )
            time.sleep(0.02)

    def ask(self, name: str, cmd: Any) -> Any:
        """A control-socket request to a daemon in the container; None if it refuses."""
        reply = request_sync(self.c.path(f"{RUN_DIR}/{name}.sock"), cmd, timeout=2.0)
        return reply.result if reply.ok else None

    def detail(self, name: str) -> dict[str, Any] | None:
        res = self.ask(name, Status())
        return None if res is None else res["detail"]

    def fills(self) -> int:
        d = self.detail("gateway")
        return -1 if d is None else int(d["fills"])

    def wait_trading(self, what: str, timeout: float) -> None:
        """Wait for the gateway's fills counter to grow past its first answer."""
        first: list[int] = []

        def grew() -> bool:
            n = self.fills()
            if n >= 0 and not first:
                first.append(n)
            return bool(first) and n > first[0]

        def why() -> str:  # e.g. the breaker tripped: an outage longer than its limits
            try:
                d = self.detail("gateway") or {}
            except OSError as exc:
                return f"gateway: {exc}"
            return f"gateway mode {d.get('mode')}, breaker {d.get('breaker')}, fills {first}"

        self.wait_for(what, grew, timeout, why)

    def snapshot(self) -> dict[str, Any]:
        snap = self.ask("exchange", Snapshot("HFTD"))
        assert snap is not None, "exchange refused Snapshot"
        return dict(snap)

    def hftctl(self, *args: str) -> tuple[int, str]:
        r = self.c.sh(
            str(venv_prefix() / "bin" / "hftctl"),
            "--config",
            "/etc/hftd/hftd.toml",
            "--run-dir",
            RUN_DIR,
            *args,
            timeout=30,
        )
        return r.returncode, r.stdout + r.stderr

    def journals(self, lines: int) -> str:
        """The last `lines` of each unit's log (risk rejects left out: halted, they flood it)."""
        out = []
        for n in [*ORDER, "hotpath"]:  # whichever of them ran (layout split or composite)
            log = [
                ln
                for ln in self.c.journal(f"hft@{n}.service").splitlines()
                if "risk REJECT" not in ln
            ]
            out.append(f"--- hft@{n}\n" + "\n".join(log[-lines:]))
        return "\n".join(out)

    def save_journal(self) -> Path:
        """The container's whole journal, kept in the test's tmp_path for a post-mortem."""
        path = self.c.tmp / "journal.txt"
        path.write_text(
            self.c.sh("journalctl", "--no-pager", "-o", "short-monotonic", timeout=30).stdout
        )
        return path

    def kill(self, name: str) -> float:
        """SIGKILL the unit's main process; wait until systemd has it READY again.

        Returns the recovery time: death (left "active") -> READY=1 of the new
        process (entered "active again"), from systemd's monotonic timestamps.
        """
        unit = f"hft@{name}.service"
        before = self.c.show(unit, *KILL_PROPS)
        assert before["ActiveState"] == "active", before
        t_kill_us = time.monotonic() * 1e6  # CLOCK_MONOTONIC: no time namespace in nspawn
        r = self.c.sh("systemctl", "kill", "-s", "KILL", "--kill-whom=main", unit)
        assert r.returncode == 0, r.stderr
        after: dict[str, str] = {}

        def back() -> bool:
            after.update(self.c.show(unit, *KILL_PROPS))
            return (
                after["ActiveState"] == "active"
                and after["MainPID"] not in ("0", before["MainPID"])
                and int(after["NRestarts"]) > int(before["NRestarts"])
            )

        self.wait_for(f"{unit} back with a new MainPID", back, 20)
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
        died, relaunched, ready = (
            int(after[p])
            for p in (
                "ActiveExitTimestampMonotonic",
                "InactiveExitTimestampMonotonic",
                "ActiveEnterTimestampMonotonic",
            )
        )
        assert t_kill_us <= died < ready <= time.monotonic() * 1e6, (t_kill_us, after)
        recovery = (ready - died) / 1e6
        print(
            f"  {unit:22s} pid {before['MainPID']:>4} -> {after['MainPID']:>4}:"
            f" READY again after {recovery * 1000:4.0f} ms"
            f" (relaunch {(relaunched - died) / 1000:3.0f} ms +"
            f" start-up {(ready - relaunched) / 1000:4.0f} ms)"
        )
        return recovery


@pytest.mark.timeout(150)
@pytest.mark.parametrize("layout", sorted(UNITS))
def test_kill_every_unit_repeatedly_nothing_lost(
    tmp_path: Path, record_property: Callable[[str, object], None], layout: str
) -> None:
    rounds = int(os.environ.get("HFTD_CHAOS_ROUNDS", "2"))
    ring_prefix = f"hftd-sd{os.getpid()}"
    cfg = chaos_config(tmp_path / "hftd.toml", ring_prefix, layout)
    try:
        with booted(tmp_path, container_binds(tmp_path, cfg)) as c:
            run_chaos(c, rounds, ring_prefix, record_property, UNITS[layout])
    finally:
        # The rings lived in the container's own /dev/shm, never the host's.
        leftovers = sorted(p.name for p in Path("/dev/shm").glob(f"{ring_prefix}-*"))
        assert not leftovers, f"left in the host's /dev/shm: {leftovers}"


def run_chaos(
    c: Container,
    rounds: int,
    ring_prefix: str,
    record_property: Callable[[str, object], None],
    kill: list[str],
) -> None:
    desk = Desk(c)
    units = [f"hft@{n}.service" for n in kill]
    t0 = time.monotonic()
    r = c.sh("systemctl", "start", *units, timeout=60)  # returns once each sent READY=1
    assert r.returncode == 0, r.stderr + desk.journals(40)
    print(f"{len(units)} units READY in {time.monotonic() - t0:.2f} s")
    desk.wait_for("trading (>= 10 gateway fills)", lambda: desk.fills() >= 10, 60)
    print(f"trading after {time.monotonic() - t0:.2f} s")

    # Both journals are in the day the first unit opened; every restart continues it.
    day = c.path(f"{JOURNAL_DIR}/CURRENT").read_text().strip()
    journals = {n: c.path(f"{JOURNAL_DIR}/{day}/{n}.journal") for n in ("gateway", "exchange")}
    inodes = {n: p.stat().st_ino for n, p in journals.items()}
    sizes = {n: p.stat().st_size for n, p in journals.items()}
    assert all(sizes.values()), sizes

    recoveries: dict[str, list[float]] = {n: [] for n in kill}
    for i in range(rounds):
        print(f"round {i + 1}:")
        for name in kill:
            recoveries[name].append(desk.kill(name))
            # Let it trade a little between kills (and the strategy resync).
            desk.wait_trading(f"trading after the {name} restart", 30)
    everything = [s for v in recoveries.values() for s in v]
    for name, v in recoveries.items():
        print(f"hft@{name:9s} SIGKILL -> READY: " + ", ".join(f"{s * 1000:.0f}" for s in v) + " ms")
    p50, worst = statistics.median(everything), max(everything)
    print(
        f"all units: p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
        f" over {len(everything)} kills (limit {RECOVERY_LIMIT_S * 1000:.0f} ms)"
    )
    record_property("recovery_p50_ms", round(p50 * 1000, 1))
    record_property("recovery_max_ms", round(worst * 1000, 1))
    assert worst < RECOVERY_LIMIT_S, recoveries

    for n, p in journals.items():
        st = p.stat()
        assert st.st_ino == inodes[n], f"{n}.journal was replaced across restarts"
        assert st.st_size > sizes[n], f"{n}.journal did not grow: {sizes[n]} -> {st.st_size}"
    assert c.path(f"{JOURNAL_DIR}/CURRENT").read_text().strip() == day, "a unit changed the day"

    # hftctl inside the container finds the daemons in /run/hftd, restarts from systemd.
    code, out = desk.hftctl("status", "--json")
    assert code == 0, out
    status = json.loads(out)
    assert status["source"] == "daemons", status
    daemons = {d["name"]: d for d in status["daemons"]}
    for name in ORDER:
        assert daemons[name]["state"] == "ready", daemons[name]
        assert daemons[name]["restarts"] == rounds, daemons[name]

    # Stop trading, then compare with the venue's own record.
    code, out = desk.hftctl("halt", "--yes")
    assert code == 0, out

    seen: dict[str, Any] = {}

    def settled() -> bool:
        seen["working"] = (desk.detail("gateway") or {"working": "?"})["working"]
        seen["open_orders"] = desk.snapshot()["open_orders"]
        return not seen["working"] and not seen["open_orders"]

    desk.wait_for("nothing working anywhere", settled, 15, lambda: f"last seen: {seen}")
    gw = desk.detail("gateway")
    assert gw is not None
    snap = desk.snapshot()
    assert not snap["open_orders"], "zombie orders at the venue"
    assert_gateway_matches_venue(gw, snap)
    print(f"{gw['fills']} fills, realized {gw['positions']['realized']}, matches the venue")
    log = c.journal(f"hft@{'gateway' if 'gateway' in kill else 'hotpath'}.service")
    assert "reconciliation mismatch" not in log, log[-4000:]
    # The rings are in the container's /dev/shm, shared by every unit.
    assert c.path(f"/dev/shm/{ring_prefix}-orders").exists()
