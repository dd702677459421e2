"""The hot path's layout: which processes run which components, in which order,
and how a composite loop runs its parts (pure: config and agents, no daemons)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import RING_EDGES, HftdConfig, parse_config
from hftd.gateway.daemon import GatewayAgent
from hftd.ipc.ring import Ring
from hftd.msg.hot import (
    CMD_NEW,
    EX_REJECTED,
    MD_ADD,
    MD_HEARTBEAT,
    MD_RESET,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.runtime.composite import PRODUCER, CompositeAgent, CompositeHost
from hftd.strategy.daemon import StrategyAgent
from tests.support import DEFAULT_CONFIG, open_rings


def cfg(over: dict[str, Any] | None = None) -> HftdConfig:
    import tomllib

    from tests.support import deep_merge

    data = deep_merge(tomllib.loads(DEFAULT_CONFIG.read_text()), over or {})
    return parse_config(data)


def test_split_runs_each_component_in_its_own_process() -> None:
    c = cfg({"hotpath": {"layout": "split"}})
    assert c.hot_parts() == []
    assert (
        c.process_order()
        == c.start_order()
        == ["exchange", "feed", "gateway", "strategy", "monitor"]
    )
    assert all(c.host_of(n) == n for n in c.start_order())


def test_composite_runs_the_three_in_one_process_after_what_they_wait_for() -> None:
    c = cfg({"hotpath": {"layout": "composite"}})
    assert c.hot_parts() == ["feed", "strategy", "gateway"]
    assert c.start_order() == ["exchange", "feed", "gateway", "strategy", "monitor"]
    assert c.process_order() == ["exchange", "hotpath", "monitor"]
    assert {c.host_of(n) for n in ("feed", "strategy", "gateway")} == {"hotpath"}
    hot = c.process_config("hotpath")
    assert hot.after == ["exchange"] and hot.watchdog_s == 2.0


def test_auto_is_split_only_with_a_core_per_hot_component(monkeypatch: Any) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert cfg().hotpath.resolved_layout() == "composite"
    assert cfg().hotpath.resolved_wait() == "sleep"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert cfg().hotpath.resolved_layout() == "split"
    assert cfg().hotpath.resolved_wait() == "spin-then-sleep"


def test_the_hotpath_process_takes_its_parts_settings_or_its_own() -> None:
    c = cfg(
        {
            "hotpath": {"layout": "composite"},
            "daemons": {"feed": {"cpus": [1], "watchdog_s": 3.0}, "gateway": {"cpus": [0]}},
        }
    )
    hot = c.process_config("hotpath")
    assert hot.cpus == [0, 1] and hot.watchdog_s == 3.0
    c = cfg({"hotpath": {"layout": "composite"}, "daemons": {"hotpath": {"cpus": [1]}}})
    hot = c.process_config("hotpath")
    assert hot.cpus == [1] and hot.after == ["exchange"]
    # a configured daemons.hotpath is never started as a component of its own
    assert "hotpath" not in c.start_order()
    assert (
        "hotpath"
        not in cfg({"daemons": {"hotpath": {}}, "hotpath": {"layout": "split"}}).process_order()
    )


def test_one_enabled_part_is_nothing_to_compose() -> None:
    c = cfg(
        {
            "hotpath": {"layout": "composite"},
            "daemons": {"feed": {"enabled": False}, "strategy": {"enabled": False}},
        }
    )
    assert c.hot_parts() == [] and "gateway" in c.process_order()
    c = cfg({"hotpath": {"layout": "composite"}, "daemons": {"strategy": {"enabled": False}}})
    assert c.hot_parts() == ["feed", "gateway"]
    assert c.process_order() == ["exchange", "hotpath", "monitor"]


def test_whoever_waits_for_a_part_waits_for_the_hotpath() -> None:
    c = cfg({"hotpath": {"layout": "composite"}, "daemons": {"monitor": {"after": ["gateway"]}}})
    order = c.process_order()
    assert order.index("hotpath") < order.index("monitor")


def test_a_cycle_through_the_composite_is_reported() -> None:
    from hftd.config import ConfigError

    with pytest.raises(ConfigError, match="composite hot path"):
        cfg(
            {
                "hotpath": {"layout": "composite"},
                "daemons": {
                    "exchange": {"after": ["strategy"]},
                    "strategy": {"after": []},
                    "feed": {"after": []},
                    "gateway": {"after": ["exchange"]},
                },
            }
        )


class Agent:
    def __init__(self, name: str, trace: list[str], timer: float, fds: list[int]) -> None:
        self.name, self.trace, self.timer, self.fds = name, trace, timer, fds
        self.pending = 0

    def do_work(self) -> int:
        self.trace.append(self.name)
        n, self.pending = self.pending, 0
        return n

    def wait_fds(self) -> list[int]:
        return self.fds

    def next_timer_s(self) -> float:
        return self.timer


def test_a_composite_pass_runs_feed_then_strategy_then_gateway() -> None:
    """Whatever order they attach in: a message read by the feed reaches the
    strategy, and its order the gateway, in the same pass."""
    trace: list[str] = []
    comp = CompositeAgent()
    comp.add(2, "gateway", Agent("gateway", trace, 0.5, [7]))
    comp.add(0, "feed", Agent("feed", trace, 0.1, [5]))
    strat = Agent("strategy", trace, 0.01, [])
    strat.pending = 3
    comp.add(1, "strategy", strat)
    assert comp.do_work() == 3
    assert trace == ["feed", "strategy", "gateway"]
    assert comp.next_timer_s() == 0.01 and sorted(comp.wait_fds()) == [5, 7]
    comp.remove("strategy")
    assert comp.do_work() == 0 and trace[-2:] == ["feed", "gateway"]


def test_only_rings_written_by_another_process_are_slept_on() -> None:
    c = cfg({"hotpath": {"layout": "composite"}})

    class R:
        pass

    md, risk_md, orders, execs = R(), R(), R(), R()
    host = CompositeHost(c, ["feed", "strategy"], "sleep")  # gateway runs elsewhere
    part = host.loop(
        "strategy",
        Agent("s", [], 1.0, []),
        {"md": md, "executions": execs},  # type: ignore[dict-item]
        "sleep",
    )
    assert part.inputs == [execs]  # type: ignore[attr-defined]
    part = host.loop(
        "gateway",
        Agent("g", [], 1.0, []),
        {"orders": orders, "risk_md": risk_md},  # type: ignore[dict-item]
        "sleep",
    )
    assert part.inputs == []  # type: ignore[attr-defined]
    host = CompositeHost(c, ["strategy", "gateway"], "sleep")  # the feed runs elsewhere
    part = host.loop(
        "gateway",
        Agent("g", [], 1.0, []),
        {"orders": orders, "risk_md": risk_md},  # type: ignore[dict-item]
        "sleep",
    )
    assert part.inputs == [risk_md]  # type: ignore[attr-defined]
    assert set(PRODUCER) == set(RING_EDGES)


def test_each_message_the_feed_publishes_runs_through_strategy_and_gateway() -> None:
    """A read of many messages is not handled stage by stage (all decoded, then all
    decided on): after each one the feed publishes, the strategy's and the gateway's
    `pump` run, so the first message's order does not wait for the last one."""
    trace: list[str] = []

    class Feed(Agent):
        downstream: Any = None

        def do_work(self) -> int:
            for i in range(3):
                trace.append(f"publish {i}")
                if self.downstream is not None:
                    self.downstream()
            return 3

    class Pumped(Agent):
        def pump(self) -> int:
            self.trace.append(f"{self.name} pump")
            return 1

    comp = CompositeAgent()
    feed = Feed("feed", trace, 1.0, [])
    comp.add(0, "feed", feed)
    comp.add(2, "gateway", Pumped("gateway", trace, 1.0, []))
    comp.add(1, "strategy", Pumped("strategy", trace, 1.0, []))
    comp.do_work()
    assert trace[:6] == [
        "publish 0",
        "strategy pump",
        "gateway pump",
        "publish 1",
        "strategy pump",
        "gateway pump",
    ]
    comp.remove("strategy")
    trace.clear()
    feed.do_work()
    assert trace[:2] == ["publish 0", "gateway pump"]
    comp.remove("gateway")
    assert feed.downstream is None


def test_an_order_reaches_the_gateway_as_soon_as_the_strategy_writes_it() -> None:
    """The strategy's own hook: its order command is pumped through the gateway the
    moment it is in the ring, before the rest of the strategy's work on the message;
    a message that makes no order costs the gateway nothing."""
    trace: list[str] = []

    class Feed(Agent):
        downstream: Any = None

        def do_work(self) -> int:
            for i in range(2):
                trace.append(f"publish {i}")
                if self.downstream is not None:
                    self.downstream()
            return 2

    class Strategy(Agent):
        downstream: Any = None
        seen = 0

        def pump(self) -> int:
            self.seen += 1
            if self.seen == 1:  # the first message makes an order
                trace.append("order written")
                if self.downstream is not None:
                    self.downstream()
            trace.append("strategy rest")
            return 1

    class Gateway(Agent):
        def pump(self) -> int:
            trace.append("gateway pump")
            return 1

    comp = CompositeAgent()
    feed, strat = Feed("feed", trace, 1.0, []), Strategy("strategy", trace, 1.0, [])
    comp.add(0, "feed", feed)
    comp.add(1, "strategy", strat)
    comp.add(2, "gateway", Gateway("gateway", trace, 1.0, []))
    feed.do_work()
    assert trace == [
        "publish 0",
        "order written",
        "gateway pump",
        "strategy rest",
        "publish 1",
        "strategy rest",
    ]
    comp.remove("gateway")
    assert strat.downstream is None and feed.downstream is not None


@pytest.fixture
def rings(tmp_path: Path) -> Iterator[tuple[HftdConfig, dict[str, Ring]]]:
    """The default config's hot-path rings."""
    with open_rings(tmp_path) as r:
        yield r


CMD = OrderCommand(CMD_NEW, 1, "AAPL", "B", 100, 1_895_000, "3", 0, "mr1", 0, 0)


def test_a_burst_of_orders_goes_to_the_gateway_together_after_its_first(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """The first order of a unit of work (a message, a timer) is pumped at once; the
    rest of a burst (the load generator's hundreds per timer) wait for the unit's
    end and go in one gateway pass (one send), not one pass and one send each."""
    c, r = rings
    orders = r["orders"]
    agent = StrategyAgent(c, r["md"], r["executions"], orders)
    pumped: list[int] = []

    def gateway_pump() -> int:  # what the gateway's pump does: drain the ring
        n = 0
        while orders.read() is not None:
            n += 1
        orders.commit()
        pumped.append(n)
        return n

    agent.downstream = gateway_pump
    for _ in range(5):
        assert agent._send(CMD)
    assert pumped == [1]  # the first at once, the rest held
    agent._end_unit()
    assert pumped == [1, 4]  # together
    agent._end_unit()
    assert pumped == [1, 4]  # nothing held: no empty pass
    assert agent._send(CMD) and pumped == [1, 4, 1]  # a new unit: at once again


def test_a_composed_gateway_takes_the_strategys_orders_as_objects() -> None:
    """The strategy's `direct` hook is the composed gateway's `take` (no msgpack, no
    ring), and is gone with the gateway."""

    class Strategy(Agent):
        downstream: Any = None
        direct: Any = None

        def pump(self) -> int:
            return 0

    class Gateway(Agent):
        def pump(self) -> int:
            return 0

        def take(self, cmd: OrderCommand, send: bool) -> bool:
            return True

    comp = CompositeAgent()
    strat, gw = Strategy("strategy", [], 1.0, []), Gateway("gateway", [], 1.0, [])
    comp.add(1, "strategy", strat)
    assert strat.direct is None  # no gateway composed (yet): the ring
    comp.add(2, "gateway", gw)
    assert strat.direct == gw.take
    comp.remove("gateway")
    assert strat.direct is None


def test_a_burst_handed_over_directly_is_sent_together_after_its_first(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """Through `direct` as through the ring: the first order of a unit is sent at
    once, the rest queued and sent by the unit's end (the gateway's pump); an order
    the gateway does not take goes into the ring."""
    c, r = rings
    agent = StrategyAgent(c, r["md"], r["executions"], r["orders"])
    taken: list[bool] = []
    pumps: list[int] = []
    accept = True

    def take(cmd: OrderCommand, send: bool) -> bool:
        if accept:
            taken.append(send)
        return accept

    agent.direct = take
    agent.downstream = lambda: pumps.append(1)
    for _ in range(3):
        assert agent._send(CMD)
    assert taken == [True, False, False] and pumps == []
    agent._end_unit()
    assert pumps == [1]  # the burst's rest: one pump, one send
    assert not r["orders"].readable()  # nothing went through the ring
    accept = False
    assert agent._send(CMD)  # not taken: written to the ring, pumped from there
    assert r["orders"].readable() and pumps == [1, 1]


def test_the_gateway_takes_a_command_only_when_the_ring_could_not_overtake_it(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """GatewayAgent.take: refused before reconciliation (orders wait in the ring for
    it) and while the ring holds commands (they go first); taken, the command is
    the core's at once (here: held, no venue session) and its report queued."""
    c, r = rings
    gw = GatewayAgent(c, r["orders"], r["executions"], r["risk_md"])
    assert not gw.take(CMD, True)  # not reconciled
    gw.reconciled = True
    assert r["orders"].try_write(msgspec.msgpack.encode(CMD))
    assert not gw.take(CMD, True)  # one in the ring first
    assert gw.pump() == 1 and gw.core.counters["commands"] == 1
    assert gw.take(CMD, True)
    assert gw.core.counters["commands"] == 2 and gw.core.counters["held"] == 2
    reports = [r["executions"].read() for _ in range(2)]
    assert all(x is not None for x in reports)  # both held reports reached the strategy


def test_a_record_on_the_orders_ring_that_is_no_command_is_dropped_not_fatal(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """The orders ring is a boundary: a record that does not decode as an order
    command (a float size, not msgpack) is counted and dropped; the next is taken."""
    c, r = rings
    gw = GatewayAgent(c, r["orders"], r["executions"], r["risk_md"])
    gw.reconciled = True
    bad = [
        b"not msgpack \xc1",
        msgspec.msgpack.encode(msgspec.structs.replace(CMD, qty=1.5)),  # type: ignore[arg-type]
        msgspec.msgpack.encode({"kind": 1}),
    ]
    for raw in [*bad, msgspec.msgpack.encode(CMD)]:
        assert r["orders"].try_write(raw)
    assert gw.pump() == 4
    assert gw.core.counters["bad_commands"] == 3 and gw.core.counters["commands"] == 1
    # the NEW with a float size still names its cl_id: rejected back to its strategy
    # (no symbol: no position touched), so it does not wait for an answer forever
    reports = []
    while (raw := r["executions"].read()) is not None:
        reports.append(msgspec.msgpack.decode(raw, type=ExecutionReport))
    first = reports[0]
    assert (first.kind, first.cl_id, first.symbol) == (EX_REJECTED, CMD.cl_id, "")
    assert first.reason.startswith("malformed order: Expected `int`, got `float`")
    assert [x.reason.split(":")[0] for x in reports[1:]] == ["held"]  # the valid one


def test_a_strategys_order_of_the_wrong_types_is_its_own_error() -> None:
    """The order manager refuses a size or price that is not an int (TypeError naming
    them) before anything is sent: the composite hand-off has no decoder to."""
    from hftd.strategy.orders import OrderManager

    sent: list[OrderCommand] = []
    om = OrderManager("mr1", 1, lambda cmd: sent.append(cmd) is None, lambda: 0)
    with pytest.raises(TypeError, match="qty and price must be int"):
        om.new("AAPL", "B", 1.5, 1_895_000, "0", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="symbol, side and tif must be str"):
        om.new(b"AAPL", "B", 1, 1_895_000, "0", 0)  # type: ignore[arg-type]
    assert sent == [] and om.orders == {}


class MdParts:
    """A feed and a strategy agent on real rings; `seen`: the updates the strategy
    applied, as (kind, seq), in order."""

    def __init__(self, c: HftdConfig, r: dict[str, Ring]) -> None:
        from hftd.feed.daemon import FeedAgent
        from hftd.wire import soupbintcp as soup

        self.md = r["md"]
        self.feed = FeedAgent(c, r["md"], r["risk_md"])
        self.feed.link.session.state = soup.State.ESTABLISHED
        self.feed.link.session.next_sequence = 1
        self.strategy = StrategyAgent(c, r["md"], r["executions"], r["orders"])
        self.seen: list[tuple[int, int]] = []
        apply = self.strategy._on_update

        def spy(u: MarketDataUpdate, raw: bytes | memoryview = b"") -> None:
            self.seen.append((u.kind, u.seq))
            apply(u, raw)

        self.strategy._on_update = spy  # type: ignore[method-assign]
        self.comp = CompositeAgent()
        self.ref = 100

    def add_orders(self, n: int) -> None:
        """n ITCH Add Orders in one read, as the venue sends them."""
        from hftd.wire import itch
        from hftd.wire import soupbintcp as soup

        data = b""
        for _ in range(n):
            self.ref += 1
            msg = itch.AddOrder(1, 0, 0, self.ref, "B", 100, "AAPL", 1_890_000)
            data += soup.sequenced(itch.encode(msg))
        self.feed._on_data(memoryview(data), 1)


ADDS = [(MD_ADD, s) for s in range(1, 5)]


def test_market_data_is_handed_to_the_strategy_once_each_in_the_rings_order(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """Composite: the feed hands each update to the strategy before it encodes it into
    the md ring; the ring keeps it (recovery) and the strategy skips it there. A
    record only the ring has (a heartbeat) is applied before the update after it."""
    p = MdParts(*rings)
    p.comp.add(0, "feed", p.feed)
    p.comp.add(1, "strategy", p.strategy)
    assert p.feed.handoff == p.strategy.take
    p.add_orders(3)
    assert p.seen == ADDS[:3]  # applied as handed over, before any ring read
    last = p.md.last_committed()  # ... and the ring has them (consumed: not applied twice)
    assert last is not None and msgspec.msgpack.decode(last, type=MarketDataUpdate).seq == 3
    assert not p.md.readable()
    p.feed._publish_heartbeat(0.0)  # the ring only: nobody hands it over
    p.add_orders(1)
    p.strategy.pump()
    assert p.seen == [*ADDS[:3], (MD_HEARTBEAT, 3), ADDS[3]]
    assert not p.md.readable()  # all read, none applied twice
    assert p.strategy.sync.last_seq == 4 and p.strategy.synced
    assert p.feed.counters["published"] == 4 and p.feed.counters["drops"] == 0


def test_a_backlog_from_before_the_strategy_was_composed_comes_first(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    p = MdParts(*rings)
    p.comp.add(0, "feed", p.feed)  # the strategy attaches last
    assert p.feed.handoff is None
    p.add_orders(2)  # into the ring only
    assert p.seen == []
    p.comp.add(1, "strategy", p.strategy)
    p.add_orders(1)
    assert p.seen == ADDS[:3]
    p.comp.remove("strategy")
    assert p.feed.handoff is None  # gone: the ring alone again
    p.add_orders(1)
    assert p.seen == ADDS[:3]
    p.strategy.pump()  # the same agent reading the ring later: 4 once, 3 not again
    assert p.seen == ADDS


def test_a_strategy_recording_its_inputs_reads_market_data_from_the_ring(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """The recording holds each md record as the ring has it: no hand-over then."""
    p = MdParts(*rings)
    p.strategy.rec = object()  # type: ignore[assignment]
    hb = MarketDataUpdate(1, MD_HEARTBEAT, 0, "", 0, "", 0, 0, 0, 0, 0)
    assert not p.strategy.take(hb)
    assert p.seen == []


def test_a_backlog_longer_than_a_pass_is_read_from_the_ring_first(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """The feed may have published thousands of records before the strategy joins (it
    attaches last): nothing is handed over until the ring is read to its end, so no
    update overtakes the backlog (a gap, then a resync, was the result)."""
    from hftd.strategy.daemon import BATCH

    p = MdParts(*rings)
    p.comp.add(0, "feed", p.feed)
    n = 3 * BATCH + 10
    p.add_orders(n)  # into the ring only
    p.comp.add(1, "strategy", p.strategy)
    for _ in range(5):
        p.add_orders(1)
    p.strategy.pump()
    assert p.seen == [(MD_ADD, s) for s in range(1, n + 6)]
    assert p.strategy.sync.counters["gaps"] == 0
    assert not p.md.readable()


def test_a_restarted_strategy_reads_the_reset_before_the_replay_it_is_handed(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """A restart: the ring holds the day's last 300 records, the strategy rejoins
    (resync) and the feed replays from 1 behind an MD_RESET. The replay's updates
    are history (catching up), never news, and no gap or failed resync follows.
    (Handed over before the reset was read, sequence 1 synced the books as live.)"""
    from hftd.wire import soupbintcp as soup

    p = MdParts(*rings)
    p.comp.add(0, "feed", p.feed)
    p.feed.link.session.next_sequence = 1001
    p.add_orders(300)  # the feed is live before the strategy attaches
    p.strategy.sync.rejoin()  # what a strategy does on a ring another run read
    p.comp.add(1, "strategy", p.strategy)
    assert p.strategy.sync.take_resync()
    p.feed.resync()  # MD_RESET, then a replay from 1
    p.feed.link.session.state = soup.State.ESTABLISHED
    p.feed.link.session.next_sequence = 1
    p.feed.link.requested = 1
    p.feed._on_login(soup.LoginAccepted("S", 1))
    p.ref = 100
    for _ in range(10):
        p.add_orders(1)
    p.strategy.pump()
    assert p.seen[300] == (MD_RESET, 1300)
    assert p.seen[301:] == [(MD_ADD, s) for s in range(1, 11)]
    sync = p.strategy.sync
    assert sync.catching_up and sync.replay_to == 1300 and sync.last_seq == 10
    assert sync.counters["gaps"] == 0 and sync.counters["resync_failures"] == 0


def test_an_update_the_strategy_raised_on_is_in_the_ring_all_the_same(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """The strategy raises while it acts on a handed-over update (the hot thread will
    end): the feed has written the update into the md ring on the way out, so the
    restart knows it as published and replays it as history, not as news."""
    p = MdParts(*rings)
    p.comp.add(0, "feed", p.feed)
    p.comp.add(1, "strategy", p.strategy)

    def boom(u: MarketDataUpdate, raw: bytes | memoryview = b"") -> None:
        raise RuntimeError("strategy bug")

    p.strategy._on_update = boom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="strategy bug"):
        p.add_orders(1)
    raw = p.md.last_committed()
    assert raw is not None and msgspec.msgpack.decode(raw, type=MarketDataUpdate).seq == 1


def test_a_burst_the_gateway_took_goes_out_with_the_units_pump(
    rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    """`take(cmd, send=False)` queues the burst's later orders; the pump that ends
    the strategy's unit sends them, with nothing in the orders ring."""
    from hftd.msg.hot import CMD_HEARTBEAT

    c, r = rings
    gw = GatewayAgent(c, r["orders"], r["executions"], r["risk_md"])
    gw.reconciled = True
    core = gw.core
    core.venue_up = True
    core.on_command(OrderCommand(CMD_HEARTBEAT, 0, "", "", 0, 0, "", 0, "", 0, 0), 1)
    ref = c.symbols[0]
    for i in range(2):
        cmd = msgspec.structs.replace(
            CMD, cl_id=i + 1, symbol=ref.symbol, price=ref.reference_price_fp
        )
        assert gw.take(cmd, False)
    assert len(core.to_venue) == 2 and core.counters["sent"] == 2  # queued, not sent
    assert gw.pump() == 0  # nothing from the ring ...
    assert not core.to_venue  # ... and the burst is on its way
    assert all(o.t4 for o in core.orders.values())  # T4 stamped at the hand-off


def fill(p: MdParts) -> int:
    """Add Orders into the md ring until it is full (the strategy not reading)."""
    n = 0
    while p.feed.counters["drops"] == 0:
        p.add_orders(50)
        n += 50
    return n


def login_with_reset(p: MdParts) -> None:
    from hftd.wire import soupbintcp as soup

    p.feed.pending_reset = True
    p.feed.link.requested = 1
    p.feed._on_login(soup.LoginAccepted("S", 1))


def test_a_reset_waiting_for_room_lets_a_composed_strategy_make_it(tmp_path: Path) -> None:
    """Composite: the strategy reads the md ring on the feed's own thread, so a reset
    that waited for room by sleeping waited forever (the hot thread hung). Its
    pump runs meanwhile: the ring drains and the reset goes in."""
    with open_rings(tmp_path, {"rings": {"md_capacity": 1 << 16}}) as r:
        p = MdParts(*r)
        p.comp.add(0, "feed", p.feed)
        fill(p)  # before the strategy is composed: nobody reads
        p.comp.add(1, "strategy", p.strategy)
        login_with_reset(p)
        assert p.feed.owed_reset is None and p.feed.counters["resets"] == 1
        while p.strategy.pump():
            pass
        assert p.seen[-1][0] == MD_RESET


def test_a_reset_with_no_room_is_owed_before_any_later_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split: nobody made room within RESET_WAIT_S. The reset is not dropped (a
    replay without it in front reads as live data): the records after it are, until
    it fits; then it goes first."""
    import hftd.feed.daemon as fd

    monkeypatch.setattr(fd, "RESET_WAIT_S", 0.05)
    with open_rings(tmp_path, {"rings": {"md_capacity": 1 << 16}}) as r:
        p = MdParts(*r)
        fill(p)
        login_with_reset(p)
        assert p.feed.owed_reset is not None and p.feed.counters["resets"] == 0
        drops = p.feed.counters["drops"]
        p.add_orders(3)
        p.feed._publish_heartbeat(0.0)
        assert p.feed.counters["drops"] == drops + 3
        while p.strategy.pump():  # the strategy makes room at last
            pass
        n = len(p.seen)
        p.feed._publish_heartbeat(0.0)  # the first record after: the reset goes before it
        p.add_orders(1)
        p.strategy.pump()
        kinds = [k for k, _ in p.seen[n:]]
        assert kinds == [MD_RESET, MD_HEARTBEAT, MD_ADD] and p.feed.owed_reset is None


def test_a_reset_waits_for_no_strategy_that_is_not_composed_yet(tmp_path: Path) -> None:
    """Composite, the strategy not attached yet (the feed's downstream is the
    gateway's pump): nobody on this thread can make room, and waiting would hold
    the strategy's attach up. The reset is owed at once."""
    with open_rings(tmp_path, {"rings": {"md_capacity": 1 << 16}}) as r:
        c, rr = r
        p = MdParts(c, rr)
        p.comp.add(0, "feed", p.feed)
        p.comp.add(2, "gateway", GatewayAgent(c, rr["orders"], rr["executions"], rr["risk_md"]))
        assert p.feed.downstream is not None and p.feed.handoff is None
        fill(p)
        t0 = time.monotonic()
        login_with_reset(p)
        assert time.monotonic() - t0 < 1.0 and p.feed.owed_reset is not None
        # the strategy attaches and reads the ring; the next update is handed over
        # only after the reset is in the ring, and the strategy reads that first
        p.comp.add(1, "strategy", p.strategy)
        assert p.feed.handoff is not None
        while p.strategy.pump():
            pass
        n = len(p.seen)
        p.add_orders(1)
        assert [k for k, _ in p.seen[n:]] == [MD_RESET, MD_ADD] and p.feed.owed_reset is None
