"""`hftd replay` on a damaged copy of the real NASDAQ sample (issue 11, item 9).

Every input error names the file, the message number (from 1) and the byte
offset of that message's length field; `hftd replay` prints it as one line on
stderr and exits 2, never a traceback. The copies are the sample with one
thing wrong at a known place: bits flipped inside a message, a length field
cut short by the end of the file, a length field too short for its message,
and one that runs past the end.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

import hftd.replay as replay
from tests.support import ITCH_FILE, ROOT


def records() -> list[tuple[int, bytes]]:
    """(byte offset of the length field, message) for every message of the sample."""
    data = ITCH_FILE.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">H", data, pos)
        out.append((pos, data[pos + 2 : pos + 2 + n]))
        pos += 2 + n
    return out


RECORDS = records()


def nth(kind: bytes, k: int) -> int:
    """The message number (from 1) of the k-th message of this type in the sample."""
    found = [i for i, (_, m) in enumerate(RECORDS, start=1) if m[:1] == kind]
    return found[k]


def damaged(tmp: Path, number: int, at: int, mask: int) -> Path:
    """The sample with `mask` xor-ed into byte `at` of message `number`'s record
    (0, 1: its length field; 2: its type byte; ...)."""
    data = bytearray(ITCH_FILE.read_bytes())
    data[RECORDS[number - 1][0] + at] ^= mask
    out = tmp / "damaged.bin"
    out.write_bytes(bytes(data))
    return out


def run_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hftd.cli", "replay", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def check(path: Path, number: int, reason: str) -> None:
    """replay_file and `hftd replay` both name the file, message `number` and its offset."""
    offset = RECORDS[number - 1][0]
    r = run_cli(path)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"hftd replay: {path}: message {number} at byte {offset}: ")
    assert reason in lines[0]
    with pytest.raises(replay.ReplayError) as ei:
        replay.replay_file(path)
    err = ei.value
    assert (err.path, err.number, err.offset) == (path, number, offset), str(err)
    assert reason in err.reason and lines[0] == f"hftd replay: {err}"


def test_the_sample_itself_replays() -> None:
    builder, count = replay.replay_file(ITCH_FILE)
    assert count == len(RECORDS) == 10_000 and len(builder.books["AAPL"].orders) > 100


def test_flipped_bits_in_an_executions_order_reference(tmp_path: Path) -> None:
    """The 100th execution (E) with the top bit of its order reference flipped: an
    execution of an order that was never added (it used to end in a BookError
    traceback from hftd/book/l3.py)."""
    number = nth(b"E", 100)
    path = damaged(tmp_path, number, 2 + 11, 0x80)  # order ref: bytes 11..18 of the message
    check(path, number, "unknown order")


def test_flipped_bits_in_a_type_byte(tmp_path: Path) -> None:
    """An add order (A, 36 bytes) whose type byte reads Q (cross trade, 40 bytes)."""
    number = nth(b"A", 500)
    path = damaged(tmp_path, number, 2, ord("A") ^ ord("Q"))
    check(path, number, "36 bytes, expected 40")


def test_flipped_bits_in_a_side(tmp_path: Path) -> None:
    """An add order whose side is no longer B or S: never put on either side."""
    number = nth(b"A", 7)
    path = damaged(tmp_path, number, 2 + 19, 0x80)  # side: byte 19 of the message
    check(path, number, "side")


def test_a_length_field_cut_short_by_the_end_of_the_file(tmp_path: Path) -> None:
    """The file ends one byte into message 5000's length field."""
    path = tmp_path / "cut.bin"
    path.write_bytes(ITCH_FILE.read_bytes()[: RECORDS[4999][0] + 1])
    check(path, 5000, "length field cut short")


def test_a_length_field_shorter_than_its_message(tmp_path: Path) -> None:
    """An add order (36 bytes) framed as 30: the message is cut, the position named
    (it used to say only "AddOrder: 30 bytes, expected 36")."""
    number = nth(b"A", 1000)
    assert len(RECORDS[number - 1][1]) == 36
    path = damaged(tmp_path, number, 1, 36 ^ 30)
    check(path, number, "30 bytes, expected 36")


def test_a_length_field_past_the_end(tmp_path: Path) -> None:
    """The last message's length field says 65535."""
    number = len(RECORDS)
    data = bytearray(ITCH_FILE.read_bytes())
    struct.pack_into(">H", data, RECORDS[-1][0], 0xFFFF)
    path = tmp_path / "long.bin"
    path.write_bytes(bytes(data))
    check(path, number, "length 65535 runs past the end")


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    r = run_cli(tmp_path / "missing.bin")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "missing.bin" in r.stderr


def test_replay_reads_every_recorded_format_the_backtest_reads(tmp_path: Path) -> None:
    """`hftd replay` is the backtest's book-only mode: a gzipped BinaryFILE (or a
    LOBSTER day) builds the books the plain file builds; junk is named."""
    import gzip

    gz = tmp_path / "day"  # no .gz in the name: told by its content
    gz.write_bytes(gzip.compress(ITCH_FILE.read_bytes()))
    outs = [
        subprocess.run(
            [sys.executable, "-m", "hftd.cli", "replay", str(p)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        for p in (ITCH_FILE, gz)
    ]
    assert [o.returncode for o in outs] == [0, 0]
    assert outs[0].stdout.splitlines()[1:] == outs[1].stdout.splitlines()[1:]
    junk = tmp_path / "junk.csv"
    junk.write_text("hello\n")
    bad = subprocess.run(
        [sys.executable, "-m", "hftd.cli", "replay", str(junk)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and str(junk) in bad.stderr and "Traceback" not in bad.stderr
