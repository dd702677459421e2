"""Record and replay of a strategy session (issue 15 item 5): the engine's inputs,
recorded as the daemon makes them, re-run to the same orders field for field."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.backtest.itch_file import ItchFile
from hftd.config import HftdConfig, load_config
from hftd.msg.hot import (
    CMD_CANCEL,
    CMD_NEW,
    CMD_REPLACE,
    EX_ACCEPTED,
    EX_CANCELED,
    EX_FILL,
    EX_HEARTBEAT,
    EX_REPLACED,
    ExecutionReport,
    OrderCommand,
)
from hftd.strategy.engine import StrategyEngine
from hftd.strategy.kinds import MarketMakerConfig
from hftd.strategy.record import InputRecorder, replay
from tests.support import DEFAULT_CONFIG, ITCH_FILE

_enc = msgspec.msgpack.Encoder()


def on_aapl() -> HftdConfig:
    """The default config's strategies, all on AAPL (the NASDAQ sample's symbol)."""
    cfg = load_config(DEFAULT_CONFIG)
    insts = [msgspec.structs.replace(i, symbols=["AAPL"]) for i in cfg.strategy.instances]
    insts.append(MarketMakerConfig(name="mm1", symbols=["AAPL"]))
    return msgspec.structs.replace(
        cfg, strategy=msgspec.structs.replace(cfg.strategy, instances=insts)
    )


def venue(c: OrderCommand) -> list[ExecutionReport]:
    """A venue that accepts every new order and fills every third, cancels and
    replaces what it is asked to."""
    if c.kind == CMD_CANCEL:
        return [ExecutionReport(EX_CANCELED, c.orig_cl_id, 0, c.symbol, c.side, 0, 0, 0, 0, "", 0)]
    if c.kind == CMD_REPLACE:
        return [
            ExecutionReport(
                EX_REPLACED,
                c.cl_id,
                c.orig_cl_id,
                c.symbol,
                c.side,
                c.qty,
                c.price,
                c.qty,
                0,
                "",
                0,
            )
        ]
    if c.kind != CMD_NEW:
        return []
    out = [
        ExecutionReport(EX_ACCEPTED, c.cl_id, 0, c.symbol, c.side, c.qty, c.price, c.qty, 0, "", 0)
    ]
    if c.cl_id % 3 == 0:
        out.append(
            ExecutionReport(EX_FILL, c.cl_id, 0, c.symbol, c.side, c.qty, c.price, 0, 0, "A", 0)
        )
    return out


def live_session(cfg: HftdConfig) -> tuple[list[bytes], int]:
    """What a strategy daemon with record_inputs would write: the sample's updates,
    a venue that accepts every new order and fills every third, timers; the
    records (one batch per timer) and the number of orders sent."""
    ticks = itertools.count(1_000_000_000, 5_000_000)  # a clock that moves 5 ms a read
    sent: list[OrderCommand] = []

    def send(cmd: OrderCommand) -> bool:
        sent.append(cmd)
        return True

    rec = InputRecorder(lambda: next(ticks), send)
    rec.header(1, cfg)
    engine = StrategyEngine(cfg, rec.send, rec.clock, 1)
    out: list[bytes] = []
    done = 0
    for i, u in enumerate(ItchFile(ITCH_FILE)):
        rec.call(("U", _enc.encode(u)), engine.on_update, u)
        while done < len(sent):
            c = sent[done]
            done += 1
            reports = venue(c)
            for r in reports:
                rec.call(("X", _enc.encode(r)), engine.on_report, r)
        if i % 50 == 0:
            hb = ExecutionReport(EX_HEARTBEAT, 0, 0, "", "", 0, 0, 0, 0, "active", 0)
            rec.call(("X", _enc.encode(hb)), engine.on_report, hb)
            rec.call(("T", True, 0), engine.on_timer)
            batch = rec.take()
            if batch is not None:
                out.append(batch)
    last = rec.take()
    if last is not None:
        out.append(last)
    return out, sum(1 for c in sent if c.kind != 5)


def test_a_recorded_session_replays_to_the_same_orders() -> None:
    records, orders = live_session(on_aapl())
    assert orders > 100
    result = replay(records)
    assert result.mismatches == []
    assert result.ok and result.orders == orders and result.run == 1


def _tampered(records: list[bytes], change: Any) -> list[bytes]:
    dec = msgspec.msgpack.Decoder()
    out = []
    for raw in records:
        batch = dec.decode(raw)
        batch[1] = [change(r) for r in batch[1]]
        out.append(_enc.encode(batch))
    return out


def test_a_changed_parameter_is_found_and_named() -> None:
    """The replay is a check, not a formality: the same inputs through a strategy
    with another order size do not reproduce the live orders."""
    records, _ = live_session(on_aapl())

    def bigger(r: list[Any]) -> list[Any]:
        if r[0] == "H":
            r[3]["strategy"]["instances"][0]["order_qty"] += 100
        return r

    result = replay(_tampered(records, bigger))
    assert not result.ok
    assert "qty: live 100, replay 200" in result.mismatches[0].what


def test_a_record_without_its_header_is_refused() -> None:
    records, _ = live_session(on_aapl())
    headless = _tampered(records, lambda r: ["T", True, 0, [], []] if r[0] == "H" else r)
    with pytest.raises(ValueError, match="header"):
        replay(headless)


# Every kind's fields, as a version-1 record (before the strategy API) gave each instance.
V1_FIELDS: dict[str, Any] = {
    "aggression_ticks": 0, "window": 50, "threshold_sigma": 2.0, "fast_window": 10,
    "slow_window": 40, "order_timeout_ms": 500.0, "half_spread_ticks": 2, "skew_ticks": 2.0,
    "requote_ticks": 1, "pull_ticks": 5, "pull_window_ms": 100.0, "stale_ms": 500.0,
    "rate_per_s": 0.0, "offset_ticks": 5, "max_working": 4000, "params": {},
}  # fmt: skip


def test_a_record_from_before_the_strategy_api_still_replays() -> None:
    """Version 1: every instance with every kind's fields (its own kept, the rest
    dropped), cancels with T1 0 (not compared). A session recorded by the
    strategies before the port replayed through them after it, the same way, to
    all 4,174 orders (issue 14 item 1)."""
    records, orders = live_session(on_aapl())

    def cancels_t1_0(r: list[Any]) -> list[Any]:
        if r[0] != "H":
            r[-1] = [
                (_zero_t1(raw) if _cmd(raw).kind == CMD_CANCEL else raw, ok) for raw, ok in r[-1]
            ]
        return r

    def as_v1(r: list[Any]) -> list[Any]:
        if r[0] == "H":
            r[1] = 1
            r[3]["strategy"]["instances"] = [V1_FIELDS | i for i in r[3]["strategy"]["instances"]]
        return cancels_t1_0(r)

    old = _tampered(records, as_v1)
    assert replay(old).ok and replay(old).orders == orders
    assert not replay(_tampered(records, cancels_t1_0)).ok  # version 2: every T1 compared


def _zero_t1(raw: bytes) -> bytes:
    return _enc.encode(msgspec.structs.replace(_cmd(raw), t1=0))


def _cmd(raw: bytes) -> OrderCommand:
    return msgspec.msgpack.decode(raw, type=OrderCommand)


@pytest.mark.parametrize(
    "payload",
    [b"\xc1 not msgpack", msgspec.msgpack.encode(("B", [["U"]])), msgspec.msgpack.encode([1])],
)
def test_a_damaged_record_file_is_named_not_a_traceback(
    tmp_path: Path, payload: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """The record is a file: `hftd backtest --session` reads it as input, not as
    trusted state. Whatever its records hold, exit 2 naming the file."""
    from hftd.backtest.session import replay_session
    from hftd.runtime.journal import frame

    records, _ = live_session(on_aapl())
    path = tmp_path / "strategy-inputs.1.rec"
    path.write_bytes(frame(records[0]) + frame(payload))
    assert replay_session(tmp_path) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err
