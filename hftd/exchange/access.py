"""Venue access control (sans-IO): who may log in, how often, how many at once.

The exchange daemon asks a `PortAccess` (one per listening port) before it
keeps a connection and before it accepts a login, passing the time in as
`now` (seconds on a monotonic clock), so every rule is unit-tested without
sockets or trio.

- Failed logins are throttled per source (`source_key`): more than
  `max_failures` within `window_s` lock the source out for `lockout_s`;
  while locked out every login from it is refused without looking at the
  password, so a guesser learns nothing and the right password fails too
  until the lockout ends. Logins refused while locked out do not extend the
  lockout (the firm's own client sharing the address gets in once it ends).
  A successful login clears the source's failures.
- A source is what a client cannot choose freely: every loopback address is
  one source (a local user can bind any 127.x.y.z and still reach
  127.0.0.1), and an IPv6 address counts by its /64 (what one host is
  usually given).
- Failed logins are also counted per configured username, from any source,
  with the same limits: guessing one user's password from many addresses
  locks that user out. A success does not reset it (else every login of the
  firm's client would hand a guesser a fresh budget); failures age out.
- Both tables are bounded: sources by `max_sources` (least recently failing
  evicted first), usernames by the config (unknown names are not counted:
  they cannot log in anyway), so a flood cannot grow memory.
- Connections open at once are capped per port (logged-in or not); sessions
  per user are capped where the port says so (market data).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from hftd.runtime.logguard import LogThrottle

REJECT_NOT_AUTHORIZED = "A"  # SoupBinTCP Login Rejected reasons
REJECT_SESSION_UNAVAILABLE = "S"

DEFAULT_MAX_SOURCES = 4096
LOCKED_OUT = "source locked out after repeated failed logins"
USER_LOCKED_OUT = "user locked out after repeated failed logins"
BAD_CREDENTIALS = "wrong username or password"
LOOPBACK = "loopback"  # the one source of every loopback address
REFUSED_LOG_BURST = 3  # refused-login log lines at once, then one per interval


def source_key(address: str) -> str:
    """The source a client's address counts as for the login throttle.

    Every loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z) is `LOOPBACK`:
    any local user may bind any of them. IPv4-mapped IPv6 is its IPv4 address;
    other IPv6 counts by its /64 (a host is usually given a whole one). What
    does not parse (no peer address, or a key already) is its own source.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


@dataclass(slots=True)
class _Source:
    failures: deque[float]  # times of recent failed logins, oldest first
    locked_until: float = 0.0  # 0.0 = not locked out


class LoginThrottle:
    """Failed logins per key (a source, or a username); a key over the limit is locked
    out for a while."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        max_sources: int = DEFAULT_MAX_SOURCES,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or lockout_s <= 0 or max_sources < 1:
            raise ValueError("throttle limits must be positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Source] = OrderedDict()  # least recent failure first
        self.failed_logins = 0
        self.lockouts = 0
        self.refused_locked = 0  # logins refused unread because the source was locked out
        self.evicted = 0  # sources dropped from a full table before they expired

    def __len__(self) -> int:
        return len(self._sources)

    def locked(self, source: str, now: float) -> bool:
        """True while `source` is locked out (an expired lockout is forgotten here)."""
        s = self._sources.get(source)
        if s is None or not s.locked_until:
            return False
        if now < s.locked_until:
            return True
        del self._sources[source]  # served its time: starts again from no failures
        return False

    def refuse(self) -> None:
        """Count a login refused because its source is locked out."""
        self.refused_locked += 1

    def failure(self, source: str, now: float) -> bool:
        """Record a failed login; True if it locked the source out (log that once)."""
        self.failed_logins += 1
        s = self._sources.pop(source, None)
        if s is not None and s.locked_until:
            if now < s.locked_until:  # the caller did not ask `locked` first
                self._sources[source] = s
                return False
            s = None
        if s is None:
            self._make_room(now)
            s = _Source(deque(maxlen=self.max_failures + 1))
        s.failures.append(now)
        while s.failures[0] <= now - self.window_s:
            s.failures.popleft()
        self._sources[source] = s  # most recent failure last
        if len(s.failures) > self.max_failures:
            s.locked_until = now + self.lockout_s
            self.lockouts += 1
            return True
        return False

    def success(self, source: str) -> None:
        """A login from `source` was right: forget its failures."""
        self._sources.pop(source, None)

    def locked_sources(self, now: float) -> int:
        return sum(1 for s in self._sources.values() if now < s.locked_until)

    def _expired(self, s: _Source, now: float) -> bool:
        return now >= s.locked_until and (not s.failures or s.failures[-1] <= now - self.window_s)

    def _make_room(self, now: float) -> None:
        """Drop expired sources from the old end; evict the oldest if still full."""
        while self._sources:
            oldest = next(iter(self._sources.values()))
            if not self._expired(oldest, now):
                break
            self._sources.popitem(last=False)
        while len(self._sources) >= self.max_sources:
            self._sources.popitem(last=False)
            self.evicted += 1


class ConnectionCap:
    """Connections open at once on one port, logged in or not."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("connection limit must be positive")
        self.limit = limit
        self.open = 0
        self.refused = 0

    def admit(self) -> bool:
        """Count a new connection in; False (and counted as refused) when at the cap."""
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def release(self) -> None:
        if self.open <= 0:
            raise ValueError("release without admit")
        self.open -= 1


class SessionCap:
    """Logged-in sessions per user."""

    def __init__(self, per_user: int) -> None:
        if per_user < 1:
            raise ValueError("sessions per user must be positive")
        self.per_user = per_user
        self._open: dict[str, int] = {}  # only users with a session: bounded by connections
        self.refused = 0

    def count(self, user: str) -> int:
        return self._open.get(user, 0)

    def acquire(self, user: str) -> bool:
        n = self._open.get(user, 0)
        if n >= self.per_user:
            self.refused += 1
            return False
        self._open[user] = n + 1
        return True

    def release(self, user: str) -> None:
        n = self._open.get(user, 0)
        if n <= 0:
            raise ValueError(f"release of {user!r} without acquire")
        if n == 1:
            del self._open[user]
        else:
            self._open[user] = n - 1


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to a login: accepted, or the reject code and why (for the log)."""

    accepted: bool
    reject: str = ""  # SoupBinTCP Login Rejected reason when refused
    problem: str = ""
    locked_now: bool = False  # this failure locked the source out: log it (once)
    user_locked_now: bool = False  # this failure locked the username out: log it (once)

    @property
    def locked_out(self) -> bool:
        """Refused because the source or user was already locked out (no line per attempt)."""
        return (
            self.problem in (LOCKED_OUT, USER_LOCKED_OUT)
            and not self.locked_now
            and not self.user_locked_now
        )


ACCEPTED = Verdict(True)


@dataclass(slots=True)
class PortAccess:
    """Every access rule of one listening port."""

    users: Mapping[str, str] | None  # username -> password; None = any login is accepted
    throttle: LoginThrottle  # per source (`source_key`)
    connections: ConnectionCap
    sessions: SessionCap | None = None  # None: no per-user cap here
    refused_warning: LogThrottle = field(default_factory=lambda: LogThrottle(5.0, burst=1))
    refused_login_warning: LogThrottle = field(
        default_factory=lambda: LogThrottle(5.0, burst=REFUSED_LOG_BURST)
    )
    user_throttle: LoginThrottle = field(init=False)  # per configured username, same limits

    def __post_init__(self) -> None:
        t = self.throttle
        self.user_throttle = LoginThrottle(t.max_failures, t.window_s, t.lockout_s, t.max_sources)

    def authenticate(self, source: str, username: str, password: str, now: float) -> Verdict:
        """Check a login's source (any address; see `source_key`), its username's
        failure budget and its credentials (not its session cap)."""
        source = source_key(source)
        if self.throttle.locked(source, now):
            self.throttle.refuse()
            return Verdict(False, REJECT_NOT_AUTHORIZED, LOCKED_OUT)
        if self.users is None:
            self.throttle.success(source)
            return ACCEPTED
        expected = self.users.get(username)
        if expected is not None and self.user_throttle.locked(username, now):
            self.user_throttle.refuse()
            return Verdict(False, REJECT_NOT_AUTHORIZED, USER_LOCKED_OUT)
        right = expected is not None and hmac.compare_digest(
            expected.encode("ascii", "replace"), password.encode("ascii", "replace")
        )
        if right:
            self.throttle.success(source)  # the user's budget is kept: it ages out
            return ACCEPTED
        locked = self.throttle.failure(source, now)  # counts the port's failed_logins
        user_locked = expected is not None and self.user_throttle.failure(username, now)
        problem = LOCKED_OUT if locked else USER_LOCKED_OUT if user_locked else BAD_CREDENTIALS
        return Verdict(
            False, REJECT_NOT_AUTHORIZED, problem, locked_now=locked, user_locked_now=user_locked
        )

    def open_session(self, username: str) -> Verdict:
        """Take one of the user's session slots (release with `close_session`)."""
        if self.sessions is None or self.sessions.acquire(username):
            return ACCEPTED
        return Verdict(
            False,
            REJECT_SESSION_UNAVAILABLE,
            f"user already has {self.sessions.per_user} sessions open, the most allowed",
        )

    def close_session(self, username: str) -> None:
        if self.sessions is not None:
            self.sessions.release(username)

    def counters(self, now: float) -> dict[str, int]:
        t = self.throttle
        return {
            "failed_logins": t.failed_logins,
            "lockouts": t.lockouts,
            "locked_out_sources": t.locked_sources(now),
            "logins_refused_locked_out": t.refused_locked,
            "sources_tracked": len(t),
            "sources_evicted": t.evicted,
            "user_lockouts": self.user_throttle.lockouts,
            "locked_out_users": self.user_throttle.locked_sources(now),
            "logins_refused_user_locked_out": self.user_throttle.refused_locked,
            "connections_open": self.connections.open,
            "connections_refused": self.connections.refused,
            "sessions_refused": self.sessions.refused if self.sessions else 0,
        }
