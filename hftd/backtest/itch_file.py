"""A NASDAQ ITCH 5.0 BinaryFILE as a recorded market-data source (pure, streamed).

NASDAQ publishes a day of TotalView-ITCH as BinaryFILE: ``[u16 big-endian
length][message]`` repeated, often gzipped, several GB a day. The file is read
in fixed-size chunks (plain or gzip, told apart by the gzip magic, not the
name), so memory stays flat whatever its size; a message that straddles two
chunks is carried over to the next.

With a symbol filter, most of a day is other symbols' messages, so skipping is
the hot loop: an unwanted message is passed over by reading only its length
and its stock locate (bytes 1-2 of every ITCH message) in the chunk: no decode,
no slice, no struct per message. Which locates are wanted is
learned from the Stock Directory ('R') messages; a locate stays unwanted until
its directory message names a wanted symbol, so a DIRECTORY update always comes
first. Locate 0 (system events) is always kept. A message too short to carry a
locate (malformed) is kept only without a filter.

Kept messages go through the live feed's own `Normalizer`, renumbered 1, 2, 3...
and stamped t1 = exch_ts (the message's own timestamp, also for the types the
normalizer records by sequence only). Unknown or malformed ITCH is not an error
(sequence-only records, as on the live feed); broken framing or a damaged gzip
stream is a `SourceError` naming the message number and byte offset.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec

from hftd.backtest.source import SourceError
from hftd.feed.normalize import Normalizer
from hftd.msg.hot import MarketDataUpdate
from hftd.wire import itch

CHUNK_SIZE = 1 << 20  # bytes read at a time: ~35k messages, a few ms of work
_MAX_FRAME = 2 + 0xFFFF  # the longest record a u16 length allows
_GZIP_MAGIC = b"\x1f\x8b"
_R = ord("R")
_R_SIZE = itch.SIZES[b"R"]
# Per-locate decision table (a bytearray of 65536): skip, keep, or not known yet
# (no directory message seen for it: skipped, but its 'R' is looked at).
_SKIP, _KEEP, _UNKNOWN = 0, 1, 2
_GZIP_ERRORS = (gzip.BadGzipFile, zlib.error, EOFError)


def _wanted(symbols: Iterable[str] | None) -> frozenset[bytes] | None:
    """The symbols as a directory message carries them (8 bytes, space padded);
    None (no filter) for None or an empty collection, as BookBuilder reads it.
    A name no ITCH symbol can be (longer than 8, not latin-1: another source's,
    in a config that names several) matches nothing."""
    if symbols is None:
        return None
    names = list(symbols)
    if not names:
        return None
    out = set()
    for s in names:
        try:
            raw = s.encode("latin-1")
        except UnicodeEncodeError:
            continue
        if 0 < len(raw) <= 8:
            out.add(raw.ljust(8, b" "))
    return frozenset(out)


@contextlib.contextmanager
def _reader(path: Path) -> Iterator[Callable[[memoryview], int]]:
    """readinto() of the file's bytes, gunzipped if it starts with the gzip magic."""
    with path.open("rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if gzipped:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz.readinto
        else:
            yield raw.readinto


def _keep(
    buf: bytearray, pos: int, n: int, table: bytearray, wanted: frozenset[bytes] | None
) -> bool:
    """The rare path: a message whose locate is not known to be unwanted (and
    one too short to have a locate, which the fast loop may have misread)."""
    if n < 3:
        return wanted is None
    loc = buf[pos + 3] << 8 | buf[pos + 4]
    v = table[loc]
    if v != _UNKNOWN:
        return v == _KEEP
    if wanted is not None and n == _R_SIZE and buf[pos + 2] == _R:
        keep = bytes(buf[pos + 13 : pos + 21]) in wanted
        table[loc] = _KEEP if keep else _SKIP
        return keep
    return False


def _frames(
    path: Path, wanted: frozenset[bytes] | None, chunk_size: int, counts: list[int]
) -> Iterator[bytes]:
    """Every kept message (without its length field, a copy), in file order. On
    return, counts[0] is the number of messages in the file (kept or not).

    One buffer for the whole file: the records a chunk ends inside of are moved
    to its front and the next chunk read in after them."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size}: must be at least 1 byte")
    table = bytearray([_KEEP if wanted is None else _UNKNOWN]) * 65536
    table[0] = _KEEP  # system events
    keep = _keep
    buf = bytearray(chunk_size + _MAX_FRAME)  # a chunk after a cut record of any length
    view = memoryview(buf)
    seen = 0  # messages seen so far
    base = 0  # file (decompressed) offset of buf[0]
    pos = end = 0  # buf[pos:end]: bytes read, not yet walked
    with _reader(path) as readinto:
        while True:
            left = end - pos
            if pos and left:
                buf[:left] = buf[pos:end]
            base += pos
            pos = 0
            try:
                got = readinto(view[left : left + chunk_size])
            except _GZIP_ERRORS as exc:
                raise SourceError(
                    path,
                    f"message {seen + 1} at byte {base}",
                    f"damaged gzip stream ({type(exc).__name__}: {exc})",
                ) from exc
            end = left + got
            if not got:
                break
            # Fast loop: a whole record of any length fits before `end`, so only
            # the record's first bytes are looked at and nothing is bounds-checked.
            safe = end - _MAX_FRAME
            while pos < safe:
                seen += 1
                if table[buf[pos + 3] << 8 | buf[pos + 4]]:
                    n = buf[pos] << 8 | buf[pos + 1]
                    if keep(buf, pos, n, table, wanted):
                        yield bytes(view[pos + 2 : pos + 2 + n])
                    pos += 2 + n
                else:
                    pos += 2 + (buf[pos] << 8 | buf[pos + 1])
            # The chunk's last records: each one checked to be whole first.
            while pos + 2 <= end:
                n = buf[pos] << 8 | buf[pos + 1]
                if pos + 2 + n > end:
                    break
                seen += 1
                if (n < 3 or table[buf[pos + 3] << 8 | buf[pos + 4]]) and keep(
                    buf, pos, n, table, wanted
                ):
                    yield bytes(view[pos + 2 : pos + 2 + n])
                pos += 2 + n
            counts[0] = seen
    view.release()
    left = end - pos
    if left:
        where = f"message {seen + 1} at byte {base + pos}"
        if left < 2:
            raise SourceError(path, where, "length field cut short (the file ends inside it)")
        n = buf[pos] << 8 | buf[pos + 1]
        raise SourceError(path, where, f"length {n} runs past the end ({left - 2} bytes left)")
    counts[0] = seen


class ItchFile:
    """A NASDAQ ITCH 5.0 BinaryFILE (plain or gzip), optionally one symbol set's.

    `symbols` None or empty: every message. OSError if the file cannot be read;
    SourceError if its framing or its gzip stream is broken.
    """

    name = "ITCH 5.0 BinaryFILE"

    def __init__(
        self,
        path: Path | str,
        symbols: Iterable[str] | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size {chunk_size}: must be at least 1 byte")
        self.path = Path(path)
        self.wanted = _wanted(symbols)
        self.chunk_size = chunk_size

    def __iter__(self) -> Iterator[MarketDataUpdate]:
        update = Normalizer().update
        replace = msgspec.structs.replace
        ts = 0
        frames = _frames(self.path, self.wanted, self.chunk_size, [0])
        for seq, payload in enumerate(frames, start=1):
            if len(payload) >= 11:
                ts = int.from_bytes(payload[5:11], "big")
            # (a message too short for a timestamp gets the last one seen)
            u = update(payload, seq, ts)
            if u.exch_ts != ts:  # a sequence-only record: the normalizer did not decode it
                u = replace(u, exch_ts=ts)
            yield u

    def payloads(self) -> Iterator[bytes]:
        """The kept messages as they are in the file (ITCH payloads without their
        length field), one for each update `__iter__` yields, in the same order: the
        exchange publishes a recorded day's own bytes (hftd.exchange.recorded)."""
        return _frames(self.path, self.wanted, self.chunk_size, [0])


def count_skip(
    path: Path | str, symbols: Iterable[str] | None = None, *, chunk_size: int = CHUNK_SIZE
) -> tuple[int, int]:
    """(messages in the file, messages a filter on `symbols` keeps), by the same
    skipping as `ItchFile` and without decoding anything: what a file holds, and
    the skip loop's speed alone."""
    counts = [0]
    kept = 0
    for _ in _frames(Path(path), _wanted(symbols), chunk_size, counts):
        kept += 1
    return counts[0], kept
