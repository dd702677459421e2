"""A real systemd 252 as PID 1 of a throwaway `systemd-nspawn` container, for tests.

The container boots the host's /usr with an empty volatile /etc; the units
`deploy/systemd/install` renders, a config and the checkout plus the Python
the venv links into are bound in read-only at the same paths. Tests drive it
with `Container.sh` (nsenter into all its namespaces) and reach files and
control sockets inside it from the host through `Container.path`
(/proc/<PID 1>/root/...).

How nspawn is driven here, and why, is in /work/shared/recipes/systemd-in-ci.md
(own cgroup for the launcher, --register=no --keep-unit, systemd.firstboot=off).
`booted()` skips the test, with the reason, where the container cannot run
(not root, no systemd-nspawn: run scripts/install-system-deps; or it does not
boot), and asserts on the way out that no process and no cgroup is left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

INSTALL = ROOT / "deploy" / "systemd" / "install"


def venv_prefix() -> Path:
    """The prefix whose bin/hftd the units run (the venv running these tests)."""
    for p in (Path(sys.prefix), ROOT / ".venv"):
        if os.access(p / "bin" / "hftd", os.X_OK):
            return p
    pytest.skip("no bin/hftd in this Python's prefix nor in .venv (run scripts/setup)")


def render(dest: Path, layout: str) -> Path:
    """Render the units with the real installer into `dest`."""
    r = subprocess.run(
        [
            str(INSTALL),
            "--dest",
            str(dest),
            "--prefix",
            str(venv_prefix()),
            "--layout",
            layout,
            "--no-config",
            "--no-reload",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, f"install failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    return dest


def container_binds(tmp: Path, config: Path, layout: str = "auto") -> list[tuple[Path, str]]:
    """Units rendered for `layout` into /etc/systemd/system, `config` as /etc/hftd/hftd.toml."""
    units = render(tmp / "units", layout)
    # Keep first-boot `preset-all` from enabling hft.target (the other daemons
    # would start, and a missing one would keep the boot from ever finishing).
    preset = tmp / "00-hftci.preset"
    preset.write_text("disable hft.target\ndisable hft@.service\n")
    binds = [(f, f"/etc/systemd/system/{f.name}") for f in sorted(units.iterdir())]
    binds.append((preset, "/etc/systemd/system-preset/00-hftci.preset"))
    binds.append((config, "/etc/hftd/hftd.toml"))
    # The container's systemd would mount a tmpfs on /tmp over a checkout that
    # lives there (CI clones anywhere): mask tmp.mount.
    binds.append((Path("/dev/null"), "/etc/systemd/system/tmp.mount"))
    # The checkout, and the Python the venv links into, at the same paths.
    prefixes = {ROOT, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    for p in sorted(prefixes):
        if not any(p.is_relative_to(q) for q in prefixes - {p}) and not p.is_relative_to("/usr"):
            binds.append((p, str(p)))
    return binds


# Runs as `sh -c LAUNCH sh NAME LIST EXTRA nspawn-args...`: moves itself into a
# cgroup of its own in every hierarchy a systemd uses, and in the v1 hierarchies
# EXTRA names (never start one in the root cgroup of this machine: it would take
# over every process there, PID 1 included), writing each directory to LIST
# first, then becomes systemd-nspawn. Exit 97: no cgroup of its own could be made.
LAUNCH = r"""
name=$1 list=$2 extra=$3; shift 3
moved=0
for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup $extra; do
    [ -f "$h/cgroup.procs" ] || continue
    case $h in
        /sys/fs/cgroup/systemd) cur=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup) ;;
        /sys/fs/cgroup/memory) cur=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup) ;;
        *) cur=$(sed -n 's/^0:://p' /proc/self/cgroup) ;;
    esac
    dir="$h${cur%/}/$name"
    echo "$dir" >> "$list"
    mkdir -p "$dir" && echo $$ > "$dir/cgroup.procs" || exit 97
    moved=1
done
[ $moved = 1 ] || exit 97
exec "$@"
"""


class CannotRun(Exception):
    """This machine cannot run the container (a reason to skip, not to fail)."""


class Container:
    """systemd-nspawn booting the host's /usr as a throwaway system."""

    BOOT_TIMEOUT_S = 25.0

    def __init__(self, tmp: Path, binds: list[tuple[Path, str]], memory: bool = False) -> None:
        """`memory`: the container gets a v1 memory cgroup of its own too, for
        `enable_memory` (a cgroup v2 host gives it one anyway)."""
        self.tmp = tmp
        self.memory = memory
        self.name = f"hftci-{os.getpid()}-{secrets.token_hex(3)}"
        self.binds = binds
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.cgroup_list = tmp / "cgroups"
        self.log_path = tmp / "nspawn.log"

    @property
    def cgroups(self) -> list[Path]:
        """The cgroup directories the launcher made (or was about to make)."""
        try:
            return [Path(x) for x in self.cgroup_list.read_text().split()]
        except FileNotFoundError:
            return []

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> float:
        """Launch nspawn; returns the monotonic start time."""
        args = [
            "systemd-nspawn",
            "-D",
            "/",
            "--volatile=yes",
            "-b",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            "--private-network",
            "-M",
            self.name,
            *(f"--bind-ro={src}:{dst}" for src, dst in self.binds),
            "--",
            "systemd.firstboot=off",
        ]
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    LAUNCH,
                    "sh",
                    self.name,
                    str(self.cgroup_list),
                    "/sys/fs/cgroup/memory" if self.memory else "",
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return t0

    def wait_booted(self, t0: float) -> float:
        deadline = t0 + self.BOOT_TIMEOUT_S
        state = "no PID 1 yet"
        while time.monotonic() < deadline:
            self._check_alive()
            if not self.pid1:
                self.pid1 = self._find_pid1()
            else:
                r = self.sh("systemctl", "is-system-running", timeout=5)
                state = r.stdout.strip() or r.stderr.strip()
                if state in ("running", "degraded"):
                    return time.monotonic() - t0
            time.sleep(0.05)
        jobs = self.sh("systemctl", "list-jobs", "--no-pager").stdout if self.pid1 else ""
        raise CannotRun(
            f"container did not boot in {self.BOOT_TIMEOUT_S:.1f} s (state: {state});"
            f" jobs:\n{jobs}\nlog:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """TERM nspawn (the container shuts down), then KILL whatever is left."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        deadline = time.monotonic() + 5
        while (left := self.processes()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for cg in self.cgroups:  # deepest first; cgroup directories go with rmdir only
            for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                d.rmdir()
            if cg.is_dir():
                cg.rmdir()

    def enable_memory(self) -> str:
        """Let the container's systemd enforce `MemoryMax=`; returns the cgroup version.

        cgroup v2: nothing to do where the host delegates the memory controller.
        v1 (a hybrid host, like the VMs these tests run on): nspawn mounts the memory hierarchy
        read-only inside, so systemd ignores every memory setting. It is remounted
        read-write (the container's own memory cgroup, made by the launcher) and
        systemd re-executed to see it; it then writes `MemoryMax=` as the unit's
        `memory.limit_in_bytes`, as it does on a v1 host (`MemoryHigh=` has no v1
        equivalent). CannotRun (a skip) when there is no memory controller."""
        v2 = self.sh("cat", "/sys/fs/cgroup/cgroup.controllers")
        if v2.returncode == 0 and "memory" in v2.stdout.split():
            return "v2"
        v1 = self.sh("test", "-f", "/sys/fs/cgroup/memory/cgroup.procs")
        if not self.memory or v1.returncode != 0:
            raise CannotRun("no memory cgroup controller for the container's systemd")
        r = self.sh("mount", "-o", "remount,bind,rw", "/sys/fs/cgroup/memory")
        if r.returncode != 0:
            raise CannotRun(f"cannot make the v1 memory hierarchy writable: {r.stderr}")
        r = self.sh("systemctl", "daemon-reexec", timeout=30)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + self.BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.sh("systemctl", "is-system-running", timeout=5).stdout.strip()
            if state in ("running", "degraded"):
                return "v1"
            time.sleep(0.05)
        raise CannotRun(f"systemd not back after daemon-reexec (state {state!r})")

    # --- helpers ---------------------------------------------------------------------

    def processes(self) -> set[int]:
        pids: set[int] = set()
        for cg in self.cgroups:
            for procs in cg.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(x) for x in procs.read_text().split())
        return pids

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() == 97:
            raise CannotRun(f"could not give the launcher a cgroup of its own:\n{self.log_tail()}")
        if self.proc.poll() is not None:
            raise CannotRun(
                f"systemd-nspawn exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def _find_pid1(self) -> int:
        """The container's PID 1 is the child of the nspawn process."""
        assert self.proc is not None
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                try:
                    status = Path(f"/proc/{child}/status").read_text()
                except OSError:
                    continue
                nspid = next(ln for ln in status.splitlines() if ln.startswith("NSpid:"))
                if nspid.split()[-1] == "1":
                    return int(child)
        return 0

    def sh(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-C", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def path(self, inside: str) -> Path:
        """A path inside the container, as the host reaches it (files, Unix sockets)."""
        return Path(f"/proc/{self.pid1}/root") / inside.lstrip("/")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        r = self.sh("systemctl", "show", unit, *(f"--property={p}" for p in props))
        assert r.returncode == 0, r.stderr
        return dict(ln.split("=", 1) for ln in r.stdout.splitlines() if "=" in ln)

    def journal(self, unit: str, lines: int | None = None) -> str:
        """What `unit` logged (journalctl -u)."""
        n = ["-n", str(lines)] if lines else []
        return self.sh(
            "journalctl", "-u", unit, "--no-pager", "-o", "short-monotonic", *n, timeout=30
        ).stdout

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@contextlib.contextmanager
def booted(tmp: Path, binds: list[tuple[Path, str]], memory: bool = False) -> Iterator[Container]:
    """A booted container (or a skip saying why there cannot be one); no leftovers after."""
    if os.geteuid() != 0:
        pytest.skip("systemd-nspawn needs root")
    for tool in ("systemd-nspawn", "nsenter", "systemd-analyze"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/install-system-deps installs it)")
    c = Container(tmp, binds, memory)
    try:
        t0 = c.start()
        boot_s = c.wait_booted(t0)
        print(f"\ncontainer booted in {boot_s:.2f} s")
        yield c
    except CannotRun as exc:
        pytest.skip(f"cannot run systemd in a container here: {exc}")
    finally:
        c.stop()
        assert not c.processes(), f"left running: {c.processes()}"
        assert not any(cg.exists() for cg in c.cgroups), f"cgroups left: {c.cgroups}"
