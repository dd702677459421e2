"""The venue driven by the independent `ouch-connect` 5.0.1 client (PyPI).

ouch-connect is used for what it encodes per the NASDAQ OUCH 5.0 spec: the
SoupBinTCP session (login, heartbeats both ways, logout), Replace Order and
Cancel Order, and decoding System Event, Executed and Rejected. Where it
departs from the spec the venue stays with the spec and this test says so
(measured: docs/reference/ouch-connect.md):

1. Enter Order: it writes the symbol as 9 bytes (spec: 8), so the message is
   48 bytes + appendage instead of 47. The venue treats it as malformed and
   ends the session; the order is never entered. Orders to replace, cancel
   and execute are therefore entered with hftd's own spec codec.
2. It decodes Accepted and Replaced only with a 9-byte symbol and Canceled
   only with an extra 4-byte UserRefNum (22 bytes, spec: 18). Given the spec
   layouts its receive thread stops silently. The venue's Replaced and
   Canceled replies are checked by logging in again with hftd's codec.
3. Login username and password are right-justified (SoupBinTCP: left); the
   venue trims padding on both sides, so the login works either way.
4. Prices go through a 32-bit float and are truncated: the test sends
   (ticks + 0.5) / 10_000, exact below about $513.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hftd.ipc.control import request_sync
from hftd.msg.control import Snapshot, Status
from hftd.wire import ouch
from tests.support import SoupClient, make_config, start_daemon, wait_for

ouch_connect = pytest.importorskip("ouch_connect")
callbacks = pytest.importorskip("links_connect.callbacks")

pytestmark = pytest.mark.integration


def px(fixed: int) -> float:
    """A float that ouch-connect's f32 truncation turns back into `fixed`."""
    return (fixed + 0.5) / 10_000


@contextmanager
def ouch_client(port: int, store: Any, sequence: int, **kw: Any) -> Iterator[Any]:
    clt = ouch_connect.CltAuto(
        f"127.0.0.1:{port}",
        store,
        name="oc",
        username="TEST",
        password="test-pass",
        session_id="",
        sequence=sequence,
        **kw,
    )
    try:
        yield clt
    finally:
        clt.__exit__(None, None, None)


def sessions(sock: Path) -> list[str]:
    reply = request_sync(sock, Status())
    assert reply.ok
    return list(reply.result["detail"]["order_sessions"])


def spec_replies(port: int, first: int, n: int) -> list[ouch.Outbound]:
    c = SoupClient(port, sequence=first)
    try:
        return [ouch.decode_outbound(c.sequenced().payload) for _ in range(n)]
    finally:
        c.close()


def test_ouch_connect_against_the_venue(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, {"exchange": {"flow": {"enabled": False}, "heartbeat_timeout_s": 3.0}}
    )
    with start_daemon("exchange", cfg) as d:
        port = d.config["exchange"]["order_port"]
        sock = Path(d.config["system"]["run_dir"]) / "exchange.sock"

        # Resting orders for TEST, entered per spec with hftd's codec.
        spec = SoupClient(port)
        spec.sequenced()
        for ref, qty, price in ((1, 100, 1_900_000), (2, 200, 1_910_000)):
            spec.send_unsequenced(
                ouch.encode_inbound(ouch.EnterOrder(ref, "S", qty, "AAPL", price))
            )
            assert isinstance(ouch.decode_outbound(spec.sequenced().payload), ouch.Accepted)
        spec.close()
        wait_for(lambda: "TEST" not in sessions(sock), what="spec client logout")
        next_seq = request_sync(sock, Snapshot("TEST")).result["next_sequence"]

        store = callbacks.MemoryStoreCallback(default_find_timeout=5.0)
        with ouch_client(
            port, store, next_seq, clt_max_hbeat_interval=1.0, svc_max_hbeat_interval=2.5
        ) as clt:
            # Login (sequence = the next reply) and heartbeats both ways: the
            # venue drops a client silent for 3 s, ouch-connect a server
            # silent for 2.5 s; after 4 s idle both still hold the session.
            assert clt.is_connected(1.0)
            assert sessions(sock) == ["TEST"]
            time.sleep(4.0)
            assert clt.is_connected(1.0)
            assert sessions(sock) == ["TEST"]

            # Executed (decoded by ouch-connect): HFTD takes TEST's offer.
            hftd = SoupClient(port, "HFTD", "hftd-pass", sequence=0)
            hftd.send_unsequenced(
                ouch.encode_inbound(ouch.EnterOrder(1, "B", 100, "AAPL", 1_900_000, ouch.TIF_IOC))
            )
            execd = store.find_recv("oc", {"SPayload": {"OrderExecuted": {"user_ref_number": 1}}})
            assert execd is not None, "ouch-connect did not decode the venue's Executed"
            e = execd.msg["SPayload"]["OrderExecuted"]
            fill = request_sync(sock, Snapshot("TEST")).result["fills"][0]
            assert (e["quantity"], e["match_number"]) == (100, fill["match_number"])
            assert e["liquidity_flag"] == "ADDED"
            assert round(e["price"] * 10_000) == 1_900_000

            # Rejected (decoded by ouch-connect): cancel of an unknown order.
            clt.send({"UPayload": {"CancelOrder": {"user_ref_number": 99, "quantity": 0}}})
            rej = store.find_recv("oc", {"SPayload": {"OrderRejected": {"user_ref_number": 99}}})
            assert rej is not None
            assert (
                rej.msg["SPayload"]["OrderRejected"]["reject_reason"] == ouch.REJECT_UNKNOWN_ORDER
            )

            # Logout.
            clt.send({"LogoutRequest": {}})
            wait_for(lambda: "TEST" not in sessions(sock), what="logout")
        assert "order session closed: user TEST" in d.log

        def open_orders() -> list[tuple[int, int, int]]:
            snap = request_sync(sock, Snapshot("TEST")).result
            return [(o["user_ref"], o["open_qty"], o["price"]) for o in snap["open_orders"]]

        # Replace and Cancel, spec encodings. ouch-connect cannot decode the
        # spec Replaced/Canceled replies and drops its connection after each,
        # so every request gets a fresh session (from sequence 0 = now).
        requests: list[tuple[dict[str, Any], list[tuple[int, int, int]]]] = [
            (
                {
                    "ReplaceOrder": {  # size down at the same price: keeps priority
                        "orig_user_ref_number": 2,
                        "user_ref_number": 10,
                        "quantity": 150,
                        "price": px(1_910_000),
                        "time_in_force": "MARKET_HOURS",
                        "display": "VISIBLE",
                        "int_mkt_sweep_eligibility": "NOT_ELIGIBLE",
                        "clt_order_id": "RPL10",
                        "appendages": {},
                    }
                },
                [(10, 150, 1_910_000)],
            ),
            ({"CancelOrder": {"user_ref_number": 10, "quantity": 50}}, [(10, 50, 1_910_000)]),
            ({"CancelOrder": {"user_ref_number": 10, "quantity": 0}}, []),
        ]
        for payload, want in requests:
            with ouch_client(port, store, 0) as clt:
                clt.send({"UPayload": payload})
                wait_for(lambda want=want: open_orders() == want, what=f"{payload} applied")

        # The venue's replies to ouch-connect's messages, read per spec.
        executed, rejected, replaced, cut, canceled = spec_replies(port, next_seq, 5)
        assert isinstance(executed, ouch.Executed) and executed.liquidity_flag == "A"
        assert isinstance(rejected, ouch.Rejected) and rejected.user_ref == 99
        assert isinstance(replaced, ouch.Replaced)
        assert (replaced.orig_user_ref, replaced.new_user_ref, replaced.quantity) == (2, 10, 150)
        assert replaced.cl_ord_id == "RPL10"
        assert cut == ouch.Canceled(cut.timestamp, 10, 100, ouch.CANCEL_USER)  # type: ignore[union-attr]
        assert canceled == ouch.Canceled(canceled.timestamp, 10, 50, ouch.CANCEL_USER)  # type: ignore[union-attr]

        # Departure 1: ouch-connect's Enter Order is not OUCH 5.0; the venue says so.
        with ouch_client(port, store, 0) as clt:
            clt.send(
                {
                    "UPayload": {
                        "EnterOrder": {
                            "user_ref_number": 20,
                            "side": "BUY",
                            "quantity": 100,
                            "symbol": "AAPL",
                            "price": px(1_800_000),
                            "time_in_force": "MARKET_HOURS",
                            "display": "VISIBLE",
                            "capacity": "AGENCY",
                            "int_mkt_sweep_eligibility": "NOT_ELIGIBLE",
                            "cross_type": "CONTINUOUS_MARKET",
                            "clt_order_id": "E20",
                            "appendages": {},
                        }
                    }
                }
            )
            wait_for(lambda: "EnterOrder: 48 bytes" in d.log, what="protocol error logged")
        assert request_sync(sock, Snapshot("TEST")).result["open_orders"] == []
        assert d.proc.poll() is None
