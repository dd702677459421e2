"""The backtest loop (pure, deterministic): recorded market data through the live
system's own strategy engine, gateway order core (risk, positions, P&L, order
lifecycle) and risk's market view, against a venue model that puts our orders
into the recorded book at their queue position (`hftd.backtest.queue`).

Nothing here is a second implementation: the loop only moves messages between
the same objects the daemons drive, on the data's clock instead of the wall's.

    source --md--> QueueVenue --(feed latency)--> MarketView -> GatewayCore.on_reference
                                              \\-> StrategyEngine.on_update
    StrategyEngine --OrderCommand--> GatewayCore.on_command (risk, journal-free)
    GatewayCore.to_venue --(entry latency)--> QueueVenue.enter/cancel/replace
    QueueVenue events --(response latency)--> GatewayCore.on_event --reports--> StrategyEngine

Time is the data's: nanoseconds since midnight (`MarketDataUpdate.exch_ts`).
Each hop is a FIFO (a TCP session or a ring does not reorder), so a message
arrives at `max(previous arrival, sent + latency)`. When several things fall due
at the same nanosecond they are taken in one fixed order: market data at the
venue, our orders at the venue, the venue's replies at the gateway, market
data at the strategy, timers. Same input, same config: the same run, to the
byte (no wall clock, seeded latency draws, no hash-ordered iteration).

Timers (the daemons' 10 ms ticks: heartbeats, the gateway's order timeouts,
the strategies' own timers, their P&L marks) tick on the data's clock. In a
stretch where no market data comes and nothing is in flight, they tick once,
at the last step before the next event, not at every step between:
the strategies' timer decisions only look at elapsed time then, and ticking
through an idle night would cost more than the day. So a timer decision
falling inside such a stretch (a momentum order's timeout, the market maker's
stale-data pull) is taken at its end.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from hftd.backtest.latency import measured
from hftd.backtest.queue import QueueVenue
from hftd.backtest.results import Fill, OrderRecord, Results, Sample
from hftd.config import HftdConfig
from hftd.exchange.latency import LatencyModel
from hftd.gateway import venue as v
from hftd.gateway.core import GatewayCore
from hftd.msg import ids
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_NEW,
    EX_FILL,
    EX_REJECTED,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.risk.market import MarketView
from hftd.runtime.hdr import SparseHistogram
from hftd.strategy.engine import StrategyEngine

log = logging.getLogger("hftd.backtest")

HEARTBEAT_NS = 1_000_000_000  # the gateway's heartbeat (mode) to the strategy
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(tuple[Any, ...])


class SimAdapter:
    """The gateway core's venue adapter in a backtest: our orders as small tuples
    for the venue model (nothing crosses a wire); replies come back as events."""

    name = "backtest venue"

    def enter(
        self, ref: int, cl_id: int, symbol: str, side: str, qty: int, price: int, tif: str
    ) -> bytes:
        return _enc.encode(("N", ref, cl_id, symbol, side, qty, price, tif))

    def cancel(self, ref: int) -> bytes:
        return _enc.encode(("C", ref))

    def replace(self, orig_ref: int, ref: int, cl_id: int, qty: int, price: int, tif: str) -> bytes:
        return _enc.encode(("R", orig_ref, ref, cl_id, qty, price, tif))

    def decode(self, payload: bytes) -> v.VenueEvent:
        raise v.UnreadableMessage("the backtest's venue model hands its events over directly")

    def decode_sent(self, payload: bytes) -> v.Sent:
        m = _dec.decode(payload)
        if m[0] == "N":
            return v.SentNew(m[1], m[3], m[4], m[5], m[6], m[7])
        if m[0] == "R":
            return v.SentReplace(m[1], m[2], m[4], m[5])
        return v.SentCancel(m[1])


def _fifo_latency(cfg: Any) -> Callable[[int], int]:
    """`sent -> arrival` for one hop: constant or seeded draws, never overtaking."""
    model = LatencyModel(cfg)
    last = [0]
    if cfg.kind in ("none", "fixed"):  # (the clock never goes back: no overtaking)
        fixed = int(cfg.micros * 1000) if cfg.kind == "fixed" else 0

        def constant(t: int) -> int:
            return t + fixed

        return constant

    def draw(t: int) -> int:
        at = t + int(model.sample() * 1e9)
        if at < last[0]:
            at = last[0]
        last[0] = at
        return at

    return draw


def _fifo_draws(draw: Callable[[], int]) -> Callable[[int], int]:
    """`sent -> arrival` with a delay drawn per message, never overtaking."""
    last = [0]

    def at(t: int) -> int:
        a = t + draw()
        if a < last[0]:
            a = last[0]
        last[0] = a
        return a

    return at


class Backtest:
    """One run: feed it the data (`run`), then read its `results`
    (hftd.backtest.results: by default every row kept, `fills`, `orders` and
    `samples`; a `Results(names, out, keep=False)` writes them as they come and
    keeps only running figures, for a day of any length)."""

    def __init__(
        self,
        cfg: HftdConfig,
        on_progress: Callable[[int, int], None] | None = None,
        hops: dict[str, SparseHistogram] | None = None,
        results: Results | None = None,
    ):
        self.cfg = cfg
        bt = cfg.backtest
        self.now = 0
        symbols = [s.symbol for s in cfg.symbols]
        self.engine = StrategyEngine(cfg, self._send, self._clock)
        self.core = GatewayCore(cfg, self._clock, SimAdapter())
        self.core.venue_up = True
        self.market = MarketView(symbols, self._clock_s)
        self.venue = QueueVenue(symbols)
        self.feed_at = _fifo_latency(bt.feed_latency)
        self.entry_at = _fifo_latency(bt.entry_latency)
        self.reply_at = _fifo_latency(bt.response_latency)
        if hops is not None:  # the live system's measured delays (hftd.backtest.latency)
            entry, response = measured(hops, bt.latency_seed)
            self.entry_at, self.reply_at = _fifo_draws(entry), _fifo_draws(response)
        self.feed_direct = bt.feed_latency.kind == "none"
        self.to_feed: deque[tuple[int, MarketDataUpdate]] = deque()
        self.to_venue: deque[tuple[int, bytes]] = deque()
        self.to_gateway: deque[tuple[int, v.VenueEvent]] = deque()
        self.commands: list[OrderCommand] = []
        self.timer_ns = int(bt.timer_ms * 1e6)
        self.next_timer = 0  # set by the first message
        self.next_heartbeat = 0
        self.equity_ns = int(bt.equity_interval_s * 1e9)
        self.next_sample = 0
        self.venue_seq = 0
        self.fees = bt.fees
        self.names = [i.name for i in cfg.strategy.instances]
        if results is not None and results.names != self.names:
            raise ValueError(f"results for {results.names}, strategies {self.names}")
        self.results = results if results is not None else Results(self.names)
        self.fees_nano: dict[str, int] = dict.fromkeys(self.names, 0)
        self.rejects: dict[str, int] = dict.fromkeys(self.names, 0)
        self.events = 0  # market-data updates read
        self.backwards = 0  # updates stamped before the one before (taken as then)
        self.first_ts = -1
        self.on_progress = on_progress

    @property
    def fills(self) -> list[Fill]:
        """Every fill (kept results only: `Results.keep`)."""
        return self.results.fills

    @property
    def orders(self) -> list[OrderRecord]:
        """Every order sent (kept results only)."""
        return self.results.orders

    @property
    def samples(self) -> list[Sample]:
        """Every equity sample (kept results only)."""
        return self.results.samples

    # --- clocks ----------------------------------------------------------------------

    def _clock(self) -> int:
        return self.now

    def _clock_s(self) -> float:
        return self.now / 1e9

    # --- the loop --------------------------------------------------------------------

    def run(self, updates: Iterable[MarketDataUpdate]) -> None:
        """Play `updates` (one stream, in the venue's order) to their end, then let
        everything in flight arrive."""
        on_market = self.venue.on_market
        deliver = self._deliver
        progress = self.on_progress
        to_feed, to_venue, to_gateway = self.to_feed, self.to_venue, self.to_gateway
        feed_at, direct = self.feed_at, self.feed_direct
        for u in updates:
            t = u.exch_ts
            if t < self.now:
                self.backwards += 1
                t = self.now
            if self.first_ts < 0:
                self.first_ts = t
                self.next_timer = t
                self.next_sample = t
            due = self.next_timer
            if to_feed and not (to_venue or to_gateway):
                # the common case, inline: market data on its way to our side, due
                # before this message and before the next timer, nothing else in flight
                while to_feed and to_feed[0][0] < t and to_feed[0][0] < due:
                    at, x = to_feed.popleft()
                    self.now = at
                    deliver(x)
                    if to_venue or to_gateway:
                        break
            # when the next queued thing (or timer) falls due
            if to_venue and to_venue[0][0] < due:
                due = to_venue[0][0]
            if to_gateway and to_gateway[0][0] < due:
                due = to_gateway[0][0]
            if to_feed and to_feed[0][0] < due:
                due = to_feed[0][0]
            if t >= due:
                self._advance(t)
            self.now = t
            self.events += 1
            evs = on_market(u)
            if evs:
                self._replies(evs)
            if direct and not to_feed:
                deliver(u)
            else:
                to_feed.append((feed_at(t), u))
            if progress is not None and not self.events & 0xFFFF:
                progress(self.events, t)
        # the data ended: what is in flight arrives, the timers run one more second
        self._advance(self.now + 1_000_000_000)
        self._mark_all()
        self._sample(force=True)

    def _advance(self, until: int) -> None:
        """Everything due before `until` (the next md message's time), in time order,
        ties in the fixed order of the module docstring."""
        while True:
            best = until
            which = 0
            if self.to_venue and self.to_venue[0][0] < best:
                best, which = self.to_venue[0][0], 1
            if self.to_gateway and self.to_gateway[0][0] < best:
                best, which = self.to_gateway[0][0], 2
            if self.to_feed and self.to_feed[0][0] < best:
                best, which = self.to_feed[0][0], 3
            if self.next_timer < best:
                best, which = self.next_timer, 4
            if not which:
                return
            if which == 4 and not (self.to_venue or self.to_gateway or self.to_feed):
                # idle: only the last tick before `until` (module docstring)
                gap = until - 1 - best
                if gap >= self.timer_ns:
                    best += gap // self.timer_ns * self.timer_ns
            self.now = best
            if which == 1:
                self._at_venue(self.to_venue.popleft()[1])
            elif which == 2:
                self._at_gateway(self.to_gateway.popleft()[1])
            elif which == 3:
                self._deliver(self.to_feed.popleft()[1])
            else:
                self._tick()
                self.next_timer = best + self.timer_ns

    # --- hops ------------------------------------------------------------------------

    def _deliver(self, u: MarketDataUpdate) -> None:
        """A market-data message reaches our side: risk's view, then the strategies."""
        sym = self.market.on_update(u)
        if sym:
            self.core.on_reference(sym, self.market.reference[sym])
        self.engine.on_update(u)
        if self.commands:
            self._pump()

    def _send(self, cmd: OrderCommand) -> bool:
        """The strategies' orders ring: taken in order once the engine's call returns."""
        self.commands.append(cmd)
        return True

    def _pump(self) -> None:
        """Commands through the gateway core; its venue messages onto the wire; its
        reports to the strategies (which may send more: until quiet)."""
        core, now = self.core, self.now
        while self.commands or core.reports:
            cmds, self.commands = self.commands, []
            for c in cmds:
                if c.kind != CMD_HEARTBEAT:
                    self._record(c)
                core.on_command(c, now)
            if core.to_venue:
                for payload in core.to_venue:
                    self.to_venue.append((self.entry_at(now), payload))
                core.to_venue.clear()
                core.stamp_sent(now)
                core.after_send()
            if core.reports:
                reps, core.reports = core.reports, []
                for r in reps:
                    self._report(r)

    def _report(self, r: Any) -> None:
        """One execution report reaches the strategies (and the results)."""
        kind = r.kind
        if kind in (EX_FILL, EX_REJECTED):
            idx = ids.instance_of(r.cl_id)
            if 0 <= idx < len(self.names):
                name = self.names[idx]
                if kind == EX_REJECTED:
                    self.rejects[name] += 1
                else:
                    fee = self.fees.per_share_nano(r.reason) * r.qty
                    self.fees_nano[name] += fee
                    self.results.fill(
                        Fill(
                            self.now, name, r.cl_id, r.symbol, r.side, r.qty, r.price, r.reason, fee
                        )
                    )
        self.engine.on_report(r)

    def _record(self, c: OrderCommand) -> None:
        action = "new" if c.kind == CMD_NEW else "cancel" if c.kind == CMD_CANCEL else "replace"
        self.results.order(
            OrderRecord(
                self.now,
                c.strategy,
                c.cl_id,
                action,
                c.symbol,
                c.side,
                c.qty,
                c.price,
                c.tif,
                c.orig_cl_id,
            )
        )

    def _at_venue(self, payload: bytes) -> None:
        m = _dec.decode(payload)
        venue = self.venue
        if m[0] == "N":
            evs = venue.enter(m[1], m[2], m[3], m[4], m[5], m[6], m[7])
        elif m[0] == "C":
            evs = venue.cancel(m[1])
        else:
            evs = venue.replace(m[1], m[2], m[3], m[4], m[5])
        self._replies(evs)

    def _replies(self, evs: list[v.VenueEvent]) -> None:
        at = self.reply_at(self.now)
        for e in evs:
            self.to_gateway.append((at, e))

    def _at_gateway(self, e: v.VenueEvent) -> None:
        self.venue_seq += 1
        self.core.on_event(e, self.venue_seq, self.now)
        self._pump()

    def _tick(self) -> None:
        """The daemons' timers at `now`: the gateway's (timeouts, heartbeat with the
        mode), the strategy engine's (heartbeat, marks, strategy timers)."""
        now = self.now
        core, engine = self.core, self.engine
        # The recorded feed never drops: its heartbeats are implied, so quiet data is
        # not stale data (the strategy daemon stamps this on every md read).
        engine.last_md_ns = now
        engine.on_timer()  # its heartbeat reaches the gateway before the gateway's
        if self.commands or core.reports:  # timer looks for a silent strategy
            self._pump()
        core.on_timer(now)
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + HEARTBEAT_NS
            core.reports.append(core.heartbeat())
        if self.commands or core.reports:
            self._pump()
        if now >= self.next_sample:
            self._sample()

    # --- results -----------------------------------------------------------------------

    def _mark_all(self) -> None:
        """Every strategy's positions marked at the last mids (the engine marks on its
        timer; the day's end needs the last ones)."""
        books = self.engine.builder.books
        for s in self.engine.contexts:
            for sym in s.om.book.symbols():
                b = books.get(sym)
                bid, ask = (b.best_bid(), b.best_ask()) if b is not None else (None, None)
                if bid is not None and ask is not None:
                    s.om.book.set_mark(sym, (bid[0] + ask[0]) // 2)

    def _sample(self, force: bool = False) -> None:
        now = self.now
        if not force:
            self.next_sample = now - (now - self.first_ts) % self.equity_ns + self.equity_ns
        mids: dict[str, int] = {}
        for sym, b in sorted(self.engine.builder.books.items()):
            bid, ask = b.best_bid(), b.best_ask()
            mids[sym] = (bid[0] + ask[0]) // 2 if bid is not None and ask is not None else 0
        pnl: dict[str, int] = {}
        pos: dict[str, dict[str, int]] = {}
        for s in self.engine.contexts:
            book = s.om.book
            pnl[s.name] = book.total()
            pos[s.name] = {sym: book.position(sym).qty for sym in sorted(book.symbols())}
        self.results.sample(Sample(now, pnl, dict(self.fees_nano), pos, mids))

    def strategy_counts(self) -> dict[str, dict[str, int]]:
        """Each instance's order manager's counters (sent, fills, rejects, held, ...)."""
        return {s.name: dict(s.om.counts) for s in self.engine.contexts}


def updates_of(sources: Iterable[Iterable[MarketDataUpdate]]) -> Iterator[MarketDataUpdate]:
    """One stream from several sources: merged by time (a tie: the earlier source
    first), each source's locate codes mapped to their own, renumbered from 1."""
    srcs = list(sources)
    if len(srcs) == 1:
        yield from srcs[0]
        return
    import heapq

    def keyed(i: int, src: Iterable[MarketDataUpdate]) -> Iterator[tuple[int, int, int, Any]]:
        for n, u in enumerate(src):
            yield (u.exch_ts, i, n, u)

    stride = 1 << 16  # ITCH locates are u16: source i's locate L becomes i * 2**16 + L
    merged = heapq.merge(*(keyed(i, s) for i, s in enumerate(srcs)))
    for seq, (_ts, i, _n, u) in enumerate(merged, 1):
        loc = u.locate + i * stride if u.locate else 0
        yield msgspec.structs.replace(u, seq=seq, locate=loc)
