"""Control sockets: a kept-open connection survives the daemon restarting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from hftd.ipc.control import Connection, serve_control
from hftd.msg.control import Command, Status, StatusInfo


def test_kept_connection_is_reused_and_reconnects_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "feed.sock"
    served: list[int] = []

    def handler(generation: int) -> Any:
        async def handle(cmd: Command) -> Any:
            assert isinstance(cmd, Status)
            served.append(generation)
            return StatusInfo(component="feed", pid=generation, state="running", uptime_s=0.0)

        return handle

    async def main() -> None:
        conn = Connection(path)
        async with trio.open_nursery() as nursery:
            first = trio.CancelScope()

            async def serve(
                scope: trio.CancelScope, generation: int, task_status: trio.TaskStatus[None]
            ) -> None:
                with scope:
                    await serve_control(path, handler(generation), task_status=task_status)

            await nursery.start(serve, first, 1)
            for _ in range(3):
                assert (await conn.request(Status(), idempotent=True)).result["pid"] == 1
            assert conn.connects == 1  # one connection for all three
            first.cancel()  # the daemon goes away: its end of the connection closes
            await trio.testing.wait_all_tasks_blocked()  # ... once it has finished going
            with pytest.raises(OSError):
                await conn.request(Status(), idempotent=True)  # nothing listens: clear error
            assert conn.stream is None
            second = trio.CancelScope()
            await nursery.start(serve, second, 2)  # ... and comes back
            assert (await conn.request(Status(), idempotent=True)).result["pid"] == 2
            assert conn.connects == 2
            # Not idempotent (Halt, Flatten...): a closed kept connection is an error,
            # never a second send (the daemon may have acted on the first).
            second.cancel()
            await trio.testing.wait_all_tasks_blocked()
            await nursery.start(serve, trio.CancelScope(), 3)
            with pytest.raises((OSError, trio.BrokenResourceError)):
                await conn.request(Status())
            assert served == [1, 1, 1, 2]
            assert (await conn.request(Status())).result["pid"] == 3  # fresh connection
            await conn.aclose()
            nursery.cancel_scope.cancel()
        assert served == [1, 1, 1, 2, 3]

    trio.run(main)


def test_cancelled_request_drops_the_connection(tmp_path: Path) -> None:
    """A reply that comes after its request was abandoned must not answer the next one."""
    path = tmp_path / "slow.sock"
    calls = 0

    async def handle(cmd: Command) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            await trio.sleep(0.2)
        return calls

    async def main() -> None:
        conn = Connection(path)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, path, handle)
            with trio.move_on_after(0.05):
                await conn.request(Status())
            assert conn.stream is None
            assert (await conn.request(Status())).result == 2  # its own answer, not the late one
            await conn.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
