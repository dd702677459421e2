"""The hot-path daemon (`hft@hotpath`): feed, strategy and gateway in one process.

Layout "composite" (`[hotpath]`, docs/hotpath.md): the three services are the
split layout's own, each with its control socket (`feed.sock`,
`strategy.sock`, `gateway.sock`: hftctl, the monitor and the console see the
components as always), its lock in the run dir and its recovery; only their
agents share one hot thread (`hftd.runtime.composite.CompositeHost`). They
start as their `after` says (gateway and feed side by side, the strategy once
both are ready); READY=1 once all are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from hftd.config import HftdConfig
from hftd.feed.daemon import FeedService
from hftd.gateway.daemon import GatewayService
from hftd.msg.control import Command
from hftd.msg.status import HotpathDetail
from hftd.runtime.composite import CompositeHost, LoopHost
from hftd.runtime.daemon import Service
from hftd.strategy.daemon import StrategyService

SERVICES: dict[str, Callable[[HftdConfig, LoopHost], Service]] = {
    "feed": FeedService,
    "strategy": StrategyService,
    "gateway": GatewayService,
}


class HotpathService:
    def __init__(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        names = cfg.composed_parts()
        if not names:
            raise ValueError("no hot-path component (feed, strategy, gateway) is enabled")
        self.host = CompositeHost(cfg, names, cfg.hotpath.resolved_wait())
        self.parts: dict[str, Service] = {n: SERVICES[n](cfg, self.host) for n in names}
        self.ready: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = {n: trio.Event() for n in self.parts}
        async with trio.open_nursery() as nursery:

            async def start(name: str) -> None:
                for dep in self.cfg.daemons[name].after:
                    if dep in started:
                        await started[dep].wait()
                await nursery.start(self.parts[name].run)
                self.ready.add(name)
                started[name].set()

            async with trio.open_nursery() as starters:
                for name in self.parts:
                    starters.start_soon(start, name)
            task_status.started()

    def status_detail(self) -> HotpathDetail:
        hot = self.host.hot
        return HotpathDetail(
            layout="composite",
            parts=list(self.parts),
            ready=sorted(self.ready),
            wait=hot.strategy,
            loops=hot.loops,
            sleeps=hot.sleeps,
            warms=hot.warms,
        )

    async def handle(self, cmd: Command) -> Any:
        raise ValueError(
            f"hotpath does not handle {type(cmd).__name__}: send it to "
            + " or ".join(f"{n}.sock" for n in self.parts)
        )

    def live_config(self) -> tuple[str, ...]:
        return tuple(p for s in self.parts.values() for p in s.live_config())

    def apply_config(self, cfg: HftdConfig) -> None:
        # the strategy's check can refuse (instances change only with a restart): first
        for _, s in sorted(self.parts.items(), key=lambda kv: kv[0] != "strategy"):
            s.apply_config(cfg)
        self.cfg = cfg
