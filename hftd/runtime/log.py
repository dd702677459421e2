"""Logging in the brief's format: ``[2024-06-15 09:30:00.000] [EXCH  ] message``.

The brief wants a line per signal, risk decision, order and fill: at the
default level those lines come from the hot loops. Formatting one and writing
it to stderr costs tens of microseconds (bench_tick_to_trade --log-ratio:
tick-to-trade p50 x1.27 at "info" against "warning"), so a hot thread's
records wait in a deque and are written by that same thread when its loop is
idle (`flush_deferred`, a line at a time, looking for work in between),
before it sleeps: no extra thread competing for the GIL, and an order's wire
time no longer pays for its log line. Records keep the time they were made;
other threads' records are written at once, so lines from a hot thread can
appear a little after a control thread's later line.
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

TAGS = {
    "exchange": "EXCH",
    "feed": "FEED",
    "strategy": "STRAT",
    "gateway": "GATE",
    "monitor": "MON",
    "hotpath": "HOT",
    "supervisor": "SUPV",
    "ctl": "CTL",
}


class BriefFormatter(logging.Formatter):
    """Local wall-clock time with milliseconds, then a 6-wide component tag."""

    def __init__(self, tag: str, by_logger: bool = False) -> None:
        super().__init__()
        self.tag = f"[{tag:<6.6}]"
        # A process running several components (hotpath) tags each line with the
        # component whose logger wrote it (hftd.feed -> FEED).
        self.tags = {f"hftd.{c}": f"[{t:<6.6}]" for c, t in TAGS.items()} if by_logger else {}
        # (whole second, its text): lines come many a second, so localtime + strftime
        # run once per second; one tuple, swapped whole (threads may format at once)
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
            self._second = cached
        ts = cached[1]
        ms = int(record.msecs)
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname}: {text}"
        tag = self.tags.get(record.name, self.tag) if self.tags else self.tag
        line = f"[{ts}.{ms:03d}] {tag} {text}"
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
    handler.setFormatter(
        BriefFormatter(TAGS.get(component, component.upper()), by_logger=component == "hotpath")
    )
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
