"""The console's state source: the monitor when it answers, the daemons directly when not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import trio
import trio.testing

from hftd.console.source import RETRY_MONITOR_S, StateSource
from hftd.ipc.control import serve_control
from hftd.monitor.model import Aggregator
from hftd.msg.control import Command, Status, StatusInfo
from tests.unit import monitor_fixtures as fx


def test_monitor_first_then_direct_when_it_is_gone(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    agg = Aggregator(fx.config())
    known = agg.ingest(fx.poll(1.0, {"gateway": fx.gateway()}))

    async def monitor(cmd: Command) -> Any:
        assert isinstance(cmd, Status)
        return StatusInfo(
            component="monitor",
            pid=1,
            state="running",
            uptime_s=1.0,
            detail={"state": msgspec.to_builtins(known)},
        )

    async def feed(cmd: Command) -> Any:
        return StatusInfo(
            component="feed", pid=7, state="running", uptime_s=3.0, detail=fx.feed(messages=42)
        )

    async def main() -> None:
        source = StateSource(fx.config(), run_dir)
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def serve_monitor(task_status: trio.TaskStatus[None]) -> None:
                with scope:
                    await serve_control(run_dir / "monitor.sock", monitor, task_status=task_status)

            await nursery.start(serve_control, run_dir / "feed.sock", feed)
            await nursery.start(serve_monitor)
            s = await source.fetch()
            assert s.source == "monitor" and s.counters.orders == 10  # the monitor's figures
            scope.cancel()  # the monitor goes away
            await trio.testing.wait_all_tasks_blocked()  # ... and is gone
            s = await source.fetch()
            assert s.source == "direct"
            assert s.counters.md_messages == 42  # from the feed itself
            feed_row = s.daemon("feed")
            gateway_row = s.daemon("gateway")
            assert feed_row is not None and feed_row.up and feed_row.pid == 7
            assert gateway_row is not None and not gateway_row.up  # nothing answers there
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_hung_monitor_costs_one_timeout_per_retry_period(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    async def hang(cmd: Command) -> Any:
        await trio.sleep_forever()

    async def main() -> None:
        source = StateSource(fx.config(), run_dir)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, run_dir / "monitor.sock", hang)
            t0 = trio.current_time()
            s = await source.fetch()
            first = trio.current_time() - t0
            assert s.source == "direct" and "monitor" in source.last_error
            t0 = trio.current_time()
            s = await source.fetch()  # within RETRY_MONITOR_S: straight to the daemons
            second = trio.current_time() - t0
            assert s.source == "direct" and second < first
            assert second < 0.5  # still twice a second, though the monitor hangs
            monitor = s.daemon("monitor")
            assert monitor is not None and monitor.pid == 0
            assert RETRY_MONITOR_S >= 1
            nursery.cancel_scope.cancel()

    trio.run(main)
