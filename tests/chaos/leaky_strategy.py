"""A strategy kind with a memory leak, for the memory-pressure chaos test.

`leak`: trades nothing; every engine timer tick (about every 10 ms) it keeps
`leak_kib_per_tick` KiB it never lets go, as a strategy that caches without a
bound does. 0 (the default) keeps nothing. tests/chaos/test_chaos_pressure.py
installs it as a plug-in (an "hftd.strategies" entry point) in the strategy's
unit, switches the leak on with a reload, and lets the unit's `MemoryMax=` end it.
"""

from __future__ import annotations

from hftd.configtypes import NonNegative
from hftd.strategy.api import Context, Strategy, StrategyParams


class LeakConfig(StrategyParams, tag="leak", frozen=True):
    leak_kib_per_tick: NonNegative = 0  # KiB kept every timer tick (~100 a second)


class Leak(Strategy[LeakConfig]):
    def __init__(self, config: LeakConfig) -> None:
        super().__init__(config)
        self.kept: list[bytes] = []

    def on_timer(self, ctx: Context) -> None:
        n = self.config.leak_kib_per_tick
        if n:
            # b"\x01" * n writes every page: resident (calloc'd zeros would not be)
            self.kept.append(b"\x01" * (n * 1024))
