"""Logging in the brief's format: ``[2024-06-15 09:30:00.000] [EXCH  ] message``."""

from __future__ import annotations

import logging
import sys
import time

TAGS = {
    "exchange": "EXCH",
    "feed": "FEED",
    "strategy": "STRAT",
    "gateway": "GATE",
    "monitor": "MON",
    "supervisor": "SUPV",
    "ctl": "CTL",
}


class BriefFormatter(logging.Formatter):
    """Local wall-clock time with milliseconds, then a 6-wide component tag."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = f"[{tag:<6.6}]"

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        ms = int(record.msecs)
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname}: {text}"
        line = f"[{ts}.{ms:03d}] {self.tag} {text}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(component: str, level: str = "info") -> logging.Logger:
    """Configure the root logger for a daemon; returns its logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(BriefFormatter(TAGS.get(component, component.upper())))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return logging.getLogger(f"hftd.{component}")
