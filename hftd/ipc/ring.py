"""Single-producer single-consumer byte-record ring in POSIX shared memory.

One ring per directed hot-path edge (feed -> strategy, strategy -> gateway, ...).
Records are opaque bytes (callers put msgspec-encoded messages in). The ring is
a file ``/dev/shm/<name>`` mapped ``MAP_SHARED`` by both processes, so it
outlives them: a crashed producer or consumer re-attaches and continues from
the committed indexes.

File layout (offsets in bytes; every index is a little-endian u64)::

    0    +--------------------------------------------------------------+
         | line 0, written once by create():                            |
         |   0 magic "HFTDRING" | 8 version u32 | 12 header size u32     |
         |  16 capacity         | 24 max payload                        |
    64   +--------------------------------------------------------------+
         | line 1, producer:                                            |
         |  64 head          committed write index (byte counter)       |
         |  72 pending_last  start of the record being committed        |
         |  80 last          start of the last committed record         |
    128  +--------------------------------------------------------------+
         | line 2, consumer:                                            |
         | 128 tail          committed read index (byte counter)        |
    192  +--------------------------------------------------------------+
         | line 3, doorbell / wait state (written off the fast path):   |
         | 192 sleeping      0 awake, else the token of the current     |
         |                   sleep (= the sleeps count when announced)  |
         | 200 full_count    try_write() refusals (producer)            |
         | 208 bells         doorbell rings (producer)                  |
         | 216 sleeps        sleep announcements (consumer)             |
         | 224 wakeups       blocks ended by a bell (consumer)          |
         | 232 timeouts      blocks ended by the timeout (consumer)     |
         | 240 missed_wakeups  a timeout found data, no bell (consumer) |
    256  +--------------------------------------------------------------+
         | data: `capacity` bytes (a power of two)                      |
         +--------------------------------------------------------------+

Each hot field sits alone on its 64-byte cache line with only fields of the
same writer, so producer and consumer never false-share: the producer writes
line 1 and reads ``tail`` only when its cached copy says the ring is full; the
consumer writes line 2 and reads ``head`` only when it has caught up with its
cached copy. Line 3 is written only when the ring is full or the consumer goes
to sleep, and read by the producer (one load) after every write.

``head`` and ``tail`` are byte counters that only grow (2**64 bytes is
centuries at any rate); the buffer offset is ``counter & (capacity - 1)``,
``head - tail`` is the used space, so "full" and "empty" are never ambiguous.

Records: ``u32 length | payload | zero to 7 bytes of padding``, each starting
on an 8-byte boundary, so ``size(n) = (4 + n + 7) & ~7``. A record that does
not fit before the end of the buffer is preceded by a wrap marker (length
``0xFFFFFFFF``) and starts at offset 0 of the next lap; as offsets are 8-aligned
and the capacity is a multiple of 8, a marker always fits. The largest payload
is ``capacity // 4`` bytes (see the recovery proof for why).

Memory ordering. The indexes are accessed through ``ctypes.c_uint64.from_buffer``:
CPython's ctypes copies a u64 with a fixed-size 8-byte ``memcpy`` that the
compiler emits as one ``mov`` (checked by disassembling ``_ctypes`` of CPython
3.11: ``Q_set`` stores with one ``mov %rbx,(%r12)``, ``Q_get`` loads with one
``mov (%rdi),%rdi``), so at an 8-aligned address every load and store is a
single atomic access (no torn values). Ordering then relies on x86-64 TSO
(stores become visible in program order, loads are not reordered with older
loads, stores are not reordered with older loads), plus the fact that each
Python-level access is a separate opaque C call that no compiler can reorder:

- producer: record bytes, then ``head`` -> a consumer that sees ``head`` sees
  the bytes (StoreStore; LoadLoad on the consumer side);
- consumer: reads the record, then stores ``tail`` -> the producer cannot
  overwrite bytes the consumer is still reading (LoadStore).

x86 does reorder a store with a *later load* (the store buffer). The only
place that matters is the sleep handshake (producer: store head, load
sleeping; consumer: store sleeping, load head: Dekker's pattern). The consumer
side issues a full fence (an atomic read-modify-write, see `_full_fence`);
the producer does not, because a fence on every write would cost ~0.2 µs
while its doorbell check must be ~free. The one interleaving left, the producer
loading ``sleeping`` (still 0) while its ``head`` store sits in its store
buffer until after the consumer's re-check, loses that one bell. It is bounded,
not excluded: the consumer's first sleep is short (``confirm_ms``, default
1 ms) and it re-checks ``head`` after it. Store buffers drain continuously (in
well under a microsecond in practice, and completely at any interrupt or VM
exit), but x86 promises no time bound, hence a bound of our own rather than a
claim that the race cannot happen. Timeouts that find data are counted in
``missed_wakeups`` so a monitor sees whether it ever matters (0 in all our
runs). On machines other
than x86-64 (weak memory ordering: ARM, POWER) this module refuses to open a
ring unless ``HFTD_RING_ALLOW_WEAK_ORDERING=1`` is set (for tests only).

Producer crash recovery (`last_committed`): a write is, in this order,
(1) marker/length/payload bytes, (2) ``pending_last = start``,
(3) ``head = end``, (4) ``last = start``. Recovery: if the record at
``pending_last`` lies before ``head`` and ends exactly at ``head`` it is the
last committed record, else the record at ``last`` is. Proof, by where a
SIGKILL lands (stores that retired reach the shared page; the kernel does not
discard them), with L the previous committed record and N the one being
written:

- during (1): ``pending_last`` and ``last`` point at L, which ends at ``head``;
  the bytes being written do not touch L (below) -> L. Correct.
- after (2), before (3): ``pending_last`` = N's start >= ``head``, so it does
  not end at ``head`` -> ``last`` = L. Correct: N was never published.
- after (3), before (4): N ends at ``head`` -> N. Correct: N was published.
- after (4): both point at N -> N.

L is never overwritten while it is the last committed record: writing N
consumes at most ``size(L) + pad + size(N)`` bytes from L's start, where
``pad < size(N)``; with every record at most ``capacity/4 + 8`` bytes and a
capacity of at least 64 that is < ``3/4 capacity + 16 <= capacity``, so N's
bytes end before the lap comes back to L. A restarted producer sets ``last``
and ``pending_last`` to the recovered record before its first write, so the
case analysis holds for that write too (without the repair, a crash after
(3) followed by the next producer's crash after (2) would recover the stale
``last``). Either field alone already recovers the same record, so a crash
during the repair is harmless.

Delivery. ``read()`` does not commit; ``commit()`` publishes the local position
as ``tail``. A consumer that restarts resumes at ``tail``: records it read but
had not committed are delivered again (at-least-once). A consumer that stores
``position`` atomically together with the effect of each record (e.g. in the
same single ``write`` to its journal) and calls ``seek(position)`` after a
restart when ``tail`` is behind it gets exactly-once. The producer gets no
duplicates on restart if it resumes after `last_committed`.

Waiting (`Waiter`): ``spin`` busy-polls ``head`` (needs a dedicated core),
``spin-then-sleep`` spins ``spin_us`` and then sleeps, ``sleep`` sleeps at once.
Sleeping = announce (``sleeping = token``), fence, re-check, block on the doorbell
(`hftd.ipc.doorbell`, a FIFO at ``/dev/shm/<name>.bell``) with a bounded
timeout as a safety net. The producer rings only when ``sleeping`` is set, so
its doorbell cost is one load while the consumer is awake, and only once per
sleep: ``sleeping`` holds a fresh token per sleep and the producer remembers
the token it rang for, so a burst written while the consumer is still waking
(e.g. queued behind the producer on the same CPU) costs one syscall, not one
per record. A trio consumer uses the same protocol::

    if ring.prepare_sleep():  # False: a record arrived meanwhile
        with trio.move_on_after(0.001):  # the confirm_ms safety net
            await trio.lowlevel.wait_readable(ring.doorbell_fd)
        ring.finish_sleep()

Trust. /dev/shm is writable by every local user, and whoever can write a ring
can write its records (an orders ring carries orders to the venue). So:
`create` makes the file exclusively under an unpredictable temporary name
(``O_CREAT | O_EXCL``, ``secrets.token_hex``), owned by this process, with
`mode` (default 0o660) minus the umask, and links it into place; `attach` (and
so `open`) opens ``O_NOFOLLOW`` and, on the opened fd (``fstat``: nothing can
be swapped in between), accepts only a regular file owned by this process's
effective uid with no permission bit for "other", else raises
`RingUntrustedError` saying why. The doorbell FIFO gets the same treatment
(`hftd.ipc.doorbell`). `unlink` removes nothing owned by another uid. All of
this happens when a ring is opened, never per record. Out of scope: another
user can still squat the names (creation then fails, a denial of service, not
a forged order), and a member of the ring's group, or an ACL, is trusted.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import re
import secrets
import stat
import struct
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self, cast, get_args

from hftd.ipc.doorbell import (
    DoorbellListener,
    DoorbellRinger,
    describe_uid,
    ensure_fifo,
    open_checked,
)
from hftd.msg.status import RingStats

__all__ = [
    "CACHE_LINE",
    "HEADER_SIZE",
    "SHM_DIR",
    "VERSION",
    "Ring",
    "RingCorruptError",
    "RingError",
    "RingFullError",
    "RingStats",
    "RingUntrustedError",
    "WaitStrategy",
    "Waiter",
    "default_strategy",
    "record_size",
]

SHM_DIR: Final = Path("/dev/shm")
MAGIC: Final = b"HFTDRING"
VERSION: Final = 1
CACHE_LINE: Final = 64
HEADER_SIZE: Final = 4 * CACHE_LINE
MIN_CAPACITY: Final = 64
MAX_CAPACITY: Final = 1 << 32
BELL_SUFFIX: Final = ".bell"

# line 0: identity
OFF_MAGIC: Final = 0
OFF_VERSION: Final = 8
OFF_HEADER_SIZE: Final = 12
OFF_CAPACITY: Final = 16
OFF_MAX_PAYLOAD: Final = 24
# line 1: producer
OFF_HEAD: Final = 64
OFF_PENDING_LAST: Final = 72
OFF_LAST: Final = 80
# line 2: consumer
OFF_TAIL: Final = 128
# line 3: doorbell / wait state
OFF_SLEEPING: Final = 192
OFF_FULL_COUNT: Final = 200
OFF_BELLS: Final = 208
OFF_SLEEPS: Final = 216
OFF_WAKEUPS: Final = 224
OFF_TIMEOUTS: Final = 232
OFF_MISSED: Final = 240

DATA: Final = HEADER_SIZE
WRAP: Final = 0xFFFFFFFF
NO_RECORD: Final = (1 << 64) - 1
_LEN = struct.Struct("<I")
_IDENT = struct.Struct("<8sIIQQ")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_TSO_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})

WaitStrategy = Literal["spin", "spin-then-sleep", "sleep"]
WAIT_STRATEGIES: Final[tuple[str, ...]] = get_args(WaitStrategy)

PathLike = str | os.PathLike[str]
Payload = bytes | bytearray | memoryview


class RingError(Exception):
    """Base class for ring errors other than plain OS errors."""


class RingCorruptError(RingError):
    """The shared segment is not a valid ring (bad header, bad record)."""


class RingFullError(RingError):
    """`Ring.write` found no space: the consumer is behind."""


class RingUntrustedError(RingError):
    """A ring or doorbell file that another local user may control: never used.

    Raised instead of attaching to (or unlinking) a file that is a symlink, not
    of the expected type, owned by another uid, or open to "other" users; the
    message names the file, the reason and what to do.
    """


def record_size(payload_len: int) -> int:
    """Bytes one record takes in the buffer: length prefix + payload, 8-aligned."""
    return (payload_len + 11) & ~7


_fence_lock = threading.Lock()


def _full_fence() -> None:
    """A StoreLoad barrier, for the consumer's sleep announcement.

    Acquiring and releasing an uncontended lock is an atomic read-modify-write
    in every CPython (``sem_trywait``/``sem_post``, or ``PyMutex``'s cmpxchg),
    and on x86-64 a ``lock``-prefixed instruction drains the store buffer: a
    full fence. Costs ~0.2 µs, so it is only used off the fast path.
    """
    _fence_lock.acquire()
    _fence_lock.release()


# "auto" spins first only with this many usable CPUs: below it the hot daemons share
# CPUs with each other and the venue (the one rule: RingsConfig.wait_for uses it).
SPIN_MIN_CPUS = 4


def default_strategy() -> WaitStrategy:
    """``spin-then-sleep`` when this process may use SPIN_MIN_CPUS+ CPUs, else ``sleep``.

    Pure ``spin`` is never a default: it needs a core of its own, which only
    the operator can promise (``CPUAffinity=``). Even the 20 µs spin hurts on
    a CPU shared with a busy process: measured here, p50 went from ~30 µs
    (``sleep``) to ~600 µs, as a consumer that spun is no longer favoured on
    wake-up over its CPU-bound neighbour. Configure ``sleep`` on shared cores.
    """
    return "spin-then-sleep" if len(os.sched_getaffinity(0)) >= SPIN_MIN_CPUS else "sleep"


class _ClosedField:
    """Stands in for the header fields of a closed ring: any access raises."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def value(self) -> int:
        raise ValueError(f"ring {self._name!r} is closed")

    @value.setter
    def value(self, _v: int) -> None:
        raise ValueError(f"ring {self._name!r} is closed")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValueError(
            f"invalid ring name {name!r}: use 1-200 characters [A-Za-z0-9_.-], "
            "not starting with '.' or '-', e.g. 'hftd-md'"
        )
    if name.endswith(BELL_SUFFIX):
        raise ValueError(f"invalid ring name {name!r}: '{BELL_SUFFIX}' is the doorbell suffix")


def _check_capacity(capacity: int) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise ValueError(f"ring capacity must be an int, got {type(capacity).__name__}")
    if capacity < MIN_CAPACITY or capacity > MAX_CAPACITY:
        raise ValueError(
            f"ring capacity must be between {MIN_CAPACITY} and {MAX_CAPACITY} bytes, got {capacity}"
        )
    if capacity & (capacity - 1):
        lower = 1 << (capacity.bit_length() - 1)
        raise ValueError(
            f"ring capacity must be a power of two, got {capacity} "
            f"(nearest: {lower} or {lower * 2})"
        )


def _check_ordering() -> None:
    if platform.machine().lower() in _TSO_MACHINES:
        return
    if os.environ.get("HFTD_RING_ALLOW_WEAK_ORDERING") == "1":
        return
    raise RingError(
        f"hftd rings rely on x86-64 total store order; {platform.machine()!r} reorders "
        "plain stores and would need explicit barriers (set "
        "HFTD_RING_ALLOW_WEAK_ORDERING=1 to run single-process tests anyway)"
    )


def _dir(directory: PathLike | None) -> Path:
    return SHM_DIR if directory is None else Path(directory)


_RING_RISK = "read or inject its records (e.g. orders sent to the venue)"


def _open_ring_file(name: str, path: Path) -> int:
    """Open ring file `path` read-write, refusing anything create() would not have made."""
    try:
        return open_checked(path, os.O_RDWR, stat.S_IFREG, "ring", _RING_RISK)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"ring {name!r} does not exist (create it first)", str(path)
        ) from None


class Ring:
    """One end (or both ends, in tests) of a shared-memory SPSC record ring.

    Use each ring from exactly one producer and one consumer process at a
    time; any number of observers may call `statistics()`. Not thread-safe.
    """

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def create(
        cls, name: str, capacity: int, *, directory: PathLike | None = None, mode: int = 0o660
    ) -> Self:
        """Create ring `name` with `capacity` data bytes; FileExistsError if it exists.

        The file is built under a hidden temporary name and hard-linked into
        place only when its header is complete (``link`` fails atomically if the
        name exists), so `attach` never sees a half-initialised ring. (``O_TMPFILE``
        would leave nothing behind on a crash, but linking it via /proc fails with
        EXDEV when /dev/shm is bind-mounted, as in containers.) The temporary name
        is random so that no other user can pre-create it to block creation.

        The file (and the doorbell FIFO) belong to this process's effective uid,
        with `mode` minus the umask (``O_EXCL``: nothing pre-existing is reused).
        `attach` refuses any "other" permission bit, so a `mode` with one makes a
        ring only its creating `Ring` object may use. RingUntrustedError if the
        doorbell name is taken by a file `attach` would refuse (no ring is left).
        """
        _check_name(name)
        _check_capacity(capacity)
        _check_ordering()
        if mode & ~0o777:
            raise ValueError(f"ring mode must be permission bits only (<= 0o777), got {mode:#o}")
        d = _dir(directory)
        path = d / name
        tmp = d / f".{name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, mode)
        try:
            os.ftruncate(fd, HEADER_SIZE + capacity)
            with mmap.mmap(fd, HEADER_SIZE) as mm:
                struct.pack_into("<QQQ", mm, OFF_HEAD, 0, NO_RECORD, NO_RECORD)
                _IDENT.pack_into(mm, 0, MAGIC, VERSION, HEADER_SIZE, capacity, capacity // 4)
            # the doorbell first: a squatted one leaves no ring behind
            ensure_fifo(d / (name + BELL_SUFFIX), mode)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(
                    errno.EEXIST,
                    f"ring {name!r} already exists (attach to it or unlink it)",
                    str(path),
                ) from None
            return cls(name, fd, path)
        finally:
            os.close(fd)
            tmp.unlink(missing_ok=True)

    @classmethod
    def attach(cls, name: str, *, directory: PathLike | None = None) -> Self:
        """Map existing ring `name`, validating its owner, mode and header.

        RingUntrustedError (nothing is mapped) if the file or its doorbell is a
        symlink, not a regular file/FIFO, owned by another uid than this
        process's effective uid, or has a permission bit for "other": another
        local user may have made it to forge records.
        """
        _check_name(name)
        _check_ordering()
        path = _dir(directory) / name
        fd = _open_ring_file(name, path)
        try:
            ring = cls(name, fd, path)
        finally:
            os.close(fd)
        try:
            ensure_fifo(path.with_name(name + BELL_SUFFIX))
        except BaseException:
            ring.close()
            raise
        return ring

    @classmethod
    def open(cls, name: str, capacity: int, *, directory: PathLike | None = None) -> Self:
        """Attach to ring `name` if it exists (its capacity must match), else create it.

        RingUntrustedError, as `attach`, if the existing file is not this user's.
        """
        try:
            ring = cls.attach(name, directory=directory)
        except FileNotFoundError:
            try:
                return cls.create(name, capacity, directory=directory)
            except FileExistsError:  # lost a creation race: the winner's ring is fine
                ring = cls.attach(name, directory=directory)
        if ring.capacity != capacity:
            ring.close()
            raise ValueError(
                f"ring {name!r} exists with capacity {ring.capacity}, not {capacity} "
                "(unlink it to resize)"
            )
        return ring

    @staticmethod
    def unlink(name: str, *, directory: PathLike | None = None, missing_ok: bool = False) -> None:
        """Remove ring `name` and its doorbell; processes that have it mapped keep it.

        RingUntrustedError, removing neither, if either belongs to another uid
        (root could remove them, but they are evidence and not ours to delete:
        the caller decides what to report). In a sticky directory such as
        /dev/shm, no other user can swap a file of ours between check and unlink.
        """
        _check_name(name)
        d = _dir(directory)
        ring_path, bell_path = d / name, d / (name + BELL_SUFFIX)
        euid = os.geteuid()
        present = []
        for path, what in ((bell_path, "doorbell"), (ring_path, "ring")):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if st.st_uid != euid:
                raise RingUntrustedError(
                    f"{what} {path} is owned by {describe_uid(st.st_uid)}, not by this "
                    f"process's {describe_uid(euid)}: refusing to unlink ring {name!r} — "
                    "another local user may have created it to inject records; inspect it "
                    "and remove it as root, or choose another rings.prefix"
                )
            present.append(path)
        for path in present:
            path.unlink(missing_ok=True)
        if ring_path not in present and not missing_ok:
            raise FileNotFoundError(errno.ENOENT, f"ring {name!r} does not exist", str(ring_path))

    def __init__(self, name: str, fd: int, path: Path) -> None:
        """Map an open ring file (use `create`, `attach` or `open`)."""
        size = os.fstat(fd).st_size
        if size < HEADER_SIZE:
            raise RingCorruptError(
                f"{path} is not an hftd ring: {size} bytes, smaller than the "
                f"{HEADER_SIZE}-byte header"
            )
        magic, version, header_size, capacity, max_payload = _IDENT.unpack(
            os.pread(fd, _IDENT.size, 0)
        )
        if magic != MAGIC:
            raise RingCorruptError(f"{path} is not an hftd ring: bad magic {magic!r}")
        if version != VERSION or header_size != HEADER_SIZE:
            raise RingCorruptError(
                f"{path}: ring layout version {version} (header {header_size} bytes) is not "
                f"supported; this build reads version {VERSION} (header {HEADER_SIZE})"
            )
        try:
            _check_capacity(capacity)
        except ValueError as exc:
            raise RingCorruptError(f"{path}: corrupt header: {exc}") from None
        if size != HEADER_SIZE + capacity or max_payload != capacity // 4:
            raise RingCorruptError(
                f"{path}: corrupt header: {size} bytes for capacity {capacity}, "
                f"max payload {max_payload}"
            )
        self.name: Final = name
        self.path: Final = path
        self.capacity: Final[int] = capacity
        self.max_payload: Final[int] = max_payload
        self._mask = capacity - 1
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        self._mm = mmap.mmap(fd, size, flags, mmap.PROT_READ | mmap.PROT_WRITE)
        u64 = ctypes.c_uint64.from_buffer
        mm = self._mm
        self._head_c = u64(mm, OFF_HEAD)
        self._pending_c = u64(mm, OFF_PENDING_LAST)
        self._last_c = u64(mm, OFF_LAST)
        self._tail_c = u64(mm, OFF_TAIL)
        self._sleeping_c = u64(mm, OFF_SLEEPING)
        self._full_c = u64(mm, OFF_FULL_COUNT)
        self._bells_c = u64(mm, OFF_BELLS)
        self._sleeps_c = u64(mm, OFF_SLEEPS)
        self._wakeups_c = u64(mm, OFF_WAKEUPS)
        self._timeouts_c = u64(mm, OFF_TIMEOUTS)
        self._missed_c = u64(mm, OFF_MISSED)
        # producer-local state
        self._producing = False
        self._rang = 0
        self._head = self._head_c.value
        self._tail_seen = self._tail_c.value
        # consumer-local state
        self._pos = self._tail_seen
        self._head_seen = self._pos
        self._bell_path = path.with_name(name + BELL_SUFFIX)
        self._listener: DoorbellListener | None = None
        self._ringer: DoorbellRinger | None = None
        self._closed = False

    def close(self) -> None:
        """Unmap (the ring itself stays in /dev/shm) and close doorbell fds. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.close()
        if self._ringer is not None:
            self._ringer.close()
        closed = cast(ctypes.c_uint64, _ClosedField(self.name))
        # drop the ctypes views first: mmap.close() refuses while buffers are exported
        self._head_c = self._pending_c = self._last_c = self._tail_c = closed
        self._sleeping_c = self._full_c = self._bells_c = self._sleeps_c = closed
        self._wakeups_c = self._timeouts_c = self._missed_c = closed
        # route the next try_write/read through a header field, so it raises "closed"
        self._producing = False
        self._head_seen = self._pos
        self._mm.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<Ring {self.name!r} closed>"
        return f"<Ring {self.name!r} capacity={self.capacity} head={self.head} tail={self.tail}>"

    # ----------------------------------------------------------------- producer

    def try_write(self, payload: Payload) -> bool:
        """Append one record; False (and ``full_count`` += 1) if it does not fit now.

        Never blocks and never overwrites unconsumed data. A memoryview must be
        a contiguous 1-D byte view (``len`` is its size in bytes).
        """
        n = len(payload)
        if n > self.max_payload:
            raise ValueError(
                f"record of {n} bytes exceeds ring {self.name!r} max payload "
                f"{self.max_payload} (capacity // 4)"
            )
        if not self._producing:
            self._start_producing()
        size = (n + 11) & ~7
        cap = self.capacity
        head = self._head
        off = head & self._mask
        start = head if off + size <= cap else head + cap - off
        end = start + size
        if end - self._tail_seen > cap:
            self._tail_seen = self._tail_c.value
            if end - self._tail_seen > cap:
                self._full_c.value += 1
                return False
        mm = self._mm
        if start == head:
            base = DATA + off
        else:
            _LEN.pack_into(mm, DATA + off, WRAP)
            base = DATA
        _LEN.pack_into(mm, base, n)
        mm[base + 4 : base + 4 + n] = payload
        self._pending_c.value = start
        self._head_c.value = end  # the commit point
        self._last_c.value = start
        self._head = end
        token = self._sleeping_c.value
        if token and token != self._rang:  # the consumer sleeps, not yet rung for
            self._ring_bell(token)
        return True

    def write(self, payload: Payload) -> None:
        """`try_write`, raising `RingFullError` instead of returning False."""
        if not self.try_write(payload):
            raise RingFullError(
                f"ring {self.name!r} is full ({self.head - self.tail} of {self.capacity} "
                f"bytes used), cannot take {len(payload)} bytes"
            )

    def last_committed(self) -> bytes | None:
        """Payload of the last record the producer committed, or None if none ever was.

        For a restarted producer, to resume after it. Correct after a SIGKILL at
        any point of a write (module docstring); call it while no producer is
        writing, or the answer may already be stale.
        """
        start = self._recover_last()
        if start is None:
            return None
        off = start & self._mask
        n = _LEN.unpack_from(self._mm, DATA + off)[0]
        return self._mm[DATA + off + 4 : DATA + off + 4 + n]

    def _record_end(self, start: int, head: int) -> int | None:
        """End of a committed record starting at `start`, or None if there is none."""
        if start >= head or head - start > self.capacity or start & 7:
            return None
        n = _LEN.unpack_from(self._mm, DATA + (start & self._mask))[0]
        if n > self.max_payload:
            return None
        end = start + ((n + 11) & ~7)
        return end if end <= head else None

    def _recover_last(self) -> int | None:
        head = self._head_c.value
        pending = self._pending_c.value
        if pending != NO_RECORD and self._record_end(pending, head) == head:
            return pending
        last = self._last_c.value
        if last == NO_RECORD:
            if head != 0:
                raise RingCorruptError(f"ring {self.name!r}: head is {head} but no last record")
            return None
        if self._record_end(last, head) != head:
            raise RingCorruptError(
                f"ring {self.name!r}: last record at {last} does not end at head {head}"
            )
        return last

    def _start_producing(self) -> None:
        """Take over as producer: resync local indexes, repair the recovery fields."""
        self._head = self._head_c.value
        self._tail_seen = self._tail_c.value
        start = self._recover_last()
        value = NO_RECORD if start is None else start
        # either field alone already recovers `value`, so a crash in between is harmless
        self._last_c.value = value
        self._pending_c.value = value
        self._producing = True

    def _ring_bell(self, token: int) -> None:
        if self._ringer is None:
            self._ringer = DoorbellRinger(self._bell_path)
        if self._ringer.ring():
            self._rang = token  # one bell per sleep: the rest of a burst costs no syscall
            self._bells_c.value += 1

    # ----------------------------------------------------------------- consumer

    def read(self) -> bytes | None:
        """The next record's payload, or None if the ring is empty. Does not commit."""
        pos = self._pos
        if pos == self._head_seen:
            self._head_seen = self._head_c.value
            if pos == self._head_seen:
                return None
        mm = self._mm
        off = pos & self._mask
        n = _LEN.unpack_from(mm, DATA + off)[0]
        if n == WRAP:
            pos += self.capacity - off
            off = 0
            n = _LEN.unpack_from(mm, DATA)[0]
        end = pos + ((n + 11) & ~7)
        if n > self.max_payload or end > self._head_seen:
            raise RingCorruptError(
                f"ring {self.name!r}: bad record length {n} at position {pos} "
                f"(head {self._head_seen})"
            )
        self._pos = end
        base = DATA + off + 4
        return mm[base : base + n]

    def commit(self) -> None:
        """Publish everything read so far as consumed (``tail = position``)."""
        self._tail_c.value = self._pos

    def read_commit(self) -> bytes | None:
        """`read` then `commit`: the record is consumed before the caller handles it
        (at-most-once should the caller crash while handling it)."""
        record = self.read()
        self._tail_c.value = self._pos
        return record

    @property
    def position(self) -> int:
        """The consumer's local read position: just after the last record read."""
        return self._pos

    def seek(self, position: int) -> None:
        """Move the read position to a record boundary between ``tail`` and ``head``.

        For a restarted consumer that kept its own processed position: seeking
        past records it had processed but not committed skips them. Does not
        commit. ValueError if `position` is out of range or not a boundary.
        """
        tail = self._tail_c.value
        head = self._head_c.value
        if not tail <= position <= head:
            raise ValueError(
                f"cannot seek ring {self.name!r} to {position}: outside [tail {tail}, head {head}]"
            )
        p = tail
        while p < position:
            p = self._next_boundary(p)
        if p != position:
            raise ValueError(f"cannot seek ring {self.name!r} to {position}: not a record boundary")
        self._pos = position
        self._head_seen = head

    def _next_boundary(self, p: int) -> int:
        off = p & self._mask
        n: int = _LEN.unpack_from(self._mm, DATA + off)[0]
        if n == WRAP:
            p += self.capacity - off
            n = _LEN.unpack_from(self._mm, DATA)[0]
        if n > self.max_payload:
            raise RingCorruptError(f"ring {self.name!r}: bad record length {n} at {p}")
        return p + ((n + 11) & ~7)

    def readable(self) -> bool:
        """True if `read` would return a record (refreshes the cached head)."""
        if self._pos != self._head_seen:
            return True
        self._head_seen = self._head_c.value
        return self._pos != self._head_seen

    # ---------------------------------------------------------- consumer: sleep

    @property
    def doorbell_fd(self) -> int:
        """The consumer's doorbell fd (opened on first use): readable when rung."""
        return self._doorbell().fileno()

    def _doorbell(self) -> DoorbellListener:
        if self._listener is None:
            self._listener = DoorbellListener(self._bell_path)
            self._sleeping_c.value = 0  # a consumer that died asleep left it set
        return self._listener

    def prepare_sleep(self) -> bool:
        """Announce that the consumer sleeps; False (not sleeping) if data is there.

        After True, wait for `doorbell_fd` to become readable (with a timeout:
        see `Waiter` for the values), then call `finish_sleep`.
        """
        self._doorbell()
        # a fresh token per sleep, from a shared counter so it stays fresh across
        # consumer restarts: the producer rings once per token
        token = self._sleeps_c.value + 1
        self._sleeps_c.value = token
        self._sleeping_c.value = token
        _full_fence()
        if self.readable():
            self._sleeping_c.value = 0
            return False
        return True

    def finish_sleep(self) -> bool:
        """End a sleep begun by `prepare_sleep`; True if the doorbell had rung."""
        self._sleeping_c.value = 0
        if self._doorbell().drain():
            self._wakeups_c.value += 1
            return True
        self._timeouts_c.value += 1
        if self.readable():
            self._missed_c.value += 1
        return False

    def _consumer_started(self) -> None:
        self._sleeping_c.value = 0

    def _wait_doorbell(self, timeout_ms: float) -> bool:
        return self._doorbell().wait(timeout_ms)

    # ------------------------------------------------------------------ observe

    @property
    def head(self) -> int:
        """Committed write index (bytes ever written, padding included)."""
        return self._head_c.value

    @property
    def tail(self) -> int:
        """Committed read index."""
        return self._tail_c.value

    def statistics(self) -> RingStats:
        """A snapshot of the shared header (fields read one by one, not atomically)."""
        head = self._head_c.value
        tail = self._tail_c.value
        used = head - tail
        return RingStats(
            name=self.name,
            capacity=self.capacity,
            max_payload=self.max_payload,
            head=head,
            tail=tail,
            used=used,
            free=self.capacity - used,
            full_count=self._full_c.value,
            bells=self._bells_c.value,
            sleeps=self._sleeps_c.value,
            wakeups=self._wakeups_c.value,
            timeouts=self._timeouts_c.value,
            missed_wakeups=self._missed_c.value,
            consumer_sleeping=bool(self._sleeping_c.value),
        )


class Waiter:
    """Blocks a consumer until its ring has a record, by a configured strategy.

    - ``spin``: busy-poll ``head``. Lowest latency; needs a dedicated core.
    - ``spin-then-sleep``: busy-poll for `spin_us`, then sleep as below.
    - ``sleep``: announce sleeping and block on the doorbell at once.

    A sleep first blocks at most `confirm_ms` (catches the one store-buffer
    race the producer does not fence against, see the module docstring), then
    at most `max_sleep_ms` at a time: a safety net should a bell ever be lost.
    """

    def __init__(
        self,
        ring: Ring,
        strategy: str = "spin-then-sleep",
        *,
        spin_us: float = 20.0,
        confirm_ms: float = 1.0,
        max_sleep_ms: float = 100.0,
    ) -> None:
        if strategy not in WAIT_STRATEGIES:
            raise ValueError(
                f"unknown wait strategy {strategy!r}; choose one of {', '.join(WAIT_STRATEGIES)}"
            )
        if spin_us < 0 or confirm_ms <= 0 or max_sleep_ms <= 0:
            raise ValueError("spin_us must be >= 0 and confirm_ms, max_sleep_ms > 0")
        self.ring = ring
        self.strategy = cast(WaitStrategy, strategy)
        self.spin_ns = int(spin_us * 1000)
        self.confirm_ms = confirm_ms
        self.max_sleep_ms = max_sleep_ms
        ring._consumer_started()
        if strategy != "spin":
            ring._doorbell()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a record is readable (True) or `timeout` seconds passed (False)."""
        ring = self.ring
        if ring.readable():
            return True
        now = time.perf_counter_ns()
        deadline = None if timeout is None else now + int(timeout * 1e9)
        if self.strategy == "spin":
            return self._spin(deadline)
        if self.strategy == "spin-then-sleep":
            spin_until = now + self.spin_ns
            if deadline is not None and deadline < spin_until:
                return self._spin(deadline)
            if self._spin(spin_until):
                return True
        return self._sleep(deadline)

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next record, waiting up to `timeout` seconds (None: forever)."""
        record = self.ring.read()
        if record is None and self.wait(timeout):
            record = self.ring.read()
        return record

    def _spin(self, deadline: int | None) -> bool:
        ring = self.ring
        head_c = ring._head_c
        pos = ring._pos
        clock = time.perf_counter_ns
        while True:
            for _ in range(32):
                if head_c.value != pos:
                    return ring.readable()
            if deadline is not None and clock() >= deadline:
                return False

    def _sleep(self, deadline: int | None) -> bool:
        ring = self.ring
        timeout_ms = self.confirm_ms
        while True:
            if not ring.prepare_sleep():
                return True
            if deadline is not None:
                left_ms = (deadline - time.perf_counter_ns()) / 1e6
                timeout_ms = max(0.0, min(timeout_ms, left_ms))
            try:
                ring._wait_doorbell(timeout_ms)
            finally:
                ring.finish_sleep()
            if ring.readable():
                return True
            if deadline is not None and time.perf_counter_ns() >= deadline:
                return False
            timeout_ms = self.max_sleep_ms
