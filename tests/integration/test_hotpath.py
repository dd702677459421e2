"""Layout "composite": feed, strategy and gateway in one `hotpath` process that
shows them as the split layout does (own sockets, own Status, own log tags)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hftd.msg.control import Status
from tests.integration.test_trading import STRATEGIES
from tests.support import (
    ask,
    deep_merge,
    dump_toml,
    hftctl,
    hftd_refused,
    make_config,
    start_daemon,
    status,
    status_of_up,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_the_composite_hot_path_trades_and_shows_its_components(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path,
        {
            "hotpath": {"layout": "composite"},
            "strategy": {"instances": STRATEGIES},
            "daemons": {"monitor": {"enabled": False}},
        },
    )
    with start_daemon("up", cfg, ready_timeout=60) as up:
        rows = status_of_up(up)
        assert list(rows) == ["exchange", "feed", "strategy", "gateway"]
        pids = {rows[n]["pid"] for n in ("feed", "strategy", "gateway")}
        assert len(pids) == 1 and rows["exchange"]["pid"] not in pids
        assert {rows[n]["process"] for n in ("feed", "strategy", "gateway")} == {"hotpath"}
        # every component answers on its own socket, as in the split layout
        for name in ("feed", "strategy", "gateway"):
            info = ask(up, name, Status())
            assert info["component"] == name and info["pid"] in pids
            assert info["state"] == "running"
        hot = status(up, "hotpath")
        assert hot["layout"] == "composite" and hot["parts"] == ["feed", "strategy", "gateway"]
        out = hftctl(cfg, "status").stdout
        assert "feed, strategy, gateway: one process, hotpath" in out
        wait_for(lambda: status(up, "gateway")["fills"] >= 3, 120, "fills")
        # the idle hot thread runs warming passes (hftd.hotpath.warmup)
        wait_for(lambda: status(up, "hotpath")["warms"] >= 10, 30, "warming passes")
        # none of its parts can be started again beside it
        out = hftd_refused(cfg, "gateway")
        assert "already running" in out or "is running" in out, out
        # a Reload sent to any part's socket reloads the process's config, and each
        # part answers for its own keys: a risk limit is the gateway's
        limits = deep_merge(tomllib.loads(cfg.read_text()), {"risk": {"max_order_qty": 900}})
        cfg.write_text(dump_toml(limits))
        reply = hftctl(cfg, "reload")
        assert reply.returncode == 0, reply.stdout + reply.stderr
        assert "gateway: applied risk.max_order_qty" in reply.stdout, reply.stdout
        for other in ("feed", "strategy"):
            assert f"{other}: left to its owner risk.max_order_qty" in reply.stdout, reply.stdout
        wait_for(lambda: "reloaded: risk.max_order_qty" in up.log, 10, "the reload applied")
    log = up.log
    for tag in ("[MD    ]", "[STRAT ]", "[GW    ]", "[RISK  ]"):  # by logger in one process
        assert tag in log, tag
    assert "[SYSTEM] ready: hotpath running" in log  # the process's own lines
    assert "warming pass failed" not in log
