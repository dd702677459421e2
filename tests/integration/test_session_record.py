"""A live session's strategy inputs, recorded by the real strategy daemon, re-run by
`hftd backtest --session` to the same orders field for field (issue 15 item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hftd.backtest.itch_file import ItchFile
from hftd.backtest.latency import load_hops
from hftd.backtest.runner import Backtest
from hftd.runtime.hdr import LOW
from tests.integration.test_trading import STRATEGIES
from tests.support import hftctl, make_config, start_daemon, status, wait_for
from tests.unit.test_backtest_runner import SAMPLE, aapl_config

pytestmark = pytest.mark.integration


def test_a_recorded_live_session_replays_to_the_same_orders(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "exchange": {"flow": {"arrival_rate_per_s": 150.0}},
            "strategy": {"instances": STRATEGIES, "record_inputs": True},
            "gateway": {"strategy_timeout_s": 0.5},
        },
    )
    with (
        start_daemon("exchange", cfg),
        start_daemon("feed", cfg),
        start_daemon("gateway", cfg),
        start_daemon("strategy", cfg) as st,
    ):

        def traded() -> bool:
            s = status(st, "strategy")["strategies"]
            return all(x["fills"] >= 2 for x in s.values())

        wait_for(traded, 60, "every instance filled twice")
        sent = sum(x["sent"] for x in status(st, "strategy")["strategies"].values())
        # the live hops, saved for a backtest's latency model (backtest.latency_histograms)
        saved = tmp_path / "hops.json"
        lat = hftctl(cfg, "latency", "--save", str(saved))
        assert lat.returncode == 0, lat.stderr
        assert "t1_t4" in lat.stdout and saved.exists()
        assert st.stop() == 0  # a clean stop writes what is left of the record
    records = list((tmp_path / "journal").glob("*/strategy-inputs.*.rec"))
    assert len(records) == 1, records
    done = subprocess.run(
        [sys.executable, "-m", "hftd.cli", "backtest", "--session", str(records[0].parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.splitlines()[0]
    reproduced = int(line.split(" orders")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert reproduced >= sent > 0, line

    # a backtest with the live system's measured delays: every fill comes at least the
    # smallest measured T1->T4 after its order
    hops = load_hops(json.loads(saved.read_text()))
    bt = Backtest(aapl_config(), hops=hops)
    bt.run(ItchFile(SAMPLE, ["AAPL"]))
    floor = LOW[hops["t1_t4"].indexes[0]]
    sent_at = {o.cl_id: o.t for o in bt.orders if o.action != "cancel"}
    assert bt.fills
    assert all(f.t - sent_at[f.cl_id] >= floor for f in bt.fills if f.cl_id in sent_at)
