"""The backtest loop (issue 15): the live strategy, gateway-core (risk, positions,
lifecycle) and market-view code on recorded data, deterministic to the byte."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.backtest.itch_file import ItchFile
from hftd.backtest.report import summarize, summary_text, write_results
from hftd.backtest.runner import Backtest, updates_of
from hftd.config import HftdConfig, parse_config
from hftd.gateway.core import GatewayCore
from hftd.msg.hot import MD_ADD, MD_DIRECTORY, MD_EXECUTE, TIF_DAY, MarketDataUpdate
from hftd.risk.market import MarketView
from hftd.strategy.engine import StrategyEngine

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
CONFIG = ROOT / "config" / "backtest.toml"


def aapl_config(**backtest: Any) -> HftdConfig:
    """config/backtest.toml on AAPL (the NASDAQ sample's symbol)."""
    data = tomllib.loads(CONFIG.read_text())
    data["symbols"][0]["symbol"] = "AAPL"
    for inst in data["strategy"]["instances"]:
        inst["symbols"] = ["AAPL"]
    data["backtest"].update(backtest)
    return parse_config(data, "test")


def run(cfg: HftdConfig) -> Backtest:
    bt = Backtest(cfg)
    bt.run(updates_of([ItchFile(SAMPLE, ["AAPL"])]))
    return bt


def test_the_live_objects_run_it() -> None:
    """No second implementation: the loop drives the daemons' own classes."""
    bt = Backtest(aapl_config())
    assert type(bt.engine) is StrategyEngine
    assert type(bt.core) is GatewayCore
    assert type(bt.market) is MarketView


def test_every_strategy_trades_and_two_runs_write_identical_files(tmp_path: Path) -> None:
    cfg = aapl_config()
    outs = []
    for i in range(2):
        bt = run(cfg)
        s = summarize(bt, ["sample"])
        out = tmp_path / f"run{i}"
        write_results(bt, s, out)
        outs.append(out)
    assert bt.events == 10_000
    assert {st.strategy: st.fills > 0 for st in s.strategies} == {
        "mr1": True,
        "mom1": True,
        "mm1": True,
    }
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == [
        "equity.csv",
        "fills.csv",
        "orders.csv",
        "report.html",
        "summary.json",
        "summary.txt",
    ]
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    assert "<svg" in (outs[0] / "report.html").read_text()
    assert "mr1" in summary_text(s)


def test_positions_and_fills_agree_between_strategies_and_gateway() -> None:
    """The gateway core (the account) and each strategy's own book saw the same
    fills: their positions and counts add up."""
    bt = run(aapl_config())
    own = sum(s.om.own_position("AAPL") for s in bt.engine.contexts)
    assert own == bt.core.book.qty("AAPL")
    assert len(bt.fills) == bt.core.counters["fills"] > 0
    traded = sum(f.qty if f.side == "B" else -f.qty for f in bt.fills)
    assert traded == own


def test_the_live_risk_checks_refuse_what_they_refuse_live() -> None:
    cfg = aapl_config()
    tight = msgspec.structs.replace(cfg.risk, max_order_qty=50)  # every order is 100
    bt = run(msgspec.structs.replace(cfg, risk=tight))
    news = [o for o in bt.orders if o.action == "new"]
    assert news and not bt.fills
    assert sum(bt.rejects.values()) == len(news) == bt.core.counters["risk_rejects"]


def test_latency_delays_every_fill_by_the_round_trip() -> None:
    """Entry 1 ms + response 2 ms: no fill reaches a strategy sooner than 3 ms after
    the order that caused it was sent."""
    ms = {"kind": "fixed", "micros": 1000.0}
    bt = run(aapl_config(entry_latency=ms, response_latency={**ms, "micros": 2000.0}))
    sent = {o.cl_id: o.t for o in bt.orders if o.action == "new"}
    replaced = {o.cl_id: o.t for o in bt.orders if o.action == "replace"}
    assert bt.fills
    for f in bt.fills:
        at = sent.get(f.cl_id, replaced.get(f.cl_id))
        assert at is not None and f.t - at >= 3_000_000, f


def _md(seq: int, kind: int, ts: int, **kw: Any) -> MarketDataUpdate:
    f = {"locate": 1, "symbol": "", "order_ref": 0, "side": "", "qty": 0, "price": 0, "new_ref": 0}
    f.update(kw)
    return MarketDataUpdate(
        seq,
        kind,
        f["locate"],
        f["symbol"],
        f["order_ref"],
        f["side"],
        f["qty"],
        f["price"],
        f["new_ref"],
        ts,
        ts,
    )


def test_a_resting_quote_fills_when_an_order_behind_it_trades() -> None:
    """A hand-built book: the market maker's bid rests first at its price; a real
    order joins behind it; that order's execution means the aggressor went through
    our bid first: we fill (as the resting side), the real stream unchanged."""
    cfg = aapl_config()
    mm = next(i for i in cfg.strategy.instances if i.kind == "market_maker")
    cfg = msgspec.structs.replace(
        cfg, strategy=msgspec.structs.replace(cfg.strategy, instances=[mm])
    )
    bt = Backtest(cfg)
    s = 1_000_000_000
    seen: dict[str, Any] = {}

    def stream() -> Iterator[MarketDataUpdate]:
        yield _md(1, MD_DIRECTORY, s, symbol="AAPL")
        yield _md(2, MD_ADD, s, symbol="AAPL", order_ref=1, side="B", qty=100, price=1_000_000)
        yield _md(3, MD_ADD, s, symbol="AAPL", order_ref=2, side="S", qty=100, price=1_000_300)
        # microprice 100.015, two ticks either side: a bid at 99.99, an ask at 100.04
        yield _md(
            4, MD_ADD, s + 1_000_000, symbol="AAPL", order_ref=3, side="B", qty=100, price=999_900
        )
        bids = [(r, q) for r, q in bt.venue.open_orders().items() if q[1] == "B"]
        seen["bids"] = bids
        seen["ahead"] = [bt.venue.queue_ahead(r) for r, _q in bids]
        yield _md(5, MD_EXECUTE, s + 2_000_000, order_ref=3, qty=100)

    bt.run(stream())
    assert [q[3] for _r, q in seen["bids"]] == [999_900] and seen["ahead"] == [0]
    assert [(f.strategy, f.side, f.qty, f.price, f.liquidity) for f in bt.fills] == [
        ("mm1", "B", 100, 999_900, "A")
    ]
    assert TIF_DAY in {o.tif for o in bt.orders}
    assert bt.venue.unknown_refs == 0


def test_the_command_prints_its_summary_and_refuses_bad_data(tmp_path: Path) -> None:
    cfg = tmp_path / "bt.toml"
    text = CONFIG.read_text().replace('"AMZN"', '"AAPL"')
    cfg.write_text(text)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hftd.cli", "backtest", "-c", str(cfg), "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--data", str(SAMPLE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "mm1" in done.stdout and "Sharpe" in done.stdout and (out / "report.html").exists()
    bad = tmp_path / "junk.bin"
    bad.write_bytes(b"not market data at all")
    done = subprocess.run([*cmd, "--data", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert str(bad) in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("missing", ["nowhere.bin"])
def test_a_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    cfg = tmp_path / "bt.toml"
    cfg.write_text(CONFIG.read_text().replace('"AMZN"', '"AAPL"'))
    done = subprocess.run(
        [sys.executable, "-m", "hftd.cli", "backtest", "-c", str(cfg), "--data", missing],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and missing in done.stderr


LOBSTER = ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"


def test_the_readme_backtest_of_the_lobster_day_twice_gives_the_same_files(
    tmp_path: Path,
) -> None:
    """The README's command on the LOBSTER AMZN day (config/backtest.toml's data):
    every shipped strategy trades, the summary is printed, the report written, and a
    second run writes the same bytes."""
    assert LOBSTER.exists(), f"missing {LOBSTER} (the LOBSTER sample: ../shared/data/README.md)"
    outs, prints = [], []
    for i in range(2):
        out = tmp_path / f"run{i}"
        done = subprocess.run(
            [sys.executable, "-m", "hftd.cli", "backtest", "-c", str(CONFIG), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        outs.append(out)
        prints.append(done.stdout.replace(str(out), "OUT"))
    assert prints[0] == prints[1] and "185286 market-data events" in prints[0]
    for name in ("mr1", "mom1", "mm1"):
        row = next(
            ln for ln in prints[0].splitlines() if ln.startswith(name + " ") and "AMZN" in ln
        )
        assert int(row.split()[3]) > 0, row  # fills
    for p in sorted(outs[0].iterdir()):
        assert p.read_bytes() == (outs[1] / p.name).read_bytes(), p.name
