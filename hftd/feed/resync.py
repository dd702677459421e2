"""Asking the feed for a resync, or where its stream is: what its consumers (the
strategy, the gateway's market view) call, without importing the feed daemon (its
link and codecs)."""

from __future__ import annotations

import logging

import msgspec
import trio

from hftd.config import HftdConfig
from hftd.ipc.control import request
from hftd.ipc.framing import FrameError
from hftd.msg.control import Resync, Status, StatusInfo
from hftd.msg.status import FeedDetail, StatusDetailError, decode_detail

HIGH_WATER_TIMEOUT_S = 1.0


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


async def feed_high_water(cfg: HftdConfig, who: logging.Logger) -> int:
    """The last sequence number the feed has had from the venue (its Status), 0 if
    it cannot say. A consumer that joins mid-day reads from the start of a ring
    nobody read: what the feed had published by now is history to rebuild through,
    not news to act on (`MdSync.catch_up_to`). Asked once at start, never waited for
    long: a feed that is down has published nothing this consumer could read."""
    path = cfg.system.resolved_run_dir() / "feed.sock"
    try:
        with trio.fail_after(HIGH_WATER_TIMEOUT_S):
            reply = await request(path, Status())
        if not reply.ok:
            return 0
        detail = decode_detail(FeedDetail, msgspec.convert(reply.result, StatusInfo).detail)
    except (
        OSError,
        FrameError,
        trio.TooSlowError,
        msgspec.ValidationError,
        StatusDetailError,
    ) as exc:
        who.info("feed's stream position not known (%s): nothing to catch up on", exc)
        return 0
    if detail is None:  # starting: nothing published yet
        return 0
    return max(detail.high_water, detail.next_sequence - 1)
