"""Append-only sequenced message logs: in memory, or in files with a small tail in memory.

SoupBinTCP clients may log in from any sequence number of the day, so the
venue keeps every message it has sequenced. Each message is kept as the
SoupBinTCP Sequenced Data packet that carries it (u16 length, ``S``,
payload), so serving a batch is one slice (`frames`), never a join of
re-framed messages.

`SequencedStream()` keeps everything in memory (tests, backtests: ~11 bytes a
message over the payload). `FileStream(directory, name)` keeps the
day's messages in two files and only what was appended since the last
`flush` (at most `FLUSH_BYTES`) in memory, so the process stays the same
size however long the day::

    <name>.data    the packets back to back
    <name>.index   u64 (native order) per message: the end offset of its packet
                   in <name>.data; message n's packet is [index[n-2], index[n-1])

A client catching up from sequence N costs one `pread` of the index and one
of the data per batch (the page cache holds what is recent). The files are
derived state (the exchange's journal is the day's record and rebuilds them),
so they are written without fsync; `sync` makes them durable before a
checkpoint refers to them, and opening them checks a checkpoint's `StreamMeta`
against them (sizes, the last offset, a checksum of the last bytes) before
cutting off whatever followed it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import weakref
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Protocol

import msgspec

FLUSH_BYTES: Final = 1 << 16  # a file-backed stream writes its tail once it holds this much
MAX_PAYLOAD: Final = 65534  # SoupBinTCP: the u16 length counts the type byte too
HEADER: Final = 3  # u16 length + packet type
TAIL_CRC_BYTES: Final = 4096  # what `StreamMeta.tail_crc` covers: the last bytes of the data
_RANGE_CHUNK: Final = 4096  # messages per read in `range`
_HEAD = struct.Struct(">Hc").pack  # a Sequenced Data packet's header
_HEADS = tuple(_HEAD(n + 1, b"S") for n in range(256))  # ... of the usual sizes, made once


def _head(payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a sequenced message of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    return _HEAD(len(payload) + 1, b"S")


_Q = array("Q").itemsize


class StreamError(Exception):
    """A stream's files do not hold what a checkpoint says they hold, or cannot be read."""


class StreamMeta(msgspec.Struct, frozen=True, array_like=True):
    """What a checkpoint records of one file-backed stream: enough to check its files."""

    name: str
    count: int  # messages
    size: int  # bytes of <name>.data
    tail_crc: int  # crc32 of the last TAIL_CRC_BYTES bytes of <name>.data (fewer if shorter)


class SequencedStream:
    """Messages numbered 1, 2, 3, ... in the order they were appended, in memory."""

    __slots__ = (
        "__weakref__",
        "_data_fd",
        "_disk_count",
        "_disk_size",
        "_ends",
        "_index_fd",
        "_tail",
        "name",
    )

    def __init__(self) -> None:
        self.name = ""
        self._tail = bytearray()  # the packets not in a file (here: all of them)
        self._ends = array("Q")  # their end offsets in _tail
        self._disk_count = 0  # messages in the files (`FileStream`)
        self._disk_size = 0  # bytes in the data file
        self._data_fd = self._index_fd = -1

    def append(self, payload: bytes) -> None:
        """Store a message: its sequence number is `len(self)` after this. ValueError if
        it is longer than a SoupBinTCP packet can carry."""
        tail = self._tail
        try:
            tail += _HEADS[len(payload)]
        except IndexError:
            tail += _head(payload)
        tail += payload
        self._ends.append(len(tail))

    # --- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._disk_count + len(self._ends)

    @property
    def next_sequence(self) -> int:
        return len(self) + 1

    @property
    def memory_bytes(self) -> int:
        """What the in-memory part holds (packets and offsets)."""
        return len(self._tail) + len(self._ends) * _Q

    def get(self, seq: int) -> bytes:
        """Message number `seq` (1-based)."""
        if not 1 <= seq <= len(self):
            raise IndexError(f"no message {seq} (have 1..{len(self)})")
        return next(self.range(seq, seq + 1))

    def frames(self, first: int, stop: int) -> bytes:
        """Messages first..stop-1 (clipped to what exists) as SoupBinTCP Sequenced
        Data packets, back to back: what a session sends."""
        first = max(first, 1)
        stop = min(stop, len(self) + 1)
        if first >= stop:
            return b""
        return self._read(self._end(first - 1), self._end(stop - 1))

    def range(self, first: int, stop: int) -> Iterator[bytes]:
        """Messages first..stop-1, clipped to what exists (payloads, unframed)."""
        first = max(first, 1)
        stop = min(stop, len(self) + 1)
        while first < stop:
            upto = min(stop, first + _RANGE_CHUNK)
            ends = self._ends_from(first - 1, upto - 1)
            base = ends[0]
            blob = self._read(base, ends[-1])
            start = 0
            for end in ends[1:]:
                end -= base
                yield blob[start + HEADER : end]
                start = end
            first = upto

    def _end(self, seq: int) -> int:
        """The end offset of message `seq`'s packet (0 for seq 0)."""
        if seq <= 0:
            return 0
        k = seq - self._disk_count
        if k > 0:
            return self._disk_size + self._ends[k - 1]
        end: int = array("Q", _pread_all(self._index_fd, _Q, (seq - 1) * _Q))[0]
        return end

    def _ends_from(self, a: int, b: int) -> list[int]:
        """End offsets of messages a..b (inclusive; message 0 ends at 0)."""
        out: list[int] = []
        if a == 0:
            out.append(0)
            a = 1
        disk = self._disk_count
        if a <= disk:
            upto = min(b, disk)
            out.extend(array("Q", _pread_all(self._index_fd, (upto - a + 1) * _Q, (a - 1) * _Q)))
            a = upto + 1
        if a <= b:
            size = self._disk_size
            out.extend([size + e for e in self._ends[a - 1 - disk : b - disk]])
        return out

    def _read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the stream's packets."""
        disk = self._disk_size
        if start >= disk:
            return bytes(self._tail[start - disk : end - disk])
        if end <= disk:
            return _pread_all(self._data_fd, end - start, start)
        return _pread_all(self._data_fd, disk - start, start) + bytes(self._tail[: end - disk])


class FileStream(SequencedStream):
    """A `SequencedStream` in two files, with what was appended since the last flush
    (at most `FLUSH_BYTES`) in memory (see the module docstring)."""

    __slots__ = ("_finalizer",)

    def __init__(self, directory: Path, name: str, meta: StreamMeta | None = None) -> None:
        """The stream `name` in `directory`, holding what `meta` says (None: empty, a
        new stream); whatever the files hold after that is cut off. Raises StreamError
        if the files do not hold it."""
        super().__init__()
        self.name = name
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        data_fd = os.open(directory / f"{name}.data", flags, 0o640)
        try:
            index_fd = os.open(directory / f"{name}.index", flags, 0o640)
        except BaseException:
            os.close(data_fd)
            raise
        self._data_fd, self._index_fd = data_fd, index_fd
        self._finalizer = weakref.finalize(self, _close_fds, data_fd, index_fd)
        count, size = (meta.count, meta.size) if meta is not None else (0, 0)
        try:
            if meta is not None:
                _check(data_fd, index_fd, meta)
            os.ftruncate(data_fd, size)
            os.ftruncate(index_fd, count * _Q)
        except BaseException:
            self.close()
            raise
        self._disk_count, self._disk_size = count, size

    def append(self, payload: bytes) -> None:
        tail = self._tail
        try:
            tail += _HEADS[len(payload)]
        except IndexError:
            tail += _head(payload)
        tail += payload
        self._ends.append(len(tail))
        if len(tail) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is in memory to the files."""
        ends = self._ends
        if not ends:
            return
        base = self._disk_size
        _write_all(self._data_fd, self._tail)
        _write_all(self._index_fd, array("Q", [base + e for e in ends]).tobytes())
        self._disk_count += len(ends)
        self._disk_size = base + ends[-1]
        self._tail = bytearray()
        self._ends = array("Q")

    def meta(self) -> StreamMeta:
        """What the files hold (flushed first): for a checkpoint."""
        self.flush()
        size = self._disk_size
        start = max(size - TAIL_CRC_BYTES, 0)
        crc = zlib.crc32(_pread_all(self._data_fd, size - start, start)) if size else 0
        return StreamMeta(self.name, self._disk_count, size, crc)

    def sync(self) -> None:
        """Make what was flushed durable (may run in a worker thread while the owner
        appends: it covers at least what was flushed before the call)."""
        os.fsync(self._data_fd)
        os.fsync(self._index_fd)

    def close(self) -> None:
        """Flush and close the files (once)."""
        if self._data_fd < 0:
            return
        try:
            self.flush()
        finally:
            self._finalizer()  # closes the files, once
            self._data_fd = self._index_fd = -1


class StreamStore(Protocol):
    """Where a venue keeps its sequenced streams."""

    def stream(self, name: str) -> SequencedStream:
        """A new stream called `name` (one per name)."""
        ...


class MemoryStore:
    """Every stream in memory (tests, backtests, a venue without a journal)."""

    def stream(self, name: str) -> SequencedStream:
        s = SequencedStream()
        s.name = name
        return s


class FileStore:
    """Every stream in files in `directory`; a stream named in `metas` is opened
    holding what its meta says (a checkpoint's), any other one empty."""

    def __init__(self, directory: Path, metas: dict[str, StreamMeta] | None = None) -> None:
        self.directory = directory
        self.metas = metas or {}
        self.streams: dict[str, FileStream] = {}

    def stream(self, name: str) -> FileStream:
        if name in self.streams:
            raise ValueError(f"stream {name} is open already")
        s = self.streams[name] = FileStream(self.directory, name, self.metas.get(name))
        return s

    def metas_now(self) -> list[StreamMeta]:
        """Each stream's meta, flushed first (for a checkpoint)."""
        return [s.meta() for s in self.streams.values()]

    def sync(self) -> None:
        """fsync every stream's files and the directory (new files' entries)."""
        for s in list(self.streams.values()):
            s.sync()
        _sync_dir(self.directory)

    def close(self) -> None:
        for s in self.streams.values():
            s.close()


def _check(data_fd: int, index_fd: int, meta: StreamMeta) -> None:
    """StreamError unless the files start with what `meta` says."""
    name = meta.name
    have_data, have_index = os.fstat(data_fd).st_size, os.fstat(index_fd).st_size
    if have_data < meta.size or have_index < meta.count * _Q:
        raise StreamError(
            f"stream {name}: files hold {have_index // _Q} messages in {have_data} bytes, "
            f"fewer than {meta.count} in {meta.size}"
        )
    if meta.count:
        last = array("Q", _pread_all(index_fd, _Q, (meta.count - 1) * _Q))[0]
        if last != meta.size:
            raise StreamError(
                f"stream {name}: message {meta.count} ends at byte {last}, not {meta.size}"
            )
    elif meta.size:
        raise StreamError(f"stream {name}: {meta.size} bytes for no message")
    start = max(meta.size - TAIL_CRC_BYTES, 0)
    crc = zlib.crc32(_pread_all(data_fd, meta.size - start, start)) if meta.size else 0
    if crc != meta.tail_crc:
        raise StreamError(f"stream {name}: the last bytes before byte {meta.size} differ")


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, offset + got)
        if not more:
            raise StreamError(f"a stream file ends at byte {offset + got}, before {offset + n}")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
