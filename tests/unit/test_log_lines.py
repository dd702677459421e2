"""The brief's log lines, unit by unit: tags by logger, the time's shape, a record
of several tagged lines, the per-order lines' budget, and each line's text with
real figures (hftd.runtime.log, hftd.runtime.loglines)."""

from __future__ import annotations

import logging
import re
import time

import pytest

from hftd.config import load_config
from hftd.msg.hot import CMD_NEW, MARKET_PRICE, OrderCommand
from hftd.risk.limits import RiskLimits, SymbolLimits, dollars
from hftd.runtime.log import (
    ORDER_LINES_PER_S,
    BriefFormatter,
    LineBudget,
    Lines,
    left_out_text,
    log_at,
    tag_of,
)
from hftd.runtime.loglines import (
    READY,
    FillLines,
    OrderLines,
    date_line,
    ready_line,
    risk_limits_line,
    strategy_line,
    symbols_line,
    version_line,
)
from tests.support import DEFAULT_CONFIG
from tests.unit.gateway_fixtures import PX, Harness

STAMP = r"\[\d\d:\d\d:\d\d\.\d{3}\]"


def record(name: str, msg: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, "", 0, msg, None, None)


@pytest.mark.parametrize(
    ("logger", "tag"),
    [
        ("hftd.supervisor", "SYSTEM"),
        ("hftd.hotpath.warmup", "SYSTEM"),
        ("hftd.feed", "MD"),
        ("hftd.strategy", "STRAT"),
        ("hftd.risk", "RISK"),
        ("hftd.gateway", "GW"),
        ("hftd.perf", "PERF"),
        ("hftd.monitor.web", "DASH"),
        ("hftd.exchange", "EXCH"),
        ("hftd.notify", "the process's"),
        ("hftd.runtime.journal", "the process's"),
    ],
)
def test_a_line_is_tagged_by_its_logger_else_by_its_process(logger: str, tag: str) -> None:
    want = tag if tag != "the process's" else "GW"
    assert tag_of(logger, "GW") == want
    line = BriefFormatter("GW").format(record(logger, "x"))
    assert re.fullmatch(rf"{STAMP} \[{want:<6}\] x", line), line


def test_the_time_is_the_brief_s_local_time_with_milliseconds() -> None:
    r = record("hftd.gateway", "sent %d", logging.WARNING)
    r.args = (3,)
    r.created, r.msecs = 1_700_000_000.25, 250.0
    want = time.strftime("%H:%M:%S", time.localtime(r.created))
    assert BriefFormatter("GW").format(r) == f"[{want}.250] [GW    ] WARNING: sent 3"


class Two(Lines):
    __slots__ = ()

    def lines(self) -> list[tuple[str, str]]:
        return [("RISK", "a"), ("PERF", "b")]


def test_one_record_of_several_lines_gives_each_its_tag_and_the_record_s_time() -> None:
    out = BriefFormatter("GW").format(record("hftd.gateway", Two())).split("\n")
    assert len(out) == 2
    assert re.fullmatch(rf"{STAMP} \[RISK  \] a", out[0])
    assert re.fullmatch(rf"{STAMP} \[PERF  \] b", out[1])
    assert out[0][:14] == out[1][:14]
    assert str(Two()) == "a\nb"  # what any other formatter (caplog) reads


def test_log_at_dates_a_record_when_its_event_happened(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("hftd.strategy")
    caplog.set_level(logging.INFO, logger="hftd.strategy")
    log_at(log, 1_700_000_000.125, "signal %s", "x")
    (r,) = caplog.records
    assert r.getMessage() == "signal x" and r.created == 1_700_000_000.125
    assert int(r.msecs) == 125
    caplog.set_level(logging.WARNING, logger="hftd.strategy")
    log_at(log, 1.0, "not made")
    assert len(caplog.records) == 1


def test_the_line_budget_makes_a_second_s_worth_then_one_per_interval_and_counts() -> None:
    b = LineBudget(per_s=10)
    now = 5_000_000_000
    assert [b.take(now) for _ in range(10)] == [0] * 10  # a second's worth at once
    assert b.take(now) == -1 and b.take(now) == -1  # then left out, counted
    assert b.take(now + 99_000_000) == -1
    assert b.take(now + 100_000_000) == 3  # one interval later: made, saying 3 left out
    assert b.take(now + 100_000_000) == -1
    assert b.left_out == 4 and b.skipped == 1
    assert b.take(now + 10_000_000_000) == 1  # a quiet spell refills it
    assert [b.take(now + 10_000_000_000) for _ in range(9)] == [0] * 9
    with pytest.raises(ValueError, match="lines per second"):
        LineBudget(0)
    assert left_out_text(0) == ""
    assert left_out_text(1234, "signal lines") == (
        f" (1,234 signal lines left out before this one: over {ORDER_LINES_PER_S:,} a second)"
    )


def test_start_up_lines_carry_the_configured_values() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    assert re.fullmatch(
        r"hftd 1\.2\.3 starting on \d{4}-\d\d-\d\d \(local time, UTC[+-]\d\d:\d\d\), "
        r"Python 3\.\d+\.\d+\S*",
        version_line("1.2.3"),
    )
    assert re.fullmatch(r"date \d{4}-\d\d-\d\d \(local time\)", date_line())
    limits = RiskLimits(
        max_position=1000,
        daily_loss_limit=dollars(5000),
        symbols={"AAPL": SymbolLimits(max_position=400)},
    )
    text = risk_limits_line(limits)
    assert text.startswith("risk limits: max_position 1,000, max_order_qty 1,000, ")
    assert "max_order_notional $250,000.00, price_band_bps 500, " in text
    assert text.endswith("daily_loss_limit $5,000.00; AAPL: max_position 400")
    assert symbols_line(cfg.symbols).startswith(
        "symbols: AAPL (tick 0.01, lot 100, reference 189.50), MSFT (tick 0.01, "
    )
    mr1 = cfg.strategy.instances[0]
    assert strategy_line(mr1) == (
        "strategy mr1 (mean_reversion) on AAPL, MSFT: order_qty=100 max_position=500 "
        "cooldown_ms=20.0 window=50 threshold_sigma=2.0 aggression_ticks=1"
    )
    assert ready_line("active", True, "") == (True, READY)
    off, text = ready_line("halted", True, "trading halted (x): `hftctl resume` to trade again")
    assert not off and text == (
        "All components ready. Trading NOT enabled: trading halted (x): `hftctl resume` to "
        "trade again"
    )
    assert ready_line("active", False, "")[1].endswith("mode active, no venue session")


def test_an_order_s_lines_say_the_risk_check_and_the_order_sent() -> None:
    lines = OrderLines(
        "AAPL", "S", 100, 1_896_000, 7, 3, "mr1", -300, -400, 2000, dollars(250_000), None, 0
    ).lines()
    assert lines == [
        (
            "RISK",
            "check passed: AAPL SELL 100 @ 189.6000 (cl 7): position -300/2,000 "
            "(-400 if every open sell fills), notional $18,960.00 / $250,000.00",
        ),
        ("GW", "order sent: AAPL SELL 100 @ 189.6000 (cl 7, ref 3, mr1)"),
    ]
    market = OrderLines(
        "AAPL", "B", 10, MARKET_PRICE, 8, 4, "", 0, 10, 2000, dollars(250_000), 1_895_000, 12
    ).lines()
    assert market[0][1].startswith("check passed: AAPL BUY 10 @ MKT (cl 8): position 0/2,000")
    assert market[0][1].endswith("(+10 if every open buy fills), notional $1,895.00 / $250,000.00")
    assert market[1][1].startswith("order sent: AAPL BUY 10 @ MKT (cl 8, ref 4, -) (12 order")


def test_a_fill_s_lines_say_position_and_p_and_l_against_their_limits_and_latency() -> None:
    ms = 1_000_000
    fill = FillLines(
        "AAPL", "B", 100, 1_895_000, 7, 3, True, 400, 1000, -1_280_000, 120_000,
        dollars(5000), 10 * ms, 10 * ms + 20_000, 10 * ms + 48_200, 14 * ms + 254_000,
    )  # fmt: skip
    assert fill.lines() == [
        ("GW", "fill AAPL BUY 100 @ 189.5000 (cl 7, ref 3, complete)"),
        ("RISK", "position AAPL +400/1,000"),
        ("RISK", "P&L -$128.00 / -$5,000.00 (realized $12.00)"),
        ("PERF", "signal-to-fill 4.234 ms (tick-to-trade 48.2 us)"),
    ]
    flat = FillLines(
        "AAPL", "S", 50, 1_895_000, 9, 4, False, 0, 1000, 0, 0, 1, 0, 0, 5 * ms, 7 * ms
    )
    assert flat.lines()[0][1].endswith("(cl 9, ref 4, partial)")
    assert flat.lines()[1] == ("RISK", "position AAPL 0/1,000")
    assert flat.lines()[3] == ("PERF", "order-to-fill 2.000 ms (from the wire)")  # no signal
    replayed = FillLines("AAPL", "S", 50, 1, 9, 4, True, 0, 1, 0, 0, 1, 0, 0, 0, 7 * ms)
    assert [tag for tag, _ in replayed.lines()] == ["GW", "RISK", "RISK"]  # no stamps: no PERF


def test_the_gateway_s_records_hold_what_risk_saw_and_the_fill_s_figures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One record per order, made after the send, each check with the position it
    saw (three orders in one pass: each less the ones after it); one per fill with
    the position, P&L and the order's own stamps."""
    h = Harness()
    caplog.set_level(logging.INFO, logger="hftd.gateway")
    now = h.clock.now
    for cl, side, qty in ((1, "B", 100), (2, "B", 200), (3, "S", 100)):
        cmd = OrderCommand(CMD_NEW, cl, "AAPL", side, qty, PX, "0", 0, "mr1", now - 50_000, now)
        h.core.on_command(cmd, now)
    assert not caplog.records  # nothing before the bytes leave
    h.core.stamp_sent(now + 1_000)
    h.core.after_send()
    checks = [r.msg.lines()[0][1] for r in caplog.records if isinstance(r.msg, OrderLines)]
    seen = [re.search(r"position (\S+) \((\S+) if every open (buy|sell)", c) for c in checks]
    assert [m.groups() if m else None for m in seen] == [
        ("0/2,000", "+100", "buy"),
        ("0/2,000", "+300", "buy"),
        ("0/2,000", "-100", "sell"),
    ]
    caplog.clear()
    o = h.core.orders[1]
    h.next_cl = 4
    h.accept(o)
    h.clock.now += 2_000_000
    h.fill(o, 100)
    (r,) = [r for r in caplog.records if isinstance(r.msg, FillLines)]
    assert r.msg.lines() == [
        ("GW", f"fill AAPL BUY 100 @ {PX / 10_000:.4f} (cl 1, ref 1, complete)"),
        ("RISK", "position AAPL +100/2,000"),
        ("RISK", "P&L $0.00 / -$50,000.00 (realized $0.00)"),
        ("PERF", "signal-to-fill 2.000 ms (tick-to-trade 51.0 us)"),
    ]


def test_the_gateway_s_order_lines_are_bounded_and_say_how_many_were_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness()
    h.core.order_lines = LineBudget(per_s=2)
    caplog.set_level(logging.INFO, logger="hftd.gateway")
    for _ in range(5):
        h.send("B", 100)
    h.core.stamp_sent(h.clock.now)
    h.core.after_send()
    assert len(caplog.records) == 2 and h.core.order_lines.left_out == 3
    h.send("B", 100)
    h.core.stamp_sent(h.clock.now + 500_000_000)
    h.core.after_send()
    assert str(caplog.records[-1].msg).endswith(
        f"(3 order lines left out before this one: over {ORDER_LINES_PER_S:,} a second)"
    )
