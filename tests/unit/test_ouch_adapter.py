"""The OUCH 5.0 venue adapter: every OUCH message the venue sends becomes the
order core's event, every message we send reads back the same, and nothing
OUCH reaches the core (hftd.gateway.venue, hftd.gateway.ouch_adapter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hftd.gateway import venue as v
from hftd.gateway.ouch_adapter import OuchAdapter, from_b36, to_b36
from hftd.msg import hot, ids
from hftd.wire import ouch

A = OuchAdapter()
CL = ids.first_id(3, 7) + 12_345  # a strategy order id, carried as ClOrdID text
RESTATED_AT_100 = bytes([9, 23]) + (1_000_000).to_bytes(8, "big")  # display price TLV

CASES: list[tuple[ouch.Outbound, v.VenueEvent]] = [
    (
        ouch.Accepted(
            1, 5, "B", 100, "AAPL", 1_000_000, "3", "Y", 9, "A", "N", "N", "L", to_b36(CL)
        ),
        v.Accepted(5, CL, "AAPL", "B", 100, 1_000_000, "3"),
    ),
    (ouch.Executed(1, 5, 40, 1_000_100, "R", 77), v.Executed(5, 40, 1_000_100, 77, "R")),
    (ouch.Canceled(1, 5, 60, ouch.CANCEL_USER), v.Canceled(5, 60, v.CANCEL_USER)),
    (ouch.Canceled(1, 5, 60, ouch.CANCEL_IOC), v.Canceled(5, 60, v.CANCEL_IOC)),
    (ouch.Canceled(1, 5, 60, ouch.CANCEL_SUPERVISORY), v.Canceled(5, 60, v.CANCEL_VENUE)),
    (ouch.Canceled(1, 5, 60, ouch.CANCEL_CLOSED), v.Canceled(5, 60, v.CANCEL_CLOSED)),
    (ouch.Canceled(1, 5, 60, "Z"), v.Canceled(5, 60, v.CANCEL_OTHER)),
    (
        ouch.AiqCanceled(1, 5, 20, ouch.CANCEL_AIQ, 20, 1_000_000, "A"),
        v.Canceled(5, 20, v.CANCEL_SELF_MATCH),
    ),
    (
        ouch.Replaced(
            1, 5, 6, "S", 70, "MSFT", 4_100_000, "0", "Y", 9, "A", "N", "N", "L", to_b36(CL)
        ),
        v.Replaced(5, 6, CL, "MSFT", "S", 70, 4_100_000, "0"),
    ),
    (
        ouch.Rejected(1, 6, ouch.REJECT_INVALID_PRICE, ""),
        v.Rejected(6, v.REJECT_INVALID_PRICE, v.REJECT_INVALID_PRICE),
    ),
    (
        ouch.Rejected(1, 6, ouch.REJECT_UNKNOWN_ORDER, ""),
        v.Rejected(6, v.REJECT_UNKNOWN_ORDER, v.REJECT_UNKNOWN_ORDER),
    ),
    (ouch.Rejected(1, 6, 99, ""), v.Rejected(6, v.REJECT_OTHER, "reject code 99")),
    (ouch.CancelPending(1, 5), v.CancelHeld(5)),
    (ouch.CancelReject(1, 5), v.CancelRefused(5)),
    (ouch.BrokenTrade(1, 5, 77, "E", ""), v.TradeBroken(5, 77, "E")),
    (
        ouch.TradeCorrection(1, 5, 30, 1_000_200, "R", 77, "N", ""),
        v.TradeCorrected(5, 77, 30, 1_000_200, "N"),
    ),
    (ouch.OrderPriorityUpdate(1, 5, 1_000_100, "Y", 12), v.PriorityUpdate(5, 1_000_100, "Y", 12)),
    (ouch.OrderModified(1, 5, "S", 60), v.Modified(5, "S", 60)),
    (
        ouch.OrderRestated(1, 5, ouch.RESTATED_REFRESH, RESTATED_AT_100),
        v.Restated(5, 1_000_000, "display refreshed"),
    ),
    (ouch.OrderRestated(1, 5, "P", b""), v.Restated(5, 0, "P")),
    (ouch.SystemEventMsg(1, "S"), v.SystemEvent("S")),
    (ouch.AccountQueryResponse(1, 42), v.NextRef(42)),
]


@pytest.mark.parametrize(("msg", "event"), CASES, ids=lambda x: type(x).__name__)
def test_each_venue_message_becomes_the_cores_event(
    msg: ouch.Outbound, event: v.VenueEvent
) -> None:
    assert A.decode(ouch.encode_outbound(msg)) == event


def test_every_ouch_message_the_venue_sends_is_mapped() -> None:
    mapped = {ouch.encode_outbound(m)[:1] for m, _ in CASES}
    assert mapped == {m[:1] for m in map(ouch.encode_outbound, (m for m, _ in CASES))}
    assert not [e for _, e in CASES if isinstance(e, v.Unhandled)]
    from tests.unit.test_wire import OUCH_OUT_SIZES

    assert mapped == set(OUCH_OUT_SIZES)  # every outbound type of the codec


@pytest.mark.parametrize("payload", [b"", b"Z", b"A" + b"\x00" * 3])
def test_bytes_that_are_not_ouch_are_unreadable_not_a_crash(payload: bytes) -> None:
    with pytest.raises(v.UnreadableMessage):
        A.decode(payload)


def test_what_we_send_reads_back_as_sent() -> None:
    new = A.enter(5, CL, "AAPL", "B", 100, hot.MARKET_PRICE, hot.TIF_IOC)
    assert A.decode_sent(new) == v.SentNew(5, "AAPL", "B", 100, hot.MARKET_PRICE, hot.TIF_IOC)
    m = ouch.decode_inbound(new)
    assert isinstance(m, ouch.EnterOrder) and m.cl_ord_id == to_b36(CL)
    assert A.decode_sent(A.replace(5, 6, CL + 1, 70, 1_000_100, hot.TIF_DAY)) == v.SentReplace(
        5, 6, 70, 1_000_100
    )
    assert A.decode_sent(A.cancel(6)) == v.SentCancel(6)


def test_our_market_price_passes_through_ouch_unchanged() -> None:
    assert hot.MARKET_PRICE == ouch.MARKET_PRICE


def test_the_order_core_imports_no_wire_module() -> None:
    code = (
        "import sys, hftd.gateway.core\n"
        "print([m for m in sys.modules if m.startswith('hftd.wire')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize(
    "msg",
    [
        ouch.Executed(1, 5, 0, 1_000_000, "A", 77),
        ouch.Executed(1, 5, 100, 0, "A", 77),
        ouch.TradeCorrection(1, 5, 0, 1_000_000, "R", 77, "N", ""),
    ],
)
def test_a_fill_that_would_corrupt_positions_is_unreadable_not_applied(
    msg: ouch.Outbound,
) -> None:
    with pytest.raises(v.UnreadableMessage):
        A.decode(ouch.encode_outbound(msg))


@pytest.mark.parametrize("text", ["-5", " z", "1_0", "zzzzzzzzzzzzzz", "", "é"])
def test_a_client_order_id_not_ours_reads_as_none(text: str) -> None:
    assert from_b36(text) == 0
    assert from_b36(to_b36(CL)) == CL
