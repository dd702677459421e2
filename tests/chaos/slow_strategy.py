"""A strategy kind too slow for its market data, for the stalls chaos test.

`slow`: trades nothing. While the file `slow_while` names exists, every book change
of its symbols costs it `sleep_us` microseconds in `on_book` (a strategy doing too
much per update); without the file it returns at once. tests/chaos/test_chaos_stalls.py
installs it as a plug-in (an "hftd.strategies" entry point) beside the trading
instances in the composite hot path, creates the file to make the hot thread slower
than the venue's flow, and removes it to let it catch up. A file and not a reload: a
reload reaches the hot thread only between two reads of the feed, and a slow hot
thread spends seconds on each read.
"""

from __future__ import annotations

import os
import time

from hftd.configtypes import NonNegative
from hftd.strategy.api import Context, Strategy, StrategyParams


class SlowConfig(StrategyParams, tag="slow", frozen=True):
    sleep_us: NonNegative = 0  # per book change, while `slow_while` exists
    slow_while: str = ""  # a file's path ("": never slow)


class Slow(Strategy[SlowConfig]):
    def on_book(self, ctx: Context, symbol: str) -> None:
        c = self.config
        if c.sleep_us and c.slow_while and os.path.exists(c.slow_while):
            time.sleep(c.sleep_us / 1e6)
