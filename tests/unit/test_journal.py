"""The append-only journal: framing, fsync policies, torn tails, corruption."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftd.runtime import journal as jmod
from hftd.runtime.journal import (
    HEADER,
    MAX_RECORD,
    Journal,
    JournalCorrupt,
    TornInfo,
    frame,
    read_all,
    scan,
)

PAYLOADS = [b"\x93\x01\x02\x03", b"", b"x" * 300, bytes(range(256)), b"\x00" * 9]


def write(path: Path, payloads: list[bytes], fsync: jmod.FsyncPolicy = "never") -> None:
    with Journal.open(path, fsync) as j:
        for p in payloads:
            j.append(p)


def test_layout_is_locked() -> None:
    assert HEADER.size == struct.calcsize(">II") == 8
    rec = frame(b"abc")
    assert rec[:4] == b"\x00\x00\x00\x03"  # big-endian length
    assert rec[4:8] == struct.pack(">I", zlib.crc32(b"abc", zlib.crc32(rec[:4])))
    assert rec[8:] == b"abc"
    # A zeroed header is never a valid (empty) record: the crc covers the length.
    assert frame(b"") != b"\x00" * 8
    with pytest.raises(ValueError, match="exceeds"):
        frame(b"\x00" * (MAX_RECORD + 1))


def test_round_trip_and_reopen_appends(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write(path, PAYLOADS[:2])
    write(path, PAYLOADS[2:])
    assert read_all(path) == (PAYLOADS, None)
    assert path.stat().st_size == sum(len(p) + 8 for p in PAYLOADS)
    j, records = Journal.recover(path, "never")
    with j:
        assert records == PAYLOADS and j.size == path.stat().st_size and j.records == 0


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert read_all(tmp_path / "nothing") == ([], None)


def test_always_syncs_every_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(jmod.os, "fdatasync", synced.append)
    j = Journal.open(tmp_path / "j", "always")
    for p in PAYLOADS:
        j.append(p)
    assert len(synced) == len(PAYLOADS) == j.syncs
    assert j.maybe_sync() is False  # nothing left to sync
    j.close()
    assert read_all(tmp_path / "j") == (PAYLOADS, None)


def test_batch_writes_through_and_syncs_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(jmod.os, "fdatasync", synced.append)
    now = [100.0]
    monkeypatch.setattr(jmod.time, "monotonic", lambda: now[0])
    path = tmp_path / "j"
    j = Journal.open(path, "batch", batch_interval_s=0.5)
    j.append(b"one")
    # Written to the OS at once (no Python buffering): another reader sees it.
    assert read_all(path) == ([b"one"], None)
    assert not j.sync_due() and not synced and j.maybe_sync() is False  # interval not yet over
    now[0] += 0.5
    assert j.sync_due()
    assert j.maybe_sync() is True and len(synced) == 1
    now[0] += 10
    assert not j.sync_due() and j.maybe_sync() is False  # nothing new to sync
    j.append(b"two")
    j.append(b"three")
    assert j.maybe_sync() is True and len(synced) == 2  # the interval is long over
    j.append(b"four")
    j.sync()  # forced
    assert len(synced) == 3
    j.close()
    assert read_all(path) == ([b"one", b"two", b"three", b"four"], None)


def test_never_does_not_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(fd: int) -> None:
        raise AssertionError("synced")

    monkeypatch.setattr(jmod.os, "fdatasync", fail)
    monkeypatch.setattr(jmod.os, "fsync", fail)
    path = tmp_path / "j"
    with Journal.open(path, "never", batch_interval_s=0.0) as j:
        j.append(b"a")
        assert j.maybe_sync() is False
        j.sync()  # nothing dirty under "never"
    assert read_all(path) == ([b"a"], None)


def test_deferred_appends_wait_for_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: deferred records reach the file only at `commit()`, all in one
    write (and, under "always", one fdatasync), in order; a process killed before
    the commit leaves the file as it was: whole records only."""
    path = tmp_path / "j"
    writes: list[int] = []
    synced: list[int] = []
    real_write = os.write
    monkeypatch.setattr(jmod.os, "fdatasync", synced.append)

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(jmod.os, "write", counting_write)
    j = Journal.open(path, "always")
    j.append(b"before")  # not deferred: written at once
    assert read_all(path) == ([b"before"], None) and len(writes) == 1
    j.deferred = True
    for p in PAYLOADS:
        j.append(p)
    assert read_all(path) == ([b"before"], None)  # nothing written yet
    assert len(writes) == 1 and len(synced) == 1
    assert j.size == sum(len(p) + 8 for p in [b"before", *PAYLOADS])  # the logical end
    j.commit()
    assert len(writes) == 2 and len(synced) == 2  # one write, one sync for the group
    assert read_all(path) == ([b"before", *PAYLOADS], None)
    j.commit()  # nothing pending: no write
    assert len(writes) == 2
    j.append(b"last")
    ref = j.last_record()  # commits first: the reference is in the file
    assert ref is not None and ref.end == path.stat().st_size == j.size
    j.append(b"at close")
    j.close()
    assert read_all(path) == ([b"before", *PAYLOADS, b"last", b"at close"], None)


def test_unknown_policy_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync policy"):
        Journal.open(tmp_path / "j", "sometimes")  # type: ignore[arg-type]


def _whole(payloads: list[bytes]) -> bytes:
    return b"".join(frame(p) for p in payloads)


@pytest.mark.parametrize("last", [b"", b"\x01", b"last record payload " * 3])
def test_truncation_at_every_offset_of_the_last_record(last: bytes) -> None:
    head = [b"first", b"\x92\x01\xa3abc", b"x" * 40]
    good = _whole(head)
    data = good + frame(last)
    for cut in range(len(good), len(data)):
        records, end, torn = scan(data[:cut])
        assert records == head, cut
        assert end == len(good)
        if cut == len(good):
            assert torn is None
        else:
            assert torn is not None and torn.offset == len(good), cut
            assert torn.discarded == cut - len(good)
            assert torn.reason == ("short header" if cut - len(good) < 8 else "short payload")
    assert scan(data) == ([*head, last], len(data), None)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=8),
    data=st.data(),
)
def test_any_truncation_gives_the_whole_records_before_it(
    payloads: list[bytes], data: st.DataObject
) -> None:
    blob = _whole(payloads)
    cut = data.draw(st.integers(0, len(blob)))
    records, end, torn = scan(blob[:cut])
    ends = [0]
    for p in payloads:
        ends.append(ends[-1] + 8 + len(p))
    whole = max(i for i, e in enumerate(ends) if e <= cut)
    assert records == payloads[:whole]
    assert end == ends[whole]
    assert (torn is None) == (cut == ends[whole])


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_bit_flip_anywhere_in_the_last_record_discards_it() -> None:
    head = [b"alpha", b"beta" * 5]
    good = _whole(head)
    data = good + frame(b"the last one")
    for bit in range(len(good) * 8, len(data) * 8):
        records, _, torn = scan(_flip(data, bit))
        assert records == head, bit
        assert torn is not None and torn.offset == len(good), bit
        assert torn.reason in ("bad crc", "bad length", "short payload"), torn


def test_bit_flip_in_the_middle_is_corruption() -> None:
    payloads = [b"one", b"two" * 4, b"three", b"four"]
    data = _whole(payloads)
    second = len(frame(payloads[0]))
    third = second + len(frame(payloads[1]))
    for bit in range(second * 8, third * 8):  # every bit of the second record
        with pytest.raises(JournalCorrupt) as info:
            scan(_flip(data, bit), "j")
        assert info.value.offset == second, bit
        assert "valid record follows" in str(info.value)


def test_read_all_raises_for_middle_corruption(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(_flip(_whole([b"aaaa", b"bbbb", b"cccc"]), 9 * 8))  # first payload
    with pytest.raises(JournalCorrupt, match="corrupt at byte 0"):
        read_all(path)
    with pytest.raises(JournalCorrupt):
        Journal.open(path, "never")
    assert path.stat().st_size == 36  # refused, untouched


def test_zeroed_tail_after_power_loss_is_torn_not_corrupt() -> None:
    head = [b"a", b"b"]
    data = _whole(head) + b"\x00" * 64  # extended but never written
    records, _, torn = scan(data)
    assert records == head and torn == TornInfo(len(_whole(head)), "bad crc", 64)


def test_reopen_after_torn_tail_truncates_and_appends_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j"
    write(path, [b"one", b"two"])
    good = path.stat().st_size
    with open(path, "ab") as f:
        f.write(frame(b"three, torn")[:-3])
    records, torn = read_all(path)
    assert records == [b"one", b"two"]
    assert torn == TornInfo(good, "short payload", len(frame(b"three, torn")) - 3)
    with caplog.at_level(logging.WARNING, logger="hftd.journal"):
        j, got = Journal.recover(path, "batch")
    assert got == [b"one", b"two"]
    assert f"torn tail at byte {good}" in caplog.text
    assert path.stat().st_size == good == j.size
    with j:
        j.append(b"four")
    assert read_all(path) == ([b"one", b"two", b"four"], None)


def test_new_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "j"
    old = os.umask(0o022)
    try:
        write(path, [b"x"])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
