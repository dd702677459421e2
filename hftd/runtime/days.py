"""Trading days: where each day's journals live, and when a new day starts.

The exchange's and the gateway's journals are the books and records of a
trading day, so they are kept, never deleted or truncated by hftd. Each
session of a trading day has a directory of its own under the journal dir
(`system.journal_dir`, durable storage, never the run dir's tmpfs)::

    <journal_dir>/
        CURRENT               "2026-12-06.1\\n": the day the daemons journal into
        day.lock              flock: one process at a time opens or reads a day
        hftd.lock             flock held by `hftd up`: one system per journal dir
        2026-12-05.1/         exchange.journal, gateway.journal, strategy.runs
        2026-12-06.1/         ... (+ <journal>.lock: flock held by its one writer)
            exchange.state/   the venue's checkpoint and stream files: derived from
                              exchange.journal, which rebuilds them (hftd.exchange.checkpoint)

`<date>.<n>` is the n-th session opened for that trading date (a second
`hftd up --new-day` the same date gives `.2`). A daemon never starts a new
day: it journals into CURRENT's directory (opening the very first day if
there is none, so a daemon started alone works). A new day is opened only by
an operator (`hftd up --new-day`, `hftd day new`) or by `hftd up` at a
configured boundary (`system.trading_day_starts`): with "04:00", the trading
date of 02:00 on Dec 7 is Dec 6, and the first `hftd up` after 04:00 rolls
over to a Dec 7 day. Only `hftd up` and `hftd day` roll over, never a
running daemon, so a day never changes under a running system.

The pure part (names, dates, the decision) is separate from the few file
operations below it.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from hftd.config import DAEMONS, HOTPATH
from hftd.runtime.rundir import RunDirError, RunLock, ensure_private_dir, lock_holder

if TYPE_CHECKING:
    from hftd.config import HftdConfig

CURRENT: Final = "CURRENT"
LOCK: Final = "day.lock"
EXCHANGE_JOURNAL: Final = "exchange.journal"
GATEWAY_JOURNAL: Final = "gateway.journal"
STRATEGY_RUNS: Final = "strategy.runs"  # a line per strategy start: its cl_id run (hftd.msg.ids)
JOURNALS: Final = (EXCHANGE_JOURNAL, GATEWAY_JOURNAL)
# Who may be journaling: `hftd up` and each daemon hold <run_dir>/<name>.lock.
RUN_LOCKS: Final = ("hftd", *DAEMONS, HOTPATH)

_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.([1-9][0-9]{0,5})$")
_STARTS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class DayError(RunDirError):
    """The journal dir cannot say which day it is; the message says what to do."""


# --- pure ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayName:
    """`<date>.<n>`: the n-th session opened for a trading date."""

    date: date
    n: int

    def __str__(self) -> str:
        return f"{self.date.isoformat()}.{self.n}"


def parse_name(text: str) -> DayName | None:
    """A day directory's name, or None if `text` is not one."""
    m = _NAME.match(text)
    if m is None:
        return None
    try:
        return DayName(date.fromisoformat(m.group(1)), int(m.group(2)))
    except ValueError:  # 2026-02-30
        return None


def parse_starts(text: str) -> time | None:
    """`trading_day_starts` ("HH:MM" local time) -> time; "" -> None (manual days only)."""
    if text == "":
        return None
    m = _STARTS.match(text)
    if m is None:
        raise ValueError(f'{text!r} is not HH:MM (00:00-23:59), nor "" for manual days only')
    return time(int(m.group(1)), int(m.group(2)))


def trading_date(now: datetime, starts: time | None) -> date:
    """The trading date of local time `now`: the calendar date of (now - starts).

    With starts 04:00, 02:00 on Dec 7 still belongs to Dec 6's day. No
    boundary (None) is the calendar date.
    """
    if starts is None:
        return now.date()
    return (now - timedelta(hours=starts.hour, minutes=starts.minute)).date()


def next_name(on: date, existing: Iterable[str]) -> DayName:
    """The name of a new session for trading date `on`, after every existing one."""
    taken = [d.n for d in map(parse_name, existing) if d is not None and d.date == on]
    return DayName(on, max(taken, default=0) + 1)


def decide(current: DayName | None, today: date, *, new: bool, roll: bool) -> str:
    """What `open_day` does: "continued", "opened", or "rolled over from <day>".

    `today` is the trading date now; `roll` says a boundary is configured.
    """
    if current is None:
        return "opened"
    if new:
        return f"opened after {current}"
    if roll and current.date < today:
        return f"rolled over from {current}"
    return "continued"


# --- files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TradingDay:
    """One session of a trading day and the directory its journals are in."""

    name: DayName
    path: Path

    @property
    def exchange_journal(self) -> Path:
        return self.path / EXCHANGE_JOURNAL

    @property
    def gateway_journal(self) -> Path:
        return self.path / GATEWAY_JOURNAL


def journal_dir(cfg: HftdConfig) -> Path:
    """The journal dir, created (0700) or checked private; resolved."""
    return ensure_private_dir(cfg.system.resolved_journal_dir(), "journal dir")


@contextmanager
def _day_lock(directory: Path) -> Iterator[None]:
    """Held while CURRENT is read or changed: two starters agree on one day."""
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DayError(f"cannot open {directory / LOCK}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the flock


def read_current(directory: Path) -> DayName | None:
    """The day CURRENT names (None if there is no CURRENT yet); DayError if unreadable."""
    try:
        text = (directory / CURRENT).read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DayError(f"cannot read {directory / CURRENT}: {exc.strerror}") from exc
    name = parse_name(text)
    if name is None:
        raise DayError(
            f"{directory / CURRENT} holds {text[:40]!r}, not a day name like 2026-12-06.1: "
            "write the right one there, or open a new day with `hftd day new`"
        )
    return name


def day_names(directory: Path) -> list[DayName]:
    """Every day directory in the journal dir, oldest first."""
    out = []
    for entry in os.scandir(directory):
        name = parse_name(entry.name)
        if name is not None and entry.is_dir(follow_symlinks=False):
            out.append(name)
    return sorted(out, key=lambda d: (d.date, d.n))


def _existing(directory: Path, name: DayName) -> TradingDay:
    path = directory / str(name)
    if not path.is_dir() or path.is_symlink():
        raise DayError(
            f"trading day {name} (named in {directory / CURRENT}) has no directory {path}: "
            "its records were moved or removed; put them back, or open a new day with "
            "`hftd day new`"
        )
    return TradingDay(name, path)


def _write_current(directory: Path, name: DayName) -> None:
    """CURRENT := name, atomically (a reader sees the old day or the new one) and durably."""
    tmp = directory / f".{CURRENT}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, f"{name}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / CURRENT)
    _sync_dir(directory)


def _new(directory: Path, on: date) -> TradingDay:
    """Create the next session's directory for trading date `on` (never an existing one)."""
    taken = os.listdir(directory)  # a stray file of a day's name is skipped too
    while True:
        name = next_name(on, taken)
        path = directory / str(name)
        try:
            path.mkdir(mode=0o750)
        except FileExistsError:
            taken.append(str(name))
            continue
        _sync_dir(directory)
        _write_current(directory, name)
        return TradingDay(name, path)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now_date(cfg: HftdConfig, now: datetime | None) -> tuple[date, bool]:
    starts = parse_starts(cfg.system.trading_day_starts)
    return trading_date(now if now is not None else datetime.now(), starts), starts is not None


def current_day(cfg: HftdConfig) -> TradingDay:
    """The day a daemon journals into: CURRENT, or the first day if there is none.

    Never rolls over (only `hftd up` and `hftd day new` do). Raises DayError or
    RunDirError when the journal dir cannot be used.
    """
    directory = journal_dir(cfg)
    with _day_lock(directory):
        name = read_current(directory)
        if name is not None:
            return _existing(directory, name)
        return _new(directory, _now_date(cfg, None)[0])


def open_day(
    cfg: HftdConfig,
    *,
    new: bool = False,
    now: datetime | None = None,
    check: Callable[[], None] | None = None,
) -> tuple[TradingDay, str]:
    """Continue CURRENT, or open a new day (`new`, none yet, or past the boundary).

    Returns the day and what happened, for the log. `check` runs while the day
    lock is held, before anything changes, and may raise to refuse (`hftd day
    new` checks that nothing runs). Never deletes or truncates anything.
    """
    directory = journal_dir(cfg)
    today, roll = _now_date(cfg, now)
    with _day_lock(directory):
        if check is not None:
            check()
        current = read_current(directory)
        what = decide(current, today, new=new, roll=roll)
        if what == "continued" and current is not None:
            return _existing(directory, current), what
        return _new(directory, today), what


def exchange_journal_path(cfg: HftdConfig) -> Path:
    """The exchange's journal of the current day (resolve once, at start)."""
    return current_day(cfg).exchange_journal


def gateway_journal_path(cfg: HftdConfig) -> Path:
    """The gateway's journal of the current day (resolve once, at start)."""
    return current_day(cfg).gateway_journal


def claim_strategy_run(cfg: HftdConfig, *, pid: int | None = None) -> int:
    """The next strategy run of the current day (1, 2, ...): the run bits of every
    cl_id this start sends (hftd.msg.ids), so a restart never reuses an earlier
    run's ids. Recorded, one line per start, in the day's `strategy.runs` (kept
    with the journals, fsynced before the number is used). DayError if the file
    cannot be used."""
    path = current_day(cfg).path / STRATEGY_RUNS
    try:
        fd = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
        )
    except OSError as exc:
        raise DayError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two strategies starting at once get two runs
        with os.fdopen(os.dup(fd), "rb") as f:
            text = f.read().decode("ascii", errors="replace")
        run = last_run(text, path) + 1
        stamp = datetime.now().isoformat(timespec="milliseconds")
        os.write(fd, f"{run} pid={pid if pid is not None else os.getpid()} {stamp}\n".encode())
        os.fsync(fd)
    except OSError as exc:
        raise DayError(f"cannot record a strategy run in {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)  # drops the flock
    return run


def last_run(text: str, path: Path | str = STRATEGY_RUNS) -> int:
    """The highest run `strategy.runs` records (0 if none). A last line cut short
    (a crash while writing it) is skipped; any other line that is not a run
    number is an error naming it: a guessed number could reuse ids."""
    last = 0
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line:
            continue
        word = line.split(" ", 1)[0]
        if not word.isdigit():
            if i == len(lines) - 1:  # no newline after it: a torn write
                continue
            raise DayError(f"{path} line {i + 1}: {line[:40]!r} does not start with a run number")
        last = max(last, int(word))
    return last


def journal_dir_lock(directory: Path) -> RunLock:
    """`hftd up` holds this for its life: one system per journal dir, since two
    systems sharing one would journal into the same day (their journals are
    locked too, each by its writer, but CURRENT is the dir's)."""
    return RunLock(
        directory,
        "hftd",
        busy=f"journal dir {directory} is already in use by another hftd up",
        hint="stop it, or give each system its own system.journal_dir",
    )


def running(run_dir: Path, directory: Path | None = None) -> list[tuple[str, int]]:
    """(name, pid) of every part of this system that runs (holds its run lock), and,
    given the journal dir, whatever holds it or writes the current day's journals."""
    out = []
    for name in RUN_LOCKS:
        pid = lock_holder(run_dir, name)
        if pid is not None:
            out.append((name, pid))
    if directory is not None:
        pid = lock_holder(directory, "hftd")
        if pid is not None:
            out.append(("hftd up of this journal dir", pid))
        current = read_current(directory)
        if current is not None:
            for journal in JOURNALS:
                pid = lock_holder(directory / str(current), journal)
                if pid is not None:
                    out.append((f"the writer of {current}/{journal}", pid))
    return out


def refuse_if_running(run_dir: Path, directory: Path | None = None) -> None:
    """Raise DayError naming what runs: a running daemon journals into CURRENT's day,
    and would go on doing so after CURRENT named another."""
    who = running(run_dir, directory)
    if who:
        names = ", ".join(f"{n} (pid {pid})" if pid else f"{n} (pid unknown)" for n, pid in who)
        raise DayError(
            f"refused: {names} running in {run_dir}; stop the system first "
            "(or use `hftd up --new-day`)"
        )
