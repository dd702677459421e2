"""Which recorded feed a file is, by its content (and its name for LOBSTER) (pure).

A data file is named on a command line or in a config, so its name is not
trusted to say its format: an ITCH BinaryFILE is recognized by its first
records (plain or gzip, whatever the suffix), a LOBSTER day by its
``*_message_N.csv`` member or name. Anything else is refused with what its
first bytes look like, before a backtest starts rather than deep inside it.
"""

from __future__ import annotations

import fnmatch
import re
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from hftd.backtest.itch_file import ItchFile
from hftd.backtest.source import MarketDataSource, SourceError
from hftd.wire import itch

_HEAD = 4096  # bytes looked at (decompressed, for gzip)
_GZ_HEAD = 1 << 16  # compressed bytes read to get them
_PROBE = 8  # ITCH records checked: each of a known type and exactly its size
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_LOBSTER_NAME = re.compile(r".*_message_\d+\.csv")
_SIZES = {t[0]: n for t, n in itch.SIZES.items()}


def looks_like_itch(head: bytes, whole: bool) -> bool:
    """`head` (the file's first bytes; `whole` if that is all of it) starts as
    BinaryFILE framing of ITCH 5.0: the first records whole in it (up to
    `_PROBE`, at least one) each of a known type with that type's exact size."""
    pos = checked = 0
    while checked < _PROBE and pos + 2 <= len(head):
        n = head[pos] << 8 | head[pos + 1]
        if pos + 2 + n > len(head):
            break
        if n == 0 or _SIZES.get(head[pos + 2]) != n:
            return False
        checked += 1
        pos += 2 + n
    # Fewer: only if that is the whole file (a cut last record is ItchFile's
    # error to report, with its number and offset).
    return checked > 0 and (checked == _PROBE or whole)


def _describe(head: bytes) -> str:
    """What the first bytes look like, for the refusal."""
    if not head:
        return "the file is empty"
    first = head[:16]
    text = first.decode("latin-1")
    return f"first bytes {first.hex(' ')} ({text!r})"


def _lobster_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(fnmatch.fnmatch(n.rsplit("/", 1)[-1], "*_message_*.csv") for n in names)


def open_source(path: Path, symbols: Iterable[str] | None = None) -> MarketDataSource:
    """The source that reads `path`: ItchFile or LobsterSource. SourceError if the
    file is missing or unreadable or neither format."""
    path = Path(path)
    symbols = list(symbols) if symbols is not None else None  # an iterator: read once
    try:
        with path.open("rb") as f:
            head = f.read(_GZ_HEAD)
            whole = not f.read(1)
    except OSError as exc:
        raise SourceError(path, "file", exc.strerror or str(exc)) from exc
    plain = head[:_HEAD]
    if head[:2] == _GZIP_MAGIC:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper
        try:
            plain = d.decompress(head, _HEAD)
        except zlib.error as exc:
            raise SourceError(path, "content", f"gzip magic but not gzip: {exc}") from exc
        whole = len(plain) < _HEAD and (whole or d.eof)
    else:
        whole = whole and len(head) <= _HEAD
    if looks_like_itch(plain, whole):
        return ItchFile(path, symbols)
    lobster = _LOBSTER_NAME.fullmatch(path.name) is not None or (
        head[:4] == _ZIP_MAGIC and _lobster_zip(path)
    )
    if lobster:
        from hftd.backtest.lobster import LobsterSource

        return LobsterSource(path, symbols)
    what = _describe(head)
    if head[:4] == _ZIP_MAGIC:
        what = f"a zip without a *_message_N.csv member ({what})"
    elif head[:2] == _GZIP_MAGIC:
        what = f"gzip of which {_describe(plain)}"
    raise SourceError(
        path, "content", f"not an ITCH 5.0 BinaryFILE (plain or gzip) nor a LOBSTER file: {what}"
    )
