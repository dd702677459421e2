"""Producer and consumer processes for ``test_ring_processes.py``.

    ring_worker.py produce NAME TOTAL [--burst N --pause-us U]
    ring_worker.py consume NAME OUT TOTAL [--strategy S]

Both print ``ready <next seq>`` once attached and ``done ...`` at the end, so
the test synchronises on their output, never on sleeps.

The producer writes records carrying sequence numbers 0..TOTAL-1 (u64, then a
filler whose length and contents derive from the number, so records have many
sizes and a corrupted one is detected). Restarted, it resumes after
``last_committed()``. On a full ring it backs off and retries: never drops.

The consumer appends ``(position, seq)`` (two u64) to OUT with one ``write``
per record, then commits. Restarted, it reads OUT's last entry and, if the
ring's ``tail`` is behind that position (killed between its write and its
commit), seeks past it: exactly-once. At the end it prints the ring's
statistics as JSON.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time

import msgspec

from hftd.ipc.ring import Ring, Waiter

RECORD = struct.Struct("<Q")
ENTRY = struct.Struct("<QQ")


def payload(seq: int) -> bytes:
    return RECORD.pack(seq) + bytes([seq % 251]) * (seq % 53)


def produce(name: str, total: int, burst: int, pause_us: int) -> None:
    ring = Ring.attach(name)
    last = ring.last_committed()
    seq = 0 if last is None else RECORD.unpack_from(last)[0] + 1
    print(f"ready {seq}", flush=True)
    while seq < total:
        if ring.try_write(payload(seq)):
            seq += 1
            if burst and seq % burst == 0:
                time.sleep(pause_us / 1e6)  # idle gaps, so the consumer goes to sleep
        else:
            time.sleep(50e-6)  # full: the consumer is behind; retry, never overwrite
    print(f"done {seq}", flush=True)


def consume(name: str, out: str, total: int, strategy: str) -> int:
    ring = Ring.attach(name)
    fd = os.open(out, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    entries, torn = divmod(os.fstat(fd).st_size, ENTRY.size)
    if torn:  # cannot happen for a 16-byte write, but never build on a torn entry
        os.ftruncate(fd, entries * ENTRY.size)
    expected = 0
    note = ""
    if entries:
        position, seq = ENTRY.unpack(os.pread(fd, ENTRY.size, (entries - 1) * ENTRY.size))
        expected = seq + 1
        if ring.tail < position:  # processed but not committed before the crash
            note = f" seek {ring.tail}->{position}"
            ring.seek(position)
            ring.commit()
    waiter = Waiter(ring, strategy)
    print(f"ready {expected}{note}", flush=True)
    while expected < total:
        record = waiter.read(timeout=1.0)
        if record is None:
            continue
        (seq,) = RECORD.unpack_from(record)
        if record != payload(seq):
            print(f"corrupt record at {ring.position}: {record!r}", file=sys.stderr, flush=True)
            return 3
        os.write(fd, ENTRY.pack(ring.position, seq))
        ring.commit()
        expected = seq + 1
    print("done", msgspec.json.encode(ring.statistics()).decode(), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("produce")
    p.add_argument("name")
    p.add_argument("total", type=int)
    p.add_argument("--burst", type=int, default=0)
    p.add_argument("--pause-us", type=int, default=0)
    c = sub.add_parser("consume")
    c.add_argument("name")
    c.add_argument("out")
    c.add_argument("total", type=int)
    c.add_argument("--strategy", default="spin-then-sleep")
    args = parser.parse_args()
    if args.role == "produce":
        produce(args.name, args.total, args.burst, args.pause_us)
        return 0
    return consume(args.name, args.out, args.total, args.strategy)


if __name__ == "__main__":
    sys.exit(main())
