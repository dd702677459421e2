"""Log lines about what peers send: rate-limited, clipped, one line each (issue 11, item 8)."""

from __future__ import annotations

import logging

import pytest

from hftd.runtime.logguard import LogThrottle, clip, one_line


def test_throttle_with_a_burst() -> None:
    w = LogThrottle(5.0, burst=3)
    assert [w.due(t) for t in (0.0, 0.1, 0.2)] == [0, 0, 0]  # a few at once
    assert [w.due(t) for t in (0.3, 1.0, 4.9)] == [None, None, None]
    assert w.due(5.0) == 3  # then one per interval, saying how many were not logged
    assert [w.due(t) for t in (6.0, 9.9)] == [None, None]
    assert w.due(10.0) == 2
    assert [w.due(t) for t in (100.0, 100.1, 100.2, 100.3)] == [0, 0, 0, None]  # quiet: refilled
    assert w.suppressed == 6


def test_throttle_one_at_a_time() -> None:
    w = LogThrottle(5.0, burst=1)
    assert w.due(0.0) == 0
    assert [w.due(t) for t in (1.0, 2.0, 4.9)] == [None, None, None]
    assert w.due(5.0) == 3  # the line says how many were not logged
    assert w.due(6.0) is None
    assert w.due(20.0) == 1


def test_throttle_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LogThrottle(0.0)
    with pytest.raises(ValueError):
        LogThrottle(1.0, burst=0)


def test_a_flood_logs_a_few_lines_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.logguard")
    w = LogThrottle(10.0, burst=3)
    with caplog.at_level(logging.WARNING, logger="test.logguard"):
        for i in range(10_000):  # a flood within one second
            w.log(log, logging.WARNING, i / 10_000, "bad request %d", i)
        assert w.log(log, logging.WARNING, 10.0, "bad request %s", "late")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["bad request 0", "bad request 1", "bad request 2"]
    assert lines[3:] == ["bad request late (9997 more not logged since the last line)"]


def test_clip_keeps_a_few_hundred_characters_and_says_how_long() -> None:
    assert clip("HFTD") == "HFTD"
    huge = "u" * 100_000
    text = clip(huge)
    assert text.startswith("u" * 200) and text.endswith("… (100000 chars)")
    assert len(text) < 230
    assert clip(ValueError("x" * 500), 10) == "xxxxxxxxxx… (500 chars)"


def test_clip_escapes_what_is_not_printable() -> None:
    """A control request {"type": "Status\\n<forged line>"} put the peer's newline into
    msgspec's error text and so into the log: a second, forged line (found by the fuzz
    of tests/fuzz). Control characters, escape sequences and NULs are escaped now."""
    forged = "Status\n[2026-01-01 00:00:00.000] [GATE  ] halted by \x1b[31moperator\x00\u2028"
    text = clip(ValueError(f"Invalid value {forged!s}"))
    assert text.isprintable() and "\n" not in text
    assert text == (
        "Invalid value Status\\n[2026-01-01 00:00:00.000] [GATE  ] halted by "
        "\\x1b[31moperator\\x00\\u2028"
    )
    assert clip("\x00" * 100, 10) == "\\x00" * 2 + "\\x… (100 chars)"
    assert clip("é²") == "é²"  # printable text is left alone


def test_one_line_names_the_exception_and_where_without_a_traceback() -> None:
    def lookup(user: str) -> None:
        raise KeyError(user * 1000 + "\nsecond line")

    try:
        lookup("A")
    except KeyError as exc:
        text = one_line(exc)
    assert text.startswith("KeyError: 'AAAA")
    assert "(at test_logguard.py:" in text and "in lookup)" in text
    assert "\n" not in text and len(text) < 300
    assert one_line(RuntimeError()) == "RuntimeError"
