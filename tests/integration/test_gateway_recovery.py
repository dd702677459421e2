"""The gateway's journal: a torn tail is discarded, the rest replayed exactly,
and what the journal lost is completed from the venue by sequence number."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from hftd.config import load_config
from hftd.msg.control import Halt, Pause, Resume, Snapshot
from hftd.runtime.days import gateway_journal_path
from hftd.runtime.journal import read_all
from tests.integration.test_trading import trading_config
from tests.support import ask, assert_gateway_matches_venue, start_daemon, status, wait_for

pytestmark = pytest.mark.integration


def record_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos + 8 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        starts.append(pos)
        pos += 8 + n
    return starts


def test_truncated_journal_recovers_exactly(tmp_path: Path) -> None:
    cfg = trading_config(tmp_path)
    with start_daemon("exchange", cfg) as ex, start_daemon("feed", cfg):
        journal = gateway_journal_path(load_config(cfg))  # the day the exchange opened
        with start_daemon("gateway", cfg) as gw:
            with start_daemon("strategy", cfg):
                wait_for(lambda: status(gw, "gateway")["fills"] >= 30, 120, "fills")
            wait_for(lambda: not status(gw, "gateway")["working"], 10, "working cancelled")
            before = status(gw, "gateway")
            gw.proc.kill()
            gw.proc.wait(10)
        data = journal.read_bytes()
        records, torn = read_all(journal)
        assert torn is None and len(records) > 60
        starts = record_starts(data)
        cut = starts[len(starts) * 2 // 3] + 5  # in the middle of a record's header/payload
        journal.write_bytes(data[:cut])
        kept = len(starts) * 2 // 3
        with start_daemon("gateway", cfg) as gw2:
            after = status(gw2, "gateway")
            log = gw2.log
            assert "torn tail" in log
            assert f"journal: {kept} records replayed" in log
            assert "reconciled with the venue" in log and "mismatch" not in log
            assert after["mode"] == "active"
            snap = ask(ex, "exchange", Snapshot("HFTD"))
            assert_gateway_matches_venue(after, snap)
            assert after["positions"]["realized"] == before["positions"]["realized"]
            assert after["fills"] == len(snap["fills"]) == before["fills"]
            assert after["venue_seq"] == before["venue_seq"]
            assert not after["working"] and not snap["open_orders"]


def test_a_halted_gateway_killed_and_restarted_is_still_halted(tmp_path: Path) -> None:
    """The kill switch survives a crash (and a reboot): the restarted gateway replays
    its journal's halt and refuses new orders until the operator resumes."""
    cfg = trading_config(tmp_path)
    with start_daemon("exchange", cfg), start_daemon("feed", cfg):
        with start_daemon("gateway", cfg) as gw:
            assert ask(gw, "gateway", Halt())["mode"] == "halted"
            gw.proc.kill()
            gw.proc.wait(10)
        with start_daemon("gateway", cfg) as gw2:
            assert status(gw2, "gateway")["mode"] == "halted"
            assert "the gateway was left halted" in gw2.log
            assert ask(gw2, "gateway", Resume())["mode"] == "active"


def test_a_corrupt_journal_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Damage in the middle of the journal cannot be mended by restarting: the gateway
    refuses (exit 2, not restarted in a loop) naming the journal and the runbook."""
    cfg = trading_config(tmp_path)
    with start_daemon("exchange", cfg), start_daemon("feed", cfg):
        journal = gateway_journal_path(load_config(cfg))
        with start_daemon("gateway", cfg) as gw:
            ask(gw, "gateway", Pause())
            ask(gw, "gateway", Resume())
            ask(gw, "gateway", Pause())
        data = bytearray(journal.read_bytes())
        starts = record_starts(bytes(data))
        assert len(starts) >= 3
        data[starts[1] + 9] ^= 0xFF  # a payload byte of a record with records after it
        journal.write_bytes(bytes(data))
        with pytest.raises(RuntimeError) as err, start_daemon("gateway", cfg, ready_timeout=30):
            pass
        assert "cannot replay the journal" in str(err.value)
        assert "Traceback" not in str(err.value)
