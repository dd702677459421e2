"""How long a daemon's threads waited for a CPU (the kernel's schedstat): the `cpu_wait` alert.

Why the monitor looks: a daemon starved of CPU (more runnable work than CPUs:
competing processes, a box too small for its daemons) shows nowhere else. The
latency stamps cannot see it (T1 is stamped once the hot thread runs and reads,
so the time it waited for a CPU before that is invisible to them), the control
plane still answers, nothing is dropped while the rings hold. The kernel counts
it: `/proc/<pid>/task/<tid>/schedstat` is three figures per thread, time on a
CPU (ns), time runnable but waiting on a run queue (ns, `run_delay`), and time
slices run. The monitor reads the second field of every thread of each daemon's
process with each Status answer (`read_waits`, one small read per thread: ~40
us for a daemon of four threads) and turns successive readings into a rate:
milliseconds waited per second of wall time, over a window (`WaitRate`).

Which thread: the one that waited most over the window. In a hot daemon that is
its hot thread (it wakes on every message, the trio control thread on polls);
in the exchange the trio thread that does its work. A sum over threads would
count a control thread's waiting against the hot path, and a per-process figure
(`/proc/<pid>/schedstat`) is the main thread's alone, which in the hot daemons
is the control thread. The hot thread has no name the kernel knows (CPython 3.11
does not name OS threads), so the monitor does not pick it by name.

Pure but for `read_waits`.
"""

from __future__ import annotations

import os
from collections import deque

import msgspec


class ThreadWaits(msgspec.Struct, frozen=True, kw_only=True):
    """One reading of a process's threads: run-queue wait so far per thread id (ns)."""

    pid: int
    at: float  # monotonic time of the reading
    waits: dict[int, int]  # tid -> ns runnable but waiting for a CPU, since it started


def parse_wait_ns(text: str) -> int:
    """The run-queue wait (ns) of one schedstat line: "<on cpu> <waiting> <slices>"."""
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"schedstat: expected 3 figures, got {text!r}")
    return int(fields[1])


def read_waits(pid: int, at: float, proc: str = "/proc") -> ThreadWaits | None:
    """Every thread of process `pid`, read now; None when the process is gone or the
    kernel keeps no schedstat (CONFIG_SCHED_INFO off). A thread that ends between
    the listing and its read is left out. Raises nothing."""
    base = f"{proc}/{pid}/task"
    waits: dict[int, int] = {}
    try:
        tids = os.listdir(base)
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"{base}/{tid}/schedstat", "rb") as f:
                waits[int(tid)] = parse_wait_ns(f.read().decode("ascii"))
        except (OSError, ValueError):
            continue
    return ThreadWaits(pid=pid, at=at, waits=waits) if waits else None


class WaitRate:
    """A process's readings over the last `window_s`: the mean wait per second of
    its most-waiting thread over that window.

    Readings come a poll apart (0.2-1 s); per-second figures on a busy box swing
    by half, so the rule reads the mean over a window of several seconds rather
    than insisting on every poll. A thread first seen inside the window counts
    from its first reading. Nothing until the readings span `window_s`."""

    def __init__(self) -> None:
        self.readings: deque[ThreadWaits] = deque()

    def add(self, r: ThreadWaits, window_s: float) -> None:
        """Keep `r` (a reading older than the newest is ignored) and the readings
        the window needs: every one since its start, and the last one before it."""
        if self.readings and r.at <= self.readings[-1].at:
            return
        self.readings.append(r)
        while len(self.readings) > 2 and r.at - self.readings[1].at >= window_s:
            self.readings.popleft()

    def rate(self, window_s: float) -> tuple[float, int] | None:
        """(ms waited per second, its tid) for the most-waiting thread, from the
        oldest reading kept to the newest; None while they span less than 90% of
        `window_s` (just started, or the window just grew)."""
        if len(self.readings) < 2:
            return None
        first, last = self.readings[0], self.readings[-1]
        span = last.at - first.at
        if span < 0.9 * window_s or span <= 0:
            return None
        best, who = 0.0, 0
        for tid, ns in last.waits.items():
            then = first.waits.get(tid)
            if then is None:  # born inside the window: from its first reading
                then = next((x.waits[tid] for x in self.readings if tid in x.waits), ns)
            ms_per_s = (ns - then) / 1e6 / span
            if ms_per_s > best or not who:
                best, who = ms_per_s, tid
        return max(best, 0.0), who


# --- the machine's CPU pressure (PSI) ------------------------------------------------
#
# Why this too: a thread that sleeps between messages is favoured by the scheduler,
# so under a load of busy processes each hftd thread's own wait rises only ~2x (the
# clean CI's 2-vCPU VM, 8 busy loops: 91-149 ms/s, quiet 40-60); the machine's CPU
# pressure says it plainly: the share of wall time in which some runnable thread
# waited for a CPU went from 8-36% to 88-97% under the same load. The kernel keeps
# it since 4.20 (CONFIG_PSI; off with the boot option psi=0): `/proc/pressure/cpu`,
# whose "some" line ends in total=<microseconds so far>.


def parse_pressure_us(text: str) -> int:
    """The "some" total (us) of a /proc/pressure/cpu text."""
    for line in text.splitlines():
        if line.startswith("some "):
            for field in line.split()[1:]:
                name, _, value = field.partition("=")
                if name == "total":
                    return int(value)
    raise ValueError(f"pressure: no 'some ... total=' line in {text[:80]!r}")


def read_pressure(proc: str = "/proc") -> int | None:
    """The machine's CPU pressure so far ("some", us); None without PSI. Raises nothing."""
    try:
        with open(f"{proc}/pressure/cpu", "rb") as f:
            return parse_pressure_us(f.read().decode("ascii"))
    except (OSError, ValueError):
        return None


class PressureRate:
    """Readings of the pressure total over the last `window_s`: the share of that
    window in which some thread waited for a CPU. Nothing until they span 90% of it."""

    def __init__(self) -> None:
        self.readings: deque[tuple[float, int]] = deque()  # (monotonic time, total us)

    def add(self, at: float, total_us: int, window_s: float) -> None:
        if self.readings and at <= self.readings[-1][0]:
            return
        if self.readings and total_us < self.readings[-1][1]:
            self.readings.clear()  # not the same counter (another kernel, a container move)
        self.readings.append((at, total_us))
        while len(self.readings) > 2 and at - self.readings[1][0] >= window_s:
            self.readings.popleft()

    def clear(self) -> None:
        self.readings.clear()

    def share(self, window_s: float) -> float | None:
        if len(self.readings) < 2:
            return None
        (t0, p0), (t1, p1) = self.readings[0], self.readings[-1]
        span = t1 - t0
        if span < 0.9 * window_s or span <= 0:
            return None
        return min(max((p1 - p0) / 1e6 / span, 0.0), 1.0)
