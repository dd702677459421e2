"""What a listener refused or cut short: one record per listening socket.

Every listener bounds connections, request size and time (docs/security.md
"Every listener"); these counters say how often it had to, in the daemon's
`Status` (``detail["listeners"][<name>]``), for the monitor's
`listener_limits` alert and the console. Counting only: the listener decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ListenerStats:
    open: int = 0  # connections open now
    accepted: int = 0  # connections served (not refused) since the start
    refused: int = 0  # closed at once: max_connections were open (and none idle to close)
    evicted: int = 0  # idle connections closed to make room for a new one
    timeouts: int = 0  # a request not received, or an answer not taken, in time
    oversized: int = 0  # a request over the size limit
    bad_requests: int = 0  # not valid for the protocol: answered with an error
    errors: int = 0  # our bug met while answering: that connection ended, not the daemon
    idle_closed: int = 0  # silent past the idle timeout between requests (routine)

    @property
    def limits_hit(self) -> int:
        """Times a limit (connections, size, time) had to act: what the alert counts."""
        return self.refused + self.evicted + self.timeouts + self.oversized

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "limits_hit": self.limits_hit}
