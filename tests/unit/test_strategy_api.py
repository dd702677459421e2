"""The strategy API (issue 14 item 1): kinds reach nothing past it, their config
Structs are a union tagged on `kind` with every error named, plug-ins join the
union, and the context reads and acts as documented (hftd.strategy.api)."""

from __future__ import annotations

import ast
import importlib.metadata
import logging
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import ConfigError, config_diff, convert_config, load_config, parse_config
from hftd.msg.hot import CMD_CANCEL, CMD_NEW, CMD_REPLACE, TIF_DAY, TIF_IOC
from hftd.strategy.api import (
    ACCEPTED,
    BUY,
    FILL,
    IOC,
    REPLACED,
    SELL,
    Context,
    OrderUpdate,
    Strategy,
    StrategyParams,
)
from hftd.strategy.kinds import (
    BUILTIN,
    MarketMakerConfig,
    MeanReversionConfig,
    MomentumConfig,
)
from hftd.strategy.plugins import STRATEGY_ENTRY_POINTS
from hftd.strategy.testing import StrategyTest
from tests.support import DEFAULT_CONFIG, ROOT

KINDS_DIR = ROOT / "hftd" / "strategy" / "kinds"
EXAMPLE = ROOT / "examples" / "hftd-example-strategy" / "src"

# --- kinds see the API only -------------------------------------------------------------

ALLOWED = {"hftd.strategy.api", "hftd.configtypes"}
FORBIDDEN_NAMES = {
    "MarketDataUpdate",
    "ExecutionReport",
    "OrderCommand",
    "L3Book",
    "BookBuilder",
    "OrderManager",
    "WorkingOrder",
    "StrategyContext",
}
FORBIDDEN_ATTRS = {"om", "books", "builder", "engine"}  # the context's and engine's insides


def strategy_modules() -> list[Path]:
    return [*sorted(KINDS_DIR.glob("*.py")), EXAMPLE / "hftd_example" / "__init__.py"]


@pytest.mark.parametrize("path", strategy_modules(), ids=lambda p: p.name)
def test_a_strategy_module_reaches_nothing_past_the_api(path: Path) -> None:
    """No book, no wire message, no order manager: what a kind reads and does goes
    through its Context (the kinds package's __init__ imports its own modules)."""
    tree = ast.parse(path.read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hftd"):
            if node.module not in ALLOWED and not node.module.startswith("hftd.strategy.kinds."):
                bad.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if a.name.startswith("hftd")]
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            bad.append(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS | FORBIDDEN_NAMES:
            bad.append(f".{node.attr}")
    assert bad == [], f"{path.relative_to(ROOT)}: {bad}"


@pytest.mark.parametrize(
    "module", ["hftd.strategy.kinds.market_maker", "hftd.strategy.api", "hftd.config"]
)
def test_the_kinds_import_without_hftd_config_and_it_imports_them(module: str) -> None:
    """hftd.config imports the kinds' config Structs; they must not import it (a
    cycle): each imports first in a fresh interpreter."""
    code = f"import sys, {module}\nprint('hftd.config' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == ("True" if module == "hftd.config" else "False")


# --- config: a union tagged on kind -------------------------------------------------------


def with_instances(*insts: dict[str, Any]) -> dict[str, Any]:
    data = tomllib.loads(DEFAULT_CONFIG.read_text())
    data["strategy"]["instances"] = list(insts)
    return data


def errors_of(*insts: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(with_instances(*insts))
    return err.value.errors


def test_each_instance_is_its_kinds_own_struct() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    mr1, mom1 = cfg.strategy.instances
    assert type(mr1) is MeanReversionConfig and type(mom1) is MomentumConfig
    assert (mr1.kind, mr1.window, mr1.aggression_ticks) == ("mean_reversion", 50, 1)
    assert not hasattr(mom1, "window") and mom1.slow_window == 40
    assert set(BUILTIN) == {"mean_reversion", "momentum", "market_maker", "load"}
    # the record of a session keeps it as builtins and gets the same config back
    assert convert_config(msgspec.to_builtins(cfg)) == cfg
    assert msgspec.to_builtins(mom1)["kind"] == "momentum"


def test_a_field_of_another_kind_is_named_with_the_kinds_own() -> None:
    errors = errors_of({"name": "m", "kind": "momentum", "symbols": ["AAPL"], "window": 20})
    assert errors == [
        "strategy.instances[0].window: unknown field for kind 'momentum' (its own: "
        "fast_window, slow_window, order_timeout_ms; common: name, symbols, enabled, "
        "order_qty, max_position, cooldown_ms)"
    ]


def test_an_unknown_kind_lists_the_known_and_every_problem_is_reported_at_once() -> None:
    errors = errors_of(
        {"name": "x", "kind": "nope", "symbols": ["AAPL"]},
        {"name": "m", "kind": "mean_reversion", "symbols": ["AAPL"], "threshold_sigma": 0},
        {"name": "k", "symbols": ["AAPL"]},
        {"name": "p", "kind": "market_maker", "symbols": ["AAPL"], "params": {"a": 1}},
    )
    assert errors[0].startswith(
        "strategy.instances[0].kind: unknown strategy kind 'nope' "
        "(known: mean_reversion, momentum, market_maker, load"
    )
    assert "strategy.instances[1].threshold_sigma: Expected `float` > 0.0" in errors
    assert "strategy.instances[2].kind: required field is missing" in errors
    assert errors[3].startswith(
        "strategy.instances[3].params: removed: a kind's own parameters are fields of the "
        "instance, beside the common ones (kind 'market_maker' has: half_spread_ticks,"
    )
    assert len(errors) == 4


def test_cross_field_checks_are_each_kinds_and_carry_the_path() -> None:
    errors = errors_of(
        {"name": "m", "kind": "momentum", "symbols": ["AAPL"], "fast_window": 40},
        {"name": "l", "kind": "load", "symbols": []},
    )
    assert errors == [
        "strategy.instances[0].fast_window: must be < slow_window",
        "strategy.instances[1].symbols: at least one symbol",
        "strategy.instances[1].rate_per_s: a load instance needs a rate > 0",
    ]


def test_a_reload_sees_each_changed_parameter_by_its_path() -> None:
    mr = {"name": "m", "kind": "mean_reversion", "symbols": ["AAPL"]}
    old = parse_config(with_instances(mr))
    new = parse_config(with_instances({**mr, "threshold_sigma": 3.0}))
    assert config_diff(old, new) == ["strategy.instances[0].threshold_sigma"]
    other = parse_config(with_instances({**mr, "kind": "momentum"}))
    assert config_diff(old, other) == ["strategy.instances[0]"]


# --- plug-ins join the union --------------------------------------------------------------


class SpreadConfig(StrategyParams, tag="spread", frozen=True):
    width_ticks: int = 3


class Spread(Strategy[SpreadConfig]):
    """Quotes `width_ticks` either side of the mid (a plug-in kind for these tests)."""

    def on_book(self, ctx: Context, symbol: str) -> None:
        bbo = ctx.bbo(symbol)
        if bbo is not None:
            mid, away = (bbo[0] + bbo[2]) // 2, self.config.width_ticks * ctx.tick(symbol)
            ctx.quote(symbol, mid - away, mid + away, self.config.order_qty)


class Mistagged(Strategy[MarketMakerConfig]):
    """Registered as "mistagged", its config tagged "market_maker"."""


def register(monkeypatch: pytest.MonkeyPatch, **kinds: str) -> None:
    eps = [
        importlib.metadata.EntryPoint(name=n, value=v, group=STRATEGY_ENTRY_POINTS)
        for n, v in kinds.items()
    ]

    def entry_points(**kw: Any) -> list[importlib.metadata.EntryPoint]:
        return eps if kw.get("group") == STRATEGY_ENTRY_POINTS else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_a_plugin_kind_is_decoded_as_its_own_config(monkeypatch: pytest.MonkeyPatch) -> None:
    register(monkeypatch, spread=f"{__name__}:Spread")
    cfg = parse_config(
        with_instances(
            {"name": "s", "kind": "spread", "symbols": ["AAPL"], "width_ticks": 5},
            {"name": "m", "kind": "momentum", "symbols": ["AAPL"]},
        )
    )
    spread, mom = cfg.strategy.instances
    assert type(spread) is SpreadConfig and spread.width_ticks == 5 and spread.kind == "spread"
    assert type(mom) is MomentumConfig
    assert convert_config(msgspec.to_builtins(cfg)) == cfg
    errors = errors_of({"name": "s", "kind": "spread", "symbols": ["AAPL"], "width": 5})
    assert errors == [
        "strategy.instances[0].width: unknown field for kind 'spread' (its own: width_ticks; "
        "common: name, symbols, enabled, order_qty, max_position, cooldown_ms)"
    ]


def test_a_plugin_that_cannot_be_used_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(
        monkeypatch,
        mistagged=f"{__name__}:Mistagged",
        notone=f"{__name__}:SpreadConfig",
        missing="no_such_module_here:X",
    )
    errors = errors_of(
        *(
            {"name": n[:8], "kind": n, "symbols": ["AAPL"]}
            for n in ("mistagged", "notone", "missing")
        )
    )
    assert errors[0] == (
        "strategy.instances[0].kind: strategy kind 'mistagged': "
        f"{__name__}:Mistagged (unknown package)'s config MarketMakerConfig is tagged "
        "'market_maker': declare it `class MarketMakerConfig(StrategyParams, tag='mistagged')`"
    )
    assert errors[1].endswith("SpreadConfig (unknown package) is not a Strategy subclass")
    assert errors[2].startswith(
        "strategy.instances[2].kind: strategy kind 'missing': cannot load no_such_module_here:X"
    )


# --- the context ------------------------------------------------------------------------


class ProbeConfig(StrategyParams, tag="probe", frozen=True):
    trade_on_book: bool = False
    trade_on_timer: bool = False


class Probe(Strategy[ProbeConfig]):
    """Records what it is told; buys at the bid when asked to."""

    def __init__(self, config: ProbeConfig) -> None:
        super().__init__(config)
        self.seen: list[tuple[Any, ...]] = []

    def on_start(self, ctx: Context) -> None:
        self.seen.append(("start",))

    def on_book(self, ctx: Context, symbol: str) -> None:
        self.seen.append(("book", symbol, ctx.bbo(symbol), ctx.t1, ctx.now))
        bbo = ctx.bbo(symbol)
        if self.config.trade_on_book and bbo is not None and ctx.can_trade(symbol, BUY):
            ctx.buy(symbol, self.config.order_qty, bbo[0], IOC, "bid=%d", bbo[0])

    def on_trade(self, ctx: Context, symbol: str, price: int, qty: int) -> None:
        self.seen.append(("trade", symbol, price, qty))

    def on_order(self, ctx: Context, update: OrderUpdate) -> None:
        o = update.order
        self.seen.append((update.event, o.cl_id, update.fill_qty, update.replaced, update.done))

    def on_timer(self, ctx: Context) -> None:
        self.seen.append(("timer", ctx.t1, ctx.now))
        if self.config.trade_on_timer:
            ctx.sell("AAPL", self.config.order_qty, 1_010_000)


def probe(**over: Any) -> StrategyTest:
    cfg = ProbeConfig(name="p", symbols=["AAPL", "MSFT"], cooldown_ms=0.0, **over)
    return StrategyTest(Probe, cfg)


def test_it_reads_the_touch_depth_and_trades_through_the_context() -> None:
    t = probe()
    assert isinstance(t.strategy, Probe) and t.strategy.seen == [("start",)]
    t.touch("AAPL", "100.00", "100.02", bid_size=300, ask_size=200)
    ctx = t.ctx
    assert ctx.bbo("AAPL") == (1_000_000, 300, 1_000_200, 200)
    assert ctx.mid("AAPL") == 1_000_100.0 and ctx.bbo("MSFT") is None and ctx.mid("MSFT") is None
    assert ctx.depth("AAPL", BUY) == [(1_000_000, 300)] and ctx.depth("MSFT", SELL) == []
    assert ctx.tick("AAPL") == 100
    t.trade("AAPL", "100.01", 50)
    assert list(ctx.trades("AAPL")) == [(t.now, 1_000_100, 50)] and not ctx.trades("MSFT")
    seen = t.strategy.seen
    assert seen[-2:] == [
        ("trade", "AAPL", 1_000_100, 50),
        ("book", "AAPL", (1_000_000, 300, 1_000_200, 200), seen[-1][3], t.now),
    ]


def test_orders_carry_the_triggers_t1_and_the_signal_line_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = probe(trade_on_book=True, trade_on_timer=True)
    caplog.set_level("INFO", logger="hftd.strategy")
    t.touch("AAPL", "100.00", "100.02")
    [buy] = t.orders()
    assert (buy.side, buy.price, buy.tif, buy.qty) == ("B", 1_000_000, TIF_IOC, 100)
    book_t1 = [s[3] for s in t.strategy.seen if s[0] == "book"][-1]  # type: ignore[attr-defined]
    assert buy.t1 == book_t1 > 0
    t.timer()
    [_, sell] = t.orders()
    assert (sell.side, sell.tif, sell.t1) == ("S", TIF_DAY, 0)  # a timer's: no market trigger
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("signal")]
    assert lines == [f"signal p AAPL BUY 100 @ 100.0000 (bid=1000000) -> order {buy.cl_id}"]
    assert t.ctx.signals == 2  # the logged line, and the silent order that went out


def test_its_orders_changes_come_as_updates_and_move_its_own_position() -> None:
    t = probe(trade_on_timer=True)
    t.timer()
    [sell] = t.orders()
    t.ack()
    t.fill(sell.cl_id, 40, "101.00")
    t.fill(sell.cl_id)
    seen = [s for s in t.strategy.seen if s[0] not in ("timer", "start")]  # type: ignore[attr-defined]
    assert seen == [
        (ACCEPTED, sell.cl_id, 0, 0, False),
        (FILL, sell.cl_id, 40, 0, False),
        (FILL, sell.cl_id, 60, 0, True),
    ]
    assert t.ctx.position("AAPL") == -100 == t.ctx.account_position("AAPL")
    assert t.ctx.working() == [] and t.ctx.order(sell.cl_id) is None


def test_can_trade_keeps_the_cooldown_the_working_order_and_the_cap() -> None:
    t = StrategyTest(Probe, ProbeConfig(name="p", symbols=["AAPL"], max_position=150))
    ctx = t.ctx
    ctx.now = t.now
    assert ctx.can_trade("AAPL", BUY)
    cl = ctx.buy("AAPL", 100, 1_000_000)
    assert cl is not None and not ctx.can_trade("AAPL", SELL)  # working
    t.ack()
    t.fill(cl)
    ctx.now = t.now
    assert not ctx.can_trade("AAPL", SELL)  # cooldown (20 ms)
    ctx.now += 20_000_000
    assert ctx.can_trade("AAPL", SELL) and not ctx.can_trade("AAPL", BUY)  # +100 of 150
    assert ctx.can_trade("AAPL", BUY, qty=50)


def test_quote_keeps_both_sides_with_the_fewest_messages() -> None:
    t = probe()
    ctx = t.ctx
    assert ctx.quote("AAPL", 1_000_000, 1_000_400, 100) == 0
    assert [(c.kind, c.side, c.price, c.tif) for c in t.take()] == [
        (CMD_NEW, "B", 1_000_000, TIF_DAY),
        (CMD_NEW, "S", 1_000_400, TIF_DAY),
    ]
    ctx.quote("AAPL", 1_000_100, 1_000_300, 100)  # no answer yet: wait for it
    assert t.take() == []
    t.ack()
    assert ctx.quote("AAPL", 1_000_100, 1_000_400, 100, requote_ticks=2) == 0  # 1 tick off
    assert t.take() == []
    assert ctx.quote("AAPL", 1_000_200, 1_000_400, 100, requote_ticks=2) == 1  # 2 ticks off
    [replace] = t.take()
    assert (replace.kind, replace.side, replace.price) == (CMD_REPLACE, "B", 1_000_200)
    t.ack()
    replaced = [s for s in t.strategy.seen if s[0] == REPLACED]  # type: ignore[attr-defined]
    assert replaced == [(REPLACED, replace.cl_id, 0, replace.orig_cl_id, False)]
    t.take()
    ctx.quote("AAPL", 1_000_200, 0, 100)  # no ask: cancel it
    [cancel] = t.take()
    assert (cancel.kind, cancel.side) == (CMD_CANCEL, "S")


def test_cancel_all_asks_once_for_each_order_not_already_going() -> None:
    t = probe()
    ctx = t.ctx
    a = ctx.buy("AAPL", 100, 990_000)
    b = ctx.sell("AAPL", 100, 1_010_000)
    c = ctx.buy("MSFT", 100, 990_000)
    assert a and b and c
    t.take()
    assert ctx.cancel(a) and not ctx.cancel(a)  # pending already
    assert ctx.cancel_all("AAPL") == 1 and ctx.cancel_all() == 1
    assert sorted(x.orig_cl_id for x in t.take() if x.kind == CMD_CANCEL) == sorted([a, b, c])
    t.sent.clear()
    t.set_mode("paused")
    assert ctx.buy("AAPL", 100, 990_000, why="held") is None and not t.sent
    assert ctx.om.counts["held"] == 1 and not ctx.allows("AAPL", BUY, 100)


def test_a_disabled_instance_hears_nothing_until_a_reload_enables_it() -> None:
    cfg = ProbeConfig(name="p", symbols=["AAPL"], enabled=False)
    t = StrategyTest(Probe, cfg)
    t.touch("AAPL", "100.00", "100.02")
    t.timer()
    assert t.strategy.seen == [("start",)]  # type: ignore[attr-defined]
    new = msgspec.structs.replace(
        t.cfg.strategy, instances=[ProbeConfig(name="p", symbols=["AAPL"])]
    )
    t.engine.reconfigure(msgspec.structs.replace(t.cfg, strategy=new))
    t.touch("AAPL", "100.01", "100.02")
    assert [s[0] for s in t.strategy.seen] == ["start", "book"]  # type: ignore[attr-defined]
    assert t.strategy.config.enabled  # type: ignore[attr-defined]


def test_a_plugin_kind_trades_through_the_engine_like_a_builtin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = StrategyTest(Spread, SpreadConfig(name="s", symbols=["AAPL"], width_ticks=2))
    t.touch("AAPL", "100.00", "100.10")
    news = t.orders()
    assert [(c.side, c.price) for c in news][-2:] == [("B", 1_000_300), ("S", 1_000_700)]


# --- the example plug-in, tested as docs/strategies.md shows -------------------------------


def test_the_example_breakout_buys_a_break_above_its_range(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    try:
        from hftd_example import Breakout, BreakoutConfig

        t = StrategyTest(Breakout, BreakoutConfig(name="bo1", symbols=["AAPL"], lookback=3))
        caplog.set_level(logging.INFO, logger="hftd.strategy")
        for bid in ("100.00", "100.01", "100.00"):
            t.touch("AAPL", bid, "100.05")
        assert t.orders() == []
        t.touch("AAPL", "100.03", "100.05")  # the mid breaks above the last three
        [order] = t.orders()
        assert (order.side, order.price, order.tif) == (BUY, t.px("100.05"), IOC)
        assert "(breakout up)" in caplog.text
    finally:
        sys.modules.pop("hftd_example", None)  # (the integration test installs its own)
