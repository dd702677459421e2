"""The embedded supervisor behind `hftd up`.

Starts the configured daemons in dependency order (each waits for the READY=1
of the daemons it names in `after`), serves NOTIFY_SOCKET itself (one
datagram socket per daemon, so the daemons have the same code path as under
systemd), restarts a daemon that exits, is killed, or goes watchdog-silent,
gives up on one that flaps, and stops everything in reverse order on
SIGTERM/SIGINT. Children run in their own process group so a terminal's
Ctrl-C reaches only the supervisor, which then stops them in order.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import trio

from hftd.config import (
    RING_EDGES,
    DaemonConfig,
    HftdConfig,
    SupervisorConfig,
    gateway_journal_path,
    ring_name,
)
from hftd.exchange.journal import journal_path as exchange_journal_path
from hftd.ipc.control import serve_control
from hftd.ipc.ring import Ring
from hftd.msg.control import Command, DaemonStatus, Status
from hftd.runtime.notify import Notifier

log = logging.getLogger("hftd.supervisor")


class FlapDetector:
    """Pure: has a daemon restarted more than `limit` times within `window` seconds?"""

    def __init__(self, window: float, limit: int) -> None:
        self.window = window
        self.limit = limit
        self.times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Record a restart at `now`; True if the daemon is flapping."""
        self.times.append(now)
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        return len(self.times) > self.limit


class Child:
    """One supervised daemon."""

    def __init__(self, name: str, dcfg: DaemonConfig, scfg: SupervisorConfig) -> None:
        self.name = name
        self.dcfg = dcfg
        self.state = "stopped"
        self.pid = 0
        self.ready_at = 0.0
        self.restarts = 0
        self.last_error = ""
        self.last_recovery_ms = 0.0
        self.recoveries_ms: list[float] = []
        self.flaps = FlapDetector(scfg.flap_window_s, scfg.flap_max_restarts)
        self.scope = trio.CancelScope()
        self.spare: trio.Process | None = None  # warm standby process for the next restart
        self.first_ready = trio.Event()  # READY once, or given up on
        self.stopped = trio.Event()

    def status(self) -> DaemonStatus:
        up = time.monotonic() - self.ready_at if self.state == "ready" else 0.0
        return DaemonStatus(
            name=self.name,
            state=self.state,
            pid=self.pid,
            uptime_s=up,
            restarts=self.restarts,
            last_error=self.last_error,
            last_recovery_ms=self.last_recovery_ms,
        )


class _Died(Exception):
    """The daemon died or was killed by us; `args[0]` says why."""


class Supervisor:
    def __init__(self, cfg: HftdConfig, config_path: str) -> None:
        self.cfg = cfg
        self.config_path = str(Path(config_path).resolve())
        self.scfg = cfg.supervisor
        self.run_dir = cfg.system.resolved_run_dir()
        self.notify_dir = self.run_dir / "notify"
        self.order = cfg.start_order()
        self.children = {n: Child(n, cfg.daemons[n], self.scfg) for n in self.order}
        self.notifier = Notifier()
        self.stopping = False

    # --- control -----------------------------------------------------------------

    async def handle(self, cmd: Command) -> Any:
        if isinstance(cmd, Status):
            return [self.children[n].status() for n in self.order]
        raise ValueError(f"the supervisor does not handle {type(cmd).__name__}")

    # --- lifecycle ------------------------------------------------------------------

    def remove_rings(self) -> None:
        """`hftd up` runs a whole system, venue included, as a new trading day:
        rings and journals from another run (a crash, or the last clean stop)
        hold stale state. Start and end clean; restarts in between keep them."""
        removed = remove_rings(self.cfg)
        for path in (gateway_journal_path(self.cfg), exchange_journal_path(self.cfg)):
            if path.exists():
                path.unlink()
                removed.append(path.name)
        if removed:
            log.info("removed state of another run: %s", ", ".join(removed))

    async def run(self) -> None:
        self.notify_dir.mkdir(parents=True, exist_ok=True)
        self.remove_rings()
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await nursery.start(serve_control, self.run_dir / "supervisor.sock", self.handle)
                nursery.start_soon(self._start_all, nursery)
                async for signum in signals:
                    log.info(
                        "%s: stopping %s",
                        signal.Signals(signum).name,
                        ", ".join(reversed(self.order)),
                    )
                    break
                self.stopping = True
                for name in reversed(self.order):
                    child = self.children[name]
                    child.scope.cancel()
                    await child.stopped.wait()
                    await _dismiss(child)
                nursery.cancel_scope.cancel()
        self.remove_rings()
        log.info("all daemons stopped")

    async def _start_all(self, nursery: trio.Nursery) -> None:
        """Start each daemon once the daemons it comes after are READY.

        The supervisor itself reports READY=1 (to whoever started it) once
        every daemon was READY once.
        """
        for name in self.order:
            child = self.children[name]
            for dep in child.dcfg.after:
                await self.children[dep].first_ready.wait()
            nursery.start_soon(self._supervise, child)
        for child in self.children.values():
            await child.first_ready.wait()
        states = ", ".join(f"{c.name} {c.state}" for c in self.children.values())
        self.notifier.ready(states)

    async def _supervise(self, child: Child) -> None:
        died_at = 0.0
        try:
            with child.scope:
                while True:
                    try:
                        await self._run_once(child, died_at)
                    except _Died as exc:
                        died_at = time.monotonic()
                        child.last_error = str(exc)
                    if child.flaps.record(time.monotonic()):
                        child.state = "failed"
                        child.last_error += (
                            f"; flapping: more than {self.scfg.flap_max_restarts} restarts in "
                            f"{self.scfg.flap_window_s:.0f} s, given up"
                        )
                        log.error("%s: %s", child.name, child.last_error)
                        child.first_ready.set()
                        await trio.sleep_forever()
                    child.state = "restarting"
                    child.restarts += 1
                    log.warning("%s %s: restarting", child.name, child.last_error)
                    await trio.sleep(self.scfg.restart_delay_s)
        finally:
            if child.state != "failed":
                child.state = "stopped"
            child.pid = 0
            child.stopped.set()

    async def _run_once(self, child: Child, died_at: float) -> None:
        """Run the daemon until it dies (raises _Died) or we are cancelled (stops it)."""
        path = self.notify_dir / f"{child.name}.sock"
        path.unlink(missing_ok=True)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await sock.bind(str(path))
        env = dict(
            os.environ,
            NOTIFY_SOCKET=str(path),
            WATCHDOG_USEC=str(int(child.dcfg.watchdog_s * 1e6)),
            HFTD_SUPERVISED="1",
        )
        env.pop("WATCHDOG_PID", None)
        child.state = "starting"
        proc = child.spare if child.spare is not None else await self._spawn(child, env)
        child.spare = None
        assert proc.stdin is not None
        await proc.stdin.send_all(b"go\n")
        child.pid = proc.pid
        # The next restart uses a warm spare: interpreter up, modules imported,
        # so a restart costs the daemon's own start-up only.
        self.nursery.start_soon(self._prepare_spare, child, env)
        try:
            async with trio.open_nursery() as nursery:
                last_ping = [time.monotonic()]
                nursery.start_soon(self._notifications, child, sock, last_ping, died_at)
                nursery.start_soon(self._watchdog, child, proc, last_ping)
                code = await proc.wait()
                raise _Died(_describe_exit(code))
        except BaseExceptionGroup as group:
            died, rest = group.split(_Died)
            if died is not None and rest is None:
                raise _first(died) from None
            raise
        finally:
            sock.close()
            path.unlink(missing_ok=True)
            with trio.CancelScope(shield=True):
                await self._stop(child, proc)

    async def _spawn(self, child: Child, env: dict[str, str]) -> trio.Process:
        return await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "hftd.cli",
                child.name,
                "--config",
                self.config_path,
                "--standby",
            ],
            env=env,
            stdin=subprocess.PIPE,
            start_new_session=True,
        )

    async def _prepare_spare(self, child: Child, env: dict[str, str]) -> None:
        if child.spare is not None or self.stopping:
            return
        spare = await self._spawn(child, env)
        child.spare = spare
        if self.stopping:  # shutdown began meanwhile
            await _dismiss(child)

    async def _notifications(
        self, child: Child, sock: trio.socket.SocketType, last_ping: list[float], died_at: float
    ) -> None:
        while True:
            data = await sock.recv(4096)
            now = time.monotonic()
            fields = data.decode("utf-8", "replace").split("\n")
            if "WATCHDOG=1" in fields:
                last_ping[0] = now
            if "READY=1" in fields and child.state != "ready":
                child.state = "ready"
                child.ready_at = now
                last_ping[0] = now
                child.first_ready.set()
                if died_at:
                    child.last_recovery_ms = (now - died_at) * 1000
                    child.recoveries_ms.append(child.last_recovery_ms)
                    log.info(
                        "%s READY again (pid %d) %.0f ms after it died",
                        child.name,
                        child.pid,
                        child.last_recovery_ms,
                    )
                else:
                    log.info("%s READY (pid %d)", child.name, child.pid)

    async def _watchdog(self, child: Child, proc: trio.Process, last_ping: list[float]) -> None:
        """Kill a daemon that is silent too long, or never became ready."""
        started = time.monotonic()
        while True:
            await trio.sleep(0.05)
            now = time.monotonic()
            if child.state == "ready" and now - last_ping[0] > child.dcfg.watchdog_s:
                proc.kill()
                raise _Died(f"watchdog timeout ({child.dcfg.watchdog_s:g} s without WATCHDOG=1)")
            if child.state == "starting" and now - started > self.scfg.start_timeout_s:
                proc.kill()
                raise _Died(f"not READY within {self.scfg.start_timeout_s:g} s")

    async def _stop(self, child: Child, proc: trio.Process) -> None:
        if proc.returncode is not None:
            return
        child.state = "stopping"
        proc.terminate()
        with trio.move_on_after(self.scfg.stop_timeout_s):
            await proc.wait()
            return
        log.warning("%s did not stop in %.0f s: killing it", child.name, self.scfg.stop_timeout_s)
        proc.kill()
        await proc.wait()


def remove_rings(cfg: HftdConfig) -> list[str]:
    """Unlink the hot-path rings (and doorbells) of this config's prefix."""
    removed = []
    for edge in RING_EDGES:
        name = ring_name(cfg, edge)
        try:
            Ring.unlink(name)
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


async def _dismiss(child: Child) -> None:
    """Send an unused spare away (EOF on its stdin ends it)."""
    spare, child.spare = child.spare, None
    if spare is None:
        return
    with trio.CancelScope(shield=True):
        if spare.stdin is not None:
            await spare.stdin.aclose()
        with trio.move_on_after(5):
            await spare.wait()
        if spare.returncode is None:
            spare.kill()
            await spare.wait()


def _first(group: BaseExceptionGroup[_Died]) -> _Died:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, _Died)
    return exc


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


async def run_up(cfg: HftdConfig, config_path: str) -> int:
    """`hftd up`: supervise every enabled daemon until SIGTERM/SIGINT."""
    if not cfg.start_order():
        log.error("no daemons enabled in %s", config_path)
        return 2
    await Supervisor(cfg, config_path).run()
    return 0
