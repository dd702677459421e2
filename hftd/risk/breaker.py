"""The circuit breaker (pure): trips on bursts of trouble, re-arms only by hand.

It counts venue rejects, risk rejects and cancels in a sliding window, and
watches market-data freshness. Tripping is latched: the gateway halts new
orders and cancels working ones until an operator re-arms it (`hftctl
resume`). Timestamps are passed in (CLOCK_MONOTONIC ns).
"""

from __future__ import annotations

from collections import deque
from typing import Annotated

import msgspec

Count = Annotated[int, msgspec.Meta(gt=0)]
Secs = Annotated[float, msgspec.Meta(gt=0.0)]


class BreakerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Trip thresholds: more than N events within `window_s` seconds."""

    window_s: Secs = 1.0
    max_venue_rejects: Count = 20
    max_risk_rejects: Count = 500
    max_cancels: Count = 500
    md_stale_s: Secs = 3.0  # market data (incl. feed heartbeats) older than this


# The config field of each kind's limit, as constants: an attribute name built per
# event (f"max_{kind}") is a new string each time, and CPython's type attribute cache
# keeps a reference to the names it looked up (up to its 4096 slots, ~250 KB).
_LIMIT_FIELDS = {
    "venue_rejects": "max_venue_rejects",
    "risk_rejects": "max_risk_rejects",
    "cancels": "max_cancels",
}


class CircuitBreaker:
    def __init__(self, cfg: BreakerConfig) -> None:
        self.cfg = cfg
        self.tripped = False
        self.reason = ""
        self.trips = 0
        self._events: dict[str, deque[int]] = {
            "venue_rejects": deque(),
            "risk_rejects": deque(),
            "cancels": deque(),
        }

    def _limit(self, kind: str) -> int:
        limit: int = getattr(self.cfg, _LIMIT_FIELDS[kind])
        return limit

    def record(self, kind: str, now_ns: int) -> str | None:
        """Count one event; the trip reason if this event tripped the breaker."""
        q = self._events[kind]
        q.append(now_ns)
        horizon = now_ns - int(self.cfg.window_s * 1e9)
        while q and q[0] <= horizon:
            q.popleft()
        limit = self._limit(kind)
        if len(q) > limit:
            return self.trip(
                f"{len(q)} {kind.replace('_', ' ')} in {self.cfg.window_s:g} s (max {limit})"
            )
        return None

    def check_md_age(self, age_s: float) -> str | None:
        if age_s > self.cfg.md_stale_s:
            return self.trip(f"market data stale for {age_s:.1f} s (max {self.cfg.md_stale_s:g})")
        return None

    def trip(self, reason: str) -> str | None:
        """Latch; returns the reason only the first time (so it is acted on once)."""
        if self.tripped:
            return None
        self.tripped = True
        self.reason = reason
        self.trips += 1
        return reason

    def rearm(self) -> None:
        self.tripped = False
        self.reason = ""
        for q in self._events.values():
            q.clear()
