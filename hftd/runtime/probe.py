"""The probe daemon: does nothing but live. For supervision tests and drills.

`Hang(seconds)` blocks its event loop, so its watchdog pings stop: the
supervisor (or systemd) must notice and restart it.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from hftd.config import HftdConfig
from hftd.msg.control import Command, Hang
from hftd.msg.status import ProbeDetail


class ProbeService:
    def __init__(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        self.hangs = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def status_detail(self) -> ProbeDetail:
        return ProbeDetail(hangs=self.hangs)

    async def handle(self, cmd: Command) -> Any:
        if isinstance(cmd, Hang):
            self.hangs += 1
            time.sleep(cmd.seconds)  # deliberately blocks the trio loop
            return {"hung_s": cmd.seconds}
        raise ValueError(f"probe does not handle {type(cmd).__name__}")

    def live_config(self) -> tuple[str, ...]:
        return ()

    def apply_config(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
