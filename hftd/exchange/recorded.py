"""A recorded day as the ITCH 5.0 messages the venue publishes, streamed and paced.

`exchange.md_file` with `md_file_model = "queue"` names any file
`hftd.backtest.detect.open_source` reads: a NASDAQ ITCH 5.0 BinaryFILE (plain or
gzip) or a LOBSTER day. `RecordedMarket` turns it into ITCH 5.0 messages:

- ITCH: the file's own messages (those of the configured symbols and the
  market-wide ones, as `ItchFile` keeps them), decoded; one the codec cannot
  read (not ITCH 5.0, or the wrong size) is None, so the venue counts it and
  the positions still count every message;
- LOBSTER: each of the source's updates as the ITCH message it stands for
  (`hftd.exchange.denormalize.to_itch`; None for a cross trade, which the
  source keeps as a sequence number only).

Item i of a `RecordedMarket` is update i of `open_source(path, symbols)`: the
venue journals how many items it played before each of our orders, so the
backtest's queue model can be replayed offline over the same source with our
orders at the same places.

The file is read as it is played (memory stays flat: a NASDAQ day is GBs),
with a look-ahead of at most one batch for the pacing: item i is due
`(ts[i] - ts[0]) / speed` seconds after the start (timestamps going backwards
count as the latest one), `speed` 0 = all at once. A restart skips to the
journal's position by reading the file again up to it (neither format can
seek to a message). A file that cannot be read, is neither format, or turns
out broken part way raises `MdFileError` naming the file and where.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from hftd.backtest.detect import open_source
from hftd.backtest.itch_file import ItchFile
from hftd.backtest.source import SourceError
from hftd.exchange.denormalize import to_itch
from hftd.exchange.mdfile import MdFileError
from hftd.wire import itch
from hftd.wire.errors import RemoteProtocolError

Item = tuple[int, itch.ItchMessage | None]  # (pacing timestamp, the message or None)
_DIGEST_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """sha256 of the file, read in chunks (the journal's identity check)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_DIGEST_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class RecordedMarket:
    """A recorded day's messages, read as they are taken (`take`), paced (`due`)."""

    def __init__(
        self, path: Path | str, symbols: Iterable[str] | None = None, digest: str = ""
    ) -> None:
        self.path = Path(path)
        self.symbols = list(symbols) if symbols is not None else None
        try:
            self.source = open_source(self.path, self.symbols)
            self.digest = digest or file_digest(self.path)
        except SourceError as exc:
            raise MdFileError(str(exc)) from exc
        except OSError as exc:
            raise MdFileError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        self.format = self.source.name
        self.position = 0  # items taken
        self.t0: int | None = None  # the first item's timestamp
        self.exhausted = False  # the file has no more items (some may be ahead still)
        self._ahead: list[Item] = []
        self._items = self._read()

    def fresh(self) -> RecordedMarket:
        """The same file from its start (its digest not computed again)."""
        return RecordedMarket(self.path, self.symbols, self.digest)

    def _read(self) -> Iterator[Item]:
        last = 0
        if isinstance(self.source, ItchFile):
            for raw in self.source.payloads():
                msg: itch.ItchMessage | None
                try:
                    msg = itch.decode(raw)
                except RemoteProtocolError:
                    msg = None  # a known type of the wrong size
                if len(raw) >= 11:
                    last = max(last, int.from_bytes(raw[5:11], "big"))
                yield last, msg
        else:
            for u in self.source:
                last = max(last, u.exch_ts)
                yield last, to_itch(u)

    def _fill(self, n: int) -> None:
        """Read ahead until `n` items are waiting, or the file ends."""
        ahead = self._ahead
        while len(ahead) < n and not self.exhausted:
            try:
                item = next(self._items)
            except StopIteration:
                self.exhausted = True
                break
            except SourceError as exc:
                self.exhausted = True
                raise MdFileError(f"{exc} (after item {self.position + len(ahead)})") from exc
            except OSError as exc:
                self.exhausted = True
                raise MdFileError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
            if self.t0 is None:
                self.t0 = item[0]
            ahead.append(item)

    @property
    def finished(self) -> bool:
        """Every item taken, as far as is known without reading on (`Status`)."""
        return self.exhausted and not self._ahead

    @property
    def done(self) -> bool:
        """Every item taken."""
        if not self._ahead:
            self._fill(1)
        return not self._ahead

    def take(self, n: int) -> list[itch.ItchMessage | None]:
        """The next `n` items (fewer at the end of the file)."""
        self._fill(n)
        items = self._ahead[:n]
        del self._ahead[:n]
        self.position += len(items)
        return [m for _, m in items]

    def skip_to(self, position: int) -> None:
        """Read on to item `position` (a restart from a checkpoint); MdFileError if
        the file ends before it."""
        while self.position < position:
            got = len(self.take(min(position - self.position, 4096)))
            if not got:
                raise MdFileError(f"{self.path}: ends at item {self.position}, before {position}")

    def due(self, elapsed_s: float, speed: float, limit: int) -> int:
        """How many of the next items are due `elapsed_s` after the start (at most
        `limit`; all that are left at speed 0)."""
        if speed <= 0:
            self._fill(limit)
            return min(limit, len(self._ahead))
        n = 0
        while n < limit:
            self._fill(n + 1)
            if len(self._ahead) <= n or self._rel_s(self._ahead[n][0]) > elapsed_s * speed:
                break
            n += 1
        return n

    def wait_s(self, elapsed_s: float, speed: float) -> float:
        """Seconds until the next item is due (0 if it is, or at the end)."""
        if speed <= 0 or self.done:
            return 0.0
        return max(0.0, self._rel_s(self._ahead[0][0]) / speed - elapsed_s)

    def elapsed_at(self, speed: float) -> float:
        """The pacing clock when the next item is due (to resume after a restart)."""
        if speed <= 0 or self.done:
            return 0.0
        return self._rel_s(self._ahead[0][0]) / speed

    def _rel_s(self, ts: int) -> float:
        return (ts - (self.t0 or 0)) / 1e9
