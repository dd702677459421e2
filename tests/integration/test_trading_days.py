"""Trading days under `hftd up`: the journals are the day's books and records.

A clean stop keeps them; the next `hftd up` continues the same day (the
daemons replay it, as after a crash, with new rings); `hftd up --new-day` and
`hftd day new` open the next session of the date and leave every earlier
file byte for byte as it was; `hftd day new` is refused while anything runs.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hftd.config import load_config
from hftd.msg import ids
from hftd.msg.control import Halt, Resume, Snapshot
from hftd.runtime.days import claim_strategy_run
from hftd.runtime.journal import read_all
from tests.integration.test_trading import trading_config
from tests.support import (
    ROOT,
    Daemon,
    ask,
    assert_gateway_matches_venue,
    dump_toml,
    make_config,
    start_daemon,
    status,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.layouts]

OFF = {"enabled": False}


def files(root: Path) -> dict[str, bytes]:
    """Every file under the journal dir and its bytes (lock files hold only a pid; the
    exchange's state dir is derived from its journal: checkpoints, stream files)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".lock" and "exchange.state" not in p.parts
    }


def current(root: Path) -> str:
    return (root / "CURRENT").read_text().strip()


def hftd_day(cfg: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hftd.cli", "day", "--config", str(cfg), action],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )


def stopped(up: Daemon) -> None:
    assert up.stop() == 0, up.log[-3000:]
    assert "all daemons stopped" in up.log


def halted(up: Daemon) -> dict[str, Any]:
    """Halt the gateway, wait until nothing of ours works anywhere; its status."""
    ask(up, "gateway", Halt("test: end of run"))
    wait_for(
        lambda: (
            not status(up, "gateway")["working"]
            and not ask(up, "exchange", Snapshot("HFTD"))["open_orders"]
        ),
        15,
        "nothing working",
    )
    return status(up, "gateway")


def booked(gateway: dict[str, Any]) -> tuple[Any, ...]:
    """What the gateway's fills booked, per symbol (a symbol only marked booked nothing)."""
    pos = gateway["positions"]
    return pos["realized"], sorted(
        (p["symbol"], p["qty"], p["cost_basis"], p["realized"], p["bought"], p["sold"], p["fills"])
        for p in pos["positions"]
        if p["fills"]
    )


def variant(cfg: Path, name: str, daemons: dict[str, Any]) -> Path:
    """The same config (ports, dirs, rings, venue) with other daemons enabled."""
    data = tomllib.loads(cfg.read_text())
    for d, over in daemons.items():
        data["daemons"].setdefault(d, {}).update(over)
    path = cfg.with_name(name)
    path.write_text(dump_toml(data))
    return path


def test_a_clean_stop_keeps_the_day_and_the_next_up_continues_it(tmp_path: Path) -> None:
    cfg = trading_config(
        tmp_path,
        {"daemons": {"monitor": OFF}, "system": {"log_level": "info", "trading_day_starts": ""}},
    )
    root = tmp_path / "journal"
    with start_daemon("up", cfg, ready_timeout=60) as up:
        wait_for(lambda: status(up, "gateway")["fills"] >= 10, 120, "trading")
        before = halted(up)
        stopped(up)
    day = current(root)
    assert "trading day " + day + " opened" in up.log
    ex_journal, gw_journal = root / day / "exchange.journal", root / day / "gateway.journal"
    run1 = files(root)
    assert run1[f"{day}/exchange.journal"] and run1[f"{day}/gateway.journal"]  # kept
    ex_records = len(read_all(ex_journal)[0])

    # The same day again, the strategy off so that nothing trades: the gateway is
    # exactly where run 1 left it (rebuilt from its journal; the rings are new).
    quiet = variant(cfg, "quiet.toml", {"strategy": OFF})
    with start_daemon("up", quiet, ready_timeout=60) as up:
        assert f"trading day {day} continued" in up.log
        assert current(root) == day
        ex = status(up, "exchange")  # from the checkpoint written at the stop
        assert ex["journal_checkpoint"] + ex["journal_replayed"] == ex_records
        after = status(up, "gateway")
        for key in ("fills", "venue_seq", "next_user_ref"):
            assert after[key] == before[key], key
        assert booked(after) == booked(before)  # (marks move: they are the market's)
        snap = ask(up, "exchange", Snapshot("HFTD"))
        assert_gateway_matches_venue(after, snap)
        assert after["fills"] == len(snap["fills"])
        wait_for(
            lambda: ex_journal.stat().st_size > len(run1[f"{day}/exchange.journal"]),
            10,
            "the exchange journaling on (background flow)",
        )
        stopped(up)
    assert "reconciliation mismatch" not in up.log and "reconciled with the venue" in up.log
    for name, data in run1.items():  # appended to, never truncated nor rewritten
        assert files(root)[name][: len(data)] == data, name
    assert len(files(root)[f"{day}/exchange.journal"]) > len(run1[f"{day}/exchange.journal"])

    # And with the strategy: the continued day is still halted (the kill switch is
    # journaled: a restart never resumes trading by itself), says why, and trades
    # again once the operator resumes, and still adds up.
    with start_daemon("up", cfg, ready_timeout=60) as up:
        assert f"trading day {day} continued" in up.log
        g = status(up, "gateway")
        assert g["mode"] == "halted" and g["mode_reason"] == "halt: test: end of run"
        assert ask(up, "gateway", Resume())["mode"] == "active"
        wait_for(
            lambda: status(up, "gateway")["fills"] > before["fills"] + 5,
            120,
            "trading on the continued day",
        )
        end = halted(up)
        snap = ask(up, "exchange", Snapshot("HFTD"))
        assert_gateway_matches_venue(end, snap)
        stopped(up)
    assert "reconciliation mismatch" not in up.log
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [day]
    assert gw_journal.stat().st_size > len(run1[f"{day}/gateway.journal"])


def test_new_day_opens_the_next_session_and_keeps_the_last(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "system": {"trading_day_starts": ""},
            "daemons": {n: OFF for n in ("feed", "gateway", "strategy", "monitor")},
        },
    )
    root = tmp_path / "journal"
    with start_daemon("up", cfg) as up:
        first = current(root)
        journal = root / first / "exchange.journal"
        wait_for(lambda: len(read_all(journal)[0]) > 20, 10, "the venue journaling its day")
        stopped(up)
    date, n = first.rsplit(".", 1)
    assert n == "1"
    show = hftd_day(cfg, "show")
    assert show.returncode == 0 and f"trading day {first}" in show.stdout, show
    assert "exchange.journal" in show.stdout and "bytes" in show.stdout
    kept = files(root)

    with start_daemon("up", cfg, args=("--new-day",)) as up:
        second = f"{date}.2"
        assert current(root) == second
        assert f"trading day {second} opened after {first}" in up.log
        assert status(up, "exchange")["journal_replayed"] == 0  # a new venue
        # Nothing of this system may run while a day is opened by hand.
        refused = hftd_day(cfg, "new")
        assert refused.returncode == 1, refused
        assert f"hftd (pid {up.proc.pid})" in refused.stderr, refused.stderr
        assert current(root) == second
        stopped(up)
    now = files(root)
    for name, data in kept.items():
        if name != "CURRENT":
            assert now[name] == data, f"{name} changed"
    assert now[f"{second}/exchange.journal"]

    opened = hftd_day(cfg, "new")
    assert opened.returncode == 0, opened
    assert f"trading day {date}.3 opened after {second}" in opened.stdout
    assert current(root) == f"{date}.3"
    show = hftd_day(cfg, "show")
    assert f"trading day {date}.3" in show.stdout and "none yet" in show.stdout
    assert "other days kept: 2" in show.stdout
    assert {k: v for k, v in files(root).items() if k != "CURRENT"} == {
        k: v for k, v in now.items() if k != "CURRENT"
    }


def test_a_day_continued_with_orders_working_adopts_them(tmp_path: Path) -> None:
    """Orders still working at a clean stop: the next `hftd up` gives them to the
    new strategy through the gateway's Status (adopt), not as replayed reports
    too (a live order "accepted" again made the strategy die in a loop)."""
    import msgspec

    from hftd.ipc.ring import Ring
    from hftd.msg.hot import CMD_HEARTBEAT, CMD_NEW, OrderCommand
    from tests.integration.test_trading import STRATEGIES
    from tests.support import status_of_up

    cfg = trading_config(
        tmp_path,
        {
            "daemons": {"monitor": OFF},
            "strategy": {"instances": [STRATEGIES[1]]},  # mom1: GOOG, AMZN
            "gateway": {"strategy_timeout_s": 60.0},  # no cancel-on-silence while stopping
            "system": {"trading_day_starts": ""},
        },
    )
    conf = tomllib.loads(cfg.read_text())
    # Run 1 without a strategy: the test is mom1 and leaves a bid resting well
    # under the market (inside the price band) when the system stops.
    alone = variant(cfg, "alone.toml", {"strategy": OFF, "feed": OFF})
    with start_daemon("up", alone, ready_timeout=60) as up:
        enc = msgspec.msgpack.Encoder()
        with Ring.attach(f"{conf['rings']['prefix']}-orders") as orders:
            orders.write(enc.encode(OrderCommand(CMD_HEARTBEAT, 0, "", "", 1, 0, "", 0, "", 0, 0)))
            # as mom1 (strategy index 0) would, in a run of the day of its own
            cl_id = ids.first_id(0, claim_strategy_run(load_config(cfg))) + 7
            orders.write(
                enc.encode(
                    OrderCommand(CMD_NEW, cl_id, "GOOG", "B", 100, 1_670_000, "0", 0, "mom1", 0, 0)
                )
            )
        wait_for(
            lambda: [w for w in status(up, "gateway")["working"] if w["state"] == "live"],
            30,
            "the bid resting at the venue",
        )
        stopped(up)
    with start_daemon("up", cfg, ready_timeout=60) as up:
        # the bid is working again (mom1 may already have sent orders of its own: it
        # trades as soon as its window fills, and READY does not wait for that)
        assert cl_id in [w["cl_id"] for w in status(up, "gateway")["working"]]
        # the strategy has read the executions ring up to a gateway heartbeat:
        # whatever was replayed to it came before that
        wait_for(
            lambda: status(up, "strategy")["gateway_heard_ms_ago"] is not None,
            30,
            "the strategy hearing the gateway",
        )
        st = status(up, "strategy")
        assert "recovered from the gateway: 1 working orders" in up.log
        assert st["invalid_reports"] == 0 and st["untracked"] == 0, st
        assert status_of_up(up)["strategy"]["restarts"] == 0, status_of_up(up)["strategy"]
        stopped(up)
