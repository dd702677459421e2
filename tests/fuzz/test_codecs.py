"""Hypothesis over the pure code behind every listener (issue 11, item 10).

Whatever the bytes, a decoder raises only its documented protocol error:
SoupBinTCP, OUCH and ITCH `RemoteProtocolError`; control frames `FrameError`, a
control body msgspec's `DecodeError` (`ValidationError` included) or, nested past
msgspec's limit, `RecursionError` (which the control server answers like any
bad request); HTTP `HttpError`. What decodes re-encodes to the same bytes, and
what serves a request (the venue applying an order, the web routes, the control
server's answer) never raises at all.

Inputs are plain bytes and the structure-aware generators of `inputs.py` (fed
by `st.randoms()`, so Hypothesis shrinks their choices). The default run is a
fixed, short pass; a longer random one:

    HFTD_FUZZ_EXAMPLES=10000 .venv/bin/pytest -m fuzz tests/fuzz/test_codecs.py
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftd.config import load_config
from hftd.exchange.access import ConnectionCap, LoginThrottle, PortAccess, SessionCap
from hftd.exchange.journal import JournaledVenue
from hftd.ipc.control import ControlLimits, _Server
from hftd.ipc.framing import FrameError, read_frame
from hftd.monitor import http
from hftd.monitor.web import WebApp, _route
from hftd.msg import control as ctl
from hftd.wire import itch, ouch
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import RemoteProtocolError
from tests.fuzz import inputs as gen
from tests.support import DEFAULT_CONFIG, dump_toml

_LONG = "HFTD_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("HFTD_FUZZ_EXAMPLES", "150"))
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(300, EXAMPLES // 10))]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not _LONG,  # the default run is the same every time
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SOUP = gen.SoupTarget(False, "FUZZ0", "fuzz-0", "HFTD000001")
MD = gen.SoupTarget(True, "FZMD0", "fzmd-0", "HFTD000001")


def soup_target(md: bool) -> gen.SoupTarget:
    base = MD if md else SOUP
    return gen.SoupTarget(base.md, base.username, base.password, base.session)


chunks = st.lists(st.integers(1, 64), min_size=1, max_size=8)


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut into pieces of the given sizes, cycling, the way TCP may deliver it."""
    out, pos, i = [], 0, 0
    while pos < len(data):
        out.append(data[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return out or [b""]


# --- SoupBinTCP -------------------------------------------------------------------------------


def soup_bytes(md: bool) -> st.SearchStrategy[bytes]:
    structured = st.builds(
        lambda r: b"".join(gen.soup_packets(r, soup_target(md))[0]),
        st.randoms(use_true_random=False),
    )
    return st.one_of(structured, st.binary(max_size=300))


@FUZZ
@given(soup_bytes(False), chunks)
def test_server_session_raises_only_protocol_errors(data: bytes, sizes: list[int]) -> None:
    """The venue's side of SoupBinTCP, fed in pieces, accepting any login."""
    session = soup.ServerSession()
    try:
        for piece in split(data, sizes):
            events = session.receive_data(piece)
            for ev in events:
                assert isinstance(ev, soup.ServerSideEvent)
                if isinstance(ev, soup.LoginRequested):
                    assert ev.sequence >= 0 and ev.username.isascii()
                    events.extend(session.accept())
                elif isinstance(ev, soup.UnsequencedData):
                    with contextlib.suppress(RemoteProtocolError):
                        ouch.decode_inbound(ev.payload)
    except RemoteProtocolError:
        pass


@FUZZ
@given(
    st.binary(min_size=46, max_size=46)
    | st.binary(max_size=80)
    | st.builds(lambda r: gen.login_body(r, SOUP)[0], st.randoms(use_true_random=False))
)
def test_login_request_parses_or_raises_a_protocol_error(body: bytes) -> None:
    try:
        login = soup.parse_login_request(body)
    except RemoteProtocolError:
        return
    assert login.sequence >= 0 and all(x.isascii() for x in (login.username, login.password))


def server_packets(r: random.Random) -> bytes:
    """What a hostile venue may send: a login answer (odd ones too), then packets."""
    seq = r.choice(["1", "0", str(gen.edge_int(r, 64)), "9" * 20, "-1", " ", "x"])
    out = [
        r.choice(
            [
                soup.packet(soup.LOGIN_ACCEPTED, b"S".rjust(10) + seq.encode().rjust(20)[:20]),
                soup.packet(soup.LOGIN_ACCEPTED, gen.rbytes(r, r.randint(0, 40))),
                soup.packet(soup.LOGIN_REJECTED, gen.rbytes(r, r.randint(0, 3))),
                soup.SERVER_HEARTBEAT,
            ]
        )
    ]
    for _ in range(r.randint(0, 10)):
        out.append(
            r.choice(
                [
                    soup.sequenced(gen.rbytes(r, r.randint(0, 50))),
                    soup.SERVER_HEARTBEAT,
                    soup.END_OF_SESSION,
                    soup.debug(gen.odd_text(r, 10).encode("latin-1").decode("ascii", "replace")),
                    gen._pkt(bytes([r.getrandbits(8)]), gen.rbytes(r, 5)),
                    b"\x00\x00",
                ]
            )
        )
    data = b"".join(out)
    return gen.mutate(r, data) if r.random() < 0.2 else data


@FUZZ
@given(
    st.builds(server_packets, st.randoms(use_true_random=False)) | st.binary(max_size=300), chunks
)
def test_client_session_raises_only_protocol_errors(data: bytes, sizes: list[int]) -> None:
    """The feed's and the gateway's side: a venue may send anything; sequenced messages
    are numbered on from the login's number, one by one."""
    session = soup.ClientSession()
    last = None
    try:
        for piece in split(data, sizes):
            for ev in session.receive_data(piece):
                if isinstance(ev, soup.SequencedData):
                    assert last is None or ev.sequence == last + 1
                    last = ev.sequence
    except RemoteProtocolError:
        pass


# --- OUCH and ITCH ---------------------------------------------------------------------------


ouch_in = st.one_of(
    st.builds(
        lambda r: gen.ouch_inbound(r, soup_target(False))[0], st.randoms(use_true_random=False)
    ),
    st.binary(max_size=120),
    st.tuples(st.sampled_from(b"OUX"), st.binary(max_size=80)).map(lambda t: bytes([t[0]]) + t[1]),
)


@FUZZ
@given(ouch_in)
def test_ouch_inbound_decodes_exactly_or_raises_a_protocol_error(raw: bytes) -> None:
    try:
        msg = ouch.decode_inbound(raw)
    except RemoteProtocolError:
        return
    assert ouch.encode_inbound(msg) == raw


@FUZZ
@given(
    st.tuples(st.sampled_from(sorted(ouch.OUTBOUND_SIZES)), st.binary(max_size=120)).map(
        lambda t: t[0] + t[1]
    )
    | st.binary(max_size=120)
)
def test_ouch_outbound_decodes_exactly_or_raises_a_protocol_error(raw: bytes) -> None:
    try:
        msg = ouch.decode_outbound(raw)
    except RemoteProtocolError:
        return
    assert ouch.encode_outbound(msg) == raw


@FUZZ
@given(
    st.tuples(st.sampled_from(sorted(itch.SIZES)), st.binary(max_size=60)).map(
        lambda t: t[0] + t[1]
    )
    | st.binary(max_size=60)
)
def test_itch_decodes_exactly_or_raises_a_protocol_error(raw: bytes) -> None:
    try:
        msg = itch.decode(raw)
    except RemoteProtocolError:
        return
    assert itch.encode(msg) == raw


@FUZZ
@given(st.binary(max_size=300))
def test_itch_binary_file_splits_exactly_or_raises_a_protocol_error(data: bytes) -> None:
    try:
        messages = [bytes(m) for m in itch.iter_binary_file(data)]
    except RemoteProtocolError:
        return
    assert itch.frame_binary_file(messages) == data


# --- the venue applying whatever OUCH decodes ----------------------------------------------


_VENUE_CFG: list[Any] = []


def venue_config(tmp: Path) -> Any:
    if not _VENUE_CFG:
        import tomllib

        data = tomllib.loads(DEFAULT_CONFIG.read_text())
        data["symbols"].append({"symbol": "FUZZ", "reference_price": "100.00"})
        data["exchange"]["users"].append({"username": "FUZZ0", "password": "fuzz-0"})
        path = tmp / "venue.toml"
        path.write_text(dump_toml(data))
        _VENUE_CFG.append(load_config(path))
    return _VENUE_CFG[0]


def ouch_session(r: random.Random) -> list[bytes]:
    """Decodable OUCH messages a logged-in client might send, DAY orders among them so
    that replaces and cancels find live orders."""
    t = soup_target(False)
    out = []
    for _ in range(r.randint(1, 40)):
        raw, _ = gen.ouch_inbound(r, t)
        if r.random() < 0.3:  # a live order to replace or cancel
            raw = ouch.encode_inbound(
                ouch.EnterOrder(
                    t.user_ref(r),
                    r.choice("BS"),
                    r.choice([100, 200]),
                    "FUZZ",
                    1_000_000 + 100 * r.randint(-3, 3),
                    r.choice([ouch.TIF_DAY, ouch.TIF_GTX]),
                )
            )
        out.append(raw)
    return out


@FUZZ
@given(messages=st.builds(ouch_session, st.randoms(use_true_random=False)))
def test_the_venue_applies_whatever_decodes_without_raising(
    messages: list[bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """What the order port hands the venue (journaled first, then applied) must never
    raise: the daemon would log an internal error and, worse, replay the same journaled
    input at every restart. Every reply is a valid OUCH message."""
    cfg = venue_config(tmp_path_factory.mktemp("venue"))
    clock = iter(range(1, 1 << 62, 1000))
    jv = JournaledVenue(cfg, lambda: next(clock))
    jv.start_of_day()
    for raw in messages:
        try:
            msg = ouch.decode_inbound(raw)
        except RemoteProtocolError:
            continue
        jv.handle("FUZZ0", raw, msg)
    stream = jv.venue.user("FUZZ0").stream
    for reply in stream.range(1, len(stream) + 1):
        ouch.decode_outbound(reply)


# --- venue access -----------------------------------------------------------------------


@FUZZ
@given(
    st.lists(
        st.tuples(st.text(max_size=12), st.text(max_size=12), st.text(max_size=40)), max_size=30
    )
)
def test_venue_access_takes_any_login(logins: list[tuple[str, str, str]]) -> None:
    access = PortAccess(
        {"HFTD": "hftd-pass"},
        LoginThrottle(3, 60.0, 60.0, max_sources=8),
        ConnectionCap(4),
        SessionCap(2),
    )
    for i, (user, password, source) in enumerate(logins):
        verdict = access.authenticate(source, user, password, float(i))
        assert verdict.accepted == (user == "HFTD" and password == "hftd-pass") or not (
            verdict.accepted
        )
    assert len(access.throttle) <= 8


# --- control frames --------------------------------------------------------------------------


control_bodies = st.one_of(
    st.builds(
        lambda r: gen.control_body(r, gen.ControlTarget())[0], st.randoms(use_true_random=False)
    ),
    st.binary(max_size=200),
)


@FUZZ
@given(control_bodies)
def test_control_bodies_raise_only_msgspec_errors(body: bytes) -> None:
    try:
        cmd = ctl.command_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return
    assert isinstance(cmd, ctl.Command)


@FUZZ
@given(st.binary(max_size=200), chunks, st.integers(0, 100))
def test_read_frame_raises_only_frame_errors(data: bytes, sizes: list[int], limit: int) -> None:
    async def main() -> None:
        a, b = trio.testing.memory_stream_pair()
        for piece in split(data, sizes):
            await a.send_all(piece)
        await a.aclose()
        try:
            while await read_frame(b, limit) is not None:
                pass
        except FrameError:
            pass

    trio.run(main)


@FUZZ
@given(st.lists(control_bodies, min_size=1, max_size=5))
def test_the_control_server_answers_every_body(bodies: list[bytes]) -> None:
    """Each body gets a `Reply` (an error one when it does not decode); nothing raises."""

    async def handler(cmd: ctl.Command) -> Any:
        if isinstance(cmd, ctl.Status):
            return ctl.StatusInfo("probe", 1, "running", 0.0)
        raise ValueError(f"probe does not handle {type(cmd).__name__}")

    async def main() -> None:
        server = _Server(Path("probe.sock"), handler, ControlLimits())
        for body in bodies:
            reply = await server._answer(body)
            ctl.reply_decoder.decode(ctl.encoder.encode(reply))

    trio.run(main)


# --- HTTP ------------------------------------------------------------------------------------


TOKEN = "t" * 43


http_bytes = st.one_of(
    st.builds(
        lambda r: gen.http_case(r, gen.HttpTarget(8080, TOKEN)).data,
        st.randoms(use_true_random=False),
    ),
    st.binary(max_size=300),
)


@FUZZ
@given(http_bytes)
def test_http_requests_parse_or_raise_an_http_error(data: bytes) -> None:
    try:
        parsed = http.parse_request(data)
    except http.HttpError as exc:
        assert exc.status in http.REASONS
        return
    if parsed is not None:
        req, used = parsed
        assert 0 < used <= len(data) and req.path == req.path  # a str, whatever it holds


@FUZZ
@given(http_bytes)
def test_web_routes_answer_whatever_parses(data: bytes) -> None:
    """Every route answers what `parse_request` lets through: never a 500 (an exception
    inside the server), whatever the method, path, query, headers and body."""
    try:
        parsed = http.parse_request(data)
    except http.HttpError:
        return
    if parsed is None:
        return

    async def execute(name: str) -> dict[str, ctl.Reply]:
        raise AssertionError(f"the generator let an action through: {name}")

    async def main() -> bytes:
        app = WebApp(lambda history: b"{}", lambda: b"", execute, token=TOKEN.encode())
        return await _route(app, parsed[0], False, "127.0.0.1:1")

    response = trio.run(main)
    assert response.startswith(b"HTTP/1.1 ") and response[9:12] != b"500"
