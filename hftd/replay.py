"""`hftd replay FILE`: the feed path driven from an ITCH BinaryFILE.

Parser -> normalizer -> book builder (-> strategies, when configured), with
no sockets and no rings: the same pure code the daemons run, so a replay
reproduces what the live system would have seen.
"""

from __future__ import annotations

from pathlib import Path

from hftd.book.l3 import BookBuilder
from hftd.feed.normalize import normalize
from hftd.wire import itch


def replay_file(
    path: Path, symbols: list[str] | None = None, upto: int | None = None
) -> tuple[BookBuilder, int]:
    """Rebuild every book in an ITCH BinaryFILE (its first `upto` messages if given);
    returns the books and the message count."""
    builder = BookBuilder(symbols)
    seq = 0
    for seq, raw in enumerate(itch.iter_binary_file(path.read_bytes()), start=1):
        if upto is not None and seq > upto:
            return builder, upto
        builder.apply_update(normalize(itch.decode(raw), seq, 0))
    return builder, seq


def px(fixed: int) -> str:
    return f"{fixed / 10_000:.4f}"


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
