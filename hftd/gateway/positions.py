"""Positions and P&L from fills, average-cost method. Pure logic, integers only.

Prices are 4-decimal fixed point; money (cost basis, P&L, notional) is
``qty * price`` in the same units ($1.00 = 10_000).

Exactness. A position keeps its cost basis as an exact integer sum (signed:
positive long, negative short), not an average price. Closing part of a
position removes the same fraction of the basis, ``cost * closed / |qty|``,
rounded half-to-even to a whole unit ($0.0001); the rounding residue stays in
the basis of the shares still held, and closing the rest removes the basis
exactly. So:
- realized - cost basis == cash received - cash paid, exactly, always;
- realized + unrealized == what the fills and the mark say, exactly: only the
  split between realized and unrealized can differ from exact average-cost
  arithmetic, by at most 0.5 unit per reducing fill, and by nothing once flat.
`avg_price` (cost / qty) is a float for display only.

Fill handling (fill side and qty against the current signed position):
- flat or same direction: shares added at the fill price;
- opposite direction, qty <= |position|: reduce or close, realizing
  ``(fill price - avg price) * qty`` (negated for a short);
- opposite direction, qty > |position|: flip: close everything (realizing),
  then open the remainder at the fill price.

The mark of a symbol is the latest `set_mark` price (BBO mid or last trade,
the caller chooses), else the latest fill price.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Final

from hftd.msg.status import BookSnapshot as BookSnapshot
from hftd.msg.status import PositionSnapshot as PositionSnapshot

BUY: Final = "B"
SELL: Final = "S"


def _scale(value: int, num: int, den: int) -> int:
    """round(value * num / den), half to even, symmetric in the sign of `value`."""
    q, r = divmod(abs(value) * num, den)
    if 2 * r > den or (2 * r == den and q % 2 == 1):
        q += 1
    return q if value >= 0 else -q


class Position:
    """A signed position in one symbol with its exact cost basis and realized P&L."""

    __slots__ = ("bought", "cost", "fills", "last_fill_price", "qty", "realized", "sold", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.qty = 0  # signed shares
        self.cost = 0  # signed cost basis of the open shares (fixed-point dollars)
        self.realized = 0
        self.bought = 0
        self.sold = 0
        self.fills = 0
        self.last_fill_price: int | None = None

    @property
    def avg_price(self) -> float:
        """Average entry price in 4dp units (float, for display); 0.0 when flat."""
        return self.cost / self.qty if self.qty else 0.0

    def unrealized(self, mark_price: int) -> int:
        """P&L of the open shares at `mark_price` (fixed-point dollars)."""
        return self.qty * mark_price - self.cost

    def on_fill(self, side: str, qty: int, price: int) -> int:
        """Apply a fill; return the P&L it realized (0 when it only adds)."""
        if qty <= 0:
            raise ValueError(f"fill qty must be > 0, got {qty}")
        if price <= 0:
            raise ValueError(f"fill price must be > 0, got {price}")
        if side == BUY:
            self.bought += qty
            signed = qty
        elif side == SELL:
            self.sold += qty
            signed = -qty
        else:
            raise ValueError(f"side must be 'B' or 'S', got {side!r}")
        self.fills += 1
        self.last_fill_price = price
        held = self.qty
        if held == 0 or (held > 0) == (signed > 0):  # open or add
            self.qty = held + signed
            self.cost += signed * price
            return 0
        size = abs(held)
        direction = 1 if held > 0 else -1
        closed = min(qty, size)
        removed = self.cost if closed == size else _scale(self.cost, closed, size)
        pnl = direction * closed * price - removed
        self.realized += pnl
        self.cost -= removed
        self.qty = held - direction * closed
        rest = qty - closed
        if rest:  # flip: the remainder opens at the fill price
            self.qty = -direction * rest
            self.cost = -direction * rest * price
        return pnl

    def snapshot(self, mark: int | None) -> PositionSnapshot:
        return PositionSnapshot(
            symbol=self.symbol,
            qty=self.qty,
            avg_price=self.avg_price,
            cost_basis=self.cost,
            realized=self.realized,
            mark=mark,
            unrealized=0 if mark is None else self.unrealized(mark),
            bought=self.bought,
            sold=self.sold,
            fills=self.fills,
        )


class PositionBook:
    """Positions for every symbol, their marks, and account totals.

    Totals of realized and unrealized P&L are maintained incrementally, so
    `total()` (fed to `RiskEngine.set_pnl` on every fill and mark) is O(1).
    The gateway's control thread reads it (Status) while its hot loop trades:
    whatever walks the positions walks a `dict.copy()` (see `RiskEngine.utilisation`).
    """

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}
        self._marks: dict[str, int] = {}  # set_mark prices
        self._unreal: dict[str, int] = {}  # per symbol, at its current mark
        self._realized_total = 0
        self._unreal_total = 0

    def position(self, symbol: str) -> Position:
        """The position in `symbol` (created flat on first use)."""
        pos = self._positions.get(symbol)
        if pos is None:
            pos = self._positions[symbol] = Position(symbol)
        return pos

    def qty(self, symbol: str) -> int:
        """The net shares in `symbol` (0 if never traded; nothing is created)."""
        pos = self._positions.get(symbol)
        return pos.qty if pos is not None else 0

    def symbols(self) -> list[str]:
        return sorted(self._positions.copy())

    def mark(self, symbol: str) -> int | None:
        """The latest `set_mark` price, else the latest fill price, else None."""
        m = self._marks.get(symbol)
        if m is not None:
            return m
        pos = self._positions.get(symbol)
        return None if pos is None else pos.last_fill_price

    def on_fill(self, symbol: str, side: str, qty: int, price: int) -> int:
        """Apply a fill; return the P&L it realized."""
        pnl = self.position(symbol).on_fill(side, qty, price)
        self._realized_total += pnl
        self._revalue(symbol)
        return pnl

    def rebuild(self, symbol: str, fills: Iterable[tuple[str, int, int]]) -> None:
        """Recompute `symbol`'s position from its fills (side, qty, price), in order.

        For a fill the venue broke or corrected: applying an opposite fill would
        not restore the cost basis nor the realized P&L; replaying the others does,
        exactly (and the fill count and last fill price with them).
        """
        old = self._positions.get(symbol)
        pos = Position(symbol)
        for side, qty, price in fills:
            pos.on_fill(side, qty, price)
        self._realized_total += pos.realized - (old.realized if old is not None else 0)
        self._positions[symbol] = pos
        self._revalue(symbol)

    def set_mark(self, symbol: str, price: int) -> None:
        """Mark `symbol` at `price` (BBO mid or last trade, 4dp)."""
        if price <= 0:
            raise ValueError(f"mark price must be > 0, got {price}")
        self._marks[symbol] = price
        if symbol in self._positions:
            self._revalue(symbol)

    def realized(self) -> int:
        return self._realized_total

    def unrealized(self) -> int:
        return self._unreal_total

    def total(self) -> int:
        """Realized + unrealized P&L, fixed-point dollars."""
        return self._realized_total + self._unreal_total

    def gross_shares(self) -> int:
        return sum(abs(p.qty) for p in self._positions.copy().values())

    def net_shares(self) -> int:
        return sum(p.qty for p in self._positions.copy().values())

    def gross_notional(self) -> int:
        """Sum of |qty| * mark (a position is always marked: at worst its last fill)."""
        return sum(abs(p.qty) * (self.mark(s) or 0) for s, p in self._positions.copy().items())

    def net_notional(self) -> int:
        return sum(p.qty * (self.mark(s) or 0) for s, p in self._positions.copy().items())

    def snapshot(self) -> BookSnapshot:
        return BookSnapshot(
            positions=tuple(self._positions[s].snapshot(self.mark(s)) for s in self.symbols()),
            realized=self._realized_total,
            unrealized=self._unreal_total,
            total=self.total(),
            gross_shares=self.gross_shares(),
            net_shares=self.net_shares(),
            gross_notional=self.gross_notional(),
            net_notional=self.net_notional(),
        )

    def _revalue(self, symbol: str) -> None:
        mark = self.mark(symbol)
        new = 0 if mark is None else self._positions[symbol].unrealized(mark)
        self._unreal_total += new - self._unreal.get(symbol, 0)
        self._unreal[symbol] = new


class FillLog:
    """Every fill of the day, in order: (match number, symbol, side, qty, price).

    Kept so that a fill the venue breaks or corrects, however old, can be taken
    out of its symbol's position exactly (`PositionBook.rebuild`: average-cost
    P&L depends on the order of every fill, so no summary would do). It is the
    one thing in the gateway that grows with the day, so it is stored as
    columns of machine integers, ~28 bytes a fill, not a tuple of int objects
    (~200 bytes, plus a symbol string per order: ~9 MB/h at 600 fills/min).
    """

    __slots__ = ("_index", "_key", "_match", "_price", "_qty", "_symbols")

    def __init__(self) -> None:
        self._match = array("Q")  # OUCH match numbers are u64
        self._key = array("I")  # symbol index << 1 | 1 for a sell
        self._qty = array("q")
        self._price = array("q")  # OUCH prices are i64
        self._symbols: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._match)

    def append(self, match: int, symbol: str, side: str, qty: int, price: int) -> None:
        """Record one fill (`side` "B" or "S")."""
        idx = self._index.get(symbol)
        if idx is None:
            idx = self._index[symbol] = len(self._symbols)
            self._symbols.append(symbol)
        self._match.append(match)
        self._key.append(idx << 1 | (side != BUY))
        self._qty.append(qty)
        self._price.append(price)

    def find(self, match: int) -> int:
        """The index of the latest fill with this match number, or -1."""
        m = self._match
        for i in range(len(m) - 1, -1, -1):
            if m[i] == match:
                return i
        return -1

    def __getitem__(self, i: int) -> tuple[int, str, str, int, int]:
        key = self._key[i]
        side = SELL if key & 1 else BUY
        return self._match[i], self._symbols[key >> 1], side, self._qty[i], self._price[i]

    def correct(self, i: int, qty: int, price: int) -> None:
        """Fill `i` now stands at `qty` shares and `price` (a trade correction)."""
        self._qty[i] = qty
        self._price[i] = price

    def __delitem__(self, i: int) -> None:
        """Fill `i` never happened (a broken trade)."""
        del self._match[i]
        del self._key[i]
        del self._qty[i]
        del self._price[i]

    def of_symbol(self, symbol: str) -> list[tuple[str, int, int]]:
        """`symbol`'s fills as (side, qty, price), in order: what `rebuild` takes."""
        idx = self._index.get(symbol)
        if idx is None:
            return []
        return [
            (SELL if k & 1 else BUY, q, p)
            for k, q, p in zip(self._key, self._qty, self._price, strict=True)
            if k >> 1 == idx
        ]
