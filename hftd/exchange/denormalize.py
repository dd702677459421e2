"""MarketDataUpdate -> ITCH 5.0 message: the feed's normalizer run backwards (pure).

The exchange publishes a recorded day on its ITCH port whatever the file's
format: a LOBSTER day (hftd.backtest.lobster) comes as the live feed's
normalized updates, and each one is turned back into the ITCH 5.0 message the
feed would have normalized it from, so that `hftd.feed.normalize.normalize`
of the result gives the update back (kind, locate, symbol, reference, side,
size, price, match number, timestamp; tests/unit/test_denormalize.py checks
it for every kind):

| update | ITCH |
|---|---|
| MD_ADD | A (an update keeps no attribution, so never F) |
| MD_EXECUTE | E when the price is 0 (the order's own), else C at that price |
| MD_CANCEL / MD_DELETE / MD_REPLACE | X / D / U |
| MD_TRADE | P |
| MD_DIRECTORY | R (round lot = qty; the other fields as the venue's own R) |
| MD_TRADING | H (state = side) |
| MD_SYSTEM | S (event code = side) |

MD_SEQUENCE keeps only a type byte (what the feed makes of Y, L, Q...: a
LOBSTER cross trade is one), MD_RESET and MD_HEARTBEAT are the feed's own:
none of them has an ITCH message to rebuild, so `to_itch` returns None.
"""

from __future__ import annotations

from hftd.msg.hot import (
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_REPLACE,
    MD_SYSTEM,
    MD_TRADE,
    MD_TRADING,
    MarketDataUpdate,
)
from hftd.wire import itch


def directory(locate: int, ts: int, symbol: str, round_lot: int) -> itch.StockDirectory:
    """An R message for `symbol`: NASDAQ Global Select, normal, not a test issue
    (the venue's start of day says the same of every symbol it lists)."""
    return itch.StockDirectory(
        locate, 0, ts, symbol, "Q", "N", round_lot, "N", "C", "Z", "P", "N", "1", "N", "N", 0, "N"
    )


def to_itch(
    u: MarketDataUpdate, locate: int | None = None, ts: int | None = None
) -> itch.ItchMessage | None:
    """The ITCH 5.0 message `u` was normalized from, with stock locate `locate` and
    timestamp `ts` (default: the update's own); None for a kind ITCH cannot carry."""
    loc = u.locate if locate is None else locate
    t = u.exch_ts if ts is None else ts
    kind = u.kind
    if kind == MD_ADD:
        return itch.AddOrder(loc, 0, t, u.order_ref, u.side, u.qty, u.symbol, u.price)
    if kind == MD_DELETE:
        return itch.OrderDelete(loc, 0, t, u.order_ref)
    if kind == MD_EXECUTE:
        if u.price == 0:
            return itch.OrderExecuted(loc, 0, t, u.order_ref, u.qty, u.new_ref)
        return itch.OrderExecutedWithPrice(loc, 0, t, u.order_ref, u.qty, u.new_ref, "Y", u.price)
    if kind == MD_CANCEL:
        return itch.OrderCancel(loc, 0, t, u.order_ref, u.qty)
    if kind == MD_REPLACE:
        return itch.OrderReplace(loc, 0, t, u.order_ref, u.new_ref, u.qty, u.price)
    if kind == MD_TRADE:
        return itch.Trade(loc, 0, t, u.order_ref, u.side, u.qty, u.symbol, u.price, u.new_ref)
    if kind == MD_DIRECTORY:
        return directory(loc, t, u.symbol, u.qty)
    if kind == MD_TRADING:
        return itch.TradingAction(loc, 0, t, u.symbol, u.side, " ", "")
    if kind == MD_SYSTEM:
        return itch.SystemEvent(0, 0, t, u.side)
    return None


def encode_update(
    u: MarketDataUpdate, locate: int | None = None, ts: int | None = None
) -> bytes | None:
    """`to_itch` encoded (an ITCH payload, no length field), or None."""
    msg = to_itch(u, locate, ts)
    return None if msg is None else itch.encode(msg)
