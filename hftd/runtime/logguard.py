"""Logging what others send: bounded, one line, rate-limited (pure; the caller passes
the clock).

Whoever can reach a listener decides how often it refuses something and what
strings come with the refusal. Every line about rejected input therefore goes
through these three, so a peer cannot flood the log (or the disk under it):

- `LogThrottle`: a few lines at once, then one per interval, each saying how
  many were left out since the last one;
- `clip`: a peer's string cut to a few hundred characters, with its length, and
  on one printable line (control characters escaped: a newline in it cannot
  forge a second log line, an escape sequence cannot reach a terminal);
- `one_line`: an exception as a single line (type, clipped message, and where
  it was raised) instead of a traceback per request.

One throttle per kind of refusal and listener (a port's refused logins, a
control socket's bad requests), so one flood does not hide another kind.
"""

from __future__ import annotations

import logging
import os
import traceback

CLIP = 200  # characters of a peer's string kept in a log line


def clip(value: object, limit: int = CLIP) -> str:
    """`value` as text, cut to `limit` characters, saying how long it was, with every
    character that is not printable escaped (``\\n``, ``\\x00``, ``\\x1b``).

    ``clip("x" * 100_000)`` is ``xxx… (100000 chars)``; short printable text is
    unchanged. Quote with ``%r`` around the result if the quotes matter.
    """
    text = value if isinstance(value, str) else str(value)
    shown = text[:limit]
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else _escape(c) for c in shown)
    if len(text) <= limit and len(shown) <= limit:
        return shown
    return f"{shown[:limit]}… ({len(text)} chars)"


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")


def one_line(exc: BaseException, limit: int = CLIP) -> str:
    """``KeyError: 'x' (at venue.py:123 in snapshot)``: the exception's type, its
    message clipped, and the innermost frame it came from (no multi-line traceback)."""
    text = f"{type(exc).__name__}: {clip(exc, limit)}" if str(exc) else type(exc).__name__
    tb = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else None
    if tb:
        frame = tb[-1]
        text += f" (at {os.path.basename(frame.filename)}:{frame.lineno} in {frame.name})"
    return text.replace("\n", " ").replace("\r", " ")


class LogThrottle:
    """Lines for a repeated event: `burst` at once, then at most one per `interval_s`,
    each saying how many were skipped, so whoever causes the event cannot flood the log.

    A token bucket (as GCRA): a quiet spell of `burst` intervals refills the burst.
    Pure: `now` is any monotonic clock in seconds.
    """

    def __init__(self, interval_s: float = 10.0, burst: int = 3) -> None:
        if interval_s <= 0 or burst < 1:
            raise ValueError("interval and burst must be positive")
        self.interval_s = interval_s
        self.burst = burst
        self._tat: float | None = None  # when the bucket is full again (None: it is)
        self._skipped = 0
        self.suppressed = 0  # lines skipped in all

    def due(self, now: float) -> int | None:
        """None: stay quiet; else log now, saying how many were skipped since the last line."""
        tat = now if self._tat is None or self._tat < now else self._tat
        if tat - now > (self.burst - 1) * self.interval_s:
            self._skipped += 1
            self.suppressed += 1
            return None
        self._tat = tat + self.interval_s
        skipped, self._skipped = self._skipped, 0
        return skipped

    def log(self, logger: logging.Logger, level: int, now: float, msg: str, *args: object) -> bool:
        """Log `msg % args` if due (noting what was skipped); False if it was held back.

        Clip peer strings in `args` (`clip`) before: the throttle bounds the count of
        lines, not their length."""
        skipped = self.due(now)
        if skipped is None:
            return False
        if skipped:
            msg += " (%d more not logged since the last line)"
            args = (*args, skipped)
        logger.log(level, msg, *args)
        return True
