"""The gateway's logic (pure): order commands in, OUCH out; OUCH replies in,
execution reports out; risk inline; positions and P&L from every fill.

The daemon feeds it `OrderCommand`s from the orders ring and decoded OUCH
messages from the venue, and drains `to_venue` (OUCH payloads to send) and
`reports` (ExecutionReports for the strategy) after each call.

Recovery without a journal of its own: on start the gateway logs in to its
OUCH stream from sequence 1 and replays it. Accepted messages echo the
ClOrdID, where the gateway writes the strategy's cl_id (base 36), so the
replay rebuilds every order, position and P&L exactly as the venue saw them.
Reports for replies the strategy already received (up to `quiet_until`, the
venue sequence of the last report in the executions ring) are not sent again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from hftd.config import HftdConfig
from hftd.gateway.positions import PositionBook
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_MARK,
    CMD_NEW,
    CMD_REPLACE,
    EX_ACCEPTED,
    EX_CANCELED,
    EX_FILL,
    EX_HEARTBEAT,
    EX_REJECTED,
    EX_REPLACED,
    ExecutionReport,
    OrderCommand,
)
from hftd.risk.breaker import CircuitBreaker
from hftd.risk.engine import ACTIVE, HALTED, REDUCING, RiskEngine
from hftd.runtime.journal import Journal
from hftd.runtime.latency import HopRecorder
from hftd.wire import ouch

log = logging.getLogger("hftd.gateway")

PENDING = "pending"  # sent, no acknowledgement yet
LIVE = "live"
CANCEL_PENDING = "cancel pending"
REPLACE_PENDING = "replace pending"  # an old order whose replacement is on its way
DONE = "done"

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_jenc = msgspec.msgpack.Encoder()
_jdec = msgspec.msgpack.Decoder(tuple[Any, ...])
INTERNAL_CL_ID = 1 << 47  # the gateway's own orders (flatten), apart from any strategy's
FLATTEN_TICKS = 20  # a flatten order crosses the mark by this many cents


def to_b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if not n:
            return out


def from_b36(text: str) -> int:
    try:
        return int(text, 36) if text else 0
    except ValueError:
        return 0


class GwOrder:
    __slots__ = (
        "acked",
        "cl_id",
        "leaves",
        "orig",
        "price",
        "qty",
        "reserved",
        "sent_ns",
        "side",
        "state",
        "strategy",
        "symbol",
        "t1",
        "t2",
        "t3",
        "t4",
        "tif",
        "user_ref",
    )

    def __init__(
        self,
        cl_id: int,
        user_ref: int,
        symbol: str,
        side: str,
        qty: int,
        price: int,
        tif: str,
        strategy: str,
    ) -> None:
        self.cl_id = cl_id
        self.user_ref = user_ref
        self.symbol = symbol
        self.side = "B" if side == "B" else "S"  # T/E (short sells) are sells to risk
        self.qty = qty
        self.price = price
        self.tif = tif
        self.strategy = strategy
        self.leaves = qty
        self.state = PENDING
        self.orig: GwOrder | None = None  # the order a replacement replaces
        self.reserved = 0  # shares risk reserved for a pending size-up replace
        self.acked = False
        self.t1 = self.t2 = self.t3 = self.t4 = 0
        self.sent_ns = 0


class GatewayCore:
    def __init__(self, cfg: HftdConfig, clock: Callable[[], int]) -> None:
        self.cfg = cfg
        self.clock = clock
        self.risk = RiskEngine(cfg.risk)
        self.book = PositionBook()
        self.latency = HopRecorder()
        self.orders: dict[int, GwOrder] = {}  # live orders by cl_id
        self.by_ref: dict[int, GwOrder] = {}  # live orders by UserRefNum
        self.next_user_ref = 1
        self.to_venue: list[bytes] = []
        self.sent_orders: list[GwOrder] = []  # to stamp T4 once on the wire
        self.reports: list[ExecutionReport] = []
        self.venue_seq = 0  # OUCH sequence number of the reply being applied
        self.quiet_until = 0  # replies up to this sequence were already reported
        self.strategy_seen_ns = 0
        self.strategy_up = False
        self.venue_up = False
        self.breaker = CircuitBreaker(cfg.breaker)
        self.paused = False
        self.flattening = False
        self.next_internal_cl_id = INTERNAL_CL_ID
        self.journal: Journal | None = None
        self.recent_fills: deque[tuple[int, str, str, int, int, int]] = deque(maxlen=50)
        self.counters = {
            "commands": 0,
            "sent": 0,
            "risk_rejects": 0,
            "venue_rejects": 0,
            "fills": 0,
            "cancels": 0,
            "replaces": 0,
            "timeouts": 0,
            "untracked": 0,
            "late_cancel_rejects": 0,
            "held": 0,
        }

    # --- strategy -> venue ------------------------------------------------------------

    def on_command(self, c: OrderCommand, now: int) -> None:
        kind = c.kind
        if kind == CMD_HEARTBEAT:
            self.strategy_seen_ns = now
            if not self.strategy_up:
                self.strategy_up = True
                log.info("strategy is up")
            if c.qty and c.price:  # books in sync: is market data fresh?
                self._maybe_trip(self.breaker.check_md_age(c.price / 1000))
            return
        if kind == CMD_MARK:
            mid = (c.qty + c.price) // 2
            if mid > 0:
                self.book.set_mark(c.symbol, mid)
                # The market moves between our own fills: the band and market-order
                # notional follow the strategy's BBO mid as well as our last fill.
                self.risk.on_trade_price(c.symbol, mid)
                self.risk.set_pnl(self.book.total())
            return
        self.counters["commands"] += 1
        if kind == CMD_NEW:
            self._new(c, now)
        elif kind == CMD_CANCEL:
            self._cancel(c)
        elif kind == CMD_REPLACE:
            self._replace(c, now)

    def _reject(self, c: OrderCommand, reason: str, orig_cl_id: int = 0) -> None:
        self.reports.append(
            ExecutionReport(
                EX_REJECTED,
                c.cl_id,
                orig_cl_id,
                c.symbol,
                c.side,
                c.qty,
                c.price,
                0,
                self.book.position(c.symbol).qty if c.symbol else 0,
                reason,
                0,
            )
        )

    def _new(self, c: OrderCommand, now: int) -> None:
        if not self.venue_up:
            self.counters["held"] += 1
            self._reject(c, "held: no session with the venue")
            return
        if not self.strategy_up:
            self.counters["held"] += 1
            self._reject(c, "held: the strategy is not up")
            return
        if self.paused:
            self.counters["held"] += 1
            self._reject(c, "held: trading is paused")
            return
        reason = self._send_new(
            c.cl_id, c.symbol, c.side, c.qty, c.price, c.tif, c.strategy, c.t1, c.t2, now
        )
        if reason:
            self._reject(c, reason)

    def _send_new(
        self,
        cl_id: int,
        symbol: str,
        side: str,
        qty: int,
        price: int,
        tif: str,
        strategy: str,
        t1: int,
        t2: int,
        now: int,
    ) -> str:
        """Risk-check and send one new order; "" if sent, else why not."""
        market = price == ouch.MARKET_PRICE
        d = self.risk.check_new(symbol, side, qty, price, now, market)
        t3 = self.clock()
        if not d.ok:
            self.counters["risk_rejects"] += 1
            log.warning(
                "risk REJECT %s %s %d @ %s: %s (%s)",
                symbol,
                side,
                qty,
                _px(price),
                d.check,
                d.reason,
            )
            self._maybe_trip(self.breaker.record("risk_rejects", now))
            return f"risk {d.check}: {d.reason}"
        ref = self.next_user_ref
        self.next_user_ref += 1
        o = GwOrder(cl_id, ref, symbol, side, qty, price, tif, strategy)
        o.t1, o.t2, o.t3 = t1, t2, t3
        o.sent_ns = now
        self.orders[cl_id] = o
        self.by_ref[ref] = o
        self.risk.on_sent(symbol, side, qty, now)
        self._out(
            cl_id,
            strategy,
            ouch.EnterOrder(ref, side, qty, symbol, price, tif, cl_ord_id=to_b36(cl_id)),
        )
        self.sent_orders.append(o)
        self.counters["sent"] += 1
        log.info(
            "risk OK, order sent %s %s %d @ %s (cl %d, ref %d)",
            symbol,
            "BUY" if side == "B" else "SELL",
            qty,
            _px(price),
            cl_id,
            ref,
        )
        return ""

    # --- operator controls, circuit breaker ----------------------------------------------

    @property
    def mode(self) -> str:
        if self.risk.mode == HALTED:
            return "halted"
        if self.risk.mode == REDUCING:
            return "reducing"
        return "paused" if self.paused else "active"

    def _maybe_trip(self, reason: str | None) -> None:
        if reason:
            log.error("CIRCUIT BREAKER tripped: %s: halting, cancelling working orders", reason)
            self.halt(f"circuit breaker: {reason}")

    def cancel_all(self) -> int:
        """Cancel every working order, re-sending cancels still unanswered."""
        n = 0
        now = self.clock()
        for o in list(self.orders.values()):
            if o.state in (PENDING, LIVE, CANCEL_PENDING):
                self._send_cancel(o, now)
                n += 1
        return n

    def _send_cancel(self, o: GwOrder, now: int) -> None:
        o.state = CANCEL_PENDING
        o.sent_ns = now  # from now on: when the cancel went out
        self._out(o.cl_id, o.strategy, ouch.CancelOrder(o.user_ref, 0))

    def pause(self) -> dict[str, object]:
        self.paused = True
        log.warning("PAUSED by operator: new orders held, working orders stay")
        return {"mode": self.mode}

    def resume(self) -> dict[str, object]:
        self.paused = False
        self.flattening = False
        self.breaker.rearm()
        self.risk.set_mode(ACTIVE)
        self.risk.resume()
        log.warning("RESUMED by operator: trading active (breaker re-armed)")
        return {"mode": self.mode}

    def halt(self, reason: str) -> dict[str, object]:
        self.risk.set_mode(HALTED)
        self.flattening = False
        n = self.cancel_all()
        log.error(
            "HALTED (%s): %d working orders cancelled, new orders refused until resume", reason, n
        )
        return {"mode": self.mode, "cancelled": n}

    def flatten(self) -> dict[str, object]:
        self.risk.set_mode(REDUCING)
        self.paused = False
        self.flattening = True
        n = self.cancel_all()
        log.warning("FLATTEN: %d working orders cancelled; closing every position", n)
        return {"mode": self.mode, "cancelled": n}

    def _flatten_step(self, now: int) -> None:
        """Close what is still open with marketable IOC orders once nothing works."""
        if not self.venue_up or any(o.state != DONE for o in self.orders.values()):
            return
        open_positions = [p for p in (self.book.position(s) for s in self.book.symbols()) if p.qty]
        if not open_positions:
            self.flattening = False
            log.warning("FLAT: every position is zero, nothing working (mode stays reducing)")
            return
        for p in open_positions:
            side = "S" if p.qty > 0 else "B"
            mark = self.book.mark(p.symbol)
            if mark is None:
                price = ouch.MARKET_PRICE
            else:
                cross = FLATTEN_TICKS * 100
                price = mark - cross if side == "S" else mark + cross
                price -= price % 100
            cl_id = self.next_internal_cl_id
            self.next_internal_cl_id += 1
            self._send_new(
                cl_id, p.symbol, side, abs(p.qty), price, ouch.TIF_IOC, "flatten", 0, 0, now
            )

    def _cancel(self, c: OrderCommand) -> None:
        o = self.orders.get(c.orig_cl_id)
        if o is None or o.state not in (PENDING, LIVE):
            self._reject(c, "cancel: order not working", c.orig_cl_id)
            return
        self._send_cancel(o, self.clock())

    def _replace(self, c: OrderCommand, now: int) -> None:
        old = self.orders.get(c.orig_cl_id)
        if old is None or old.state != LIVE:
            self._reject(c, "replace: order not live", c.orig_cl_id)
            return
        d = self.risk.check_replace(old.symbol, old.side, old.leaves, c.qty, c.price, now)
        if not d.ok:
            self.counters["risk_rejects"] += 1
            log.warning("risk REJECT replace %s: %s (%s)", old.symbol, d.check, d.reason)
            self._reject(c, f"risk {d.check}: {d.reason}", c.orig_cl_id)
            return
        ref = self.next_user_ref
        self.next_user_ref += 1
        new = GwOrder(c.cl_id, ref, old.symbol, old.side, c.qty, c.price, old.tif, c.strategy)
        new.orig = old
        new.t1, new.t2, new.t3 = c.t1, c.t2, self.clock()
        new.sent_ns = now
        old.state = REPLACE_PENDING
        self.orders[c.cl_id] = new
        self.by_ref[ref] = new
        new.reserved = self.risk.on_replace_sent(old.symbol, old.side, old.leaves, c.qty, now)
        self._out(
            c.cl_id,
            c.strategy,
            ouch.ReplaceOrder(
                old.user_ref, ref, c.qty, c.price, old.tif, cl_ord_id=to_b36(c.cl_id)
            ),
        )
        self.sent_orders.append(new)
        self.counters["replaces"] += 1

    def _out(self, cl_id: int, strategy: str, msg: ouch.Inbound) -> None:
        """Queue one OUCH message for the venue, journaled first (it is acted on)."""
        payload = ouch.encode_inbound(msg)
        if type(msg) is ouch.CancelOrder:
            self.risk.on_cancel_sent(self.clock())
        if self.journal is not None:
            self.journal.append(_jenc.encode(("O", cl_id, strategy, payload)))
        self.to_venue.append(payload)

    # --- journal replay -------------------------------------------------------------------

    def replay(self, records: list[bytes], now: int) -> int:
        """Rebuild state from journal records; returns the last venue sequence seen.

        "O" records restore what was sent (orders, replaces, cancels pending);
        "V" records re-apply the venue's replies. Reports for replies past
        `quiet_until` (the strategy never got them) are produced again.
        """
        last_seq = 0
        journal, self.journal = self.journal, None  # replaying is not acting anew
        try:
            for raw in records:
                rec = _jdec.decode(raw)
                if rec[0] == "V":
                    last_seq = rec[1]
                    self.on_venue(ouch.decode_outbound(rec[2]), rec[1], now)
                else:
                    self._replay_sent(rec[1], rec[2], ouch.decode_inbound(rec[3]), now)
        finally:
            self.journal = journal
        return last_seq

    def _replay_sent(self, cl_id: int, strategy: str, m: ouch.Inbound, now: int) -> None:
        # Orders sent before the crash get a full timeout from now: their
        # acknowledgement may still come with the re-login.
        if isinstance(m, ouch.EnterOrder):
            if m.user_ref in self.by_ref:
                return
            o = GwOrder(
                cl_id, m.user_ref, m.symbol, m.side, m.quantity, m.price, m.time_in_force, strategy
            )
            o.sent_ns = now
            self.orders[cl_id] = o
            self.by_ref[m.user_ref] = o
            self.risk.on_sent(o.symbol, o.side, m.quantity, 0)
            self.next_user_ref = max(self.next_user_ref, m.user_ref + 1)
        elif isinstance(m, ouch.ReplaceOrder):
            old = self.by_ref.get(m.orig_user_ref)
            if old is None or m.new_user_ref in self.by_ref:
                return
            new = GwOrder(
                cl_id, m.new_user_ref, old.symbol, old.side, m.quantity, m.price, old.tif, strategy
            )
            new.orig = old
            new.sent_ns = now
            old.state = REPLACE_PENDING
            self.orders[cl_id] = new
            self.by_ref[m.new_user_ref] = new
            new.reserved = self.risk.on_replace_sent(
                old.symbol, old.side, old.leaves, m.quantity, 0
            )
            self.next_user_ref = max(self.next_user_ref, m.new_user_ref + 1)
        else:
            target = self.by_ref.get(m.user_ref)
            if target is not None and target.state in (PENDING, LIVE):
                target.state = CANCEL_PENDING
                target.sent_ns = now

    def journal_venue(self, seq: int, payload: bytes) -> None:
        """Journal a venue reply before it is applied."""
        if self.journal is not None:
            self.journal.append(_jenc.encode(("V", seq, payload)))

    # --- reconciliation ----------------------------------------------------------------------

    def reconcile(self, snap: dict[str, Any]) -> list[str]:
        """Compare with the venue's snapshot of our orders and fills; the differences."""
        problems: list[str] = []
        venue_open = {o["user_ref"]: o["open_qty"] for o in snap["open_orders"]}
        mine = {o.user_ref: o.leaves for o in self.by_ref.values() if o.state != DONE and o.acked}
        for ref in sorted(set(venue_open) | set(mine)):
            if venue_open.get(ref) != mine.get(ref):
                problems.append(
                    f"order UserRefNum {ref}: venue open {venue_open.get(ref)}, "
                    f"gateway open {mine.get(ref)}"
                )
        pos: dict[str, int] = {}
        for f in snap["fills"]:
            pos[f["symbol"]] = pos.get(f["symbol"], 0) + (
                f["quantity"] if f["side"] == "B" else -f["quantity"]
            )
        for sym in sorted(set(pos) | set(self.book.symbols())):
            mine_qty = self.book.position(sym).qty
            if pos.get(sym, 0) != mine_qty:
                problems.append(
                    f"position {sym}: venue fills say {pos.get(sym, 0)}, gateway has {mine_qty}"
                )
        fills = sum(self.book.position(s).fills for s in self.book.symbols())
        if fills != len(snap["fills"]):
            problems.append(f"fills: venue {len(snap['fills'])}, gateway {fills}")
        return problems

    def stamp_sent(self, t4: int) -> None:
        """The queued OUCH bytes are on the socket now (T4)."""
        for o in self.sent_orders:
            o.t4 = t4
        self.sent_orders.clear()

    # --- venue -> strategy ---------------------------------------------------------------

    def _report(self, r: ExecutionReport) -> None:
        if self.venue_seq > self.quiet_until:
            self.reports.append(r)

    def stamp(self, r: ExecutionReport) -> ExecutionReport:
        """The report with the stream position it was made at (for restart dedup)."""
        return msgspec.structs.replace(r, venue_seq=self.venue_seq)

    def on_venue(self, m: ouch.Outbound, seq: int, now: int) -> None:
        """Apply one sequenced OUCH reply (sequence `seq` of our stream)."""
        self.venue_seq = seq
        t = type(m)
        if t is ouch.Executed:
            self._executed(m, now)  # type: ignore[arg-type]
        elif t is ouch.Accepted:
            self._accepted(m, now)  # type: ignore[arg-type]
        elif t is ouch.Canceled:
            self._canceled(m)  # type: ignore[arg-type]
        elif t is ouch.Replaced:
            self._replaced(m, now)  # type: ignore[arg-type]
        elif t is ouch.Rejected:
            self._rejected(m)  # type: ignore[arg-type]

    def _accepted(self, m: ouch.Accepted, now: int) -> None:
        o = self.by_ref.get(m.user_ref)
        if o is None:  # replaying a previous run's order: rebuild it from the echo
            o = GwOrder(
                from_b36(m.cl_ord_id),
                m.user_ref,
                m.symbol,
                m.side,
                m.quantity,
                m.price,
                m.time_in_force,
                "",
            )
            self.orders[o.cl_id] = o
            self.by_ref[m.user_ref] = o
            # Rebuilt from a replay: open and working, but not in today's rate window.
            self.risk.on_sent(o.symbol, o.side, m.quantity, 0)
        self.next_user_ref = max(self.next_user_ref, m.user_ref + 1)
        o.acked = True
        if o.state == PENDING:
            o.state = LIVE
        if o.t4:
            self.latency.record(o.t1, o.t2, o.t3, o.t4, now)
        self._report(
            ExecutionReport(
                EX_ACCEPTED,
                o.cl_id,
                0,
                o.symbol,
                o.side,
                m.quantity,
                m.price,
                o.leaves,
                self.book.position(o.symbol).qty,
                "",
                now,
            )
        )

    def _executed(self, m: ouch.Executed, now: int) -> None:
        o = self.by_ref.get(m.user_ref)
        if o is None:
            self.counters["untracked"] += 1
            log.error("execution for unknown UserRefNum %d", m.user_ref)
            return
        side = "B" if o.side == "B" else "S"
        o.leaves -= m.quantity
        done = o.leaves <= 0
        self.book.on_fill(o.symbol, side, m.quantity, m.price)
        self.risk.on_fill(o.symbol, side, m.quantity, m.price, order_done=done)
        self.risk.set_pnl(self.book.total())
        self.counters["fills"] += 1
        # (wall time ns, symbol, side, qty, price, tick-to-trade ns of the order)
        self.recent_fills.append(
            (
                time.time_ns(),
                o.symbol,
                side,
                m.quantity,
                m.price,
                o.t4 - o.t1 if o.t1 and o.t4 else 0,
            )
        )
        pos = self.book.position(o.symbol)
        if self.venue_seq > self.quiet_until:
            log.info(
                "fill %s %s %d @ %s (cl %d, %s), position %s %d, realized %s",
                o.symbol,
                "BUY" if side == "B" else "SELL",
                m.quantity,
                _px(m.price),
                o.cl_id,
                "partial" if not done else "complete",
                o.symbol,
                pos.qty,
                _px(pos.realized),
            )
        self._report(
            ExecutionReport(
                EX_FILL,
                o.cl_id,
                0,
                o.symbol,
                side,
                m.quantity,
                m.price,
                max(o.leaves, 0),
                pos.qty,
                m.liquidity_flag,
                now,
            )
        )
        if done:
            self._finish(o)

    def _canceled(self, m: ouch.Canceled) -> None:
        o = self.by_ref.get(m.user_ref)
        if o is None:
            self.counters["untracked"] += 1
            return
        o.leaves -= m.quantity
        self.risk.on_open_reduced(o.symbol, o.side, m.quantity)
        self.counters["cancels"] += 1
        if self.venue_seq > self.quiet_until and m.reason == ouch.CANCEL_USER:
            self._maybe_trip(self.breaker.record("cancels", self.clock()))
        if o.leaves <= 0:
            self.risk.on_order_finished()
        self._report(
            ExecutionReport(
                EX_CANCELED,
                o.cl_id,
                0,
                o.symbol,
                o.side,
                m.quantity,
                o.price,
                max(o.leaves, 0),
                self.book.position(o.symbol).qty,
                m.reason,
                0,
            )
        )
        if o.leaves <= 0:
            self._finish(o)
        elif o.state == CANCEL_PENDING:
            o.state = LIVE

    def _replaced(self, m: ouch.Replaced, now: int) -> None:
        old = self.by_ref.get(m.orig_user_ref)
        new = self.by_ref.get(m.new_user_ref)
        if old is None:
            self.counters["untracked"] += 1
            return
        if new is None:  # replaying a previous run's replace
            new = GwOrder(
                from_b36(m.cl_ord_id),
                m.new_user_ref,
                m.symbol,
                m.side,
                m.quantity,
                m.price,
                m.time_in_force,
                old.strategy,
            )
            self.orders[new.cl_id] = new
            self.by_ref[m.new_user_ref] = new
            new.reserved = self.risk.on_replace_sent(
                old.symbol, old.side, old.leaves, m.quantity, 0
            )
        self.next_user_ref = max(self.next_user_ref, m.new_user_ref + 1)
        self.risk.on_replace_done(
            old.symbol, old.side, old.leaves, m.quantity, accepted=True, reserved=new.reserved
        )
        new.leaves = m.quantity
        new.state = LIVE
        new.acked = True
        if new.t4:
            self.latency.record(new.t1, new.t2, new.t3, new.t4, now)
        self._drop(old)
        self._report(
            ExecutionReport(
                EX_REPLACED,
                new.cl_id,
                old.cl_id,
                new.symbol,
                new.side,
                m.quantity,
                m.price,
                m.quantity,
                self.book.position(new.symbol).qty,
                "",
                now,
            )
        )

    def _rejected(self, m: ouch.Rejected) -> None:
        o = self.by_ref.get(m.user_ref)
        if o is None:
            if m.user_ref < self.next_user_ref and m.reason == ouch.REJECT_UNKNOWN_ORDER:
                # A cancel that crossed the order's last fill: the order is done already.
                self.counters["late_cancel_rejects"] += 1
            else:
                self.counters["untracked"] += 1
            return
        self.counters["venue_rejects"] += 1
        self.next_user_ref = max(self.next_user_ref, m.user_ref + 1)
        if self.venue_seq > self.quiet_until:
            self._maybe_trip(self.breaker.record("venue_rejects", self.clock()))
        reason = f"venue: {ouch.REJECT_REASONS.get(m.reason, str(m.reason))}"
        if o.orig is not None and o.state != LIVE:  # a refused replace: the old order lives on
            old = o.orig
            self.risk.on_replace_done(
                old.symbol, old.side, old.leaves, o.qty, accepted=False, reserved=o.reserved
            )
            old.state = LIVE
            self._drop(o)
            self._report(
                ExecutionReport(
                    EX_REJECTED,
                    o.cl_id,
                    old.cl_id,
                    o.symbol,
                    o.side,
                    o.qty,
                    o.price,
                    0,
                    self.book.position(o.symbol).qty,
                    reason,
                    0,
                )
            )
            return
        if o.acked:  # a cancel the venue refused (already gone there)
            log.warning("venue refused a cancel of cl %d: %s", o.cl_id, reason)
            return
        self.risk.on_done(o.symbol, o.side, o.leaves)
        self._report(
            ExecutionReport(
                EX_REJECTED,
                o.cl_id,
                0,
                o.symbol,
                o.side,
                o.qty,
                o.price,
                0,
                self.book.position(o.symbol).qty,
                reason,
                0,
            )
        )
        self._finish(o)

    def _finish(self, o: GwOrder) -> None:
        o.state = DONE
        self._drop(o)

    def _drop(self, o: GwOrder) -> None:
        if self.orders.get(o.cl_id) is o:
            del self.orders[o.cl_id]
        if self.by_ref.get(o.user_ref) is o:
            del self.by_ref[o.user_ref]

    # --- timers ---------------------------------------------------------------------------

    def on_timer(self, now: int) -> None:
        """Cancel orders the venue has not acknowledged in time; watch the strategy;
        drive a flatten."""
        limit = int(self.cfg.gateway.order_timeout_s * 1e9)
        for o in list(self.orders.values()):
            if o.state in (PENDING, CANCEL_PENDING) and now - o.sent_ns > limit:
                self.counters["timeouts"] += 1
                log.warning(
                    "order cl %d: %s for %.1f s: %s",
                    o.cl_id,
                    "no acknowledgement" if o.state == PENDING else "cancel unanswered",
                    (now - o.sent_ns) / 1e9,
                    "cancelling" if o.state == PENDING else "sending it again",
                )
                self._send_cancel(o, now)
        silent = now - self.strategy_seen_ns
        if self.strategy_up and silent > self.cfg.gateway.strategy_timeout_s * 1e9:
            self.strategy_up = False
            n = self.cancel_all()
            log.error(
                "strategy silent for %.1f s: cancelled its %d working orders, holding "
                "new ones until it is back",
                silent / 1e9,
                n,
            )
        if self.flattening:
            self._flatten_step(now)

    def heartbeat(self) -> ExecutionReport:
        return ExecutionReport(EX_HEARTBEAT, 0, 0, "", "", 0, 0, 0, 0, "", self.clock())


def _px(price: int) -> str:
    return "MKT" if price == ouch.MARKET_PRICE else f"{price / 10_000:.4f}"
