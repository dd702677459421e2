"""The exchange daemon as a real process on loopback: sessions, market data, snapshots."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hftd.book.l3 import BookBuilder
from hftd.ipc.control import request_sync
from hftd.msg.control import Depth, Snapshot, Status
from hftd.wire import itch, ouch
from hftd.wire import soupbintcp as soup
from tests.support import Daemon, SoupClient, make_config, start_daemon

pytestmark = pytest.mark.integration


def ports(d: Daemon) -> tuple[int, int]:
    ex = d.config["exchange"]
    return ex["order_port"], ex["md_port"]


def control(d: Daemon) -> Path:
    return Path(d.config["system"]["run_dir"]) / "exchange.sock"


def enter(
    c: SoupClient, ref: int, side: str, qty: int, price: int, tif: str = "0", symbol: str = "AAPL"
) -> None:
    c.send_unsequenced(
        ouch.encode_inbound(
            ouch.EnterOrder(
                user_ref=ref, side=side, quantity=qty, symbol=symbol, price=price, time_in_force=tif
            )
        )
    )


def replies(c: SoupClient, n: int) -> list[ouch.Outbound]:
    return [ouch.decode_outbound(c.sequenced().payload) for _ in range(n)]


def test_login_rejected_for_bad_password(quiet_exchange: Daemon) -> None:
    order_port, _ = ports(quiet_exchange)
    c = SoupClient(order_port, "TEST", "wrong")
    assert c.login == soup.LoginRejected(soup.REJECT_NOT_AUTHORIZED)
    assert c.closed_by_server()


def test_unknown_session_rejected(quiet_exchange: Daemon) -> None:
    order_port, _ = ports(quiet_exchange)
    c = SoupClient(order_port, session="NOSUCH")
    assert c.login == soup.LoginRejected(soup.REJECT_SESSION_UNAVAILABLE)


def test_server_heartbeats_when_idle(quiet_exchange: Daemon) -> None:
    order_port, _ = ports(quiet_exchange)
    c = SoupClient(order_port)
    assert isinstance(c.login, soup.LoginAccepted)
    assert isinstance(c.sequenced(), soup.SequencedData)  # start-of-day system event
    assert isinstance(c.next_event(timeout=5), soup.ServerHeartbeat)
    c.close()


def test_order_flow_and_relogin_replay(quiet_exchange: Daemon) -> None:
    order_port, _ = ports(quiet_exchange)
    c = SoupClient(order_port)
    assert c.login.sequence == 1
    (sod,) = replies(c, 1)
    assert sod == ouch.SystemEventMsg(sod.timestamp, "S")  # type: ignore[union-attr]
    enter(c, 1, "S", 300, 1_900_000)
    enter(c, 2, "B", 100, 1_900_000)
    acc1, _acc2, ex_a, ex_b = replies(c, 4)
    assert isinstance(acc1, ouch.Accepted) and acc1.order_state == "L"
    assert isinstance(ex_a, ouch.Executed) and isinstance(ex_b, ouch.Executed)
    assert {(e.user_ref, e.liquidity_flag) for e in (ex_a, ex_b)} == {(1, "A"), (2, "R")}
    c.send_unsequenced(ouch.encode_inbound(ouch.ReplaceOrder(1, 3, 150, 1_900_100)))
    (rep,) = replies(c, 1)
    assert isinstance(rep, ouch.Replaced) and rep.new_user_ref == 3 and rep.quantity == 150
    assert rep.order_ref != acc1.order_ref  # price changed: new reference
    c.send_unsequenced(ouch.encode_inbound(ouch.CancelOrder(3, 0)))
    (can,) = replies(c, 1)
    assert can == ouch.Canceled(can.timestamp, 3, 150, ouch.CANCEL_USER)  # type: ignore[union-attr]
    c.send_unsequenced(ouch.encode_inbound(ouch.CancelOrder(3, 0)))
    (rej,) = replies(c, 1)
    assert isinstance(rej, ouch.Rejected) and rej.reason == ouch.REJECT_UNKNOWN_ORDER
    c.close()

    # Re-login from sequence 3 replays replies 3.. exactly.
    again = SoupClient(order_port, sequence=3)
    assert again.login.sequence == 3
    replayed = replies(again, 6)
    assert isinstance(replayed[0], ouch.Accepted) and replayed[0].user_ref == 2
    assert isinstance(replayed[-1], ouch.Rejected)
    # Sequence 0 = from now: nothing old comes back, new replies do.
    again.close()
    now = SoupClient(order_port, sequence=0)
    assert now.login.sequence == 9
    enter(now, 10, "B", 100, 1_000_000, tif=ouch.TIF_IOC)
    acc, canceled = replies(now, 2)
    assert isinstance(acc, ouch.Accepted) and acc.user_ref == 10
    assert isinstance(canceled, ouch.Canceled) and canceled.reason == ouch.CANCEL_IOC


def test_rejects_reach_the_client(quiet_exchange: Daemon) -> None:
    order_port, _ = ports(quiet_exchange)
    c = SoupClient(order_port)
    replies(c, 1)
    cases = [
        (ouch.EnterOrder(1, "B", 100, "ZZZZ", 1_000_000), ouch.REJECT_UNKNOWN_SYMBOL),
        (ouch.EnterOrder(2, "B", 0, "AAPL", 1_000_000), ouch.REJECT_INVALID_QUANTITY),
        (ouch.EnterOrder(3, "B", 10_000_000, "AAPL", 1_000_000), ouch.REJECT_QUANTITY_EXCEEDS_MAX),
        (ouch.EnterOrder(4, "B", 100, "AAPL", 0), ouch.REJECT_INVALID_PRICE),
        (ouch.EnterOrder(5, "B", 100, "AAPL", 1_000_050), ouch.REJECT_INVALID_TICK),
        (ouch.EnterOrder(6, "X", 100, "AAPL", 1_000_000), ouch.REJECT_INVALID_SIDE),
        (
            ouch.EnterOrder(7, "B", 100, "AAPL", 1_000_000, time_in_force="9"),
            ouch.REJECT_INVALID_TIF,
        ),
        (ouch.EnterOrder(7, "B", 100, "AAPL", 1_000_000), ouch.REJECT_DUPLICATE_USER_REF),
        (ouch.CancelOrder(99), ouch.REJECT_UNKNOWN_ORDER),
    ]
    for msg, reason in cases:
        c.send_unsequenced(ouch.encode_inbound(msg))
        (rej,) = replies(c, 1)
        assert isinstance(rej, ouch.Rejected), msg
        assert rej.reason == reason, (msg, rej)


def test_malformed_packet_ends_only_that_session(quiet_exchange: Daemon) -> None:
    order_port, md_port = ports(quiet_exchange)
    good = SoupClient(order_port, "HFTD", "hftd-pass")
    replies(good, 1)
    md = SoupClient(md_port, "FEED", "feed")  # default.toml's [[exchange.md_users]]
    bad = SoupClient(order_port, "TEST", "test-pass")
    bad.sock.sendall(soup.unsequenced(b"Q" + b"\x00" * 10))  # no such OUCH message
    assert bad.closed_by_server()
    raw = SoupClient(order_port, "TEST", "test-pass")
    raw.sock.sendall(b"\x00\x00")  # zero-length SoupBinTCP packet
    assert raw.closed_by_server()
    short = SoupClient(order_port, "TEST", "test-pass")
    short.send_unsequenced(
        ouch.encode_inbound(ouch.EnterOrder(1, "B", 100, "AAPL", 1_000_000))[:-5]
    )
    assert short.closed_by_server()
    # The other sessions and the venue carry on.
    enter(good, 1, "B", 100, 1_000_000)
    (acc,) = replies(good, 1)
    assert isinstance(acc, ouch.Accepted)
    while True:
        msg = itch.decode(md.sequenced().payload)
        if isinstance(msg, itch.AddOrder) and msg.order_ref == acc.order_ref:
            break
    reply = request_sync(control(quiet_exchange), Status())
    assert reply.ok and reply.result["state"] == "running"
    assert quiet_exchange.proc.poll() is None
    log = quiet_exchange.log
    assert "unknown message type b'Q'" in log and "length 0" in log and "EnterOrder" in log


def test_snapshot_reports_open_orders_and_fills(quiet_exchange: Daemon) -> None:
    order_port, _ = ports(quiet_exchange)
    a = SoupClient(order_port, "HFTD", "hftd-pass")
    b = SoupClient(order_port, "TEST", "test-pass")
    replies(a, 1)
    replies(b, 1)
    enter(a, 1, "S", 500, 1_950_000)
    replies(a, 1)
    enter(b, 1, "B", 200, 1_950_000)
    replies(b, 2)
    replies(a, 1)
    snap = request_sync(control(quiet_exchange), Snapshot("HFTD"))
    assert snap.ok, snap.error
    (open_,) = snap.result["open_orders"]
    assert (open_["user_ref"], open_["open_qty"], open_["price"]) == (1, 300, 1_950_000)
    (fill,) = snap.result["fills"]
    assert (fill["quantity"], fill["price"], fill["liquidity"]) == (200, 1_950_000, "A")
    assert snap.result["next_sequence"] == 4
    bad = request_sync(control(quiet_exchange), Snapshot("NOBODY"))
    assert not bad.ok and "unknown user" in bad.error


class MdReader:
    """A market-data client feeding a book builder, knowing where it is."""

    def __init__(self, port: int) -> None:
        self.client = SoupClient(port, "FEED", "feed", sequence=1)  # an md user
        self.books = BookBuilder()
        self.last = 0

    def read_until(self, seq: int) -> None:
        """Apply market data up to and including `seq`."""
        while self.last < seq:
            ev = self.client.sequenced()
            assert ev.sequence == self.last + 1
            self.books.apply(itch.decode(ev.payload))
            self.last = ev.sequence


def test_md_relogin_from_1_rebuilds_the_same_books(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"exchange": {"flow": {"arrival_rate_per_s": 300.0}}})
    with start_daemon("exchange", cfg) as d:
        order_port, md_port = ports(d)
        early = MdReader(md_port)
        late = MdReader(md_port)
        late.read_until(200)
        late.client.sock.close()  # dropped mid-session
        trader = SoupClient(order_port, "HFTD", "hftd-pass")
        for i in range(1, 30):
            enter(trader, i, "B" if i % 2 else "S", 100 * i, 1_895_000 + (i % 5) * 100)
        target = request_sync(control(d), Depth("AAPL")).result["md_sequence"] + 500
        early.read_until(target)
        # Log in again from 1 and rebuild from nothing.
        relogin = MdReader(md_port)
        assert relogin.client.login.sequence == 1
        relogin.read_until(target)
        assert set(early.books.books) == {"AAPL", "MSFT", "GOOG", "AMZN"}
        for sym, book in early.books.books.items():
            other = relogin.books.books[sym]
            assert other.orders == book.orders, sym
            assert other.depth("B") == book.depth("B") and other.depth("S") == book.depth("S")
            assert book.orders, f"{sym}: empty book proves nothing"
        # And both equal the venue's own book at a common sequence number.
        for sym in early.books.books:
            depth = request_sync(control(d), Depth(sym)).result
            want = {int(k): tuple(v) for k, v in depth["orders"].items()}
            for reader in (early, relogin):
                reader.read_until(depth["md_sequence"])
                assert reader.books.books[sym].orders == want
                assert [list(x) for x in reader.books.books[sym].depth("B")] == depth["bids"]
                assert [list(x) for x in reader.books.books[sym].depth("S")] == depth["asks"]


def _wait_log(d: Daemon, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in d.log:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{d.log}"
        time.sleep(0.02)


def test_sighup_reload(tmp_path: Path) -> None:
    import signal

    cfg = make_config(tmp_path)
    good = cfg.read_text()
    with start_daemon("exchange", cfg) as d:
        cfg.write_text(good.replace("cancel_ratio = 0.3", "cancel_ratio = 9"))
        d.proc.send_signal(signal.SIGHUP)
        _wait_log(d, "reload refused, config unchanged")
        assert "exchange.flow.cancel_ratio" in d.log
        cfg.write_text(good.replace('session = "HFTD000001"', 'session = "OTHER"'))
        d.proc.send_signal(signal.SIGHUP)
        _wait_log(d, "these changes need a restart: exchange.session")
        cfg.write_text(good.replace("cancel_ratio = 0.3", "cancel_ratio = 0.5"))
        d.proc.send_signal(signal.SIGHUP)
        _wait_log(d, "reloaded: exchange.flow.cancel_ratio")
        assert d.proc.poll() is None
        assert request_sync(control(d), Status()).result["state"] == "running"
