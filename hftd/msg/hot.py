"""Hot-path messages between the trading daemons (shared-memory rings).

array_like msgspec Structs without GC tracking: the cheapest msgpack shape.
Timestamps are CLOCK_MONOTONIC nanoseconds, shared across processes:
T1 feed receive, T2 strategy decision, T3 risk done, T4 bytes to the socket,
T5 venue acknowledgement.
"""

from __future__ import annotations

import msgspec

# Every price in the system: an integer with 4 implied decimals ($1.00 = 10,000), as
# ITCH and OUCH carry it. The one definition (hftd.config and hftd.risk re-export it).
PRICE_SCALE = 10_000

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
# feed handler: books must be rebuilt from the replay (from 1) that follows; seq = the
# replay's end, the last sequence the feed had before it (0: unknown). Consumers rebuild
# through it and act from there on (hftd.book.sync: "catching up").
MD_RESET = 10
MD_HEARTBEAT = 11  # feed handler: link up, nothing new; seq = last sequence published
# A sequenced ITCH message the books and strategies do not use (Y, L, V, W, K, J, h,
# Q, B, I, N, O), or one the feed could not read (not ITCH 5.0, wrong size): only its
# sequence number travels, so the stream stays gap-free; side = its type byte.
MD_SEQUENCE = 12


class MarketDataUpdate(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """One normalized ITCH message; `seq` is the venue's ITCH sequence number."""

    seq: int
    kind: int
    locate: int
    symbol: str  # set for ADD, TRADE, DIRECTORY, TRADING; "" otherwise
    order_ref: int
    side: str  # "B"/"S" for orders; state/event code for TRADING/SYSTEM; type for SEQUENCE
    qty: int
    price: int  # 4 implied decimals; execution price for EXECUTE/TRADE
    new_ref: int  # REPLACE: the new reference; EXECUTE/TRADE: the match number
    exch_ts: int  # venue timestamp, ns since midnight
    t1: int  # feed receive time (CLOCK_MONOTONIC ns)


# --- strategy -> gateway ---------------------------------------------------------

CMD_NEW = 1
CMD_CANCEL = 2
CMD_REPLACE = 3
# Retired: the strategy's BBO (qty = bid, price = ask), once risk's reference. A
# gateway counts and ignores it: its reference is its own view (hftd.risk.market).
CMD_MARK = 4
CMD_HEARTBEAT = 5  # alive (on a timer); qty = 1 if books are in sync, price = md age in ms


# OrderCommand.price of a market order (OUCH's value, passed through like the TIFs).
MARKET_PRICE = 2_147_483_647

# Time in force of an order (OrderCommand.tif): our own codes. They are OUCH 5.0's
# by choice, so the OUCH gateway passes them through unchanged (a unit test holds
# them equal); another venue's adapter maps them.
TIF_DAY = "0"  # rests until the end of the day
TIF_IOC = "3"  # immediate or cancel: what does not trade at once is cancelled
TIF_GTX = "5"  # extended hours


class OrderCommand(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """An instruction to the gateway; `cl_id` is the strategy's order id."""

    kind: int
    cl_id: int
    symbol: str
    side: str  # "B" / "S"
    qty: int  # NEW/REPLACE: open size wanted
    price: int  # 4 implied decimals; MARKET_PRICE (above) for a market order
    tif: str  # TIF_DAY, TIF_IOC or TIF_GTX (above)
    orig_cl_id: int  # CANCEL/REPLACE: the order acted on
    strategy: str
    t1: int  # feed receive time of the update that triggered it (0 if none)
    t2: int  # strategy decision time


# --- gateway -> strategy ---------------------------------------------------------

EX_ACCEPTED = 1  # live at the venue
EX_REJECTED = 2  # refused by risk (reason says which check) or by the venue
EX_FILL = 3  # qty traded at price; leaves = open qty after
EX_CANCELED = 4  # qty came off; leaves = open qty after
EX_REPLACED = 5  # cl_id is now the order; orig_cl_id is finished
EX_HEARTBEAT = 6  # the gateway is alive
# The venue broke or corrected a fill (OUCH B, F): position = the symbol's net position
# now; qty/price the fill as it stood (broken) or now stands (corrected); cl_id 0.
EX_POSITION = 7


class ExecutionReport(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """What happened to a strategy's order (or the gateway's heartbeat)."""

    kind: int
    cl_id: int
    orig_cl_id: int
    symbol: str
    side: str
    qty: int
    price: int
    leaves: int
    position: int  # the symbol's net position after this report
    reason: str
    t5: int  # when the gateway saw the venue's reply (0 for risk rejects)
    venue_seq: int = 0  # the gateway's OUCH stream position when it reported this
