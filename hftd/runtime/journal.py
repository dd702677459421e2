"""An append-only journal file of checksummed records (single writer).

The gateway journals every order sent and execution received, the exchange
simulator every input to its venue, *before* acting on it; a restarted
process replays the records to rebuild its state.

Record layout (big-endian; the payload is opaque, msgpack by convention)::

    0        4        8                     8 + length
    +--------+--------+---------------------+
    | length | crc32  | payload             |
    |  u32   |  u32   | `length` bytes      |
    +--------+--------+---------------------+

    crc32 = zlib.crc32(length field bytes + payload)

The checksum covers the length field too, so a header of zeros (what a file
extended but not yet written holds after a power loss) is never a valid
record. A file is records back to back, nothing else.

Reading (`read_all`, `recover`):
- every whole record with a good checksum is returned, in order;
- a damaged tail (short header, short payload, bad length or bad checksum,
  with no valid record after it) is what an interrupted append leaves: it is
  discarded, never misread, and reported as `TornInfo(offset, reason)`;
- a damaged record *followed by a valid one* cannot come from an interrupted
  append: that is corruption and raises `JournalCorrupt(offset)` rather than
  silently skipping a record that was acted upon.

Durability of `append` (the record is handed to the OS with one `os.write`,
never buffered in Python, so a killed process never loses an appended record;
with `deferred` set, records wait in a list until `commit()` writes them all
with one `os.write`: the owner commits before anything acts on them, so a
killed process loses only records nothing saw the effect of):
- ``always``: fdatasync after every append (survives power loss per record);
- ``batch``: fdatasync at most every `batch_interval_s`, done by `maybe_sync()`
  or `sync()` which the owner calls (a timer; `sync()` may run in a worker
  thread while `append` runs in the owner's);
- ``never``: the OS decides (survives a process crash, not a power loss).
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import msgspec

from hftd.runtime.rundir import RunLock

FsyncPolicy = Literal["always", "batch", "never"]
FSYNC_POLICIES: Final = ("always", "batch", "never")

HEADER: Final = struct.Struct(">II")  # length, crc32
LENGTH: Final = struct.Struct(">I")
MAX_RECORD: Final = 1 << 24  # payload bytes; a larger length field is damage

log = logging.getLogger("hftd.journal")


class JournalCorrupt(Exception):
    """A damaged record with valid records after it: not a torn tail."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"journal {path} is corrupt at byte {offset} ({reason}) with valid records "
            "after it; refusing to skip a record that was acted upon"
        )


class TornInfo(msgspec.Struct, frozen=True):
    """A damaged tail that was discarded: where it started and why."""

    offset: int  # the end of the last whole record = where the damage starts
    reason: str  # "short header", "short payload", "bad length", "bad crc"
    discarded: int  # bytes from `offset` to the end of the file


class RecordRef(msgspec.Struct, frozen=True, array_like=True):
    """Where one record is in a journal, and its header: enough to check that a
    journal still holds it there (`Journal.recover(after=...)`)."""

    offset: int
    length: int  # of the payload
    crc: int

    @property
    def end(self) -> int:
        return self.offset + HEADER.size + self.length


def frame(payload: bytes) -> bytes:
    """One record: header + payload."""
    n = len(payload)
    if n > MAX_RECORD:
        raise ValueError(f"journal record of {n} bytes exceeds {MAX_RECORD}")
    length = LENGTH.pack(n)
    return length + LENGTH.pack(zlib.crc32(payload, zlib.crc32(length))) + payload


def _record_at(buf: memoryview, off: int) -> tuple[int, str]:
    """(end offset, "") of a valid record at `off`, or (-1, why not)."""
    end = len(buf)
    if end - off < HEADER.size:
        return -1, "short header"
    length, crc = HEADER.unpack_from(buf, off)
    if length > MAX_RECORD:
        return -1, "bad length"
    stop = off + HEADER.size + length
    if stop > end:
        return -1, "short payload"
    if zlib.crc32(buf[off + HEADER.size : stop], zlib.crc32(buf[off : off + 4])) != crc:
        return -1, "bad crc"
    return stop, ""


def _valid_after(buf: memoryview, off: int) -> int:
    """Offset of a valid record starting after `off`, or -1 (error path only)."""
    if len(buf) - off >= HEADER.size:  # where the next one is if only the payload is bad
        length: int = LENGTH.unpack_from(buf, off)[0]
        natural = off + HEADER.size + length
        if length <= MAX_RECORD and _record_at(buf, natural)[0] >= 0:
            return natural
    for p in range(off + 1, len(buf) - HEADER.size + 1):
        if _record_at(buf, p)[0] >= 0:
            return p
    return -1


def scan(
    data: bytes, path: str = "<journal>", base: int = 0
) -> tuple[list[bytes], int, TornInfo | None]:
    """(payloads, end of the last whole record, torn tail) of a journal's bytes; `base`:
    where in the file `data` starts (offsets are reported in the file)."""
    buf = memoryview(data)
    records: list[bytes] = []
    off, end = 0, len(buf)
    hs = HEADER.size
    unpack, crc32 = HEADER.unpack_from, zlib.crc32
    while off < end:
        # Fast path inline; `_record_at` says why a record is bad.
        if end - off >= hs:
            length, crc = unpack(buf, off)
            stop = off + hs + length
            if (
                length <= MAX_RECORD
                and stop <= end
                and crc32(buf[off + hs : stop], crc32(buf[off : off + 4])) == crc
            ):
                records.append(bytes(buf[off + hs : stop]))
                off = stop
                continue
        _, reason = _record_at(buf, off)
        later = _valid_after(buf, off)
        if later >= 0:
            raise JournalCorrupt(
                path, base + off, f"{reason}; a valid record follows at byte {base + later}"
            )
        return records, base + off, TornInfo(base + off, reason, end - off)
    return records, base + off, None


def read_all(path: str | os.PathLike[str]) -> tuple[list[bytes], TornInfo | None]:
    """Every whole record of a journal and its torn tail, if any (file unchanged).

    A missing file reads as empty. Raises JournalCorrupt for damage in the middle.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], None
    records, _, torn = scan(data, str(path))
    return records, torn


class Journal:
    """An open journal, appending records durably per its fsync policy."""

    def __init__(
        self, path: Path, fd: int, fsync: FsyncPolicy, batch_interval_s: float, size: int
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.path = path
        self.fsync = fsync
        self.batch_interval_s = batch_interval_s
        self.size = size  # bytes in the file = end of the last record
        self.records = 0  # appended since open
        self.syncs = 0
        self.torn: TornInfo | None = None  # what `recover` cut off, if anything
        self.lock: RunLock | None = None  # `recover`'s writer lock, released by close()
        self._fd = fd
        self._dirty = False
        self._last_sync = time.monotonic()
        self._last_frame = b""  # the last record appended (or read), framed
        self._before: RecordRef | None = None  # the last record when nothing was read
        # Group commit: with `deferred`, `append` frames into `_pending` and
        # `commit` writes them in one syscall. The gateway's hot loop commits before
        # each send and ring write: one write per pass instead of one per record
        # (an os.write per record was a quarter of the hot thread at 22k orders/s).
        self.deferred = False
        self._pending: list[bytes] = []

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        fsync: FsyncPolicy = "batch",
        batch_interval_s: float = 0.1,
    ) -> Journal:
        """Open (or create) `path` for appending, after cutting off a torn tail."""
        journal, _ = cls.recover(path, fsync, batch_interval_s)
        return journal

    @classmethod
    def recover(
        cls,
        path: str | os.PathLike[str],
        fsync: FsyncPolicy = "batch",
        batch_interval_s: float = 0.1,
        *,
        after: RecordRef | None = None,
    ) -> tuple[Journal, list[bytes]]:
        """Open `path` for appending and return the records already in it (with
        `after`: only those after that record, a checkpoint's position).

        A torn tail is truncated away (and logged) so that new records follow
        the last whole one. Raises JournalCorrupt for damage in the middle, and
        ValueError if the journal does not hold `after` where it says.
        """
        p = Path(path)
        # One writer per journal, for its life: two systems sharing a journal
        # dir (or a second copy of a daemon) would interleave their records.
        lock = RunLock(
            p.parent,
            p.name,
            busy=f"journal {p} is already in use",
            hint="only one daemon may write a journal: is another system using the same "
            "system.journal_dir?",
        )
        lock.acquire()
        created = not p.exists()
        try:
            fd = os.open(
                p, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
            )
        except BaseException:
            lock.release()
            raise
        try:
            start = 0
            if after is not None:
                head = os.pread(fd, HEADER.size, after.offset)
                if len(head) < HEADER.size or HEADER.unpack(head) != (after.length, after.crc):
                    raise ValueError(
                        f"journal {p} does not hold the record {after.length} bytes long "
                        f"with crc {after.crc:#010x} at byte {after.offset}"
                    )
                start = after.end
                if os.fstat(fd).st_size < start:
                    raise ValueError(f"journal {p} ends before byte {start}")
            with os.fdopen(os.dup(fd), "rb") as f:
                f.seek(start)
                data = f.read()
            records, good, torn = scan(data, str(p), start)
            if torn is not None:
                log.warning(
                    "journal %s: torn tail at byte %d (%s): discarded %d bytes after %d records",
                    p,
                    torn.offset,
                    torn.reason,
                    torn.discarded,
                    len(records),
                )
                os.ftruncate(fd, good)
                if fsync != "never":
                    os.fsync(fd)
            if created and fsync != "never":
                _sync_dir(p.parent)
        except BaseException:
            os.close(fd)
            lock.release()
            raise
        journal = cls(p, fd, fsync, batch_interval_s, good)
        journal.torn = torn
        journal.lock = lock
        if records:
            journal._last_frame = frame(records[-1])
        else:
            journal._before = after
        return journal, records

    def last_record(self) -> RecordRef | None:
        """The last record in the file (None: none, or none known)."""
        self.commit()
        rec = self._last_frame
        if not rec:
            return self._before
        length, crc = HEADER.unpack_from(rec)
        return RecordRef(self.size - len(rec), length, crc)

    # --- writing -------------------------------------------------------------------

    def append(self, payload: bytes) -> None:
        """Append one record; on return it is as durable as the policy promises
        (`deferred`: once `commit()` has returned)."""
        rec = frame(payload)
        self.size += len(rec)
        self.records += 1
        self._last_frame = rec
        if self.deferred:
            self._pending.append(rec)
        else:
            self._write(rec)

    def commit(self) -> None:
        """Write the deferred records (one syscall); durable per the policy on return."""
        pending = self._pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            self._write(data)

    def _write(self, data: bytes) -> None:
        n = os.write(self._fd, data)
        while n < len(data):  # regular files write whole unless the disk is full
            n += os.write(self._fd, data[n:])
        if self.fsync == "always":
            os.fdatasync(self._fd)
            self.syncs += 1
        elif self.fsync == "batch":
            self._dirty = True

    @property
    def unsynced(self) -> bool:
        """Something was appended since the last sync ("batch" only)."""
        return self._dirty

    def sync_due(self) -> bool:
        """There is unsynced data and `batch_interval_s` has passed (cheap: callers
        check this before handing `maybe_sync` to a worker thread)."""
        return self._dirty and time.monotonic() - self._last_sync >= self.batch_interval_s

    def maybe_sync(self) -> bool:
        """fdatasync if there is unsynced data and `batch_interval_s` has passed."""
        if self.sync_due():
            self.sync()
            return True
        return False

    def sync(self) -> None:
        """fdatasync now if anything was appended since the last sync."""
        if self._dirty:
            self._dirty = False
            os.fdatasync(self._fd)
            self.syncs += 1
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.commit()
            if self.fsync != "never":
                self._dirty = True
                self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1
            if self.lock is not None:
                self.lock.release()

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _sync_dir(path: Path) -> None:
    """Make a new file's directory entry durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
