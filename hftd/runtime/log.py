"""Logging in the brief's format: ``[09:30:00.015] [STRAT ] message``.

The tag says which part of the system a line is about, by the logger that made
it (`LOGGER_TAGS`, the longest prefix of its name): SYSTEM (the supervisor,
start-up, a process's own lines), MD (the feed), STRAT, RISK, GW (the gateway),
PERF (latency), DASH (the monitor and its dashboard), EXCH (the venue
simulator), CTL; any other logger takes its process's tag (`TAGS`). One
record may carry several tagged lines (`Lines`): the gateway says a risk
check and the order sent, or a fill, its position, P&L and latency, with one
record each, so an order costs the hot thread no more records than before.

The time is local wall-clock time with milliseconds, without the date (the
brief's form): `hftd up` says the date when it starts and again at each local
midnight (hftd.supervise.supervisor), and under systemd the journal stamps
every line with date and time itself. hftd writes no log file of its own.

The brief wants a line per signal, risk decision, order and fill: at the
default level those lines come from the hot loops. Formatting one and writing
it to stderr costs tens of microseconds (bench_tick_to_trade --log-ratio:
tick-to-trade p50 x1.27 at "info" against "warning"), so a hot thread's
records wait in a deque and are written by that same thread when its loop is
idle (`flush_deferred`, a line at a time, looking for work in between),
before it sleeps: no extra thread competing for the GIL, and an order's wire
time no longer pays for its log line. Records keep the time they were made;
other threads' records are written at once, so lines from a hot thread can
appear a little after a control thread's later line. Lines made once per
order are bounded (`LineBudget`): past `ORDER_LINES_PER_S` a second they
are counted, not made.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

# A process's own tag: its lines from loggers `LOGGER_TAGS` does not name.
TAGS = {
    "exchange": "EXCH",
    "feed": "MD",
    "strategy": "STRAT",
    "gateway": "GW",
    "monitor": "DASH",
    "hotpath": "SYSTEM",
    "supervisor": "SYSTEM",
    "ctl": "CTL",
}

# The brief's tags by logger name (the longest matching prefix), in every process.
LOGGER_TAGS = {
    "hftd.supervisor": "SYSTEM",
    "hftd.hotpath": "SYSTEM",
    "hftd.exchange": "EXCH",
    "hftd.feed": "MD",
    "hftd.strategy": "STRAT",
    "hftd.risk": "RISK",
    "hftd.gateway": "GW",
    "hftd.perf": "PERF",
    "hftd.monitor": "DASH",
    "hftd.console": "DASH",
    "hftd.ctl": "CTL",
}

# Lines made once per order (the strategy's signal, the gateway's risk check and
# order sent), a second, per process; past it they are counted and the next one
# says how many were left out. The default risk limits allow 200 orders/s; the
# benches' 25,000/s would otherwise make a record per order (a few microseconds
# each of the hot thread's time). Fills are always logged.
ORDER_LINES_PER_S = 1000


def tag_of(name: str, default: str) -> str:
    """The tag of logger `name` (`LOGGER_TAGS`), else `default`."""
    while name:
        tag = LOGGER_TAGS.get(name)
        if tag is not None:
            return tag
        name = name.rpartition(".")[0]
    return default


class Lines:
    """A log message of several lines, each with its own tag: `lines()` gives
    (tag, text) pairs, made when the record is written (not on the hot path).
    Other formatters see the texts one per line (`str`)."""

    __slots__ = ()

    def lines(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def __str__(self) -> str:
        return "\n".join(text for _, text in self.lines())


class LineBudget:
    """At most `per_s` lines a second (and a second's worth at once), by the
    caller's monotonic clock in ns; `take` says whether to make this one, and
    how many were left out since the last one made. Pure; a few attribute reads."""

    __slots__ = ("interval_ns", "left_out", "limit_ns", "skipped", "tat")

    def __init__(self, per_s: int = ORDER_LINES_PER_S) -> None:
        if per_s < 1:
            raise ValueError(f"lines per second must be >= 1, got {per_s}")
        self.interval_ns = 1_000_000_000 // per_s
        self.limit_ns = 1_000_000_000 - self.interval_ns  # a second's worth at once
        self.tat = 0  # when the budget is full again (GCRA's theoretical arrival time)
        self.skipped = 0  # left out since the last line made
        self.left_out = 0  # in all

    def take(self, now_ns: int) -> int:
        """-1: leave this line out (counted); else make it, noting the returned
        number of lines left out before it."""
        tat = self.tat if self.tat > now_ns else now_ns
        if tat - now_ns > self.limit_ns:
            self.skipped += 1
            self.left_out += 1
            return -1
        self.tat = tat + self.interval_ns
        skipped = self.skipped
        self.skipped = 0
        return skipped


def left_out_text(n: int, what: str = "order lines") -> str:
    """What a line made after `n` were left out adds ("" if none were)."""
    if not n:
        return ""
    return f" ({n:,} {what} left out before this one: over {ORDER_LINES_PER_S:,} a second)"


def log_at(logger: logging.Logger, created: float, msg: str, *args: object) -> None:
    """An INFO record dated `created` (a `time.time()` read earlier: when the event
    happened), for a line made only after the work that followed it (a signal's,
    once its order has left): its time still orders it before what the event caused,
    across processes too."""
    if logger.isEnabledFor(logging.INFO):
        record = logger.makeRecord(logger.name, logging.INFO, _UNKNOWN_FILE, 0, msg, args, None)
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        record.relativeCreated = (created - _START) * 1000
        logger.handle(record)


class BriefFormatter(logging.Formatter):
    """``[HH:MM:SS.mmm] [TAG   ] text``: local time with milliseconds, then the
    6-wide tag of the logger (`tag_of`), else of the process."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.default = tag
        self._tags: dict[str, str] = {}  # logger name -> "[TAG   ]", learned once each
        # (whole second, its text): lines come many a second, so localtime + strftime
        # run once per second; one tuple, swapped whole (threads may format at once)
        self._second: tuple[int, str] = (-1, "")

    def tag(self, name: str) -> str:
        t = self._tags.get(name)
        if t is None:
            t = self._tags[name] = f"[{tag_of(name, self.default):<6.6}]"
        return t

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%H:%M:%S", time.localtime(second)))
            self._second = cached
        stamp = f"[{cached[1]}.{int(record.msecs):03d}]"
        msg = record.msg
        if isinstance(msg, Lines):
            return "\n".join(f"{stamp} [{tag:<6.6}] {text}" for tag, text in msg.lines())
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname}: {text}"
        line = f"{stamp} {self.tag(record.name)} {text}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class DeferredHandler(logging.Handler):
    """Hands records to `target`: at once, or, from a registered hot thread,
    when that thread is idle (`flush_deferred`).

    Bounds, so nothing waits for long or is lost: a WARNING or worse is
    written at once (after what its thread has pending, keeping the order);
    a thread with `max_pending` records waiting, or whose oldest waited
    `max_delay_s`, writes a few with each new one (never a long stall); the
    control thread writes records stale past `max_delay_s` (`flush_stale`:
    a hung or saturated hot loop); and flush/close (logging.shutdown at
    exit) write everything.
    """

    BATCH = 8  # records written per call when catching up on the hot path

    def __init__(
        self, target: logging.Handler, max_pending: int = 256, max_delay_s: float = 0.1
    ) -> None:
        super().__init__()
        self.target = target
        self.max_pending = max_pending
        self.max_delay_s = max_delay_s
        self.hot: set[int] = set()
        self.pending: deque[logging.LogRecord] = deque()

    def handle(self, record: logging.LogRecord) -> bool:
        ident = threading.get_ident()
        if ident == _warming[0]:
            return True  # a warming pass's record (hftd.hotpath.warmup): dropped
        if ident not in self.hot:
            self.target.handle(record)
            return True
        pending = self.pending
        if record.levelno >= logging.WARNING:
            self.flush_pending()
            self.target.handle(record)
            return True
        pending.append(record)
        if len(pending) >= self.max_pending or (
            record.created - pending[0].created > self.max_delay_s
        ):
            self.flush_pending(self.BATCH)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)

    def flush_pending(self, limit: int = 0, older_than: float | None = None) -> int:
        """Write what waits (at most `limit` records if > 0; only records made
        before `older_than`, a time.time(), if given); returns how many. Safe
        from any thread: another may be popping too."""
        n = 0
        pending = self.pending
        while not limit or n < limit:
            try:
                record = pending.popleft()
            except IndexError:
                break
            if older_than is not None and record.created >= older_than:
                pending.appendleft(record)  # young enough: its own thread will write it
                break
            self.target.handle(record)
            n += 1
        return n

    def flush_stale(self) -> int:
        """From the control thread: write records that waited over `max_delay_s`."""
        if not self.pending:
            return 0
        return self.flush_pending(older_than=time.time() - self.max_delay_s)

    def flush(self) -> None:
        self.flush_pending()
        self.target.flush()

    def close(self) -> None:
        self.flush_pending()
        super().close()


_UNKNOWN_FILE = "(unknown file)"  # LogRecord's pathname when findCaller is skipped


class HotRecord(logging.LogRecord):
    """A LogRecord with the same attributes, made in about half the time.

    The record is made on the hot thread even when its line is written later.
    With `logging._srcfile` off (setup_logging) there is no caller file to split
    into filename and module, and no process fields are wanted: set those
    directly instead of through os.path; every other case is LogRecord's own.
    """

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (
            pathname != _UNKNOWN_FILE
            or kwargs
            or (args and len(args) == 1 and isinstance(args[0], Mapping) and args[0])
            or not logging.logThreads
            or logging.logProcesses
            or logging.logMultiprocessing
        ):
            super().__init__(name, level, pathname, lineno, msg, args, exc_info, func, sinfo)
            return
        ct = time.time()
        self.name = name
        self.msg = msg
        self.args = args
        self.levelname = logging.getLevelName(level)
        self.levelno = level
        self.pathname = self.filename = self.module = pathname
        self.exc_info = exc_info
        self.exc_text = None
        self.stack_info = sinfo
        self.lineno = lineno
        self.funcName = func  # type: ignore[assignment]  # None as LogRecord sets it
        self.created = ct
        self.msecs = int((ct - int(ct)) * 1000) + 0.0
        self.relativeCreated = (ct - _START) * 1000
        self.thread = threading.get_ident()
        self.threadName = threading.current_thread().name
        self.processName = None
        self.process = None


_START: float = logging._startTime  # type: ignore[attr-defined]
_deferred: DeferredHandler | None = None
_warming = [0]  # the thread running a warming pass, if any (its records are dropped)


@contextlib.contextmanager
def warming() -> Iterator[None]:
    """Within it, the calling thread's records are made (that code is warmed too)
    and dropped: a warming pass runs the hot path on canned data, and its fake
    signals, orders and fills are nobody's books (hftd.hotpath.warmup)."""
    _warming[0] = threading.get_ident()
    try:
        yield
    finally:
        _warming[0] = 0


def register_hot_thread() -> None:
    """Defer this thread's records until it calls `flush_deferred` (its idle moments)."""
    if _deferred is not None:
        _deferred.hot.add(threading.get_ident())


def unregister_hot_thread() -> None:
    """Write what this thread left pending; log at once from now on."""
    if _deferred is not None:
        _deferred.hot.discard(threading.get_ident())
        _deferred.flush_pending()


def flush_stale() -> int:
    """For a daemon's control thread, a few times a second (see DeferredHandler)."""
    return _deferred.flush_stale() if _deferred is not None else 0


def flush_deferred(limit: int = 1) -> int:
    """Called by a hot loop when idle: write up to `limit` of its pending records
    (one by default: the loop looks for work again before the next, so a message
    arriving meanwhile waits for one line, not for all of them)."""
    d = _deferred
    return d.flush_pending(limit) if d is not None and d.pending else 0


def setup_logging(component: str, level: str = "info") -> logging.Logger:
    """Configure the root logger for a daemon; returns its logger."""
    global _deferred
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(BriefFormatter(TAGS.get(component, component.upper())))
    _deferred = DeferredHandler(handler)
    # Nothing in the format needs the caller's file/line or the process name:
    # skip finding them on every record (the hot path pays for each).
    # (Also drops stack_info=True output and file/line in every record: unused here.)
    logging._srcfile = None  # documented in logging's source as the way to skip findCaller
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.setLogRecordFactory(HotRecord)
    root = logging.getLogger()
    root.handlers[:] = [_deferred]
    root.setLevel(level.upper())
    return logging.getLogger(f"hftd.{component}")
