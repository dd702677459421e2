"""Latency injection: a seeded delay distribution (pure; the daemon sleeps)."""

from __future__ import annotations

import math
import random

from hftd.config import LatencyConfig


class LatencyModel:
    """Draws delays in seconds from the configured distribution."""

    def __init__(self, cfg: LatencyConfig) -> None:
        self.cfg = cfg
        self._rng = random.Random(cfg.seed)

    @property
    def enabled(self) -> bool:
        return self.cfg.kind != "none"

    def sample(self) -> float:
        """One delay in seconds (never negative)."""
        c = self.cfg
        if c.kind == "none":
            return 0.0
        if c.kind == "fixed":
            us = c.micros
        elif c.kind == "uniform":
            us = self._rng.uniform(c.low_micros, c.high_micros)
        elif c.kind == "normal":
            us = self._rng.gauss(c.micros, c.stdev_micros)
        else:  # lognormal with median `micros`
            us = c.micros * math.exp(self._rng.gauss(0.0, c.sigma))
        return max(us, 0.0) / 1e6
