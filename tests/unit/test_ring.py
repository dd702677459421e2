"""Unit tests for the shared-memory SPSC ring (`hftd.ipc.ring`), one process.

Producer and consumer are separate `Ring` objects (separate mappings of the
same /dev/shm file), as they would be in two processes. Every ring a test
creates is named ``hftd-test-<pid>-<n>`` and removed by the fixture, even when
the test fails.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import platform
import pwd
import select
import signal
import socket
import stat
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import hftd.ipc.ring as ringmod
from hftd.config import load_config
from hftd.ipc.doorbell import DoorbellListener, DoorbellRinger
from hftd.ipc.ring import (
    CACHE_LINE,
    HEADER_SIZE,
    SHM_DIR,
    Ring,
    RingCorruptError,
    RingError,
    RingFullError,
    RingStats,
    RingUntrustedError,
    Waiter,
    record_size,
)
from tests.support import DEFAULT_CONFIG

_counter = itertools.count()
PREFIX = f"hftd-test-{os.getpid()}-"


def _cleanup(name: str) -> None:
    for path in [SHM_DIR / name, SHM_DIR / f"{name}.bell", *SHM_DIR.glob(f".{name}.*.tmp")]:
        path.unlink(missing_ok=True)


@pytest.fixture
def name() -> Iterator[str]:
    """A fresh ring name; whatever was created under it is removed afterwards."""
    n = f"{PREFIX}{next(_counter)}"
    try:
        yield n
    finally:
        _cleanup(n)


@pytest.fixture
def pair(name: str) -> Iterator[tuple[Ring, Ring]]:
    """(producer, consumer) on a 256-byte ring."""
    with Ring.create(name, 256) as prod, Ring.attach(name) as cons:
        yield prod, cons


def u64(path: Path, offset: int) -> int:
    value: int = struct.unpack_from("<Q", path.read_bytes(), offset)[0]
    return value


def drain(cons: Ring) -> list[bytes]:
    out = []
    while (rec := cons.read()) is not None:
        out.append(rec)
    return out


# ------------------------------------------------------------------- layout


def test_header_layout_is_four_separate_cache_lines() -> None:
    assert CACHE_LINE == 64
    assert HEADER_SIZE == 4 * CACHE_LINE
    assert ringmod.DATA == HEADER_SIZE
    lines = {
        0: [ringmod.OFF_MAGIC, ringmod.OFF_VERSION, ringmod.OFF_HEADER_SIZE, ringmod.OFF_CAPACITY,
            ringmod.OFF_MAX_PAYLOAD],
        1: [ringmod.OFF_HEAD, ringmod.OFF_PENDING_LAST, ringmod.OFF_LAST],
        2: [ringmod.OFF_TAIL],
        3: [ringmod.OFF_SLEEPING, ringmod.OFF_FULL_COUNT, ringmod.OFF_BELLS, ringmod.OFF_SLEEPS,
            ringmod.OFF_WAKEUPS, ringmod.OFF_TIMEOUTS, ringmod.OFF_MISSED],
    }  # fmt: skip
    for line, offsets in lines.items():
        for off in offsets:
            assert off // CACHE_LINE == line, (line, off)
            assert off % 4 == 0
    # the hot u64 fields: 8-aligned, so every load/store is one aligned access
    u64_fields = lines[1] + lines[2] + lines[3] + [ringmod.OFF_CAPACITY]
    assert all(off % 8 == 0 for off in u64_fields)
    assert (ringmod.OFF_HEAD, ringmod.OFF_TAIL, ringmod.OFF_SLEEPING) == (64, 128, 192)


def test_header_fields_on_disk(name: str) -> None:
    path = SHM_DIR / name
    with Ring.create(name, 1024) as prod, Ring.attach(name) as cons:
        raw = path.read_bytes()
        assert len(raw) == HEADER_SIZE + 1024
        assert raw[0:8] == b"HFTDRING"
        assert struct.unpack_from("<IIQQ", raw, 8) == (1, HEADER_SIZE, 1024, 256)
        assert u64(path, 64) == 0  # head
        assert u64(path, 72) == u64(path, 80) == 2**64 - 1  # pending_last, last: none yet
        prod.write(b"hello")
        assert u64(path, 64) == 16  # 4 + 5 bytes, padded to 8
        assert u64(path, 72) == u64(path, 80) == 0
        assert u64(path, 128) == 0
        assert raw[HEADER_SIZE:] == bytes(1024)  # data started zeroed
        raw = path.read_bytes()
        assert raw[HEADER_SIZE : HEADER_SIZE + 9] == b"\x05\x00\x00\x00hello"
        assert cons.read() == b"hello"
        assert u64(path, 128) == 0  # read does not commit
        cons.commit()
        assert u64(path, 128) == 16  # tail
        # the ctypes views are 8-aligned and on the documented lines
        base = ctypes.addressof(ctypes.c_char.from_buffer(prod._mm, 0))
        assert base % 4096 == 0
        assert ctypes.addressof(prod._head_c) - base == 64
        assert ctypes.addressof(prod._tail_c) - base == 128
        assert ctypes.addressof(prod._sleeping_c) - base == 192
        assert ctypes.addressof(prod._full_c) - base == 200


# --------------------------------------------------------- create / attach


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        (100, "power of two"),
        (1000, r"nearest: 512 or 1024"),
        (32, "between 64 and"),
        (0, "between 64 and"),
        (-64, "between 64 and"),
        (1 << 33, "between 64 and"),
        (64.0, "must be an int"),
        (True, "must be an int"),
    ],
)
def test_create_rejects_bad_capacity(name: str, capacity: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ring.create(name, capacity)
    assert not (SHM_DIR / name).exists()


@pytest.mark.parametrize("bad", ["", ".hidden", "-x", "a/b", "x" * 201, "ring.bell", "sp ace"])
def test_create_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid ring name"):
        Ring.create(bad, 64)


def test_create_attach_unlink(name: str) -> None:
    with Ring.create(name, 64) as r:
        assert (r.capacity, r.max_payload, r.head, r.tail) == (64, 16, 0, 0)
        assert r.path == SHM_DIR / name
    assert (SHM_DIR / name).exists()  # a ring outlives its users
    assert (SHM_DIR / (name + ".bell")).exists()
    with pytest.raises(FileExistsError, match="already exists"):
        Ring.create(name, 64)
    assert not list(SHM_DIR.glob(f".{name}*"))  # no temporary file left behind
    with Ring.attach(name) as r:
        assert r.capacity == 64
    Ring.unlink(name)
    assert not (SHM_DIR / name).exists()
    assert not (SHM_DIR / (name + ".bell")).exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Ring.attach(name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Ring.unlink(name)
    Ring.unlink(name, missing_ok=True)


def test_open_creates_or_attaches(name: str) -> None:
    with Ring.open(name, 128) as a:
        a.write(b"x")
        with Ring.open(name, 128) as b:
            assert b.read() == b"x"
        with pytest.raises(ValueError, match="exists with capacity 128, not 256"):
            Ring.open(name, 256)


def test_attach_rejects_foreign_and_corrupt_files(name: str) -> None:
    path = SHM_DIR / name
    path.write_bytes(b"")
    path.chmod(0o600)  # ours and private: only the contents are wrong
    with pytest.raises(RingCorruptError, match="smaller than the 256-byte header"):
        Ring.attach(name)
    path.write_bytes(b"\0" * 1024)
    with pytest.raises(RingCorruptError, match="bad magic"):
        Ring.attach(name)
    path.unlink()
    with Ring.create(name, 256):
        pass
    good = path.read_bytes()

    def patched(offset: int, value: bytes) -> None:
        raw = bytearray(good)
        raw[offset : offset + len(value)] = value
        path.write_bytes(bytes(raw))

    patched(8, struct.pack("<I", 2))
    with pytest.raises(RingCorruptError, match=r"version 2 .* not supported"):
        Ring.attach(name)
    patched(16, struct.pack("<Q", 100))
    with pytest.raises(RingCorruptError, match="power of two"):
        Ring.attach(name)
    patched(16, struct.pack("<Q", 512))
    with pytest.raises(RingCorruptError, match="bytes for capacity 512"):
        Ring.attach(name)
    path.write_bytes(good[:-8])
    with pytest.raises(RingCorruptError, match="bytes for capacity 256"):
        Ring.attach(name)


# ------------------------------------------------------------------- trust
# /dev/shm is world-writable: a ring or doorbell another local user could have
# made (or can still open) must never be attached to. Issue 10, item 1.

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: giving a file to another uid (os.chown) is root-only"
)


def _owner(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid} (no such user)"


@pytest.mark.parametrize("mode", [0o666, 0o662, 0o664, 0o604, 0o601], ids=oct)
def test_attach_refuses_a_ring_open_to_other_users(name: str, mode: int) -> None:
    with Ring.create(name, 64):
        pass
    path = SHM_DIR / name
    path.chmod(mode)
    for attach in (lambda: Ring.attach(name), lambda: Ring.open(name, 64)):
        with pytest.raises(RingUntrustedError, match=f"{path} has mode {mode:#o}") as err:
            attach()
        assert "refusing to attach" in str(err.value) and "remove it" in str(err.value)
    path.chmod(0o660)  # what create() makes by default: fine, as is 0o600
    with Ring.attach(name) as r:
        assert r.capacity == 64


def test_attach_refuses_a_symlink(name: str, tmp_path: Path) -> None:
    with Ring.create("real", 64, directory=tmp_path) as real:
        real.write(b"kept")
    target = tmp_path / "real"
    (SHM_DIR / name).symlink_to(target)
    for attach in (lambda: Ring.attach(name), lambda: Ring.open(name, 64)):
        with pytest.raises(RingUntrustedError, match=r"is a symbolic link to .*real") as err:
            attach()
        assert "refusing to follow it" in str(err.value)
    assert (SHM_DIR / name).is_symlink()  # neither followed nor replaced
    with Ring.attach("real", directory=tmp_path) as real:
        assert real.read() == b"kept"


@pytest.mark.parametrize("kind", ["directory", "FIFO", "socket"])
def test_attach_refuses_a_non_regular_file(name: str, kind: str) -> None:
    path = SHM_DIR / name
    sock = None
    if kind == "directory":
        path.mkdir(mode=0o700)
    elif kind == "FIFO":
        os.mkfifo(path, 0o600)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        path.chmod(0o600)
    try:
        with pytest.raises(RingUntrustedError, match=f"{path} is a {kind}, not a regular file"):
            Ring.attach(name)
        with pytest.raises(RingUntrustedError, match=f"is a {kind}"):
            Ring.open(name, 64)
    finally:
        if sock is not None:
            sock.close()
        if kind == "directory":
            path.rmdir()


@needs_root
def test_attach_refuses_another_users_ring(name: str) -> None:
    with Ring.create(name, 64):
        pass
    path = SHM_DIR / name
    os.chown(path, NOBODY, NOBODY)
    expected = (
        f"ring {path} is owned by {_owner(NOBODY)}, not by this process's {_owner(0)}: "
        "refusing to attach"
    )
    for attach in (lambda: Ring.attach(name), lambda: Ring.open(name, 64)):
        with pytest.raises(RingUntrustedError) as err:
            attach()
        assert str(err.value).startswith(expected)
        assert "remove it (as root) or choose another rings.prefix" in str(err.value)


def test_create_honours_umask_and_mode(name: str) -> None:
    path, bell = SHM_DIR / name, SHM_DIR / f"{name}.bell"
    cases = [(0o022, 0o660, 0o640), (0o077, 0o660, 0o600), (0o000, 0o660, 0o660),
             (0o000, 0o600, 0o600), (0o007, 0o666, 0o660)]  # fmt: skip
    for umask, mode, expected in cases:
        old = os.umask(umask)
        try:
            Ring.create(name, 64, mode=mode).close()
        finally:
            os.umask(old)
        for p in (path, bell):
            st = p.lstat()
            assert stat.S_IMODE(st.st_mode) == expected, (p, oct(umask), oct(mode))
            assert st.st_uid == os.geteuid()
        with Ring.attach(name):
            pass
        Ring.unlink(name)
    with pytest.raises(ValueError, match="permission bits only"):
        Ring.create(name, 64, mode=0o4660)
    assert not path.exists()


def test_create_ignores_a_squatted_temporary_name(name: str) -> None:
    # the temporary name used to be predictable (pid): pre-creating it blocked creation
    squat = SHM_DIR / f".{name}.{os.getpid()}.tmp"
    squat.write_bytes(b"")
    with Ring.create(name, 64) as r:
        assert r.capacity == 64
    assert squat.read_bytes() == b""  # left alone
    assert [p.name for p in SHM_DIR.glob(f".{name}.*.tmp")] == [squat.name]


@pytest.mark.parametrize("how", ["mode", "symlink", "file"])
def test_a_squatted_doorbell_is_refused(name: str, how: str, tmp_path: Path) -> None:
    bell = SHM_DIR / f"{name}.bell"

    def squat() -> None:
        if how == "mode":
            os.mkfifo(bell)
            bell.chmod(0o666)
        elif how == "symlink":
            fifo = tmp_path / "fifo"
            if not fifo.exists():
                os.mkfifo(fifo, 0o600)
            bell.symlink_to(fifo)
        else:
            bell.write_bytes(b"")
            bell.chmod(0o600)

    why = {"mode": "has mode 0o666", "symlink": "is a symbolic link", "file": "is a regular file"}
    squat()
    with pytest.raises(RingUntrustedError, match=f"doorbell {bell} {why[how]}"):
        Ring.create(name, 64)
    assert not (SHM_DIR / name).exists()  # no ring left behind
    with pytest.raises(RingUntrustedError, match=f"doorbell {bell} {why[how]}"):
        Ring.open(name, 64)
    assert not (SHM_DIR / name).exists()
    with pytest.raises(RingUntrustedError, match=why[how]):
        DoorbellListener(bell)
    bell.unlink()
    with Ring.create(name, 64):  # a sound ring, then its doorbell is replaced
        pass
    bell.unlink()
    squat()
    with pytest.raises(RingUntrustedError, match=f"doorbell {bell} {why[how]}"):
        Ring.attach(name)


def test_ringer_and_listener_check_the_fifo_they_open(tmp_path: Path) -> None:
    bell = tmp_path / "x.bell"
    os.mkfifo(bell, 0o600)
    reader = os.open(bell, os.O_RDONLY | os.O_NONBLOCK)  # a consumer: no ENXIO
    try:
        ringer = DoorbellRinger(bell)
        assert ringer.ring()
        ringer.close()
        listener = DoorbellListener(bell)
        listener.close()
        bell.chmod(0o622)
        with pytest.raises(RingUntrustedError, match="has mode 0o622"):
            DoorbellRinger(bell).ring()
        with pytest.raises(RingUntrustedError, match="has mode 0o622"):
            DoorbellListener(bell)
    finally:
        os.close(reader)
    bell.unlink()
    os.mkfifo(tmp_path / "elsewhere", 0o600)
    bell.symlink_to(tmp_path / "elsewhere")
    reader = os.open(tmp_path / "elsewhere", os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(RingUntrustedError, match="is a symbolic link"):
            DoorbellRinger(bell).ring()
    finally:
        os.close(reader)


@needs_root
def test_doorbell_of_another_user_is_refused(name: str) -> None:
    bell = SHM_DIR / f"{name}.bell"
    os.mkfifo(bell, 0o600)
    os.chown(bell, NOBODY, NOBODY)
    with pytest.raises(RingUntrustedError) as err:
        Ring.open(name, 64)
    assert str(err.value).startswith(f"doorbell {bell} is owned by {_owner(NOBODY)}, not by")
    assert not (SHM_DIR / name).exists()


@needs_root
@pytest.mark.parametrize("which", ["ring", "doorbell"])
def test_unlink_refuses_another_owners_ring(name: str, which: str) -> None:
    with Ring.create(name, 64):
        pass
    path, bell = SHM_DIR / name, SHM_DIR / f"{name}.bell"
    os.chown(path if which == "ring" else bell, NOBODY, NOBODY)
    for missing_ok in (False, True):
        with pytest.raises(RingUntrustedError) as err:
            Ring.unlink(name, missing_ok=missing_ok)
        assert str(err.value).startswith(
            f"{which} {path if which == 'ring' else bell} is owned by {_owner(NOBODY)}, "
            f"not by this process's {_owner(0)}: refusing to unlink ring {name!r}"
        )
        assert path.exists() and bell.exists()  # neither removed
    os.chown(path if which == "ring" else bell, 0, 0)
    Ring.unlink(name)
    assert not path.exists() and not bell.exists()
    Ring.unlink(name, missing_ok=True)


def test_refuses_weak_memory_machines(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.delenv("HFTD_RING_ALLOW_WEAK_ORDERING", raising=False)
    with pytest.raises(RingError, match="total store order"):
        Ring.create(name, 64)
    monkeypatch.setenv("HFTD_RING_ALLOW_WEAK_ORDERING", "1")
    with Ring.create(name, 64):
        pass


def test_close_is_idempotent_and_use_after_close_raises(name: str) -> None:
    r = Ring.create(name, 64)
    r.write(b"a")
    r.close()
    r.close()
    assert r.closed
    assert "closed" in repr(r)
    with pytest.raises(ValueError, match="closed"):
        r.try_write(b"b")
    with pytest.raises(ValueError, match="closed"):
        r.read()
    with pytest.raises(ValueError, match="closed"):
        r.statistics()


# ---------------------------------------------------------------- records


def test_record_size() -> None:
    assert [record_size(n) for n in (0, 1, 4, 5, 12, 13)] == [8, 8, 8, 16, 16, 24]


def test_fifo_order_and_payload_types(pair: tuple[Ring, Ring]) -> None:
    prod, cons = pair
    assert cons.read() is None
    prod.write(b"one")
    prod.write(bytearray(b"two"))
    prod.write(memoryview(b"xthreex")[1:-1])
    assert drain(cons) == [b"one", b"two", b"three"]
    assert all(type(r) is bytes for r in [prod.last_committed()])


def test_empty_payloads(pair: tuple[Ring, Ring]) -> None:
    prod, cons = pair
    for _ in range(3):
        assert prod.try_write(b"")
    assert prod.head == 24  # 8 bytes each: the length prefix, padded
    assert prod.last_committed() == b""
    assert drain(cons) == [b"", b"", b""]  # b"" is a record, None is "empty"


def test_max_record_size(pair: tuple[Ring, Ring]) -> None:
    prod, cons = pair
    assert prod.max_payload == 256 // 4
    with pytest.raises(ValueError, match=r"65 bytes exceeds .* max payload 64 \(capacity // 4\)"):
        prod.try_write(b"x" * 65)
    assert prod.head == 0
    for i in range(40):  # many laps of maximal records, each wrapping differently
        payload = bytes([i]) * 64
        assert prod.try_write(payload)
        assert cons.read_commit() == payload


def test_full_ring_is_reported_and_nothing_is_overwritten(name: str) -> None:
    with Ring.create(name, 64) as prod, Ring.attach(name) as cons:
        written = []
        i = 0
        while prod.try_write(bytes([i]) * 12):  # 16-byte records: 4 fit in 64 bytes
            written.append(bytes([i]) * 12)
            i += 1
        assert len(written) == 4
        assert prod.statistics().full_count == 1
        assert not prod.try_write(b"")
        assert prod.statistics().full_count == 2
        with pytest.raises(RingFullError, match="full"):
            prod.write(b"z")
        stats = prod.statistics()
        assert (stats.full_count, stats.used, stats.free) == (3, 64, 0)
        # reading without committing frees nothing
        assert cons.read() == written[0]
        assert not prod.try_write(b"")
        cons.commit()
        assert prod.try_write(b"new")
        assert drain(cons) == [*written[1:], b"new"]


def test_wraparound_writes_a_marker_and_pads(name: str) -> None:
    path = SHM_DIR / name
    with Ring.create(name, 64) as prod, Ring.attach(name) as cons:
        for p in (b"a" * 12, b"b" * 12, b"c" * 12):  # 3 x 16 bytes: offset 48
            prod.write(p)
        assert drain(cons) == [b"a" * 12, b"b" * 12, b"c" * 12]
        cons.commit()
        prod.write(b"d" * 16)  # 24 bytes do not fit in the last 16: wrap
        assert prod.head == 64 + 24
        raw = path.read_bytes()
        assert struct.unpack_from("<I", raw, HEADER_SIZE + 48)[0] == 0xFFFFFFFF
        assert raw[HEADER_SIZE : HEADER_SIZE + 20] == struct.pack("<I", 16) + b"d" * 16
        assert prod.last_committed() == b"d" * 16
        assert cons.read() == b"d" * 16
        assert cons.position == 88
        cons.commit()
        assert prod.statistics().used == 0
        # a record exactly filling the end of the buffer needs no marker
        prod.write(b"e" * 12)  # 16 bytes at offset 24 -> 40
        prod.write(b"f" * 16)  # 24 bytes at offset 40 -> 64 exactly
        prod.write(b"g")
        assert prod.head == 128 + 8
        assert drain(cons) == [b"e" * 12, b"f" * 16, b"g"]


def test_wrap_needs_room_for_padding_plus_record(name: str) -> None:
    with Ring.create(name, 64) as prod, Ring.attach(name) as cons:
        prod.write(b"a" * 12)
        prod.write(b"b" * 12)
        prod.write(b"c" * 12)  # head 48
        assert cons.read_commit() == b"a" * 12  # tail 16: 32 bytes free, 16 before the end
        assert not prod.try_write(b"d" * 16)  # needs 16 padding + 24 = 40 > 32 free
        assert cons.read_commit() == b"b" * 12  # 48 free
        assert prod.try_write(b"d" * 16)
        assert drain(cons) == [b"c" * 12, b"d" * 16]


# --------------------------------------------------------- commit / seek


def test_uncommitted_records_are_redelivered_after_restart(name: str) -> None:
    with Ring.create(name, 256) as prod:
        for i in range(5):
            prod.write(b"r%d" % i)
        with Ring.attach(name) as cons:
            assert cons.read_commit() == b"r0"
            assert cons.read() == b"r1"
            assert cons.read() == b"r2"
            # crash before commit
        with Ring.attach(name) as cons:
            assert cons.position == cons.tail == 8
            assert drain(cons) == [b"r1", b"r2", b"r3", b"r4"]  # at-least-once


def test_seek_skips_records_processed_before_a_crash(name: str) -> None:
    with Ring.create(name, 256) as prod:
        for i in range(5):
            prod.write(b"r%d" % i)
        with Ring.attach(name) as cons:
            cons.read()
            cons.read()
            processed = cons.position  # the consumer persisted this with its output
        with Ring.attach(name) as cons:
            assert cons.tail == 0 < processed
            cons.seek(processed)
            cons.commit()
            assert cons.tail == processed
            assert drain(cons) == [b"r2", b"r3", b"r4"]  # exactly-once
            cons.seek(cons.tail)  # rewind to the committed position
            assert cons.read() == b"r2"


def test_seek_rejects_bad_positions(name: str) -> None:
    with Ring.create(name, 256) as prod, Ring.attach(name) as cons:
        for i in range(3):
            prod.write(b"record%d" % i)  # 16 bytes each
        cons.read_commit()
        with pytest.raises(ValueError, match=r"outside \[tail 16, head 48\]"):
            cons.seek(8)
        with pytest.raises(ValueError, match="outside"):
            cons.seek(56)
        with pytest.raises(ValueError, match="not a record boundary"):
            cons.seek(24)
        cons.seek(48)
        assert cons.read() is None


def test_seek_across_a_wrap(name: str) -> None:
    with Ring.create(name, 64) as prod, Ring.attach(name) as cons:
        for _ in range(3):
            prod.write(b"x" * 12)
        drain(cons)
        cons.commit()
        prod.write(b"y" * 16)  # wraps: head 88
        prod.write(b"z")  # 88 -> 96
        cons.seek(88)
        assert cons.read() == b"z"
        with pytest.raises(ValueError, match="not a record boundary"):
            cons.seek(64)  # the wrapped record starts at 64 but 48 is its boundary
        cons.seek(48)
        assert cons.read() == b"y" * 16


# --------------------------------------------------------- last_committed


def test_last_committed_tracks_the_producer(name: str) -> None:
    with Ring.create(name, 64) as prod:
        assert prod.last_committed() is None
        for i in range(50):  # several laps, wrap markers included
            prod.write(bytes([i]) * (i % 17))
            assert prod.last_committed() == bytes([i]) * (i % 17)
            with Ring.attach(name) as cons:
                cons.seek(prod.head)
                cons.commit()
    with Ring.attach(name) as again:  # a restarted producer
        assert again.last_committed() == bytes([49]) * (49 % 17)


def _bytes_write(ring: Ring, start: int, payload: bytes, marker_at: int | None = None) -> None:
    """Step (1) of the documented write protocol, by hand."""
    mm = ring._mm
    if marker_at is not None:
        struct.pack_into("<I", mm, HEADER_SIZE + (marker_at & ring._mask), 0xFFFFFFFF)
    base = HEADER_SIZE + (start & ring._mask)
    mm[base : base + 4 + len(payload)] = struct.pack("<I", len(payload)) + payload


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4])
def test_last_committed_after_a_crash_at_each_step(name: str, steps: int, wrap: bool) -> None:
    """Play the first `steps` of the 4 store steps of a write, then recover."""
    with Ring.create(name, 64) as setup, Ring.attach(name) as cons:
        setup.write(b"L" * 12)
        setup.write(b"M" * 12)  # head 32
        if wrap:
            setup.write(b"W" * 12)  # head 48: the next 24-byte record wraps to 64
        drain(cons)
        cons.commit()
        prev = setup.last_committed()
        head = setup.head
    with Ring.attach(name) as ring:
        new = b"N" * 16
        start = 64 if wrap else head
        end = start + record_size(len(new))
        if steps >= 1:
            _bytes_write(ring, start, new, marker_at=head if wrap else None)
        if steps >= 2:
            ring._pending_c.value = start
        if steps >= 3:
            ring._head_c.value = end
        if steps >= 4:
            ring._last_c.value = start
    committed = steps >= 3
    with Ring.attach(name) as restarted:
        assert restarted.last_committed() == (new if committed else prev)
        # the restarted producer repairs the recovery fields and carries on
        restarted.write(b"after")
        assert restarted.last_committed() == b"after"
        with Ring.attach(name) as cons:
            assert drain(cons) == ([new] if committed else []) + [b"after"]


def test_last_committed_survives_sigkill_at_every_line(name: str) -> None:
    """Fork a producer and SIGKILL it before each line `ring.py` executes in turn.

    After each kill a restarted producer must recover exactly the last record a
    consumer can read. Then a second producer is killed at its first commit
    point (just before its first ``head`` store): recovery must still find the
    same record, which needs the first restart to have repaired ``last``.
    """
    ring_file = ringmod.__file__
    source = Path(ring_file).read_text().splitlines()
    commit_line = 1 + next(i for i, t in enumerate(source) if "# the commit point" in t)
    payloads = [b"p" * 30, b"q" * 16, b"", b"r" * 9]  # wrap on a 128-byte ring

    def run_traced(kill_at: int | None = None, kill_line: int | None = None) -> int:
        count = 0

        def local(frame: object, event: str, arg: object) -> object:
            nonlocal count
            if event == "line":
                count += 1
                if count == kill_at or getattr(frame, "f_lineno", None) == kill_line:
                    os.kill(os.getpid(), signal.SIGKILL)
            return local

        def tracer(frame: object, event: str, arg: object) -> object:
            code = getattr(frame, "f_code", None)
            return local if code is not None and code.co_filename == ring_file else None

        with Ring.attach(name) as prod:
            sys.settrace(tracer)  # type: ignore[arg-type]
            try:
                for p in payloads:
                    assert prod.try_write(p)
            finally:
                sys.settrace(None)
        return count

    def killed_child(kill_at: int | None = None, kill_line: int | None = None) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                run_traced(kill_at, kill_line)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, kill_at

    with Ring.create(name, 128) as prod, Ring.attach(name) as cons:
        for _ in range(3):
            prod.write(b"o" * 20)  # 24-byte records: head at 72
        drain(cons)
        cons.commit()
    state = (SHM_DIR / name).read_bytes()
    lines = run_traced()
    assert lines > 40
    for kill_at in range(1, lines + 1):
        (SHM_DIR / name).write_bytes(state)
        killed_child(kill_at=kill_at)
        with Ring.attach(name) as cons:
            seen = drain(cons)
            cons.commit()  # make room for the next producers
            assert seen == payloads[: len(seen)], kill_at
            expected = seen[-1] if seen else b"o" * 20
            with Ring.attach(name) as observer:
                assert observer.last_committed() == expected, kill_at
            killed_child(kill_line=commit_line)
            assert drain(cons) == [], kill_at
            with Ring.attach(name) as restarted:
                assert restarted.last_committed() == expected, kill_at
                restarted.write(b"after")
                assert restarted.last_committed() == b"after"
            assert drain(cons) == [b"after"], kill_at


# ---------------------------------------------------------- doorbell / wait


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_producer_rings_only_when_the_consumer_sleeps(pair: tuple[Ring, Ring]) -> None:
    prod, cons = pair
    fd = cons.doorbell_fd
    prod.write(b"awake")
    assert not _readable(fd)
    assert prod.statistics().bells == 0
    assert cons.read_commit() == b"awake"
    assert cons.prepare_sleep()
    assert cons.statistics().consumer_sleeping
    prod.write(b"wake up")
    assert _readable(fd)
    assert cons.finish_sleep()
    assert not _readable(fd)
    stats = cons.statistics()
    assert (stats.bells, stats.sleeps, stats.wakeups, stats.consumer_sleeping) == (1, 1, 1, False)
    # data already there: prepare_sleep refuses, the flag is left clear
    assert not cons.prepare_sleep()
    assert not cons.statistics().consumer_sleeping
    assert cons.read() == b"wake up"


def test_one_bell_per_sleep(pair: tuple[Ring, Ring]) -> None:
    prod, cons = pair
    fd = cons.doorbell_fd
    assert cons.prepare_sleep()
    for i in range(5):  # a burst while the consumer is still waking up
        prod.write(b"%d" % i)
    assert prod.statistics().bells == 1
    assert cons.finish_sleep()
    assert not _readable(fd)
    assert len(drain(cons)) == 5
    assert cons.prepare_sleep()  # a new sleep: a new token, rung again
    prod.write(b"again")
    assert cons.statistics().bells == 2
    assert cons.finish_sleep()


def test_timeout_without_a_bell_is_counted(pair: tuple[Ring, Ring]) -> None:
    prod, cons = pair
    assert cons.prepare_sleep()
    assert not cons.finish_sleep()
    stats = cons.statistics()
    assert (stats.timeouts, stats.missed_wakeups) == (1, 0)
    assert prod.statistics().timeouts == 1


def test_stale_sleeping_flag_without_a_consumer_is_harmless(pair: tuple[Ring, Ring]) -> None:
    prod, cons = pair
    cons._sleeping_c.value = 1  # a consumer died asleep; nobody has the FIFO open
    for i in range(10):
        prod.write(b"%d" % i)
    assert prod.statistics().bells == 0  # ENXIO: not counted, not raised
    Waiter(cons, "sleep")  # a new consumer clears the flag
    assert not cons.statistics().consumer_sleeping


@pytest.mark.parametrize("strategy", ["spin", "spin-then-sleep", "sleep"])
def test_waiter_single_process(pair: tuple[Ring, Ring], strategy: str) -> None:
    prod, cons = pair
    w = Waiter(cons, strategy, spin_us=50)
    assert not w.wait(timeout=0.005)
    assert w.read(timeout=0.001) is None
    prod.write(b"x")
    assert w.wait(timeout=0)
    assert w.read(timeout=1) == b"x"
    if strategy != "spin":
        assert cons.statistics().sleeps >= 1


def test_waiter_rejects_unknown_strategy(pair: tuple[Ring, Ring]) -> None:
    with pytest.raises(ValueError, match="unknown wait strategy 'yield'; choose one of spin"):
        Waiter(pair[1], "yield")


def test_default_strategy_adapts_to_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert ringmod.default_strategy() == "sleep"
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert ringmod.default_strategy() == "sleep"  # shared with the venue and the rest
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    assert ringmod.default_strategy() == "spin-then-sleep"
    cfg = load_config(DEFAULT_CONFIG)  # what the daemons use: the same rule
    assert cfg.rings.wait_for("strategy") == "spin-then-sleep"
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert cfg.rings.wait_for("strategy") == "sleep"


def test_statistics_is_a_frozen_msgspec_struct(pair: tuple[Ring, Ring]) -> None:
    prod, _ = pair
    prod.write(b"abc")
    stats = prod.statistics()
    assert isinstance(stats, RingStats)
    with pytest.raises(AttributeError):
        stats.head = 0  # type: ignore[misc]
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(stats), type=RingStats)
    assert decoded == stats
    assert (stats.capacity, stats.head, stats.tail, stats.used, stats.free) == (256, 8, 0, 8, 248)
