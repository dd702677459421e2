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
            await ex._guarded(
                "orders", "order session from 10.0.0.1:5", raises(KeyError("x" * 10_000))
            )
        await ex._guarded(
            "md",
            "market data session from 10.0.0.2:6",
            raises(RemoteProtocolError("unsequenced data")),
        )
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


def test_routine_session_ends_are_logged_a_few_at_a_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone who can reach a port could write a log line per connection ("ended: closed
    before login", "connection reset"): the fuzz of tests/fuzz wrote ~100 bytes for each
    of thousands of connections a second. Now a few, then one per 10 s with a count; a
    flood of them does not hold back the warnings (a throttle of their own)."""
    from hftd.exchange.daemon import _SessionEnded

    ex = ExchangeDaemon(load_config(DEFAULT_CONFIG))

    async def main() -> None:
        for i in range(500):
            exc = (
                _SessionEnded("closed before login")
                if i % 2
                else trio.BrokenResourceError(
                    "socket connection broken: [Errno 104] Connection reset by peer"
                )
            )
            await ex._guarded("md", f"market data session from 10.0.0.1:{i}", raises(exc))
        await ex._guarded(
            "md",
            "market data session from 10.0.0.2:6",
            raises(RemoteProtocolError("unsequenced data")),
        )
        await trio.sleep(10)
        await ex._guarded(
            "md",
            "market data session from 10.0.0.3:7",
            raises(_SessionEnded("closed before login")),
        )

    with caplog.at_level(logging.INFO, logger="hftd.exchange"):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    lines = [r.getMessage() for r in caplog.records]
    ends = [line for line in lines if " ended: " in line and "protocol" not in line]
    assert len(ends) == 6, lines
    assert ends[-1].endswith("closed before login (495 more not logged since the last line)")
    assert any("protocol error: unsequenced data" in line for line in lines)
