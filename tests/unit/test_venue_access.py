"""Venue access rules in isolation: login throttle and lock-out, connection and session caps."""

from __future__ import annotations

import pytest

from hftd.config import ConfigError, load_config, parse_config
from hftd.exchange.access import (
    BAD_CREDENTIALS,
    LOCKED_OUT,
    LOOPBACK,
    REJECT_NOT_AUTHORIZED,
    REJECT_SESSION_UNAVAILABLE,
    USER_LOCKED_OUT,
    ConnectionCap,
    LoginThrottle,
    PortAccess,
    SessionCap,
    source_key,
)
from tests.support import DEFAULT_CONFIG

SRC = "10.0.0.1"


def access(
    users: dict[str, str] | None = None,
    *,
    failures: int = 3,
    window: float = 10.0,
    lockout: float = 30.0,
    per_user: int | None = None,
) -> PortAccess:
    return PortAccess(
        users=users if users is not None else {"HFTD": "pw", "OTHER": "pw2"},
        throttle=LoginThrottle(failures, window, lockout),
        connections=ConnectionCap(8),
        sessions=SessionCap(per_user) if per_user else None,
    )


def test_more_than_max_failures_in_the_window_locks_the_source_out() -> None:
    acc = access()
    for i in range(3):
        v = acc.authenticate(SRC, "HFTD", "bad", 100.0 + i)
        assert (v.accepted, v.reject, v.problem, v.locked_now) == (
            False,
            REJECT_NOT_AUTHORIZED,
            BAD_CREDENTIALS,
            False,
        )
    v = acc.authenticate(SRC, "HFTD", "bad", 103.0)  # the 4th: more than 3
    assert v.locked_now and v.reject == REJECT_NOT_AUTHORIZED and not v.locked_out
    # Locked out: the right password is refused too, unread, and not logged again.
    v = acc.authenticate(SRC, "HFTD", "pw", 104.0)
    assert not v.accepted and v.reject == REJECT_NOT_AUTHORIZED
    assert v.problem == LOCKED_OUT and v.locked_out and not v.locked_now
    # Other sources are not affected (for other users: HFTD's own budget is spent too).
    assert acc.authenticate("10.0.0.2", "OTHER", "pw2", 104.0).accepted
    c = acc.counters(104.0)
    assert c["failed_logins"] == 4 and c["lockouts"] == 1
    assert c["locked_out_sources"] == 1 and c["logins_refused_locked_out"] == 1


def test_failures_spread_wider_than_the_window_do_not_lock() -> None:
    acc = access(failures=3, window=10.0)
    for t in (0.0, 4.0, 8.0, 12.0, 16.0, 20.0):  # never more than 3 within 10 s
        v = acc.authenticate(SRC, "HFTD", "bad", t)
        assert v.problem == BAD_CREDENTIALS, t
    assert acc.authenticate(SRC, "HFTD", "pw", 21.0).accepted


def test_lockout_expires_and_refusals_do_not_extend_it() -> None:
    acc = access(failures=1, lockout=30.0)
    acc.authenticate(SRC, "X", "bad", 0.0)
    assert acc.authenticate(SRC, "X", "bad", 1.0).locked_now  # locked until 31
    for t in range(2, 31):  # hammering while locked out: refused, no new lock-out
        assert acc.authenticate(SRC, "HFTD", "pw", float(t)).locked_out
    assert acc.counters(30.9)["locked_out_sources"] == 1
    assert acc.authenticate(SRC, "HFTD", "pw", 31.0).accepted
    assert acc.counters(31.0)["locked_out_sources"] == 0
    assert acc.throttle.lockouts == 1


def test_after_a_lockout_the_count_starts_again() -> None:
    acc = access(failures=2, lockout=5.0)
    for t in (0.0, 0.1, 0.2):
        acc.authenticate(SRC, "X", "bad", t)
    assert acc.throttle.locked(SRC, 5.1) is True
    # Ended: two fresh failures are allowed again, the third locks again.
    assert acc.authenticate(SRC, "X", "bad", 5.3).problem == BAD_CREDENTIALS
    assert acc.authenticate(SRC, "X", "bad", 5.4).problem == BAD_CREDENTIALS
    assert acc.authenticate(SRC, "X", "bad", 5.5).locked_now
    assert acc.throttle.lockouts == 2


def test_success_clears_the_sources_failure_count() -> None:
    acc = access(failures=3)
    for t in (0.0, 1.0, 2.0):  # unknown users: only the source's count (not HFTD's budget)
        acc.authenticate(SRC, "X", "bad", t)
    assert acc.authenticate(SRC, "HFTD", "pw", 3.0).accepted
    assert len(acc.throttle) == 0
    for t in (4.0, 5.0, 6.0):  # three more are fine again: the count was cleared
        assert acc.authenticate(SRC, "X", "bad", t).problem == BAD_CREDENTIALS
    assert acc.authenticate(SRC, "HFTD", "pw", 7.0).accepted


def test_unknown_user_counts_as_a_failure() -> None:
    acc = access(failures=1)
    assert acc.authenticate(SRC, "NOBODY", "pw", 0.0).problem == BAD_CREDENTIALS
    assert acc.authenticate(SRC, "", "", 0.1).locked_now


def test_open_port_accepts_any_login_and_never_locks() -> None:
    acc = access(users={}, failures=1)
    acc.users = None  # market data without md_users
    for t in range(10):
        assert acc.authenticate(SRC, "ANY", f"x{t}", float(t)).accepted
    assert acc.throttle.failed_logins == 0


def test_per_user_session_cap() -> None:
    acc = access(per_user=2)
    assert acc.open_session("FEED").accepted
    assert acc.open_session("FEED").accepted
    v = acc.open_session("FEED")
    assert not v.accepted and v.reject == REJECT_SESSION_UNAVAILABLE and "2 sessions" in v.problem
    assert acc.open_session("OTHER").accepted  # per user, not per port
    acc.close_session("FEED")
    assert acc.open_session("FEED").accepted
    assert acc.counters(0.0)["sessions_refused"] == 1
    for _ in range(2):
        acc.close_session("FEED")
    acc.close_session("OTHER")
    assert acc.sessions is not None and acc.sessions.count("FEED") == 0
    with pytest.raises(ValueError):
        acc.close_session("FEED")


def test_no_session_cap_when_not_configured() -> None:
    acc = access(per_user=None)
    assert all(acc.open_session("HFTD").accepted for _ in range(100))
    acc.close_session("HFTD")  # a no-op without a cap


def test_connection_cap() -> None:
    cap = ConnectionCap(2)
    assert cap.admit() and cap.admit()
    assert not cap.admit() and not cap.admit()
    assert (cap.open, cap.refused) == (2, 2)
    cap.release()
    assert cap.admit()
    for _ in range(2):
        cap.release()
    assert cap.open == 0
    with pytest.raises(ValueError):
        cap.release()


def test_source_table_is_bounded_under_a_flood_from_many_sources() -> None:
    th = LoginThrottle(max_failures=2, window_s=60.0, lockout_s=60.0, max_sources=100)
    for i in range(10_000):
        th.failure(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", float(i) * 1e-3)
        assert len(th) <= 100
    assert th.evicted == 10_000 - 100
    # The most recent sources are the ones kept.
    th.failure("10.0.39.15", 10.0)  # source 9999 again: its second failure
    assert th.failure("10.0.39.15", 10.0) is True  # third: over 2, locked


def test_expired_sources_are_dropped_before_evicting_live_ones() -> None:
    th = LoginThrottle(max_failures=5, window_s=1.0, lockout_s=1.0, max_sources=10)
    for i in range(10):
        th.failure(f"old{i}", 0.0)
    th.failure("new", 5.0)  # every old one expired: dropped, not evicted
    assert len(th) == 1 and th.evicted == 0


def test_every_loopback_address_is_one_source() -> None:
    """Any 127.x.y.z reaches 127.0.0.1: counting them apart gave each guess a new source."""
    same = ["127.0.0.1", "127.0.0.2", "127.5.6.7", "127.255.255.254", "::1", "::ffff:127.0.0.9"]
    assert {source_key(a) for a in same} == {LOOPBACK}
    acc = access(failures=3)
    for t, addr in enumerate(same[1:5]):  # unknown users: only the source counts
        acc.authenticate(addr, f"X{t}", "bad", float(t))
    v = acc.authenticate("127.0.0.1", "HFTD", "pw", 10.0)
    assert not v.accepted and v.locked_out and v.problem == LOCKED_OUT
    assert acc.authenticate("::ffff:127.0.0.9", "HFTD", "pw", 10.0).locked_out
    assert acc.counters(10.0)["sources_tracked"] == 1
    assert acc.authenticate("10.0.0.1", "HFTD", "pw", 10.0).accepted  # not loopback


def test_ipv4_sources_stay_apart_and_mapped_ipv4_is_the_same_address() -> None:
    assert source_key("10.0.0.1") == "10.0.0.1" != source_key("10.0.0.2")
    assert source_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert source_key("?") == "?"  # no peer address: one source of its own
    assert source_key(source_key("::1")) == LOOPBACK  # already a key: unchanged


def test_ipv6_sources_are_counted_per_64() -> None:
    """A host is usually given a whole /64: each of its addresses is not a new source."""
    a, b = "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:5"
    assert source_key(a) == source_key(b) == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:3::1") != source_key(a)
    assert source_key("fe80::1%eth0") == source_key("fe80::2") == "fe80::/64"
    acc = access(failures=3)
    for t in range(4):
        acc.authenticate(a if t % 2 else b, f"X{t}", "bad", float(t))
    assert acc.authenticate("2001:db8:1:2::77", "HFTD", "pw", 5.0).locked_out
    assert acc.authenticate("2001:db8:1:3::77", "HFTD", "pw", 5.0).accepted


def test_a_username_is_locked_out_after_failures_from_many_sources() -> None:
    acc = access(failures=3, lockout=30.0)
    for i in range(3):
        v = acc.authenticate(f"10.0.0.{i}", "HFTD", "bad", float(i))
        assert v.problem == BAD_CREDENTIALS and not v.user_locked_now
    v = acc.authenticate("10.0.0.3", "HFTD", "bad", 3.0)  # the 4th for HFTD, the 1st here
    assert v.user_locked_now and not v.locked_now and not v.locked_out
    assert v.reject == REJECT_NOT_AUTHORIZED and v.problem == USER_LOCKED_OUT
    # Every login as HFTD is refused unread, from anywhere; other users are not affected.
    for t in range(4, 33):
        v = acc.authenticate(f"10.1.0.{t}", "HFTD", "pw", float(t))
        assert not v.accepted and v.locked_out and v.problem == USER_LOCKED_OUT
    assert acc.authenticate("10.0.0.3", "OTHER", "pw2", 4.0).accepted
    c = acc.counters(32.0)
    assert (c["user_lockouts"], c["locked_out_users"]) == (1, 1)
    assert c["logins_refused_user_locked_out"] == 29 and c["failed_logins"] == 4
    # Refusals did not extend it: it ends 30 s after it began, and the count starts again.
    assert acc.authenticate("10.2.0.1", "HFTD", "pw", 33.0).accepted
    assert acc.counters(33.0)["locked_out_users"] == 0
    for i in range(3):
        assert acc.authenticate(f"10.3.0.{i}", "HFTD", "bad", 34.0).problem == BAD_CREDENTIALS


def test_a_success_does_not_reset_the_usernames_budget() -> None:
    """Else a guesser would get a fresh budget every time the firm's client logs in."""
    acc = access(failures=3)
    for i in range(3):
        acc.authenticate(f"10.0.0.{i}", "HFTD", "bad", float(i))
    assert acc.authenticate("10.9.9.9", "HFTD", "pw", 3.0).accepted
    assert acc.authenticate("10.0.0.4", "HFTD", "bad", 4.0).user_locked_now
    # Failures older than the window are forgotten.
    acc = access(failures=3, window=10.0)
    for t in (0.0, 4.0, 8.0, 12.0, 16.0, 20.0):
        assert acc.authenticate(f"10.0.0.{int(t)}", "HFTD", "bad", t).problem == BAD_CREDENTIALS


def test_the_username_table_holds_only_configured_users() -> None:
    """Unknown names cannot log in: counting them would only let a flood grow or evict."""
    acc = access(failures=3)
    for i in range(5000):
        acc.authenticate(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", f"U{i}", "bad", 0.0)
    assert len(acc.user_throttle) == 0
    assert len(acc.throttle) <= acc.throttle.max_sources
    for i in range(4):  # a configured one is still counted
        acc.authenticate(f"10.200.0.{i}", "OTHER", "bad", 1.0)
    assert len(acc.user_throttle) == 1 and acc.counters(1.0)["locked_out_users"] == 1


@pytest.mark.parametrize(
    "args", [(0, 1.0, 1.0), (1, 0.0, 1.0), (1, 1.0, 0.0)], ids=["failures", "window", "lockout"]
)
def test_throttle_limits_must_be_positive(args: tuple[int, float, float]) -> None:
    with pytest.raises(ValueError):
        LoginThrottle(*args)


def test_config_defaults_and_md_users() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    ex = cfg.exchange
    assert (ex.login_max_failures, ex.login_failure_window_s, ex.login_lockout_s) == (5, 60, 60)
    assert (ex.max_connections, ex.md_max_sessions_per_user) == (64, 4)
    # The default is authenticated market data, and the feed's login is one of its users.
    assert [(u.username, u.password) for u in ex.md_users] == [
        (cfg.feed.username, cfg.feed.password)
    ]
    dup = [{"username": "MD", "password": "a"}, {"username": "MD", "password": "b"}]
    sym = [{"symbol": "X", "reference_price": "1.00"}]
    with pytest.raises(ConfigError, match=r"exchange\.md_users: duplicate username 'MD'"):
        parse_config({"symbols": sym, "exchange": {"md_users": dup}})
    with pytest.raises(ConfigError, match=r"exchange\.max_connections"):
        parse_config({"symbols": sym, "exchange": {"max_connections": 0}})
