"""Synthetic background participants for one symbol (pure, seeded).

Each event is drawn from a Poisson arrival process: the mid price takes a
Gaussian random-walk step, then the participant either cancels one of its
resting orders, sends a marketable order, or posts a passive limit order
within `depth_levels` ticks of the touch implied by the mid and the spread.
The same seed gives the same sequence of actions, so runs are reproducible;
the generator's state after n steps depends only on the seed, the config of
each step and the `rested()` calls, which is what lets the exchange rebuild it
from its journal by taking the same n steps again.
"""

from __future__ import annotations

import math
import random

import msgspec

from hftd.config import FlowConfig
from hftd.wire.ouch import MARKET_PRICE, TIF_DAY, TIF_IOC


class FlowEnter(msgspec.Struct, frozen=True):
    side: str
    quantity: int
    price: int
    tif: str


class FlowCancel(msgspec.Struct, frozen=True):
    order_ref: int


FlowAction = FlowEnter | FlowCancel


class FlowGenerator:
    """Draws the next background action for one symbol."""

    def __init__(
        self, cfg: FlowConfig, reference_price: int, tick: int, round_lot: int, seed: int
    ) -> None:
        self.cfg = cfg
        self.tick = tick
        self.lot = round_lot
        self.mid_ticks = float(reference_price // tick)
        self.rng = random.Random(seed)
        self.resting: list[int] = []  # our resting order references (may include dead ones)

    def next_delay(self) -> float:
        """Seconds until the next event (exponential; the same draws as `expovariate`).

        Always consumes exactly one random number, whatever the rate, so that
        replaying a journal of steps restores the generator's state even when
        the rate was changed between drawing a delay and taking the step.
        """
        u = self.rng.random()
        rate = self.cfg.arrival_rate_per_s
        return -math.log(1.0 - u) / rate if rate > 0 else 3600.0

    def _size(self) -> int:
        c = self.cfg
        p = 1.0 / c.size_lots_mean
        lots = 1
        while lots < c.size_lots_max and self.rng.random() > p:
            lots += 1
        return lots * self.lot

    def next_action(self) -> FlowAction:
        c, rng = self.cfg, self.rng
        self.mid_ticks = max(self.mid_ticks + rng.gauss(0.0, c.step_ticks), 10.0 * c.spread_ticks)
        u = rng.random()
        if self.resting and (u < c.cancel_ratio or len(self.resting) >= 2 * c.max_resting_per_side):
            ref = self.resting.pop(rng.randrange(len(self.resting)))
            return FlowCancel(ref)
        side = "B" if rng.random() < 0.5 else "S"
        half = c.spread_ticks / 2.0
        if rng.random() < c.marketable_ratio:
            if rng.random() < 0.3:
                return FlowEnter(side, self._size(), MARKET_PRICE, TIF_IOC)
            # A limit through the touch by a few ticks: takes what is there.
            through = rng.randint(0, c.depth_levels)
            ticks = (
                round(self.mid_ticks + half + through)
                if side == "B"
                else round(self.mid_ticks - half - through)
            )
            return FlowEnter(side, self._size(), max(ticks, 1) * self.tick, TIF_IOC)
        level = rng.randrange(c.depth_levels)
        ticks = (
            round(self.mid_ticks - half - level)
            if side == "B"
            else round(self.mid_ticks + half + level)
        )
        return FlowEnter(side, self._size(), max(ticks, 1) * self.tick, TIF_DAY)

    def rested(self, order_ref: int) -> None:
        self.resting.append(order_ref)
