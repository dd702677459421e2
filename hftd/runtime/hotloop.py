"""The hot loop: a dedicated thread that polls rings and sockets, outside trio.

Per message the hot path must not pass through trio's scheduler (~30 µs per
wake-up, as the team's design notes measured it on the 2-vCPU VM; it is not
in this repository). A daemon's `Agent` does its work in `do_work()` and says
how much it did; when idle, the loop waits by the configured strategy:
`spin` polls again, `spin-then-sleep` polls for `spin_us` then sleeps, and
`sleep` sleeps at once. Sleeping = announce on every input ring, then
`select()` on their doorbells plus the agent's sockets, bounded by the
agent's next timer. trio keeps the control plane; it talks to the loop only
through `call()`, which runs a function between two units of work, so the
agent's state is never touched by two threads at once.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import trio

from hftd.ipc.ring import Ring
from hftd.runtime.gcpolicy import idle_collect
from hftd.runtime.log import (
    flush_deferred,
    register_hot_thread,
    unregister_hot_thread,
    warming,
)

log = logging.getLogger("hftd.hotloop")
T = TypeVar("T")

SWITCH_INTERVAL_S = 0.0001

# Longest sleep: also bounds the one unfenced wake-up race (see hftd.ipc.ring).
MAX_SLEEP_S = 0.002


class Agent(Protocol):
    def do_work(self) -> int:
        """Process what is ready; return the number of units of work done."""

    def wait_fds(self) -> list[int]:
        """Sockets whose readability should wake the loop."""

    def next_timer_s(self) -> float:
        """Seconds until the agent's next timer is due (bounded sleep)."""


class HotLoop:
    def __init__(
        self, name: str, agent: Agent, inputs: list[Ring], strategy: str, spin_us: float = 20.0
    ) -> None:
        self.name = name
        self.agent = agent
        self.inputs = inputs
        self.strategy = strategy
        self.spin_ns = int(spin_us * 1000)
        self.stop_flag = threading.Event()
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._main, name=f"hot-{name}", daemon=True)
        self.error: BaseException | None = None
        self.loops = 0
        self.sleeps = 0
        # SCHED_FIFO priority of the hot thread alone (0: the default policy). A
        # message arriving wakes it ahead of whatever else runs on its CPU, instead
        # of waiting for the scheduler's next turn ([hotpath] rt_priority).
        self.rt_priority = 0
        # Warming ([hotpath] warm_us): after this long with nothing to do, one pass of
        # the agent's `warm()` (hftd.hotpath.warmup) keeps the path's code in the
        # caches; 0 = never. `warms` counts the passes.
        self.warm_ns = 0
        self.warms = 0
        self.busy_at = 0  # monotonic ns of the last pass that did work, or of the last warm

    def start(self) -> None:
        # The control thread (trio: status, monitor polls) holds the GIL in
        # pure-Python stretches; by default CPython hands it over only every
        # 5 ms, which is what the hot path would wait. Hand it over every 100 us.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.thread.start()

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(5.0)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in the hot thread between units of work; await its result."""
        fut: Future[T] = Future()
        self.calls.put((fn, fut))
        return await trio.to_thread.run_sync(fut.result, abandon_on_cancel=True)

    def post(self, fn: Callable[[], Any]) -> None:
        """Run `fn` in the hot thread soon; nobody waits for it."""
        self.calls.put((fn, Future()))

    def _set_realtime(self) -> None:
        """Only this thread: the process's control plane keeps the default policy."""
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.rt_priority))
        except OSError as exc:  # needs CAP_SYS_NICE or an RLIMIT_RTPRIO allowance
            log.warning(
                "%s hot thread: cannot use SCHED_FIFO priority %d (%s): default policy",
                self.name,
                self.rt_priority,
                exc.strerror or exc,
            )
        else:
            log.info("%s hot thread: SCHED_FIFO priority %d", self.name, self.rt_priority)

    def _main(self) -> None:
        register_hot_thread()
        if self.rt_priority:
            self._set_realtime()
        try:
            self._run()
        except BaseException as exc:  # surfaced by the daemon's watchdog check
            self.error = exc
            log.exception("%s hot loop died", self.name)
        finally:
            unregister_hot_thread()

    def _run_calls(self) -> None:
        while True:
            try:
                fn, fut = self.calls.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn())
            except Exception as exc:
                fut.set_exception(exc)

    def _run(self) -> None:
        agent, stop = self.agent, self.stop_flag
        spin = self.strategy == "spin"
        spin_first = self.strategy == "spin-then-sleep"
        idle_since = 0
        warm = getattr(agent, "warm", None)
        if warm is None:
            self.warm_ns = 0  # nothing to warm: never wake for it
        while not stop.is_set():
            self.loops += 1
            if not self.calls.empty():
                self._run_calls()
            if agent.do_work():
                idle_since = 0
                if self.warm_ns:
                    self.busy_at = time.monotonic_ns()
                continue
            if flush_deferred():  # log lines wait for an idle moment (hftd.runtime.log)
                continue
            if idle_collect():  # so does the cyclic GC, once settled (hftd.runtime.gcpolicy)
                continue
            if (
                self.warm_ns
                and warm is not None
                and time.monotonic_ns() - self.busy_at >= self.warm_ns
            ):
                self._warm(warm)
                continue  # look for work at once: a message may have come meanwhile
            if spin:
                continue
            if spin_first:
                now = time.perf_counter_ns()
                if not idle_since:
                    idle_since = now
                if now - idle_since < self.spin_ns:
                    continue
            idle_since = 0
            self._sleep()

    def _warm(self, warm: Callable[[], Any]) -> None:
        """One warming pass; its log records are dropped. A pass that fails turns
        warming off (it is an optimization: trading goes on without it)."""
        try:
            with warming():
                warm()
        except Exception:
            self.warm_ns = 0
            log.exception("%s: warming pass failed; warming is off from now on", self.name)
        self.warms += 1
        self.busy_at = time.monotonic_ns()

    def _sleep(self) -> None:
        prepared: list[Ring] = []
        for ring in self.inputs:
            if not ring.prepare_sleep():
                for r in prepared:
                    r.finish_sleep()
                return
            prepared.append(ring)
        timeout = max(0.0, min(self.agent.next_timer_s(), MAX_SLEEP_S))
        if self.warm_ns:  # wake for the next warming pass
            due = (self.busy_at + self.warm_ns - time.monotonic_ns()) / 1e9
            timeout = max(0.0, min(timeout, due))
        fds = [r.doorbell_fd for r in prepared] + self.agent.wait_fds()
        self.sleeps += 1
        try:
            select.select(fds, [], [], timeout)
        finally:
            for r in prepared:
                r.finish_sleep()
