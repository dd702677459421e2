"""`hftd.gateway.positions`: hand-computed sequences, and a brute-force average-cost reference."""

from __future__ import annotations

from fractions import Fraction

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftd.gateway.positions import BookSnapshot, Position, PositionBook, PositionSnapshot

D = 10_000  # $1.00 in 4dp units


def px(dollars: float) -> int:
    return round(dollars * D)


# --- hand-computed sequences --------------------------------------------------------------

# (side, qty, price $) -> expected (qty, cost basis, realized by this fill), all in $ where money
SEQUENCES = {
    "long: add, reduce, close": [
        ("B", 100, 100.00, 100, 10_000.00, 0.00),
        ("B", 100, 102.00, 200, 20_200.00, 0.00),  # avg 101
        ("S", 50, 103.00, 150, 15_150.00, 100.00),  # (103 - 101) x 50
        ("S", 150, 99.00, 0, 0.00, -300.00),  # (99 - 101) x 150
    ],
    "short: open, cover part, add, cover all": [
        ("S", 100, 50.00, -100, -5_000.00, 0.00),
        ("B", 40, 48.00, -60, -3_000.00, 80.00),  # (50 - 48) x 40
        ("S", 40, 45.00, -100, -4_800.00, 0.00),  # avg 48
        ("B", 100, 49.50, 0, 0.00, -150.00),  # (48 - 49.50) x 100
    ],
    "long flips short and back": [
        ("B", 100, 10.00, 100, 1_000.00, 0.00),
        ("S", 250, 12.00, -150, -1_800.00, 200.00),  # close 100 (+2 each), open 150 short @ 12
        ("B", 200, 11.00, 50, 550.00, 150.00),  # cover 150 (+1 each), open 50 long @ 11
        ("S", 50, 11.00, 0, 0.00, 0.00),
    ],
    "short flips long": [
        ("S", 30, 20.00, -30, -600.00, 0.00),
        ("B", 50, 21.00, 20, 420.00, -30.00),
    ],
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_sequence(name: str) -> None:
    p = Position("AAPL")
    realized = 0
    for side, qty, price, want_qty, want_cost, want_pnl in SEQUENCES[name]:
        pnl = p.on_fill(side, qty, px(price))
        realized += pnl
        assert (p.qty, p.cost, pnl) == (want_qty, px(want_cost), px(want_pnl))
        assert p.realized == realized
        assert p.qty == p.bought - p.sold


def test_avg_price_and_unrealized() -> None:
    p = Position("AAPL")
    p.on_fill("B", 100, px(100))
    p.on_fill("B", 100, px(102))
    assert p.avg_price == px(101)
    assert p.unrealized(px(105)) == px(800)  # (105 - 101) x 200
    p.on_fill("S", 300, px(104))  # flips: +600 realized, short 100 @ 104
    assert p.avg_price == px(104)
    assert p.unrealized(px(105)) == -px(100)
    assert p.realized == px(600)
    p.on_fill("B", 100, px(103))
    assert (p.qty, p.avg_price, p.unrealized(px(1))) == (0, 0.0, 0)


def test_rounding_stays_in_the_basis_and_total_is_exact() -> None:
    p = Position("X")
    p.on_fill("B", 1, 10_001)
    p.on_fill("B", 2, 10_000)  # cost 30_001 for 3: avg 10_000.333...
    assert p.on_fill("S", 1, 10_000) == 0  # basis removed: round(10_000.33) = 10_000
    assert p.cost == 20_001  # the residue stays with the shares still held
    assert p.unrealized(10_000) == -1
    assert p.on_fill("S", 2, 10_000) == -1  # the rest removes the basis exactly
    assert p.realized == 30_000 - 30_001  # exactly the cash


def test_rounding_is_half_to_even() -> None:
    p = Position("X")
    p.on_fill("B", 1, 1)
    p.on_fill("B", 1, 2)  # cost 3 for 2
    assert p.on_fill("S", 1, 2) == 0  # removes round(1.5) = 2
    p2 = Position("X")
    p2.on_fill("B", 1, 2)
    p2.on_fill("B", 1, 3)  # cost 5 for 2
    assert p2.on_fill("S", 1, 3) == 1  # removes round(2.5) = 2
    p3 = Position("X")  # short mirrors long
    p3.on_fill("S", 1, 2)
    p3.on_fill("S", 1, 3)
    assert p3.on_fill("B", 1, 3) == -1


@pytest.mark.parametrize(
    ("side", "qty", "price"), [("B", 0, 10), ("S", -1, 10), ("B", 1, 0), ("X", 1, 10)]
)
def test_invalid_fill_raises(side: str, qty: int, price: int) -> None:
    p = Position("X")
    with pytest.raises(ValueError):
        p.on_fill(side, qty, price)
    assert (p.qty, p.fills) == (0, 0)


# --- the book -----------------------------------------------------------------------------


def test_book_totals_and_exposure() -> None:
    b = PositionBook()
    assert b.on_fill("AAPL", "B", 100, px(100)) == 0
    assert b.on_fill("IBM", "S", 50, px(200)) == 0
    assert b.mark("AAPL") == px(100)  # no mark yet: the last fill
    assert b.mark("MSFT") is None
    assert b.total() == 0
    b.set_mark("AAPL", px(101))
    b.set_mark("IBM", px(198))
    b.set_mark("MSFT", px(300))  # marks for flat symbols are kept, cost nothing
    assert b.unrealized() == px(100 + 100)
    assert b.on_fill("AAPL", "S", 40, px(103)) == px(120)
    assert b.on_fill("AAPL", "B", 10, px(50)) == 0
    assert b.mark("AAPL") == px(101)  # set_mark wins over later fills
    assert b.realized() == px(120)
    # AAPL 70 with cost 60 x 100 + 10 x 50 = 6_500, at 101: +570; IBM +100
    assert b.unrealized() == px(570 + 100)
    assert b.total() == px(120 + 670)
    assert (b.gross_shares(), b.net_shares()) == (120, 20)
    assert b.gross_notional() == 70 * px(101) + 50 * px(198)
    assert b.net_notional() == 70 * px(101) - 50 * px(198)
    with pytest.raises(ValueError):
        b.set_mark("AAPL", 0)


def test_snapshot() -> None:
    b = PositionBook()
    b.on_fill("MSFT", "S", 10, px(300))
    b.on_fill("AAPL", "B", 3, px(10))
    b.on_fill("AAPL", "B", 1, px(11))
    b.set_mark("AAPL", px(12))
    snap = b.snapshot()
    assert [p.symbol for p in snap.positions] == ["AAPL", "MSFT"]
    aapl = snap.positions[0]
    assert aapl == PositionSnapshot(
        symbol="AAPL",
        qty=4,
        avg_price=px(10.25),
        cost_basis=px(41),
        realized=0,
        mark=px(12),
        unrealized=px(7),
        bought=4,
        sold=0,
        fills=2,
    )
    assert (snap.realized, snap.unrealized, snap.total) == (0, px(7), px(7))
    assert (snap.gross_shares, snap.net_shares) == (14, -6)
    wire = msgspec.msgpack.encode(snap)
    assert msgspec.msgpack.decode(wire, type=BookSnapshot) == snap
    with pytest.raises(AttributeError):
        snap.total = 0  # type: ignore[misc]


# --- property: the book against a brute-force average-cost recomputation -----------------

SYMS = ("AAPL", "IBM")


def average_cost(fills: list[tuple[str, int, int]]) -> tuple[int, Fraction, Fraction]:
    """One symbol's (qty, avg price, realized) by exact average-cost arithmetic.

    Written without looking at the book's code: exact fractions, no cost basis,
    no rounding. A flip closes the old position at the fill price and opens the
    remainder at the fill price.
    """
    qty, avg, realized = 0, Fraction(0), Fraction(0)
    for side, q, p in fills:
        signed = q if side == "B" else -q
        if qty == 0 or (qty > 0) == (signed > 0):
            avg = (avg * abs(qty) + p * q) / (abs(qty) + q)
            qty += signed
            continue
        closed = min(q, abs(qty))
        direction = 1 if qty > 0 else -1
        realized += (p - avg) * closed * direction
        qty -= direction * closed
        if qty == 0:
            avg = Fraction(0)
        if q > closed:
            qty, avg = -direction * (q - closed), Fraction(p)
    return qty, avg, realized


def reference_total(fills: list[tuple[str, str, int, int]], marks: dict[str, int]) -> Fraction:
    """Realized + unrealized over every symbol, recomputed from all the fills."""
    total = Fraction(0)
    for sym in marks:
        qty, avg, realized = average_cost([(sd, q, p) for s, sd, q, p in fills if s == sym])
        total += realized + (marks[sym] - avg) * qty
    return total


_fill = st.tuples(
    st.just("fill"),
    st.sampled_from(SYMS),
    st.sampled_from("BS"),
    st.one_of(st.integers(1, 1_000), st.sampled_from([100, 200, 300])),
    st.integers(1, 3_000_000),
)
_mark = st.tuples(
    st.just("mark"), st.sampled_from(SYMS), st.just(""), st.just(0), st.integers(1, 3_000_000)
)


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(st.lists(st.one_of(_fill, _fill, _mark), max_size=60))
def test_book_matches_average_cost_reference(events: list[tuple[str, str, str, int, int]]) -> None:
    b = PositionBook()
    fills: list[tuple[str, str, int, int]] = []
    set_marks: dict[str, int] = {}
    cash = 0
    for kind, sym, side, qty, price in events:
        if kind == "mark":
            b.set_mark(sym, price)
            set_marks[sym] = price
            continue
        b.on_fill(sym, side, qty, price)
        fills.append((sym, side, qty, price))
        cash += -qty * price if side == "B" else qty * price
        # the mark: the last set_mark, else the last fill
        marks = {s: set_marks.get(s, p) for s, _, _, p in fills}
        # realized + unrealized equals exact average-cost arithmetic, exactly
        assert b.total() == reference_total(fills, marks)
        # ... and the cash identity: P&L = cash + the shares held, at the mark
        held = {s: b.position(s).qty for s in marks}
        assert b.total() == cash + sum(held[s] * marks[s] for s in marks)
        # conservation of shares
        for s in marks:
            bought = sum(q for f_s, f_side, q, _ in fills if f_s == s and f_side == "B")
            sold = sum(q for f_s, f_side, q, _ in fills if f_s == s and f_side == "S")
            pos = b.position(s)
            assert pos.qty == bought - sold == pos.bought - pos.sold
            assert pos.qty == average_cost([(sd, q, p) for f_s, sd, q, p in fills if f_s == s])[0]
        assert b.net_shares() == sum(held.values())
        assert b.gross_shares() == sum(abs(q) for q in held.values())
        # the incremental totals equal a recomputation from the positions
        snap = b.snapshot()
        assert snap.realized == sum(p.realized for p in snap.positions)
        assert snap.unrealized == sum(p.unrealized for p in snap.positions)
        assert snap.total == b.realized() + b.unrealized()


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("BS"), st.integers(1, 50), st.integers(1, 99)), max_size=40)
)
def test_realized_split_is_within_rounding(fills: list[tuple[str, int, int]]) -> None:
    """Tiny prices and sizes make fractional averages (and so rounding) frequent.

    Rounding moves at most half a unit per partial reduce between realized and
    unrealized, and nothing once the position is flat.
    """
    p = Position("X")
    partial_reduces = 0
    for i, (side, qty, price) in enumerate(fills):
        before = p.qty
        p.on_fill(side, qty, price)
        if before and (before > 0) != (side == "B") and qty < abs(before):
            partial_reduces += 1
        exact_qty, exact_avg, exact_realized = average_cost(fills[: i + 1])
        assert p.qty == exact_qty
        assert abs(p.realized - exact_realized) <= Fraction(partial_reduces, 2)
        assert p.realized - exact_realized == p.cost - exact_avg * exact_qty
        if p.qty == 0:
            assert p.realized == exact_realized


@given(
    st.lists(
        st.tuples(st.sampled_from("BS"), st.integers(1, 500), st.integers(1, 3000)),
        min_size=1,
        max_size=25,
    ),
    st.data(),
)
def test_rebuild_without_one_fill_is_as_if_it_never_happened(
    fills: list[tuple[str, int, int]], data: st.DataObject
) -> None:
    """A broken trade: the book rebuilt from the other fills equals a book that never
    saw it (qty, cost basis, realized, fills, totals), whatever came before and after."""
    broken = data.draw(st.integers(0, len(fills) - 1))
    book = PositionBook()
    book.on_fill("Y", "B", 10, 50)  # another symbol's P&L stays in the totals
    for side, qty, price in fills:
        book.on_fill("X", side, qty, price)
    book.set_mark("X", 1500)
    rest = fills[:broken] + fills[broken + 1 :]
    book.rebuild("X", rest)
    ref = PositionBook()
    ref.on_fill("Y", "B", 10, 50)
    ref.position("X")  # traded today: listed, flat if every fill of it was broken
    for side, qty, price in rest:
        ref.on_fill("X", side, qty, price)
    ref.set_mark("X", 1500)
    assert book.snapshot() == ref.snapshot()
