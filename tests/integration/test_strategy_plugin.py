"""A strategy kind from outside the package (issue 14, items 1 and 2): the example
package under examples/ is installed (pip, into a directory of its own, offline),
its entry point names the kind, a config uses it with its own fields (checked
against its config Struct), and it trades."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hftd.config import ConfigError, load_config, strategy_kinds
from tests.support import ROOT, make_config, start_daemon, status, wait_for

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "hftd-example-strategy"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example installed into tmp/site, on the path of this process and its children."""
    site, src = tmp_path / "site", tmp_path / "src"
    shutil.copytree(EXAMPLE, src)  # a build writes beside its sources: not in the checkout
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


def test_without_the_package_the_kind_is_unknown_and_the_error_lists_the_known(
    tmp_path: Path,
) -> None:
    inst = {"name": "bo1", "kind": "breakout", "symbols": ["AAPL"]}
    cfg = make_config(tmp_path, {"strategy": {"instances": [inst]}})
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "unknown strategy kind 'breakout'" in str(err.value)
    assert "mean_reversion, momentum, market_maker, load" in str(err.value)


def test_the_plugin_kinds_fields_are_checked_against_its_config(
    tmp_path: Path, installed: Path
) -> None:
    inst = {"name": "bo1", "kind": "breakout", "symbols": ["AAPL"], "lookback": 1, "window": 5}
    cfg = make_config(tmp_path, {"strategy": {"instances": [inst]}})
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = str(err.value)
    assert "strategy.instances[0].lookback: Expected `int` >= 2" in text
    assert (
        "strategy.instances[0].window: unknown field for kind 'breakout' (its own: lookback;"
        in (text)
    )
    fixed = {k: v for k, v in inst.items() if k != "window"} | {"lookback": 5}
    [bo1] = load_config(
        make_config(tmp_path, {"strategy": {"instances": [fixed]}})
    ).strategy.instances
    assert (bo1.kind, bo1.lookback) == ("breakout", 5)  # type: ignore[attr-defined]


def test_the_example_package_trades_through_its_entry_point(
    tmp_path: Path, installed: Path
) -> None:
    assert "breakout" in strategy_kinds()
    inst = {
        "name": "bo1",
        "kind": "breakout",
        "symbols": ["AAPL", "MSFT"],
        "order_qty": 100,
        "max_position": 500,
        "cooldown_ms": 50.0,
        "lookback": 10,
    }
    cfg = make_config(
        tmp_path,
        {
            "exchange": {"flow": {"arrival_rate_per_s": 150.0}},
            "strategy": {"instances": [inst]},
            "system": {"log_level": "info"},
        },
    )
    with (
        start_daemon("exchange", cfg),
        start_daemon("feed", cfg),
        start_daemon("gateway", cfg),
        start_daemon("strategy", cfg) as st,
    ):
        wait_for(
            lambda: status(st, "strategy")["strategies"]["bo1"]["fills"] >= 1,
            120,
            "a fill of the plug-in strategy",
        )
        assert "signal bo1" in st.log and "(breakout " in st.log
