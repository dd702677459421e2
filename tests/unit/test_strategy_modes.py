"""Strategies under the operator's control: the gateway's trading mode reaches
every order manager through the gateway's heartbeat reports, and a strategy
sends only what that mode allows (issue 14, item 4): no reject storm."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from hftd.config import load_config
from hftd.msg.hot import EX_ACCEPTED, EX_FILL, EX_HEARTBEAT, ExecutionReport
from hftd.strategy.engine import StrategyEngine
from hftd.strategy.orders import (
    MODE_ACTIVE,
    MODE_HALTED,
    MODE_PAUSED,
    MODE_REDUCING,
)
from tests.support import DEFAULT_CONFIG
from tests.unit.gateway_fixtures import Harness
from tests.unit.test_strategy import manager


def heartbeat(mode: str) -> ExecutionReport:
    return ExecutionReport(EX_HEARTBEAT, 0, 0, "", "", 0, 0, 0, 0, mode, 1)


@pytest.mark.parametrize("mode", [MODE_PAUSED, MODE_HALTED])
def test_nothing_new_while_paused_or_halted(mode: str) -> None:
    om, sent = manager()
    live = om.new("AAPL", "B", 100, 1_000_000, "0", 0)
    assert live is not None
    om.on_report(ExecutionReport(EX_ACCEPTED, live, 0, "AAPL", "B", 100, 1_000_000, 100, 0, "", 0))
    om.mode = mode
    assert om.new("AAPL", "B", 100, 1_000_000, "0", 0) is None
    assert om.new("AAPL", "S", 100, 1_000_000, "0", 0) is None
    assert om.replace(live, 50, 1_000_000) is None
    assert len(sent) == 1 and om.counts["held"] == 3
    assert om.cancel(live)  # a cancel always goes


def test_reducing_lets_out_only_what_closes_the_position() -> None:
    om, sent = manager()
    om.positions["AAPL"] = 300  # long 300
    om.mode = MODE_REDUCING
    assert om.new("AAPL", "B", 100, 1_000_000, "0", 0) is None  # adds: held
    s1 = om.new("AAPL", "S", 200, 1_000_000, "0", 0)
    assert s1 is not None
    om.on_report(ExecutionReport(EX_ACCEPTED, s1, 0, "AAPL", "S", 200, 1_000_000, 200, 300, "", 0))
    assert om.new("AAPL", "S", 200, 1_000_000, "0", 0) is None  # 200 + 200 working > 300
    assert om.new("AAPL", "S", 100, 1_000_000, "0", 0) is not None  # exactly flat
    assert om.new("MSFT", "S", 1, 1_000_000, "0", 0) is None  # flat there: nothing reduces
    assert om.replace(s1, 300, 1_000_000) is None  # a size-up while reducing: held
    assert om.counts["held"] == 4 and [c.side for c in sent] == ["S", "S"]
    om.mode = MODE_ACTIVE
    assert om.new("AAPL", "B", 100, 1_000_000, "0", 0) is not None


def test_the_engine_takes_the_mode_from_the_gateways_heartbeat() -> None:
    engine = StrategyEngine(
        load_config(DEFAULT_CONFIG), lambda c: True, itertools.count(1).__next__
    )
    assert engine.contexts and all(s.om.mode == MODE_ACTIVE for s in engine.contexts)
    engine.on_report(heartbeat(MODE_HALTED))
    assert engine.gateway_mode == MODE_HALTED
    assert all(s.om.mode == MODE_HALTED for s in engine.contexts)
    engine.on_report(heartbeat(""))  # a gateway that says nothing: active, as before
    assert all(s.om.mode == MODE_ACTIVE for s in engine.contexts)
    engine.on_report(heartbeat("sleeping"))  # a word we do not know: hold, never guess
    assert all(not s.om.allows("AAPL", "B", 1) for s in engine.contexts)


def test_the_gateway_says_its_mode_at_once_when_it_changes() -> None:
    h = Harness()
    assert h.core.heartbeat().reason == "active"
    for change, mode in (
        (h.core.pause, "paused"),
        (h.core.resume, "active"),
        (h.core.flatten, "reducing"),
        (lambda: h.core.halt("test"), "halted"),
    ):
        h.core.reports.clear()
        change()
        beats = [r for r in h.core.reports if r.kind == EX_HEARTBEAT]
        assert [r.reason for r in beats] == [mode]


def test_a_fill_while_reducing_moves_the_room_with_the_position() -> None:
    om, _ = manager()
    om.positions["AAPL"] = -200  # short 200
    om.mode = MODE_REDUCING
    b = om.new("AAPL", "B", 200, 1_000_000, "0", 0)
    assert b is not None and om.new("AAPL", "B", 1, 1_000_000, "0", 0) is None
    om.on_report(ExecutionReport(EX_FILL, b, 0, "AAPL", "B", 200, 1_000_000, 0, 0, "", 0))
    assert om.position("AAPL") == 0 and om.new("AAPL", "B", 1, 1_000_000, "0", 0) is None


def test_a_loss_stop_makes_the_mode_reducing_and_says_so_at_once() -> None:
    """Risk's latched loss stop refuses all but reducing orders: the mode says
    "reducing" the moment it latches (a heartbeat report), so the strategies hold
    what risk would refuse instead of sending it; a resume with P&L still past the
    limit keeps it, a raised limit (reload) clears it and says so."""
    cfg = load_config(DEFAULT_CONFIG)
    small = msgspec.structs.replace(cfg.risk, daily_loss_limit=1_000 * 10_000)  # $1,000
    h = Harness(msgspec.structs.replace(cfg, risk=small))
    core = h.core
    o = h.order("B", 100)
    h.fill(o, 100)
    core.reports.clear()
    limit = core.risk.limits.daily_loss_limit
    drop = limit // 100 + 10_000  # $10.01 a share under the fill: past the $1,000 limit
    core.on_reference("AAPL", 1_895_000 - drop)
    assert core.risk.loss_stopped and core.mode == MODE_REDUCING
    assert [(r.kind, r.reason) for r in core.reports] == [(EX_HEARTBEAT, MODE_REDUCING)]
    core.reports.clear()
    core.on_reference("AAPL", 1_895_000 - drop - 100)  # still stopped: no second report
    assert core.reports == []
    core.resume()  # P&L still past the limit: the stop latches again at once
    assert core.mode == MODE_REDUCING
    core.reports.clear()
    wider = msgspec.structs.replace(core.risk.limits, daily_loss_limit=limit * 10)
    core.set_risk_limits(wider)
    core.resume()
    assert core.mode == MODE_ACTIVE
    assert core.reports[-1].reason == MODE_ACTIVE


class ListJournal:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    def append(self, payload: bytes) -> None:
        self.records.append(payload)

    def commit(self) -> None:
        pass


@pytest.mark.parametrize(
    ("steps", "mode"),
    [
        (["halt"], MODE_HALTED),
        (["pause"], MODE_PAUSED),
        (["flatten"], MODE_REDUCING),
        (["halt", "resume"], MODE_ACTIVE),
        (["pause", "halt", "resume", "pause"], MODE_PAUSED),
    ],
)
def test_a_restarted_gateway_comes_back_in_the_mode_it_was_left_in(
    steps: list[str], mode: str
) -> None:
    """The kill switch is sticky: the mode changes are journaled and a gateway that
    replays its journal (a crash, a reboot) is still halted, paused or flattening,
    never trading by itself; the breaker's halt says why."""
    h = Harness()
    journal = ListJournal()
    h.core.journal = journal
    h.order("B", 100)
    for step in steps:
        if step == "halt":
            h.core.halt("circuit breaker: too many rejects")
        else:
            getattr(h.core, step)()
    assert h.core.mode == mode
    again = Harness()
    again.core.replay(journal.records, 0)
    assert again.core.mode == mode
    assert again.core.flattening == (mode == MODE_REDUCING)
    if steps[-1] == "halt":
        assert again.core.mode_reason == "halt: circuit breaker: too many rejects"
