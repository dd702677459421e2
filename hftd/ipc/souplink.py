"""A SoupBinTCP client link for a hot loop: connect, login, send, drop, back off.

The feed handler (ITCH) and the gateway (OUCH) keep the same kind of session
with the venue; this is that session's I/O half. It never blocks the loop
for long: reads are non-blocking; writes block only until the kernel takes
them (whole packets, never half of one), bounded by `SEND_TIMEOUT_S`.
Protocol decoding stays in `hftd.wire.soupbintcp.ClientSession`.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import sys
import termios
import time

from hftd.runtime.notify import say_status
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import LocalProtocolError

SEND_TIMEOUT_S = 1.0


class SoupLink:
    """One client connection at a time, reconnecting with exponential backoff.

    `next_seq` is the sequence number to log in from: the owner advances it
    as messages are applied, so a reconnect resumes exactly where it stopped.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        backoff_min_s: float,
        backoff_max_s: float,
        silence_s: float,
        log: logging.Logger,
        rcvbuf: int = 0,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.silence_s = silence_s
        self.log = log
        self.rcvbuf = rcvbuf
        self.sock: socket.socket | None = None
        self.session = soup.ClientSession()
        self.next_seq = 1
        self.requested = 0
        self.backoff = backoff_min_s
        self.reconnect_at = 0.0
        self.last_rx = 0.0
        self.last_tx = 0.0
        self.reconnects = 0

    @property
    def up(self) -> bool:
        return self.sock is not None

    def fds(self) -> list[int]:
        return [self.sock.fileno()] if self.sock is not None else []

    def connect_if_due(self) -> bool:
        """Connect and send the login when the backoff allows; True if it tried."""
        if self.sock is not None or time.monotonic() < self.reconnect_at:
            return False
        try:
            login = soup.login_request(self.username, self.password, "", self.next_seq)
        except LocalProtocolError as exc:
            # The venue numbered its messages past what a login can ask for (20 digits):
            # its word, not our bug. Stay down (and say so) rather than end the daemon.
            self._schedule(f"cannot log in from sequence {self.next_seq}: {exc}")
            return True
        try:
            sock = socket.create_connection((self.host, self.port), timeout=1.0)
        except OSError as exc:
            self._schedule(f"connect to {self.host}:{self.port} failed: {exc}")
            return True
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        self.sock = sock
        self.session = soup.ClientSession()
        self.requested = self.next_seq
        self.last_rx = self.last_tx = time.monotonic()
        self.send(login)
        self.log.info(
            "%s: connected to %s:%d, logging in as %s from sequence %d",
            self.name,
            self.host,
            self.port,
            self.username,
            self.requested,
        )
        return True

    def send(self, data: bytes) -> bool:
        """Write whole packets; a failure drops the link (False).

        One non-blocking send first: it nearly always takes everything. Only the
        rest of a partial send waits, up to SEND_TIMEOUT_S (a socket with a timeout
        costs two fcntl calls to set, a poll before every send, two to undo)."""
        sock = self.sock
        if sock is None:
            return False
        try:
            try:
                n = sock.send(data)
            except BlockingIOError:
                n = 0
            if n < len(data):
                sock.settimeout(SEND_TIMEOUT_S)
                sock.sendall(memoryview(data)[n:])
                sock.setblocking(False)
        except OSError as exc:
            self.drop(f"send failed: {exc}")
            return False
        self.last_tx = time.monotonic()
        return True

    def recv_into(self, buf: bytearray) -> int:
        """Bytes read; -1 if nothing was ready; 0 if the link went down (dropped)."""
        sock = self.sock
        if sock is None:
            return 0
        try:
            n = sock.recv_into(buf)
        except BlockingIOError:
            return -1
        except OSError as exc:
            self.drop(f"link error: {exc}")
            return 0
        if n == 0:
            self.drop("the venue closed the link")
            return 0
        self.last_rx = time.monotonic()
        return n

    def keepalive(self) -> None:
        """Heartbeat after a second of silence; drop a venue silent too long."""
        if self.sock is None:
            return
        now = time.monotonic()
        if now - self.last_tx >= soup.HEARTBEAT_INTERVAL:
            self.send(soup.CLIENT_HEARTBEAT)
        if self.sock is not None and now - self.last_rx > self.silence_s:
            self.drop(f"venue silent for {now - self.last_rx:.1f} s")

    def heard_ms_ago(self) -> int | None:
        """Milliseconds since the venue last sent anything (since the connect, if it
        has sent nothing yet); None while no connection is up. For Status, off the
        hot path: a venue that stopped answering shows here long before `silence_s`
        drops the link (the monitor's `venue_silent` alert).

        0 while what it sent waits unread in the socket: the venue talks, the loop
        is behind (a hot path too slow for the flow reads seconds apart; that is the
        feed's `md_backlog`, not a venue that stopped answering)."""
        if self.sock is None:
            return None
        ago = max(0, int((time.monotonic() - self.last_rx) * 1000))
        return 0 if ago and self.unread_bytes() else ago

    def unread_bytes(self) -> int | None:
        """Bytes the venue has sent that wait unread in this connection's socket (the
        kernel's receive queue: ioctl FIONREAD); None while no connection is up. For
        Status, off the hot path (one system call on the control thread): a loop
        slower than the venue's flow leaves its backlog here, where no timestamp of
        ours sees it (T1 is taken when the loop reads). A floor: past what the
        receive buffer holds the backlog waits in the venue's send buffer.

        Read while the hot thread may drop the link: a socket closed meanwhile reads
        as None; one whose number was reused at once by the next connection reads
        as that one's queue."""
        sock = self.sock
        if sock is None:
            return None
        try:
            raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4))
        except (OSError, ValueError):  # closed under us (fileno -1, or EBADF)
            return None
        return int.from_bytes(raw, sys.byteorder, signed=True)

    def logged_in(self) -> None:
        """The login was accepted: the next failure starts backing off from scratch."""
        self.backoff = self.backoff_min_s
        say_status(f"{self.name}: logged in")

    def drop(self, why: str, *, at_once: bool = False) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self.reconnects += 1
        self._schedule(why, 0.0 if at_once else None)

    def _schedule(self, why: str, delay: float | None = None) -> None:
        wait = self.backoff if delay is None else delay
        self.reconnect_at = time.monotonic() + wait
        self.log.warning(
            "%s: %s; reconnecting in %.2f s from sequence %d", self.name, why, wait, self.next_seq
        )
        # STATUS=: a daemon waiting for its venue says why (a refused login), and the
        # supervisor's "not READY" names it
        say_status(f"{self.name}: {why}; reconnecting in {wait:.2f} s")
        if delay is None:
            self.backoff = min(self.backoff * 2, self.backoff_max_s)

    def next_timer_s(self) -> float:
        now = time.monotonic()
        if self.sock is None:
            return max(0.0, self.reconnect_at - now)
        return max(0.0, self.last_tx + soup.HEARTBEAT_INTERVAL - now)
