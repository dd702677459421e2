"""bench/bench_split_floor.py writes a config the daemons accept (split, pinned, waits)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hftd.config import load_config

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_split_floor", BENCH / "bench_split_floor.py"
        )
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


def test_pipeline_config_is_split_pinned_and_spinning(tmp_path: Path) -> None:
    bench = _bench()
    args = argparse.Namespace(
        pipeline_rate=250.0,
        with_monitor=True,
        wait="spin-then-sleep",
        spin_us=15.0,
        rt_priority=0,
        set=["system.log_level=info", 'hotpath.wait="sleep"'],
    )
    cfg = load_config(bench.pipeline_config(tmp_path, args, bench.pinning("spread")))
    assert cfg.hotpath.layout == "split"
    assert cfg.rings.strategy_wait == cfg.rings.gateway_wait == "spin-then-sleep"
    assert cfg.rings.spin_us == 15.0
    assert cfg.system.log_level == "info"
    assert cfg.hotpath.wait == "sleep"
    cpus = {n: cfg.daemons[n].cpus for n in ("exchange", "feed", "strategy", "gateway", "monitor")}
    if len(bench.ALL_CPUS) >= 2:
        a, b = bench.ALL_CPUS[:2]
        assert cpus == {
            "exchange": [a],
            "feed": [b],
            "strategy": [a],
            "gateway": [b],
            "monitor": [a],
        }
    assert [s.name for s in cfg.strategy.instances] == ["mr1", "mom1"]
