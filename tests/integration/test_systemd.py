"""The systemd units, for real: static verification, then a crash under a real systemd.

1. `systemd-analyze verify` on every unit as `deploy/systemd/install` renders
   it (any output at all fails: verify exits 0 on most mistakes).
2. A throwaway systemd 252 booted as PID 1 of a `systemd-nspawn` container
   (the host's /usr, an empty volatile /etc) with the rendered units bound
   into /etc/systemd/system: start hft@exchange, SIGKILL its main process,
   and measure how long systemd takes to bring it back to READY=1.

The container is tests/nspawn.py's (how and why nspawn is driven so is in
/work/shared/recipes/systemd-in-ci.md); its test skips, with the reason, where
it cannot run (not root, no systemd-nspawn: run scripts/install-system-deps; or
the container does not boot).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.nspawn import Container, booted, container_binds, render
from tests.support import DEFAULT_CONFIG, ROOT, deep_merge, dump_toml

pytestmark = pytest.mark.integration

COMPONENTS = ("exchange", "feed", "strategy", "gateway", "monitor", "hotpath")
LAYOUTS = {  # --layout -> CPUAffinity per unit ("" = no affinity drop-in)
    "2core": {
        "exchange": "0",
        "monitor": "0",
        "feed": "1",
        "strategy": "1",
        "gateway": "1",
        "hotpath": "1",
    },
    "wide": {
        "exchange": "1",
        "monitor": "0",
        "feed": "2",
        "strategy": "3",
        "gateway": "4",
        "hotpath": "2",
    },
    "none": dict.fromkeys(COMPONENTS, ""),
}
# X after/wants Ys: the units mirror `daemons.X.after` of the default config (the
# hotpath: what its parts wait for outside it).
ORDER = {
    name: d["after"]
    for name, d in tomllib.loads(DEFAULT_CONFIG.read_text())["daemons"].items()
    if d.get("after")
} | {"hotpath": ["exchange"]}


def target_wants() -> list[str]:
    """What hft.target starts with `install --hotpath auto` on this host."""
    hot = ["feed", "strategy", "gateway"] if (os.cpu_count() or 1) >= 4 else ["hotpath"]
    return sorted(f"hft@{c}.service" for c in ("exchange", *hot, "monitor"))


RECOVERY_LIMIT_S = 5.0  # measured 0.17-0.25 s idle, up to ~1.3 s on a loaded box


def auto_layout() -> str:
    """What `install --layout auto` picks on this host."""
    n = os.cpu_count() or 1
    return "wide" if n >= 6 else "2core" if n >= 2 else "none"


def unit_paths(dest: Path) -> list[str]:
    """Each instance by explicit path (the template beside it is used), and the target."""
    return [str(dest / f"hft@{c}.service") for c in COMPONENTS] + [str(dest / "hft.target")]


# --- static ------------------------------------------------------------------------


def verify(dest: Path) -> tuple[int, str]:
    """`systemd-analyze verify` every unit in `dest`: exit code, all it printed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (package systemd)")
    r = subprocess.run(
        [analyze, "verify", "--man=no", *unit_paths(dest)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=dest,
        env=dict(os.environ, LC_ALL="C", SYSTEMD_LOG_COLOR="0"),
    )
    return r.returncode, (r.stdout + r.stderr).strip()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_rendered_units_verify_clean(tmp_path: Path, layout: str) -> None:
    code, output = verify(render(tmp_path / "units", layout))
    assert code == 0 and not output, f"systemd-analyze verify exit {code}, output:\n{output}"


def test_verify_reports_a_mistake_in_a_drop_in(tmp_path: Path) -> None:
    """The check above relies on verify printing warnings it does not fail on."""
    dest = render(tmp_path / "units", "2core")
    conf = dest / "hft@feed.service.d" / "10-affinity.conf"
    conf.write_text(conf.read_text().replace("CPUAffinity=1", "CPUAffinity=one\nCPUAfinity=1"))
    _, output = verify(dest)
    assert "CPU affinity" in output and "CPUAfinity" in output, output


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_rendered_units_layout_and_order(tmp_path: Path, layout: str) -> None:
    dest = render(tmp_path / "units", layout)
    for f in dest.rglob("*"):
        if f.is_file():
            assert "@HFTD_" not in f.read_text(), f"unrendered placeholder in {f}"
    service = (dest / "hft@.service").read_text()
    exec_start = next(ln for ln in service.splitlines() if ln.startswith("ExecStart="))
    binary = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.path.isabs(binary) and os.access(binary, os.X_OK), exec_start
    for c, cpus in LAYOUTS[layout].items():
        affinity = dest / f"hft@{c}.service.d" / "10-affinity.conf"
        if cpus:
            assert f"\nCPUAffinity={cpus}\n" in affinity.read_text()
        else:
            assert not affinity.exists()
        order = dest / f"hft@{c}.service.d" / "20-order.conf"
        if c in ORDER:
            text = order.read_text()
            units = " ".join(f"hft@{x}.service" for x in ORDER[c])
            assert f"\nAfter={units}\n" in text and f"\nWants={units}\n" in text, text
        else:
            assert not order.exists()
    wants = next(
        ln for ln in (dest / "hft.target").read_text().splitlines() if ln.startswith("Wants=")
    )
    assert sorted(wants.removeprefix("Wants=").split()) == target_wants()


def test_check_host_reports_and_exits_0() -> None:
    r = subprocess.run(
        ["/usr/bin/env", "python3", str(ROOT / "deploy" / "tuning" / "check-host")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and not r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split("|")[-1].strip() == "verdict"
    for check in (
        "CPU frequency governor",
        "kernel cmdline isolcpus",
        "kernel cmdline nohz_full",
        "transparent hugepages",
        "vm.swappiness",
        "irqbalance",
        "SMT",
        "CPUs online",
        "/dev/shm",
    ):
        row = next((ln for ln in lines if ln.startswith(check)), None)
        assert row is not None, f"no row for {check}:\n{r.stdout}"
        assert row.split("|")[-1].strip() in ("ok", "TUNE", "info"), row
    assert "internal error" not in r.stdout, r.stdout


# --- a real systemd in a container -------------------------------------------------


def nspawn_config(path: Path) -> Path:
    """config/default.toml with background flow on, for the units' /etc/hftd/hftd.toml.

    run_dir stays "" so the daemons use HFTD_RUN_DIR=/run/hftd from the unit, and
    no daemon pins itself (`cpus = []`): under systemd, CPUAffinity= pins.
    """
    data = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    over: dict[str, object] = {"system": {"run_dir": ""}, "exchange": {"flow": {"enabled": True}}}
    if isinstance(data.get("daemons"), dict):
        over["daemons"] = {name: {"cpus": []} for name in data["daemons"]}
    path.write_text(dump_toml(deep_merge(data, over)))
    return path


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    binds = container_binds(tmp_path, nspawn_config(tmp_path / "hftd.toml"))
    with booted(tmp_path, binds) as c:
        yield c


def wait_for(cond: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll `check()` until true (a condition, not a sleep), or fail saying `cond`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {cond}")
        time.sleep(0.02)


@pytest.mark.timeout(90)
def test_exchange_restarts_under_systemd(
    container: Container, record_property: Callable[[str, object], None]
) -> None:
    c = container
    unit = "hft@exchange.service"

    # The units as a real systemd parsed them: ordering, affinity, the target.
    for comp, after in ORDER.items():
        deps = c.show(f"hft@{comp}.service", "After", "Wants")
        for dep in after:
            assert f"hft@{dep}.service" in deps["After"].split(), (comp, deps)
            assert f"hft@{dep}.service" in deps["Wants"].split(), (comp, deps)
    assert "hft@exchange.service" not in c.show("hft@monitor.service", "After")["After"]
    assert sorted(c.show("hft.target", "Wants")["Wants"].split()) == target_wants()

    r = c.sh("systemctl", "start", unit, timeout=30)  # returns once READY=1 arrived
    assert r.returncode == 0, (
        r.stderr + c.sh("journalctl", "-u", unit, "--no-pager", "-n", "40").stdout
    )
    before = c.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts", "CPUAffinity")
    assert before["ActiveState"] == "active", before
    old_pid = int(before["MainPID"])
    assert old_pid > 0
    expected_cpus = LAYOUTS[auto_layout()]["exchange"]
    if expected_cpus:
        assert before["CPUAffinity"] == expected_cpus, before
        status = c.sh("cat", f"/proc/{old_pid}/status").stdout
        assert f"Cpus_allowed_list:\t{expected_cpus}\n" in status

    # Control socket in the RuntimeDirectory; the unit's /dev/shm is the shared
    # one (PrivateDevices=/PrivateTmp= must not hide it: the rings live there).
    assert c.sh("test", "-S", "/run/hftd/exchange.sock").returncode == 0
    probe = f"{c.name}-probe"
    r = c.sh(
        "sh", "-c", f"echo x > /dev/shm/{probe} && test -e /proc/{old_pid}/root/dev/shm/{probe}"
    )
    assert r.returncode == 0, "the unit does not see the shared /dev/shm"
    assert not Path("/dev/shm", probe).exists(), "the container's /dev/shm is the host's"
    assert c.sh("rm", f"/dev/shm/{probe}").returncode == 0

    # Crash it: SIGKILL to the main process only, as a segfault or OOM kill would.
    r = c.sh("systemctl", "kill", "-s", "KILL", "--kill-whom=main", unit)
    assert r.returncode == 0, r.stderr
    props = (
        "ActiveState",
        "MainPID",
        "NRestarts",
        "ActiveEnterTimestampMonotonic",
        "ActiveExitTimestampMonotonic",
        "InactiveExitTimestampMonotonic",
    )
    after: dict[str, str] = {}

    def restarted() -> bool:
        after.update(c.show(unit, *props))
        return (
            after["ActiveState"] == "active"
            and after["MainPID"] not in ("0", str(old_pid))
            and int(after["NRestarts"]) > int(before["NRestarts"])
        )

    wait_for(f"{unit} to come back with a new MainPID", restarted, timeout=15)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, after
    # Death (left "active") -> READY=1 of the new process (entered "active").
    died, ready = (
        int(after[p]) for p in ("ActiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    )
    relaunched = int(after["InactiveExitTimestampMonotonic"])  # the new ExecStart
    recovery_s = (ready - died) / 1e6
    print(
        f"hft@exchange: killed pid {old_pid}, READY again as pid {after['MainPID']}"
        f" after {recovery_s * 1000:.0f} ms (relaunched after"
        f" {(relaunched - died) / 1000:.0f} ms, start-up to READY=1"
        f" {(ready - relaunched) / 1000:.0f} ms; NRestarts {after['NRestarts']})"
    )
    record_property("recovery_ms", round(recovery_s * 1000, 1))
    assert 0 < recovery_s < RECOVERY_LIMIT_S, after
    # The runtime directory was kept across the restart, and the new daemon serves in it.
    assert c.sh("test", "-S", "/run/hftd/exchange.sock").returncode == 0


@pytest.mark.parametrize(
    ("hotpath", "units"),
    [("split", ["feed", "strategy", "gateway"]), ("composite", ["hotpath"])],
)
def test_the_target_starts_the_hot_path_layout_asked_for(
    tmp_path: Path, hotpath: str, units: list[str]
) -> None:
    from tests.nspawn import INSTALL, venv_prefix

    dest = tmp_path / "units"
    r = subprocess.run(
        [
            str(INSTALL),
            "--dest",
            str(dest),
            "--prefix",
            str(venv_prefix()),
            "--layout",
            "2core",
            "--hotpath",
            hotpath,
            "--no-config",
            "--no-reload",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    wants = next(
        ln for ln in (dest / "hft.target").read_text().splitlines() if ln.startswith("Wants=")
    )
    assert sorted(wants.removeprefix("Wants=").split()) == sorted(
        f"hft@{c}.service" for c in ("exchange", *units, "monitor")
    )
    bad = subprocess.run(
        [str(INSTALL), "--dest", str(dest), "--hotpath", "both", "--no-config", "--no-reload"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "unknown --hotpath both" in bad.stderr
