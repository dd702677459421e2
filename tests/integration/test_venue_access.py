"""Venue logins on a real exchange daemon: lock-out, market-data users, session and
connection caps; the daemon survives all of it and still serves a normal login."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hftd.wire import soupbintcp as soup
from tests.support import Daemon, SoupClient, make_config, start_daemon, status, wait_for

pytestmark = pytest.mark.integration

MAX_FAILURES = 3
LOCKOUT_S = 2.0
MD_USER = ("MDU", "md-pass")
ACCEPTED = soup.LoginAccepted
NOT_AUTHORIZED = soup.LoginRejected(soup.REJECT_NOT_AUTHORIZED)
UNAVAILABLE = soup.LoginRejected(soup.REJECT_SESSION_UNAVAILABLE)


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[Daemon]:
    """An exchange with short lock-out windows and small caps (a quick test)."""
    cfg = make_config(
        tmp_path,
        {
            "exchange": {
                "flow": {"enabled": False},
                "login_max_failures": MAX_FAILURES,
                "login_failure_window_s": 30.0,
                "login_lockout_s": LOCKOUT_S,
                "max_connections": 4,
                "md_max_sessions_per_user": 2,
                "md_users": [{"username": MD_USER[0], "password": MD_USER[1]}],
            }
        },
    )
    with start_daemon("exchange", cfg) as d:
        yield d


def ports(d: Daemon) -> tuple[int, int]:
    ex = d.config["exchange"]
    return ex["order_port"], ex["md_port"]


def login(port: int, user: str, password: str) -> Any:
    """One real login attempt (None: closed unanswered, at the connection cap)."""
    try:
        c = SoupClient(port, user, password, sequence=0)
    except EOFError:
        return None
    c.close()
    return c.login


def assert_alive(d: Daemon) -> None:
    order_port, md_port = ports(d)
    assert d.proc.poll() is None
    assert isinstance(login(order_port, "HFTD", "hftd-pass"), ACCEPTED)
    assert isinstance(login(md_port, *MD_USER), ACCEPTED)


def test_order_port_locks_out_a_password_guesser(venue: Daemon) -> None:
    order_port, _ = ports(venue)
    started = time.monotonic()
    for i in range(20):
        assert login(order_port, "TEST", f"guess{i}") == NOT_AUTHORIZED
    # Locked out: the right password is refused, unread.
    assert login(order_port, "TEST", "test-pass") == NOT_AUTHORIZED
    detail = status(venue, "exchange")
    assert detail["failed_logins"] == MAX_FAILURES + 1  # the rest were refused unread
    assert detail["locked_out_sources"] == 1
    assert detail["access"]["orders"]["logins_refused_locked_out"] == 20 - MAX_FAILURES
    # Once per lock-out, not per attempt: the source, and the username (its budget is spent too).
    assert venue.log.count("source loopback locked out") == 1
    assert venue.log.count("user 'TEST' locked out") == 1
    assert "order login from 127.0.0.1:" in venue.log
    # The market-data port keeps its own count: the feed is not locked out with it.
    assert isinstance(login(ports(venue)[1], *MD_USER), ACCEPTED)
    # Retrying while locked out does not extend it: the right password works once it ends.
    wait_for(
        lambda: isinstance(login(order_port, "TEST", "test-pass"), ACCEPTED),
        timeout=LOCKOUT_S + 10,
        what="the lock-out to end",
    )
    assert time.monotonic() - started >= LOCKOUT_S  # not before the lock-out ended
    assert status(venue, "exchange")["locked_out_sources"] == 0
    # A success cleared the count: MAX_FAILURES more wrong ones do not lock again.
    for i in range(MAX_FAILURES):
        assert login(order_port, "TEST", f"again{i}") == NOT_AUTHORIZED
    assert isinstance(login(order_port, "TEST", "test-pass"), ACCEPTED)
    assert_alive(venue)


def test_market_data_needs_its_own_users(venue: Daemon) -> None:
    order_port, md_port = ports(venue)
    assert login(md_port, "TEST", "test-pass") == NOT_AUTHORIZED  # an order user is not one
    assert login(md_port, MD_USER[0], "wrong") == NOT_AUTHORIZED
    assert "market data login refused for 'MDU' from 127.0.0.1" in venue.log
    md = SoupClient(md_port, *MD_USER, sequence=1)
    assert isinstance(md.login, ACCEPTED)
    assert isinstance(md.sequenced(), soup.SequencedData)  # start of day
    assert status(venue, "exchange")["access"]["md"]["failed_logins"] == 2
    # Locked out on the md port too; order entry is not affected.
    for i in range(MAX_FAILURES + 1):
        login(md_port, MD_USER[0], f"guess{i}")
    assert login(md_port, *MD_USER) == NOT_AUTHORIZED
    assert "market data login from 127.0.0.1" in venue.log
    assert isinstance(login(order_port, "HFTD", "hftd-pass"), ACCEPTED)
    wait_for(
        lambda: isinstance(login(md_port, *MD_USER), ACCEPTED),
        timeout=LOCKOUT_S + 10,
        what="the md lock-out to end",
    )
    # Bad input before login ends only that connection, with the reason logged.
    raw = socket.create_connection(("127.0.0.1", md_port), timeout=5)
    raw.sendall(soup.unsequenced(b"junk"))
    assert raw.recv(100) == b""
    raw.close()
    wait_for(lambda: "expected a login request" in venue.log, what="protocol error logged")
    while not isinstance(md.next_event(timeout=5), soup.ServerHeartbeat):
        pass  # the logged-in md session carries on: replay, then heartbeats
    assert_alive(venue)


def login_from(source: str, port: int, user: str, password: str) -> Any:
    """One login from the local address `source` (bound before connecting to 127.0.0.1)."""
    with socket.socket() as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(soup.login_request(user, password, "", 0))
        session = soup.ClientSession()
        while data := s.recv(1 << 16):
            if events := session.receive_data(data):
                return events[0]
    return None


def refusal_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "login refused" in line or "locked out" in line]


@pytest.mark.parametrize("port_name", ["orders", "md"])
def test_guessing_from_rotating_loopback_addresses_is_locked_out(
    venue: Daemon, port_name: str
) -> None:
    """Every 127.x.y.z reaches the venue: each must not be a new source with a fresh count."""
    order_port, md_port = ports(venue)
    port, (user, password) = (
        (order_port, ("TEST", "test-pass")) if port_name == "orders" else (md_port, MD_USER)
    )
    for i in range(300):
        source = f"127.0.{1 + i // 250}.{1 + i % 250}"  # a new source address every time
        assert login_from(source, port, user, f"guess{i}") == NOT_AUTHORIZED, i
    # Locked out: the right password is refused, from yet another address too.
    assert login_from("127.9.9.9", port, user, password) == NOT_AUTHORIZED
    assert login_from("127.0.0.1", port, user, password) == NOT_AUTHORIZED
    detail = status(venue, "exchange")["access"][port_name]
    assert detail["failed_logins"] == MAX_FAILURES + 1  # the rest were refused unread
    assert detail["locked_out_sources"] == 1 and detail["sources_tracked"] == 1
    # 302 refusals, a handful of log lines: MAX_FAILURES refusals, the lock-outs.
    lines = refusal_lines(venue.log)
    assert len(lines) <= MAX_FAILURES + 2, lines
    assert sum("source loopback locked out" in line for line in lines) == 1


def test_guessing_usernames_from_rotating_loopback_addresses_is_locked_out(
    venue: Daemon,
) -> None:
    """Unknown usernames spend no user's budget: the one loopback source is what locks."""
    order_port, _ = ports(venue)
    for i in range(50):
        assert login_from(f"127.1.0.{1 + i}", order_port, f"U{i}", "x") == NOT_AUTHORIZED
    assert login_from("127.1.1.1", order_port, "TEST", "test-pass") == NOT_AUTHORIZED
    assert "source loopback locked out" in venue.log
    assert len(refusal_lines(venue.log)) <= MAX_FAILURES + 1


def test_refused_logins_are_logged_a_few_then_once_per_interval(venue: Daemon) -> None:
    """A client that is refused again and again cannot flood the log."""
    _, md_port = ports(venue)
    held = [SoupClient(md_port, *MD_USER, sequence=0) for _ in range(2)]
    assert all(isinstance(c.login, ACCEPTED) for c in held)
    for _ in range(50):
        assert login(md_port, *MD_USER) == UNAVAILABLE  # over md_max_sessions_per_user
    assert len(refusal_lines(venue.log)) <= 4, refusal_lines(venue.log)
    time.sleep(5.0)  # the interval: the next line says how many were left out
    assert login(md_port, *MD_USER) == UNAVAILABLE
    wait_for(lambda: "refused logins not logged" in venue.log, what="the skipped count")
    assert len(refusal_lines(venue.log)) <= 5
    assert status(venue, "exchange")["access"]["md"]["sessions_refused"] == 51
    for c in held:
        c.close()
    wait_for(lambda: status(venue, "exchange")["md_sessions"] == 0, what="the sessions closed")
    assert_alive(venue)


def test_md_sessions_per_user_are_capped(venue: Daemon) -> None:
    _, md_port = ports(venue)
    first = SoupClient(md_port, *MD_USER, sequence=0)
    second = SoupClient(md_port, *MD_USER, sequence=0)
    assert isinstance(first.login, ACCEPTED) and isinstance(second.login, ACCEPTED)
    assert login(md_port, *MD_USER) == UNAVAILABLE  # the md_max_sessions_per_user+1-th
    assert "user already has 2 sessions open" in venue.log
    detail = status(venue, "exchange")
    assert detail["md_sessions"] == 2 and detail["access"]["md"]["sessions_refused"] == 1
    assert detail["failed_logins"] == 0  # a full user is not a wrong password
    first.close()
    wait_for(
        lambda: isinstance(login(md_port, *MD_USER), ACCEPTED),
        what="a slot freed by the logout",
    )
    assert isinstance(second.next_event(timeout=5), soup.ServerHeartbeat)
    assert_alive(venue)


def test_connections_per_port_are_capped(venue: Daemon) -> None:
    order_port, md_port = ports(venue)
    held = [socket.create_connection(("127.0.0.1", order_port), timeout=5) for _ in range(4)]
    # The max_connections+1-th connection is closed at once, before any login.
    wait_for(lambda: status(venue, "exchange")["access"]["orders"]["connections_open"] == 4)
    extra = socket.create_connection(("127.0.0.1", order_port), timeout=5)
    assert extra.recv(100) == b""
    extra.close()
    wait_for(lambda: "connections open, max_connections is 4" in venue.log, what="the warning")
    for s in held:  # the ones within the cap are still open, waiting for a login
        s.settimeout(0.05)
        with pytest.raises(TimeoutError):
            s.recv(100)
    assert status(venue, "exchange")["connections_refused"] >= 1
    # The md port has its own cap.
    assert isinstance(login(md_port, *MD_USER), ACCEPTED)
    held.pop().close()
    wait_for(
        lambda: isinstance(login(order_port, "HFTD", "hftd-pass"), ACCEPTED),
        what="a connection slot freed",
    )
    for s in held:
        s.close()
    assert_alive(venue)


def test_order_login_replaces_the_users_old_session(venue: Daemon) -> None:
    """One session per order user: a gateway reconnecting after a half-open TCP gets in."""
    order_port, _ = ports(venue)
    old = SoupClient(order_port, "HFTD", "hftd-pass", sequence=0)
    new = SoupClient(order_port, "HFTD", "hftd-pass", sequence=0)
    assert isinstance(old.login, ACCEPTED) and isinstance(new.login, ACCEPTED)
    assert old.closed_by_server()
    assert "user HFTD logged in again" in venue.log
    assert status(venue, "exchange")["order_sessions"] == ["HFTD"]
