"""A daemon's memory against the limit of its cgroup (systemd `MemoryMax=`, `MemoryHigh=`).

Why the monitor looks: under systemd each daemon is a unit with a cgroup of its
own, and a unit given `MemoryMax=` is killed by the kernel's OOM killer when it
reaches it (systemd then restarts it); one given `MemoryHigh=` (cgroup v2) is
throttled and reclaimed hard above it. Nothing in a daemon's own figures says it
is close: the cgroup's files do. The monitor reads them for each daemon's pid at
each poll (`read_memory`, a handful of small reads) and raises `memory` when one
is near its limit; a restart right after is reported as a likely OOM kill
(hftd/monitor/model.py). A cgroup with no limit (every daemon of `hftd up` in a
shell's cgroup, usually) reads as limit 0 and raises nothing.

Both layouts the kernel has:

- cgroup v2 (unified; Debian 12 and most hosts now): `/proc/<pid>/cgroup` has
  `0::/system.slice/system-hft.slice/hft@strategy.service`; its directory under
  /sys/fs/cgroup has `memory.current`, `memory.max` and `memory.high` ("max" =
  none) and `memory.events` (`oom_kill N`).
- cgroup v1 (legacy or hybrid: the memory controller on a hierarchy of its own):
  `N:memory:/path`, under /sys/fs/cgroup/memory: `memory.usage_in_bytes`,
  `memory.limit_in_bytes` (no limit reads as ~2^63) and `memory.oom_control`
  (`oom_kill N`). systemd maps `MemoryMax=` to `memory.limit_in_bytes` there;
  `MemoryHigh=` has no v1 equivalent.

systemd removes a unit's cgroup when its process dies and makes a new one for
the restart, so a kill's `oom_kill` count goes with the old cgroup: the reading
before the death (near the limit) is what tells an OOM kill from another death.
Everything but `read_memory` is pure.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 says "no limit" as the largest page count times the page size: ~2^63.
# Anything from 2^62 bytes (4 EiB) up is no limit.
NO_LIMIT = 1 << 62


class CgroupMemory(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of a daemon's memory cgroup."""

    cgroup: str  # its path in the hierarchy ("/system.slice/.../hft@strategy.service")
    used: int  # bytes charged to it (memory.current, memory.usage_in_bytes): page cache too
    limit: int  # bytes: the lowest of its limits (0 = none)
    limit_file: str  # the file that limit comes from (memory.max, memory.high, ...)
    oom_kills: int  # processes the OOM killer killed in it (since the cgroup was made)

    @property
    def fraction(self) -> float:
        """`used` over `limit` (0 without a limit)."""
        return self.used / self.limit if self.limit else 0.0


def memory_cgroup(proc_cgroup: str) -> tuple[int, str] | None:
    """(1, path) for a v1 memory controller line of /proc/<pid>/cgroup, else (2, path)
    of the unified line; None for neither, or a path outside this cgroup namespace
    (`/../..`: nothing under /sys/fs/cgroup here is that cgroup)."""
    unified = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if ".." in path.split("/"):
            continue
        if "memory" in controllers.split(","):
            return 1, path
        if parts[0] == "0" and controllers == "":
            unified = (2, path)
    return unified


def parse_limit(text: str) -> int:
    """A limit file's bytes; 0 for none ("max", or v1's ~2^63)."""
    value = text.strip()
    if value == "max":
        return 0
    n = int(value)
    return 0 if n >= NO_LIMIT else n


def parse_oom_kills(text: str) -> int:
    """The `oom_kill N` line of memory.events (v2) or memory.oom_control (v1); 0 without one
    (a kernel older than 4.13 does not count them)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def lowest_limit(limits: dict[str, int]) -> tuple[int, str]:
    """The lowest non-zero limit and its file's name; (0, "") for none."""
    set_ = [(v, k) for k, v in sorted(limits.items()) if v > 0]
    return min(set_) if set_ else (0, "")


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii")


def read_memory(
    pid: int, root: Path = CGROUP_ROOT, proc: Path = Path("/proc")
) -> CgroupMemory | None:
    """Process `pid`'s memory cgroup, read now; None where there is none to read (no
    memory controller, the root cgroup of v2, the process gone). Raises nothing."""
    try:
        found = memory_cgroup(_read(proc / str(pid) / "cgroup"))
        if found is None:
            return None
        version, path = found
        rel = path.lstrip("/")
        if version == 1:
            d = root / "memory" / rel
            used = int(_read(d / "memory.usage_in_bytes"))
            limits = {"memory.limit_in_bytes": parse_limit(_read(d / "memory.limit_in_bytes"))}
            events = d / "memory.oom_control"
        else:
            # v2 at the root of /sys/fs/cgroup, or (hybrid) at unified/, where the
            # memory controller is attached only if nothing claimed it for v1
            found_dir = [
                p for p in (root / rel, root / "unified" / rel) if (p / "memory.current").exists()
            ]
            if not found_dir:
                return None
            d = found_dir[0]
            used = int(_read(d / "memory.current"))
            limits = {f: parse_limit(_read(d / f)) for f in ("memory.max", "memory.high")}
            events = d / "memory.events"
        limit, limit_file = lowest_limit(limits)
        try:
            oom = parse_oom_kills(_read(events))
        except FileNotFoundError:
            oom = 0
        return CgroupMemory(
            cgroup=path, used=used, limit=limit, limit_file=limit_file, oom_kills=oom
        )
    except (OSError, ValueError):
        return None
