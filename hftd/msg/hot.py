"""Hot-path messages between the trading daemons (shared-memory rings).

array_like msgspec Structs without GC tracking: the cheapest msgpack shape.
Timestamps are CLOCK_MONOTONIC nanoseconds, shared across processes:
T1 feed receive, T2 strategy decision, T3 risk done, T4 bytes to the socket,
T5 venue acknowledgement.
"""

from __future__ import annotations

import msgspec

# --- feed -> strategy -----------------------------------------------------------

MD_ADD = 1  # order joined the book (ITCH A, F)
MD_EXECUTE = 2  # resting order traded (E, C)
MD_CANCEL = 3  # part of an order cancelled (X)
MD_DELETE = 4  # order left the book (D)
MD_REPLACE = 5  # order replaced by a new reference (U)
MD_TRADE = 6  # execution against a hidden order (P)
MD_DIRECTORY = 7  # a symbol and its locate code (R)
MD_TRADING = 8  # trading state change (H); side carries the state
MD_SYSTEM = 9  # system event (S); side carries the event code
MD_RESET = 10  # feed handler: books must be rebuilt from the replay that follows


class MarketDataUpdate(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One normalized ITCH message; `seq` is the venue's ITCH sequence number."""

    seq: int
    kind: int
    locate: int
    symbol: str  # set for ADD, TRADE, DIRECTORY, TRADING; "" otherwise
    order_ref: int
    side: str  # "B"/"S" for orders; state/event code for TRADING/SYSTEM
    qty: int
    price: int  # 4 implied decimals; execution price for EXECUTE/TRADE
    new_ref: int  # REPLACE: the new reference; EXECUTE/TRADE: the match number
    exch_ts: int  # venue timestamp, ns since midnight
    t1: int  # feed receive time (CLOCK_MONOTONIC ns)
