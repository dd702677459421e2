"""The gateway's order lifecycle as one table (pure, venue-neutral).

An order the gateway sent is in one of five states; what the venue says about
it, and what we ask of the venue, are events. `TRANSITIONS` says where each
(state, event) pair leads, and nothing else sets a state (`step`). A pair the
table does not list leaves the state as it is: the event still does its other
work (a fill still fills), it just does not move the order (a late Accepted of
an order whose cancel is on its way keeps it cancel pending). `DONE` is final:
a done order has left the gateway's books, whatever comes after it about it.

The events are ours, not a venue's: the OUCH adapter (hftd.gateway.ouch_adapter)
maps Order Accepted to ACCEPTED, Order Executed to FILL or FILLED, Cancel
Pending to CANCEL_HELD, and so on; a FIX venue would map ExecType values the
same way. The strategy keeps a table of its own for its view of the same
orders (hftd/strategy/orders.py); the reports keep the two in step.

The table, drawn, is in docs/architecture.md ("The order's lifecycle"); a
unit test keeps the drawing equal to `TRANSITIONS`.
"""

from __future__ import annotations

from typing import Final

PENDING: Final = "pending"  # sent, no acknowledgement yet
LIVE: Final = "live"  # working at the venue
CANCEL_PENDING: Final = "cancel pending"  # our cancel is on its way (or held by the venue)
REPLACE_PENDING: Final = "replace pending"  # an old order whose replacement is on its way
DONE: Final = "done"  # filled, cancelled, rejected or replaced: gone
STATES: Final = (PENDING, LIVE, CANCEL_PENDING, REPLACE_PENDING, DONE)

ACCEPTED: Final = "accepted"  # the venue took the order
FILL: Final = "fill"  # some of it traded; some is left
FILLED: Final = "filled"  # its last shares traded
CANCEL_SENT: Final = "cancel sent"  # we asked the venue to cancel it (or asked again)
CANCEL_HELD: Final = "cancel held"  # the venue has our cancel, cannot act yet (Cancel Pending)
CANCEL_REFUSED: Final = "cancel refused"  # the venue will not cancel it: it works on
CANCEL_REFUSED_UNACKED: Final = "cancel refused before accept"  # ... and it was never accepted
REDUCED: Final = "reduced"  # some of its shares cancelled, the rest works
CANCELED: Final = "canceled"  # its last shares cancelled
REPLACE_SENT: Final = "replace sent"  # (the old order's) a replacement is on its way
REPLACED: Final = "replaced"  # the venue made the replacement: the new order works, the old is gone
REPLACE_REFUSED: Final = "replace refused"  # (the old order's) the replacement was refused
REJECTED: Final = "rejected"  # the venue refused the order
EVENTS: Final = (
    ACCEPTED,
    FILL,
    FILLED,
    CANCEL_SENT,
    CANCEL_HELD,
    CANCEL_REFUSED,
    CANCEL_REFUSED_UNACKED,
    REDUCED,
    CANCELED,
    REPLACE_SENT,
    REPLACED,
    REPLACE_REFUSED,
    REJECTED,
)

# Every pair that moves an order; any other pair leaves it where it is.
TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    (PENDING, ACCEPTED): LIVE,
    (PENDING, FILLED): DONE,
    (PENDING, CANCEL_SENT): CANCEL_PENDING,
    (PENDING, CANCEL_HELD): CANCEL_PENDING,
    (PENDING, CANCELED): DONE,
    (PENDING, REPLACED): LIVE,  # a replacement (sent as a new order) made live
    (PENDING, REJECTED): DONE,
    (LIVE, FILLED): DONE,
    (LIVE, CANCEL_SENT): CANCEL_PENDING,
    (LIVE, CANCEL_HELD): CANCEL_PENDING,
    (LIVE, CANCELED): DONE,
    (LIVE, REPLACE_SENT): REPLACE_PENDING,
    (CANCEL_PENDING, FILLED): DONE,
    (CANCEL_PENDING, CANCEL_REFUSED): LIVE,
    (CANCEL_PENDING, CANCEL_REFUSED_UNACKED): PENDING,
    (CANCEL_PENDING, REDUCED): LIVE,  # the venue cancelled part: the rest works, uncancelled
    (CANCEL_PENDING, CANCELED): DONE,
    (CANCEL_PENDING, REJECTED): DONE,  # never accepted, its cancel crossed the rejection
    (REPLACE_PENDING, FILLED): DONE,
    (REPLACE_PENDING, CANCELED): DONE,
    (REPLACE_PENDING, REPLACED): DONE,
    (REPLACE_PENDING, REPLACE_REFUSED): LIVE,
}


def step(state: str, event: str) -> str:
    """The state after `event` (the same state when the table has no such pair)."""
    return TRANSITIONS.get((state, event), state)
