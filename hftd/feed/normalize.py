"""ITCH 5.0 message -> MarketDataUpdate (pure)."""

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


def normalize(msg: itch.ItchMessage, seq: int, t1: int) -> MarketDataUpdate | None:
    """The internal form of one ITCH message, or None for types the system ignores."""
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
    return None
