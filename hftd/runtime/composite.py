"""Where a hot-path component's agent runs: its own hot loop, or a shared one.

Each hot-path service (feed, strategy, gateway) builds its agent and asks its
`LoopHost` for a loop to run it on. `SplitHost` gives it a `HotLoop` of its
own (layout "split": one process per component, each waiting on its input
rings' doorbells). `CompositeHost` gives every part a handle on one shared
`HotLoop` whose agent is a `CompositeAgent` (layout "composite", agrona's
CompositeAgent): one pass of the hot thread runs feed, then strategy, then
gateway, so a market-data message read from the venue's socket reaches the
strategy and its order leaves on the order socket without any wake-up in
between. The rings between the parts stay (a crash keeps what they committed,
as in the split layout); nobody sleeps on their doorbells, because their
producer is the same thread. Order commands skip theirs: the strategy hands
each to the gateway's `take` as the object it made (no msgpack, no shared
memory; nothing to recover, the two die together), except while the ring holds
commands or the gateway has not reconciled. A ring whose producer runs
elsewhere (a part not composed) is still waited on.

One thread means one failure domain: an exception in any part ends the shared
loop, every part's service sees `alive` false and the process exits, to be
restarted whole (recovery is each part's own: journal, rings, resync).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from hftd.config import HOT_PARTS, HftdConfig
from hftd.ipc.ring import Ring
from hftd.runtime.hotloop import MAX_SLEEP_S, Agent, HotLoop

T = TypeVar("T")

# Which component writes each ring (the consumer is the other end).
PRODUCER = {"md": "feed", "risk_md": "feed", "orders": "strategy", "executions": "gateway"}
# Whose warming pass feeds whose (hftd.hotpath.warmup): the md ring's, the orders ring's.
_UPSTREAM = {"strategy": "feed", "gateway": "strategy"}


class PartLoop(Protocol):
    """What a hot-path service needs of the loop that runs its agent."""

    @property
    def alive(self) -> bool: ...

    @property
    def error(self) -> BaseException | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    async def call(self, fn: Callable[[], T]) -> T: ...

    def post(self, fn: Callable[[], Any]) -> None: ...


class LoopHost(Protocol):
    def loop(self, name: str, agent: Agent, inputs: dict[str, Ring], wait: str) -> PartLoop:
        """A loop for `agent`, which consumes `inputs` (ring edge -> ring)."""


class SplitHost:
    """Layout "split": every component its own hot thread (and process)."""

    def __init__(self, cfg: HftdConfig) -> None:
        self.spin_us = cfg.rings.spin_us
        self.rt_priority = cfg.hotpath.rt_priority

    def loop(self, name: str, agent: Agent, inputs: dict[str, Ring], wait: str) -> PartLoop:
        hot = HotLoop(name, agent, list(inputs.values()), wait, self.spin_us)
        hot.rt_priority = self.rt_priority
        # no warming passes: three hot processes warming on CPUs they share with
        # each other and the venue starved them (bench_tick_to_trade --layout
        # split on the 2-vCPU VM: 20k -> 13k orders/s, T1->T4 p99.9 0.5 s)
        return hot


class CompositeAgent:
    """Several agents as one: each pass runs them all, in pipeline order."""

    def __init__(self) -> None:
        self.parts: list[tuple[int, str, Agent]] = []
        self.agents: list[Agent] = []

    def add(self, rank: int, name: str, agent: Agent) -> None:
        self.parts = sorted([*self.parts, (rank, name, agent)], key=lambda p: p[0])
        self._chain()

    def remove(self, name: str) -> None:
        self.parts = [p for p in self.parts if p[1] != name]
        self._chain()

    def _chain(self) -> None:
        """Each agent with a `downstream` hook runs the `pump` of the agents after it
        on every record it publishes: the feed on each market-data message, the
        strategy on each order command. Message by message through the whole
        pipeline, not stage by stage over a whole read; and an order leaves as soon
        as it is decided, not after the rest of its strategy's work on the message
        (its log line, the other strategies). A chain stops at the first agent
        after it that has a hook of its own: that one pumps the rest itself."""
        self.agents = [a for _, _, a in self.parts]
        by_name: dict[str, Any] = {n: a for _, n, a in self.parts}
        feed, strategy = by_name.get("feed"), by_name.get("strategy")
        if feed is not None and hasattr(feed, "handoff"):  # market data handed over
            if strategy is not None and hasattr(strategy, "took"):
                feed.handoff, feed.took = strategy.take, strategy.took
            else:
                feed.handoff = None
        for i, a in enumerate(self.agents):
            if hasattr(a, "downstream"):
                pumps: list[Callable[[], int]] = []
                for b in self.agents[i + 1 :]:
                    if hasattr(b, "pump"):
                        pumps.append(b.pump)
                    if hasattr(b, "downstream"):
                        break
                a.downstream = _run_all(pumps) if pumps else None
            if hasattr(a, "direct"):  # the strategy: its orders to the gateway's `take`
                a.direct = next((b.take for b in self.agents[i + 1 :] if hasattr(b, "take")), None)

    def do_work(self) -> int:
        work = 0
        for a in self.agents:
            work += a.do_work()
        return work

    def warm(self) -> None:
        """One warming pass through every part, in pipeline order: what the feed's
        pass made is the strategy's input, the strategy's the gateway's. A part
        whose upstream is not attached (the strategy attaches last) warms on its
        own canned input."""
        data: Any = None
        upstream = ""
        for _, name, a in self.parts:
            w = getattr(a, "warm", None)
            if w is not None:
                data = w(data if _UPSTREAM.get(name) == upstream else None)
                upstream = name

    def wait_fds(self) -> list[int]:
        fds: list[int] = []
        for a in self.agents:
            fds += a.wait_fds()
        return fds

    def next_timer_s(self) -> float:
        return min((a.next_timer_s() for a in self.agents), default=MAX_SLEEP_S)


def _run_all(pumps: list[Callable[[], int]]) -> Callable[[], int]:
    if len(pumps) == 1:
        return pumps[0]
    first, *rest = pumps

    def run() -> int:
        n = first()
        for p in rest:
            n += p()
        return n

    return run


class CompositeHost:
    """Layout "composite": the parts of this process share one hot thread."""

    def __init__(self, cfg: HftdConfig, parts: list[str], wait: str) -> None:
        self.parts = parts
        self.agent = CompositeAgent()
        self.inputs: list[Ring] = []  # rings written by another process: slept on
        self.hot = HotLoop("hotpath", self.agent, self.inputs, wait, cfg.rings.spin_us)
        self.hot.rt_priority = cfg.hotpath.rt_priority
        self.hot.warm_ns = int(cfg.hotpath.warm_us * 1000)
        self.lock = threading.Lock()
        self.attached: set[str] = set()

    def loop(self, name: str, agent: Agent, inputs: dict[str, Ring], wait: str) -> PartLoop:
        external = [r for edge, r in inputs.items() if PRODUCER[edge] not in self.parts]
        return _Part(self, name, agent, external)

    def attach(self, part: _Part) -> None:
        rank = HOT_PARTS.index(part.name) if part.name in HOT_PARTS else len(HOT_PARTS)

        def add() -> None:
            self.agent.add(rank, part.name, part.agent)
            self.inputs.extend(part.inputs)

        with self.lock:
            self.attached.add(part.name)
            if self.hot.thread.ident is None:  # not started: nobody else touches it yet
                add()
                self.hot.start()
            else:  # between two passes of the hot thread
                self.hot.post(add)

    def detach(self, part: _Part) -> None:
        with self.lock:
            self.attached.discard(part.name)
            last = not self.attached
        if last:
            self.hot.stop()
            return

        def remove() -> None:
            self.agent.remove(part.name)
            for r in part.inputs:
                if r in self.inputs:
                    self.inputs.remove(r)

        if not self.hot.alive:
            remove()
            return
        # Wait until the hot thread has let go: the caller then closes the part's
        # sockets and rings, which the agent must no longer touch.
        done: Future[None] = Future()
        self.hot.calls.put((remove, done))
        with contextlib.suppress(TimeoutError):
            done.result(timeout=5.0)


class _Part:
    """One part's handle on the shared loop."""

    def __init__(self, host: CompositeHost, name: str, agent: Agent, inputs: list[Ring]) -> None:
        self.host = host
        self.name = name
        self.agent = agent
        self.inputs = inputs

    @property
    def alive(self) -> bool:
        return self.host.hot.alive

    @property
    def error(self) -> BaseException | None:
        return self.host.hot.error

    def start(self) -> None:
        self.host.attach(self)

    def stop(self) -> None:
        self.host.detach(self)

    async def call(self, fn: Callable[[], T]) -> T:
        return await self.host.hot.call(fn)

    def post(self, fn: Callable[[], Any]) -> None:
        self.host.hot.post(fn)
