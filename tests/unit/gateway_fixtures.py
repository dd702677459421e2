"""A GatewayCore on its own, driven by hand: a fake clock, the strategy and the
venue up, and a venue that numbers its replies (tests of the gateway's logic)."""

from __future__ import annotations

from hftd.config import HftdConfig, load_config
from hftd.gateway.core import LIVE, GatewayCore, GwOrder
from hftd.gateway.ouch_adapter import OuchAdapter, to_b36
from hftd.msg.hot import CMD_HEARTBEAT, CMD_NEW, EX_ACCEPTED, EX_FILL, ExecutionReport, OrderCommand
from hftd.wire import ouch
from tests.support import DEFAULT_CONFIG

PX = 1_895_000  # AAPL's reference price: inside the price band


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


class Harness:
    """A GatewayCore with the strategy and the venue up, and a venue that numbers
    its replies: `reply(msg)` applies one as the next sequenced message."""

    def __init__(self, cfg: HftdConfig | None = None) -> None:
        self.clock = Clock()
        self.core = GatewayCore(cfg or load_config(DEFAULT_CONFIG), self.clock, OuchAdapter())
        self.core.venue_up = True
        self.core.on_command(
            OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0), self.clock.now
        )
        self.seq = 1
        self.next_cl = 1
        self.match = 100

    def reply(self, m: ouch.Outbound | bytes) -> list[ExecutionReport]:
        """Journal (when the core has a journal) and apply the next sequenced message;
        the reports it made."""
        self.seq += 1
        payload = m if isinstance(m, bytes) else ouch.encode_outbound(m)
        self.core.journal_venue(self.seq, payload)
        self.core.on_venue_payload(payload, self.seq, self.clock.now)
        out, self.core.reports[:] = list(self.core.reports), []
        return out

    def order(self, side: str, qty: int, price: int = PX, sym: str = "AAPL") -> GwOrder:
        """A new order, sent and accepted live."""
        cl = self.next_cl
        self.next_cl += 1
        self.core.on_command(
            OrderCommand(CMD_NEW, cl, sym, side, qty, price, "0", 0, "mr1", 0, 0), self.clock.now
        )
        o = self.core.orders[cl]
        self.core.to_venue.clear()
        echo = (side, qty, sym, price, "0", "Y", 9000 + cl, "A", "N", "N", "L", to_b36(cl))
        r = self.reply(ouch.Accepted(1, o.user_ref, *echo))
        assert [x.kind for x in r] == [EX_ACCEPTED] and o.state == LIVE
        return o

    def fill(self, o: GwOrder, qty: int, price: int = PX) -> int:
        """An execution of `o`; returns its match number."""
        self.match += 1
        r = self.reply(ouch.Executed(2, o.user_ref, qty, price, "A", self.match))
        assert r and r[0].kind == EX_FILL
        return self.match

    def send(self, side: str, qty: int, price: int = PX, tif: str = "0") -> GwOrder:
        """A new order from the strategy, sent (not yet acknowledged)."""
        cl = self.next_cl
        self.next_cl += 1
        self.core.on_command(
            OrderCommand(CMD_NEW, cl, "AAPL", side, qty, price, tif, 0, "mr1", 0, 0), self.clock.now
        )
        assert not self.core.reports, self.core.reports
        self.core.to_venue.clear()
        return self.core.orders[cl]

    def command(self, kind: int, orig: GwOrder, qty: int = 0, price: int = 0) -> int:
        """A cancel or replace of `orig` from the strategy; the cl_id it used. What
        it queued for the venue stays in `core.to_venue`."""
        cl = self.next_cl
        self.next_cl += 1
        self.core.on_command(
            OrderCommand(kind, cl, "AAPL", orig.side, qty, price, "", orig.cl_id, "mr1", 0, 0),
            self.clock.now,
        )
        return cl

    def accept(self, o: GwOrder) -> list[ExecutionReport]:
        """The venue's Order Accepted of `o` (echoing it); the reports it made."""
        echo = (o.side, o.qty, o.symbol, o.price, o.tif, "Y", 9000 + o.cl_id, "A", "N", "N")
        return self.reply(ouch.Accepted(1, o.user_ref, *echo, "L", to_b36(o.cl_id)))

    def tick(self, seconds: float) -> None:
        """`seconds` pass with the strategy's heartbeats coming in; then the timer."""
        self.clock.now += int(seconds * 1e9)
        self.core.on_command(
            OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0), self.clock.now
        )
        self.core.on_timer(self.clock.now)
