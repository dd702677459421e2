"""Trading days: the journals are the day's records, kept; a new day only when asked."""

from __future__ import annotations

import os
import stat
import threading
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import ConfigError, HftdConfig, load_config, parse_config
from hftd.runtime import days
from hftd.runtime.days import DayError, DayName, decide, next_name, parse_name, trading_date
from hftd.runtime.rundir import RunDirError
from tests.support import DEFAULT_CONFIG

# --- pure ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "starts", "want"),
    [
        (datetime(2026, 12, 7, 2, 0), time(4, 0), date(2026, 12, 6)),  # before the boundary
        (datetime(2026, 12, 7, 3, 59, 59), time(4, 0), date(2026, 12, 6)),
        (datetime(2026, 12, 7, 4, 0), time(4, 0), date(2026, 12, 7)),  # at it: the new date
        (datetime(2026, 12, 7, 23, 59), time(4, 0), date(2026, 12, 7)),
        (datetime(2026, 12, 7, 0, 0), time(0, 0), date(2026, 12, 7)),
        (datetime(2026, 1, 1, 17, 0), time(18, 30), date(2025, 12, 31)),  # across a year
        (datetime(2026, 12, 7, 2, 0), None, date(2026, 12, 7)),  # no boundary: calendar date
    ],
)
def test_trading_date_is_the_calendar_date_of_now_minus_the_boundary(
    now: datetime, starts: time | None, want: date
) -> None:
    assert trading_date(now, starts) == want


def test_parse_starts() -> None:
    assert days.parse_starts("04:00") == time(4, 0)
    assert days.parse_starts("23:59") == time(23, 59)
    assert days.parse_starts("") is None  # manual days only
    for bad in ("4:00", "24:00", "12:60", "noon", "04:00:00", " 04:00"):
        with pytest.raises(ValueError, match="HH:MM"):
            days.parse_starts(bad)


def test_day_names() -> None:
    assert parse_name("2026-12-06.1") == DayName(date(2026, 12, 6), 1)
    assert str(DayName(date(2026, 12, 6), 12)) == "2026-12-06.12"
    for bad in ("2026-12-06", "2026-12-06.0", "2026-12-06.01", "2026-02-30.1", "CURRENT", "x.1"):
        assert parse_name(bad) is None, bad
    on = date(2026, 12, 6)
    assert next_name(on, []) == DayName(on, 1)
    existing = ["2026-12-05.1", "2026-12-05.2", "2026-12-06.1", "2026-12-06.3", "day.lock"]
    assert next_name(on, existing) == DayName(on, 4)  # after every existing session of that date
    assert next_name(date(2026, 12, 5), existing) == DayName(date(2026, 12, 5), 3)
    assert next_name(date(2026, 12, 7), existing) == DayName(date(2026, 12, 7), 1)


def test_decide() -> None:
    cur = DayName(date(2026, 12, 6), 1)
    today, tomorrow = date(2026, 12, 6), date(2026, 12, 7)
    assert decide(None, today, new=False, roll=True) == "opened"
    assert decide(cur, today, new=False, roll=True) == "continued"
    assert decide(cur, tomorrow, new=False, roll=True) == "rolled over from 2026-12-06.1"
    assert decide(cur, tomorrow, new=False, roll=False) == "continued"  # "": manual only
    assert decide(cur, today, new=True, roll=False) == "opened after 2026-12-06.1"
    assert decide(cur, date(2026, 12, 5), new=False, roll=True) == "continued"  # clock went back


# --- on disk -------------------------------------------------------------------------------


def config(tmp: Path, starts: str = "04:00") -> HftdConfig:
    cfg = load_config(DEFAULT_CONFIG)
    return msgspec.structs.replace(
        cfg,
        system=msgspec.structs.replace(
            cfg.system,
            run_dir=str(tmp / "run"),
            journal_dir=str(tmp / "journal"),
            trading_day_starts=starts,
        ),
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def journals(day: days.TradingDay, tag: bytes) -> None:
    """What the daemons would have journaled into `day`."""
    for path in (day.exchange_journal, day.gateway_journal):
        with open(path, "ab") as f:
            f.write(tag * 100)


DEC6 = datetime(2026, 12, 6, 9, 30)


def test_open_continue_new_and_roll_over_never_delete(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    root = tmp_path / "journal"
    first, what = days.open_day(cfg, now=DEC6)
    assert (str(first.name), what) == ("2026-12-06.1", "opened")
    assert first.path == root / "2026-12-06.1"
    assert (root / "CURRENT").read_text() == "2026-12-06.1\n"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    journals(first, b"a")

    # Continued: later the same trading date, and before the 04:00 boundary next night.
    for now in (datetime(2026, 12, 6, 16, 0), datetime(2026, 12, 7, 3, 59)):
        before = snapshot(root)
        again, what = days.open_day(cfg, now=now)
        assert (again, what) == (first, "continued")
        assert snapshot(root) == before
    assert days.current_day(cfg) == first
    assert days.exchange_journal_path(cfg) == first.path / "exchange.journal"
    assert days.gateway_journal_path(cfg) == first.path / "gateway.journal"

    # Asked for: a second session of the same date; the first one's files untouched.
    before = snapshot(root)
    second, what = days.open_day(cfg, new=True, now=datetime(2026, 12, 6, 17, 0))
    assert (str(second.name), what) == ("2026-12-06.2", "opened after 2026-12-06.1")
    after = snapshot(root)
    assert {k: v for k, v in after.items() if k != "CURRENT"} == {
        k: v for k, v in before.items() if k != "CURRENT"
    }
    assert days.current_day(cfg) == second
    journals(second, b"b")

    # Past the boundary: `hftd up` rolls over to the new trading date.
    before = snapshot(root)
    third, what = days.open_day(cfg, now=datetime(2026, 12, 7, 4, 0))
    assert (str(third.name), what) == ("2026-12-07.1", "rolled over from 2026-12-06.2")
    after = snapshot(root)
    for name, data in before.items():  # nothing deleted, nothing truncated, nothing changed
        if name != "CURRENT":
            assert after[name] == data, name
    names = [str(d) for d in days.day_names(root)]
    assert names == ["2026-12-06.1", "2026-12-06.2", "2026-12-07.1"]


def test_no_boundary_means_manual_days_only(tmp_path: Path) -> None:
    cfg = config(tmp_path, starts="")
    first, _ = days.open_day(cfg, now=DEC6)
    later, what = days.open_day(cfg, now=datetime(2027, 1, 15, 9, 30))
    assert (later, what) == (first, "continued")
    new, what = days.open_day(cfg, new=True, now=datetime(2027, 1, 15, 9, 30))
    assert (str(new.name), what) == ("2027-01-15.1", "opened after 2026-12-06.1")


def test_a_daemon_never_rolls_over(tmp_path: Path) -> None:
    """current_day continues CURRENT whatever the date; it opens only the very first day."""
    cfg = config(tmp_path)
    first = days.current_day(cfg)  # no day yet: a daemon started alone opens one
    assert first.name.n == 1 and (tmp_path / "journal" / "CURRENT").exists()
    (tmp_path / "journal" / "CURRENT").write_text("2020-01-02.3\n")
    (tmp_path / "journal" / "2020-01-02.3").mkdir()
    assert str(days.current_day(cfg).name) == "2020-01-02.3"


def test_two_daemons_starting_together_agree_on_the_first_day(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(days.current_day(cfg))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1
    assert len(days.day_names(tmp_path / "journal")) == 1


def test_damaged_current_is_refused_not_replaced(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first, _ = days.open_day(cfg, now=DEC6)
    current = tmp_path / "journal" / "CURRENT"
    current.write_text("garbage\n")
    with pytest.raises(DayError, match="not a day name"):
        days.current_day(cfg)
    with pytest.raises(DayError, match="not a day name"):
        days.open_day(cfg, now=DEC6)
    assert current.read_text() == "garbage\n"
    current.write_text("2026-12-05.1\n")  # names a day whose directory is gone
    with pytest.raises(DayError, match="moved or removed"):
        days.current_day(cfg)
    assert not (tmp_path / "journal" / "2026-12-05.1").exists()  # not silently re-created
    assert first.path.is_dir()


def test_a_stray_file_with_a_days_name_is_skipped(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    root = tmp_path / "journal"
    root.mkdir(mode=0o700)
    (root / "2026-12-06.1").write_text("not a day")
    day, _ = days.open_day(cfg, now=DEC6)
    assert str(day.name) == "2026-12-06.2"
    assert (root / "2026-12-06.1").read_text() == "not a day"


def test_journal_dir_others_may_write_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    root = tmp_path / "journal"
    root.mkdir()
    os.chmod(root, 0o777)
    with pytest.raises(RunDirError, match="journal dir"):
        days.current_day(cfg)


def test_check_runs_under_the_lock_and_can_refuse(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first, _ = days.open_day(cfg, now=DEC6)

    def refuse() -> None:
        raise DayError("refused: exchange (pid 42) running")

    with pytest.raises(DayError, match="pid 42"):
        days.open_day(cfg, new=True, now=DEC6, check=refuse)
    assert days.current_day(cfg) == first and len(days.day_names(tmp_path / "journal")) == 1


def test_refuse_if_running_names_the_daemon_and_pid(tmp_path: Path) -> None:
    from hftd.runtime.rundir import RunLock

    run = tmp_path / "run"
    days.refuse_if_running(run)  # no run dir at all: nothing runs
    run.mkdir(mode=0o700)
    lock = RunLock(run, "gateway")
    lock.acquire()
    try:
        with pytest.raises(DayError, match=rf"gateway \(pid {os.getpid()}\)"):
            days.refuse_if_running(run)
    finally:
        lock.release()
    days.refuse_if_running(run)


# --- config --------------------------------------------------------------------------------


def base() -> dict[str, Any]:
    return {"symbols": [{"symbol": "AAPL", "reference_price": "189.50"}]}


@pytest.mark.parametrize(
    ("section", "key", "value", "says"),
    [
        ("exchange", "fresh_start", True, "hftd up --new-day"),
        ("exchange", "journal", "/tmp/x.journal", "system.journal_dir"),
        ("gateway", "journal", "/tmp/y.journal", "system.journal_dir"),
    ],
)
def test_removed_journal_keys_name_their_replacement(
    section: str, key: str, value: Any, says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**base(), section: {key: value}})
    (err,) = info.value.errors
    assert err.startswith(f"{section}.{key}: removed") and says in err, err
    assert "unknown field" not in err


def test_journal_dir_and_trading_day_starts_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"system\.trading_day_starts: .*HH:MM"):
        parse_config({**base(), "system": {"trading_day_starts": "25:00"}})
    assert parse_config({**base(), "system": {"trading_day_starts": ""}})
    sys_cfg = parse_config(base()).system
    assert sys_cfg.trading_day_starts == "00:00"
    monkeypatch.setenv("HFTD_JOURNAL_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert sys_cfg.resolved_journal_dir() == tmp_path / "env"
    monkeypatch.delenv("HFTD_JOURNAL_DIR")
    assert sys_cfg.resolved_journal_dir() == tmp_path / "xdg" / "hftd" / "journal"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sys_cfg.resolved_journal_dir() == tmp_path / "home/.local/state/hftd/journal"
    explicit = msgspec.structs.replace(sys_cfg, journal_dir=str(tmp_path / "mine"))
    assert explicit.resolved_journal_dir() == tmp_path / "mine"
    # Not the run dir: that is a tmpfs under systemd and XDG_RUNTIME_DIR.
    assert sys_cfg.resolved_journal_dir() != sys_cfg.resolved_run_dir()
