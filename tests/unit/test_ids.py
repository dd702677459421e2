"""Client order ids: one layout (hftd.msg.ids), unique for the trading day whatever
the order rate and the restarts, tested at both ends of every field."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest

from hftd.config import load_config, parse_config
from hftd.gateway.ouch_adapter import to_b36
from hftd.msg import ids
from hftd.msg.hot import EX_ACCEPTED, ExecutionReport, OrderCommand
from hftd.runtime import days
from hftd.runtime.days import DayError, claim_strategy_run, last_run
from hftd.strategy.engine import StrategyEngine
from hftd.strategy.orders import OrderManager
from tests.support import DEFAULT_CONFIG
from tests.unit.test_days import config


def test_the_fields_at_both_ends() -> None:
    low = ids.first_id(0, 1)
    assert (ids.instance_of(low), ids.run_of(low), ids.number_of(low)) == (0, 1, 0)
    top = ids.last_id(ids.first_id(ids.MAX_INSTANCES - 1, ids.MAX_RUN))
    assert top == ids.MAX_CL_ID
    assert (ids.instance_of(top), ids.run_of(top), ids.number_of(top)) == (
        ids.MAX_INSTANCES - 1,
        ids.MAX_RUN,
        ids.MAX_NUMBER,
    )
    assert len(to_b36(ids.MAX_CL_ID)) <= 14  # OUCH's ClOrdID
    assert ids.instance_of(0) == -1 and ids.instance_of(ids.MAX_CL_ID + 1) == -1
    assert ids.instance_of(-5) == -1
    # the gateway's own orders belong to no strategy and are below every strategy's
    assert ids.instance_of(ids.GATEWAY_FIRST) == -1
    assert ids.first_id(0, 1) > ids.GATEWAY_FIRST + ids.MAX_NUMBER


@pytest.mark.parametrize(
    ("instance", "run", "says"),
    [
        (-1, 1, "instance index -1"),
        (ids.MAX_INSTANCES, 1, "instance index 255"),
        (0, 0, "run 0"),
        (0, ids.MAX_RUN + 1, "run 65536"),
    ],
)
def test_outside_the_layout_is_refused_by_name(instance: int, run: int, says: str) -> None:
    with pytest.raises(ids.IdError, match=says):
        ids.first_id(instance, run)


def test_runs_never_overlap_whatever_the_rate() -> None:
    """The old ids were (seconds since 2023) << 12: a run sending over 4,096 orders a
    second of uptime ran into the next start's ids. A run now owns 2**32 numbers."""
    sent: list[int] = []

    def send(c: OrderCommand) -> bool:
        sent.append(c.cl_id)
        return True

    first = OrderManager("mr1", ids.first_id(0, 1), send, lambda: 0)
    for _ in range(10_000):  # faster than 4,096/s: no clock moves at all here
        first.new("AAPL", "B", 100, 1_895_000, "0", 0)
    second = OrderManager("mr1", ids.first_id(0, 2), send, lambda: 0)
    second.new("AAPL", "B", 100, 1_895_000, "0", 0)
    assert len(set(sent)) == len(sent) == 10_001
    assert sent[-1] > max(sent[:-1])
    assert {ids.instance_of(c) for c in sent} == {0}


def test_a_run_out_of_numbers_refuses_instead_of_wrapping() -> None:
    sent: list[int] = []
    om = OrderManager("mr1", ids.first_id(3, 7), lambda c: sent.append(c.cl_id) or True, lambda: 0)
    om.next_cl_id = om.last_cl_id
    assert om.new("AAPL", "B", 100, 1_895_000, "0", 0) == ids.last_id(ids.first_id(3, 7))
    assert om.new("AAPL", "S", 100, 1_895_000, "0", 0) is None
    om.on_report(ExecutionReport(EX_ACCEPTED, sent[0], 0, "AAPL", "B", 100, 1_895_000, 0, 0, "", 0))
    assert om.replace(sent[0], 200, 1_895_000) is None  # a replace needs a new id too
    assert om.refused == 2 and om.ids_exhausted
    assert (ids.run_of(sent[0]), ids.instance_of(sent[0])) == (7, 3)


def test_reports_route_to_the_instance_in_the_id() -> None:
    text = DEFAULT_CONFIG.read_text()
    cfg = load_config(DEFAULT_CONFIG)
    assert len(cfg.strategy.instances) >= 2, text
    engine = StrategyEngine(cfg, lambda c: True, lambda: 0, run=ids.MAX_RUN)
    second = engine.contexts[1].om
    cl = second.new("AAPL", "B", 100, 1_895_000, "0", 0)
    assert cl is not None and ids.instance_of(cl) == 1 and ids.run_of(cl) == ids.MAX_RUN
    engine.on_report(ExecutionReport(EX_ACCEPTED, cl, 0, "AAPL", "B", 100, 1_895_000, 0, 0, "", 0))
    assert second.orders[cl].state == "live" and second.untracked == 0
    assert engine.contexts[0].om.untracked == 0


def test_too_many_instances_is_a_config_error() -> None:
    raw = msgspec.toml.decode(DEFAULT_CONFIG.read_bytes())
    one = raw["strategy"]["instances"][0]
    raw["strategy"]["instances"] = [{**one, "name": f"s{i}"} for i in range(ids.MAX_INSTANCES + 1)]
    with pytest.raises(Exception, match="instances: 256 listed, at most 255"):
        parse_config(raw)


# --- the run of the day (hftd.runtime.days) --------------------------------------------


def test_each_start_claims_the_next_run_of_the_day_and_it_is_kept(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert [claim_strategy_run(cfg) for _ in range(3)] == [1, 2, 3]
    day = days.current_day(cfg)
    lines = (day.path / days.STRATEGY_RUNS).read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    days.open_day(cfg, new=True)  # a new day starts again at run 1
    assert claim_strategy_run(cfg) == 1
    assert (day.path / days.STRATEGY_RUNS).read_text().count("\n") == 3  # the old day's kept


def test_starts_at_once_get_different_runs(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    got: list[int] = []
    threads = [
        threading.Thread(target=lambda: got.append(claim_strategy_run(cfg))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 9))


def test_a_torn_last_line_is_skipped_any_other_bad_line_is_an_error() -> None:
    assert last_run("") == 0
    assert last_run("1 pid=5 x\n2 pid=6 y\n") == 2
    assert last_run("1 pid=5 x\n2 pid=6 y\n3 pi") == 3  # the number made it: taken
    assert last_run("1 pid=5 x\n2 pid=6 y\n\x00\x00") == 2  # torn before the number
    with pytest.raises(DayError, match="line 2: 'garbage' does not start with a run number"):
        last_run("1 pid=5 x\ngarbage\n3 pid=7 z\n")
