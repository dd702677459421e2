"""Differential tests: `MatchingEngine` against a deliberately naive reference.

The reference below keeps every resting order of every symbol in one plain
list and re-sorts the opposite side by (price, arrival) before every single
match. It implements the rules in `hftd.exchange.engine`'s module docstring
(plus the validation order and the event shapes of the engine's API), with no
shared code and no cleverness, so that a disagreement points at a bug in one
of the two.

Where the docstring is silent the reference copies the engine's documented
API behaviour: validation order (symbol, side, quantity, max size, tif, price,
tick), replacing into a market order is rejected as an invalid price, a
replace's quantity is the new open size (<= 0 is rejected, it is not a cancel),
`OrderReplaced.crossed` is True whenever events for the new order follow (it
trades, or it is IOC), and the order of end-of-day cancels is not compared.

After every operation we check: the same events (accepts, rejects and their
reason codes, fills, cancels, replaces, rests), the same resting book per
symbol (ordered (ref, price, open_qty) per side, best first), the same depth
totals, an uncrossed book, strictly increasing order refs and match numbers,
and conservation of shares per order reference (computed from the engine's
own events, independently of the reference).

Profiles: the default ``engine-ci`` profile is derandomized (fixed seed, no
example database) so CI runs are reproducible and bounded. Set
``HFTD_ENGINE_PROFILE=engine-fuzz`` for a randomized, 10x longer exploration.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftd.exchange.engine import (
    Fill,
    MatchingEngine,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderReplaced,
    OrderRested,
    SymbolRules,
)
from hftd.wire.ouch import (
    CANCEL_IOC,
    CANCEL_SUPERVISORY,
    CANCEL_USER,
    MARKET_PRICE,
    REJECT_INVALID_PRICE,
    REJECT_INVALID_QUANTITY,
    REJECT_INVALID_SIDE,
    REJECT_INVALID_TICK,
    REJECT_INVALID_TIF,
    REJECT_QUANTITY_EXCEEDS_MAX,
    REJECT_UNKNOWN_ORDER,
    REJECT_UNKNOWN_SYMBOL,
    TIF_DAY,
    TIF_GTX,
    TIF_IOC,
)

# --- Hypothesis profiles ------------------------------------------------------------

settings.register_profile(
    "engine-ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# No `derandomize`: a fresh random seed each run, for local bug hunting.
settings.register_profile(
    "engine-fuzz",
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_PROFILE_NAME = os.environ.get("HFTD_ENGINE_PROFILE", "engine-ci")
_PROFILE = settings.get_profile(_PROFILE_NAME)
_SCALE = 10 if _PROFILE_NAME == "engine-fuzz" else 1


def _examples(n: int) -> int:
    return n * _SCALE


# --- the naive reference --------------------------------------------------------------

TICKS = {"AAA": 100, "BBB": 25}
MAX_SIZE = 500
UNKNOWN_SYMBOL = "ZZZ"


@dataclass
class RefOrder:
    ref: int
    arrival: int  # time priority: smaller is older
    owner: str
    user_ref: int
    symbol: str
    side: str  # book side: "B" or "S"
    wire_side: str
    price: int
    qty: int  # open quantity
    tif: str


@dataclass
class RefEngine:
    ticks: dict[str, int]
    max_size: int
    resting: list[RefOrder] = field(default_factory=list)  # every symbol, any order
    next_ref: int = 1
    next_match: int = 1
    clock: int = 0

    # helpers

    def _arrive(self) -> int:
        self.clock += 1
        return self.clock

    def _new_ref(self) -> int:
        ref = self.next_ref
        self.next_ref += 1
        return ref

    def find(self, ref: int) -> RefOrder | None:
        for o in self.resting:
            if o.ref == ref:
                return o
        return None

    def side_queue(self, symbol: str, side: str) -> list[RefOrder]:
        """Resting orders of one side, best first, oldest first at a price."""
        orders = [o for o in self.resting if o.symbol == symbol and o.side == side]
        if side == "B":
            orders.sort(key=lambda o: (-o.price, o.arrival))
        else:
            orders.sort(key=lambda o: (o.price, o.arrival))
        return orders

    def validate(self, symbol: str, side: str, qty: int, price: int, tif: str) -> int | None:
        # Same precedence as the engine's validation.
        if symbol not in self.ticks:
            return REJECT_UNKNOWN_SYMBOL
        if side not in ("B", "S", "T", "E"):
            return REJECT_INVALID_SIDE
        if qty <= 0:
            return REJECT_INVALID_QUANTITY
        if qty > self.max_size:
            return REJECT_QUANTITY_EXCEEDS_MAX
        if tif not in (TIF_DAY, TIF_IOC, TIF_GTX):
            return REJECT_INVALID_TIF
        if price == MARKET_PRICE:
            return None
        if price <= 0 or price > MARKET_PRICE:
            return REJECT_INVALID_PRICE
        if price % self.ticks[symbol] != 0:
            return REJECT_INVALID_TICK
        return None

    @staticmethod
    def _can_trade(aggressor: RefOrder, resting: RefOrder) -> bool:
        if aggressor.price == MARKET_PRICE:
            return True
        if aggressor.side == "B":
            return resting.price <= aggressor.price
        return resting.price >= aggressor.price

    def _would_trade(self, order: RefOrder) -> bool:
        other = "S" if order.side == "B" else "B"
        queue = self.side_queue(order.symbol, other)
        return bool(queue) and self._can_trade(order, queue[0])

    def _match_and_finish(self, order: RefOrder, events: list[tuple]) -> None:
        other = "S" if order.side == "B" else "B"
        while order.qty > 0:
            queue = self.side_queue(order.symbol, other)
            if not queue or not self._can_trade(order, queue[0]):
                break
            resting = queue[0]
            qty = min(order.qty, resting.qty)
            resting.qty -= qty
            order.qty -= qty
            events.append(
                (
                    "fill",
                    self.next_match,
                    order.symbol,
                    resting.price,
                    qty,
                    resting.ref,
                    resting.side,
                    resting.qty,
                    order.ref,
                    order.qty,
                )
            )
            self.next_match += 1
            if resting.qty == 0:
                self.resting.remove(resting)
        if order.qty == 0:
            return
        if order.price == MARKET_PRICE or order.tif == TIF_IOC:
            events.append(("canceled", order.ref, order.qty, 0, CANCEL_IOC, False))
            order.qty = 0
            return
        self.resting.append(order)
        events.append(("rested", order.ref, order.price, order.qty))

    # commands

    def enter(
        self, owner: str, user_ref: int, symbol: str, side: str, qty: int, price: int, tif: str
    ) -> list[tuple]:
        reason = self.validate(symbol, side, qty, price, tif)
        if reason is not None:
            return [("rejected", reason)]
        book_side = "B" if side == "B" else "S"
        order = RefOrder(
            self._new_ref(),
            self._arrive(),
            owner,
            user_ref,
            symbol,
            book_side,
            side,
            price,
            qty,
            tif,
        )
        events: list[tuple] = [
            ("accepted", order.ref, owner, user_ref, symbol, side, price, qty, tif)
        ]
        self._match_and_finish(order, events)
        return events

    def cancel(self, ref: int, open_qty: int) -> list[tuple]:
        order = self.find(ref)
        if order is None:
            return [("rejected", REJECT_UNKNOWN_ORDER)]
        if open_qty < 0:
            return [("rejected", REJECT_INVALID_QUANTITY)]
        if open_qty >= order.qty:
            return []
        cut = order.qty - open_qty
        order.qty = open_qty
        if open_qty == 0:
            self.resting.remove(order)
        return [("canceled", ref, cut, open_qty, CANCEL_USER, True)]

    def replace(
        self, ref: int, new_user_ref: int, qty: int, price: int, tif: str | None
    ) -> list[tuple]:
        order = self.find(ref)
        if order is None:
            return [("rejected", REJECT_UNKNOWN_ORDER)]
        new_tif = order.tif if tif is None else tif
        if price == MARKET_PRICE:
            return [("rejected", REJECT_INVALID_PRICE)]
        reason = self.validate(order.symbol, order.wire_side, qty, price, new_tif)
        if reason is not None:
            return [("rejected", reason)]
        old_qty = order.qty
        orig_user_ref = order.user_ref
        if price == order.price and qty < old_qty and new_tif != TIF_IOC:
            order.qty = qty
            order.user_ref = new_user_ref
            order.tif = new_tif
            return [
                (
                    "replaced",
                    ref,
                    old_qty,
                    ref,
                    new_user_ref,
                    price,
                    qty,
                    new_tif,
                    orig_user_ref,
                    True,
                    False,
                )
            ]
        self.resting.remove(order)
        new = RefOrder(
            self._new_ref(),
            self._arrive(),
            order.owner,
            new_user_ref,
            order.symbol,
            order.side,
            order.wire_side,
            price,
            qty,
            new_tif,
        )
        if not self._would_trade(new) and new_tif != TIF_IOC:
            self.resting.append(new)
            return [
                (
                    "replaced",
                    ref,
                    old_qty,
                    new.ref,
                    new_user_ref,
                    price,
                    qty,
                    new_tif,
                    orig_user_ref,
                    False,
                    False,
                )
            ]
        events: list[tuple] = [
            (
                "replaced",
                ref,
                old_qty,
                new.ref,
                new_user_ref,
                price,
                qty,
                new_tif,
                orig_user_ref,
                False,
                True,
            )
        ]
        self._match_and_finish(new, events)
        return events

    def end_of_day(self) -> list[tuple]:
        events = []
        for order in sorted(self.resting, key=lambda o: o.ref):
            if order.tif == TIF_DAY:
                events.append(("canceled", order.ref, order.qty, 0, CANCEL_SUPERVISORY, True))
        self.resting = [o for o in self.resting if o.tif != TIF_DAY]
        return events

    def book(self, symbol: str) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        return (
            [(o.ref, o.price, o.qty) for o in self.side_queue(symbol, "B")],
            [(o.ref, o.price, o.qty) for o in self.side_queue(symbol, "S")],
        )

    def depth(self, symbol: str, side: str) -> list[tuple[int, int]]:
        totals: dict[int, int] = {}
        for o in self.side_queue(symbol, side):
            totals[o.price] = totals.get(o.price, 0) + o.qty
        return list(totals.items())  # insertion order == best first


# --- normalising and inspecting the real engine ------------------------------------------


def normalise(ev: object) -> tuple:
    match ev:
        case OrderAccepted(order=o):
            return (
                "accepted",
                o.order_ref,
                o.owner,
                o.user_ref,
                o.symbol,
                o.side,
                o.price,
                o.open_qty,
                o.tif,
            )
        case OrderRested(order=o):
            return ("rested", o.order_ref, o.price, o.open_qty)
        case OrderRejected(reason=reason):
            return ("rejected", reason)
        case Fill():
            return (
                "fill",
                ev.match_number,
                ev.symbol,
                ev.price,
                ev.quantity,
                ev.resting_ref,
                ev.resting_side,
                ev.resting_open_qty,
                ev.aggressor_ref,
                ev.aggressor_open_qty,
            )
        case OrderCanceled():
            return ("canceled", ev.order_ref, ev.quantity, ev.open_qty, ev.reason, ev.was_resting)
        case OrderReplaced(order=o):
            return (
                "replaced",
                ev.old_ref,
                ev.old_open_qty,
                o.order_ref,
                o.user_ref,
                o.price,
                o.open_qty,
                o.tif,
                ev.orig_user_ref,
                ev.kept_priority,
                ev.crossed,
            )
    raise AssertionError(f"unexpected event {ev!r}")


def engine_book(engine: MatchingEngine, symbol: str):
    book = engine.books[symbol]
    bids = [
        (o.order_ref, o.price, o.open_qty)
        for p in reversed(book.bid_prices)
        for o in book.bids[p].orders.values()
    ]
    asks = [
        (o.order_ref, o.price, o.open_qty)
        for p in book.ask_prices
        for o in book.asks[p].orders.values()
    ]
    return bids, asks


class Ledger:
    """Per-reference share accounting, built only from the engine's events.

    For every reference the engine ever issued:
    entered == filled + canceled + taken off by replace + still open.
    """

    def __init__(self) -> None:
        self.entered: dict[int, int] = {}
        self.gone: dict[int, int] = defaultdict(int)
        self.last_ref = 0
        self.last_match = 0

    def _new_ref(self, ref: int, qty: int) -> None:
        assert ref > self.last_ref, f"order ref {ref} not above {self.last_ref}"
        assert ref not in self.entered
        self.last_ref = ref
        self.entered[ref] = qty

    def apply(self, ev: object) -> None:
        match ev:
            case OrderAccepted(order=o):
                self._new_ref(o.order_ref, o.open_qty)
            case OrderReplaced(order=o):
                if ev.kept_priority:
                    assert o.order_ref == ev.old_ref
                    assert 0 < o.open_qty < ev.old_open_qty
                    self.gone[ev.old_ref] += ev.old_open_qty - o.open_qty
                else:
                    self.gone[ev.old_ref] += ev.old_open_qty
                    self._new_ref(o.order_ref, o.open_qty)
            case Fill():
                assert ev.match_number > self.last_match, "match numbers must increase"
                self.last_match = ev.match_number
                assert ev.quantity > 0
                self.gone[ev.resting_ref] += ev.quantity
                self.gone[ev.aggressor_ref] += ev.quantity
            case OrderCanceled():
                assert ev.quantity > 0
                self.gone[ev.order_ref] += ev.quantity

    def check(self, engine: MatchingEngine) -> None:
        for ref, qty in self.entered.items():
            view = engine.order(ref)
            still_open = view.open_qty if view is not None else 0
            assert qty == self.gone[ref] + still_open, (
                f"ref {ref}: entered {qty} != gone {self.gone[ref]} + open {still_open}"
            )
        assert set(self.gone) <= set(self.entered)


# --- the operation stream --------------------------------------------------------------

# Weighted by repetition: mostly valid input, with every kind of invalid input present.
SIDES = ["B"] * 10 + ["S"] * 6 + ["T"] * 2 + ["E"] * 2 + ["X", ""]
TIFS = [TIF_DAY] * 10 + [TIF_GTX] * 5 + [TIF_IOC] * 4 + ["1", "Z"]
SYMBOLS = ["AAA"] * 10 + ["BBB"] * 6 + [UNKNOWN_SYMBOL]
OWNERS = ["alice", "bob"]

_COARSE = [10_000 + 100 * k for k in range(-4, 5)]  # on tick for both symbols
_FINE = [10_000 + 25 * k for k in range(-8, 9)]  # on tick for BBB, often off tick for AAA
_SPECIAL = [
    0,
    -100,
    -1,
    10_001,
    10_010,  # bad, bad, bad, off tick, off tick
    MARKET_PRICE,
    MARKET_PRICE,
    MARKET_PRICE,  # market orders
    MARKET_PRICE - 47,  # 2147483600: the highest valid limit price on a 100 tick
    MARKET_PRICE - 1,
    MARKET_PRICE + 1,
    2**40,  # off tick / above the maximum
]
PRICES = _COARSE * 10 + _FINE + _SPECIAL
QUANTITIES = [*range(1, 121), 0, -5, MAX_SIZE, MAX_SIZE + 1, 10**9]

quantities = st.sampled_from(QUANTITIES)
prices = st.sampled_from(PRICES)
# A target is resolved against the reference's state when the op runs.
targets = st.tuples(st.sampled_from(["live"] * 6 + ["dead", "unknown"]), st.integers(0, 10_000))
# Replace quantity: relative to the current open size (often a reduction), or absolute.
replace_quantities = st.tuples(st.sampled_from(["rel", "rel", "abs"]), st.integers(-40, 3)).map(
    lambda t: t if t[0] == "rel" else ("abs", QUANTITIES[t[1] % len(QUANTITIES)])
)
# Replace price: None = unchanged (the keep-priority candidate), or anything.
replace_prices = st.sampled_from([None] * len(PRICES) + PRICES)


class OpSpace:
    """Where each field of a command is drawn from."""

    def __init__(
        self,
        *,
        kinds: list[str],
        owners: st.SearchStrategy,
        symbols: st.SearchStrategy,
        sides: st.SearchStrategy,
        qtys: st.SearchStrategy,
        prices: st.SearchStrategy,
        tifs: st.SearchStrategy,
        targets: st.SearchStrategy,
        cancel_qtys: st.SearchStrategy,
        replace_qtys: st.SearchStrategy,
        replace_prices: st.SearchStrategy,
        replace_tifs: st.SearchStrategy,
    ) -> None:
        # "nop" first: steps that do not matter to a failure shrink to it.
        self.kinds = st.sampled_from(["nop", *kinds])
        self.owners, self.symbols, self.sides = owners, symbols, sides
        self.qtys, self.prices, self.tifs = qtys, prices, tifs
        self.targets, self.cancel_qtys = targets, cancel_qtys
        self.replace_qtys, self.replace_prices, self.replace_tifs = (
            replace_qtys,
            replace_prices,
            replace_tifs,
        )


@st.composite
def op(draw: st.DrawFn, space: OpSpace) -> tuple:
    """One command as a plain tuple; only the fields its kind needs are drawn."""
    kind = draw(space.kinds)
    if kind == "enter":
        return (
            "enter",
            draw(space.owners),
            draw(space.symbols),
            draw(space.sides),
            draw(space.qtys),
            draw(space.prices),
            draw(space.tifs),
        )
    if kind == "cancel":
        return ("cancel", draw(space.targets), draw(space.cancel_qtys))
    if kind == "replace":
        return (
            "replace",
            draw(space.targets),
            draw(space.replace_qtys),
            draw(space.replace_prices),
            draw(space.replace_tifs),
        )
    return (kind,)


MIXED = OpSpace(
    kinds=["enter"] * 10 + ["cancel"] * 3 + ["replace"] * 4 + ["eod"],
    owners=st.sampled_from(OWNERS),
    symbols=st.sampled_from(SYMBOLS),
    sides=st.sampled_from(SIDES),
    qtys=quantities,
    prices=prices,
    tifs=st.sampled_from(TIFS),
    targets=targets,
    cancel_qtys=st.sampled_from([0, 0, 0, -1, *range(1, 80)]),
    replace_qtys=replace_quantities,
    replace_prices=replace_prices,
    replace_tifs=st.sampled_from([None, None, None, TIF_DAY, TIF_IOC, TIF_GTX, "Z"]),
)
# Only valid input on one symbol: deeper books, more matching and queue-position changes.
DENSE = OpSpace(
    kinds=["enter"] * 10 + ["cancel"] * 2 + ["replace"] * 6,
    owners=st.sampled_from(OWNERS),
    symbols=st.just("AAA"),
    sides=st.sampled_from(["B", "S", "T", "E"]),
    qtys=st.integers(1, 60),
    prices=st.sampled_from(_COARSE * 4 + [MARKET_PRICE]),
    tifs=st.sampled_from([TIF_DAY] * 3 + [TIF_GTX] * 2 + [TIF_IOC]),
    targets=st.tuples(st.just("live"), st.integers(0, 10_000)),
    cancel_qtys=st.integers(0, 30),
    replace_qtys=replace_quantities.map(lambda t: t if t[0] == "rel" else ("abs", 1 + t[1] % 60)),
    replace_prices=st.sampled_from([None] * 9 + _COARSE),
    replace_tifs=st.sampled_from([None] * 4 + [TIF_DAY, TIF_GTX, TIF_IOC]),
)
ops = op(MIXED)
dense_ops = op(DENSE)


class Harness:
    def __init__(self) -> None:
        self.engine = MatchingEngine(
            {s: SymbolRules(tick=t) for s, t in TICKS.items()}, max_order_size=MAX_SIZE
        )
        self.ref = RefEngine(dict(TICKS), MAX_SIZE)
        self.ledger = Ledger()
        self.issued: list[int] = []
        self.user_ref = 0

    def _resolve(self, target: tuple[str, int]) -> int:
        kind, n = target
        live = sorted(o.ref for o in self.ref.resting)
        if kind == "live" and live:
            return live[n % len(live)]
        live_set = set(live)
        dead = [r for r in self.issued if r not in live_set]
        if kind == "dead" and dead:
            return dead[n % len(dead)]
        return [0, -1, self.ref.next_ref, 10**9][n % 4]

    def step(self, op: tuple) -> list[tuple]:
        self.user_ref += 1
        kind = op[0]
        if kind == "nop":
            self.check_state()
            return []
        if kind == "enter":
            _, owner, symbol, side, qty, price, tif = op
            got = self.engine.enter(
                owner=owner,
                user_ref=self.user_ref,
                symbol=symbol,
                side=side,
                quantity=qty,
                price=price,
                tif=tif,
            )
            want = self.ref.enter(owner, self.user_ref, symbol, side, qty, price, tif)
        elif kind == "cancel":
            _, target, open_qty = op
            ref = self._resolve(target)
            got = self.engine.cancel(ref, open_qty)
            want = self.ref.cancel(ref, open_qty)
        elif kind == "replace":
            _, target, (qmode, qval), price, tif = op
            ref = self._resolve(target)
            current = self.ref.find(ref)
            qty = (current.qty if current else 100) + qval if qmode == "rel" else qval
            if price is None:
                price = current.price if current else 10_000
            got = self.engine.replace(
                ref, new_user_ref=self.user_ref, quantity=qty, price=price, tif=tif
            )
            want = self.ref.replace(ref, self.user_ref, qty, price, tif)
        else:
            got = self.engine.end_of_day()
            want = self.ref.end_of_day()

        got_n = [normalise(e) for e in got]
        if kind == "eod":  # the rules do not fix the order of end-of-day cancels
            got_n.sort()
            want.sort()
        assert got_n == want, f"{op}: engine {got_n} != reference {want}"

        for e in got:
            self.ledger.apply(e)
            if isinstance(e, OrderAccepted) or (
                isinstance(e, OrderReplaced) and not e.kept_priority
            ):
                self.issued.append(e.order.order_ref)
        self.check_state()
        return got_n

    def check_state(self) -> None:
        engine, ref = self.engine, self.ref
        resting_refs: set[int] = set()
        for symbol in TICKS:
            bids, asks = engine_book(engine, symbol)
            assert (bids, asks) == ref.book(symbol), f"{symbol} book differs"
            book = engine.books[symbol]
            assert book.depth("B") == ref.depth(symbol, "B"), f"{symbol} bid depth differs"
            assert book.depth("S") == ref.depth(symbol, "S"), f"{symbol} ask depth differs"
            if bids and asks:
                assert bids[0][1] < asks[0][1], f"{symbol} crossed: {bids[0]} / {asks[0]}"
            for r, price, qty in bids + asks:
                assert qty > 0
                assert price != MARKET_PRICE
                assert price % TICKS[symbol] == 0
                resting_refs.add(r)
        assert set(engine.orders) == resting_refs
        assert sorted(o.order_ref for o in engine.open_orders()) == sorted(resting_refs)
        assert engine.next_order_ref == ref.next_ref
        assert engine.next_match_number == ref.next_match
        self.ledger.check(engine)


# --- the properties ---------------------------------------------------------------------


@settings(_PROFILE, max_examples=_examples(800))
@given(st.lists(ops, min_size=15, max_size=100))
def test_engine_matches_reference_on_mixed_streams(stream: list[tuple]) -> None:
    h = Harness()
    for op in stream:
        h.step(op)


@settings(_PROFILE, max_examples=_examples(500))
@given(st.lists(dense_ops, min_size=30, max_size=200))
def test_engine_matches_reference_on_dense_single_symbol_book(stream: list[tuple]) -> None:
    h = Harness()
    for op in stream:
        h.step(op)


@settings(_PROFILE, max_examples=_examples(100))
@given(st.lists(ops, min_size=1, max_size=40))
def test_engine_is_deterministic(stream: list[tuple]) -> None:
    """The same commands give the same events, whatever ran before in the process."""
    runs = []
    for _ in range(2):
        h = Harness()
        out = [h.step(op) for op in stream]
        runs.append((out, engine_book(h.engine, "AAA"), engine_book(h.engine, "BBB")))
    assert runs[0] == runs[1]


def test_reference_sanity() -> None:
    """The reference itself, on a hand-checked sequence (guards the oracle)."""
    r = RefEngine({"AAA": 100}, 1000)
    assert r.enter("a", 1, "AAA", "S", 10, 10_100, TIF_DAY)[-1] == ("rested", 1, 10_100, 10)
    assert r.enter("a", 2, "AAA", "S", 10, 10_000, TIF_DAY)[-1] == ("rested", 2, 10_000, 10)
    assert r.enter("a", 3, "AAA", "T", 5, 10_000, TIF_DAY)[-1] == ("rested", 3, 10_000, 5)
    ev = r.enter("b", 4, "AAA", "B", 30, 10_100, TIF_IOC)
    fills = [e for e in ev if e[0] == "fill"]
    assert [(f[3], f[4], f[5]) for f in fills] == [(10_000, 10, 2), (10_000, 5, 3), (10_100, 10, 1)]
    assert ev[-1] == ("canceled", 4, 5, 0, CANCEL_IOC, False)
    assert r.book("AAA") == ([], [])
