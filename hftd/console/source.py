"""Where the console's `SystemState` comes from: the monitor, or the daemons themselves.

With a monitor running, the console asks it (`Status` on `monitor.sock`;
the detail's ``state`` is the aggregated state, alerts and all): one
request per refresh, the same figures as the web page and /metrics.

Without one (not configured, crashed, restarting), the console polls every
daemon's control socket itself and runs the same pure `Aggregator`: the
operator keeps a working console, with alerts, when the monitor is the
thing that broke. After the monitor fails to answer, the console stays
direct for `RETRY_MONITOR_S` before asking it again, so a hung monitor
costs one timeout, not one per refresh.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import trio

from hftd.config import HftdConfig
from hftd.ipc.control import request
from hftd.monitor.daemon import watched
from hftd.monitor.model import Aggregator, Poll
from hftd.monitor.poll import Poller
from hftd.monitor.schedstat import read_pressure
from hftd.monitor.state import SystemState
from hftd.msg.control import Status

RETRY_MONITOR_S = 5.0
MONITOR_TIMEOUT_S = 0.5
# A direct round asks every daemon at once and waits for the slowest: bounded so the
# screen keeps refreshing twice a second even with a wedged daemon (one silent round
# is not "down": that takes `monitor.alerts.down_after_s` of silence).
DIRECT_TIMEOUT_S = 0.4


class StateSource:
    def __init__(self, cfg: HftdConfig, run_dir: Path, mode: str = "auto") -> None:
        """`mode`: "auto" (monitor, else direct), "monitor" or "direct"."""
        self.cfg = cfg
        self.run_dir = run_dir
        self.mode = mode
        self.poller = Poller(run_dir, watched(cfg, me=""), 0.5, DIRECT_TIMEOUT_S, keep_open=False)
        self.agg = Aggregator(cfg, source="direct")
        self.monitor_failed_at = -RETRY_MONITOR_S
        self.last_error = ""

    async def from_monitor(self) -> SystemState:
        with trio.fail_after(MONITOR_TIMEOUT_S):
            reply = await request(self.run_dir / "monitor.sock", Status())
        if not reply.ok:
            raise RuntimeError(reply.error)
        state = reply.result.get("detail", {}).get("state")
        if state is None:
            raise RuntimeError("monitor Status has no state")
        return msgspec.convert(state, SystemState)

    async def direct(self) -> SystemState:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.poller.poll_supervisor)
            for name in self.poller.readings:
                nursery.start_soon(self.poller.poll_one, name)
        return self.agg.ingest(
            Poll(
                mono=time.monotonic(),
                wall=time.time(),
                readings=dict(self.poller.readings),
                supervisor=self.poller.supervisor,
                cpu_pressure_us=read_pressure() if self.poller.cpu_wait else None,
            )
        )

    async def fetch(self) -> SystemState:
        now = time.monotonic()
        use_monitor = self.mode == "monitor" or (
            self.mode == "auto"
            and (self.run_dir / "monitor.sock").exists()
            and now - self.monitor_failed_at >= RETRY_MONITOR_S
        )
        if use_monitor:
            try:
                state = await self.from_monitor()
                self.last_error = ""
                return state
            except Exception as exc:  # any failure: fall back to the daemons for a while
                self.monitor_failed_at = now
                self.last_error = f"monitor: {exc}"
                if self.mode == "monitor":
                    raise
        return await self.direct()
