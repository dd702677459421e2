"""Paper trading on real recorded data (issue 15 item 4): `hftd up` on
config/paper_trading.toml, the exchange replaying a recorded day as its market
(`exchange.md_file_model = "queue"`), the whole stack trading on it.

For the NASDAQ ITCH sample and the LOBSTER AMZN day (played as fast as it goes):
(a) at the end the strategy's book is the data's book, built offline with
    `BookBuilder` over `open_source(file)`: our orders are not in the stream;
(b) our fills follow the queue model: the exchange's journal says where in the
    data each of our orders arrived; the same data and those arrivals through a
    fresh `QueueVenue` give, event for event, what the gateway received (its
    journal), and the gateway's positions are those fills'.
"""

from __future__ import annotations

import os
import signal
import time
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.backtest.detect import open_source
from hftd.backtest.queue import QueueVenue
from hftd.book.l3 import BookBuilder
from hftd.config import load_config
from hftd.exchange.journal import Inbound, Record
from hftd.gateway import venue as gv
from hftd.gateway.ouch_adapter import OuchAdapter, from_b36
from hftd.gateway.positions import PositionBook
from hftd.msg.control import Depth, Halt, Snapshot
from hftd.msg.hot import MD_SEQUENCE
from hftd.runtime.days import exchange_journal_path, gateway_journal_path
from hftd.runtime.journal import read_all
from hftd.wire import ouch
from tests.integration.frontends import monitor_state
from tests.support import (
    LAYOUT,
    RING_PREFIXES,
    ROOT,
    Daemon,
    ask,
    deep_merge,
    dump_toml,
    free_ports,
    start_daemon,
    status,
    status_of_up,
    wait_for,
)

pytestmark = pytest.mark.integration

PAPER_CONFIG = ROOT / "config" / "paper_trading.toml"
ITCH_SAMPLE = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"
AMZN_ZIP = ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
OUR = (gv.Accepted, gv.Executed, gv.Canceled, gv.Replaced, gv.Rejected)
_record = msgspec.msgpack.Decoder(Record).decode


def amzn_zip() -> Path:
    if not AMZN_ZIP.is_file():
        pytest.fail(
            f"the LOBSTER sample day is missing: {AMZN_ZIP} (see ../shared/data/README.md; "
            "it may not be committed into the project)"
        )
    return AMZN_ZIP


def paper_config(tmp: Path, overrides: dict[str, Any]) -> Path:
    """config/paper_trading.toml as shipped, on free ports, a private run dir, journal
    dir and ring prefix, `overrides` merged in."""
    data = tomllib.loads(PAPER_CONFIG.read_text())
    if LAYOUT[0] is not None:
        data = deep_merge(data, {"hotpath": {"layout": LAYOUT[0]}})
    order_port, md_port, web_port = free_ports(3)
    prefix = f"hftd-p{time.monotonic_ns() % 10**9}-{len(RING_PREFIXES)}"
    RING_PREFIXES.append(prefix)  # conftest removes its rings from /dev/shm
    data = deep_merge(
        data,
        {
            "system": {"run_dir": str(tmp / "run"), "journal_dir": str(tmp / "journal")},
            "exchange": {"order_port": order_port, "md_port": md_port},
            "monitor": {"web_port": web_port, "poll_interval_s": 0.2},
            "rings": {"prefix": prefix},
        },
    )
    path = tmp / "hftd.toml"
    path.write_text(dump_toml(deep_merge(data, overrides)))
    return path


def test_the_shipped_config_plays_the_sample_through_the_queue_model() -> None:
    cfg = load_config(PAPER_CONFIG)
    ex = cfg.exchange
    assert ex.md_file_model == "queue" and Path(ex.md_file).resolve() == ITCH_SAMPLE
    assert ex.md_file_speed > 0 and not ex.flow.enabled
    assert [s.symbol for s in cfg.symbols] == ["AAPL"]
    assert {i.kind for i in cfg.strategy.instances} >= {"mean_reversion", "momentum"}
    assert all(i.symbols == ["AAPL"] for i in cfg.strategy.instances)


# --- what the journals say ----------------------------------------------------------------


def our_arrivals(cfg_path: Path) -> list[Inbound]:
    """The exchange's journal: our gateway's order messages, each with its file position."""
    records, _ = read_all(exchange_journal_path(load_config(cfg_path)))
    arrivals = [r for r in map(_record, records) if isinstance(r, Inbound) and r.user == "HFTD"]
    assert arrivals and all(r.pos >= 0 for r in arrivals)
    return arrivals


def gateway_received(cfg_path: Path) -> list[gv.VenueEvent]:
    """The gateway's journal: every venue message it received, read as its adapter reads
    it; our orders' events."""
    records, _ = read_all(gateway_journal_path(load_config(cfg_path)))
    adapter = OuchAdapter()
    out = []
    for raw in records:
        rec = msgspec.msgpack.decode(raw)
        if rec[0] == "V":
            ev = adapter.decode(rec[2])
            if isinstance(ev, OUR):
                out.append(ev)
    return out


def queue_model(data: Path, symbols: list[str], arrivals: list[Inbound]) -> list[gv.VenueEvent]:
    """A fresh QueueVenue over `open_source(data)` with our orders where they arrived
    (UserRefNum as the model's ref: one user, strictly increasing)."""
    q = QueueVenue(symbols)
    out: list[gv.VenueEvent] = []
    todo = iter(arrivals)
    nxt = next(todo, None)

    def orders_at(pos: int) -> None:
        nonlocal nxt
        while nxt is not None and nxt.pos == pos:
            m = ouch.decode_inbound(nxt.raw)
            if isinstance(m, ouch.EnterOrder):
                side = "B" if m.side == "B" else "S"
                cl = from_b36(m.cl_ord_id)
                out.extend(
                    q.enter(m.user_ref, cl, m.symbol, side, m.quantity, m.price, m.time_in_force)
                )
            elif isinstance(m, ouch.ReplaceOrder):
                cl = from_b36(m.cl_ord_id)
                out.extend(q.replace(m.orig_user_ref, m.new_user_ref, cl, m.quantity, m.price))
            else:
                assert m.quantity == 0  # the gateway cancels whole orders
                out.extend(q.cancel(m.user_ref))
            nxt = next(todo, None)

    n = 0
    for n, u in enumerate(open_source(data, symbols)):
        orders_at(n)
        out.extend(q.on_market(u))
    orders_at(n + 1)
    assert nxt is None, f"an order at file position {nxt.pos}, past the data's end"
    return out


def data_book(data: Path, symbol: str) -> tuple[Any, ...]:
    b = BookBuilder([symbol])
    for u in open_source(data, [symbol]):
        if u.kind != MD_SEQUENCE:
            b.apply_update(u)
    book = b.books[symbol]
    return (
        [list(x) for x in book.depth("B")],
        [list(x) for x in book.depth("S")],
        {ref: list(o) for ref, o in book.orders.items()},
    )


def positions(events: list[gv.VenueEvent]) -> dict[str, tuple[int, int, int]]:
    """(qty, cost basis, realized) per symbol from the model's fills."""
    orders: dict[int, tuple[str, str]] = {}
    book = PositionBook()
    for e in events:
        if isinstance(e, gv.Accepted | gv.Replaced):
            orders[e.ref] = (e.symbol, e.side)
        elif isinstance(e, gv.Executed):
            symbol, side = orders[e.ref]
            book.on_fill(symbol, side, e.qty, e.price)
    return {s: (book.position(s).qty, book.position(s).cost, book.position(s).realized)
            for s in book.symbols()}  # fmt: skip


# --- the system ----------------------------------------------------------------------------


def kill_the_exchange(up: Daemon, after_fills: int) -> dict[str, Any]:
    """SIGKILL the exchange once the gateway has `after_fills` fills; its Status once the
    supervisor has it back (ready) and the gateway logged in again."""
    wait_for(lambda: status(up, "gateway")["fills"] >= after_fills, 60, "fills before the kill")
    old = status_of_up(up)["exchange"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: (d := status_of_up(up)["exchange"])["state"] == "ready" and d["pid"] != old,
        30,
        "the exchange back",
    )
    wait_for(lambda: status(up, "exchange")["order_sessions"] == ["HFTD"], 30, "the gateway back")
    return status(up, "exchange")


def play_and_check(
    cfg_path: Path, data: Path, symbol: str, timeout: float, kill_after_fills: int = 0
) -> dict[str, Any]:
    """`hftd up`, the whole file played and traded on (the exchange killed on the way if
    asked); then halt (every order cancelled) and check (a) and (b). Returns figures."""
    t0 = time.monotonic()
    with start_daemon("up", cfg_path, ready_timeout=60, args=("--new-day",)) as up:
        ex = up  # `ask` and `status` reach every daemon through the run dir's sockets
        restarted = kill_the_exchange(up, kill_after_fills) if kill_after_fills else None
        wait_for(
            lambda: status(ex, "exchange")["md_file"]["done"],
            timeout,
            "the whole file played",
        )
        played = time.monotonic() - t0
        md_end = status(ex, "exchange")["md_messages"]
        wait_for(lambda: status(ex, "strategy")["last_seq"] == md_end, 60, "the strategy caught up")
        # (a) the strategy's book is the data's: nothing of ours in the stream
        mine = ask(ex, "strategy", Depth(symbol))
        assert (mine["bids"], mine["asks"], mine["orders"]) == data_book(data, symbol)
        sdet, fdet = status(ex, "strategy"), status(ex, "feed")
        assert sdet["gaps"] == sdet["resets"] == sdet["resyncs"] == 0, sdet
        assert fdet["gaps"] == fdet["drops"] == 0, fdet
        assert fdet["reconnects"] == (1 if restarted else 0), fdet
        assert fdet["messages"] == md_end
        # Quiet: halted, nothing working, every venue reply read by the gateway.
        ask(ex, "gateway", Halt())
        wait_for(
            lambda: (
                not (gw := status(ex, "gateway"))["working"]
                and gw["venue_seq"] == ask(ex, "exchange", Snapshot("HFTD"))["next_sequence"] - 1
            ),
            30,
            "the gateway halted, its orders cancelled, every reply read",
        )
        gw = status(ex, "gateway")
        exd = status(ex, "exchange")
        # The monitor (console, web page) shows it as any other day.
        run_dir = Path(up.config["system"]["run_dir"])
        wait_for(
            lambda: monitor_state(run_dir)["counters"]["fills"] == gw["fills"],
            10,
            "the monitor's fills",
        )
    # (b) the queue model over the same data with the journaled arrivals is what the
    # gateway received, event for event (a refusal's text is the venue's own words)
    arrivals = our_arrivals(cfg_path)
    want = queue_model(data, [symbol], arrivals)
    got = gateway_received(cfg_path)

    def key(e: gv.VenueEvent) -> Any:
        return (e.ref, e.reason) if isinstance(e, gv.Rejected) else e

    assert [key(e) for e in got] == [key(e) for e in want]
    fills = [e for e in got if isinstance(e, gv.Executed)]
    assert gw["fills"] == len(fills) > 0
    mine_pos = {p["symbol"]: (p["qty"], p["cost_basis"], p["realized"])
                for p in gw["positions"]["positions"]}  # fmt: skip
    assert {s: p for s, p in mine_pos.items() if p != (0, 0, 0)} == {
        s: p for s, p in positions(want).items() if p != (0, 0, 0)
    }
    return {
        "played_s": played,
        "md": md_end,
        "orders": len(arrivals),
        "fills": len(fills),
        "liquidity": sorted({e.liquidity for e in fills}),
        "exchange": exd,
        "restarted": restarted,
    }


@pytest.mark.layouts
def test_paper_trading_on_the_nasdaq_itch_sample(tmp_path: Path) -> None:
    cfg = paper_config(
        tmp_path, {"exchange": {"md_file": str(ITCH_SAMPLE), "md_file_speed": 1500.0}}
    )
    got = play_and_check(cfg, ITCH_SAMPLE, "AAPL", timeout=90)
    fc = got["exchange"]["md_file"]
    assert fc["messages"] == fc["published"] == 10_000 and fc["format"] == "ITCH 5.0 BinaryFILE"
    assert got["md"] == 5 + 10_000  # the venue's start of day, then the file, nothing else
    assert got["liquidity"] == ["A", "R"], got  # queue fills and takes


def test_a_killed_exchange_rebuilds_the_queue_model_exactly(tmp_path: Path) -> None:
    """SIGKILL mid-file: the restarted exchange loads its checkpoint (the queue model's
    state), reads the file again to its position, replays the journal after it and
    plays on at the same pace; our orders, before and after, are the model's still."""
    cfg = paper_config(
        tmp_path,
        {
            "exchange": {
                "md_file": str(ITCH_SAMPLE),
                "md_file_speed": 1000.0,
                "checkpoint_interval_s": 0.5,
            }
        },
    )
    got = play_and_check(cfg, ITCH_SAMPLE, "AAPL", timeout=90, kill_after_fills=20)
    back = got["restarted"]
    assert back["journal_checkpoint"] > 0 and back["md_file"]["position"] > 0, back
    assert got["fills"] > 20 and got["md"] == 5 + 10_000


def test_paper_trading_on_the_lobster_amzn_day(tmp_path: Path) -> None:
    zip_ = amzn_zip()
    cfg = paper_config(
        tmp_path,
        {
            "symbols": [{"symbol": "AMZN", "reference_price": "220.00", "tick_size": "0.01"}],
            "exchange": {"md_file": str(zip_), "md_file_speed": 0.0},
            # At speed 0 the day's 185k messages come in a few seconds: with the default
            # 4 MiB rings the gateway's market view fell 7.6k records behind on 2 CPUs,
            # asked for a resync and the feed replayed from 1 (recovered, but this test
            # is about the paper venue): rings that hold the whole day.
            "rings": {"md_capacity": 1 << 24, "risk_md_capacity": 1 << 24},
            "strategy": {
                "instances": [
                    dict(inst, symbols=["AMZN"])
                    for inst in tomllib.loads(PAPER_CONFIG.read_text())["strategy"]["instances"]
                ]
            },
        },
    )
    got = play_and_check(cfg, zip_, "AMZN", timeout=110)
    fc = got["exchange"]["md_file"]
    assert fc["format"] == "LOBSTER" and fc["unreadable"] == 0
    assert fc["messages"] == 185_286 and got["md"] == 5 + fc["published"]
