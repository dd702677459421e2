"""The console's screen rendered without a terminal, and its keys, against known states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import urwid

from hftd.console import app as console_app
from hftd.console.views import Dashboard, confirm_dialog, fmt_us, render_text, risk_line
from hftd.monitor.model import Aggregator
from hftd.monitor.state import SystemState
from hftd.msg.control import Reply
from hftd.msg.status import FillStatus, RiskBar, RiskFigure
from tests.unit import monitor_fixtures as fx


def state(**gateway: Any) -> SystemState:
    agg = Aggregator(fx.config(alerts={"latency_p99_us": 1000.0, "latency_min_samples": 1}))
    agg.ingest(
        fx.poll(
            1.0,
            {"gateway": fx.gateway(sent=0, fills=0), "feed": fx.feed(), "strategy": fx.strategy()},
        )
    )
    return agg.ingest(
        fx.poll(
            2.0,
            {
                "gateway": fx.gateway(**gateway),
                "feed": fx.feed(messages=1500),
                "strategy": fx.strategy(),
            },
        )
    )


def screen(s: SystemState | None, cols: int = 80, rows: int = 24) -> list[str]:
    d = Dashboard()
    d.update(s)
    return render_text(d.widget, cols, rows)


def row(lines: list[str], start: str) -> list[str]:
    """The whitespace-separated cells of the first line starting with `start`."""
    for line in lines:
        if line.startswith(start):
            return line.split()
    raise AssertionError(f"no line starting {start!r} in:\n" + "\n".join(lines))


@pytest.mark.parametrize(("cols", "rows"), [(80, 24), (100, 30), (132, 43)])
def test_every_section_fits_and_shows_the_state(cols: int, rows: int) -> None:
    s = state(mode="active")
    lines = screen(s, cols, rows)
    assert len(lines) == rows and all(len(ln) == cols for ln in lines)
    text = "\n".join(lines)
    # Header: mode, breaker, source.
    assert "mode ACTIVE" in lines[0] and "breaker ok" in lines[0] and "via monitor" in lines[0]
    # Throughput, from counter deltas over the second between the two polls.
    tp = row(lines, "orders/s")
    assert tp[:2] == ["orders/s", "10.0"] and tp[2:4] == ["fills/s", "4.0"]
    assert tp[4:6] == ["cancels/s", "0.0"] and tp[6:8] == ["rejects/s", "0.0"]
    assert tp[8:10] == ["md/s", "500"]
    # Latency: 100, 200, 300 us and 4 ms on every hop.
    t2t = s.hop("t1_t4")
    assert t2t is not None
    cells = row(lines, "tick-to-trade")
    assert cells[1] == "4"
    assert cells[2:6] == [fmt_us(t2t.p50), fmt_us(t2t.p95), fmt_us(t2t.p99), fmt_us(t2t.p999)]
    # (HDR, 2 significant digits: a percentile is the top of its counter's range.)
    assert cells[2] == "201" and cells[4] == "4,014"
    # Positions with a totals row.
    assert row(lines, "AAPL ")[:7] == [
        "AAPL",
        "300",
        "189.5000",
        "189.6000",
        "3.00",
        "0.00",
        "3.00",
    ]
    assert row(lines, "MSFT ")[:7] == [
        "MSFT",
        "-100",
        "415.2000",
        "415.0000",
        "2.00",
        "12.34",
        "14.34",
    ]
    # money adds up across symbols, shares do not: no share total
    assert row(lines, "TOTAL")[:4] == ["TOTAL", "5.00", "12.34", "17.34"]
    # Risk: the breaker, then the most used limit of each kind as used/limit and %.
    risk = [ln[:40] for ln in lines]  # the risk pane; alerts are beside it
    assert row(risk, "RISK") == ["RISK", "breaker", "armed"]
    assert row(risk, "position AAPL") == ["position", "AAPL", "300/2,000", "15.0%"]
    assert row(risk, "gross position") == ["gross", "position", "400/8,000", "5.0%"]
    assert row(risk, "order rate") == ["order", "rate", "4/200", "2.0%"]
    assert row(risk, "daily P&L") == ["daily", "P&L", "$17.34", "/", "-$50,000.00", "0.0%"]
    assert all(ln[39] == "%" for ln in risk if ln.startswith(("position", "gross", "daily")))
    # Health: every daemon, ready, with its pid.
    for name, pid in fx.PIDS.items():
        assert f"{name} " in text and str(pid) in text
    # The latency alert (threshold 1000 us) shows with its figures.
    assert "ALERTS (1)" in text and "WARN tick-to-trade p99 4,014" in text
    # Trades, newest first, with their latency; both opened: no P&L per share.
    title = row(lines, "RECENT TRADES")
    assert title[2:] == ["tick-to-trade", "P&L/share"]
    trades = [ln for ln in lines if " @ " in ln]
    assert len(trades) >= 2 if rows > 24 else len(trades) >= 1
    assert trades[0].split()[1:] == ["MSFT", "S", "100", "@", "415.20", "457", "us", "-"]
    # The keys are always on screen.
    assert "P pause R resume F flatten H halt Q quit" in lines[-1]


def test_breaker_mode_and_down_daemon_show() -> None:
    s = state(mode="halted", breaker={"tripped": True, "reason": "21 venue rejects in 1 s"})
    lines = screen(s, 100, 30)
    text = "\n".join(lines)
    assert "mode HALTED" in lines[0] and "breaker TRIPPED" in lines[0]
    assert "RISK           breaker TRIPPED 21 venue" in text  # the pane clips; alerts say all
    assert "CRIT circuit breaker tripped" in text and "CRIT trading halted" in text
    # what to do next, in the same words as hftctl status and the web page
    assert s.next_step.startswith("circuit breaker tripped (21 venue rejects in 1 s)")
    assert lines[1].startswith(" next: circuit breaker tripped (21 venue rejects")
    assert "next:" not in "\n".join(screen(state(), 100, 30))  # trading as usual: no line


def test_the_risk_pane_shows_the_most_used_limit_of_each_kind_whole() -> None:
    """Long money figures (a loss against the limit, exposure against millions) show
    whole, with the % at the pane's edge: the label's padding gives way first, then the
    spaces around the slash, then the label's end. Of the book's limits and of the
    flow's, the most used one shows."""
    figures = dict(
        fx.RISK_FIGURES,
        **{
            "position.MSFT": RiskFigure(used=1_900, limit=2_000, unit="shares"),
            "exposure": RiskFigure(  # $380,000: 7.6%, above gross (5%) and net (1%)
                used=3_800_000_000, limit=50_000_000_000, unit="dollars"
            ),
            "messages": RiskFigure(used=600, limit=1_000, unit="messages/s"),
            "loss": RiskFigure(used=-12_345_600, limit=-500_000_000, unit="dollars"),
        },
    )
    lines = screen(state(risk_figures=figures))
    risk = [ln[:40] for ln in lines]
    assert row(risk, "position MSFT") == ["position", "MSFT", "1,900/2,000", "95.0%"]
    assert row(risk, "exposure") == ["exposure", "$380,000.00/$5,000,000.00", "7.6%"]
    assert row(risk, "message rate") == ["message", "rate", "600/1,000", "60.0%"]
    assert row(risk, "daily P&L") == ["daily", "P&L", "-$1,234.56", "/", "-$50,000.00", "2.5%"]
    assert not any(ln.startswith(("position AAPL", "gross", "net", "order rate")) for ln in risk)
    shown = ("position", "exposure", "message", "daily")
    assert [ln[39] for ln in risk if ln.startswith(shown)] == ["%"] * 4
    # millions against millions: the label's end goes, never a figure
    big = RiskBar(
        key="exposure", label="exposure", fraction=0.247, figure="$1,234,567.89 / $5,000,000.00"
    )
    text = "".join(m if isinstance(m, str) else str(m[1]) for m in risk_line(big))
    assert text == "exposu $1,234,567.89/$5,000,000.00 24.7%"


def test_a_fill_that_reduced_a_position_shows_its_pnl_per_share() -> None:
    fills = [
        FillStatus(  # sold 100 of a long at $0.1234 a share above its average entry
            time_ns=1_700_000_000_000_000_000,
            symbol="AAPL",
            side="S",
            qty=100,
            price=1_896_000,
            tick_to_trade_us=80.0,
            pnl_per_share=1_234.0,
        ),
        FillStatus(  # bought back 40 of a short at a loss of $0.05 a share
            time_ns=1_700_000_001_000_000_000,
            symbol="MSFT",
            side="B",
            qty=40,
            price=4_152_000,
            tick_to_trade_us=0.0,
            pnl_per_share=-500.0,
        ),
    ]
    lines = screen(state(recent_fills=fills))
    trades = [ln.split() for ln in lines if " @ " in ln]
    assert trades[0][1:] == ["MSFT", "B", "40", "@", "415.20", "no", "tick", "-0.0500"]
    assert trades[1][1:] == ["AAPL", "S", "100", "@", "189.60", "80.0", "us", "+0.1234"]
    assert all(len(ln) == 80 for ln in lines)


def test_before_the_first_state() -> None:
    lines = screen(None)
    assert "waiting for the first state" in lines[0]


def test_too_many_symbols_still_renders_at_80x24() -> None:
    s = state()
    s.positions = s.positions * 8
    lines = screen(s)
    assert len(lines) == 24 and lines[-1].startswith("P pause")
    # what does not fit is cut from the bottom: the top stays, and the positions
    # give way to "... N more" before the risk and alerts are pushed off
    assert lines[1].startswith("orders/s")
    assert any("more symbols" in ln for ln in lines)
    assert any(ln.startswith("RISK") for ln in lines)


def test_confirmation_dialog_renders_over_the_dashboard() -> None:
    d = Dashboard()
    d.update(state())
    text = "\n".join(render_text(confirm_dialog(d.widget, "flatten", "close everything"), 80, 24))
    assert "FLATTEN" in text and "close everything." in text and "Y to confirm" in text


# --- keys: through the registry, confirmation for flatten and halt -----------------------


class FakeLoop:
    def __init__(self, widget: urwid.Widget) -> None:
        self.widget = widget


def test_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sent: list[str] = []

    async def fake_execute(run_dir: Path, verb: Any) -> dict[str, Reply]:
        sent.append(verb.name)
        return {"gateway": Reply(ok=True, result={"mode": verb.name})}

    monkeypatch.setattr(console_app, "execute_async", fake_execute)

    async def main() -> None:
        app = console_app.ConsoleApp(fx.config(), tmp_path)
        loop = FakeLoop(app.dash.widget)
        app.loop = loop  # type: ignore[assignment]
        async with trio.open_nursery() as nursery:
            app.nursery = nursery
            assert app.on_key("p") is True
            await trio.testing.wait_all_tasks_blocked()
            assert sent == ["pause"]
            assert "pause: gateway ok" in app.dash.message.text
            app.on_key("R")
            await trio.testing.wait_all_tasks_blocked()
            assert sent == ["pause", "resume"]
            # Flatten asks first; anything but Y cancels.
            app.on_key("f")
            assert app.pending is not None and loop.widget is not app.dash.widget
            app.on_key("n")
            await trio.testing.wait_all_tasks_blocked()
            assert sent == ["pause", "resume"] and loop.widget is app.dash.widget
            assert "flatten: not confirmed" in app.dash.message.text
            app.on_key("f")
            app.on_key("y")
            await trio.testing.wait_all_tasks_blocked()
            app.on_key("h")
            app.on_key("Y")
            await trio.testing.wait_all_tasks_blocked()
            assert sent == ["pause", "resume", "flatten", "halt"]
            assert app.on_key("x") is False  # not ours
            with pytest.raises(urwid.ExitMainLoop):
                app.on_key("q")

    trio.run(main)


def test_describe() -> None:
    assert console_app.describe("halt", {}) == "halt: nothing running to send it to"
    assert (
        console_app.describe(
            "pause", {"gateway": Reply(ok=False, error="ValueError: gateway does not handle Pause")}
        )
        == "pause: gateway REFUSED: ValueError: gateway does not handle Pause"
    )


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (3.25, "3.2"),
        (99.9, "99.9"),
        (100, "100"),
        (4002, "4,002"),
        (55_378, "55.4ms"),
        (182_059, "182ms"),
        (9_999_999, "10000ms"),
        (12_500_000, "12.5s"),
    ],
)
def test_latency_fits_its_column(us: float, text: str) -> None:
    assert fmt_us(us) == text and len(text) <= 7
    assert fmt_us(us, count=0) == "-"


def test_a_fill_without_a_tick_and_a_breaker_nobody_reports() -> None:
    """A flatten order had no market-data trigger: "no tick", not "0.0 us"; and with
    no gateway answering the header does not say the breaker is ok."""
    s = state()
    s.trades[0].tick_to_trade_us = 0.0
    text = "\n".join(screen(s, 100, 30))
    assert "415.20        no tick" in text and " 0.0 us" not in text
    assert "breaker ok" in screen(s, 100, 30)[0]
    s.mode = "unknown"
    lines = screen(s, 100, 30)
    assert "breaker -" in lines[0]
    assert row(lines, "RISK")[:3] == ["RISK", "breaker", "-"]  # not "armed" either
