"""Circuit breaker: trips one event past each threshold, latches, re-arms by hand."""

from __future__ import annotations

import pytest

from hftd.risk.breaker import BreakerConfig, CircuitBreaker

S = 1_000_000_000


@pytest.mark.parametrize("kind", ["venue_rejects", "risk_rejects", "cancels"])
def test_trips_one_past_the_limit_within_the_window(kind: str) -> None:
    cfg = BreakerConfig(window_s=1.0, max_venue_rejects=3, max_risk_rejects=3, max_cancels=3)
    b = CircuitBreaker(cfg)
    assert [b.record(kind, t) for t in (0, 1, 2)] == [None, None, None]
    reason = b.record(kind, 3)
    assert reason is not None and "4 " in reason and "(max 3)" in reason
    assert b.tripped
    assert b.record(kind, 4) is None  # latched: reported once


def test_events_outside_the_window_do_not_count() -> None:
    b = CircuitBreaker(BreakerConfig(window_s=1.0, max_cancels=2))
    for t in (0, S // 2, S, S + S // 2, 2 * S, 2 * S + S // 2):
        assert b.record("cancels", t) is None
    assert not b.tripped


def test_stale_market_data_and_rearm() -> None:
    b = CircuitBreaker(BreakerConfig(md_stale_s=2.0))
    assert b.check_md_age(2.0) is None
    assert "stale" in (b.check_md_age(2.1) or "")
    b.rearm()
    assert not b.tripped and b.reason == ""
    assert b.check_md_age(0.1) is None
