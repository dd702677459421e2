"""Structure-aware hostile input for every hftd listener, and what each must make of it.

Pure: no sockets. Each generator draws from a `random.Random`, so the live fuzz
(`test_listeners.py`, 10^5 inputs a listener, seeded) and the Hypothesis tests
(`test_codecs.py`, which hand the same generators `st.randoms()`) share them.

A `Case` is one connection: the bytes a client sends, how (at once, in random
chunks, dribbled a few bytes at a time), how it ends (shutdown or an abrupt
reset), and what the listener must answer. Its `inputs` are the units the
listener processes (SoupBinTCP packets, control frames, HTTP requests), counted
by a model of the listener built from the same pure codecs the daemons run: a
packet behind the one that ended the session is sent but not counted.

What is generated (weights in the code):
- SoupBinTCP (the exchange's OUCH and ITCH ports): logins valid and odd (wrong
  length, non-ASCII, unknown user, wrong password, sequence numbers non-numeric,
  negative, 20 digits, spaces; unknown session), other packets before a login,
  then heartbeats, debug text, OUCH Enter/Replace/Cancel with mutated fields
  (edge integers, negative and sentinel prices, bad sides and TIFs, non-ASCII
  text, appendage lengths that lie), truncated and unknown messages, packets a
  client may not send, zero-length packets, a second login, logout then garbage;
  any of it mutated at the byte level.
- Control frames (msgpack, u32 length): valid harmless commands, the same
  mutated, command-shaped maps with odd tags and field values (huge, negative,
  NaN, wrong types, invalid UTF-8, reserved bytes, ext types), deep nesting
  (past msgspec's recursion limit), random bytes, empty bodies; frames whose
  length lies, oversized headers, several frames pipelined.
- HTTP: valid GETs, then request lines, targets, versions, headers, Content-Length
  values, bodies and action POSTs mutated, huge heads and bodies, bare LFs,
  pipelined and valid-then-garbage requests.

Commands that would act on the legitimate session (Pause, Halt, Flatten,
Resume, Disconnect, Inject, Resync, Reload) are never sent: the control sockets
are the operator's, so such a frame that decodes is an order, not hostile input.
A generated body that decodes to one is drawn again.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Any

import msgspec

from hftd.ctl.registry import VERBS
from hftd.ipc.framing import HEADER
from hftd.monitor import http
from hftd.msg import control as ctl
from hftd.wire import ouch
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import RemoteProtocolError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

# --- primitives ----------------------------------------------------------------------------


def edge_int(r: random.Random, bits: int, *, signed: bool = False) -> int:
    """An integer of `bits` bits, often one at an edge."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    pick = r.random()
    if pick < 0.5:
        return r.choice([lo, lo + 1, hi, hi - 1, 0, 1, -1 if signed else 2, hi // 2 + 1])
    if pick < 0.7:
        return r.randint(lo, hi) >> r.randint(0, bits - 1)
    return r.randint(lo, hi)


_ODD_CHARS = (
    "\x00\x01\x07\t\n\r\x1b\x7f \"'\\%/:;#?@[]{}<>~`^|$&*+=,"
    "\xa0\xb2\xbd\xe9\xff"  # latin-1 only: '²' is isdigit(), '\xa0' isspace()
)


def odd_text(r: random.Random, n: int) -> str:
    """`n` characters, ASCII letters and digits mixed with odd ones (latin-1 only)."""
    out = []
    for _ in range(n):
        pick = r.random()
        if pick < 0.5:
            out.append(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
        elif pick < 0.85:
            out.append(r.choice(_ODD_CHARS))
        else:
            out.append(chr(r.randint(0, 255)))
    return "".join(out)


def rbytes(r: random.Random, n: int) -> bytes:
    return bytes(r.getrandbits(8) for _ in range(n))


def mutate(r: random.Random, data: bytes, rounds: int = 0) -> bytes:
    """`data` with one to three byte-level changes: flips, edge bytes, inserts, deletes,
    truncation, extension, a repeated slice."""
    buf = bytearray(data)
    for _ in range(rounds or r.randint(1, 3)):
        op = r.randrange(8)
        pos = r.randint(0, len(buf))
        if op == 0 and buf:
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << r.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = r.choice([0x00, 0xFF, 0x7F, 0x80, 0x20, 0x30, 0x39])
        elif op == 2:
            buf[pos:pos] = rbytes(r, r.randint(1, 8))
        elif op == 3:
            del buf[pos : pos + r.randint(1, 8)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            buf += rbytes(r, r.randint(1, 32))
        elif op == 6 and buf:
            a = r.randrange(len(buf))
            buf[pos:pos] = buf[a : a + r.randint(1, 16)]
        else:
            buf[pos:pos] = bytes([r.getrandbits(8)]) * r.randint(1, 4)
    return bytes(buf)


# --- a case: one connection ------------------------------------------------------------------


@dataclass
class Case:
    """One connection's worth of hostile input and what the listener must answer."""

    kind: str  # a label for the counts ("login-seq", "deep+more", ...)
    data: bytes  # everything sent
    inputs: int  # units the listener processes (model)
    chunks: list[bytes] = field(default_factory=list)  # how `data` is sent
    delay_s: float = 0.0  # between chunks (a slow dribble)
    abort: bool = False  # end with a reset (SO_LINGER 0) instead of a shutdown
    expect: Any = None  # protocol-specific (see the models)


def deliver(r: random.Random, case: Case, *, dribble: bool = True) -> Case:
    """Choose how `case.data` goes out: at once, in random pieces, or dribbled; and
    whether the connection ends with a shutdown or an abrupt reset."""
    data = case.data
    pick = r.random()
    if pick < 0.55 or len(data) < 2:
        case.chunks = [data]
    elif pick < 0.92 or not dribble or len(data) > 400:
        cuts = sorted(r.sample(range(1, len(data)), min(len(data) - 1, r.randint(1, 6))))
        case.chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    else:
        step = r.randint(1, 3)
        case.chunks = [data[i : i + step] for i in range(0, len(data), step)]
        case.delay_s = r.choice([0.0, 0.0005, 0.001, 0.002])
    case.abort = r.random() < 0.15
    return case


# --- SoupBinTCP: the exchange's order-entry and market-data ports ----------------------------


@dataclass
class SoupTarget:
    """What a SoupBinTCP fuzzer may know: its own login, the venue's session, and (for
    orders) the symbol its orders may trade, which no strategy trades."""

    md: bool  # the market-data port (ITCH) or order entry (OUCH)
    username: str
    password: str
    session: str
    symbol: str = "FUZZ"
    tick: int = 100
    price: int = 1_000_000
    others: tuple[str, ...] = ()  # other configured usernames (wrong-password logins)
    avoid: frozenset[str] = frozenset()  # symbols the legitimate session trades
    next_ref: int = 1  # this user's next UserRefNum (the venue wants them increasing)
    refs: list[int] = field(default_factory=list)  # recent ones (for Replace and Cancel)

    def user_ref(self, r: random.Random) -> int:
        pick = r.random()
        if pick < 0.8:
            ref = self.next_ref
            self.next_ref += r.randint(1, 3)
        elif pick < 0.9 and self.refs:
            ref = r.choice(self.refs)  # a duplicate: rejected
        else:
            ref = r.choice([0, 1, max(self.next_ref - 1, 0)])
        self.refs = [*self.refs[-31:], ref]
        return ref


def _pkt(ptype: bytes, payload: bytes = b"", *, length: int | None = None) -> bytes:
    """A SoupBinTCP packet, its length field `length` if given (a lie)."""
    n = len(payload) + 1 if length is None else length
    return _U16.pack(n & 0xFFFF) + ptype + payload


def login_body(r: random.Random, t: SoupTarget) -> tuple[bytes, str]:
    """A login request's payload: valid, or with odd fields. Returns (payload, kind)."""
    user, password = t.username, t.password
    session = r.choice(["", "", t.session])
    seq = "0" if r.random() < 0.85 else r.choice(["1", "2", "999999", str(edge_int(r, 64))])
    kind = "login"
    pick = r.random()
    if pick < 0.55:
        pass
    elif pick < 0.65:
        kind = "login-seq"
        seq = r.choice(
            [
                "-1",
                "+1",
                " 1 2",
                "1e5",
                "NaN",
                "0x10",
                "\xb2",
                "1.5",
                "",
                "9" * 20,
                "18446744073709551616",
                odd_text(r, r.randint(1, 20)),
            ]
        )
    elif pick < 0.72:
        kind = "login-session"
        session = odd_text(r, r.randint(0, 10))
    elif pick < 0.85:
        kind = "login-creds"
        which = r.randrange(4)
        if which == 0:
            password = odd_text(r, r.randint(0, 10))
        elif which == 1:
            user = odd_text(r, r.randint(0, 6))
        elif which == 2 and t.others:
            user, password = r.choice(t.others), odd_text(r, r.randint(0, 10))
        else:
            user, password = user.lower(), password.upper()
    else:
        kind = "login-raw"
        body = rbytes(r, 46)
        return (mutate(r, body) if r.random() < 0.5 else body), kind
    raw = (
        user.encode("latin-1")[:6].ljust(6)
        + password.encode("latin-1")[:10].ljust(10)
        + session.encode("latin-1")[:10].rjust(10)
        + seq.encode("latin-1")[:20].rjust(20)
    )
    if r.random() < 0.05:
        kind = "login-length"
        raw = raw[: r.randint(0, 45)] if r.random() < 0.5 else raw + rbytes(r, r.randint(1, 40))
    return raw, kind


def ouch_inbound(r: random.Random, t: SoupTarget) -> tuple[bytes, str]:
    """One OUCH inbound message: valid with mutated fields, or broken. (bytes, kind)"""
    pick = r.random()
    price = t.price + t.tick * r.randint(-50, 50)
    if r.random() < 0.2:
        price = r.choice(
            [
                edge_int(r, 64, signed=True),
                -t.tick,
                0,
                ouch.MARKET_PRICE,
                ouch.MARKET_PRICE + 1,
                price + 1,
                2**63 - 1,
            ]
        )
    qty = r.choice([100, 1, 300]) if r.random() < 0.8 else edge_int(r, 32)
    tif = (
        ouch.TIF_IOC
        if r.random() < 0.8
        else r.choice([ouch.TIF_DAY, ouch.TIF_GTX, "1", "\x00", chr(r.randint(0, 255))])
    )
    cl_ord_id = odd_text(r, r.randint(0, 14)) if r.random() < 0.3 else f"F{r.getrandbits(32)}"
    appendage = b"" if r.random() < 0.85 else rbytes(r, r.randint(1, 40))
    if pick < 0.45:
        symbol = t.symbol
        if r.random() < 0.1:
            symbol = odd_text(r, r.randint(0, 8))
            if symbol.strip() in t.avoid:
                symbol = t.symbol
        side = r.choice("BSTE") if r.random() < 0.85 else chr(r.randint(0, 255))
        msg = ouch.EnterOrder(
            t.user_ref(r),
            side,
            qty,
            symbol,
            price,
            tif,
            r.choice("YNP") if r.random() < 0.8 else chr(r.randint(0, 255)),
            r.choice("APR") if r.random() < 0.8 else chr(r.randint(0, 255)),
            r.choice("NY"),
            r.choice("NO") if r.random() < 0.9 else chr(r.randint(0, 255)),
            cl_ord_id,
            appendage,
        )
        raw, kind = _encode_fields(r, msg), "enter"
    elif pick < 0.6:
        orig = r.choice(t.refs) if t.refs else 1
        replace = ouch.ReplaceOrder(
            orig, t.user_ref(r), qty, price, tif, "Y", "N", cl_ord_id, appendage
        )
        raw, kind = _encode_fields(r, replace), "replace"
    elif pick < 0.75:
        orig = r.choice(t.refs) if t.refs and r.random() < 0.8 else edge_int(r, 32)
        raw = ouch.encode_inbound(ouch.CancelOrder(orig, r.choice([0, 0, 50, edge_int(r, 32)])))
        kind = "cancel"
    elif pick < 0.82:
        raw, kind = (
            bytes([r.choice(b"MQAUXOEJ" + bytes([r.getrandbits(8)]))])
            + rbytes(r, r.randint(0, 60)),
            "ouch-type",
        )
    elif pick < 0.9:
        raw, kind = rbytes(r, r.randint(0, 80)), "ouch-random"
    else:
        base = ouch.encode_inbound(ouch.EnterOrder(t.user_ref(r), "B", qty, t.symbol, price, tif))
        raw, kind = mutate(r, base), "ouch-mutated"
    return raw, kind


def _encode_fields(r: random.Random, msg: ouch.Inbound) -> bytes:
    """Encode `msg`; the struct refuses text that is not latin-1 or too long, and
    integers out of range: those go out as raw bytes of the right size instead."""
    try:
        raw = ouch.encode_inbound(msg)
    except (struct.error, UnicodeEncodeError):
        raw = bytes([ord("O") if isinstance(msg, ouch.EnterOrder) else ord("U")]) + rbytes(r, 46)
    if r.random() < 0.1:  # an appendage length that lies
        n = len(raw)
        raw = raw[: n - 2 - len(getattr(msg, "appendage", b""))] + _U16.pack(edge_int(r, 16))
    return raw


_SERVER_ONLY = (b"A", b"J", b"S", b"H", b"Z")


def soup_packets(r: random.Random, t: SoupTarget) -> tuple[list[bytes], str]:
    """A session's packets: a login (or not), then a few more. (packets, kind)"""
    pick = r.random()
    packets: list[bytes] = []
    if pick < 0.1:
        kind = "prelogin"
        packets.append(
            r.choice(
                [
                    _pkt(soup.CLIENT_HEARTBEAT_T),
                    _pkt(soup.UNSEQUENCED, rbytes(r, 20)),
                    _pkt(soup.LOGOUT_REQUEST_T),
                    _pkt(bytes([r.getrandbits(8)]), rbytes(r, 10)),
                    _pkt(soup.DEBUG, odd_text(r, 20).encode("latin-1")),
                    b"\x00\x00",
                    _pkt(soup.LOGIN_REQUEST, b"", length=r.randint(2, 0xFFFF)),
                ]
            )
        )
    elif pick < 0.14:
        return [rbytes(r, r.randint(0, 200))], "random"
    elif pick < 0.16:
        return [], "connect-close"
    else:
        body, kind = login_body(r, t)
        packets.append(_pkt(soup.LOGIN_REQUEST, body))
    for _ in range(r.choice([0, 1, 2, 4, 8, 16])):
        p = r.random()  # one in eight of these ends the session, and most bad OUCH does
        if p < 0.12:
            packets.append(soup.CLIENT_HEARTBEAT)
        elif p < 0.17:
            packets.append(_pkt(soup.DEBUG, odd_text(r, r.randint(0, 80)).encode("latin-1")))
        elif p < 0.87:
            if t.md:
                packets.append(_pkt(soup.UNSEQUENCED, rbytes(r, r.randint(0, 40))))
            else:
                raw, _ = ouch_inbound(r, t)
                packets.append(_pkt(soup.UNSEQUENCED, raw))
        elif p < 0.89:
            packets.append(_pkt(soup.CLIENT_HEARTBEAT_T, rbytes(r, r.randint(1, 8))))
        elif p < 0.9:
            packets.append(_pkt(soup.LOGIN_REQUEST, login_body(r, t)[0]))
        elif p < 0.92:
            packets.append(_pkt(r.choice(_SERVER_ONLY), rbytes(r, r.randint(0, 30))))
        elif p < 0.94:
            packets.append(_pkt(bytes([r.getrandbits(8)]), rbytes(r, r.randint(0, 30))))
        elif p < 0.95:
            packets.append(b"\x00\x00")  # length 0
        elif p < 0.97:
            packets.append(soup.LOGOUT_REQUEST)
            packets.append(rbytes(r, r.randint(1, 40)))  # valid, then garbage
        else:  # a length that promises more than ever comes
            packets.append(_pkt(soup.UNSEQUENCED, rbytes(r, 5), length=r.randint(7, 0xFFFF)))
            break
    return packets, kind


def soup_case(r: random.Random, t: SoupTarget) -> Case:
    packets, kind = soup_packets(r, t)
    data = b"".join(packets)
    if r.random() < 0.08 and data:
        data, kind = mutate(r, data), kind + "-mutated"
    if not t.md and r.random() < 0.02:  # a mutated Enter Order among well-formed packets
        data += _pkt(
            soup.UNSEQUENCED,
            mutate(
                r,
                ouch.encode_inbound(
                    ouch.EnterOrder(t.user_ref(r), "S", 100, t.symbol, t.price, ouch.TIF_IOC)
                ),
            ),
        )
    inputs, logged_in = soup_model(data, t)
    return deliver(r, Case(kind, data, inputs, expect=logged_in))


def login_accepted(t: SoupTarget, login: soup.LoginRequested) -> bool:
    """Would the venue accept this login (credentials and session; no lock-out, no cap)?"""
    return (
        login.username == t.username
        and login.password.encode("ascii", "replace") == t.password.encode("ascii")
        and login.session in ("", t.session)
    )


def soup_model(data: bytes, t: SoupTarget) -> tuple[int, bool]:
    """(inputs the venue processes, whether the login is accepted): the packets up to and
    including the one that ends the session (a protocol error, a refused login, an OUCH
    message that does not decode, anything unsequenced on the md port, a logout), a
    trailing partial packet counting as one; at least one (the connection itself)."""
    frames = soup.FrameDecoder()
    frames.feed(data)
    session = soup.ServerSession()
    n, logged_in = 0, False
    while True:
        try:
            p = frames.next_packet()
        except RemoteProtocolError:
            return n + 1, logged_in
        if p is None:
            return max(n + (1 if frames.pending else 0), 1), logged_in
        n += 1
        try:
            events = session.receive_data(_pkt(p[0], p[1]))
            for ev in events:
                if isinstance(ev, soup.LoginRequested):
                    if not login_accepted(t, ev):
                        return n, False
                    logged_in = True
                    events.extend(session.accept())
                elif isinstance(ev, soup.UnsequencedData):
                    if t.md:
                        return n, logged_in
                    ouch.decode_inbound(ev.payload)
                elif isinstance(ev, soup.LogoutRequested):
                    return n, logged_in
        except RemoteProtocolError:
            return n, logged_in


def check_soup_reply(reply: bytes, t: SoupTarget, case: Case, complete: bool) -> str:
    """Why the venue's bytes are wrong ("" if they are right): SoupBinTCP from a server,
    Login Accepted first iff the login was, then sequenced messages of the port's
    protocol. `complete`: the connection ended cleanly (no reset).

    A logged-in session may end in the middle of a packet: when its reader ends (a
    logout, a protocol error, the client's shutdown) the venue cancels its writer,
    which may be half-way through a batch. A client drops the rest with the
    connection (`SoupLink` starts a new `ClientSession` on each connect). Before a
    login is accepted, the venue only ever sends a whole Login Rejected."""
    frames = soup.FrameDecoder()
    frames.feed(reply)
    first = True
    while True:
        try:
            p = frames.next_packet()
        except RemoteProtocolError as exc:
            return f"server sent a bad packet: {exc}"
        if p is None:
            break
        ptype, body = p
        if first and (ptype == soup.LOGIN_ACCEPTED) != bool(case.expect):
            return f"first packet {ptype!r}, but the model says login accepted={case.expect}"
        if not first and ptype in (soup.LOGIN_ACCEPTED, soup.LOGIN_REJECTED):
            return f"a second login answer {ptype!r}"
        first = False
        if ptype == soup.SEQUENCED and not t.md:
            try:
                ouch.decode_outbound(body)
            except RemoteProtocolError as exc:
                return f"venue sent an OUCH message that does not decode: {exc}"
        elif ptype not in (
            soup.LOGIN_ACCEPTED,
            soup.LOGIN_REJECTED,
            soup.SEQUENCED,
            soup.SERVER_HEARTBEAT_T,
            soup.END_OF_SESSION_T,
            soup.DEBUG,
        ):
            return f"server sent packet type {ptype!r}"
    if complete and frames.pending and not case.expect:
        return f"connection closed {frames.pending} bytes into a packet"
    return ""


# --- control sockets (msgpack frames) ---------------------------------------------------------

# Commands that only read (or are refused where they do not apply): sent as they are.
HARMLESS = (ctl.Status, ctl.Snapshot, ctl.Depth, ctl.WebAccess, ctl.Hang)
TAGS = (
    "Status",
    "Snapshot",
    "Depth",
    "Reload",
    "Hang",
    "Resync",
    "Disconnect",
    "Inject",
    "Pause",
    "Resume",
    "Halt",
    "Flatten",
    "WebAccess",
)
OVERSIZED = b"<oversized>"


def mp_value(r: random.Random, depth: int = 0) -> bytes:
    """A raw msgpack value, often malformed: odd ints and floats, invalid UTF-8, lying
    sizes, reserved bytes, ext types, nested containers."""
    pick = r.randrange(16 if depth < 4 else 12)
    if pick == 0:
        return bytes([r.choice([0xC0, 0xC2, 0xC3, 0xC1])])  # nil false true, reserved
    if pick == 1:
        return bytes([r.getrandbits(8) & 0x7F | r.choice([0, 0xE0])])  # fixints
    if pick == 2:
        code, fmt = r.choice([(0xCC, ">B"), (0xCD, ">H"), (0xCE, ">I"), (0xCF, ">Q")])
        return bytes([code]) + struct.pack(fmt, edge_int(r, struct.calcsize(fmt) * 8))
    if pick == 3:
        code, fmt = r.choice([(0xD0, ">b"), (0xD1, ">h"), (0xD2, ">i"), (0xD3, ">q")])
        return bytes([code]) + struct.pack(fmt, edge_int(r, struct.calcsize(fmt) * 8, signed=True))
    if pick == 4:
        f = r.choice([float("nan"), float("inf"), -float("inf"), -0.0, 1e308, 5e-324, 1.5])
        if r.random() < 0.7 or abs(f) == 1e308:
            return b"\xcb" + struct.pack(">d", f)
        return b"\xca" + struct.pack(">f", f)
    if pick in (5, 6):
        raw = odd_text(r, r.randint(0, 40)).encode("latin-1")  # often not UTF-8
        if r.random() < 0.3:
            raw = r.choice(TAGS).encode()
        return _mp_len(r, raw, 0xA0, 31, 0xD9) + raw
    if pick == 7:
        raw = rbytes(r, r.randint(0, 30))
        return bytes([0xC4, len(raw)]) + raw
    if pick == 8:
        raw = rbytes(r, r.choice([1, 2, 4, 8, 16]))
        code = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}[len(raw)]
        return bytes([code, r.getrandbits(8)]) + raw
    if pick == 9:  # a size that promises more than follows
        code = r.choice([0xD9, 0xC4, 0xDC, 0xDE, 0xDD, 0xDF])
        return bytes([code]) + rbytes(r, r.randint(1, 5))
    if pick in (10, 11):
        return rbytes(r, r.randint(1, 6))
    n = r.randint(0, 4)
    if pick in (12, 13):
        return bytes([0x90 | n]) + b"".join(mp_value(r, depth + 1) for _ in range(n))
    return bytes([0x80 | n]) + b"".join(
        mp_value(r, depth + 1) + mp_value(r, depth + 1) for _ in range(n)
    )


def _mp_len(r: random.Random, raw: bytes, fix: int, fixmax: int, code8: int) -> bytes:
    n = len(raw)
    if r.random() < 0.05:
        n += r.randint(1, 3)  # a lie
    return bytes([fix | n]) if n <= fixmax and r.random() < 0.8 else bytes([code8, n & 0xFF])


def _mp_str(s: str) -> bytes:
    raw = s.encode()
    return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else bytes([0xD9, len(raw)])) + raw


@dataclass
class ControlTarget:
    """What a control-socket fuzzer may know: names that make a valid command."""

    symbols: tuple[str, ...] = ("AAPL",)
    users: tuple[str, ...] = ("HFTD",)
    max_request: int = 65536


def control_body(r: random.Random, t: ControlTarget) -> tuple[bytes, str]:
    """One request body, never one that decodes to a command that acts. (body, kind)"""
    while True:
        body, kind = _control_body(r, t)
        try:
            cmd = ctl.command_decoder.decode(body)
        except Exception:
            return body, kind
        if isinstance(cmd, HARMLESS):
            return body, kind


def _control_body(r: random.Random, t: ControlTarget) -> tuple[bytes, str]:
    enc = ctl.encoder.encode
    pick = r.random()
    if pick < 0.1:
        cmd = r.choice(
            [
                ctl.Status(),
                ctl.Status(),
                ctl.WebAccess(),
                ctl.Hang(r.choice([0.0, -1.0, 1e308])),
                ctl.Depth(
                    r.choice(t.symbols) if r.random() < 0.5 else odd_text(r, r.randint(0, 12))
                ),
                ctl.Snapshot(
                    r.choice(t.users) if r.random() < 0.3 else odd_text(r, r.randint(0, 12))
                ),
            ]
        )
        return enc(cmd), "valid"
    if pick < 0.3:
        base = enc(
            r.choice(
                [
                    ctl.Status(),
                    ctl.Depth("AAPL"),
                    ctl.Snapshot("HFTD"),
                    ctl.Halt("x"),
                    ctl.Inject("HFTD", "raw", 1, b"x"),
                ]
            )
        )
        return mutate(r, base), "mutated"
    if pick < 0.6:  # command-shaped: {"type": tag, field: value, ...}
        n = r.randint(0, 4)
        parts = [_mp_str("type") + (_mp_str(r.choice(TAGS)) if r.random() < 0.7 else mp_value(r))]
        for _ in range(n):
            name = r.choice(
                [
                    "symbol",
                    "user",
                    "seconds",
                    "kind",
                    "number",
                    "raw",
                    "reason",
                    "type",
                    odd_text(r, 5),
                ]
            )
            parts.append((_mp_str(name) if r.random() < 0.9 else mp_value(r)) + mp_value(r))
        head = bytes([0x80 | len(parts)]) if r.random() < 0.9 else bytes([0x80 | r.randint(0, 15)])
        return head + b"".join(parts), "shaped"
    if pick < 0.7:  # nesting well past what any decoder should recurse into
        depth = r.choice([50, 200, 3000, 10000, 30000])
        opener = r.choice([b"\x91", b"\x81\xa1k", b"\xdc\x00\x01"])
        inner = opener * depth + b"\xc0"
        if r.random() < 0.5:
            inner = _mp_str("type") + _mp_str("Status") + _mp_str("x") + inner
            return b"\x82" + inner, "deep"
        return inner, "deep"
    if pick < 0.8:
        return mp_value(r), "value"
    if pick < 0.95:
        return rbytes(r, r.randint(0, 100)), "random"
    return b"", "empty"


def control_case(r: random.Random, t: ControlTarget) -> Case:
    """Frames on one connection, pipelined; some lengths lie."""
    frames: list[bytes] = []
    kinds: list[str] = []
    for _ in range(r.choice([1, 1, 2, 3, 5, 10, 20])):
        body, kind = control_body(r, t)
        kinds.append(kind)
        if len(body) > t.max_request:
            body = body[: t.max_request]
        p = r.random()
        if p < 0.9:
            frames.append(_U32.pack(len(body)) + body)
        elif p < 0.93:  # over max_request_bytes: refused at the header
            frames.append(_U32.pack(r.choice([t.max_request + 1, 2**32 - 1, 16 << 20])))
            kinds.append("oversized")
            break
        elif p < 0.96:  # promises more than it sends
            frames.append(_U32.pack(len(body) + r.randint(1, 1000)) + body)
            kinds.append("short")
            break
        else:
            frames.append(_U32.pack(len(body))[: r.randint(0, 3)])
            kinds.append("cut-header")
            break
    data = b"".join(frames)
    if r.random() < 0.05:
        data = mutate(r, data)
        kinds.append("mutated-stream")
    bodies, inputs = control_model(data, t.max_request)
    kind = kinds[0] + ("" if len(frames) == 1 else "+more")
    return deliver(r, Case(kind, data, inputs, expect=bodies))


def control_model(data: bytes, max_request: int) -> tuple[list[bytes], int]:
    """(the bodies the server answers, one reply each, `OVERSIZED` for a header over the
    limit, after which it closes; inputs it processes): the server reads a u32 length
    and that many bytes, again and again; a frame cut short gets no reply."""
    bodies: list[bytes] = []
    pos, partial = 0, False
    while pos < len(data):
        if len(data) - pos < HEADER:
            partial = True
            break
        (n,) = _U32.unpack_from(data, pos)
        if n > max_request:
            bodies.append(OVERSIZED)
            break
        if len(data) - pos - HEADER < n:
            partial = True
            break
        bodies.append(data[pos + HEADER : pos + HEADER + n])
        pos += HEADER + n
    return bodies, max(len(bodies) + partial, 1)


def check_control_replies(reply: bytes, bodies: list[bytes], pid: int) -> str:
    """Why the replies are wrong ("" if right): exactly one decodable `Reply` per body,
    in order; a body that does not decode answered "bad request"; Status with our pid."""
    replies: list[ctl.Reply] = []
    pos = 0
    while pos + HEADER <= len(reply):
        (n,) = _U32.unpack_from(reply, pos)
        if pos + HEADER + n > len(reply):
            break
        try:
            replies.append(ctl.reply_decoder.decode(reply[pos + HEADER : pos + HEADER + n]))
        except msgspec.DecodeError as exc:
            return f"reply {len(replies) + 1} does not decode: {exc}"
        pos += HEADER + n
    if pos != len(reply):
        return f"{len(reply) - pos} bytes after the last whole reply"
    if len(replies) != len(bodies):
        return f"{len(replies)} replies to {len(bodies)} requests"
    for i, (body, rep) in enumerate(zip(bodies, replies, strict=True)):
        if body is OVERSIZED:
            if rep.ok or "exceeds the limit" not in rep.error:
                return f"reply {i + 1} to an oversized frame: {rep}"
            continue
        try:
            cmd = ctl.command_decoder.decode(body)
        except Exception:
            if rep.ok or not rep.error.startswith("bad request"):
                return f"reply {i + 1} to an undecodable request: {str(rep)[:200]}"
            continue
        if isinstance(cmd, ctl.Status):
            result = rep.result
            got = result.get("pid") if isinstance(result, dict) else "list" if result else None
            if not rep.ok or (got != pid and got != "list"):
                return f"Status answered {str(rep)[:200]}"
    return ""


# --- HTTP: the monitor's web port -------------------------------------------------------------


@dataclass
class HttpTarget:
    port: int
    token: str = ""  # the run's web token: sent only where no action can follow
    verbs: tuple[str, ...] = ("pause", "resume", "halt", "flatten", "reload", "explode")


_PATHS = (
    "/",
    "/index.html",
    "/metrics",
    "/api/state?history=0",
    "/favicon.ico",
    "/nothing",
    "/api/action/pause",
    "/api/action/halt",
    "/api/action/",
    "/api/state?history=x&history=0",
    "/events",
)
EVENTS = b"event: state"  # an event stream's first event: read up to it, then hang up


def http_request(r: random.Random, t: HttpTarget) -> tuple[bytes, str]:
    """One request (sometimes followed by more bytes). (bytes, kind)"""
    host = f"127.0.0.1:{t.port}"
    method, path, version = "GET", r.choice(_PATHS), "HTTP/1.1"
    headers = [("Host", host)]
    body = b""
    kind = "valid"
    if path.startswith("/api/action/") or r.random() < 0.05:
        method, kind = "POST", "action"
        verb = r.choice(t.verbs)
        path = f"/api/action/{verb}" if r.random() < 0.8 else path
        headers.append(("X-Hftd-Action", verb))
        if t.token and r.random() < 0.4:
            headers.append(("Authorization", f"Bearer {t.token}"))
            if r.random() < 0.3:
                headers = [h for h in headers if h[0] != "X-Hftd-Action"]
        elif r.random() < 0.7:
            headers.append(
                (
                    "Authorization",
                    r.choice(["Bearer ", "Bearer x", "Basic eA==", "Bearer " + odd_text(r, 40)]),
                )
            )
        body = r.choice(
            [
                b'{"confirm": true}',
                b"{",
                b"[" * r.choice([10, 5000, 60000]),
                b'{"confirm":' * 3000,
                b"\xff\xfe",
                b"",
                b"{}",
                b'{"confirm": 1}',
                b"[]",
                b'"x"',
                b"1e999",
                b'{"confirm": true}' + rbytes(r, 3),
            ]
        )
        if t.token and r.random() < 0.3:  # the operator's request, its body the only fault
            kind = "operator"
            headers = [
                ("Host", host),
                ("X-Hftd-Action", verb),
                ("Authorization", f"Bearer {t.token}"),
            ]
            path = f"/api/action/{verb}"
        if body and r.random() < 0.9:
            headers.append(("Content-Length", str(len(body))))
    pick = 0.0 if kind == "operator" else r.random()
    if pick < 0.35:
        pass
    elif pick < 0.45:
        kind = "method"
        method = r.choice(
            ["get", "G ET", "", "\xc0\xc9", "GET" * 30, odd_text(r, 6), "DELETE", "HEAD", "OPTIONS"]
        )
    elif pick < 0.6:
        kind = "target"
        path = r.choice(
            [
                "//[",
                "*",
                "http://x/",
                "",
                "/%zz",
                "/%00%ff",
                "/" + "a" * 9000,
                "/api/state?" + "&".join(f"k{i}=v" for i in range(2000)),
                "/#frag",
                "/?=&=&&",
                "/" + odd_text(r, 30),
                "/events?x#y",
            ]
        )
    elif pick < 0.65:
        kind = "version"
        version = r.choice(["HTTP/2", "HTTP/1.", "HTTP/1.1 extra", "", "http/1.1", "HTTP/1.\xff"])
    elif pick < 0.85:
        kind = "headers"
        for _ in range(r.randint(1, 4)):
            headers.append(
                r.choice(
                    [
                        (
                            "Content-Length",
                            r.choice(
                                [
                                    "-1",
                                    "\xb2",
                                    "+5",
                                    " 5",
                                    "0x10",
                                    "1" * 30,
                                    "99999999999",
                                    "65537",
                                    "3",
                                    "",
                                    "5, 5",
                                ]
                            ),
                        ),
                        ("Transfer-Encoding", "chunked"),
                        ("Host", odd_text(r, 12)),
                        (" Leading", "space"),
                        ("No colon", None),
                        ("", "empty name"),
                        (odd_text(r, 8), odd_text(r, 30)),
                        ("X-Big", "v" * r.choice([100, 20000])),
                    ]
                )
            )
        if r.random() < 0.5:
            headers = [h for h in headers if h[0] != "Host"]
    elif pick < 0.9:
        kind = "body"
        body = rbytes(r, r.randint(1, 200))
        headers.append(("Content-Length", str(r.choice([len(body), len(body) + 10, 1, 70000]))))
    else:
        kind = "random"
        return rbytes(r, r.randint(0, 300)), kind
    lines = [f"{method} {path} {version}".strip(" ")]
    for name, value in headers:
        lines.append(name if value is None else f"{name}: {value}")
    eol = "\r\n" if r.random() < 0.95 else "\n"
    raw = (eol.join(lines) + eol + eol).encode("latin-1", "replace") + body
    if r.random() < 0.08:
        raw, kind = mutate(r, raw), kind + "-mutated"
    return raw, kind


def http_case(r: random.Random, t: HttpTarget) -> Case:
    raw, kind = http_request(r, t)
    if r.random() < 0.1:  # pipelined: another request, or garbage, behind the first
        more, _ = http_request(r, t)
        raw += more if r.random() < 0.5 else rbytes(r, r.randint(1, 100))
        kind += "-pipelined"
    if t.token and would_act(raw, t.token):  # an operator's order: not ours to send
        raw = raw.replace(t.token.encode(), b"not-the-token")
    return deliver(r, Case(kind, raw, 1, expect=http_model(raw)), dribble=len(raw) < 400)


def would_act(data: bytes, token: str) -> bool:
    """Would the web server carry out an operator action for `data`? (`web._action`'s
    checks in order; the Host check before it is left out, so a "yes" may be a no.)"""
    try:
        parsed = http.parse_request(data)
    except http.HttpError:
        return False
    if parsed is None:
        return False
    req = parsed[0]
    if req.method != "POST" or not req.path.startswith("/api/action/"):
        return False
    name = req.path.removeprefix("/api/action/")
    verb = VERBS.get(name)
    if verb is None or not http.authorized(req, token.encode()):
        return False
    if req.header("x-hftd-action") != name:
        return False
    body: Any = {}
    if req.body:
        try:
            body = msgspec.json.decode(req.body)
        except (msgspec.DecodeError, RecursionError):
            return False
    confirmed = isinstance(body, dict) and body.get("confirm") is True
    return not verb.confirm or confirmed


def http_model(data: bytes) -> int | None:
    """The status the server must answer `data` with: an HttpError's, 0 for a request it
    parses (any status but 500), None for an incomplete one (no answer)."""
    try:
        parsed = http.parse_request(data)
    except http.HttpError as exc:
        return exc.status
    return None if parsed is None else 0


def is_event_stream(data: bytes) -> bool:
    """Does `data` open an event stream (which the server never ends by itself)?"""
    try:
        parsed = http.parse_request(data)
    except http.HttpError:
        return False
    return parsed is not None and (parsed[0].method, parsed[0].path) == ("GET", "/events")


def check_http_reply(reply: bytes, expect: int | None, complete: bool) -> str:
    """Why the answer is wrong ("" if right)."""
    if not reply:
        if expect is None or not complete:
            return ""
        return f"no answer (expected {expect or 'a response'})"
    if not reply.startswith(b"HTTP/1.1 ") or len(reply) < 12:
        return f"not an HTTP response: {reply[:60]!r}"
    try:
        status = int(reply[9:12])
    except ValueError:
        return f"bad status line {reply[:40]!r}"
    if status == 500:
        return "500: the request raised inside the server"
    if expect is None:
        return f"answered {status} to an incomplete request"
    if expect and status != expect:
        return f"answered {status}, parse_request says {expect}"
    return ""
