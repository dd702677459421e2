"""SoupBinTCP 3.0 framing and session state machines (sans-IO).

Packet: ``length u16`` (type byte + payload) · ``type`` · payload. The
session classes take bytes in and return events; the daemons own the sockets
and the timers (a side sends a heartbeat after `HEARTBEAT_INTERVAL` of
silence and drops a peer silent for `HEARTBEAT_TIMEOUT`).

Sequence numbers are implicit: after LoginAccepted(N) the n-th sequenced
packet is message N+n-1. `ClientSession` numbers them for the caller, which
is how gap detection and recovery by re-login work.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator

import msgspec

from hftd.wire.errors import LocalProtocolError, RemoteProtocolError

HEARTBEAT_INTERVAL = 1.0
HEARTBEAT_TIMEOUT = 15.0

DEBUG = b"+"
LOGIN_ACCEPTED = b"A"
LOGIN_REJECTED = b"J"
SEQUENCED = b"S"
SERVER_HEARTBEAT_T = b"H"
END_OF_SESSION_T = b"Z"
LOGIN_REQUEST = b"L"
UNSEQUENCED = b"U"
CLIENT_HEARTBEAT_T = b"R"
LOGOUT_REQUEST_T = b"O"

REJECT_NOT_AUTHORIZED = "A"
REJECT_SESSION_UNAVAILABLE = "S"

MAX_PAYLOAD = 65534  # length counts the type byte

_U16 = struct.Struct(">H")
_LOGIN_BODY = 6 + 10 + 10 + 20
_ACCEPT_BODY = 10 + 20


def packet(ptype: bytes, payload: bytes = b"") -> bytes:
    """Frame one packet."""
    n = len(payload) + 1
    if n > MAX_PAYLOAD + 1:
        raise LocalProtocolError(f"SoupBinTCP payload too large: {len(payload)} bytes")
    return _U16.pack(n) + ptype + payload


SERVER_HEARTBEAT = packet(SERVER_HEARTBEAT_T)
CLIENT_HEARTBEAT = packet(CLIENT_HEARTBEAT_T)
END_OF_SESSION = packet(END_OF_SESSION_T)
LOGOUT_REQUEST = packet(LOGOUT_REQUEST_T)


def _alpha(text: str, width: int, *, right: bool = False) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > width:
        raise LocalProtocolError(f"{text!r} is longer than {width} characters")
    return raw.rjust(width) if right else raw.ljust(width)


def login_request(username: str, password: str, session: str = "", sequence: int = 1) -> bytes:
    """L: sequence 1 = from the start of the session, 0 = from now."""
    body = (
        _alpha(username, 6)
        + _alpha(password, 10)
        + _alpha(session, 10, right=True)
        + _alpha(str(sequence), 20, right=True)
    )
    return packet(LOGIN_REQUEST, body)


def login_accepted(session: str, sequence: int) -> bytes:
    """A: `sequence` is the number of the next sequenced message."""
    return packet(
        LOGIN_ACCEPTED, _alpha(session, 10, right=True) + _alpha(str(sequence), 20, right=True)
    )


def login_rejected(reason: str) -> bytes:
    return packet(LOGIN_REJECTED, reason.encode("ascii"))


def sequenced(payload: bytes) -> bytes:
    return packet(SEQUENCED, payload)


def unsequenced(payload: bytes) -> bytes:
    return packet(UNSEQUENCED, payload)


def debug(text: str) -> bytes:
    return packet(DEBUG, text.encode("ascii", "replace"))


_TYPE_BYTES = [bytes([i]) for i in range(256)]  # a packet's type without a new object


class FrameDecoder:
    """Splits a byte stream into (type, payload) packets.

    With nothing pending (the usual case: reads end on packet boundaries) the
    read is kept as one `bytes` and every payload is a slice of it: one object
    per packet. Only a partial packet is carried over, in a bytearray that
    later reads extend (amortized, however small the pieces)."""

    def __init__(self) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            self._buf = bytes(data)
            self._pos = 0
            return
        if type(buf) is bytes:
            buf = self._buf = bytearray(buf[pos:])
        elif pos:
            del buf[:pos]  # type: ignore[union-attr]
        self._pos = 0
        buf += data

    def next_packet(self) -> tuple[bytes, bytes] | None:
        """The next complete packet, or None until more bytes arrive."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 2:
            return None
        (n,) = _U16.unpack_from(buf, pos)
        if n == 0:
            raise RemoteProtocolError("SoupBinTCP packet with length 0")
        end = pos + 2 + n
        if len(buf) < end:
            return None
        self._pos = end
        body = buf[pos + 3 : end]
        return _TYPE_BYTES[buf[pos + 2]], body if type(body) is bytes else bytes(body)

    def packets(self, data: bytes | bytearray | memoryview) -> Iterator[tuple[bytes, bytes]]:
        """Feed `data` and yield every complete packet."""
        self.feed(data)
        while (p := self.next_packet()) is not None:
            yield p

    @property
    def pending(self) -> int:
        return len(self._buf) - self._pos


# --- events -------------------------------------------------------------------


class LoginRequested(msgspec.Struct, frozen=True):
    username: str
    password: str
    session: str  # "" = current session
    sequence: int  # 0 = from now, 1 = from the start


class UnsequencedData(msgspec.Struct, frozen=True):
    payload: bytes


class ClientHeartbeat(msgspec.Struct, frozen=True):
    pass


class LogoutRequested(msgspec.Struct, frozen=True):
    pass


class Debug(msgspec.Struct, frozen=True):
    text: str


class LoginAccepted(msgspec.Struct, frozen=True):
    session: str
    sequence: int


class LoginRejected(msgspec.Struct, frozen=True):
    reason: str


class SequencedData(msgspec.Struct, frozen=True):
    sequence: int
    payload: bytes


class ServerHeartbeat(msgspec.Struct, frozen=True):
    pass


class EndOfSession(msgspec.Struct, frozen=True):
    pass


ServerSideEvent = LoginRequested | UnsequencedData | ClientHeartbeat | LogoutRequested | Debug
ClientSideEvent = (
    LoginAccepted | LoginRejected | SequencedData | ServerHeartbeat | EndOfSession | Debug
)


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"{what} is not ASCII") from exc


def parse_login_request(body: bytes) -> LoginRequested:
    if len(body) != _LOGIN_BODY:
        raise RemoteProtocolError(
            f"login request payload is {len(body)} bytes, expected {_LOGIN_BODY}"
        )
    seq_text = _ascii(body[26:46], "login sequence number").strip()
    if seq_text and not seq_text.isdigit():
        raise RemoteProtocolError(f"login sequence number {seq_text!r} is not numeric")
    return LoginRequested(
        username=_ascii(body[0:6], "username").strip(),
        password=_ascii(body[6:16], "password").strip(),
        session=_ascii(body[16:26], "session").strip(),
        sequence=int(seq_text) if seq_text else 0,
    )


class State(enum.Enum):
    AWAITING_LOGIN = "awaiting login"
    LOGIN_PENDING = "login pending"  # request received, not yet accepted
    ESTABLISHED = "established"
    CLOSED = "closed"


class ServerSession:
    """The venue's view of one client connection.

    `receive_data` returns events; a packet that is not valid for the state
    raises RemoteProtocolError, after which the caller ends the connection.
    """

    def __init__(self) -> None:
        self.state = State.AWAITING_LOGIN
        self._frames = FrameDecoder()

    def receive_data(self, data: bytes) -> list[ServerSideEvent]:
        """Events for the complete packets so far.

        After a LoginRequested, later packets wait in the buffer until
        `accept()` (which returns their events): a client may pipeline its
        first orders behind its login.
        """
        if self.state is State.CLOSED:
            raise RemoteProtocolError("data after logout")
        self._frames.feed(data)
        return self._drain()

    def _drain(self) -> list[ServerSideEvent]:
        events: list[ServerSideEvent] = []
        while self.state is not State.LOGIN_PENDING and (p := self._frames.next_packet()):
            ev = self._on_packet(*p)
            events.append(ev)
            if isinstance(ev, LogoutRequested):
                break
        return events

    def _on_packet(self, ptype: bytes, body: bytes) -> ServerSideEvent:
        if ptype == DEBUG:
            return Debug(body.decode("ascii", "replace"))
        if self.state is State.AWAITING_LOGIN:
            if ptype != LOGIN_REQUEST:
                raise RemoteProtocolError(f"expected a login request, got packet type {ptype!r}")
            login = parse_login_request(body)
            self.state = State.LOGIN_PENDING
            return login
        if ptype == UNSEQUENCED:
            return UnsequencedData(body)
        if ptype == CLIENT_HEARTBEAT_T:
            if body:
                raise RemoteProtocolError("client heartbeat with a payload")
            return ClientHeartbeat()
        if ptype == LOGOUT_REQUEST_T:
            self.state = State.CLOSED
            return LogoutRequested()
        if ptype == LOGIN_REQUEST:
            raise RemoteProtocolError("second login request on an established session")
        raise RemoteProtocolError(f"packet type {ptype!r} is not valid from a client")

    def accept(self) -> list[ServerSideEvent]:
        """Record that the login was accepted; returns events for pipelined packets."""
        if self.state is not State.LOGIN_PENDING:
            raise LocalProtocolError(f"accept in state {self.state.value}")
        self.state = State.ESTABLISHED
        return self._drain()


class ClientSession:
    """A client's view of its connection: numbers the sequenced messages."""

    def __init__(self) -> None:
        self.state = State.AWAITING_LOGIN
        self.next_sequence = 0  # number of the next sequenced message, once logged in
        self.session = ""
        self._frames = FrameDecoder()

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ClientSideEvent]:
        return list(self.iter_events(data))

    def iter_events(self, data: bytes | bytearray | memoryview) -> Iterator[ClientSideEvent]:
        established = State.ESTABLISHED
        for ptype, body in self._frames.packets(data):
            if ptype == SEQUENCED and self.state is established:  # the hot case, inline
                seq = self.next_sequence
                self.next_sequence = seq + 1
                yield SequencedData(seq, body)
            else:
                yield self._on_packet(ptype, body)

    def _on_packet(self, ptype: bytes, body: bytes) -> ClientSideEvent:
        if ptype == DEBUG:
            return Debug(body.decode("ascii", "replace"))
        if self.state is State.AWAITING_LOGIN:
            if ptype == LOGIN_ACCEPTED:
                if len(body) != _ACCEPT_BODY:
                    raise RemoteProtocolError(f"login accepted payload is {len(body)} bytes")
                seq_text = _ascii(body[10:30], "sequence number").strip()
                if not seq_text.isdigit():
                    raise RemoteProtocolError(f"login accepted sequence {seq_text!r}")
                self.session = _ascii(body[:10], "session").strip()
                self.next_sequence = int(seq_text)
                self.state = State.ESTABLISHED
                return LoginAccepted(self.session, self.next_sequence)
            if ptype == LOGIN_REJECTED:
                self.state = State.CLOSED
                return LoginRejected(_ascii(body, "reject reason"))
            raise RemoteProtocolError(f"expected a login response, got packet type {ptype!r}")
        if self.state is State.CLOSED:
            raise RemoteProtocolError(f"packet type {ptype!r} after end of session")
        if ptype == SEQUENCED:
            seq = self.next_sequence
            self.next_sequence = seq + 1
            return SequencedData(seq, body)
        if ptype == SERVER_HEARTBEAT_T:
            return ServerHeartbeat()
        if ptype == END_OF_SESSION_T:
            self.state = State.CLOSED
            return EndOfSession()
        raise RemoteProtocolError(f"packet type {ptype!r} is not valid from a server")
