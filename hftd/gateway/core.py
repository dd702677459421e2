"""The gateway's logic (pure): order commands in, OUCH out; OUCH replies in,
execution reports out; risk inline; positions and P&L from every fill.

The daemon feeds it `OrderCommand`s from the orders ring and decoded OUCH
messages from the venue, and drains `to_venue` (OUCH payloads to send) and
`reports` (ExecutionReports for the strategy) after each call.

Recovery: every order sent and every venue message received is journaled
before it is acted on (`replay` rebuilds from the day's journal); the daemon
then checks the journal's end against the venue's stream (`hftd.gateway.reconcile`).
Without a journal the venue's stream from sequence 1 rebuilds the same:
Accepted messages echo the ClOrdID, where the gateway writes the strategy's
cl_id (base 36), so every order, position and P&L comes back as the venue
saw them. Reports for replies the strategy already received (up to
`quiet_until`, the venue sequence of the last report in the executions ring)
are not sent again.

Every sequenced message is journaled and applied or, if it cannot be (not
OUCH 5.0, or about an order or a fill the gateway does not know), counted in
`unusable` with a rate-limited error line: never skipped silently, and never a
reason to drop the session (a re-login would start after it anyway). Venue-side
changes are applied as OUCH 5.0 means them: a broken trade undoes its fill
(position, realized P&L, fill count: the symbol's position is recomputed from
its remaining fills), a trade correction re-prices or re-sizes it, an AIQ cancel
takes shares off like a cancel, Order Modified changes side or open size, a
priority update or restatement updates the working order, Cancel Pending
holds the cancel (not re-sent) and Cancel Reject makes the order live again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from hftd.config import HftdConfig
from hftd.gateway import venue as v
from hftd.gateway.lifecycle import (
    ACCEPTED,
    CANCEL_HELD,
    CANCEL_PENDING,
    CANCEL_REFUSED,
    CANCEL_REFUSED_UNACKED,
    CANCEL_SENT,
    CANCELED,
    DONE,
    FILLED,
    LIVE,
    PENDING,
    REDUCED,
    REJECTED,
    REPLACE_REFUSED,
    REPLACE_SENT,
    REPLACED,
    step,
)
from hftd.gateway.positions import FillLog, PositionBook
from hftd.msg import ids
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
    EX_POSITION,
    EX_REJECTED,
    EX_REPLACED,
    MARKET_PRICE,
    PRICE_SCALE,
    TIF_IOC,
    ExecutionReport,
    OrderCommand,
)
from hftd.risk.breaker import CircuitBreaker
from hftd.risk.engine import ACTIVE, HALTED, REDUCING, RiskEngine
from hftd.risk.limits import RiskLimits
from hftd.runtime.latency import HopRecorder
from hftd.runtime.log import LineBudget
from hftd.runtime.loglines import FillLines, OrderLines

log = logging.getLogger("hftd.gateway")
risk_log = logging.getLogger("hftd.risk")  # the risk lines: tagged RISK (hftd.runtime.log)


_jenc = msgspec.msgpack.Encoder()
_jdec = msgspec.msgpack.Decoder(tuple[Any, ...])
NEVER_NS = 1 << 63  # later than any clock reading
FLATTEN_TICKS = 20  # a flatten order crosses the mark by this many cents


class GwOrder:
    __slots__ = (
        "acked",
        "cancel_acked",
        "cl_id",
        "display_price",
        "leaves",
        "order_ref",
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
        self.cancel_acked = False  # the venue said Cancel Pending: do not send it again
        self.order_ref = 0  # the venue's order reference (priority updates)
        self.display_price = 0  # as the venue displays it, when it said (0: the price)
        self.t1 = self.t2 = self.t3 = self.t4 = 0
        self.sent_ns = 0


class JournalSink(Protocol):
    """Where the core's records go before they are acted on: the day's journal
    (hftd.runtime.journal.Journal), given by the daemon; the core does no I/O."""

    def append(self, payload: bytes) -> None: ...

    def commit(self) -> None:
        """Make what `append` took durable (a deferring journal writes it now)."""


class GatewayCore:
    def __init__(self, cfg: HftdConfig, clock: Callable[[], int], venue: v.VenueAdapter) -> None:
        self.cfg = cfg
        self.clock = clock
        self.venue = venue  # the venue's protocol (hftd.gateway.venue): the core speaks none
        self.risk = RiskEngine(cfg.risk)
        # Until the market view has a quote or a trade (start of day; a restart before
        # it caught up), the band's reference is each symbol's configured reference
        # price (its previous close): an order at any price must not pass unchecked.
        for s in cfg.symbols:
            self.risk.on_trade_price(s.symbol, s.reference_price_fp)
        self.book = PositionBook()
        self.latency = HopRecorder()
        self.orders: dict[int, GwOrder] = {}  # live orders by cl_id
        self.by_ref: dict[int, GwOrder] = {}  # live orders by UserRefNum
        self.next_user_ref = 1
        self.to_venue: list[bytes] = []
        self.sent_orders: list[GwOrder] = []  # to stamp T4 once on the wire
        self.sent_log: list[GwOrder] = []  # new orders whose "order sent" line is due
        self.order_lines = LineBudget()  # those lines a second, at most (hftd.runtime.log)
        self.reports: list[ExecutionReport] = []
        self.venue_seq = 0  # OUCH sequence number of the reply being applied
        self.venue_session = ""  # the venue session of the latest login (journaled "L")
        self.quiet_until = 0  # replies up to this sequence were already reported
        self.strategy_seen_ns = 0
        self.strategy_up = False
        self.venue_up = False
        self.breaker = CircuitBreaker(cfg.breaker)
        self.paused = False
        self.flattening = False
        self.mode_reason = ""  # the last mode change and why ("halt: circuit breaker: ...")
        self.next_internal_cl_id = ids.GATEWAY_FIRST  # its own orders (flatten): hftd.msg.ids
        # No order the timeout check may cancel (pending, or cancel pending and not
        # acknowledged) was sent before this: `on_timer` walks the orders only once the
        # oldest may be due, not every 10 ms over every order in flight (at 25k orders/s
        # thousands wait for their acknowledgement). 0: not known, walk at the next timer.
        self.oldest_sent_ns = 0
        self.journal: JournalSink | None = None
        self.recent_fills: deque[tuple[int, str, str, int, int, int, float | None]] = deque(
            maxlen=50
        )
        # Every fill of the day, in order, so that one the venue breaks or corrects can be
        # taken out of the position exactly (compact columns: it grows with the day).
        self.fill_log = FillLog()
        self.last_unusable = ""  # the latest message not applied, and why (Status)
        self._unusable_log_ns = 0  # no line about unusable messages before this
        self._unusable_skipped = 0  # ... and how many were left out since the last one
        self._bad_log_ns = 0  # no line about bad commands before this
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
            "unusable": 0,  # sequenced messages journaled but not applied (see last_unusable)
            "broken_trades": 0,
            "trade_corrections": 0,
            "aiq_cancels": 0,
            "cancel_pending": 0,
            "cancel_rejects": 0,
            "priority_updates": 0,
            "modified": 0,
            "restated": 0,
            "marks_ignored": 0,  # CMD_MARK from a strategy: not a reference (on_reference)
            "bad_commands": 0,  # orders-ring records that were no order command (bad_command)
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
            # Retired: risk's reference is the gateway's own market view
            # (`on_reference`), never a price the checked strategy supplies.
            self.counters["marks_ignored"] += 1
            return
        self.counters["commands"] += 1
        if kind == CMD_NEW:
            self._new(c, now)
        elif kind == CMD_CANCEL:
            self._cancel(c)
        elif kind == CMD_REPLACE:
            self._replace(c, now)

    def bad_command(self, why: str, now: int, fields: object = None) -> None:
        """An orders-ring record that is not an order command (a strategy's bug, or
        not a strategy: the ring is a boundary): dropped and counted, never acted
        on, never the end of the gateway. One line a second at most. A NEW whose
        `cl_id` can still be read (`fields`: the record decoded as plain msgpack)
        is rejected back, so its strategy does not wait for an answer forever;
        symbol left empty, so that no position is touched by the report."""
        self.counters["bad_commands"] += 1
        if (
            isinstance(fields, list)
            and len(fields) > 1
            and fields[0] == CMD_NEW
            and type(fields[1]) is int
            and fields[1] > 0
        ):
            self.reports.append(
                ExecutionReport(
                    EX_REJECTED, fields[1], 0, "", "", 0, 0, 0, 0, f"malformed order: {why}", 0
                )
            )
        if now >= self._bad_log_ns:
            self._bad_log_ns = now + 1_000_000_000
            log.error(
                "orders ring: a record that is not an order command, dropped (%d so far): %s",
                self.counters["bad_commands"],
                why,
            )

    def on_reference(self, symbol: str, price: int) -> None:
        """The market moved (the gateway's own view, `hftd.risk.market`): the price
        band and a market order's notional follow it, as the marks behind unrealized
        P&L and the loss stop do."""
        self.book.set_mark(symbol, price)
        self.risk.on_trade_price(symbol, price)
        self._set_pnl()

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
        market = price == MARKET_PRICE
        d = self.risk.check_new(symbol, side, qty, price, now, market)
        t3 = self.clock()
        if not d.ok:
            self.counters["risk_rejects"] += 1
            risk_log.warning(
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
        if now < self.oldest_sent_ns:
            self.oldest_sent_ns = now
        self.orders[cl_id] = o
        self.by_ref[ref] = o
        self.risk.on_sent(symbol, side, qty, now)
        self._out(cl_id, strategy, self.venue.enter(ref, cl_id, symbol, side, qty, price, tif))
        self.sent_orders.append(o)
        self.sent_log.append(o)  # its line once its bytes are on the socket: after_send
        self.counters["sent"] += 1
        return ""

    # --- operator controls, circuit breaker ----------------------------------------------

    @property
    def mode(self) -> str:
        """What the strategy may send. A latched loss stop is "reducing": risk passes
        only orders that reduce a position until the operator resumes."""
        if self.risk.mode == HALTED:
            return "halted"
        if self.risk.mode == REDUCING or self.risk.loss_stopped:
            return "reducing"
        return "paused" if self.paused else "active"

    def set_risk_limits(self, limits: RiskLimits) -> None:
        """New limits (a reload): a loss limit that latches or clears the stop changes
        the mode, and the strategy is told."""
        before = self.mode
        self.risk.set_limits(limits)
        if self.mode != before:
            self._mode_changed()

    def _set_pnl(self) -> None:
        """P&L to risk. The loss stop it may latch changes the mode: the strategy is
        told at once, or it would keep sending orders risk refuses."""
        risk = self.risk
        was = risk.loss_stopped
        risk.set_pnl(self.book.total())
        if risk.loss_stopped != was:
            risk_log.error(
                "LOSS STOP: P&L %s reached -daily_loss_limit: only position-reducing "
                "orders until `hftctl resume`",
                _px(risk.pnl),
            )
            self._mode_changed()

    def _maybe_trip(self, reason: str | None) -> None:
        if reason:
            risk_log.error(
                "CIRCUIT BREAKER tripped: %s: halting, cancelling working orders", reason
            )
            self.halt(f"circuit breaker: {reason}")

    def cancel_all(self) -> int:
        """Cancel every working order, re-sending cancels still unanswered."""
        n = 0
        now = self.clock()
        for o in list(self.orders.values()):
            if o.state in (PENDING, LIVE, CANCEL_PENDING) and not o.cancel_acked:
                self._send_cancel(o, now)
                n += 1
        return n

    def _send_cancel(self, o: GwOrder, now: int) -> None:
        o.state = step(o.state, CANCEL_SENT)
        o.sent_ns = now  # from now on: when the cancel went out
        if now < self.oldest_sent_ns:
            self.oldest_sent_ns = now
        self.risk.on_cancel_sent(now)
        self._out(o.cl_id, o.strategy, self.venue.cancel(o.user_ref))

    def _journal_mode(self, op: str, reason: str = "") -> None:
        """An operator's (or the breaker's) mode change, journaled: a restarted gateway
        comes back in the mode it was left in, never trading after a halt."""
        self.mode_reason = f"{op}: {reason}" if reason else op
        if self.journal is not None:
            self.journal.append(_jenc.encode(("M", op, reason)))
            self.journal.commit()  # the operator is told once it would survive a crash

    def _replay_mode(self, op: str, reason: str) -> None:
        """A journaled mode change, restored without acting (its cancels and orders
        are journaled as they went out)."""
        self.mode_reason = f"{op}: {reason}" if reason else op
        if op == "pause":
            self.paused = True
        elif op == "resume":
            self.paused = False
            self.flattening = False
            self.breaker.rearm()
            self.risk.set_mode(ACTIVE)
            self.risk.resume()
        elif op == "halt":
            self.risk.set_mode(HALTED)
            self.flattening = False
        elif op == "flatten":
            self.risk.set_mode(REDUCING)
            self.paused = False
            self.flattening = True

    def start_paused(self) -> None:
        """A new trading day with gateway.start_paused: paused before anything is sent,
        journaled as an operator's pause would be (a restart keeps it until resume)."""
        self._journal_mode("pause", "gateway.start_paused: `hftctl resume` to trade")
        self.paused = True
        log.warning("started PAUSED (gateway.start_paused): new orders held until resume")

    def pause(self) -> dict[str, object]:
        self._journal_mode("pause")
        self.paused = True
        log.warning("PAUSED by operator: new orders held, working orders stay")
        self._mode_changed()
        return {"mode": self.mode}

    def resume(self) -> dict[str, object]:
        self._journal_mode("resume")
        self.paused = False
        self.flattening = False
        self.breaker.rearm()
        self.risk.set_mode(ACTIVE)
        self.risk.resume()
        log.warning("RESUMED by operator: trading active (breaker re-armed)")
        self._mode_changed()
        return {"mode": self.mode}

    def halt(self, reason: str, *, cancel: bool = True) -> dict[str, object]:
        """HALTED: new orders refused until resume; working orders cancelled, unless
        `cancel` is False (the gateway's orders are in doubt: their UserRefNums may
        name other orders at the venue)."""
        self._journal_mode("halt", reason)
        self.risk.set_mode(HALTED)
        self.flattening = False
        self._mode_changed()
        if not cancel:
            log.error("HALTED (%s): new orders refused until resume, nothing cancelled", reason)
            return {"mode": self.mode, "cancelled": 0}
        n = self.cancel_all()
        log.error(
            "HALTED (%s): %d working orders cancelled, new orders refused until resume", reason, n
        )
        return {"mode": self.mode, "cancelled": n}

    def flatten(self) -> dict[str, object]:
        self._journal_mode("flatten")
        self.risk.set_mode(REDUCING)
        self.paused = False
        self.flattening = True
        self._mode_changed()
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
                price = MARKET_PRICE
            else:
                cross = FLATTEN_TICKS * 100
                price = mark - cross if side == "S" else mark + cross
                price -= price % 100
            cl_id = self.next_internal_cl_id
            self.next_internal_cl_id += 1
            self._send_new(cl_id, p.symbol, side, abs(p.qty), price, TIF_IOC, "flatten", 0, 0, now)

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
            risk_log.warning("risk REJECT replace %s: %s (%s)", old.symbol, d.check, d.reason)
            self._reject(c, f"risk {d.check}: {d.reason}", c.orig_cl_id)
            return
        ref = self.next_user_ref
        self.next_user_ref += 1
        new = GwOrder(c.cl_id, ref, old.symbol, old.side, c.qty, c.price, old.tif, c.strategy)
        new.orig = old
        new.t1, new.t2, new.t3 = c.t1, c.t2, self.clock()
        new.sent_ns = now
        if now < self.oldest_sent_ns:
            self.oldest_sent_ns = now
        old.state = step(old.state, REPLACE_SENT)
        self.orders[c.cl_id] = new
        self.by_ref[ref] = new
        new.reserved = self.risk.on_replace_sent(old.symbol, old.side, old.leaves, c.qty, now)
        self._out(
            c.cl_id,
            c.strategy,
            self.venue.replace(old.user_ref, ref, c.cl_id, c.qty, c.price, old.tif),
        )
        self.sent_orders.append(new)
        self.counters["replaces"] += 1

    def _out(self, cl_id: int, strategy: str, payload: bytes) -> None:
        """Queue one venue message, journaled first (it is acted on)."""
        if self.journal is not None:
            self.journal.append(_jenc.encode(("O", cl_id, strategy, payload)))
        self.to_venue.append(payload)

    # --- journal replay -------------------------------------------------------------------

    def replay(self, records: list[bytes], now: int) -> int:
        """Rebuild state from journal records; returns the last venue sequence seen.

        "O" records restore what was sent (orders, replaces, cancels pending);
        "V" records re-apply the venue's replies; "L" records name the venue
        session of each login (`venue_session`); "M" records restore the mode the
        operator or the breaker left (paused, halted, flattening): a restart never
        resumes trading by itself. Reports for replies past
        `quiet_until` (the strategy never got them) are produced again.
        """
        last_seq = 0
        journal, self.journal = self.journal, None  # replaying is not acting anew
        try:
            for raw in records:
                rec = _jdec.decode(raw)
                if rec[0] == "V":
                    last_seq = rec[1]
                    self.on_venue_payload(rec[2], rec[1], now)
                elif rec[0] == "L":
                    self.venue_session = rec[1]
                elif rec[0] == "M":
                    self._replay_mode(rec[1], rec[2])
                else:
                    self._replay_sent(rec[1], rec[2], self.venue.decode_sent(rec[3]), now)
        finally:
            self.journal = journal
        return last_seq

    def _replay_sent(self, cl_id: int, strategy: str, m: v.Sent, now: int) -> None:
        # Orders sent before the crash get a full timeout from now: their
        # acknowledgement may still come with the re-login.
        if type(m) is v.SentNew:
            if m.ref in self.by_ref:
                return
            o = GwOrder(cl_id, m.ref, m.symbol, m.side, m.qty, m.price, m.tif, strategy)
            o.sent_ns = now
            self.oldest_sent_ns = min(self.oldest_sent_ns, now)
            self.orders[cl_id] = o
            self.by_ref[m.ref] = o
            self.risk.on_sent(o.symbol, o.side, m.qty, 0)
            self.next_user_ref = max(self.next_user_ref, m.ref + 1)
        elif type(m) is v.SentReplace:
            old = self.by_ref.get(m.orig_ref)
            if old is None or m.ref in self.by_ref:
                return
            new = GwOrder(cl_id, m.ref, old.symbol, old.side, m.qty, m.price, old.tif, strategy)
            new.orig = old
            new.sent_ns = now
            self.oldest_sent_ns = min(self.oldest_sent_ns, now)
            old.state = step(old.state, REPLACE_SENT)
            self.orders[cl_id] = new
            self.by_ref[m.ref] = new
            new.reserved = self.risk.on_replace_sent(old.symbol, old.side, old.leaves, m.qty, 0)
            self.next_user_ref = max(self.next_user_ref, m.ref + 1)
        else:
            target = self.by_ref.get(m.ref)
            if target is not None and target.state in (PENDING, LIVE):
                target.state = step(target.state, CANCEL_SENT)
                target.sent_ns = now
                self.oldest_sent_ns = min(self.oldest_sent_ns, now)

    def journal_venue(self, seq: int, payload: bytes) -> None:
        """Journal a venue reply before it is applied."""
        if self.journal is not None:
            self.journal.append(_jenc.encode(("V", seq, payload)))

    def journal_login(self, session: str, seq: int) -> None:
        """Journal a login the venue accepted: its session (a day's, on a real venue)
        and the sequence number it starts from."""
        self.venue_session = session
        if self.journal is not None:
            self.journal.append(_jenc.encode(("L", session, seq)))
            self.journal.commit()

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
        """The queued OUCH bytes are handed to the socket now (T4). Call it before the
        send, not after: the venue may read them before send() returns, and a T4 later
        than the venue's receipt makes T1->T4 longer than the order's wire-to-wire time."""
        for o in self.sent_orders:
            o.t4 = t4
        self.sent_orders.clear()

    def after_send(self) -> None:
        """The queued bytes are on the socket: a record per new order among them, its
        risk check and "order sent" lines (hftd.runtime.loglines.OrderLines, text made
        when written). Made here, not as the order is risk-checked: a log record costs
        microseconds, and an order's T4 must not wait for it. At most
        `order_lines` a second: past it they are counted, and the next says how many."""
        sent = self.sent_log
        if not sent:
            return
        if log.isEnabledFor(logging.INFO):
            risk, budget = self.risk, self.order_lines
            n = len(sent)
            # What each check saw: the risk state now, less the orders sent after it
            # on the same symbol and side (one pass may send several).
            later = [0] * n
            if n > 1:
                acc: dict[tuple[str, str], int] = {}
                for i in range(n - 1, -1, -1):
                    o = sent[i]
                    key = (o.symbol, o.side)
                    later[i] = acc.get(key, 0)
                    acc[key] = later[i] + o.qty
            for i, o in enumerate(sent):
                left_out = budget.take(o.t4)
                if left_out < 0:
                    continue
                sym, buy = o.symbol, o.side == "B"
                pos = risk.position(sym)
                opened = risk.open_qty(sym, o.side) - later[i]
                lim = risk.limits_for(sym)
                log.info(
                    OrderLines(
                        sym,
                        o.side,
                        o.qty,
                        o.price,
                        o.cl_id,
                        o.user_ref,
                        o.strategy,
                        pos,
                        pos + opened if buy else pos - opened,
                        lim.max_position,
                        lim.max_order_notional,
                        risk.last_price(sym),
                        left_out,
                    )
                )
        sent.clear()

    # --- venue -> strategy ---------------------------------------------------------------

    def _report(self, r: ExecutionReport) -> None:
        """Queue a report of the venue message being applied, stamped with that
        message's sequence number now: a pass applies several, and a restarted
        gateway skips every report up to the last one the ring took, so each must
        carry its own position, not the pass's last."""
        if self.venue_seq > self.quiet_until:
            self.reports.append(msgspec.structs.replace(r, venue_seq=self.venue_seq))

    def stamp(self, r: ExecutionReport) -> ExecutionReport:
        """The report with the stream position it was made at (for restart dedup):
        a venue message's report has it already; one of ours (a reject, a heartbeat)
        gets the position reached when it is written."""
        return r if r.venue_seq else msgspec.structs.replace(r, venue_seq=self.venue_seq)

    def on_venue_payload(self, payload: bytes, seq: int, now: int) -> None:
        """Decode (the venue adapter) and apply one sequenced message; one it cannot
        read is counted and logged (`unusable`), never an error: the session and the
        stream go on."""
        try:
            e = self.venue.decode(payload)
        except v.UnreadableMessage as exc:
            self.venue_seq = seq
            self._unusable(f"not {self.venue.name} ({exc}): {bytes(payload[:40]).hex()}")
            return
        self.on_event(e, seq, now)

    def on_event(self, e: v.VenueEvent, seq: int, now: int) -> None:
        """Apply one venue event (sequence `seq` of our stream)."""
        self.venue_seq = seq
        t = type(e)
        if t is v.Executed:
            self._executed(e, now)  # type: ignore[arg-type]
        elif t is v.Accepted:
            self._accepted(e, now)  # type: ignore[arg-type]
        elif t is v.Canceled:
            c: v.Canceled = e  # type: ignore[assignment]
            self._canceled(c.ref, c.qty, c.reason)
        elif t is v.Replaced:
            self._replaced(e, now)  # type: ignore[arg-type]
        elif t is v.Rejected:
            self._rejected(e)  # type: ignore[arg-type]
        else:
            self._venue_side(e)

    def _unusable(self, why: str) -> None:
        """A sequenced message that was journaled but cannot be applied: count it, say so."""
        self.counters["unusable"] += 1
        self.last_unusable = f"sequence {self.venue_seq}: {why[:300]}"
        now = self.clock()
        if now < self._unusable_log_ns:  # at most one line a second: a venue cannot flood
            self._unusable_skipped += 1
            return
        self._unusable_log_ns = now + 1_000_000_000
        skipped, self._unusable_skipped = self._unusable_skipped, 0
        log.error(
            "venue message not applied (journaled, counted in unusable): %s%s",
            self.last_unusable,
            f" ({skipped} more since the last line)" if skipped else "",
        )

    def _untracked(self, what: str, user_ref: int) -> None:
        self.counters["untracked"] += 1
        self._unusable(f"{what} for unknown UserRefNum {user_ref}")

    # --- venue-side changes (the rare kinds) ------------------------------------------

    def _venue_side(self, e: v.VenueEvent) -> None:
        if isinstance(e, v.SystemEvent):
            log.info("venue system event %r (sequence %d)", e.code, self.venue_seq)
        elif isinstance(e, v.TradeBroken):
            self._fix_fill(e.ref, e.match, None, f"broken ({e.reason})")
        elif isinstance(e, v.TradeCorrected):
            self._fix_fill(e.ref, e.match, (e.qty, e.price), f"corrected ({e.reason})")
        elif isinstance(e, v.CancelHeld):
            self._cancel_pending(e)
        elif isinstance(e, v.CancelRefused):
            self._cancel_reject(e)
        elif isinstance(e, v.PriorityUpdate):
            self._priority_update(e)
        elif isinstance(e, v.Modified):
            self._modified(e)
        elif isinstance(e, v.Restated):
            self._restated(e)
        elif isinstance(e, v.NextRef):
            self.next_user_ref = max(self.next_user_ref, e.next_ref)
        else:  # a message the adapter reads and the core has no use for: never silent
            self._unusable(f"{getattr(e, 'what', type(e).__name__)} is not handled")

    def _fix_fill(
        self, user_ref: int, match_number: int, new: tuple[int, int] | None, what: str
    ) -> None:
        """A broken (`new` None) or corrected (`new` = qty, price) execution: the
        symbol's position and realized P&L become what its other fills make them."""
        log_ = self.fill_log
        i = log_.find(match_number)
        if i < 0:
            self._unusable(f"execution {match_number} {what}: no such fill of ours")
            return
        _match, symbol, side, qty, price = log_[i]
        if new is None:
            del log_[i]
            self.counters["broken_trades"] += 1
            self.counters["fills"] -= 1
        else:
            log_.correct(i, new[0], new[1])
            self.counters["trade_corrections"] += 1
        self.book.rebuild(symbol, log_.of_symbol(symbol))
        pos = self.book.position(symbol)
        self.risk.set_position(symbol, pos.qty)
        self._set_pnl()
        log.warning(
            "execution %d (UserRefNum %d, %s %s %d @ %s) %s by the venue%s: position %s %d, "
            "realized %s",
            match_number,
            user_ref,
            symbol,
            "BUY" if side == "B" else "SELL",
            qty,
            _px(price),
            what,
            "" if new is None else f" to {new[0]} @ {_px(new[1])}",
            symbol,
            pos.qty,
            _px(pos.realized),
        )
        o = self.by_ref.get(user_ref)
        self._report(
            ExecutionReport(
                EX_POSITION,
                0,  # not an order event: a strategy takes the position, whatever the order
                0,
                symbol,
                side,
                qty if new is None else new[0],
                price if new is None else new[1],
                o.leaves if o is not None else 0,
                pos.qty,
                what,
                0,
            )
        )

    def _order(self, user_ref: int, what: str) -> GwOrder | None:
        o = self.by_ref.get(user_ref)
        if o is None:
            self._untracked(what, user_ref)
        return o

    def _cancel_pending(self, m: v.CancelHeld) -> None:
        o = self._order(m.ref, "Cancel Pending")
        if o is None:
            return
        self.counters["cancel_pending"] += 1
        o.state = step(o.state, CANCEL_HELD)
        o.cancel_acked = True  # the venue has it: no re-sending on timeout
        log.info("cancel of cl %d pending at the venue", o.cl_id)

    def _cancel_reject(self, m: v.CancelRefused) -> None:
        o = self._order(m.ref, "Cancel Reject")
        if o is None:
            return
        self.counters["cancel_rejects"] += 1
        o.cancel_acked = False
        self.oldest_sent_ns = 0  # it may be due again, sent long ago: walk at the next timer
        o.state = step(o.state, CANCEL_REFUSED if o.acked else CANCEL_REFUSED_UNACKED)
        log.warning(
            "venue refused to cancel cl %d (UserRefNum %d): it stays working", o.cl_id, o.user_ref
        )

    def _priority_update(self, m: v.PriorityUpdate) -> None:
        o = self._order(m.ref, "Order Priority Update")
        if o is None:
            return
        self.counters["priority_updates"] += 1
        log.info(
            "venue re-priced cl %d: %s -> %s (display %s, order reference %d)",
            o.cl_id,
            _px(o.price),
            _px(m.price),
            m.display,
            m.venue_order_id,
        )
        o.price = m.price
        o.display_price = m.price
        o.order_ref = m.venue_order_id

    def _modified(self, m: v.Modified) -> None:
        o = self._order(m.ref, "Order Modified")
        if o is None:
            return
        self.counters["modified"] += 1
        side = "B" if m.side == "B" else "S"
        if side != o.side and o.leaves > 0:  # the open shares move to the other side
            self.risk.on_open_reduced(o.symbol, o.side, o.leaves)
            self.risk.on_open_added(o.symbol, side, o.leaves)
        log.warning(
            "venue modified cl %d: %s %d open -> %s %d open",
            o.cl_id,
            o.side,
            o.leaves,
            side,
            m.qty,
        )
        o.side = side
        change = m.qty - o.leaves
        if change > 0:
            self.risk.on_open_added(o.symbol, side, change)
        elif change < 0:
            self.risk.on_open_reduced(o.symbol, side, -change)
        o.leaves = m.qty
        if change < 0:
            self._report(
                ExecutionReport(
                    EX_CANCELED,
                    o.cl_id,
                    0,
                    o.symbol,
                    o.side,
                    -change,
                    o.price,
                    o.leaves,
                    self.book.position(o.symbol).qty,
                    v.CANCEL_MODIFIED,
                    0,
                )
            )
        if o.leaves <= 0:
            self.risk.on_order_finished()
            self._finish(o, CANCELED)  # modified down to nothing

    def _restated(self, m: v.Restated) -> None:
        o = self._order(m.ref, "Order Restated")
        if o is None:
            return
        self.counters["restated"] += 1
        shown = m.display_price
        if shown:
            o.display_price = shown
        log.info(
            "venue restated cl %d (%s)%s",
            o.cl_id,
            m.why,
            f", displayed at {_px(shown)}" if shown else "",
        )

    def _accepted(self, m: v.Accepted, now: int) -> None:
        o = self.by_ref.get(m.ref)
        if o is None:  # replaying a previous run's order: rebuild it from the echo
            o = GwOrder(m.cl_id, m.ref, m.symbol, m.side, m.qty, m.price, m.tif, "")
            self.orders[o.cl_id] = o
            self.by_ref[m.ref] = o
            # Rebuilt from a replay: open and working, but not in today's rate window.
            self.risk.on_sent(o.symbol, o.side, m.qty, 0)
        self.next_user_ref = max(self.next_user_ref, m.ref + 1)
        o.acked = True
        o.state = step(o.state, ACCEPTED)
        if o.t4:
            self.latency.record(o.t1, o.t2, o.t3, o.t4, now)
        self._report(
            ExecutionReport(
                EX_ACCEPTED,
                o.cl_id,
                0,
                o.symbol,
                o.side,
                m.qty,
                m.price,
                o.leaves,
                self.book.position(o.symbol).qty,
                "",
                now,
            )
        )

    def _executed(self, m: v.Executed, now: int) -> None:
        o = self.by_ref.get(m.ref)
        if o is None:
            self._untracked(f"execution {m.match}", m.ref)
            return
        side = "B" if o.side == "B" else "S"
        o.leaves -= m.qty
        done = o.leaves <= 0
        self.fill_log.append(m.match, o.symbol, side, m.qty, m.price)
        pos = self.book.position(o.symbol)
        held = pos.qty  # before the fill: does it reduce?
        pnl = self.book.on_fill(o.symbol, side, m.qty, m.price)
        self.risk.on_fill(o.symbol, side, m.qty, m.price, order_done=done)
        self._set_pnl()
        self.counters["fills"] += 1
        # (the core's clock at the fill, symbol, side, qty, price, tick-to-trade ns, P&L
        # per share closed or None): the daemon turns the clock into wall time for Status
        # (the core reads none). A reducing fill realized `pnl` on min(qty, |held|) shares.
        self.recent_fills.append(
            (
                now,
                o.symbol,
                side,
                m.qty,
                m.price,
                o.t4 - o.t1 if o.t1 and o.t4 else 0,
                pnl / min(m.qty, abs(held)) if (held < 0 if side == "B" else held > 0) else None,
            )
        )
        if self.venue_seq > self.quiet_until and log.isEnabledFor(logging.INFO):
            # the fill, the position and P&L against their limits, the latency: one
            # record, its text made when it is written (hftd.runtime.loglines)
            risk, book = self.risk, self.book
            log.info(
                FillLines(
                    o.symbol,
                    side,
                    m.qty,
                    m.price,
                    o.cl_id,
                    o.user_ref,
                    done,
                    pos.qty,
                    risk.limits_for(o.symbol).max_position,
                    book.total(),
                    book.realized(),
                    risk.limits.daily_loss_limit,
                    o.t1,
                    o.t2,
                    o.t4,
                    now,
                )
            )
        self._report(
            ExecutionReport(
                EX_FILL,
                o.cl_id,
                0,
                o.symbol,
                side,
                m.qty,
                m.price,
                max(o.leaves, 0),
                pos.qty,
                m.liquidity,
                now,
            )
        )
        if done:
            self._finish(o, FILLED)

    def _canceled(self, user_ref: int, quantity: int, reason: str) -> None:
        o = self.by_ref.get(user_ref)
        if o is None:
            self._untracked("cancel", user_ref)
            return
        o.leaves -= quantity
        if quantity > 0:
            self.risk.on_open_reduced(o.symbol, o.side, quantity)
        self.counters["cancels"] += 1
        if reason == v.CANCEL_SELF_MATCH:
            self.counters["aiq_cancels"] += 1
            log.info(
                "self-match prevention took %d shares of cl %d off (UserRefNum %d)",
                quantity,
                o.cl_id,
                user_ref,
            )
        trip = (
            self.breaker.record("cancels", self.clock())
            if self.venue_seq > self.quiet_until and reason == v.CANCEL_USER
            else None
        )
        if o.leaves <= 0:
            self.risk.on_order_finished()
        self._report(
            ExecutionReport(
                EX_CANCELED,
                o.cl_id,
                0,
                o.symbol,
                o.side,
                quantity,
                o.price,
                max(o.leaves, 0),
                self.book.position(o.symbol).qty,
                reason,
                0,
            )
        )
        if o.leaves <= 0:
            self._finish(o, CANCELED)
        else:
            if o.state == CANCEL_PENDING:
                o.cancel_acked = False  # what is left works, uncancelled
            o.state = step(o.state, REDUCED)
        self._maybe_trip(trip)  # after: a halt's cancel-all must not cancel it again

    def _replaced(self, m: v.Replaced, now: int) -> None:
        old = self.by_ref.get(m.orig_ref)
        new = self.by_ref.get(m.ref)
        if old is None:
            self._untracked("Replaced", m.orig_ref)
            return
        if new is None:  # replaying a previous run's replace
            new = GwOrder(m.cl_id, m.ref, m.symbol, m.side, m.qty, m.price, m.tif, old.strategy)
            self.orders[new.cl_id] = new
            self.by_ref[m.ref] = new
            new.reserved = self.risk.on_replace_sent(old.symbol, old.side, old.leaves, m.qty, 0)
        self.next_user_ref = max(self.next_user_ref, m.ref + 1)
        self.risk.on_replace_done(
            old.symbol, old.side, old.leaves, m.qty, accepted=True, reserved=new.reserved
        )
        new.leaves = m.qty
        new.state = step(new.state, REPLACED)
        new.acked = True
        # The replace is settled: the old order is gone. Keeping the link would keep
        # every order a live one replaced alive (a chain, one per replace), and make a
        # later refused cancel of this order look like a refused replace.
        new.orig = None
        if new.t4:
            self.latency.record(new.t1, new.t2, new.t3, new.t4, now)
        self._finish(old, REPLACED)
        self._report(
            ExecutionReport(
                EX_REPLACED,
                new.cl_id,
                old.cl_id,
                new.symbol,
                new.side,
                m.qty,
                m.price,
                m.qty,
                self.book.position(new.symbol).qty,
                "",
                now,
            )
        )

    def _rejected(self, m: v.Rejected) -> None:
        o = self.by_ref.get(m.ref)
        if o is None:
            if m.ref < self.next_user_ref and m.reason == v.REJECT_UNKNOWN_ORDER:
                # A cancel that crossed the order's last fill: the order is done already.
                self.counters["late_cancel_rejects"] += 1
            else:
                self._untracked("Rejected", m.ref)
            return
        self.counters["venue_rejects"] += 1
        self.next_user_ref = max(self.next_user_ref, m.ref + 1)
        trip = (
            self.breaker.record("venue_rejects", self.clock())
            if self.venue_seq > self.quiet_until
            else None
        )
        # The reject is applied before a trip acts on it: the halt's cancel-all must
        # not send a cancel for the very order the venue just refused.
        self._apply_reject(o, f"venue: {m.text}")
        self._maybe_trip(trip)

    def _apply_reject(self, o: GwOrder, reason: str) -> None:
        if o.orig is not None and o.state != LIVE:  # a refused replace: the old order lives on
            old = o.orig
            self.risk.on_replace_done(
                old.symbol, old.side, old.leaves, o.qty, accepted=False, reserved=o.reserved
            )
            old.state = step(old.state, REPLACE_REFUSED)
            self._finish(o, REJECTED)
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
        self._finish(o, REJECTED)

    def _finish(self, o: GwOrder, event: str) -> None:
        """The order's last event (filled, cancelled, rejected, replaced): done, and
        off the books."""
        o.state = step(o.state, event)
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
        if now - self.oldest_sent_ns > limit:  # else none can be due: no walk
            oldest = NEVER_NS
            for o in list(self.orders.values()):
                if o.cancel_acked:  # Cancel Pending: the venue has the cancel, no re-sending
                    continue
                if o.state in (PENDING, CANCEL_PENDING):
                    if now - o.sent_ns > limit:
                        self.counters["timeouts"] += 1
                        log.warning(
                            "order cl %d: %s for %.1f s: %s",
                            o.cl_id,
                            "no acknowledgement" if o.state == PENDING else "cancel unanswered",
                            (now - o.sent_ns) / 1e9,
                            "cancelling" if o.state == PENDING else "sending it again",
                        )
                        self._send_cancel(o, now)
                    if o.sent_ns < oldest:
                        oldest = o.sent_ns
            self.oldest_sent_ns = oldest
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

    def excuse_stall(self, stalled_ns: int, now: int) -> None:
        """The gateway itself did not run for `stalled_ns` (its process stopped or
        starved; in the composite layout the strategy stopped with it): the strategy's
        silence over that time says nothing of the strategy, and is not counted. Only
        the stall is credited: silence before or after it still counts. The daemon's
        loop calls this when its 10 ms timer ran that late; a backtest, whose clock
        jumps over idle stretches, does not."""
        if not self.strategy_up or stalled_ns <= 0:
            return
        self.strategy_seen_ns = min(now, self.strategy_seen_ns + stalled_ns)
        if stalled_ns > self.cfg.gateway.strategy_timeout_s * 1e9:
            log.warning(
                "the gateway did not run for %.1f s: the strategy's silence over that "
                "time is not held against it",
                stalled_ns / 1e9,
            )

    def heartbeat(self) -> ExecutionReport:
        """Alive, and the trading mode (reason): what the strategy may send."""
        return ExecutionReport(EX_HEARTBEAT, 0, 0, "", "", 0, 0, 0, 0, self.mode, self.clock())

    def _mode_changed(self) -> None:
        """Tell the strategy now, not at the next heartbeat: orders it sends meanwhile
        would only be refused."""
        self.reports.append(self.heartbeat())


def journal_tail(records: list[bytes], first: int) -> dict[int, bytes]:
    """The journaled venue messages numbered `first` and above, by sequence number
    (the journal's last ones: what a restart re-reads from the venue to compare)."""
    tail: dict[int, bytes] = {}
    for raw in reversed(records):
        rec = _jdec.decode(raw)
        if rec[0] == "V":
            if rec[1] < first:
                break
            tail[rec[1]] = rec[2]
    return tail


def _px(price: int) -> str:
    return "MKT" if price == MARKET_PRICE else f"{price / PRICE_SCALE:.4f}"
