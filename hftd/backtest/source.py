"""The one interface of a recorded market-data feed (pure, streamed).

A source yields the live feed's own normalized messages
(`hftd.msg.hot.MarketDataUpdate`), in the order the venue sent them, so that
the book builder, the strategies, risk's market view and the queue model
read a file exactly as they read the live feed. Whatever the file's format:

- `seq` numbers the updates yielded, from 1, gap-free (a filter that skips
  other symbols' messages does not leave gaps);
- `exch_ts` is the venue's time of the event, nanoseconds since midnight;
- `t1` equals `exch_ts` (the backtest's clock is the data's; its latency
  model adds the feed's delay);
- a symbol is announced by an MD_DIRECTORY update (its locate code) before
  any update that names that locate;
- memory stays flat whatever the file's size: the file is read in chunks.

A file whose content is wrong raises `SourceError` naming the file, the
message number and the byte offset or line: never a traceback from inside.
A recorded crypto or other feed is added by writing one more class with
`name`, `path` and `__iter__`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from hftd.msg.hot import MarketDataUpdate


class SourceError(ValueError):
    """A recorded file that cannot be read as its format: where and why."""

    def __init__(self, path: Path | str, where: str, reason: str) -> None:
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)
        super().__init__(f"{path}: {where}: {reason}")
        self.path = Path(path)
        self.where = where
        self.reason = reason


class MarketDataSource(Protocol):
    """A recorded feed, read from its start each time it is iterated."""

    name: str  # what the data is, for summaries ("ITCH 5.0 BinaryFILE", "LOBSTER")
    path: Path  # the file (or the first of its files)

    def __iter__(self) -> Iterator[MarketDataUpdate]: ...
