"""Pulling the daemons' Status over their control sockets (trio).

One poller task per daemon, each asking `Status` every `interval` seconds
with its own timeout, so a daemon that hangs (stopped, wedged, swapping)
delays only its own row; the aggregator reads whatever each poller last
heard (`Reading.ok_at` says when). The embedded supervisor, when one runs,
is asked too: its restart counts and states are the authority on restarts.

Why pull, not push: the hot daemons need no client code, no extra thread and
no send path that could block; the Status handler they already serve for
`hftctl status` is the whole interface. A dead daemon is noticed because its
socket stops answering; nothing has to notice the absence of a push. Each
poller keeps its connection open (reconnecting after any failure), so a poll
costs a daemon one framed request, not an accept and a new task.

Each answer's detail is decoded here, once, into its daemon's Struct
(hftd.msg.status, `Reading.detail`): a detail that does not match it is a
failed poll whose error names the field.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import trio

from hftd.ipc.control import Connection, request
from hftd.monitor.cgroup import read_memory
from hftd.monitor.model import Reading, typed_detail
from hftd.monitor.schedstat import read_waits
from hftd.msg.control import DaemonStatus, Reply, Status, StatusInfo


class Poller:
    """The latest reading of every daemon, kept fresh by one task each."""

    def __init__(
        self,
        run_dir: Path,
        names: list[str],
        interval: float,
        timeout: float,
        keep_open: bool = True,
        memory: bool = True,
        cpu_wait: bool = True,
    ) -> None:
        """`keep_open`: keep one connection per daemon (the monitor, asking all day);
        False connects per request (the console's fallback, which owns no task to
        close them). `memory`: with each answer, read the daemon's memory cgroup
        (hftd/monitor/cgroup.py; the `memory` alert). `cpu_wait`: with each answer,
        read how long each of its threads has waited for a CPU
        (hftd/monitor/schedstat.py; the `cpu_wait` alert)."""
        self.run_dir = run_dir
        self.interval = interval
        self.timeout = timeout
        self.readings: dict[str, Reading] = {n: Reading(name=n) for n in names}
        self.supervisor: list[DaemonStatus] | None = None
        self.supervisor_at = 0.0
        self.requests = 0
        self.failures = 0
        self.keep_open = keep_open
        self.memory = memory  # read each daemon's memory cgroup (hftd/monitor/cgroup.py)
        self.cpu_wait = cpu_wait  # read its threads' run-queue wait (hftd/monitor/schedstat.py)
        self.conns = {n: Connection(run_dir / f"{n}.sock") for n in [*names, "supervisor"]}

    async def _request(self, name: str) -> Reply:
        if self.keep_open:
            return await self.conns[name].request(Status(), idempotent=True)
        return await request(self.run_dir / f"{name}.sock", Status())

    async def ask(self, name: str) -> StatusInfo:
        with trio.fail_after(self.timeout):
            reply = await self._request(name)
        if not reply.ok:
            raise RuntimeError(reply.error)
        return msgspec.convert(reply.result, StatusInfo)

    async def poll_one(self, name: str) -> None:
        """Ask once; record the answer or why there was none."""
        self.requests += 1
        r = self.readings[name]
        try:
            info = await self.ask(name)
            # a detail its Struct does not describe (a field missing, renamed or of
            # another type) is a failed poll whose error names the field
            detail = typed_detail(name, info)
        except FileNotFoundError:
            self.failures += 1
            r.error = "no control socket"
        except trio.TooSlowError:
            self.failures += 1
            r.error = f"no answer in {self.timeout:g} s"
        except Exception as exc:  # whatever a dying daemon does to a reply, keep polling
            self.failures += 1
            r.error = f"{type(exc).__name__}: {exc}"
        else:
            r.info = info
            r.detail = detail
            r.ok_at = time.monotonic()
            r.error = ""
            if self.memory:
                # its cgroup's memory and limit (a few small reads; None: none to read)
                r.memory = read_memory(info.pid)
            if self.cpu_wait:
                # its threads' time waiting for a CPU (one small read a thread)
                r.cpu_wait = read_waits(info.pid, time.monotonic())

    async def poll_supervisor(self) -> None:
        path = self.run_dir / "supervisor.sock"
        try:
            if not path.exists():
                raise FileNotFoundError(path)
            with trio.fail_after(self.timeout):
                reply = await self._request("supervisor")
            if not reply.ok:
                raise RuntimeError(reply.error)
            self.supervisor = msgspec.convert(reply.result, list[DaemonStatus])
            self.supervisor_at = time.monotonic()
        except Exception:  # no supervisor (systemd), or it is stopping: keep polling
            if time.monotonic() - self.supervisor_at > 3 * max(self.interval, self.timeout):
                self.supervisor = None  # no embedded supervisor (systemd), or it is gone

    async def _loop(self, name: str | None, offset: float) -> None:
        await trio.sleep(offset)
        while True:
            start = trio.current_time()
            if name is None:
                await self.poll_supervisor()
            else:
                await self.poll_one(name)
            await trio.sleep_until(start + self.interval)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll forever; `started` after the first round (each daemon asked once)."""
        async with trio.open_nursery() as first:
            first.start_soon(self.poll_supervisor)
            for name in self.readings:
                first.start_soon(self.poll_one, name)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                # Spread over the interval, not all at once: a poll wakes the
                # daemon's control thread, and waking every daemon together
                # puts five extra runnable threads on the CPUs the hot loops need.
                names: list[str | None] = [None, *self.readings]
                slot = self.interval / len(names)
                for i, who in enumerate(names):
                    nursery.start_soon(self._loop, who, i * slot)
        finally:
            for conn in self.conns.values():
                await conn.aclose()
