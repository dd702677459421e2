"""The feed's and the gateway's venue link against what a venue may send (issue 11, item 6)."""

from __future__ import annotations

import logging
import socket

import pytest

from hftd.ipc.souplink import SoupLink
from hftd.wire import soupbintcp as soup


def test_a_sequence_past_twenty_digits_keeps_the_link_down_not_the_daemon_dead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A venue whose Login Accepted says sequence 99999999999999999999 and then sends one
    message leaves the client at 10**20, which no login request can carry: building the
    next login raised LocalProtocolError out of the hot loop and ended the daemon."""
    log = logging.getLogger("test.souplink")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        link = SoupLink(
            "venue",
            "127.0.0.1",
            server.getsockname()[1],
            "HFTD",
            "pw",
            backoff_min_s=0.01,
            backoff_max_s=0.02,
            silence_s=5.0,
            log=log,
        )
        session = soup.ClientSession()
        events = session.receive_data(soup.login_accepted("S", 10**20 - 1) + soup.sequenced(b"x"))
        link.next_seq = events[-1].sequence + 1  # what the gateway does with each message
        with caplog.at_level(logging.WARNING, logger="test.souplink"):
            assert link.connect_if_due()  # tried, did not raise
        assert not link.up
        assert "cannot log in from sequence 100000000000000000000" in caplog.text
        link.next_seq = 5  # a sane number again: it connects
        link.reconnect_at = 0.0
        assert link.connect_if_due() and link.up
        link.drop("done")
