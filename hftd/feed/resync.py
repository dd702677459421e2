"""Asking the feed for a resync: what its consumers (the strategy, the gateway's
market view) call, without importing the feed daemon (its link and codecs)."""

from __future__ import annotations

import logging

import trio

from hftd.config import HftdConfig
from hftd.ipc.control import request
from hftd.msg.control import Resync


async def request_resync(cfg: HftdConfig, who: logging.Logger) -> None:
    """Ask the feed for MD_RESET and a replay from 1 (a consumer's books are gone),
    until it says yes: a consumer without books has nothing better to do."""
    path = cfg.system.resolved_run_dir() / "feed.sock"
    while True:
        try:
            reply = await request(path, Resync())
            if reply.ok:
                return
            who.warning("feed refused resync: %s", reply.error)
        except OSError as exc:
            who.warning("feed not reachable for a resync (%s); retrying", exc)
        await trio.sleep(0.2)
