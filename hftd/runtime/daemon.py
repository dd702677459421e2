"""`run_daemon()`: what every hftd daemon stands on.

Loads and validates the config, pins the CPUs, serves the control socket
(`<run_dir>/<component>.sock`), runs the component's service, sends
READY=1 once the service says it can do its job and WATCHDOG=1 from the trio
loop, reloads on SIGHUP (and the Reload command), stops gracefully on
SIGTERM/SIGINT. A component is a `Service`; the daemon is this thin shell.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
import trio

from hftd import configsource
from hftd.config import (
    HOT_PARTS,
    HOTPATH,
    ConfigError,
    HftdConfig,
    config_diff,
    load_config,
    others_sections,
    within,
)
from hftd.ipc.control import serve_control
from hftd.ipc.ring import RingError, RingUntrustedError
from hftd.msg.control import Command, Reload, ReloadResult, Status, StatusInfo
from hftd.msg.status import Detail
from hftd.runtime import gcpolicy
from hftd.runtime.log import flush_stale, setup_logging
from hftd.runtime.notify import Notifier
from hftd.runtime.rundir import RunDirError, RunLock, ensure_private_dir

HOT_COMPONENTS = frozenset({*HOT_PARTS, HOTPATH})  # run a HotLoop


class Service(Protocol):
    """One component's work, run inside `run_daemon`."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Serve until cancelled; call task_status.started() once able to do the job."""

    def status_detail(self) -> Detail | dict[str, Any] | None:
        """Component figures for `hftctl status`, the monitor and recovery: the
        daemon's Struct of hftd/msg/status.py (a map on the wire), None while it
        has none yet; a plain dict for the daemons not typed yet."""

    async def handle(self, cmd: Command) -> Any:
        """Answer a component-specific command; raise ValueError for unknown ones."""

    def live_config(self) -> tuple[str, ...]:
        """Config path prefixes this service can apply without a restart."""

    def apply_config(self, cfg: HftdConfig) -> None:
        """Take a validated config whose changes are all within `live_config()`."""


ServiceFactory = Callable[[HftdConfig], Service]


def _as_map(detail: Detail | dict[str, Any] | None) -> dict[str, Any]:
    """A Status detail as the plain map the wire carries (readers without
    hftd.msg.status, and the control server adding ``listeners``, see a map)."""
    if detail is None:
        return {}
    if isinstance(detail, Detail):
        out: dict[str, Any] = msgspec.to_builtins(detail)
        return out
    return detail


def set_affinity(cpus: list[int], log: logging.Logger) -> None:
    """Pin this process to `cpus` (those that exist and are allowed)."""
    if not cpus:
        return
    allowed = os.sched_getaffinity(0)
    usable = sorted(set(cpus) & allowed)
    missing = sorted(set(cpus) - allowed)
    if missing:
        log.warning("cpus %s are not available here (allowed: %s)", missing, sorted(allowed))
    if usable:
        os.sched_setaffinity(0, usable)
        log.info("pinned to cpus %s", usable)


class Runtime:
    """The shell around one service: control commands, reload, status."""

    def __init__(
        self,
        component: str,
        config_path: str,
        cfg: HftdConfig,
        service: Service,
        parent: Runtime | None = None,
    ) -> None:
        self.component = component
        self.config_path = config_path
        self.cfg = cfg
        self.service = service
        self.state = "starting"
        self.started = time.monotonic()
        self.log = logging.getLogger(f"hftd.{component}")
        # A composed daemon (`hotpath`) serves each part's socket with a Runtime of
        # its own; the config is the process's, so a reload is the parent's.
        self.parent = parent
        self.parts: list[Runtime] = [
            Runtime(name, config_path, cfg, svc, self)
            for name, svc in getattr(service, "parts", {}).items()
        ]

    async def dispatch(self, cmd: Command) -> Any:
        if isinstance(cmd, Reload) and self.parent is not None:
            return self.parent.reload_part(self)
        if isinstance(cmd, Status):
            return StatusInfo(
                component=self.component,
                pid=os.getpid(),
                state=self.state,
                uptime_s=time.monotonic() - self.started,
                detail=_as_map(self.service.status_detail()),
            )
        if isinstance(cmd, Reload):
            return self.reload()
        return await self.service.handle(cmd)

    def reload_part(self, part: Runtime) -> ReloadResult:
        """A Reload sent to one part's socket (a composed process): the process
        reloads its config (the first part asked applies it; the others find it
        applied), and the part answers for its own keys: what changed since it last
        answered, other daemons' sections (its siblings' too) as ignored. So each part
        says what it applied, as the split layout's daemons do; a change the process
        refuses is refused in every part's answer (nothing was applied in any)."""
        whole = self.reload(quiet=True)
        if whole.error or whole.refused:
            return whole
        changed = config_diff(part.cfg, self.cfg)
        others = others_sections({part.component})
        part.cfg = self.cfg
        return ReloadResult(
            [p for p in changed if not within(p, others)],
            [],
            "",
            [p for p in changed if within(p, others)],
        )

    def reload(self, quiet: bool = False) -> ReloadResult:
        """Validate the file completely; apply only if every change can be live
        (`quiet`: no "no changes" line, for a part asking after a sibling)."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.log.error("reload refused, config unchanged: %s", exc)
            return ReloadResult([], [], str(exc))
        changed = config_diff(self.cfg, new)
        # what only other daemons read: theirs to apply or refuse, not ours to judge
        others = others_sections({self.component, *(p.component for p in self.parts)})
        ignored = [p for p in changed if within(p, others)]
        changed = [p for p in changed if not within(p, others)]
        live = (*self.service.live_config(), "system.log_level")
        refused = [p for p in changed if not within(p, live)]
        if refused:
            self.log.error("reload refused, these changes need a restart: %s", ", ".join(refused))
            return ReloadResult([], refused, "", ignored)
        if ignored:
            self.log.info(
                "reload: not this daemon's config, left to its owner: %s", ", ".join(ignored)
            )
        if changed:
            try:
                self.service.apply_config(new)
            except ValueError as exc:
                self.log.error("reload refused, config unchanged: %s", exc)
                return ReloadResult([], [], str(exc))
            logging.getLogger().setLevel(new.system.log_level.upper())
            self.log.info("reloaded: %s", ", ".join(changed))
        elif not ignored and not quiet:
            self.log.info("reload: no changes")
        self.cfg = new  # (ignored keys included: this daemon does not read them)
        return ReloadResult(changed, [], "", ignored)


async def _flush_stale_logs() -> None:
    """Hot threads write their log lines when idle; a hung or saturated one
    would keep them: write those that waited too long from here."""
    while True:
        await trio.sleep(0.25)
        flush_stale()


async def _signals(
    runtime: Runtime,
    notifier: Notifier,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGTERM/SIGINT stop the daemon in every state, starting included; SIGHUP reloads.

    Started before anything else, so a daemon that cannot get ready (no venue,
    a port in use) still stops when asked. Once the stop began the receiver is
    closed, so a second SIGTERM gets the default action: the process ends.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                if runtime.state == "running":
                    runtime.reload()
                else:
                    runtime.log.warning("SIGHUP while %s: reload ignored", runtime.state)
                continue
            runtime.log.info("%s: shutting down", signal.Signals(signum).name)
            runtime.state = "stopping"
            for part in runtime.parts:
                part.state = "stopping"
            notifier.stopping()
            scope.cancel()
            return


async def _watch_supervisor(runtime: Runtime, scope: trio.CancelScope) -> None:
    """Under `hftd up`, stdin is a pipe from the supervisor: EOF means it is gone
    (even SIGKILLed), and a daemon must not outlive it (an orphan would keep
    trading with nobody to stop it)."""
    while True:
        await trio.lowlevel.wait_readable(0)
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            continue
        if not data:
            runtime.log.warning("the supervisor is gone (stdin closed): shutting down")
            runtime.state = "stopping"
            scope.cancel()
            return


async def _serve(runtime: Runtime, run_dir: Path) -> None:
    notifier = Notifier()
    async with trio.open_nursery() as nursery:
        await nursery.start(_signals, runtime, notifier, nursery.cancel_scope)
        if os.environ.get("HFTD_SUPERVISED") == "1" and _stdin_is_pipe():
            nursery.start_soon(_watch_supervisor, runtime, nursery.cancel_scope)
        await nursery.start(
            partial(serve_control, limits=runtime.cfg.control),
            run_dir / f"{runtime.component}.sock",
            runtime.dispatch,
        )
        for part in runtime.parts:
            await nursery.start(
                partial(serve_control, limits=runtime.cfg.control),
                run_dir / f"{part.component}.sock",
                part.dispatch,
            )
        await nursery.start(runtime.service.run)
        # Everything allocated so far lives for the whole run: keep the
        # collector from ever walking it again mid-trading. A daemon with a hot
        # loop also moves the collector's runs to the loop's idle moments
        # (hftd.runtime.gcpolicy; the loop calls idle_collect); the others keep
        # CPython's thresholds, as nothing of theirs would collect in between.
        if runtime.component in HOT_COMPONENTS:
            gcpolicy.settle()
        else:
            gc.collect()
            gc.freeze()
        runtime.state = "running"
        for part in runtime.parts:
            part.state = "running"
        notifier.ready(f"{runtime.component} running")
        nursery.start_soon(notifier.watchdog_loop)
        nursery.start_soon(_flush_stale_logs)


def _stdin_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


_POLICIES = {"other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}


def set_cpu_policy(policy: str, log: logging.Logger) -> None:
    """Before any thread starts: threads inherit the policy of their creator."""
    if policy == "other":
        return
    try:
        os.sched_setscheduler(0, _POLICIES[policy], os.sched_param(0))
        log.info("CPU scheduling policy %s", policy)
    except OSError as exc:
        log.warning("cannot set CPU scheduling policy %s: %s", policy, exc)


class StartupError(Exception):
    """The daemon cannot do its job in this environment (a port in use, …); the
    message says what, for the log, `systemctl status` and `hftctl status`.

    `refused`: restarting cannot help until someone fixes the cause (a journal
    that is not this venue's): the daemon exits EXIT_REFUSED, not restarted.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


EXIT_FAILED: Final = 1  # could not run now; a restart may help (port in use, no venue)
EXIT_REFUSED: Final = 2  # the config or the environment forbids it; a restart will not help


def _refused(exc: BaseException) -> bool:
    """Would a restart meet the same wall? Another user's ring or run dir, a
    lock held by a running copy, a journal that cannot be replayed: yes."""
    if isinstance(exc, StartupError):
        return exc.refused
    return isinstance(exc, RunDirError | RingUntrustedError)


def describe_failure(exc: BaseException) -> str:
    """One line saying why a daemon stopped: the first real error inside `exc`."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    if isinstance(exc, StartupError | RunDirError | RingError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"


async def listen_tcp(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    host: str,
    port: int,
    what: str,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`trio.serve_tcp`, but a port that cannot be bound says which and why."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{what} port {port} on {host} is in use") from exc
        raise StartupError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from exc
    await trio.serve_listeners(handler, listeners, task_status=task_status)


def parts_of(component: str, cfg: HftdConfig) -> list[str]:
    """The components a daemon runs besides itself: the hot path's parts."""
    return cfg.composed_parts() if component == HOTPATH else []


def run_daemon(component: str, config_path: str, factory: ServiceFactory) -> int:
    """The `main` of every daemon; returns the process exit code.

    Refuses (EXIT_REFUSED) before touching anything when the config is invalid,
    the run dir is not the running user's own, or this component already runs
    there (its lock in the run dir is held); reports why it cannot run, as
    STATUS= to systemd or the supervisor, whatever stops it.
    """
    # Until the signal task takes over, a SIGHUP (reload) must not end the daemon
    # (its default action); while stopping it is ignored again.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    notifier = Notifier()
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        print(f"hftd {component}: {exc}", file=sys.stderr)
        notifier.failed(f"invalid config {exc.source}: {'; '.join(exc.errors)}")
        return EXIT_REFUSED
    log = setup_logging(component, cfg.system.log_level)
    locks: list[RunLock] = []
    try:
        run_dir = ensure_private_dir(cfg.system.resolved_run_dir())
        # a composed daemon holds its parts' locks too: none of them may run twice
        for name in (component, *parts_of(component, cfg)):
            lock = RunLock(run_dir, name)
            lock.acquire()
            locks.append(lock)
    except RunDirError as exc:
        for lock in locks:
            lock.release()
        log.error("cannot run: %s", exc)
        notifier.failed(str(exc))
        return EXIT_REFUSED
    try:
        # which config this system runs, for `hftctl --run-dir` (under systemd too)
        configsource.record(run_dir, config_path)
    except OSError as exc:
        log.warning("cannot record the config path in %s: %s", run_dir, exc)
    try:
        dcfg = cfg.process_config(component)
        set_affinity(dcfg.cpus, log)
        if dcfg.nice:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, dcfg.nice)
                log.info("niceness %d", dcfg.nice)
            except OSError as exc:  # lowering niceness needs CAP_SYS_NICE
                log.warning("cannot set niceness %d: %s", dcfg.nice, exc)
        set_cpu_policy(dcfg.cpu_policy, log)
        runtime = Runtime(component, str(Path(config_path).resolve()), cfg, factory(cfg))
        trio.run(_serve, runtime, run_dir)
    except (Exception, BaseExceptionGroup) as exc:
        reason = describe_failure(exc)
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        expected = isinstance(leaf, StartupError | RunDirError | RingError | OSError)
        log.error("cannot run: %s", reason, exc_info=None if expected else exc)
        notifier.failed(reason)
        return EXIT_REFUSED if _refused(leaf) else EXIT_FAILED
    finally:
        for lock in reversed(locks):
            lock.release()
    log.info("stopped")
    return 0
