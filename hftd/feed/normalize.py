"""ITCH 5.0 message -> MarketDataUpdate (pure).

Every sequenced ITCH message becomes exactly one update, so a consumer that
checks `seq` sees a gap only when one happened. The types the books and the
strategies use are normalized field by field; every other ITCH 5.0 type
(``Y L V W K J h Q B I N O``: a real feed sends several every day) becomes a
sequence-only record (MD_SEQUENCE: the sequence number and the type byte,
nothing decoded). A message that is not ITCH 5.0 at all, or a known type of
the wrong size, keeps its sequence number the same way and is counted
(`Normalizer.unknown` / `.malformed`): hostile input must never cost a
consumer its books.
"""

from __future__ import annotations

import struct

from hftd.msg.hot import (
    MD_ADD,
    MD_CANCEL,
    MD_DELETE,
    MD_DIRECTORY,
    MD_EXECUTE,
    MD_REPLACE,
    MD_SEQUENCE,
    MD_SYSTEM,
    MD_TRADE,
    MD_TRADING,
    MarketDataUpdate,
)
from hftd.wire import itch
from hftd.wire.errors import RemoteProtocolError

# ITCH 5.0 types the system does not use: never decoded on the hot path.
SEQUENCE_ONLY_TYPES = frozenset(b"YLVWKJhQBINO")
# The others' decoders by type byte (what itch.decode would pick, minus a lookup).
_DECODE = {
    lay.type_byte[0]: lay.decode
    for lay in itch.LAYOUTS
    if lay.type_byte[0] not in SEQUENCE_ONLY_TYPES
}


def sequence_only(seq: int, type_byte: str, t1: int) -> MarketDataUpdate:
    """The record of a message only its sequence number matters of."""
    return MarketDataUpdate(seq, MD_SEQUENCE, 0, "", 0, type_byte, 0, 0, 0, 0, t1)


class Normalizer:
    """Raw ITCH payload -> exactly one MarketDataUpdate (the feed's hot path).

    `unknown` counts messages whose type is not ITCH 5.0, `malformed` those of a
    known type but the wrong size; `last_problem` says what the latest one was
    (the feed logs it, rate-limited). Neither ever raises.
    """

    __slots__ = ("last_problem", "malformed", "unknown")

    def __init__(self) -> None:
        self.unknown = 0
        self.malformed = 0
        self.last_problem = ""

    @property
    def problems(self) -> int:
        return self.unknown + self.malformed

    def update(self, payload: bytes | memoryview, seq: int, t1: int) -> MarketDataUpdate:
        if not payload:
            self.malformed += 1
            self.last_problem = f"sequence {seq}: empty message"
            return sequence_only(seq, "", t1)
        t = payload[0]
        decode = _DECODE.get(t)
        if decode is None:
            if t not in SEQUENCE_ONLY_TYPES:
                self.unknown += 1
                self.last_problem = (
                    f"sequence {seq}: message type {bytes(payload[:1])!r} is not ITCH 5.0 "
                    f"({len(payload)} bytes)"
                )
            return sequence_only(seq, chr(t), t1)
        try:
            msg = decode(payload)
        except (RemoteProtocolError, ValueError, struct.error) as exc:
            self.malformed += 1
            self.last_problem = f"sequence {seq}: {exc}"
            return sequence_only(seq, chr(t), t1)
        return normalize(msg, seq, t1)


def normalize(msg: itch.ItchMessage, seq: int, t1: int) -> MarketDataUpdate:
    """The internal form of one ITCH message (MD_SEQUENCE for types the system
    does not use, and for `Unknown`)."""
    t = type(msg)
    if t is itch.AddOrder or t is itch.AddOrderMPID:
        a: itch.AddOrder = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq,
            MD_ADD,
            a.stock_locate,
            a.stock,
            a.order_ref,
            a.side,
            a.shares,
            a.price,
            0,
            a.timestamp,
            t1,
        )
    if t is itch.OrderExecuted:
        e: itch.OrderExecuted = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq,
            MD_EXECUTE,
            e.stock_locate,
            "",
            e.order_ref,
            "",
            e.executed_shares,
            0,
            e.match_number,
            e.timestamp,
            t1,
        )
    if t is itch.OrderDelete:
        d: itch.OrderDelete = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq, MD_DELETE, d.stock_locate, "", d.order_ref, "", 0, 0, 0, d.timestamp, t1
        )
    if t is itch.OrderCancel:
        x: itch.OrderCancel = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq,
            MD_CANCEL,
            x.stock_locate,
            "",
            x.order_ref,
            "",
            x.cancelled_shares,
            0,
            0,
            x.timestamp,
            t1,
        )
    if t is itch.OrderReplace:
        u: itch.OrderReplace = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq,
            MD_REPLACE,
            u.stock_locate,
            "",
            u.original_ref,
            "",
            u.shares,
            u.price,
            u.new_ref,
            u.timestamp,
            t1,
        )
    if t is itch.OrderExecutedWithPrice:
        c: itch.OrderExecutedWithPrice = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq,
            MD_EXECUTE,
            c.stock_locate,
            "",
            c.order_ref,
            "",
            c.executed_shares,
            c.execution_price,
            c.match_number,
            c.timestamp,
            t1,
        )
    if t is itch.Trade:
        p: itch.Trade = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq,
            MD_TRADE,
            p.stock_locate,
            p.stock,
            p.order_ref,
            p.side,
            p.shares,
            p.price,
            p.match_number,
            p.timestamp,
            t1,
        )
    if t is itch.StockDirectory:
        r: itch.StockDirectory = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq,
            MD_DIRECTORY,
            r.stock_locate,
            r.stock,
            0,
            "",
            r.round_lot_size,
            0,
            0,
            r.timestamp,
            t1,
        )
    if t is itch.TradingAction:
        h: itch.TradingAction = msg  # type: ignore[assignment]
        return MarketDataUpdate(
            seq, MD_TRADING, h.stock_locate, h.stock, 0, h.trading_state, 0, 0, 0, h.timestamp, t1
        )
    if t is itch.SystemEvent:
        s: itch.SystemEvent = msg  # type: ignore[assignment]
        return MarketDataUpdate(seq, MD_SYSTEM, 0, "", 0, s.event_code, 0, 0, 0, s.timestamp, t1)
    if t is itch.Unknown:
        raw: bytes = msg.raw  # type: ignore[union-attr]
        return sequence_only(seq, chr(raw[0]) if raw else "", t1)
    return sequence_only(seq, itch.TYPE_OF[t], t1)
