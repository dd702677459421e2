"""The embedded supervisor behind `hftd up`.

Starts the configured daemons in dependency order (each waits for the READY=1
of the daemons it names in `after`), serves NOTIFY_SOCKET itself (one
datagram socket per daemon, so the daemons have the same code path as under
systemd), restarts a daemon that exits, is killed, or goes watchdog-silent
(at once; one that keeps failing, or that refuses to run, with a growing
backoff: never abandoned while the system runs), and stops everything in
reverse order on
SIGTERM/SIGINT. Children run in their own process group so a terminal's
Ctrl-C reaches only the supervisor, which then stops them in order.

One system per run dir: the supervisor holds `<run_dir>/hftd.lock` (and each
daemon its own `<component>.lock`) for its life, so a second `hftd up` fails at
once naming the running pid, before it touches rings, sockets or journals.

Stopping always works: the first SIGTERM/SIGINT stops the daemons in reverse
order (each gets SIGTERM, then SIGKILL after `stop_timeout_s`); a second one
kills what is left at once. A daemon's stdin is a pipe from the supervisor, so
if the supervisor itself is SIGKILLed every daemon sees EOF and stops: none is
left behind trading on its own. Children are started with `python -P`, so a
directory called `hftd` in the working directory cannot stand in for the package.
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
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio

from hftd import configsource
from hftd.config import (
    HOTPATH,
    RING_EDGES,
    DaemonConfig,
    HftdConfig,
    SupervisorConfig,
    ring_name,
)
from hftd.ipc.control import request, serve_control
from hftd.ipc.ring import SHM_DIR, Ring, RingError
from hftd.msg.control import Command, DaemonStatus, Status, StatusInfo
from hftd.msg.status import GatewayDetail, StatusDetailError, decode_detail, next_step
from hftd.runtime import days
from hftd.runtime.daemon import EXIT_REFUSED, parts_of
from hftd.runtime.loglines import date_line, ready_line
from hftd.runtime.notify import FAILED_PREFIX, Notifier
from hftd.runtime.rundir import RunDirError, RunLock, ensure_private_dir, lock_holder

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
        self.status_text = ""  # the last STATUS= this run of the daemon sent
        self.started = False  # supervised at all (it may still wait for a dependency)
        self.last_recovery_ms = 0.0
        self.recoveries_ms: list[float] = []
        self.flaps = FlapDetector(scfg.flap_window_s, scfg.flap_max_restarts)
        self.scope = trio.CancelScope()
        self.spare: trio.Process | None = None  # warm standby process for the next restart
        self.first_ready = trio.Event()  # READY once, or its first start failed (settled)
        self.ever_ready = trio.Event()  # READY at least once
        self.backoff_s = 0.0  # the next retry's delay while it keeps failing
        self.stopped = trio.Event()

    def failure(self, exit_reason: str) -> str:
        """Why this run of the daemon ended: what it said (STATUS=failed: …), and how."""
        if self.status_text.startswith(FAILED_PREFIX):
            return f"{self.status_text.removeprefix(FAILED_PREFIX)} ({exit_reason})"
        return exit_reason

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
    """The daemon died or was killed by us; `args[0]` says why, `code` is its exit code."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class Supervisor:
    def __init__(self, cfg: HftdConfig, config_path: str, new_day: bool = False) -> None:
        self.cfg = cfg
        self.new_day = new_day  # `hftd up --new-day`: open a new trading day first
        self.config_path = str(Path(config_path).resolve())
        self.scfg = cfg.supervisor
        self.run_dir = cfg.system.resolved_run_dir()
        self.notify_dir = self.run_dir / "notify"
        # processes, not components: in the composite layout one `hotpath` runs
        # feed, strategy and gateway (`HftdConfig.process_order`)
        self.order = cfg.process_order()
        self.children = {n: Child(n, cfg.process_config(n), self.scfg) for n in self.order}
        self.deps = {
            n: [
                d
                for d in dict.fromkeys(cfg.host_of(a) for a in c.dcfg.after)
                if d in self.children and d != n
            ]
            for n, c in self.children.items()
        }
        self.notifier = Notifier()
        self.stopping = False
        self.killing = False  # a second signal: no more waiting for daemons to stop
        self.stop_waits: set[trio.CancelScope] = set()
        self.starting = trio.CancelScope()

    # --- control -----------------------------------------------------------------

    async def handle(self, cmd: Command) -> Any:
        if isinstance(cmd, Status):
            return [row for n in self.order for row in self._rows(n)]
        raise ValueError(f"the supervisor does not handle {type(cmd).__name__}")

    def _rows(self, name: str) -> list[DaemonStatus]:
        """A process's status rows: one per component it runs (`hotpath`: each part,
        as the split layout shows them, with `process` naming the host)."""
        st = self.children[name].status()
        parts = self.cfg.composed_parts() if name == HOTPATH else []
        if not parts:
            return [st]
        return [msgspec.structs.replace(st, name=p, process=name) for p in parts]

    # --- lifecycle ------------------------------------------------------------------

    def remove_rings(self) -> None:
        """Rings from another run (a crash, or the last clean stop) hold stale
        positions: start and end with new ones; restarts in between keep them.
        Only the rings: the journals are the trading day's records and are kept
        (`open_day`); a continued day is replayed from them, not from rings."""
        removed = remove_rings(self.cfg)
        if removed:
            log.info("removed rings of another run: %s", ", ".join(removed))

    def open_day(self) -> None:
        """Continue the current trading day, or open a new one (`--new-day`, none yet,
        or `system.trading_day_starts` passed), before any daemon starts: the
        daemons journal into whatever day CURRENT names and never roll over.

        Raises RunDirError (DayError) if the journal dir cannot be used.
        """
        day, what = days.open_day(self.cfg, new=self.new_day)
        log.info("trading day %s %s: journals in %s", day.name, what, day.path)

    def _take_run_dir(self) -> list[RunLock]:
        """Check the run dir is ours, lock it, make sure nothing of ours runs there,
        then settle the trading day.

        Raises RunDirError (AlreadyRunning, DayError) before anything is touched.
        """
        self.run_dir = ensure_private_dir(self.run_dir)
        locks = [RunLock(self.run_dir, "hftd")]
        # rings live in /dev/shm, named by prefix: two systems sharing a prefix
        # would remove and corrupt each other's rings
        locks.append(RunLock(SHM_DIR, f"{self.cfg.rings.prefix}-supervisor"))
        taken: list[RunLock] = []
        try:
            for lock in locks:
                lock.acquire()
                taken.append(lock)
            for name in [n for p in self.order for n in (p, *parts_of(p, self.cfg))]:
                pid = lock_holder(self.run_dir, name)
                if pid is not None:
                    who = f"pid {pid}" if pid else "another process"
                    raise RunDirError(
                        f"{name} is already running in {self.run_dir} ({who}, outside this "
                        "supervisor: systemd, or a daemon started by hand); stop it first"
                    )
            self.notify_dir = ensure_private_dir(self.run_dir / "notify", "notify dir")
            journals = days.journal_dir_lock(days.journal_dir(self.cfg))
            journals.acquire()
            taken.append(journals)
            self.open_day()  # under the locks: no other `hftd up` is journaling here
            # The web token is per run: a new `hftd up` makes the monitor draw a new one.
            (self.run_dir / "web.token").unlink(missing_ok=True)
            self._record_config()
        except BaseException:
            for lock in taken:
                lock.release()
            raise
        return taken

    def _record_config(self) -> None:
        """Say in the run dir which config this system runs: `hftctl --run-dir` from
        anywhere then reads the same file (hftd.configsource)."""
        try:
            configsource.record(self.run_dir, self.config_path)
        except OSError as exc:  # hftctl then needs --config: not a reason not to trade
            log.warning("cannot record the config path in %s: %s", self.run_dir, exc)

    async def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; EXIT_REFUSED if the run dir is not usable."""
        try:
            locks = self._take_run_dir()
        except RunDirError as exc:
            log.error("cannot start: %s", exc)
            self.notifier.failed(str(exc))
            return EXIT_REFUSED
        try:
            self.remove_rings()
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    await nursery.start(
                        partial(serve_control, limits=self.cfg.control),
                        self.run_dir / "supervisor.sock",
                        self.handle,
                    )
                    nursery.start_soon(self._start_all, nursery)
                    nursery.start_soon(_say_the_date)
                    async for signum in signals:
                        log.info(
                            "%s: stopping %s (again to kill them at once)",
                            signal.Signals(signum).name,
                            ", ".join(reversed(self.order)),
                        )
                        break
                    nursery.start_soon(self._kill_on_signal, signals)
                    await self._stop_all()
                    nursery.cancel_scope.cancel()
            self.remove_rings()
            configsource.forget(self.run_dir, self.config_path)
            log.info("all daemons stopped")
            return 0
        finally:
            for lock in locks:
                lock.release()

    async def _stop_all(self) -> None:
        """Stop every daemon in reverse start order; those never started need nothing."""
        self.stopping = True
        self.starting.cancel()
        for name in reversed(self.order):
            child = self.children[name]
            if child.started:
                child.scope.cancel()
                await child.stopped.wait()
            await _dismiss(child, 0.0 if self.killing else 5.0)

    async def _kill_on_signal(self, signals: Any) -> None:
        """A second SIGTERM/SIGINT while stopping: SIGKILL whatever is still alive."""
        async for signum in signals:
            log.warning("%s again: killing every daemon now", signal.Signals(signum).name)
            self.killing = True
            for scope in self.stop_waits:
                scope.cancel()

    async def _start_all(self, nursery: trio.Nursery) -> None:
        """Start each daemon once the daemons it comes after have been READY.

        Each waits on its own, so one stuck dependency holds back only what
        needs it. The supervisor itself reports READY=1 (to whoever started
        it) once every daemon is settled: READY, or failed its first start
        and retrying, or waiting for such a dependency (`hftctl status` says
        which).
        """
        with self.starting:
            async with trio.open_nursery() as starters:
                for child in self.children.values():
                    starters.start_soon(self._start_when_ready, child, nursery)
                for child in self.children.values():
                    await child.first_ready.wait()
                states = ", ".join(f"{c.name} {c.state}" for c in self.children.values())
                self.notifier.ready(states)
            await self._say_ready()

    async def _say_ready(self) -> None:
        """The start-up's last line: every daemon READY, and whether the gateway
        trades (its mode and venue session, from its Status), else what to do."""
        waiting = [c for c in self.children.values() if c.state != "ready"]
        if waiting:
            log.warning(
                "Not all components ready (%s): trading waits for them",
                "; ".join(f"{c.name} {c.state}: {c.last_error or '-'}" for c in waiting),
            )
            return
        if "gateway" not in self.cfg.start_order():
            log.info("All components ready (no gateway here: this system sends no orders).")
            return
        try:
            with trio.fail_after(5):
                reply = await request(self.run_dir / "gateway.sock", Status())
            info = msgspec.convert(reply.result, StatusInfo) if reply.ok else None
            detail = decode_detail(GatewayDetail, info.detail) if info is not None else None
        except (OSError, trio.TooSlowError, msgspec.ValidationError, StatusDetailError) as exc:
            log.warning("All components ready; the gateway's mode is unknown: %s", exc)
            return
        if detail is None:
            log.warning("All components ready; the gateway's mode is unknown: no detail yet")
            return
        enabled, line = ready_line(detail.mode, detail.venue_up, next_step(detail))
        log.log(logging.INFO if enabled else logging.WARNING, "%s", line)

    async def _start_when_ready(self, child: Child, nursery: trio.Nursery) -> None:
        for dep_name in self.deps[child.name]:
            dep = self.children[dep_name]
            while not dep.ever_ready.is_set():
                if dep.first_ready.is_set():  # it tried and is retrying: say so
                    why = dep.last_error or dep.state
                    child.state = "waiting"
                    child.last_error = f"not started: waiting for {dep_name} ({why})"
                    child.first_ready.set()
                with trio.move_on_after(0.5):
                    await dep.ever_ready.wait()
        child.started = True
        nursery.start_soon(self._supervise, child)

    async def _supervise(self, child: Child) -> None:
        died_at = 0.0
        try:
            with child.scope:
                while True:
                    try:
                        await self._run_once(child, died_at)
                    except _Died as exc:
                        died_at = time.monotonic()
                        if child.state == "ready" and (
                            died_at - child.ready_at >= self.scfg.flap_window_s
                        ):
                            child.backoff_s = 0.0  # it ran well for a while: fast again
                        child.pid = 0
                        child.last_error = child.failure(str(exc))
                        refused = exc.code == EXIT_REFUSED
                    except Exception as exc:  # our bug: report it, keep supervising the rest
                        log.exception("%s: supervisor error", child.name)
                        died_at = time.monotonic()
                        child.pid = 0
                        child.last_error = f"supervisor error: {type(exc).__name__}: {exc}"
                        refused = False
                    child.restarts += 1
                    flapping = child.flaps.record(time.monotonic())
                    if not (refused or flapping or child.backoff_s):
                        child.state = "restarting"
                        log.warning("%s %s: restarting", child.name, child.last_error)
                        await trio.sleep(self.scfg.restart_delay_s)
                        continue
                    # It keeps failing, or refuses to run (a config or environment
                    # problem): retry, ever more slowly, until someone fixes the cause.
                    child.backoff_s = min(
                        self.scfg.backoff_max_s, max(self.scfg.backoff_min_s, child.backoff_s * 2)
                    )
                    child.state = "backoff"
                    why = "refuses to run" if refused else "keeps failing"
                    log.error(
                        "%s %s: %s; retrying in %.0f s",
                        child.name,
                        child.last_error,
                        why,
                        child.backoff_s,
                    )
                    child.first_ready.set()
                    await _dismiss(child)  # no warm spare held while it cannot run
                    await trio.sleep(child.backoff_s)
        finally:
            child.state = "stopped"
            child.pid = 0
            child.stopped.set()

    async def _run_once(self, child: Child, died_at: float) -> None:
        """Run the daemon until it dies (raises _Died) or we are cancelled (stops it)."""
        path = self.notify_dir / f"{child.name}.sock"
        path.unlink(missing_ok=True)
        std = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        std.bind(str(path))
        std.setblocking(False)
        sock = trio.socket.from_stdlib_socket(std)
        env = dict(
            os.environ,
            NOTIFY_SOCKET=str(path),
            WATCHDOG_USEC=str(int(child.dcfg.watchdog_s * 1e6)),
            HFTD_SUPERVISED="1",
        )
        env.pop("WATCHDOG_PID", None)
        child.state = "starting"
        child.status_text = ""
        try:
            proc = child.spare if child.spare is not None else await self._spawn(child, env)
        except OSError as exc:
            sock.close()
            raise _Died(f"cannot start: {exc}") from exc
        child.spare = None
        assert proc.stdin is not None
        try:
            await proc.stdin.send_all(b"go\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            code = await proc.wait()  # it died while it waited (an import failed, say)
            self._drain(child, std)
            sock.close()
            raise _Died(_describe_exit(code), code) from None
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
                # what it said just before it exited (STATUS=failed: why) may not
                # have been read yet: it is in the socket's queue
                self._drain(child, std)
                raise _Died(_describe_exit(code), code)
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
                "-P",  # never import from the working directory (a folder named hftd)
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
        try:
            spare = await self._spawn(child, env)
        except OSError as exc:  # no spare then: the next restart spawns afresh
            log.warning("%s: cannot start a warm spare: %s", child.name, exc)
            return
        child.spare = spare
        if self.stopping:  # shutdown began meanwhile
            await _dismiss(child)

    async def _notifications(
        self, child: Child, sock: trio.socket.SocketType, last_ping: list[float], died_at: float
    ) -> None:
        while True:
            self._notified(child, await sock.recv(4096), last_ping, died_at)

    def _drain(self, child: Child, std: socket.socket) -> None:
        """After it exited: the STATUS= it sent last (why it stopped) may still be queued."""
        while True:
            try:
                data = std.recv(4096)
            except OSError:  # BlockingIOError: nothing more
                return
            for field in data.decode("utf-8", "replace").split("\n"):
                if field.startswith("STATUS="):
                    child.status_text = field.removeprefix("STATUS=")

    def _notified(self, child: Child, data: bytes, last_ping: list[float], died_at: float) -> None:
        """One sd_notify datagram from the daemon: READY, WATCHDOG, STATUS."""
        now = time.monotonic()
        fields = data.decode("utf-8", "replace").split("\n")
        for field in fields:
            if field.startswith("STATUS="):
                child.status_text = field.removeprefix("STATUS=")
        if "WATCHDOG=1" in fields:
            last_ping[0] = now
        if "READY=1" in fields and child.state != "ready":
            child.state = "ready"
            child.ready_at = now
            last_ping[0] = now
            child.first_ready.set()
            child.ever_ready.set()
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
                said = f" (it said: {child.status_text})" if child.status_text else ""
                raise _Died(f"not READY within {self.scfg.start_timeout_s:g} s{said}")

    async def _stop(self, child: Child, proc: trio.Process) -> None:
        """SIGTERM, then SIGKILL after stop_timeout_s (at once after a second signal)."""
        if proc.returncode is not None:
            return
        child.state = "stopping"
        proc.terminate()
        with trio.move_on_after(0.0 if self.killing else self.scfg.stop_timeout_s) as wait:
            self.stop_waits.add(wait)
            try:
                await proc.wait()
                return
            finally:
                self.stop_waits.discard(wait)
        if not self.killing:
            log.warning(
                "%s did not stop in %.0f s: killing it", child.name, self.scfg.stop_timeout_s
            )
        proc.kill()
        await proc.wait()


def remove_rings(cfg: HftdConfig) -> list[str]:
    """Unlink the hot-path rings (and doorbells) of this config's prefix.

    Only our own: a ring another user created is left in place (and logged);
    the daemons then refuse to attach to it, saying why.
    """
    removed = []
    for edge in RING_EDGES:
        name = ring_name(cfg, edge)
        try:
            Ring.unlink(name)
            removed.append(name)
        except FileNotFoundError:
            pass
        except (RingError, OSError) as exc:
            log.error("cannot remove ring %s: %s", name, exc)
    return removed


async def _say_the_date() -> None:
    """At each local midnight, the date: log lines carry the time only (hftd.runtime.log)."""
    while True:
        now = time.time()
        t = time.localtime(now)
        # the next local midnight (mktime normalizes day 32, and finds DST by itself)
        midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday + 1, 0, 0, 0, 0, 0, -1))
        await trio.sleep(max(1.0, midnight - now + 0.001))
        log.info("%s", date_line())


async def _dismiss(child: Child, wait_s: float = 5.0) -> None:
    """Send an unused spare away (EOF on its stdin ends it); SIGKILL after `wait_s`."""
    spare, child.spare = child.spare, None
    if spare is None:
        return
    with trio.CancelScope(shield=True):
        if spare.stdin is not None:
            await spare.stdin.aclose()
        with trio.move_on_after(wait_s):
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


async def run_up(cfg: HftdConfig, config_path: str, new_day: bool = False) -> int:
    """`hftd up`: supervise every enabled daemon until SIGTERM/SIGINT."""
    if not cfg.start_order():
        log.error("no daemons enabled in %s", config_path)
        return EXIT_REFUSED
    return await Supervisor(cfg, config_path, new_day=new_day).run()
