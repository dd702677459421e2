"""Pure cores stay pure: protocol, matching, book, risk, strategy and gateway logic
import no trio, sockets, selectors or subprocesses (the daemons are thin shells)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "hftd.wire.soupbintcp",
    "hftd.wire.itch",
    "hftd.wire.ouch",
    "hftd.exchange.engine",
    "hftd.exchange.venue",
    "hftd.exchange.flow",
    "hftd.exchange.access",
    "hftd.exchange.denormalize",
    "hftd.exchange.paper",
    "hftd.exchange.recorded",
    "hftd.book.l3",
    "hftd.risk.market",
    "hftd.feed.normalize",
    "hftd.risk.engine",
    "hftd.risk.breaker",
    "hftd.strategy.orders",
    "hftd.strategy.api",
    "hftd.strategy.context",
    "hftd.strategy.kinds",
    "hftd.strategy.plugins",
    "hftd.strategy.testing",
    "hftd.strategy.engine",
    "hftd.book.sync",
    "hftd.gateway.positions",
    "hftd.gateway.lifecycle",
    "hftd.gateway.venue",
    "hftd.gateway.core",
    "hftd.gateway.reconcile",
    "hftd.backtest.queue",
    "hftd.backtest.itch_file",
    "hftd.backtest.detect",
    "hftd.backtest.lobster",
    "hftd.backtest.runner",
    "hftd.backtest.report",
    "hftd.strategy.record",
    "hftd.runtime.loglines",
]
FORBIDDEN = ["trio", "socket", "subprocess", "selectors", "asyncio"]  # (logging brings threading)


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "", f"{module} pulls in {out}"
