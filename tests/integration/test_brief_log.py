"""The brief's log lines from a real run (issue 16 item 3): `hftd up` on loopback, in
both hot-path layouts, trades until fills; then its log is read line by line.

Every line has the brief's shape, ``[HH:MM:SS.mmm] [TAG   ] text``; the start-up
lines (version, configuration file, risk limits, symbols, each strategy with its
parameters, "All components ready. Trading enabled.") are there once each, with the
configured values; and a trade reads signal -> risk check -> order sent -> fill ->
position -> P&L -> PERF, with the same order in each line. After a halt, the last
position line of each symbol and the last realized P&L are what the gateway holds.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from hftd.config import load_config
from hftd.msg.status import format_dollars
from tests.integration.test_trading import STRATEGIES
from tests.support import hftctl, make_config, start_daemon, status, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.layouts]

TAGS = ("SYSTEM", "MD", "STRAT", "RISK", "GW", "PERF", "DASH", "EXCH")
LINE = re.compile(
    r"^\[(\d\d):(\d\d):(\d\d)\.(\d{3})\] \[(" + "|".join(f"{t:<6}" for t in TAGS) + r")\] (\S.*)$"
)
N = r"[+-]?[\d,]+"  # a signed count with thousands separators
MONEY = r"-?\$[\d,]+\.\d\d"
ORDER = r"(?P<sym>[A-Z]+) (?P<side>BUY|SELL) (?P<qty>\d+) @ (?P<px>\d+\.\d{4})"


class Line:
    def __init__(self, index: int, raw: str) -> None:
        m = LINE.match(raw)
        assert m, f"line {index + 1} is not in the brief's shape: {raw!r}"
        h, mi, s, ms, tag, text = m.groups()
        self.index = index
        self.ms = ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1000 + int(ms)
        self.tag = tag.strip()
        self.text = text

    def __repr__(self) -> str:
        return f"{self.index + 1}: [{self.tag}] {self.text}"


def one(lines: list[Line], tag: str, pattern: str) -> Line:
    """The one line of `tag` whose text matches `pattern` (from its start)."""
    found = [ln for ln in lines if ln.tag == tag and re.match(pattern, ln.text)]
    assert len(found) == 1, (tag, pattern, found[:5])
    return found[0]


def after(first: Line, then: Line) -> bool:
    """`then` was made no earlier than `first` (a run that crosses midnight wraps)."""
    return 0 <= (then.ms - first.ms) % 86_400_000 < 43_200_000


def test_the_brief_log_lines_of_a_run(tmp_path: Path, hftd_layout: str) -> None:
    cfg = make_config(
        tmp_path,
        {
            "exchange": {"flow": {"arrival_rate_per_s": 150.0}},
            "strategy": {"instances": STRATEGIES},
            "system": {"log_level": "info"},
            "daemons": {"monitor": {"enabled": False}},
        },
    )
    conf = load_config(cfg)
    with start_daemon("up", cfg, ready_timeout=60) as up:
        wait_for(lambda: status(up, "gateway")["fills"] >= 3, 120, "three fills")
        wait_for(lambda: "[PERF  ] signal-to-fill" in up.log, 10, "a fill's lines written")
        # No more fills: halt (cancels every working order), then what the gateway holds
        res = hftctl(cfg, "halt", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        wait_for(lambda: not status(up, "gateway")["working"], 10, "nothing working")
        held = status(up, "gateway")["positions"]
        assert up.stop(30.0) == 0, up.log
    raw = up.log.splitlines()
    lines = [Line(i, text) for i, text in enumerate(raw)]

    # --- start-up, once each, with the configured values ---------------------------------
    version = one(
        lines, "SYSTEM", r"hftd \S+ starting on \d{4}-\d\d-\d\d \(local time, UTC[+-]\d\d:\d\d\)"
    )
    config = one(lines, "SYSTEM", re.escape(f"config: {cfg} (--config)") + "$")
    r = conf.risk
    limits = one(
        lines,
        "RISK",
        re.escape(
            f"risk limits: max_position {r.max_position:,}, max_order_qty {r.max_order_qty:,}, "
            f"max_order_notional {format_dollars(r.max_order_notional)}, "
            f"price_band_bps {r.price_band_bps:,}, "
        )
        + r".*"
        + re.escape(f", daily_loss_limit {format_dollars(r.daily_loss_limit)}")
        + "$",
    )
    symbols = one(
        lines,
        "SYSTEM",
        re.escape(
            "symbols: "
            + ", ".join(
                f"{s.symbol} (tick {s.tick_size}, lot {s.round_lot}, reference {s.reference_price})"
                for s in conf.symbols
            )
        )
        + "$",
    )
    strategies = [
        one(
            lines,
            "STRAT",
            re.escape(f"strategy {s['name']} ({s['kind']}) on {', '.join(s['symbols'])}: ")
            + re.escape(f"order_qty={s['order_qty']} max_position={s['max_position']} ")
            + r"cooldown_ms=[\d.]+ "
            + " ".join(re.escape(f"{k}={v}") for k, v in s.items() if k not in COMMON)
            + "$",
        )
        for s in STRATEGIES
    ]
    ready = one(lines, "SYSTEM", re.escape("All components ready. Trading enabled.") + "$")
    for ln in (version, config, limits, symbols, *strategies):
        assert ln.index < ready.index, (ln, ready)
    assert version.index < config.index < symbols.index

    # --- a trade: signal -> risk -> order sent -> fill -> position -> P&L -> PERF ---------
    fills = [
        (ln, m)
        for ln in lines
        if ln.tag == "GW"
        and (
            m := re.match(rf"fill {ORDER} \(cl (?P<cl>\d+), ref (?P<ref>\d+), complete\)$", ln.text)
        )
    ]
    trades = [t for t in (_trade(lines, ln, m, conf) for ln, m in fills) if t is not None]
    assert trades, f"no complete fill of a strategy's order with its lines: {fills[:3]}"
    for seq in trades:
        names = ["signal", "risk", "sent", "fill", "position", "pnl", "perf"]
        trade = dict(zip(names, seq, strict=True))
        gateway = seq[1:]  # one process's lines: in the file in the order they were made
        assert [ln.index for ln in gateway] == sorted(ln.index for ln in gateway), trade
        fill = trade["fill"]
        assert [ln.index for ln in seq[4:]] == [fill.index + 1, fill.index + 2, fill.index + 3]
        # the signal (the strategy's, another process in the split layout): made first,
        # dated when it was decided, before the order left
        for a, b in itertools.pairwise(seq):
            assert after(a, b), (a, b)
        if hftd_layout == "composite":  # one process: the file's order too
            assert trade["signal"].index < trade["risk"].index, trade

    # --- the figures are the gateway's ---------------------------------------------------
    last: dict[str, str] = {}
    realized = ""
    for ln in lines:
        if m := re.fullmatch(rf"position ([A-Z]+) ({N})/[\d,]+", ln.text):
            last[m[1]] = m[2]
        if m := re.fullmatch(rf"P&L {MONEY} / {MONEY} \(realized ({MONEY})\)", ln.text):
            realized = m[1]
    for p in held["positions"]:
        if p["symbol"] in last:
            assert last[p["symbol"]] == (f"{p['qty']:+,}" if p["qty"] else "0"), (p, last)
    assert last and realized == format_dollars(held["realized"]), (realized, held)


COMMON = ("name", "kind", "symbols", "enabled", "order_qty", "max_position", "cooldown_ms")


def _trade(lines: list[Line], fill: Line, m: re.Match[str], conf: Any) -> list[Line] | None:
    """A complete fill's whole story, each line checked against the fill's order; None
    for a fill whose signal line is not in the log (not a strategy's order)."""
    cl = m["cl"]
    signals = [
        (ln, sig)
        for ln in lines
        if ln.tag == "STRAT"
        and (sig := re.fullmatch(rf"signal (?P<name>\S+) {ORDER} \(.*\) -> order {cl}", ln.text))
    ]
    if not signals:
        return None
    ((signal, sig),) = signals
    sym, side, qty = sig["sym"], sig["side"], sig["qty"]
    assert (m["sym"], m["side"]) == (sym, side) and int(m["qty"]) <= int(qty), (signal, fill)
    order = re.escape(f"{sym} {side} {qty} @ {sig['px']}")
    lim = conf.risk.for_symbol(sym)
    risk = one(
        lines,
        "RISK",
        rf"check passed: {order} \(cl {cl}\): position {N}/{lim.max_position:,} "
        rf"\({N} if every open {side.lower()} fills\), notional {MONEY} / "
        + re.escape(format_dollars(lim.max_order_notional))
        + "$",
    )
    sent = one(lines, "GW", rf"order sent: {order} \(cl {cl}, ref {m['ref']}, {sig['name']}\)$")
    position, pnl, perf = (lines[fill.index + k] for k in (1, 2, 3))
    assert position.tag == "RISK", position
    assert re.fullmatch(rf"position {sym} {N}/{lim.max_position:,}", position.text), position
    assert pnl.tag == "RISK", pnl
    loss = re.escape(format_dollars(-conf.risk.daily_loss_limit))
    assert re.fullmatch(rf"P&L {MONEY} / {loss} \(realized {MONEY}\)", pnl.text), pnl
    assert perf.tag == "PERF", perf
    assert re.fullmatch(r"signal-to-fill \d+\.\d{3} ms \(tick-to-trade [\d,]+\.\d us\)", perf.text)
    return [signal, risk, sent, fill, position, pnl, perf]
