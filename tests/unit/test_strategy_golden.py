"""The built-in strategies' decisions, pinned (issue 14 item 1: the strategy API
port must not change one order).

Two goldens, recorded with the strategies as they were before the port:
- the engine's: every built-in kind, two parameter sets each, over the NASDAQ
  ITCH sample through `StrategyEngine` and a scripted venue (accepts, fills,
  partial fills, rejects, refused replaces, resting fills later, the gateway's
  mode changing): every command the engine sent (T1 of new orders and replaces,
  the ones the gateway measures), every line the strategies logged and each
  instance's counts and own position;
- the backtest's: config/backtest.toml's strategies on AAPL through
  `hftd.backtest.runner.Backtest` (as tests/unit/test_backtest_runner.py), its
  orders.csv, fills.csv and summary.json.

A digest differs: the strategies decide otherwise than they did. If that is
meant (or the backtest's queue or latency model changed), look at what changed,
then record anew: `python tests/unit/test_strategy_golden.py`.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from hftd.backtest.report import summarize, write_results
from hftd.config import HftdConfig, parse_config
from hftd.feed.normalize import normalize
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_NEW,
    CMD_REPLACE,
    EX_ACCEPTED,
    EX_CANCELED,
    EX_FILL,
    EX_HEARTBEAT,
    EX_REJECTED,
    EX_REPLACED,
    MD_SEQUENCE,
    TIF_IOC,
    ExecutionReport,
    MarketDataUpdate,
    OrderCommand,
)
from hftd.strategy.engine import StrategyEngine
from hftd.wire import itch
from tests.support import DEFAULT_CONFIG, ITCH_FILE

GOLDEN_ENGINE = "9abd4557f293b4a1"
GOLDEN_BACKTEST = "2088bb4ed1e1654d"

INSTANCES: list[dict[str, Any]] = [
    {"name": "mr_a", "kind": "mean_reversion", "window": 50, "threshold_sigma": 2.0,
     "cooldown_ms": 20.0, "aggression_ticks": 1},
    {"name": "mr_b", "kind": "mean_reversion", "window": 10, "threshold_sigma": 1.0,
     "cooldown_ms": 0.0, "order_qty": 50, "max_position": 200},
    {"name": "mom_a", "kind": "momentum", "fast_window": 10, "slow_window": 40,
     "order_timeout_ms": 500.0},
    {"name": "mom_b", "kind": "momentum", "fast_window": 3, "slow_window": 8,
     "order_timeout_ms": 5.0, "cooldown_ms": 0.0, "max_position": 300},
    {"name": "mm_a", "kind": "market_maker"},
    {"name": "mm_b", "kind": "market_maker", "half_spread_ticks": 1, "skew_ticks": 4.0,
     "requote_ticks": 2, "pull_ticks": 3, "pull_window_ms": 50.0, "stale_ms": 20.0,
     "cooldown_ms": 5.0, "max_position": 300},
    {"name": "load", "kind": "load", "rate_per_s": 5.0, "offset_ticks": 3,
     "max_working": 3, "max_position": 300},
]  # fmt: skip
TIMER_NS = 10_000_000
MODES = {3000: "reducing", 3600: "halted", 4200: "paused", 4600: "active"}


def engine_config() -> HftdConfig:
    data = tomllib.loads(DEFAULT_CONFIG.read_text())
    data["strategy"]["instances"] = [{**i, "symbols": ["AAPL"]} for i in INSTANCES]
    return parse_config(data, "golden")


class Venue:
    """A scripted venue: deterministic replies by order id, resting orders kept
    (a later `sweep` fills the oldest), the account's position in every report."""

    def __init__(self) -> None:
        self.live: dict[int, OrderCommand] = {}  # cl_id -> the order (qty: its leaves)
        self.position = 0

    def _r(
        self, kind: int, c: OrderCommand, qty: int, price: int, leaves: int, orig: int = 0
    ) -> ExecutionReport:
        return ExecutionReport(
            kind, c.cl_id, orig, c.symbol, c.side, qty, price, leaves, self.position, "", 0
        )

    def _fill(self, c: OrderCommand, qty: int) -> ExecutionReport:
        self.position += qty if c.side == "B" else -qty
        leaves = c.qty - qty
        if leaves:
            self.live[c.cl_id] = msgspec.structs.replace(c, qty=leaves)
        else:
            self.live.pop(c.cl_id, None)
        return self._r(EX_FILL, c, qty, c.price, leaves)

    def on_command(self, c: OrderCommand) -> list[ExecutionReport]:
        if c.kind == CMD_NEW:
            if c.cl_id % 11 == 0:
                return [self._r(EX_REJECTED, c, 0, 0, 0)]
            out = [self._r(EX_ACCEPTED, c, c.qty, c.price, c.qty)]
            self.live[c.cl_id] = c
            if c.cl_id % 3 == 0:
                out.append(self._fill(c, c.qty))
            elif c.cl_id % 5 == 1 and c.qty > 1:
                out.append(self._fill(c, c.qty // 2))
            if c.tif == TIF_IOC and c.cl_id in self.live:
                rest = self.live.pop(c.cl_id)
                out.append(self._r(EX_CANCELED, rest, rest.qty, c.price, 0))
            return out
        if c.kind == CMD_CANCEL:
            o = self.live.pop(c.orig_cl_id, None)
            if o is None:
                return []
            return [self._r(EX_CANCELED, o, o.qty, o.price, 0)]
        if c.kind == CMD_REPLACE:
            o = self.live.get(c.orig_cl_id)
            if o is None:
                return []
            if c.cl_id % 7 == 0:  # refused: the order lives on
                return [self._r(EX_REJECTED, c, 0, 0, 0, c.orig_cl_id)]
            del self.live[c.orig_cl_id]
            self.live[c.cl_id] = c
            return [self._r(EX_REPLACED, c, c.qty, c.price, c.qty, c.orig_cl_id)]
        return []

    def sweep(self) -> list[ExecutionReport]:
        """The oldest resting order trades in full."""
        if not self.live:
            return []
        first = next(iter(self.live.values()))
        return [self._fill(first, first.qty)]


def engine_session() -> bytes:
    """Everything the strategies did in the scripted session, encoded."""
    now = [0]
    sent: list[OrderCommand] = []

    def send(c: OrderCommand) -> bool:
        sent.append(c)
        return True

    eng = StrategyEngine(engine_config(), send, lambda: now[0])
    venue = Venue()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep(logging.INFO)
    log = logging.getLogger("hftd.strategy")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    done = 0

    def pump() -> None:
        nonlocal done
        while done < len(sent):
            c = sent[done]
            done += 1
            for r in venue.on_command(c):
                eng.on_report(r)

    next_timer = 0
    try:
        data = ITCH_FILE.read_bytes()
        for i, raw in enumerate(itch.iter_binary_file(data)):
            u: MarketDataUpdate = normalize(itch.decode(raw), i + 1, 1_000_000 + i)
            if u.kind == MD_SEQUENCE:
                continue
            if not next_timer:
                next_timer = u.exch_ts
            while next_timer <= u.exch_ts:
                now[0] = next_timer
                eng.on_timer()
                pump()
                next_timer += TIMER_NS
                if u.exch_ts - next_timer > 100 * TIMER_NS:  # idle: the last tick only
                    next_timer += (u.exch_ts - next_timer) // TIMER_NS * TIMER_NS
            now[0] = u.exch_ts
            if i in MODES:
                eng.on_report(ExecutionReport(EX_HEARTBEAT, 0, 0, "", "", 0, 0, 0, 0, MODES[i], 0))
            eng.on_update(u)
            pump()
            if i % 97 == 0:
                for r in venue.sweep():
                    eng.on_report(r)
                pump()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    commands = [
        [c.kind, c.cl_id, c.symbol, c.side, c.qty, c.price, c.tif, c.orig_cl_id, c.strategy,
         0 if c.kind == CMD_CANCEL else c.t1, c.t2]
        for c in sent
    ]  # fmt: skip
    figures = [
        [c.name, c.signals, c.om.counts, c.om.own_position("AAPL"), len(c.om.orders)]
        for c in _instances(eng)
    ]
    return msgspec.msgpack.encode([commands, lines, figures])


def _instances(eng: StrategyEngine) -> list[Any]:
    """Each instance's figures holder: the engine's list of them (named `contexts`
    since the strategy API, `strategies` before)."""
    return list(eng.contexts)


def backtest_outputs() -> dict[str, bytes]:
    from tests.unit.test_backtest_runner import aapl_config, run

    bt = run(aapl_config())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_results(bt, summarize(bt, ["sample"]), out)
        return {n: (out / n).read_bytes() for n in ("orders.csv", "fills.csv", "summary.json")}


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:16]


def test_the_engine_session_decides_as_before() -> None:
    raw = engine_session()
    commands, lines, _ = msgspec.msgpack.decode(raw)
    news = [c for c in commands if c[0] == CMD_NEW]
    assert {c[8] for c in news} == {i["name"] for i in INSTANCES}  # every instance traded
    assert [c for c in commands if c[0] == CMD_REPLACE] and [
        c for c in commands if c[0] == CMD_CANCEL
    ]
    assert any("quotes pulled" in ln for ln in lines) and any(": cancel" in ln for ln in lines)
    assert digest(raw) == GOLDEN_ENGINE


def test_the_backtest_writes_the_same_orders_and_fills_as_before() -> None:
    out = backtest_outputs()
    assert out["orders.csv"].count(b"\n") > 100
    assert digest(out["orders.csv"], out["fills.csv"], out["summary.json"]) == GOLDEN_BACKTEST


if __name__ == "__main__":
    raw = engine_session()
    commands, lines, figures = msgspec.msgpack.decode(raw)
    print(f"engine: {len(commands)} commands, {len(lines)} lines: {digest(raw)}")
    for f in figures:
        print("  ", f)
    out = backtest_outputs()
    n_orders, n_fills = (out[n].count(b"\n") - 1 for n in ("orders.csv", "fills.csv"))
    d = digest(out["orders.csv"], out["fills.csv"], out["summary.json"])
    print(f"backtest: {n_orders} orders, {n_fills} fills: {d}")
