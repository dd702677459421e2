"""Wire codecs: layouts locked by size, round trips, framing and session rules."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hftd.wire import itch, ouch
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import LocalProtocolError, RemoteProtocolError
from tests.support import ITCH_FILE

# --- sizes (NASDAQ ITCH 5.0 / OUCH 5.0 specifications) ---------------------------

ITCH_SIZES = {
    b"S": 12,
    b"R": 39,
    b"H": 25,
    b"Y": 20,
    b"L": 26,
    b"A": 36,
    b"F": 40,
    b"E": 31,
    b"C": 36,
    b"X": 23,
    b"D": 19,
    b"U": 35,
    b"P": 44,
    # The rest of ITCH 5.0 (PROTOCOLS.md's second table; itchfeed's sizes).
    b"V": 35,
    b"W": 12,
    b"K": 28,
    b"J": 35,
    b"h": 21,
    b"Q": 40,
    b"B": 19,
    b"I": 50,
    b"N": 20,
    b"O": 48,
}
OUCH_IN_SIZES = {b"O": 47, b"U": 40, b"X": 9}  # with an empty appendage
# Outbound: every type of OUCH 5.0 (the specification's rendering; AIQ Canceled
# without the optional AIQ Strategy byte ouch-connect adds).
OUCH_OUT_SIZES = {
    b"S": 10,
    b"A": 64,
    b"U": 68,
    b"C": 18,
    b"D": 31,
    b"E": 36,
    b"B": 36,
    b"F": 49,
    b"J": 29,
    b"P": 13,
    b"I": 13,
    b"T": 30,
    b"M": 18,
    b"R": 16,
    b"Q": 13,
}


def test_itch_sizes() -> None:
    assert itch.SIZES == ITCH_SIZES
    for lay in itch.LAYOUTS:
        assert struct.calcsize(lay.struct.format) == ITCH_SIZES[lay.type_byte]


def test_ouch_sizes() -> None:
    assert ouch.INBOUND_SIZES == OUCH_IN_SIZES
    assert ouch.OUTBOUND_SIZES == OUCH_OUT_SIZES
    for lay in ouch.OUTBOUND_LAYOUTS:
        size = struct.calcsize((lay.short if lay.short_ok else lay.struct).format)
        assert size + (2 if lay.appendage else 0) == OUCH_OUT_SIZES[lay.type_byte]


TS = 0x0102030405060708  # every timestamp below: 8 bytes at offset 1


def test_order_priority_update_field_offsets() -> None:
    b = ouch.encode_outbound(ouch.OrderPriorityUpdate(TS, 0x0A0B0C0D, 1_895_100, "N", 0x77))
    assert len(b) == 30 and b[0:1] == b"T"
    assert b[1:9] == bytes(range(1, 9))
    assert b[9:13] == bytes([0x0A, 0x0B, 0x0C, 0x0D])
    assert struct.unpack(">q", b[13:21])[0] == 1_895_100
    assert b[21:22] == b"N"
    assert struct.unpack(">Q", b[22:30])[0] == 0x77


def test_broken_trade_and_trade_correction_field_offsets() -> None:
    b = ouch.encode_outbound(ouch.BrokenTrade(TS, 5, 0x1122334455667788, "E", "abc"))
    assert len(b) == 36 and b[0:1] == b"B" and b[1:9] == bytes(range(1, 9))
    assert struct.unpack(">I", b[9:13])[0] == 5
    assert struct.unpack(">Q", b[13:21])[0] == 0x1122334455667788
    assert b[21:22] == b"E" and b[22:36] == b"abc".ljust(14)
    f = ouch.encode_outbound(ouch.TradeCorrection(TS, 5, 40, 1_000_100, "R", 9, "N", "abc"))
    assert len(f) == 49 and f[0:1] == b"F"
    assert struct.unpack(">IIq", f[9:25]) == (5, 40, 1_000_100)
    assert f[25:26] == b"R" and struct.unpack(">Q", f[26:34])[0] == 9
    assert f[34:35] == b"N" and f[35:49] == b"abc".ljust(14)


def test_aiq_canceled_field_offsets_and_the_optional_strategy_byte() -> None:
    m = ouch.AiqCanceled(TS, 3, 100, "Q", 60, 1_895_000, "A")
    b = ouch.encode_outbound(m)
    assert len(b) == 31 and b[0:1] == b"D"
    assert struct.unpack(">II", b[9:17]) == (3, 100)
    assert b[17:18] == b"Q" and struct.unpack(">I", b[18:22])[0] == 60
    assert struct.unpack(">q", b[22:30])[0] == 1_895_000 and b[30:31] == b"A"
    assert ouch.decode_outbound(b) == m
    # ouch-connect 5.0.1 adds an AIQ Strategy byte (32 bytes): decoded too, never required
    assert ouch.decode_outbound(b + b"?") == ouch.AiqCanceled(
        TS, 3, 100, "Q", 60, 1_895_000, "A", "?"
    )
    with pytest.raises(RemoteProtocolError):
        ouch.decode_outbound(b[:-1])


def test_small_outbound_messages_field_offsets() -> None:
    for m, tb in (
        (ouch.CancelPending(TS, 0x01020304), b"P"),
        (ouch.CancelReject(TS, 0x01020304), b"I"),
        (ouch.AccountQueryResponse(TS, 0x01020304), b"Q"),
    ):
        b = ouch.encode_outbound(m)
        assert b == tb + bytes(range(1, 9)) + bytes([1, 2, 3, 4])
    mod = ouch.encode_outbound(ouch.OrderModified(TS, 7, "T", 300))
    assert mod == b"M" + bytes(range(1, 9)) + struct.pack(">IcI", 7, b"T", 300)
    r = ouch.encode_outbound(ouch.OrderRestated(TS, 7, "P", b"\x09\x17" + b"\x00" * 8))
    assert r[:14] == b"R" + bytes(range(1, 9)) + struct.pack(">Ic", 7, b"P")
    assert r[14:16] == b"\x00\x0a" and len(r) == 26


def test_enter_order_field_offsets() -> None:
    m = ouch.EnterOrder(
        user_ref=0x01020304,
        side="B",
        quantity=0x0A0B0C0D,
        symbol="AAPL",
        price=1_895_000,
        time_in_force="3",
        display="Y",
        capacity="A",
        iso_eligibility="N",
        cross_type="N",
        cl_ord_id="CL1",
    )
    b = ouch.encode_inbound(m)
    assert b[0:1] == b"O"
    assert b[1:5] == bytes([1, 2, 3, 4])
    assert b[5:6] == b"B"
    assert b[6:10] == bytes([0x0A, 0x0B, 0x0C, 0x0D])
    assert b[10:18] == b"AAPL    "
    assert struct.unpack(">q", b[18:26])[0] == 1_895_000
    assert b[26:31] == b"3YANN"
    assert b[31:45] == b"CL1           "
    assert b[45:47] == b"\x00\x00"


def test_itch_add_order_field_offsets() -> None:
    m = itch.AddOrder(13, 7, 0x010203040506, 42, "S", 100, "AAPL", 3_201_400)
    b = itch.encode(m)
    assert b[0:1] == b"A" and b[1:3] == b"\x00\x0d" and b[3:5] == b"\x00\x07"
    assert b[5:11] == bytes([1, 2, 3, 4, 5, 6])
    assert struct.unpack(">Q", b[11:19])[0] == 42
    assert b[19:20] == b"S" and b[24:32] == b"AAPL    "
    assert struct.unpack(">I", b[32:36])[0] == 3_201_400


def test_itch_cross_trade_and_noii_field_offsets() -> None:
    q = itch.encode(itch.CrossTrade(13, 0, 5, 2**40 + 7, "AAPL", 3_201_400, 99, "O"))
    assert q[0:1] == b"Q" and struct.unpack(">Q", q[11:19])[0] == 2**40 + 7
    assert q[19:27] == b"AAPL    " and struct.unpack(">I", q[27:31])[0] == 3_201_400
    assert struct.unpack(">Q", q[31:39])[0] == 99 and q[39:40] == b"O"
    i = itch.encode(itch.Noii(13, 0, 5, 1000, 200, "B", "AAPL", 1, 2, 3, "C", "L"))
    assert i[0:1] == b"I" and struct.unpack(">QQ", i[11:27]) == (1000, 200)
    assert i[27:28] == b"B" and i[28:36] == b"AAPL    "
    assert struct.unpack(">III", i[36:48]) == (1, 2, 3) and i[48:50] == b"CL"
    v = itch.encode(itch.MwcbDeclineLevel(0, 0, 5, 10**10, 2 * 10**10, 3 * 10**10))
    assert struct.unpack(">QQQ", v[11:35]) == (10**10, 2 * 10**10, 3 * 10**10)


# One message of every ITCH 5.0 type (tests/integration/test_itchfeed.py checks the
# same messages against the independent itchfeed parser).
EVERY_ITCH_TYPE: list[itch.ItchMessage] = [
    itch.SystemEvent(0, 1, 5, "O"),
    itch.StockDirectory(
        13, 0, 5, "AAPL", "Q", "N", 100, "N", "C", "Z", "P", "N", "1", "N", "N", 0, "N"
    ),
    itch.TradingAction(13, 0, 5, "AAPL", "T", " ", ""),
    itch.RegShoRestriction(13, 0, 5, "AAPL", "0"),
    itch.MarketParticipantPosition(13, 0, 5, "NITE", "AAPL", "Y", "N", "A"),
    itch.AddOrder(13, 0, 5, 7, "B", 100, "AAPL", 3_201_400),
    itch.AddOrderMPID(13, 0, 5, 8, "S", 100, "AAPL", 3_201_500, "NITE"),
    itch.OrderExecuted(13, 0, 5, 7, 50, 1),
    itch.OrderExecutedWithPrice(13, 0, 5, 7, 50, 2, "Y", 3_201_300),
    itch.OrderCancel(13, 0, 5, 8, 10),
    itch.OrderDelete(13, 0, 5, 8),
    itch.OrderReplace(13, 0, 5, 7, 9, 200, 3_201_200),
    itch.Trade(13, 0, 5, 0, "B", 100, "AAPL", 3_201_400, 3),
    itch.MwcbDeclineLevel(0, 0, 5, 3_000_00000000, 2_800_00000000, 2_500_00000000),
    itch.MwcbStatus(0, 0, 5, "1"),
    itch.IpoQuotingPeriod(13, 0, 5, "AAPL", 34_200, "A", 1_000_000),
    itch.LuldAuctionCollar(13, 0, 5, "AAPL", 3_200_000, 3_360_000, 3_040_000, 1),
    itch.OperationalHalt(13, 0, 5, "AAPL", "Q", "H"),
    itch.CrossTrade(13, 0, 5, 12_345, "AAPL", 3_201_400, 4, "O"),
    itch.BrokenTrade(13, 0, 5, 4),
    itch.Noii(13, 0, 5, 1_000, 200, "B", "AAPL", 3_200_000, 3_201_000, 3_200_500, "O", "L"),
    itch.RetailInterest(13, 0, 5, "AAPL", "A"),
    itch.DirectListingPriceDiscovery(13, 0, 5, "AAPL", "Y", 1, 2, 3, 4, 5, 6),
]


def test_every_itch_5_type_is_decoded_and_round_trips() -> None:
    by_type = {itch.encode(m)[:1]: m for m in EVERY_ITCH_TYPE}
    assert set(by_type) == set(ITCH_SIZES)  # all 23, each once
    for t, m in by_type.items():
        raw = itch.encode(m)
        assert len(raw) == ITCH_SIZES[t], t
        assert itch.decode(raw) == m
        with pytest.raises(RemoteProtocolError):  # a known type of the wrong size
            itch.decode(raw + b"\x00")


# --- round trips --------------------------------------------------------------


def test_real_nasdaq_file_round_trips_byte_exactly() -> None:
    data = ITCH_FILE.read_bytes()
    msgs = [bytes(m) for m in itch.iter_binary_file(data)]
    assert len(msgs) == 10_000
    decoded = [itch.decode(m) for m in msgs]
    assert not [d for d in decoded if isinstance(d, itch.Unknown)]
    assert [itch.encode(d) for d in decoded] == msgs
    assert itch.frame_binary_file([itch.encode(d) for d in decoded]) == data
    counts: dict[str, int] = {}
    for m in msgs:
        counts[chr(m[0])] = counts.get(chr(m[0]), 0) + 1
    assert counts == {
        "A": 4758,
        "D": 4083,
        "E": 849,
        "P": 240,
        "L": 52,
        "U": 7,
        "X": 6,
        "F": 2,
        "R": 1,
        "H": 1,
        "Y": 1,
    }


alpha = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=8)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
u48 = st.integers(0, 2**48 - 1)
u16 = st.integers(0, 2**16 - 1)
char = st.sampled_from("BSQYNATLD0359")


@given(u16, u16, u48, u64, char, u32, alpha, u32)
def test_itch_add_round_trip(
    loc: int, trk: int, ts: int, ref: int, side: str, shares: int, stock: str, price: int
) -> None:
    m = itch.AddOrder(loc, trk, ts, ref, side, shares, stock, price)
    b = itch.encode(m)
    assert len(b) == 36
    assert itch.decode(b) == m


@given(u32, char, u32, alpha, st.integers(-(2**63), 2**63 - 1), char, st.binary(max_size=40))
def test_ouch_enter_round_trip(
    ref: int, side: str, qty: int, sym: str, price: int, tif: str, app: bytes
) -> None:
    m = ouch.EnterOrder(ref, side, qty, sym, price, tif, cl_ord_id="X" * 14, appendage=app)
    b = ouch.encode_inbound(m)
    assert len(b) == 47 + len(app)
    assert ouch.decode_inbound(b) == m


def test_every_ouch_message_round_trips() -> None:
    inbound: list[ouch.Inbound] = [
        ouch.EnterOrder(1, "S", 100, "MSFT", 4_152_000, "5", "Y", "P", "N", "N", "ID"),
        ouch.ReplaceOrder(1, 2, 50, 4_152_100, "0", "Y", "N", "ID2", b"\x01\x02"),
        ouch.CancelOrder(2, 0),
    ]
    for m in inbound:
        assert ouch.decode_inbound(ouch.encode_inbound(m)) == m
    outbound: list[ouch.Outbound] = [
        ouch.SystemEventMsg(1, "S"),
        ouch.Accepted(1, 1, "B", 100, "AAPL", 1, "0", "Y", 9, "A", "N", "N", "L", "C"),
        ouch.Replaced(1, 1, 2, "B", 100, "AAPL", 1, "0", "Y", 9, "A", "N", "N", "L", "C"),
        ouch.Canceled(1, 2, 100, "U"),
        ouch.Executed(1, 2, 100, 1_000_000, "R", 77),
        ouch.Rejected(1, 3, ouch.REJECT_INVALID_PRICE, "C"),
        ouch.AiqCanceled(1, 2, 100, "Q", 40, 1_000_000, "A"),
        ouch.AiqCanceled(1, 2, 100, "Q", 40, 1_000_000, "A", "M"),
        ouch.BrokenTrade(1, 2, 77, "E", "C"),
        ouch.TradeCorrection(1, 2, 50, 1_000_100, "R", 77, "N", "C"),
        ouch.CancelPending(1, 2),
        ouch.CancelReject(1, 2),
        ouch.OrderPriorityUpdate(1, 2, 1_000_100, "Y", 12),
        ouch.OrderModified(1, 2, "S", 60),
        ouch.OrderRestated(1, 2, "R", b"\x05\x16\x00\x00\x00\x64"),
        ouch.AccountQueryResponse(1, 9),
    ]
    assert {ouch.encode_outbound(m)[:1] for m in outbound} == set(OUCH_OUT_SIZES)
    for m in outbound:
        assert ouch.decode_outbound(ouch.encode_outbound(m)) == m


@pytest.mark.parametrize(
    "payload",
    [b"", b"Z", b"O" + b"\x00" * 10, b"X" + b"\x00" * 9, b"O" + b"\x00" * 46 + b"\x00\x05ab"],
)
def test_bad_ouch_inbound_is_a_remote_error(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ouch.decode_inbound(payload)


def test_a_type_not_in_itch_5_is_kept_as_unknown() -> None:
    raw = b"z" + b"\x00" * 39
    assert itch.decode(raw) == itch.Unknown(raw)
    assert itch.encode(itch.decode(raw)) == raw


def test_truncated_itch_message_is_an_error() -> None:
    with pytest.raises(RemoteProtocolError):
        itch.decode(itch.encode(itch.OrderDelete(1, 0, 5, 9))[:-1])


# --- SoupBinTCP ------------------------------------------------------------------


def test_login_request_layout() -> None:
    b = soup.login_request("HFTD", "secret", "", 1)
    assert b[:3] == b"\x00\x2fL"
    assert b[3:9] == b"HFTD  " and b[9:19] == b"secret    "
    assert b[19:29] == b" " * 10 and b[29:49] == b" " * 19 + b"1"
    assert soup.parse_login_request(b[3:]) == soup.LoginRequested("HFTD", "secret", "", 1)


def test_login_field_too_long_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        soup.login_request("TOOLONGNAME", "x")


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 64))
def test_frames_split_anywhere(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(soup.sequenced(p) for p in payloads)
    dec = soup.FrameDecoder()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out += [body for _t, body in dec.packets(stream[i : i + chunk])]
    assert out == payloads
    assert dec.pending == 0


def test_client_session_numbers_sequenced_messages() -> None:
    cs = soup.ClientSession()
    data = soup.login_accepted("S1", 41) + soup.sequenced(b"a") + soup.SERVER_HEARTBEAT
    data += soup.sequenced(b"b") + soup.END_OF_SESSION
    assert cs.receive_data(data) == [
        soup.LoginAccepted("S1", 41),
        soup.SequencedData(41, b"a"),
        soup.ServerHeartbeat(),
        soup.SequencedData(42, b"b"),
        soup.EndOfSession(),
    ]
    with pytest.raises(RemoteProtocolError):
        cs.receive_data(soup.sequenced(b"late"))


def test_server_session_holds_pipelined_packets_until_accept() -> None:
    ss = soup.ServerSession()
    data = soup.login_request("U", "p", "", 5) + soup.unsequenced(b"x") + soup.CLIENT_HEARTBEAT
    assert ss.receive_data(data) == [soup.LoginRequested("U", "p", "", 5)]
    assert ss.accept() == [soup.UnsequencedData(b"x"), soup.ClientHeartbeat()]
    assert ss.receive_data(soup.LOGOUT_REQUEST) == [soup.LogoutRequested()]
    with pytest.raises(RemoteProtocolError):
        ss.receive_data(soup.CLIENT_HEARTBEAT)


@pytest.mark.parametrize(
    "data",
    [
        soup.unsequenced(b"x"),  # data before login
        b"\x00\x00",  # zero length
        soup.packet(b"L", b"short"),  # bad login size
        soup.packet(b"L", b"U     p         " + b" " * 10 + b"x" * 20),  # bad sequence number
        soup.packet(b"S", b"x"),  # server packet type from a client
    ],
)
def test_server_session_rejects_out_of_protocol(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ss = soup.ServerSession()
        ss.receive_data(data)


def test_second_login_is_out_of_protocol() -> None:
    ss = soup.ServerSession()
    ss.receive_data(soup.login_request("U", "p"))
    ss.accept()
    with pytest.raises(RemoteProtocolError):
        ss.receive_data(soup.login_request("U", "p"))
