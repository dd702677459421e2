"""A live session's strategy inputs, recorded by the real strategy daemon, re-run by
`hftd backtest --session` to the same orders field for field (issue 15 item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_trading import STRATEGIES
from tests.support import make_config, start_daemon, status, wait_for

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
