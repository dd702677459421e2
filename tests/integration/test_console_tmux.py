"""The real `hftctl console` in an 80x24 tmux window against a running system.

It must show the system's figures (pids from the supervisor, positions and
P&L from the gateway), refresh on its own, and act through the verb registry:
P pauses, R resumes, F asks before flattening (and N sends nothing), H asks
before halting (and Y halts), Q quits.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from hftd.msg.status import format_dollars
from tests.integration.frontends import (
    Tmux,
    latency_us,
    monitor_config,
    monitor_state,
    quiesce,
    status,
    tmux_path,
    wait_for,
)
from tests.support import start_daemon

pytestmark = pytest.mark.integration


def cells(screen: str, start: str) -> list[str]:
    for line in screen.splitlines():
        if line.startswith(start):
            return line.split()
    raise AssertionError(f"no line starting {start!r}:\n{screen}")


def test_console_in_tmux(tmp_path: Path) -> None:
    tmux_path()  # skip early, before starting a system, if tmux is missing
    cfg, _port = monitor_config(tmp_path)
    with start_daemon("up", cfg) as up:
        run_dir = Path(up.config["system"]["run_dir"])
        wait_for(lambda: monitor_state(run_dir)["counters"]["fills"] >= 2, 60, "2 fills")
        term = Tmux(
            f"{sys.executable} -m hftd.ctl.main --config {cfg} console",
            80,
            24,
            env={"TERM": "xterm-256color", "LANG": "C.UTF-8"},
        )
        try:
            screen = term.wait_screen(
                lambda s: "via monitor" in s and "tick-to-trade" in s, what="the dashboard"
            )
            lines = screen.splitlines()
            assert len(lines) == 24 and max(len(ln) for ln in lines) <= 80
            assert "P pause R resume F flatten H halt Q quit" in lines[-1]
            # It refreshes by itself: the clock in the header moves, md keeps arriving.
            first = re.search(r"\d\d:\d\d:\d\d", lines[0])
            assert first is not None
            term.wait_screen(
                lambda s: first.group() not in s.splitlines()[0],
                timeout=5,
                what="the header clock to move",
            )
            # Components: the supervisor's pids, all ready.
            sup = status(run_dir, "supervisor")
            screen = term.screen()
            for d in sup:
                assert re.search(rf"\b{d['name']}\s+ready\s+{d['pid']}\b", screen), (d, screen)

            # Quiet the venue: the figures hold still and must equal the gateway's.
            gw = quiesce(cfg, run_dir)
            pos = gw["positions"]

            t2t = next(h for h in latency_us(gw) if h["hop"] == "t1_t4")

            def shows_settled(s: str) -> bool:
                # Latency can reach the console a poll after P&L does (the monitor
                # refreshes its latency figures once a second).
                try:
                    total = cells(s, "TOTAL")
                    count = int(cells(s, "tick-to-trade")[1])
                except (AssertionError, ValueError):
                    return False
                return total[-1] == f"{pos['total'] / 10_000:,.2f}" and count == t2t["count"]

            screen = term.wait_screen(shows_settled, what="the settled P&L")
            for p in pos["positions"]:
                row = cells(screen, p["symbol"] + " ")
                assert int(row[1]) == p["qty"] and row[3] == f"{p['mark'] / 10_000:.4f}"
                assert row[-1] == f"{(p['realized'] + p['unrealized']) / 10_000:,.2f}"
            # money adds up across symbols, shares do not: the TOTAL row has no share count
            total = cells(screen, "TOTAL")
            assert total[1] == f"{pos['unrealized'] / 10_000:,.2f}" and len(total) == 4
            assert int(cells(screen, "tick-to-trade")[1]) == t2t["count"]
            # the day's P&L against the loss limit, in money (default.toml's $50,000)
            daily = cells(screen, "daily P&L")
            assert daily[2:5] == [format_dollars(pos["total"]), "/", "-$50,000.00"], daily

            # P: pause, straight through the registry.
            term.send("p")
            term.wait_screen(lambda s: "pause: gateway ok" in s, what="pause accepted")
            term.wait_screen(lambda s: "mode PAUSED" in s, what="mode PAUSED")
            assert status(run_dir, "gateway")["detail"]["mode"] == "paused"
            term.send("r")
            term.wait_screen(
                lambda s: "resume: gateway ok" in s and "mode ACTIVE" in s, what="resumed"
            )
            # F asks first; N sends nothing.
            term.send("f")
            screen = term.wait_screen(
                lambda s: "FLATTEN" in s and "Y to confirm" in s, what="the flatten dialog"
            )
            term.send("n")
            term.wait_screen(
                lambda s: "flatten: not confirmed; nothing sent" in s, what="flatten cancelled"
            )
            # H asks first; Y halts.
            term.send("h")
            term.wait_screen(lambda s: "HALT" in s and "Y to confirm" in s, what="halt dialog")
            term.send("y")
            term.wait_screen(lambda s: "halt: gateway ok" in s, what="halt accepted")
            assert status(run_dir, "gateway")["detail"]["mode"] == "halted"
            term.wait_screen(lambda s: "mode HALTED" in s, what="mode HALTED")
            # Bigger terminal: the same screen, more room.
            term._run("resize-window", "-t", "t", "-x", "120", "-y", "40")
            term.wait_screen(
                lambda s: len(s.splitlines()) == 40 and "RECENT TRADES" in s, what="a 120x40 redraw"
            )
            # Q quits.
            term.send("q")
            deadline = time.monotonic() + 5
            while not term.dead():
                assert time.monotonic() < deadline, "console did not quit on Q"
                time.sleep(0.1)
        finally:
            term.close()
