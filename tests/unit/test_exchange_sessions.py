"""The exchange's session shell: whatever a session raises ends that session only
(issue 11, item 6), and a session that does not take its data is dropped (item 7)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from hftd.config import load_config
from hftd.exchange.daemon import ExchangeDaemon
from hftd.wire.errors import RemoteProtocolError
from tests.support import DEFAULT_CONFIG


async def raises(exc: BaseException) -> None:
    await trio.sleep(0)
    raise exc


def test_any_error_in_a_session_ends_the_session_not_the_venue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only protocol errors, timeouts and lost connections were expected; anything else
    (a bug met with some client's input) left the session's task and ended the venue,
    which would then replay the journaled input that did it at every restart."""
    ex = ExchangeDaemon(load_config(DEFAULT_CONFIG))

    async def main() -> None:
        for _ in range(20):
            await ex._guarded("orders", "order session from 10.0.0.1:5",
                              raises(KeyError("x" * 10_000)))
        await ex._guarded("md", "market data session from 10.0.0.2:6",
                          raises(RemoteProtocolError("unsequenced data")))
        with trio.move_on_after(0.01):  # a cancellation still goes through
            await ex._guarded("md", "market data session", trio.sleep_forever())
            raise AssertionError("the cancellation was swallowed")

    with caplog.at_level(logging.INFO, logger="hftd.exchange"):
        trio.run(main)
    assert ex.port_stats["orders"].errors == 20
    errors = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
    assert 1 <= len(errors) <= 5  # rate-limited
    assert all(len(e) < 400 and "KeyError" in e for e in errors)
    assert any("protocol error: unsequenced data" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)


def test_a_session_that_takes_nothing_is_dropped_as_a_slow_consumer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = load_config(DEFAULT_CONFIG)
    ex = ExchangeDaemon(cfg)

    async def main() -> None:
        client, server = trio.testing.lockstep_stream_pair()

        async def send_forever() -> None:
            while True:  # nobody reads `client`: send_all blocks
                await ex._send(server, b"x" * 65536)  # type: ignore[arg-type]

        await ex._guarded("md", "market data session from 10.0.0.3:7", send_forever())
        del client

    with caplog.at_level(logging.WARNING, logger="hftd.exchange"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert ex.slow_consumers["md"] == 1 and ex.port_stats["md"].timeouts == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert "dropped: it took none of 65536 bytes in 5 s (exchange.send_timeout_s)" in line
