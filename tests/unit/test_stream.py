"""Sequenced streams: in memory or in files, the same messages from any sequence number;
a file-backed one keeps the process's heap flat however many it holds."""

from __future__ import annotations

import gc
import os
import random
import tracemalloc
from pathlib import Path

import pytest

from hftd.exchange import stream as st
from hftd.exchange.stream import FileStore, FileStream, SequencedStream, StreamError
from hftd.wire import soupbintcp as soup


def messages(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice((0, 1, 19, 36, 40, 50, 300, 3000))) for _ in range(n)]


def check_same(s: SequencedStream, msgs: list[bytes], rng: random.Random) -> None:
    n = len(msgs)
    assert len(s) == n and s.next_sequence == n + 1
    assert list(s.range(1, n + 1)) == msgs
    assert list(s.range(-5, n + 10)) == msgs  # clipped
    assert s.frames(1, n + 1) == b"".join(map(soup.sequenced, msgs))
    for _ in range(60):
        a = rng.randint(1, n)
        b = rng.randint(a, n + 1)
        assert list(s.range(a, b)) == msgs[a - 1 : b - 1]
        assert s.frames(a, b) == b"".join(map(soup.sequenced, msgs[a - 1 : b - 1]))
        assert s.get(a) == msgs[a - 1]
    assert s.frames(n + 1, n + 5) == b"" and list(s.range(n + 1, n + 5)) == []
    with pytest.raises(IndexError):
        s.get(n + 1)
    with pytest.raises(IndexError):
        s.get(0)


def test_memory_and_file_streams_hold_the_same_messages(tmp_path: Path) -> None:
    rng = random.Random(7)
    msgs = messages(20_000)
    mem, disk = SequencedStream(), FileStream(tmp_path, "s")
    for i, m in enumerate(msgs, 1):
        mem.append(m)
        disk.append(m)
        if i in (1, 2, 777, 5000, 19_999):  # reads between writes, across flushes
            check_same(mem, msgs[:i], rng)
            check_same(disk, msgs[:i], rng)
    check_same(mem, msgs, rng)
    check_same(disk, msgs, rng)
    assert disk.memory_bytes < st.FLUSH_BYTES + 4000 + 8 * 1000 < mem.memory_bytes
    disk.close()


def test_a_file_stream_reopens_as_its_meta_says_and_drops_the_rest(tmp_path: Path) -> None:
    msgs = messages(9000, seed=2)
    s = FileStream(tmp_path, "md")
    for m in msgs[:6000]:
        s.append(m)
    meta = s.meta()  # flushes
    assert (meta.name, meta.count) == ("md", 6000)
    for m in msgs[6000:]:  # appended after the checkpoint, some of it flushed
        s.append(m)
    s.flush()
    s.close()
    again = FileStream(tmp_path, "md", meta)
    assert (tmp_path / "md.data").stat().st_size == meta.size
    assert (tmp_path / "md.index").stat().st_size == 8 * 6000
    check_same(again, msgs[:6000], random.Random(1))
    for m in msgs[6000:]:
        again.append(m)
    check_same(again, msgs, random.Random(2))
    again.close()


@pytest.mark.parametrize("damage", ["data short", "index short", "last offset", "tail bytes"])
def test_a_file_stream_refuses_files_that_do_not_hold_its_meta(tmp_path: Path, damage: str) -> None:
    s = FileStream(tmp_path, "x")
    for m in messages(3000, seed=3):
        s.append(m)
    meta = s.meta()
    s.close()
    data, index = tmp_path / "x.data", tmp_path / "x.index"
    if damage == "data short":
        os.truncate(data, meta.size - 1)
    elif damage == "index short":
        os.truncate(index, 8 * meta.count - 8)
    elif damage == "last offset":
        raw = bytearray(index.read_bytes())
        raw[-8] ^= 1
        index.write_bytes(bytes(raw))
    else:
        raw = bytearray(data.read_bytes())
        raw[-10] ^= 1
        data.write_bytes(bytes(raw))
    with pytest.raises(StreamError):
        FileStream(tmp_path, "x", meta)


def test_a_message_longer_than_a_packet_is_refused(tmp_path: Path) -> None:
    for s in (SequencedStream(), FileStream(tmp_path, "big")):
        s.append(b"x" * st.MAX_PAYLOAD)
        with pytest.raises(ValueError, match="65535 bytes"):
            s.append(b"x" * (st.MAX_PAYLOAD + 1))
        assert len(s) == 1 and s.get(1) == b"x" * st.MAX_PAYLOAD


def test_a_file_store_names_its_streams_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.stream("a").append(b"1")
    with pytest.raises(ValueError, match="open already"):
        store.stream("a")
    store.sync()
    assert [m.count for m in store.metas_now()] == [1]
    store.close()


def heap_growth(append: object, n: int) -> int:
    """Bytes the traced Python heap grew by while `append` took n ITCH-sized messages."""
    assert callable(append)
    msg = bytes(range(36))
    for _ in range(2 * st.FLUSH_BYTES // len(msg)):  # warm up: the tail filled once
        append(msg)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            append(msg)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_file_stream_keeps_the_heap_flat(tmp_path: Path) -> None:
    """The day's streams were the exchange's memory growth (+53 MB/h at raised flow):
    a file-backed stream holds at most FLUSH_BYTES of messages (and their offsets) in
    memory however many it took; an in-memory one grows with every message."""
    n = 300_000  # ~12 MB of packets
    s = FileStream(tmp_path, "md")
    grown = heap_growth(s.append, n)
    assert grown < st.FLUSH_BYTES + 64 * 1024, grown  # the tail, its offsets, slack
    assert len(s) > n and (tmp_path / "md.data").stat().st_size > 11_000_000
    s.close()
    assert heap_growth(SequencedStream().append, n) > 10_000_000  # what it was
