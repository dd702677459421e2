"""A SIGKILLed exchange comes back with the same books and byte-identical streams."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hftd.config import load_config
from hftd.ipc.control import request_sync
from hftd.msg.control import Depth, Snapshot
from hftd.runtime.days import exchange_journal_path
from hftd.runtime.journal import read_all
from hftd.wire import ouch
from tests.support import Daemon, SoupClient, make_config, start_daemon, status, wait_for

pytestmark = pytest.mark.integration


def control(d: Daemon) -> Path:
    return Path(d.config["system"]["run_dir"]) / "exchange.sock"


def ports(d: Daemon) -> tuple[int, int]:
    ex = d.config["exchange"]
    return ex["order_port"], ex["md_port"]


def drain(c: SoupClient, into: list[bytes], quiet: float = 0.3) -> None:
    """Read sequenced payloads until none arrive for `quiet` seconds."""
    while True:
        try:
            ev = c.sequenced(timeout=quiet)
        except TimeoutError:
            return
        assert ev.sequence == len(into) + 1
        into.append(bytes(ev.payload))


def read(c: SoupClient, n: int, timeout: float = 20.0) -> list[bytes]:
    """Sequenced payloads 1..n (the client logged in from 1), within `timeout`."""
    deadline = time.monotonic() + timeout
    out: list[bytes] = []
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"only {len(out)} of {n} sequenced messages in {timeout} s")
        ev = c.next_event(timeout=left)
        if isinstance(ev, c.soup.SequencedData):
            assert ev.sequence == len(out) + 1
            out.append(bytes(ev.payload))
    return out


def snapshot(d: Daemon, user: str = "HFTD") -> Any:
    reply = request_sync(control(d), Snapshot(user))
    assert reply.ok, reply.error
    return reply.result


def test_sigkilled_exchange_restarts_with_identical_streams(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, {"exchange": {"flow": {"arrival_rate_per_s": 150.0, "marketable_ratio": 0.2}}}
    )
    with start_daemon("exchange", cfg) as before:
        journal = exchange_journal_path(load_config(cfg))
        order_port, md_port = ports(before)
        md = SoupClient(md_port, "FEED", "feed", sequence=1)  # an md user
        trader = SoupClient(order_port, "HFTD", "hftd-pass", sequence=1)
        got: list[bytes] = []
        for i in range(30):  # trade against the flow: takers, makers, replaces, cancels
            ref = i + 1
            if i % 3 == 0:
                msg: ouch.Inbound = ouch.EnterOrder(
                    ref, "B" if i % 2 else "S", 300, "AAPL", ouch.MARKET_PRICE, ouch.TIF_IOC
                )
            elif i % 3 == 1:
                msg = ouch.EnterOrder(ref, "B" if i % 2 else "S", 200, "MSFT", 4_152_000)
            else:
                msg = ouch.ReplaceOrder(ref - 1, ref, 100, 4_151_000 if i % 2 else 4_153_000)
            trader.send_unsequenced(ouch.encode_inbound(msg))
            time.sleep(0.02)
        drain(trader, got)
        # Nothing of ours may rest: the flow keeps trading until the kill.
        while opens := snapshot(before)["open_orders"]:
            for o in opens:
                trader.send_unsequenced(ouch.encode_inbound(ouch.CancelOrder(o["user_ref"])))
            drain(trader, got)
        drain(trader, got)
        snap = snapshot(before)
        assert snap["next_sequence"] == len(got) + 1
        kinds = {ouch.decode_outbound(m).__class__.__name__ for m in got}
        assert {"Accepted", "Executed", "Canceled"} <= kinds, kinds
        assert snap["fills"], "no fills proves little"
        # The flow never stops: read what the venue had published a moment ago.
        md_before = read(md, request_sync(control(before), Depth("AAPL")).result["md_sequence"])
        time.sleep(0.3)  # more flow after what the clients read
        assert journal.stat().st_size > 0
        before.proc.kill()
        before.proc.wait(5)
    size = journal.stat().st_size
    assert len(md_before) > 300

    with start_daemon("exchange", cfg) as after:
        assert "replayed" in after.log and "records" in after.log
        # The trader re-logs in from 1: byte-identical replies, then nothing new.
        again = SoupClient(order_port, "HFTD", "hftd-pass", sequence=1)
        assert read(again, len(got)) == got
        assert snapshot(after) == snap
        rest: list[bytes] = []
        drain(again, rest)
        assert rest == []
        # Market data from 1: the prefix the client had, byte for byte, and it goes on.
        md_again = SoupClient(md_port, "FEED", "feed", sequence=1)
        assert read(md_again, len(md_before)) == md_before
        seq = request_sync(control(after), Depth("AAPL")).result["md_sequence"]
        assert seq > len(md_before)
        assert journal.stat().st_size > size  # journaling went on from the replayed state


def test_restart_of_a_quiet_exchange_keeps_resting_orders(tmp_path: Path) -> None:
    """SIGKILL, twice: books, snapshots and order references carry across restarts."""
    cfg = make_config(tmp_path, {"exchange": {"flow": {"enabled": False}}})
    replies: list[bytes] = []
    with start_daemon("exchange", cfg) as d:
        order_port, _ = ports(d)
        c = SoupClient(order_port, "TEST", "test-pass")
        c.send_unsequenced(ouch.encode_inbound(ouch.EnterOrder(1, "S", 500, "AAPL", 1_900_000)))
        drain(c, replies)
        depth = request_sync(control(d), Depth("AAPL")).result
        d.proc.kill()
        d.proc.wait(5)
    for _ in range(2):
        with start_daemon("exchange", cfg) as d:
            assert request_sync(control(d), Depth("AAPL")).result == depth
            d.proc.kill()
            d.proc.wait(5)
    with start_daemon("exchange", cfg) as d:
        c = SoupClient(order_port, "HFTD", "hftd-pass")
        c.send_unsequenced(ouch.encode_inbound(ouch.EnterOrder(1, "B", 200, "AAPL", 1_900_000)))
        mine: list[bytes] = []
        drain(c, mine)
        accepted, executed = (ouch.decode_outbound(m) for m in mine[1:])
        assert isinstance(executed, ouch.Executed) and executed.quantity == 200
        assert isinstance(accepted, ouch.Accepted) and accepted.order_ref == 2
        t = SoupClient(order_port, "TEST", "test-pass", sequence=1)
        theirs: list[bytes] = []
        drain(t, theirs)
        assert theirs[: len(replies)] == replies
        (fill,) = (ouch.decode_outbound(m) for m in theirs[len(replies) :])
        assert isinstance(fill, ouch.Executed) and fill.liquidity_flag == "A"


def test_sigkilled_exchange_restarts_from_its_checkpoint(tmp_path: Path) -> None:
    """The restart loads the venue's latest checkpoint and replays only the journal after
    it: the same streams from sequence 1, byte for byte, as without a checkpoint."""
    cfg = make_config(
        tmp_path,
        {
            "exchange": {
                "flow": {"arrival_rate_per_s": 150.0, "marketable_ratio": 0.2},
                "checkpoint_interval_s": 0.3,
            }
        },
    )
    with start_daemon("exchange", cfg) as before:
        journal = exchange_journal_path(load_config(cfg))
        order_port, md_port = ports(before)
        trader = SoupClient(order_port, "HFTD", "hftd-pass", sequence=1)
        for ref in range(1, 21):
            side = "B" if ref % 2 else "S"
            trader.send_unsequenced(
                ouch.encode_inbound(
                    ouch.EnterOrder(ref, side, 200, "AAPL", ouch.MARKET_PRICE, ouch.TIF_IOC)
                )
            )
        got: list[bytes] = []
        drain(trader, got)
        first = wait_for(
            lambda: status(before, "exchange")["checkpoints"] >= 2, 20, "two checkpoints"
        )
        assert first
        time.sleep(0.1)  # flow after the checkpoint: the restart replays it
        md = SoupClient(md_port, "FEED", "feed", sequence=1)
        md_before = read(md, request_sync(control(before), Depth("AAPL")).result["md_sequence"])
        snap = snapshot(before)
        assert snap["fills"] and snap["next_sequence"] == len(got) + 1
        before.proc.kill()
        before.proc.wait(5)
    records = len(read_all(journal)[0])
    with start_daemon("exchange", cfg) as after:
        st = status(after, "exchange")
        assert 0 < st["journal_checkpoint"] < records, st
        assert st["journal_checkpoint"] + st["journal_replayed"] == records
        assert "from its checkpoint of" in after.log
        again = SoupClient(order_port, "HFTD", "hftd-pass", sequence=1)
        assert read(again, len(got)) == got
        assert snapshot(after) == snap
        md_again = SoupClient(md_port, "FEED", "feed", sequence=1)
        assert read(md_again, len(md_before)) == md_before
        # A clean stop checkpoints what is left: the next start replays nothing.
        after.stop()
    assert "written at stop" in after.log
    with start_daemon("exchange", cfg) as third:
        st = status(third, "exchange")
        assert st["journal_replayed"] == 0 and st["journal_checkpoint"] >= records
        md3 = SoupClient(md_port, "FEED", "feed", sequence=1)
        assert read(md3, len(md_before)) == md_before
