"""LOBSTER message + orderbook files as the live feed's updates (pure, streamed).

LOBSTER (lobsterdata.com) rebuilds a NASDAQ day from TotalView-ITCH and writes
two CSV files: `*_message_N.csv`, one event per line (time, type, order id,
size, price, direction), and `*_orderbook_N.csv`, the N best levels per side
after each event. The message file only reports events that touch those N
levels, so an order that rested deeper, or before the file starts, is named by
a cancel, delete or execution without ever having been added. `LobsterSource`
turns the pair into the updates the live feed would have normalized from the
same ITCH messages, and keeps the stream consistent for `BookBuilder`:

- the book before the first event is the first orderbook row with the first
  event undone (row i is the book *after* event i): one synthetic order per
  level, added before the first event, so that event applies as it did live;
- an event naming an order the stream never added is taken from the synthetic
  orders at its price and side; what they cannot cover is first added (under
  the event's own id when it is free: the deeper order that became visible),
  then the event applies. Counted in `adjustments` / `synthetic_adds`;
- after each event (each `check_every`-th with N > 0) the book's N best levels
  are compared with the orderbook row; a difference within the visible levels
  is mended with synthetic adds, cancels and deletes (`corrections`).

Beyond the N levels the book is what the stream has seen: an order that went
deeper stays until the file shows its level again (the AMZN day ends with
~830 orders held, ~390 ask levels, most of them long gone in fact).

Synthetic orders have references from `SYNTHETIC_REF_BASE` up: positive, u64,
and far above any ITCH reference. Execution and trade updates carry a match
number counted from 1 (ITCH carries the venue's; LOBSTER has none).
Message types: 1 add, 2 cancel, 3 delete, 4 execution (MD_EXECUTE with its
price, as ITCH C), 5 hidden execution (MD_TRADE, as ITCH P: the book does not
change), 6 cross trade (MD_SEQUENCE "Q": what the feed makes of ITCH Q),
7 halt indicator (MD_TRADING: price -1 halted "H", 0 quotation only "Q",
1 trading "T").
"""

from __future__ import annotations

import bisect
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import zip_longest
from pathlib import Path
from typing import IO

from hftd.backtest.source import SourceError
from hftd.book.l3 import L3Book
from hftd.msg.hot import (
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_SEQUENCE,
    MD_SYSTEM,
    MD_TRADE,
    MD_TRADING,
    MarketDataUpdate,
)

LOCATE = 1  # the one symbol's locate code (a LOBSTER file holds one symbol)
ROUND_LOT = 100  # MD_DIRECTORY qty, as ITCH R's round lot size
SYNTHETIC_REF_BASE = 1 << 62  # first synthetic order reference (u64, > any ITCH ref)
DUMMY_ASK = 9_999_999_999  # LOBSTER's price of an empty ask level (size 0)
DUMMY_BID = -9_999_999_999
_HALT_STATE = {-1: "H", 0: "Q", 1: "T"}  # type 7's price -> ITCH H trading state
_NAME = re.compile(r"(?P<symbol>[^_/\\]+)_\d{4}-\d{2}-\d{2}_\d+_\d+_message_(?P<levels>\d+)\.csv")
_ADD, _CANCEL, _DELETE, _EXEC, _HIDDEN, _CROSS, _HALT = 1, 2, 3, 4, 5, 6, 7
_NS = 1_000_000_000


def parse_time(text: str) -> int:
    """Seconds after midnight as decimal text -> ns, exactly (no float, so every
    run agrees): LOBSTER writes 3 to 12 decimals; beyond 9 it rounds half up."""
    sec, dot, frac = text.partition(".")
    if not sec.isdigit() or (dot and not frac.isdigit()):
        raise ValueError(f"time {text!r} is not seconds after midnight")
    ns = int(frac[:9].ljust(9, "0")) if frac else 0
    if len(frac) > 9 and frac[9] >= "5":
        ns += 1
    return int(sec) * _NS + ns


class _Replay:
    """One pass over the files: the book the stream has built so far, and the
    updates of the current event (`out`, numbered by `seq`)."""

    def __init__(self, symbol: str, levels: int) -> None:
        self.symbol = symbol
        self.levels = levels
        self.book = L3Book(symbol)
        self.orders = self.book.orders
        # (side, price) -> the level's orders, oldest first (real and synthetic):
        # what corrections and unknown ids take shares from.
        self.at: dict[tuple[str, int], dict[int, None]] = {}
        self.next_ref = SYNTHETIC_REF_BASE
        self.match = 0
        self.seq = 0
        self.ts = 0
        self.out: list[MarketDataUpdate] = []
        # The book's N best levels as an orderbook row, and which sides changed since.
        self.row = [DUMMY_ASK, 0, DUMMY_BID, 0] * levels
        self.stale_s = self.stale_b = False
        self.messages = 0
        self.seeded = 0
        self.adjustments = 0
        self.synthetic_adds = 0
        self.corrections = 0

    # --- updates: each is applied to the own book as BookBuilder applies it ----

    def emit(self, kind: int, symbol: str, ref: int, side: str, qty: int, price: int) -> None:
        """One update, numbered; executions and trades get the next match number,
        and system events and sequence-only records locate 0, as the feed's."""
        self.seq += 1
        new_ref = 0
        locate = LOCATE
        if kind in (MD_EXECUTE, MD_TRADE):
            self.match += 1
            new_ref = self.match
        elif kind in (MD_SYSTEM, MD_SEQUENCE):
            locate = 0
        self.out.append(
            MarketDataUpdate(
                self.seq, kind, locate, symbol, ref, side, qty, price, new_ref, self.ts, self.ts
            )
        )

    def add(self, ref: int, side: str, price: int, qty: int) -> None:
        self.book.add(ref, side, price, qty)
        if side == "B":
            self.stale_b = True
        else:
            self.stale_s = True
        key = (side, price)
        refs = self.at.get(key)
        if refs is None:
            self.at[key] = {ref: None}
        else:
            refs[ref] = None
        self.emit(MD_ADD, self.symbol, ref, side, qty, price)

    def add_synthetic(self, side: str, price: int, qty: int) -> None:
        """A synthetic order standing for `qty` shares of orders the stream never saw."""
        ref = self.next_ref
        self.next_ref += 1
        self.add(ref, side, price, qty)

    def take(self, typ: int, ref: int, qty: int, price: int) -> None:
        """Event `typ` takes `qty` shares of an order: an execution at `price`, else a
        cancel, or a delete when it empties the order (ITCH sends D for a full cancel)."""
        side, p, open_ = self.orders[ref]
        if side == "B":
            self.stale_b = True
        else:
            self.stale_s = True
        if qty == open_:
            key = (side, p)
            refs = self.at[key]
            del refs[ref]
            if not refs:
                del self.at[key]
            if typ == _EXEC:
                self.book.reduce(ref, qty)
                self.emit(MD_EXECUTE, "", ref, "", qty, price)
            else:
                self.book.delete(ref)
                self.emit(MD_DELETE, "", ref, "", 0, 0)
        else:
            self.book.reduce(ref, qty)
            if typ == _EXEC:
                self.emit(MD_EXECUTE, "", ref, "", qty, price)
            else:
                self.emit(MD_CANCEL, "", ref, "", qty, 0)

    # --- events ----------------------------------------------------------------

    def event(self, typ: int, ref: int, size: int, price: int, side: str) -> None:
        """One event of type 1 to 4 (add, cancel, delete, execution)."""
        entry = self.orders.get(ref)
        if typ == _ADD:
            if entry is not None:  # the id is live: its earlier order left unseen
                self.adjustments += 1
                self.take(_DELETE, ref, entry[2], 0)
            self.add(ref, side, price, size)
        elif (
            entry is not None
            and entry[1] == price
            and entry[0] == side
            and (size == entry[2] or (size < entry[2] and typ != _DELETE))
        ):
            self.take(typ, ref, size, price)
        else:
            self.irregular(typ, ref, size, price, side, entry)

    def irregular(
        self,
        typ: int,
        ref: int,
        size: int,
        price: int,
        side: str,
        entry: tuple[str, int, int] | None,
    ) -> None:
        """An event the book cannot take as it is: the order is unknown (it rested
        deeper, or before the file starts, or is part of a synthetic level), or
        it has fewer shares than the event."""
        self.adjustments += 1
        rest = size
        if entry is not None and entry[1] == price and entry[0] == side:
            # A delete of another size, or more shares than the order has: the
            # order goes; what it lacks comes from the level's other shares.
            self.take(typ, ref, entry[2], price)
            rest = size - entry[2]
            if rest <= 0:
                return
        rest = self.absorb(typ, side, price, rest)
        if rest:
            # Not even the level has them: an order the file never showed (it
            # rested deeper). Added under the event's own id when that is free.
            self.synthetic_adds += 1
            target = ref
            if ref in self.orders:
                target = self.next_ref
                self.next_ref += 1
            self.add(target, side, price, rest)
            self.take(typ, target, rest, price)

    def absorb(self, typ: int, side: str, price: int, qty: int) -> int:
        """Take up to `qty` from the level's synthetic orders, oldest first; the rest."""
        refs = self.at.get((side, price))
        if refs:
            for s in [r for r in refs if r >= SYNTHETIC_REF_BASE]:
                t = min(qty, self.orders[s][2])
                self.take(typ, s, t, price)
                qty -= t
                if not qty:
                    break
        return qty

    # --- the orderbook file ----------------------------------------------------

    def row_levels(self, row: list[int]) -> tuple[dict[int, int], dict[int, int]]:
        """An orderbook row -> (asks, bids) as {price: size}, empty levels left out."""
        asks: dict[int, int] = {}
        bids: dict[int, int] = {}
        for i in range(0, 4 * self.levels, 4):
            if row[i + 1] > 0:
                asks[row[i]] = row[i + 1]
            if row[i + 3] > 0:
                bids[row[i + 2]] = row[i + 3]
        return asks, bids

    def seed(self, row: list[int], typ: int, size: int, price: int, side: str) -> None:
        """The book before the first event: the first row (the book after it) with
        that event undone, one synthetic order per level."""
        asks, bids = self.row_levels(row)
        levels = bids if side == "B" else asks
        if typ == _ADD:
            left = levels.get(price, 0) - size
            if left > 0:
                levels[price] = left
            else:
                levels.pop(price, None)
        elif typ in (_CANCEL, _DELETE, _EXEC):
            levels[price] = levels.get(price, 0) + size
        for p in sorted(asks):
            self.add_synthetic("S", p, asks[p])
        for p in sorted(bids, reverse=True):
            self.add_synthetic("B", p, bids[p])
        self.seeded = len(asks) + len(bids)

    def top(self) -> list[int]:
        """The book's N best levels laid out as an orderbook row (`row`): only the
        sides changed since the last call are read again."""
        row = self.row
        n = self.levels
        book = self.book
        if self.stale_s:
            self.stale_s = False
            ap = book.ask_prices[:n]
            if len(ap) < n:
                ap += [DUMMY_ASK] * (n - len(ap))
            a = book.asks.get
            row[0::4] = ap
            row[1::4] = [a(p, 0) for p in ap]
        if self.stale_b:
            self.stale_b = False
            bp = book.bid_prices[: -n - 1 : -1]
            if len(bp) < n:
                bp += [DUMMY_BID] * (n - len(bp))
            b = book.bids.get
            row[2::4] = bp
            row[3::4] = [b(p, 0) for p in bp]
        return row

    def correct(self, row: list[int]) -> None:
        """Make the book's visible levels the row's: every price at or better than
        the row's worst level (the whole side when the row shows fewer than N)."""
        asks, bids = self.row_levels(row)
        book = self.book
        for side, want, prices, have in (
            ("S", asks, book.ask_prices, book.asks),
            ("B", bids, book.bid_prices, book.bids),
        ):
            if len(want) < self.levels:
                visible = set(prices)
            elif side == "S":
                visible = set(prices[: bisect.bisect_right(prices, max(want))])
            else:
                visible = set(prices[bisect.bisect_left(prices, min(want)) :])
            for p in sorted(visible | want.keys()):
                h, w = have.get(p, 0), want.get(p, 0)
                if h < w:
                    self.corrections += 1
                    self.add_synthetic(side, p, w - h)
                elif h > w:
                    self.trim(side, p, h - w)

    def trim(self, side: str, price: int, qty: int) -> None:
        """Take `qty` off a level (orders that left unseen while deeper than the
        file shows): its synthetic orders, newest first, then the real order of
        exactly that size if there is one, else the newest real ones."""
        refs = list(self.at[(side, price)])
        real = [r for r in refs if r < SYNTHETIC_REF_BASE]
        exact = [r for r in real if self.orders[r][2] == qty][:1]
        for r in [r for r in reversed(refs) if r >= SYNTHETIC_REF_BASE] + (exact or real[::-1]):
            t = min(qty, self.orders[r][2])
            self.take(_CANCEL, r, t, 0)
            self.corrections += 1
            qty -= t
            if not qty:
                return


class LobsterSource:
    """A LOBSTER day (the zip as distributed, or its message CSV with the
    orderbook CSV beside it) as a `MarketDataSource`.

    `check_every` = 0 (the default) compares the book with every orderbook row,
    so the book equals the file after every event, as the backtest's queue
    model and BBO need (the check formats the book's levels as the row's text
    and compares: about half the time per line); N > 0 reads only every N-th
    row and lets the book drift from the file in between, a deeper order's
    unseen cancel showing as stale shares until the next check. Counters of the latest pass:
    `messages`, `seeded`, `adjustments`, `synthetic_adds`, `corrections`,
    `yielded`.
    """

    name = "LOBSTER"

    def __init__(
        self, path: Path, symbols: Iterable[str] | None = None, check_every: int = 0
    ) -> None:
        self.path = Path(path)
        if check_every < 0:
            raise ValueError(f"check_every must be >= 0, not {check_every}")
        self.check_every = check_every
        if not self.path.is_file():
            raise SourceError(self.path, "file", "not found")
        self._zip = zipfile.is_zipfile(self.path)
        if self._zip:
            try:
                with zipfile.ZipFile(self.path) as zf:
                    names = zf.namelist()
            except (zipfile.BadZipFile, OSError) as exc:
                raise SourceError(self.path, "zip", str(exc)) from None
            found = [n for n in names if _NAME.fullmatch(n.rsplit("/", 1)[-1])]
            if len(found) != 1:
                raise SourceError(
                    self.path,
                    "zip members",
                    f"{len(found)} named SYMBOL_DATE_START_END_message_N.csv, one wanted: "
                    f"{', '.join(names)}",
                )
            self._message = found[0]
            self._orderbook = _orderbook_name(self._message)
            if self._orderbook not in names:
                raise SourceError(
                    self.path, "zip members", f"no orderbook member {self._orderbook}"
                )
            base = self._message.rsplit("/", 1)[-1]
        else:
            base = self.path.name
            if not _NAME.fullmatch(base):
                raise SourceError(
                    self.path, "file name", "neither a zip nor SYMBOL_DATE_START_END_message_N.csv"
                )
            self._message = str(self.path)
            self._orderbook = str(self.path.with_name(_orderbook_name(base)))
            if not Path(self._orderbook).is_file():
                raise SourceError(self.path, "orderbook file", f"{self._orderbook} not found")
        m = _NAME.fullmatch(base)
        assert m is not None
        self.symbol = m["symbol"]
        self.levels = int(m["levels"])
        if self.levels <= 0:
            raise SourceError(self.path, "file name", "0 levels")
        # None or empty: no filter, as BookBuilder and ItchFile read it; one
        # symbol given bare is that symbol, not its letters.
        wanted: set[str] = set()
        if isinstance(symbols, str):
            wanted = {symbols}
        elif symbols is not None:
            wanted = set(symbols)
        self.wanted = not wanted or self.symbol in wanted
        self._replay: _Replay | None = None

    @property
    def messages(self) -> int:
        """Message lines read so far in the latest pass."""
        return self._replay.messages if self._replay else 0

    @property
    def yielded(self) -> int:
        return self._replay.seq if self._replay else 0

    @property
    def seeded(self) -> int:
        """Synthetic orders of the book before the first event (one per level)."""
        return self._replay.seeded if self._replay else 0

    @property
    def adjustments(self) -> int:
        """Events on an order the stream did not hold, or with more shares than it."""
        return self._replay.adjustments if self._replay else 0

    @property
    def synthetic_adds(self) -> int:
        """Adds made up for shares an event took that the level did not show."""
        return self._replay.synthetic_adds if self._replay else 0

    @property
    def corrections(self) -> int:
        """Updates that made the book equal an orderbook row again."""
        return self._replay.corrections if self._replay else 0

    def __iter__(self) -> Iterator[MarketDataUpdate]:
        if not self.wanted:
            return iter(())
        return self._stream()

    def _open(self, stack: ExitStack) -> tuple[IO[str], IO[str]]:
        if self._zip:
            zf = stack.enter_context(zipfile.ZipFile(self.path))
            return (
                stack.enter_context(
                    io.TextIOWrapper(zf.open(self._message), encoding="ascii", newline="")
                ),
                stack.enter_context(
                    io.TextIOWrapper(zf.open(self._orderbook), encoding="ascii", newline="")
                ),
            )
        return (
            stack.enter_context(open(self._message, encoding="ascii", newline="")),
            stack.enter_context(open(self._orderbook, encoding="ascii", newline="")),
        )

    def _fail(self, lineno: int, reason: str, line: str = "") -> SourceError:
        if line:
            reason = f"{reason}: {line.rstrip()!r}"
        return SourceError(self.path, f"message file line {lineno}", reason)

    def _stream(self) -> Iterator[MarketDataUpdate]:
        r = self._replay = _Replay(self.symbol, self.levels)
        width = 4 * self.levels
        fmt = ",".join(["%d"] * width) + "\n"
        every = self.check_every
        out = r.out
        orders = r.orders
        at = r.at
        add = r.book.add
        delete = r.book.delete
        take = r.take
        top = r.top
        symbol = self.symbol
        last = 0
        with ExitStack() as stack:
            mfile, bfile = self._open(stack)
            lineno = 0
            try:
                for lineno, (mline, bline) in enumerate(zip_longest(mfile, bfile), 1):
                    if mline is None or bline is None:
                        raise self._fail(
                            lineno,
                            "the message file ends before the orderbook file"
                            if mline is None
                            else "the orderbook file ends before the message file",
                        )
                    try:
                        t, ty, oid, sz, px, d = mline.split(",")
                        # Most times have 9 decimals: one int() of the digits.
                        if len(t) > 10 and t[-10] == "." and (digits := t[:-10] + t[-9:]).isdigit():
                            ts = int(digits)
                        else:
                            ts = parse_time(t)
                        typ = int(ty)
                        ref = int(oid)
                        size = int(sz)
                        price = int(px)
                        direction = int(d)
                    except ValueError as exc:
                        raise self._fail(lineno, str(exc), mline) from None
                    if ts < last:
                        raise self._fail(lineno, "time before the previous line's", mline)
                    r.ts = last = ts
                    r.messages = lineno
                    if not 1 <= typ <= 7:
                        raise self._fail(lineno, f"event type {typ} (1 to 7 wanted)", mline)
                    if typ != _HALT and (
                        size <= 0
                        or price <= 0
                        or not 0 <= ref < SYNTHETIC_REF_BASE
                        or not (direction == 1 or direction == -1)
                    ):
                        raise self._fail(
                            lineno,
                            "wanted size > 0, price > 0, order id >= 0, direction +-1",
                            mline,
                        )
                    side = "B" if direction == 1 else "S"
                    if lineno == 1:
                        r.emit(MD_SYSTEM, "", 0, "O", 0, 0)  # start of messages
                        r.emit(MD_DIRECTORY, symbol, 0, "", ROUND_LOT, 0)
                        r.seed(self._row(bline, lineno, width), typ, size, price, side)
                    if typ <= _EXEC:
                        entry = orders.get(ref)
                        if entry is None and typ == _ADD:  # r.add, inlined
                            add(ref, side, price, size)
                            if side == "B":
                                r.stale_b = True
                            else:
                                r.stale_s = True
                            key = (side, price)
                            refs = at.get(key)
                            if refs is None:
                                at[key] = {ref: None}
                            else:
                                refs[ref] = None
                            r.seq += 1
                            out.append(
                                MarketDataUpdate(
                                    r.seq, MD_ADD, LOCATE, symbol, ref, side, size, price, 0, ts, ts
                                )
                            )
                        elif (
                            typ == _DELETE
                            and entry is not None
                            and entry[2] == size
                            and entry[1] == price
                            and entry[0] == side
                        ):  # r.take, inlined for the commonest event
                            delete(ref)
                            if side == "B":
                                r.stale_b = True
                            else:
                                r.stale_s = True
                            key = (side, price)
                            refs = at[key]
                            del refs[ref]
                            if not refs:
                                del at[key]
                            r.seq += 1
                            out.append(
                                MarketDataUpdate(
                                    r.seq, MD_DELETE, LOCATE, "", ref, "", 0, 0, 0, ts, ts
                                )
                            )
                        elif (
                            entry is not None
                            and typ != _ADD
                            and entry[1] == price
                            and entry[0] == side
                            and (size == entry[2] or (size < entry[2] and typ != _DELETE))
                        ):
                            take(typ, ref, size, price)
                        else:
                            r.event(typ, ref, size, price, side)
                    elif typ == _HIDDEN:
                        r.emit(MD_TRADE, symbol, ref, side, size, price)
                    elif typ == _HALT:
                        state = _HALT_STATE.get(price)
                        if state is None:
                            raise self._fail(lineno, f"halt price {price} (-1, 0 or 1 wanted)")
                        r.emit(MD_TRADING, symbol, 0, state, 0, 0)
                    else:
                        r.emit(MD_SEQUENCE, "", 0, "Q", 0, 0)  # cross trade: ITCH Q
                    if (not every or lineno % every == 0) and fmt % tuple(top()) != bline:
                        # Not the same text: the same numbers (other line ends,
                        # no last newline) or a book to mend.
                        row = self._row(bline, lineno, width)
                        if top() != row:
                            r.correct(row)
                    yield from out
                    out.clear()
            except (UnicodeDecodeError, zipfile.BadZipFile) as exc:
                # Reading the text: bytes that are not ASCII, or a zip member
                # whose CRC or compressed data is wrong.
                raise SourceError(self.path, f"line {lineno + 1}", str(exc)) from None

    def _row(self, line: str, lineno: int, width: int) -> list[int]:
        try:
            row = [int(x) for x in line.split(",")]
        except ValueError as exc:
            raise SourceError(self.path, f"orderbook file line {lineno}", str(exc)) from None
        if len(row) != width:
            raise SourceError(
                self.path, f"orderbook file line {lineno}", f"{len(row)} fields, {width} wanted"
            )
        return row


def _orderbook_name(message_name: str) -> str:
    """The orderbook file beside a message file (same path, `_orderbook_`)."""
    head, _, tail = message_name.rpartition("_message_")
    return head + "_orderbook_" + tail
