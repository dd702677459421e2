"""A backtest's results streamed as the run goes (issue 15: flat memory): the same
files as results kept in memory, to the byte, with nothing per row held."""

from __future__ import annotations

import itertools
from pathlib import Path

from hftd.backtest.itch_file import ItchFile
from hftd.backtest.report import summarize, write_results
from hftd.backtest.results import CHART_POINTS, MARKS, Fill, Results, Sample
from hftd.backtest.runner import Backtest, updates_of
from tests.unit.test_backtest_runner import SAMPLE, aapl_config, run


def test_streamed_results_write_the_same_files_as_kept_ones(tmp_path: Path) -> None:
    cfg = aapl_config()
    kept = run(cfg)
    write_results(kept, summarize(kept, ["sample"]), tmp_path / "kept")

    out = tmp_path / "streamed"
    names = [i.name for i in cfg.strategy.instances]
    bt = Backtest(cfg, results=Results(names, out, keep=False))
    bt.run(updates_of([ItchFile(SAMPLE, ["AAPL"])]))
    # while running (before write_results) the rows go to .part files only
    assert sorted(p.name for p in out.iterdir()) == [
        "equity.csv.part",
        "fills.csv.part",
        "orders.csv.part",
    ]
    assert bt.fills == [] and bt.orders == [] and bt.samples == []  # nothing held
    r = bt.results
    assert r.fill_count == len(kept.fills) > 0 and r.order_count == len(kept.orders)
    write_results(bt, summarize(bt, ["sample"]), out)
    names_written = sorted(p.name for p in out.iterdir())
    assert names_written == sorted(p.name for p in (tmp_path / "kept").iterdir())
    for name in names_written:
        assert (out / name).read_bytes() == (tmp_path / "kept" / name).read_bytes(), name


def _sample(t: int, net: int) -> Sample:
    return Sample(t, {"a": net}, {"a": 0}, {"a": {"X": t % 7}}, {"X": 1_000_000 + t})


def test_the_charts_keep_a_bounded_thinning_and_the_last_point() -> None:
    r = Results(["a"], keep=False)
    n = 10 * CHART_POINTS + 3
    for i in range(n):
        r.sample(_sample(i, i))
    pts = r.chart_samples()
    assert CHART_POINTS <= len(pts) <= 2 * CHART_POINTS + 1
    assert pts[0].t == 0 and pts[-1].t == n - 1
    steps = {b.t - a.t for a, b in itertools.pairwise(pts[:-1])}
    assert len(steps) == 1  # evenly spaced (every stride-th sample)
    # the figures still cover every sample
    curve = r.curves["a"]
    assert curve.samples == n and curve.abs_position == sum(i % 7 for i in range(n))
    assert curve.worst == 0.0 and curve.last == (n - 1) / 1e4


def test_fill_marks_are_bounded_but_the_axes_cover_every_fill() -> None:
    r = Results(["a"], keep=False)
    for i in range(MARKS + 500):
        r.fill(Fill(i, "a", i, "X", "B" if i % 2 else "S", 1, 1000 + i, "A", 0))
    assert len(r.marks["X"]) == MARKS
    assert r.extent["X"] == [0, MARKS + 499, 1000, 1000 + MARKS + 499]
    s = r.symbols[("a", "X")]
    assert s.fills == MARKS + 500 and s.shares == MARKS + 500 and s.peak == 1
