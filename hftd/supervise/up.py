"""`hftd up`: start the configured daemons and keep them running.

Minimal embedded supervisor: each component runs as `python -m hftd.cli
<component>`; one that exits is restarted. (Readiness, watchdog and restart
timing are the runtime issue's work.)
"""

from __future__ import annotations

import logging
import signal
import sys

import trio

from hftd.config import HftdConfig

log = logging.getLogger("hftd.supervisor")

COMPONENTS = ["exchange"]


async def _keep_running(name: str, config_path: str) -> None:
    while True:
        log.info("starting %s", name)
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "hftd.cli", name, "--config", config_path]
        )
        try:
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.terminate()
                with trio.move_on_after(5) as cs:
                    cs.shield = True
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
        log.warning("%s exited with %s; restarting", name, code)
        await trio.sleep(0.1)


async def run_up(cfg: HftdConfig, config_path: str) -> int:
    async with trio.open_nursery() as nursery:
        for name in COMPONENTS:
            nursery.start_soon(_keep_running, name, config_path)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("%s: stopping %s", signal.Signals(signum).name, ", ".join(COMPONENTS))
                nursery.cancel_scope.cancel()
                break
    return 0
