"""`hftd replay FILE`: the backtest's book-only mode.

Parser -> normalizer -> book builder: the feed path and the books, no
strategies (this checks a file and the books it builds; `hftd backtest` runs
the strategies), no sockets and no rings: the same pure code the daemons run,
so a replay reproduces what the live system's books would have been. A plain
ITCH BinaryFILE is read here, message by message; a gzipped one or a LOBSTER
day through its backtest source (`hftd.backtest.detect`).

The file is input, not trusted: anything wrong with it (framing, a message
that is not ITCH 5.0, an update the books reject) stops the replay with a
`ReplayError` naming the file, the message number (from 1) and the byte
offset of that message's length field, never with a traceback.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from hftd.book.l3 import BookBuilder, BookError
from hftd.feed.normalize import normalize
from hftd.msg.hot import PRICE_SCALE, MarketDataUpdate
from hftd.wire import itch
from hftd.wire.errors import RemoteProtocolError

_U16 = struct.Struct(">H")


class ReplayError(RemoteProtocolError):
    """The file cannot be replayed: `path`, message `number`, at byte `offset`."""

    def __init__(self, path: Path, number: int, offset: int, reason: str) -> None:
        # The reason may quote the file's bytes (a symbol): one printable line.
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)
        super().__init__(f"{path}: message {number} at byte {offset}: {reason}")
        self.path = path
        self.number = number
        self.offset = offset
        self.reason = reason


def replay_file(
    path: Path, symbols: list[str] | None = None, upto: int | None = None
) -> tuple[BookBuilder, int]:
    """Rebuild every book in an ITCH BinaryFILE (its first `upto` messages if given);
    returns the books and the message count. OSError if the file cannot be read,
    ReplayError if its content is wrong."""
    data = memoryview(path.read_bytes())
    builder = BookBuilder(symbols)
    apply = builder.apply_update
    end = len(data)
    pos = seq = 0
    while pos < end:
        if upto is not None and seq >= upto:
            break
        seq += 1
        if pos + 2 > end:
            raise ReplayError(path, seq, pos, "length field cut short (the file ends inside it)")
        (n,) = _U16.unpack_from(data, pos)
        if pos + 2 + n > end:
            left = end - pos - 2
            raise ReplayError(path, seq, pos, f"length {n} runs past the end ({left} bytes left)")
        try:
            apply(normalize(itch.decode(data[pos + 2 : pos + 2 + n]), seq, 0))
        except (RemoteProtocolError, BookError) as exc:
            raise ReplayError(path, seq, pos, str(exc)) from exc
        pos += 2 + n
    return builder, seq


def px(fixed: int) -> str:
    return f"{fixed / PRICE_SCALE:.4f}"


def format_books(builder: BookBuilder, depth: int) -> str:
    """The final BBO and `depth` levels per symbol, as `hftd replay` prints them."""
    lines: list[str] = []
    for sym in sorted(builder.books):
        book = builder.books[sym]
        bid, ask = book.best_bid(), book.best_ask()
        bbo_bid = f"{bid[1]} @ {px(bid[0])}" if bid else "-"
        bbo_ask = f"{ask[1]} @ {px(ask[0])}" if ask else "-"
        lines.append(f"{sym}: BBO bid {bbo_bid} | ask {bbo_ask}  ({len(book.orders)} orders)")
        bids, asks = book.depth("B", depth), book.depth("S", depth)
        lines.append(f"  {'bid qty':>10} {'bid':>12} | {'ask':<12} {'ask qty':<10}")
        for i in range(max(len(bids), len(asks))):
            b = f"{bids[i][1]:>10} {px(bids[i][0]):>12}" if i < len(bids) else " " * 23
            a = f"{px(asks[i][0]):<12} {asks[i][1]:<10}" if i < len(asks) else ""
            lines.append(f"  {b} | {a}")
    return "\n".join(lines)


def replay_source(
    source: Iterable[MarketDataUpdate], symbols: list[str] | None = None
) -> tuple[BookBuilder, int]:
    """Rebuild every book from a backtest source's updates; the books and the count.
    SourceError (naming the update) if the books reject one."""
    from hftd.backtest.source import SourceError

    builder = BookBuilder(symbols)
    path = Path(getattr(source, "path", "<source>"))
    n = 0
    for n, u in enumerate(source, 1):
        try:
            builder.apply_update(u)
        except BookError as exc:
            raise SourceError(path, f"update {n} (sequence {u.seq})", str(exc)) from exc
    return builder, n
