"""Client order ids (`cl_id`): one layout, unique for the trading day.

A strategy names each of its orders with a `cl_id`; the gateway keys its
orders by it, sends it to the venue (the OUCH ClOrdID, base 36) and routes
every execution report back by it. One 64-bit layout, drawn here and
nowhere else::

     63      56 55      48 47              32 31                            0
    +----------+----------+------------------+-------------------------------+
    |    0     | instance |  run of the day  |   order number in the run     |
    +----------+----------+------------------+-------------------------------+

- instance: the strategy instance's index in `[strategy] instances`, plus 1
  (1..255): a report finds its strategy by it (`instance_of`).
- run: the strategy's start number within the trading day (1..65,535),
  claimed from the day's `strategy.runs` at every start
  (`hftd.runtime.days.claim_strategy_run`). A restarted strategy never reuses
  an id an earlier run sent, whatever either run's order rate.
- order number: 0..2**32-1 within a run (about 48 hours at 25,000 orders/s);
  the order manager refuses an order past it rather than run into the run
  bits.

The gateway's own orders (a flatten) have instance field 0 and count up
from `GATEWAY_FIRST`. Ids are unique within a trading day; a new day starts
again at run 1. The
largest id, 2**56 - 1, is 11 base-36 characters (OUCH's ClOrdID holds 14).
"""

from __future__ import annotations

from typing import Final

NUMBER_BITS: Final = 32
RUN_BITS: Final = 16
INSTANCE_BITS: Final = 8

RUN_SHIFT: Final = NUMBER_BITS
INSTANCE_SHIFT: Final = NUMBER_BITS + RUN_BITS

MAX_NUMBER: Final = (1 << NUMBER_BITS) - 1
MAX_RUN: Final = (1 << RUN_BITS) - 1
MAX_INSTANCES: Final = (1 << INSTANCE_BITS) - 1  # instance field 1..255: index 0..254
MAX_CL_ID: Final = (1 << (INSTANCE_SHIFT + INSTANCE_BITS)) - 1
# The gateway's own orders (a flatten): instance field 0, so no strategy's
# (`instance_of` is -1 for them), counting up from here.
GATEWAY_FIRST: Final = 1 << 47


class IdError(ValueError):
    """An instance index, run or order number outside the layout."""


def first_id(instance: int, run: int) -> int:
    """The first cl_id of strategy instance `instance` (its index) in run `run`."""
    if not 0 <= instance < MAX_INSTANCES:
        raise IdError(
            f"strategy instance index {instance} is outside 0..{MAX_INSTANCES - 1}: "
            f"at most {MAX_INSTANCES} strategy instances"
        )
    if not 1 <= run <= MAX_RUN:
        raise IdError(
            f"strategy run {run} is outside 1..{MAX_RUN}: "
            "that many strategy starts in one trading day; open a new day (`hftd day new`)"
        )
    return ((instance + 1) << INSTANCE_SHIFT) | (run << RUN_SHIFT)


def last_id(first: int) -> int:
    """The last cl_id of the run that `first` (a `first_id`) starts."""
    return first | MAX_NUMBER


def instance_of(cl_id: int) -> int:
    """The strategy instance index a cl_id belongs to; -1 for none (0, or not ours)."""
    if not 0 < cl_id <= MAX_CL_ID:
        return -1
    return (cl_id >> INSTANCE_SHIFT) - 1


def run_of(cl_id: int) -> int:
    """The run of the day that sent `cl_id`."""
    return (cl_id >> RUN_SHIFT) & MAX_RUN


def number_of(cl_id: int) -> int:
    """The order's number within its run."""
    return cl_id & MAX_NUMBER
