"""A strategy session's inputs, recorded, and replayed to the same orders (pure).

The strategy engine is pure: what it does follows from the calls it gets and
the clock readings it takes. So the strategy daemon (with
`strategy.record_inputs`) records each call it makes on the engine, with the
raw ring bytes it passed (market data, execution reports), every clock value
the engine read during that call and every command the engine sent (with
whether the orders ring took it). `replay` drives a fresh engine with the same
config and run through the same calls, hands it the same clock values and
ring answers, and compares each command it sends with the recorded one, field
by field: the live session's orders, reproduced (`hftd backtest --session`).

Records (msgpack tuples; `clocks` the values read, `outs` [(command bytes, ok)]):

    ("H", version, run, config)                 the session's start
    ("U", md bytes, clocks, outs)               engine.on_update (live data)
    ("Q", md bytes, clocks, outs)               engine.rebuild (a replay: books only)
    ("Z", clocks, outs)                         engine.builder.reset (a resync's reset)
    ("X", report bytes, clocks, outs)           engine.on_report
    ("T", in_sync, last_md_ns, clocks, outs)    engine.on_timer
    ("A", working, positions, clocks, outs)     engine.adopt (recovery at start)
    ("R", config, clocks, outs)                 engine.reconfigure (a reload)

The daemon batches them: one journal record holds ("B", [record, ...]).

Version 1 is a record from before the strategy API (issue 14): its config gave
every instance every kind's fields (a plug-in's own in `params`), and the
market maker's pulled quotes were cancelled with T1 0 where a strategy's
cancels now carry the T1 of the update that made them (the gateway reads no T1
of a cancel). It still replays, through the strategies as they are now: each
instance keeps its kind's fields, and a cancel's T1 is not compared.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from hftd.config import HftdConfig, convert_config
from hftd.msg.hot import CMD_CANCEL, CMD_HEARTBEAT, ExecutionReport, MarketDataUpdate, OrderCommand
from hftd.msg.status import WorkingOrderStatus
from hftd.strategy.engine import StrategyEngine
from hftd.strategy.plugins import config_class

VERSION = 2
READS = (1, 2)  # the versions `replay` takes
RECORD_PREFIX = "strategy-inputs"  # <day dir>/strategy-inputs.<run>.rec

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(tuple[Any, ...])
_md = msgspec.msgpack.Decoder(MarketDataUpdate)
_ex = msgspec.msgpack.Decoder(ExecutionReport)
_cmd = msgspec.msgpack.Decoder(OrderCommand)


def record_name(run: int) -> str:
    return f"{RECORD_PREFIX}.{run}.rec"


class InputRecorder:
    """Sits between the daemon and its engine: the engine's clock and send go
    through it, and each call made through `call` becomes one record."""

    def __init__(self, clock: Callable[[], int], send: Callable[[OrderCommand], bool]) -> None:
        self.base_clock = clock
        self.base_send = send
        self.clocks: list[int] = []
        self.outs: list[tuple[bytes, bool]] = []
        self.pending: list[tuple[Any, ...]] = []  # records not yet written (`take`)

    def clock(self) -> int:
        t = self.base_clock()
        self.clocks.append(t)
        return t

    def send(self, cmd: OrderCommand) -> bool:
        ok = self.base_send(cmd)
        self.outs.append((_enc.encode(cmd), ok))
        return ok

    def header(self, run: int, cfg: HftdConfig) -> None:
        self.pending.append(("H", VERSION, run, msgspec.to_builtins(cfg)))

    def call(self, head: tuple[Any, ...], fn: Callable[..., object], *args: object) -> None:
        """`fn(*args)`, recorded as `head` + (clocks, outs)."""
        self.clocks = []
        self.outs = []
        try:
            fn(*args)
        finally:
            self.pending.append((*head, self.clocks, self.outs))

    def take(self) -> bytes | None:
        """The records made since the last take, as one journal payload."""
        if not self.pending:
            return None
        batch, self.pending = self.pending, []
        return _enc.encode(("B", batch))


class Mismatch(msgspec.Struct, frozen=True):
    """Where the replay left the recorded session."""

    record: int  # the input's number (from 1)
    what: str


class ReplayResult(msgspec.Struct):
    run: int = 0
    inputs: int = 0
    orders: int = 0  # order commands reproduced field for field (heartbeats apart)
    heartbeats: int = 0
    mismatches: list[Mismatch] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.inputs > 0


class _Replayer:
    def __init__(self) -> None:
        self.clocks: deque[int] = deque()
        self.outs: deque[tuple[bytes, bool]] = deque()
        self.result = ReplayResult()
        self.n = 0
        self.last_clock = 0
        self.version = VERSION  # the record's (its header)

    def clock(self) -> int:
        if self.clocks:
            self.last_clock = self.clocks.popleft()
        else:
            self._diverged("the engine read the clock more often than live")
        return self.last_clock

    def send(self, cmd: OrderCommand) -> bool:
        if not self.outs:
            self._diverged(f"the engine sent a command live did not: {cmd!r}")
            return True
        raw, ok = self.outs.popleft()
        want = _cmd.decode(raw)
        if self.version == 1 and cmd.kind == CMD_CANCEL:
            want = msgspec.structs.replace(want, t1=cmd.t1)  # (module docstring)
        if want != cmd:
            diff = [
                f"{f}: live {getattr(want, f)!r}, replay {getattr(cmd, f)!r}"
                for f in want.__struct_fields__
                if getattr(want, f) != getattr(cmd, f)
            ]
            self._diverged(f"command {want.cl_id} differs: " + "; ".join(diff))
        elif cmd.kind == CMD_HEARTBEAT:
            self.result.heartbeats += 1
        else:
            self.result.orders += 1
        return bool(ok)

    def _diverged(self, what: str) -> None:
        if len(self.result.mismatches) < 20:
            self.result.mismatches.append(Mismatch(self.n, what))


def _lost(why: str, seq: int) -> None:
    """A book error in the replay: the live daemon asked for a resync; the
    recorded inputs that followed say what it got."""


def replay(payloads: Iterable[bytes]) -> ReplayResult:
    """Re-run one recorded session (its journal records, in order)."""
    r = _Replayer()
    engine: StrategyEngine | None = None
    for payload in payloads:
        batch = _dec.decode(payload)
        recs: Sequence[Any] = batch[1] if batch[0] == "B" else [batch]
        for rec in recs:
            kind = rec[0]
            if kind == "H":
                if rec[1] not in READS:
                    raise ValueError(
                        f"record version {rec[1]}, this hftd reads {', '.join(map(str, READS))}"
                    )
                r.version = rec[1]
                cfg = recorded_config(rec[3], r.version)
                r.result.run = rec[2]
                engine = StrategyEngine(cfg, r.send, r.clock, rec[2], _lost)
                continue
            if engine is None:
                raise ValueError("the record does not start with its header")
            r.n += 1
            r.result.inputs += 1
            r.clocks = deque(rec[-2])
            r.outs = deque((bytes(b), ok) for b, ok in rec[-1])
            _apply(engine, kind, rec, r.version)
            if r.outs:
                r._diverged(f"{len(r.outs)} command(s) sent live were not sent by the replay")
            if r.clocks:
                r._diverged("the engine read the clock less often than live")
    return r.result


def recorded_config(data: dict[str, Any], version: int = VERSION) -> HftdConfig:
    """A recorded config. In version 1 every instance carries every kind's fields,
    and a plug-in's own are in `params`: each keeps its kind's fields (a plug-in's
    `params` become fields)."""
    strategy = data.get("strategy")
    insts = strategy.get("instances") if isinstance(strategy, dict) else None
    if version == 1 and isinstance(strategy, dict) and isinstance(insts, list):
        upgraded = []
        for inst in insts:
            if isinstance(inst, dict) and isinstance(inst.get("params"), dict):
                keep = {f.encode_name for f in msgspec.structs.fields(config_class(inst["kind"]))}
                flat = {**inst, **inst["params"]}
                inst = {k: v for k, v in flat.items() if k in keep or k == "kind"}
            upgraded.append(inst)
        data = {**data, "strategy": {**strategy, "instances": upgraded}}
    return convert_config(data)


def _apply(engine: StrategyEngine, kind: str, rec: Sequence[Any], version: int) -> None:
    if kind == "U":
        engine.on_update(_md.decode(rec[1]))
    elif kind == "Q":
        engine.rebuild(_md.decode(rec[1]))
    elif kind == "Z":
        engine.builder.reset()
    elif kind == "X":
        engine.on_report(_ex.decode(rec[1]))
    elif kind == "T":
        engine.in_sync = bool(rec[1])
        engine.last_md_ns = rec[2]
        engine.on_timer()
    elif kind == "A":
        working = msgspec.convert(rec[1], list[WorkingOrderStatus])
        engine.adopt(working, dict(rec[2]))
    elif kind == "R":
        engine.reconfigure(recorded_config(rec[1], version))
    else:
        raise ValueError(f"unknown record kind {kind!r}")
