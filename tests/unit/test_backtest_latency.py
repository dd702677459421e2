"""The backtest's latency from the live system's measured hops (issue 15 item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hftd.backtest.latency import load_hops, measured
from hftd.runtime.hdr import SparseHistogram


def hops(t1_t4: list[int], t4_t5: list[int]) -> dict[str, SparseHistogram]:
    return {
        "t1_t4": SparseHistogram.from_values(t1_t4),
        "t4_t5": SparseHistogram.from_values(t4_t5),
    }


def test_draws_follow_the_measured_distribution_and_repeat_with_the_seed() -> None:
    h = hops([100_000] * 90 + [1_000_000] * 10, [40_000] * 100)
    entry, response = measured(h, seed=3)
    draws = [entry() for _ in range(5000)]
    slow = sum(1 for d in draws if d > 500_000) / len(draws)
    assert 0.07 < slow < 0.13  # one order in ten took the slow path live
    assert all(99_000 <= d - 20_200 <= 1_010_000 for d in draws)  # within 1% + half the wire
    assert 19_700 <= response() <= 20_300
    again, _ = measured(h, seed=3)
    assert [again() for _ in range(5000)] == draws


def test_the_saved_file_loads_and_bad_ones_are_named(tmp_path: Path) -> None:
    saved = {hop: h.to_wire() for hop, h in hops([50_000], [30_000]).items()}
    text = json.dumps(saved)  # as `hftctl latency --save` writes it: keys become text
    loaded = load_hops(json.loads(text))
    assert loaded["t1_t4"].total == 1
    with pytest.raises(ValueError, match="t1_t4"):
        load_hops({"t1_t4": {"x": 1}})
    with pytest.raises(ValueError, match="no t4_t5"):
        measured({"t1_t4": loaded["t1_t4"]}, seed=1)
