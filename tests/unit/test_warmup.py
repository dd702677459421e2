"""Warming passes (hftd.hotpath.warmup): the hot path's code on canned data and
scratch state. They must exercise the order path, leave nothing behind, and never
touch a ring, a socket, the real state or the log."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from hftd.config import HftdConfig, load_config, ring_name
from hftd.feed.daemon import FeedAgent
from hftd.feed.normalize import Normalizer
from hftd.gateway.daemon import GatewayAgent
from hftd.hotpath.warmup import FeedWarm, GatewayWarm, StrategyWarm
from hftd.ipc.ring import Ring
from hftd.runtime.composite import CompositeAgent
from hftd.runtime.hotloop import HotLoop
from hftd.runtime.log import DeferredHandler, warming
from hftd.strategy.daemon import StrategyAgent
from tests.support import DEFAULT_CONFIG, make_config

ENC = msgspec.msgpack.Encoder()


def scratch_is_empty(s: StrategyWarm, g: GatewayWarm) -> None:
    core = g.core
    assert not core.orders and not core.by_ref and not core.sent_orders
    assert not core.sent_log and not core.reports and not core.to_venue
    assert core.counters["risk_rejects"] == 0 and core.mode == "active"
    assert s.engine.working() == 0 and not s.sent


def test_a_pass_runs_the_order_path_and_leaves_nothing_behind() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    f, s, g, norm = FeedWarm(cfg), StrategyWarm(cfg), GatewayWarm(cfg), Normalizer()
    with warming():
        for _ in range(300):  # composite: each stage's output is the next one's input
            g.run(s.run(f.run(norm, ENC), ENC))
    assert g.core.counters["sent"] == 300  # every pass reached OUCH and the T4 stamp
    books = s.engine.builder.books
    assert {sym for sym, b in books.items() if b.best_bid() and b.best_ask()} == {
        x.symbol for x in cfg.symbols
    }
    scratch_is_empty(s, g)
    with warming():
        for _ in range(300):  # split: each stage on its own canned input
            assert s.run(None, ENC) is not None
            g.run(None)
    assert g.core.counters["sent"] == 600
    scratch_is_empty(s, g)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[tuple[HftdConfig, list[Ring], CompositeAgent]]:
    cfg = load_config(make_config(tmp_path))
    rc = cfg.rings
    md = Ring.open(ring_name(cfg, "md"), rc.md_capacity)
    risk_md = Ring.open(ring_name(cfg, "risk_md"), rc.risk_md_capacity)
    orders = Ring.open(ring_name(cfg, "orders"), rc.orders_capacity)
    execs = Ring.open(ring_name(cfg, "executions"), rc.executions_capacity)
    comp = CompositeAgent()
    comp.add(0, "feed", FeedAgent(cfg, md, risk_md))
    comp.add(1, "strategy", StrategyAgent(cfg, md, execs, orders))
    comp.add(2, "gateway", GatewayAgent(cfg, orders, execs, risk_md))
    try:
        yield cfg, [md, risk_md, orders, execs], comp
    finally:
        for r in (md, risk_md, orders, execs):
            r.close()


def test_the_agents_warm_and_touch_no_ring_socket_or_real_state(
    agents: tuple[HftdConfig, list[Ring], CompositeAgent],
) -> None:
    _, rings, comp = agents
    feed, strat, gw = comp.agents
    assert isinstance(feed, FeedAgent) and isinstance(strat, StrategyAgent)
    assert isinstance(gw, GatewayAgent)
    before = [r.statistics() for r in rings]
    with warming():
        for _ in range(200):
            comp.warm()
    assert gw._warm is not None and gw._warm.core.counters["sent"] == 200
    after = [r.statistics() for r in rings]
    assert [(s.head, s.tail, s.bells) for s in after] == [(s.head, s.tail, s.bells) for s in before]
    assert feed.counters["messages"] == 0 and not feed.link.up and not feed.wait_fds()
    assert gw.core.counters["sent"] == 0 and not gw.core.orders and gw.core.journal is None
    assert not gw.link.up and not gw.wait_fds()
    assert strat.engine.working() == 0 and strat.engine.builder.messages == 0


class Idle:
    """An agent with nothing to do but its warming pass, which logs."""

    def __init__(self, log: logging.Logger, fail: bool = False) -> None:
        self.log = log
        self.fail = fail
        self.passes = 0
        self.worked = False

    def do_work(self) -> int:
        if not self.worked:
            self.worked = True
            self.log.info("real line")
            return 1
        return 0

    def wait_fds(self) -> list[int]:
        return []

    def next_timer_s(self) -> float:
        return 1.0

    def warm(self) -> None:
        self.passes += 1
        self.log.info("fake fill from a warming pass")
        if self.fail:
            raise RuntimeError("warming bug")


def wait_until(cond: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, list[str]]]:
    out: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())

    lg = logging.getLogger("hftd.test.warm")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    h = DeferredHandler(Collect())
    lg.addHandler(h)
    try:
        yield lg, out
    finally:
        lg.removeHandler(h)


def test_an_idle_hot_loop_warms_and_its_records_are_dropped(
    logger: tuple[logging.Logger, list[str]],
) -> None:
    lg, out = logger
    agent = Idle(lg)
    loop = HotLoop("test", agent, [], "sleep")
    loop.warm_ns = 2_000_000  # 2 ms
    loop.start()
    try:
        wait_until(lambda: loop.warms >= 5, "five warming passes")
        lg.info("control line")  # another thread's records are not dropped
    finally:
        loop.stop()
    assert agent.passes == loop.warms >= 5
    assert out == ["real line", "control line"]


def test_a_failing_warming_pass_turns_warming_off_and_the_loop_lives(
    logger: tuple[logging.Logger, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    lg, _ = logger
    agent = Idle(lg, fail=True)
    loop = HotLoop("test", agent, [], "sleep")
    loop.warm_ns = 1_000_000
    loop.start()
    try:
        # the pass is counted after warming is turned off: wait for both
        wait_until(lambda: loop.warm_ns == 0 and loop.warms >= 1, "warming turned off")
        assert loop.alive and loop.warms == 1 and agent.passes == 1
        assert "warming pass failed; warming is off" in caplog.text
    finally:
        loop.stop()


def test_no_warming_without_a_warm_method() -> None:
    class Plain:
        def do_work(self) -> int:
            return 0

        def wait_fds(self) -> list[int]:
            return []

        def next_timer_s(self) -> float:
            return 0.001

    loop = HotLoop("test", Plain(), [], "sleep")
    loop.warm_ns = 1_000_000
    loop.start()
    try:
        wait_until(lambda: loop.sleeps >= 3, "the loop sleeping")
    finally:
        loop.stop()
    assert loop.warm_ns == 0 and loop.warms == 0


def test_a_part_whose_upstream_is_not_attached_warms_on_its_own_input(
    agents: tuple[HftdConfig, list[Ring], CompositeAgent],
) -> None:
    """The composite process attaches the strategy last: until then the gateway must
    not be handed the feed's md record as if it were an order command."""
    _, _, comp = agents
    comp.remove("strategy")
    with warming():
        for _ in range(20):
            comp.warm()
    gw = comp.agents[-1]
    assert isinstance(gw, GatewayAgent) and gw._warm is not None
    assert gw._warm.core.counters["sent"] == 20


def test_journal_appends_are_warmed_on_a_file_nobody_sees(tmp_path: Path) -> None:
    """The gateway's warming pass appends as its journal does, to an O_TMPFILE on the
    journal's filesystem: the day's directory and the journal stay as they were."""
    from hftd.runtime.journal import Journal

    day = tmp_path / "day"
    day.mkdir()
    cfg = load_config(DEFAULT_CONFIG)
    with Journal.open(day / "gateway.journal", "never") as journal:
        journal.append(b"a real record")
        size, listing = journal.size, sorted(p.name for p in day.iterdir())
        g, s = GatewayWarm(cfg), StrategyWarm(cfg)
        g.attach_journal(journal)
        assert g.journal is not None
        with warming():
            for _ in range(600):
                g.run(s.run(None, ENC))
        assert journal.size == size and (day / "gateway.journal").stat().st_size == size
        assert sorted(p.name for p in day.iterdir()) == listing
        assert g.journal.n == 600 and 0 < g.journal.offset <= g.journal.SIZE
        assert os.fstat(g.journal.fd).st_size == g.journal.SIZE  # allocated once, no growth
        scratch_is_empty(s, g)
        g.journal.close()


def test_only_the_composite_hot_thread_warms() -> None:
    """Split daemons sharing CPUs starved each other warming (docs/hotpath.md)."""
    from hftd.runtime.composite import CompositeHost, SplitHost

    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.hotpath.warm_us == 1000.0
    split = SplitHost(cfg).loop("feed", Idle(logging.getLogger("x")), {}, "sleep")
    assert isinstance(split, HotLoop) and split.warm_ns == 0
    comp = CompositeHost(cfg, ["feed", "strategy", "gateway"], "sleep")
    assert comp.hot.warm_ns == 1_000_000
    off = msgspec.structs.replace(cfg, hotpath=msgspec.structs.replace(cfg.hotpath, warm_us=0.0))
    assert CompositeHost(off, ["feed"], "sleep").hot.warm_ns == 0
