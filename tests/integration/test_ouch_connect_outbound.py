"""hftd's OUCH 5.0 outbound codec against what `ouch-connect` 5.0.1 encodes.

ouch-connect's own venue (`SvcAuto`) sends one sample of every outbound
message type it knows; a raw SoupBinTCP client captures the bytes and hftd's
codec decodes them, field by field against the values ouch-connect was given.
Where the two differ hftd follows the rendering of the NASDAQ specification
(docs/reference/ouch-connect.md, `hftd.wire.ouch`), and this test says so:

1. Accepted and Replaced: ouch-connect writes the symbol as 9 bytes (spec 8),
   Canceled with an extra orig UserRefNum (22 bytes, spec 18). Not decodable
   as OUCH 5.0; checked here to fail as a RemoteProtocolError, no more.
2. AIQ Canceled: ouch-connect writes a trailing AIQ Strategy byte (32 bytes);
   the specification's rendering has 31. hftd decodes both and writes 31.
3. Trade Correction (F) is in the specification, not in ouch-connect.
Every other type (System Event, Executed, Broken Trade, Rejected, Cancel
Pending, Cancel Reject, Order Priority Update, Order Modified, Order
Restated, Account Query Response) is byte for byte the same layout.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import msgspec
import pytest

from hftd.wire import ouch
from hftd.wire import soupbintcp as soup
from hftd.wire.errors import RemoteProtocolError
from tests.support import free_port, wait_for

ouch_connect = pytest.importorskip("ouch_connect")
callbacks = pytest.importorskip("links_connect.callbacks")

pytestmark = pytest.mark.integration


def captured(port: int, svc: Any, samples: list[dict[str, Any]]) -> list[bytes]:
    """Log in raw (ouch-connect wants right-justified credentials), have `svc`
    send every sample, return the sequenced payloads as received."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        c.sendall(
            soup.packet(
                b"L", b"TEST".rjust(6) + b"pass".rjust(10) + b"S1".rjust(10) + b"1".rjust(20)
            )
        )
        session = soup.ClientSession()
        events: list[Any] = []
        while not events:
            events += session.receive_data(c.recv(65536))
        assert isinstance(events[0], soup.LoginAccepted)
        wait_for(lambda: svc.is_connected(0.1), 5, "ouch-connect's venue seeing the login")
        for m in samples:
            svc.send(m)
        payloads: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(payloads) < len(samples) and time.monotonic() < deadline:
            for ev in session.receive_data(c.recv(65536)):
                if isinstance(ev, soup.SequencedData):
                    payloads.append(ev.payload)
        return payloads
    finally:
        c.close()


def test_outbound_layouts_agree_with_ouch_connect() -> None:
    samples = [
        json.loads(s)
        for s in ouch_connect.SvcAuto.msg_samples
        if json.loads(s).get("SPayload") is not None
    ]
    port = free_port()
    store = callbacks.MemoryStoreCallback(default_find_timeout=2.0)
    svc = ouch_connect.SvcAuto(
        f"127.0.0.1:{port}", store, name="svc", username="TEST", password="pass", session_id="S1"
    )
    try:
        payloads = captured(port, svc, samples)
    finally:
        svc.__exit__(None, None, None)
    assert len(payloads) == len(samples)
    by_type = {p[:1]: p for p in payloads}
    sent = {next(iter(s["SPayload"])): s["SPayload"][next(iter(s["SPayload"]))] for s in samples}

    # 1. ouch-connect's own layouts of A, U, C are not OUCH 5.0: refused, as errors
    assert len(by_type[b"C"]) == ouch.OUTBOUND_SIZES[b"C"] + 4
    assert by_type[b"A"][18:27] == b"DUMMY    " and by_type[b"U"][22:31] == b"DUMMY    "
    for tb in (b"A", b"U", b"C"):
        with pytest.raises(RemoteProtocolError):
            ouch.decode_outbound(by_type[tb])

    ev = ouch.decode_outbound(by_type[b"S"])
    assert isinstance(ev, ouch.SystemEventMsg) and ev.event_code == "S"

    ex = ouch.decode_outbound(by_type[b"E"])
    assert isinstance(ex, ouch.Executed)
    assert (ex.user_ref, ex.quantity, ex.price, ex.liquidity_flag) == (1, 100, 12345, "A")
    assert ex.match_number == sent["OrderExecuted"]["match_number"] and ex.appendage

    # 2. AIQ Canceled: the optional AIQ Strategy byte
    d = by_type[b"D"]
    assert len(d) == ouch.OUTBOUND_SIZES[b"D"] + 1
    aiq = ouch.decode_outbound(d)
    assert isinstance(aiq, ouch.AiqCanceled)
    a = sent["OrderAiqCanceled"]
    assert (aiq.user_ref, aiq.decrement, aiq.prevented) == (
        a["user_ref_number"],
        a["decrement_shares"],
        a["prevented_from_trading"],
    )
    assert aiq.liquidity_flag == "A" and aiq.aiq_strategy == a["aiq_strategy"]
    assert ouch.encode_outbound(aiq) == d  # with the byte set, it is written back
    assert len(ouch.encode_outbound(msgspec.structs.replace(aiq, aiq_strategy=""))) == 31

    bt = ouch.decode_outbound(by_type[b"B"])
    assert bt == ouch.BrokenTrade(bt.timestamp, 1, 0, "E", "1")  # type: ignore[union-attr]

    rj = ouch.decode_outbound(by_type[b"J"])
    assert isinstance(rj, ouch.Rejected) and (rj.user_ref, rj.reason, rj.cl_ord_id) == (1, 1, "1")

    for tb, cls in ((b"P", ouch.CancelPending), (b"I", ouch.CancelReject)):
        m = ouch.decode_outbound(by_type[tb])
        assert isinstance(m, cls) and m.user_ref == 1

    t = ouch.decode_outbound(by_type[b"T"])
    assert isinstance(t, ouch.OrderPriorityUpdate)
    assert (t.user_ref, t.price, t.display, t.order_ref) == (1, 12345, "Y", 0)

    mod = ouch.decode_outbound(by_type[b"M"])
    assert isinstance(mod, ouch.OrderModified)
    assert (mod.user_ref, mod.side, mod.quantity) == (1, "B", 10)

    rs = ouch.decode_outbound(by_type[b"R"])
    assert isinstance(rs, ouch.OrderRestated) and (rs.user_ref, rs.reason) == (1, "R")
    assert rs.appendage[:2] == b"\x05\x16"  # display quantity (tag 22) first

    q = ouch.decode_outbound(by_type[b"Q"])
    assert isinstance(q, ouch.AccountQueryResponse) and q.next_user_ref == 1

    # every payload is a sequenced message hftd re-encodes byte for byte
    for tb in (b"S", b"E", b"D", b"B", b"J", b"P", b"I", b"T", b"M", b"R", b"Q"):
        assert ouch.encode_outbound(ouch.decode_outbound(by_type[tb])) == by_type[tb], tb
    # 3. no Trade Correction from ouch-connect
    assert b"F" not in by_type
