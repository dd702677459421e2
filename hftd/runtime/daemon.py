"""`run_daemon()`: what every hftd daemon stands on.

Loads and validates the config, pins the CPUs, serves the control socket
(`<run_dir>/<component>.sock`), runs the component's service, sends
READY=1 once the service says it can do its job and WATCHDOG=1 from the trio
loop, reloads on SIGHUP (and the Reload command), stops gracefully on
SIGTERM/SIGINT. A component is a `Service`; the daemon is this thin shell.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import trio

from hftd.config import ConfigError, DaemonConfig, HftdConfig, config_diff, load_config
from hftd.ipc.control import serve_control
from hftd.msg.control import Command, Reload, ReloadResult, Status, StatusInfo
from hftd.runtime.log import flush_stale, setup_logging
from hftd.runtime.notify import Notifier


class Service(Protocol):
    """One component's work, run inside `run_daemon`."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Serve until cancelled; call task_status.started() once able to do the job."""

    def status_detail(self) -> dict[str, Any]:
        """Component figures for `hftctl status`."""

    async def handle(self, cmd: Command) -> Any:
        """Answer a component-specific command; raise ValueError for unknown ones."""

    def live_config(self) -> tuple[str, ...]:
        """Config path prefixes this service can apply without a restart."""

    def apply_config(self, cfg: HftdConfig) -> None:
        """Take a validated config whose changes are all within `live_config()`."""


ServiceFactory = Callable[[HftdConfig], Service]


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

    def __init__(self, component: str, config_path: str, cfg: HftdConfig, service: Service) -> None:
        self.component = component
        self.config_path = config_path
        self.cfg = cfg
        self.service = service
        self.state = "starting"
        self.started = time.monotonic()
        self.log = logging.getLogger(f"hftd.{component}")

    async def dispatch(self, cmd: Command) -> Any:
        if isinstance(cmd, Status):
            return StatusInfo(
                component=self.component,
                pid=os.getpid(),
                state=self.state,
                uptime_s=time.monotonic() - self.started,
                detail=self.service.status_detail(),
            )
        if isinstance(cmd, Reload):
            return self.reload()
        return await self.service.handle(cmd)

    def reload(self) -> ReloadResult:
        """Validate the file completely; apply only if every change can be live."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.log.error("reload refused, config unchanged: %s", exc)
            return ReloadResult([], [], str(exc))
        changed = config_diff(self.cfg, new)
        live = (*self.service.live_config(), "system.log_level")
        refused = [p for p in changed if not any(p == x or p.startswith(x + ".") for x in live)]
        if refused:
            self.log.error("reload refused, these changes need a restart: %s", ", ".join(refused))
            return ReloadResult([], refused)
        if changed:
            try:
                self.service.apply_config(new)
            except ValueError as exc:
                self.log.error("reload refused, config unchanged: %s", exc)
                return ReloadResult([], [], str(exc))
            logging.getLogger().setLevel(new.system.log_level.upper())
            self.cfg = new
            self.log.info("reloaded: %s", ", ".join(changed))
        else:
            self.log.info("reload: no changes")
        return ReloadResult(changed, [])


async def _flush_stale_logs() -> None:
    """Hot threads write their log lines when idle; a hung or saturated one
    would keep them: write those that waited too long from here."""
    while True:
        await trio.sleep(0.25)
        flush_stale()


async def _serve(runtime: Runtime) -> None:
    notifier = Notifier()
    run_dir = runtime.cfg.system.resolved_run_dir()
    log = runtime.log
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                serve_control, run_dir / f"{runtime.component}.sock", runtime.dispatch
            )
            await nursery.start(runtime.service.run)
            # Everything allocated so far lives for the whole run: keep the
            # collector from ever walking it again mid-trading.
            gc.collect()
            gc.freeze()
            runtime.state = "running"
            notifier.ready(f"{runtime.component} running")
            nursery.start_soon(notifier.watchdog_loop)
            nursery.start_soon(_flush_stale_logs)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    runtime.reload()
                    continue
                log.info("%s: shutting down", signal.Signals(signum).name)
                runtime.state = "stopping"
                notifier.stopping()
                nursery.cancel_scope.cancel()
                break


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


def run_daemon(component: str, config_path: str, factory: ServiceFactory) -> int:
    """The `main` of every daemon; returns the process exit code."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        print(f"hftd {component}: {exc}", file=sys.stderr)
        return 2
    log = setup_logging(component, cfg.system.log_level)
    dcfg = cfg.daemons.get(component, DaemonConfig())
    set_affinity(dcfg.cpus, log)
    if dcfg.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, dcfg.nice)
            log.info("niceness %d", dcfg.nice)
        except OSError as exc:  # lowering niceness needs CAP_SYS_NICE
            log.warning("cannot set niceness %d: %s", dcfg.nice, exc)
    set_cpu_policy(dcfg.cpu_policy, log)
    runtime = Runtime(component, str(Path(config_path).resolve()), cfg, factory(cfg))
    trio.run(_serve, runtime)
    log.info("stopped")
    return 0
