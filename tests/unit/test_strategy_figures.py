"""Per-strategy figures (issue 14, item 5): each instance's own counts, position
and P&L, from the strategy's Status through the monitor's state to /metrics and
the console (the web page and hftctl status have their own tests)."""

from __future__ import annotations

import itertools

import pytest

from hftd.monitor.state import StrategyRow
from hftd.msg.hot import EX_ACCEPTED, EX_FILL, MD_ADD, ExecutionReport, MarketDataUpdate
from hftd.strategy.kinds import MeanReversionConfig
from tests.unit import monitor_fixtures as fx
from tests.unit.test_console_views import screen, state
from tests.unit.test_monitor_prom import exposition, samples
from tests.unit.test_strategy import engine

MR1 = StrategyRow(
    name="mr1",
    signals=12,
    orders=10,
    fills=4,
    rejects=1,
    held=3,
    working=1,
    positions={"AAPL": 200},
    realized=5.67,
    unrealized=-1.2,
    pnl=4.47,
)


def test_the_monitor_state_carries_each_instances_own_figures() -> None:
    assert state().strategies == [MR1]


def test_metrics_are_labelled_per_strategy() -> None:
    text, _ = exposition()
    m = samples(text)
    for what, v in (("signals", 12), ("orders", 10), ("fills", 4), ("rejects", 1), ("held", 3)):
        assert m[("hftd_strategy_events_total", (("strategy", "mr1"), ("what", what)))] == v
    assert m[("hftd_strategy_pnl_dollars", (("kind", "total"), ("strategy", "mr1")))] == 4.47
    assert m[("hftd_strategy_pnl_dollars", (("kind", "realized"), ("strategy", "mr1")))] == 5.67
    assert m[("hftd_strategy_position_shares", (("strategy", "mr1"), ("symbol", "AAPL")))] == 200
    assert m[("hftd_strategy_working_orders", (("strategy", "mr1"),))] == 1


@pytest.mark.parametrize(("cols", "rows"), [(80, 24), (100, 30)])
def test_the_console_shows_a_line_per_strategy(cols: int, rows: int) -> None:
    lines = screen(state(), cols, rows)
    [line] = [ln for ln in lines if ln.startswith("mr1 ")]
    assert line.split()[:6] == ["mr1", "12", "10", "4", "1", "3"]
    assert "AAPL +200" in line and "4.47" in line


def test_an_instance_keeps_its_own_position_and_pnl_from_its_own_fills() -> None:
    """Two instances on one symbol: each P&L is its own fills', marked at the mid;
    the account's position (the gateway's) is theirs together."""
    a = MeanReversionConfig(name="a", symbols=["AAPL"], cooldown_ms=0.0)
    b = MeanReversionConfig(name="b", symbols=["AAPL"], cooldown_ms=0.0)
    eng, _ = engine([a, b])
    seq = itertools.count(1)
    for ref, side, px in ((1, "B", 1_000_000), (2, "S", 1_002_000)):  # mid 100.10
        eng.on_update(MarketDataUpdate(next(seq), MD_ADD, 1, "AAPL", ref, side, 100, px, 0, 0, 0))
    oa = eng.contexts[0].om.new("AAPL", "B", 100, 1_000_000, "0", 0)
    ob = eng.contexts[1].om.new("AAPL", "S", 40, 1_003_000, "0", 0)
    assert oa is not None and ob is not None
    for cl, side, qty, px, pos in ((oa, "B", 100, 1_000_000, 100), (ob, "S", 40, 1_003_000, 60)):
        eng.on_report(ExecutionReport(EX_ACCEPTED, cl, 0, "AAPL", side, qty, px, qty, 0, "", 0))
        eng.on_report(ExecutionReport(EX_FILL, cl, 0, "AAPL", side, qty, px, 0, pos, "", 0))
    eng.on_timer()  # marks each instance's book at the mid
    ba, bb = eng.contexts[0].om.book, eng.contexts[1].om.book
    assert ba.position("AAPL").qty == 100 and bb.position("AAPL").qty == -40
    assert ba.unrealized() == 100 * (1_001_000 - 1_000_000)  # long 100 from 100.00
    assert bb.unrealized() == 40 * (1_003_000 - 1_001_000)  # short 40 from 100.30
    # the account's position, as the gateway reports it, is the same for both
    assert eng.contexts[0].om.position("AAPL") == eng.contexts[1].om.position("AAPL") == 60


def test_the_fixture_is_what_a_strategy_reports() -> None:
    assert fx.strategy()["strategies"]["mr1"]["net"] == {"AAPL": 200}
