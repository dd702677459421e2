"""The monitor daemon (`hft@monitor`): a thin trio shell around the pure monitor.

Every `monitor.poll_interval_s` it hands the pollers' latest readings
(`hftd.monitor.poll`) to the `Aggregator` (`hftd.monitor.model`), logs the
alerts raised and cleared, and wakes the web page's event streams. It serves:

- its control socket (by `run_daemon`): `Status` detail carries the
  aggregated state under ``state`` (what `hftctl console` shows);
- the web dashboard, `/metrics`, `/api/state`, `/events` and the action
  endpoint on `monitor.web_host:web_port` (loopback by default), and
  `/metrics` alone on `monitor.metrics_port` if set.

A port that cannot be bound (another monitor, another program) is logged
and retried every few seconds: the monitor keeps watching, alerting and
feeding the console; its Status says what is wrong.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgspec
import trio

from hftd.config import COMPONENTS, HftdConfig
from hftd.ctl.registry import VERBS, execute_async
from hftd.monitor import prom
from hftd.monitor.model import Aggregator, Poll, Reading
from hftd.monitor.poll import Poller
from hftd.monitor.state import SystemState, without_history
from hftd.monitor.web import WebApp, serve_web
from hftd.msg.control import Command, Reply, StatusInfo

log = logging.getLogger("hftd.monitor")

BIND_RETRY_S = 5.0
TAIL_POINTS = 5


def watched(cfg: HftdConfig, me: str = "monitor") -> list[str]:
    """The daemons to watch: every enabled one but `me`, in pipeline order."""
    order = {n: i for i, n in enumerate(COMPONENTS)}
    return sorted((n for n in cfg.start_order() if n != me), key=lambda n: order.get(n, 99))


class MonitorService:
    def __init__(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        self.names = watched(cfg)
        self.agg = Aggregator(cfg)
        self.state = SystemState()
        self.started = time.monotonic()
        self.poller: Poller | None = None
        self.registry = prom.make_registry(lambda: (self.state, self.agg.histograms()))
        self.web: dict[str, str] = {}  # listener name -> URL or "error: ..."
        self.tick_ms = 0.0
        self.latency_ms = 0.0  # the last latency refresh, wall time over all its steps
        self._json: dict[str, bytes] = {}

    # --- serving --------------------------------------------------------------------

    def state_json(self, history: str) -> bytes:
        """JSON of the newest state, history "all", "tail" (last few points) or "none"."""
        cached = self._json.get(history)
        if cached is None:
            s = self.state
            if history == "none":
                s = without_history(s)
            elif history == "tail":
                s = msgspec.structs.replace(s, history=s.history[-TAIL_POINTS:])
            cached = self._json[history] = msgspec.json.encode(s)
        return cached

    def metrics(self) -> bytes:
        return prom.exposition(self.registry)

    async def execute(self, name: str) -> dict[str, Reply]:
        return await execute_async(self.cfg.system.resolved_run_dir(), VERBS[name])

    async def _listen(
        self,
        app: WebApp,
        what: str,
        port: int,
        metrics_only: bool,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve one listener; if its port is taken, say so and try again later.

        `started` after the first attempt, bound or not: READY must not wait on a port.
        """
        host = self.cfg.monitor.web_host
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        first = True
        while True:
            try:
                listeners = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                self.web[what] = f"error: cannot listen on {host}:{port}: {exc.strerror or exc}"
                log.error("%s: %s; retrying every %g s", what, self.web[what], BIND_RETRY_S)
                if first:
                    first = False
                    task_status.started()
                await trio.sleep(BIND_RETRY_S)
                continue
            self.web[what] = url
            log.info("%s on %s", what, url)
            if first:
                first = False
                task_status.started()
            await serve_web(app, listeners, host, port, metrics_only=metrics_only)

    # --- the loop -------------------------------------------------------------------

    def snapshot(self, poller: Poller) -> Poll:
        """The pollers' latest readings, and the monitor's own."""
        now = time.monotonic()
        readings = dict(poller.readings)
        readings["monitor"] = Reading(
            name="monitor",
            info=StatusInfo(component="monitor", pid=os.getpid(), state="running",
                            uptime_s=now - self.started),
            ok_at=now,
        )
        return Poll(mono=now, wall=time.time(), readings=readings, supervisor=poller.supervisor)

    def tick(self, poll: Poll, latency: bool = True) -> None:
        """Ingest a poll; with `latency=False` the latency figures are the ones
        `refresh_latency` (in steps, just before) left."""
        t0 = time.perf_counter()
        before = dict(self.agg.book.active)
        self.state = self.agg.ingest(poll, latency=latency)
        self._json = {}
        after = self.agg.book.active
        for key in after.keys() - before.keys():
            a = after[key]
            log.warning("ALERT %s %s: %s", a.severity, key, a.message)
        for key in before.keys() - after.keys():
            ago = time.time() - before[key].raised_at
            log.info("alert cleared %s (raised %.1f s ago)", key, ago)
        self.tick_ms = (time.perf_counter() - t0) * 1000

    async def refresh_latency(self, poll: Poll) -> None:
        """The aggregator's latency refresh, one short step at a time, with a
        checkpoint (a system call: a kernel preemption point) between steps."""
        if not self.agg.latency_due(poll):
            return
        t0 = time.perf_counter()
        for _ in self.agg.latency_steps(poll):
            await trio.sleep(0)
        self.latency_ms = (time.perf_counter() - t0) * 1000

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        mcfg = self.cfg.monitor
        poller = self.poller = Poller(self.cfg.system.resolved_run_dir(), self.names,
                                      mcfg.poll_interval_s, mcfg.request_timeout_s)
        app = WebApp(self.state_json, self.metrics, self.execute)
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            self.tick(self.snapshot(poller))
            if mcfg.web_enabled:
                await nursery.start(self._listen, app, "web", mcfg.web_port, False)
                if mcfg.metrics_port:
                    await nursery.start(self._listen, app, "metrics", mcfg.metrics_port, True)
            task_status.started()
            log.info("watching %s every %g s", ", ".join(self.names), mcfg.poll_interval_s)
            next_t = trio.current_time()
            while True:
                next_t += self.cfg.monitor.poll_interval_s
                await trio.sleep_until(max(next_t, trio.current_time()))
                try:
                    poll = self.snapshot(poller)
                    await self.refresh_latency(poll)  # first: the state below shows it
                    self.tick(poll, latency=False)
                except Exception:  # our bug, met with odd data: log it, keep the last state
                    log.exception("monitor tick failed; showing the previous state")
                    continue
                app.publish()

    # --- the Service protocol -----------------------------------------------------------

    def status_detail(self) -> dict[str, Any]:
        p = self.poller
        return {
            "web": dict(self.web),
            "watching": self.names,
            "polls": self.state.seq,
            "tick_ms": round(self.tick_ms, 3),
            "latency_refresh_ms": round(self.latency_ms, 3),
            "requests": p.requests if p else 0,
            "failures": p.failures if p else 0,
            "state": msgspec.to_builtins(without_history(self.state)),
        }

    async def handle(self, cmd: Command) -> Any:
        raise ValueError(f"monitor does not handle {type(cmd).__name__}")

    def live_config(self) -> tuple[str, ...]:
        # Everything the monitor does not use is "live" for it (so a reload of risk
        # limits is not refused here); of its own section, the alert rules and timing.
        others = tuple(
            f.encode_name for f in msgspec.structs.fields(HftdConfig)
            if f.encode_name not in ("monitor", "system", "daemons")
        )
        return (*others, "monitor.alerts", "monitor.poll_interval_s", "monitor.request_timeout_s")

    def apply_config(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        self.agg.reconfigure(cfg)
        if self.poller is not None:
            self.poller.interval = cfg.monitor.poll_interval_s
            self.poller.timeout = cfg.monitor.request_timeout_s
