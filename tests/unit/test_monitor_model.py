"""The monitor's pure core: HDR arithmetic, rates from counter deltas, the state it builds."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hdrh.histogram import HdrHistogram

from hftd.monitor.model import Aggregator, Reading
from hftd.monitor.poll import Poller
from hftd.msg.control import StatusInfo
from hftd.msg.status import FillStatus, GatewayDetail, RiskFigure
from hftd.runtime.hdr import (
    COUNTS_LEN,
    HIGH,
    HIGHEST_NS,
    LOW,
    LOWEST_NS,
    SIG_DIGITS,
    SparseHistogram,
    hdr_index,
)
from hftd.runtime.latency import HOPS
from tests.unit import monitor_fixtures as fx

# --- HDR ---------------------------------------------------------------------------


def hdrh_of(values: list[int]) -> HdrHistogram:
    """The reference: hdrh itself, with the gateway's parameters."""
    h = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIG_DIGITS)
    for v in values:
        h.record_value(v)
    return h


def test_hdr_index_is_hdrhistograms() -> None:
    rng = random.Random(7)
    values = [1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 10**6, HIGHEST_NS - 1, HIGHEST_NS]
    values += [int(rng.lognormvariate(12, 3)) % HIGHEST_NS + 1 for _ in range(20_000)]
    ref = hdrh_of([])
    for v in values:
        assert hdr_index(v) == ref.get_counts_array_index(v), v
    assert hdr_index(0) == hdr_index(1) and hdr_index(10**12) == hdr_index(HIGHEST_NS)


def test_sparse_percentiles_equal_hdrhistogram() -> None:
    rng = random.Random(3)
    values = [int(rng.lognormvariate(12, 0.8)) + 1 for _ in range(3000)]
    h = hdrh_of(values)
    s = SparseHistogram.from_wire(SparseHistogram.from_values(values).to_wire())
    assert s.total == 3000
    for p in (0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0):
        assert s.percentile_ns(p) == h.get_value_at_percentile(p), p
    assert s.max_ns() == h.get_max_value()
    assert s.sum_ns() == pytest.approx(h.get_mean_value() * 3000, rel=1e-3)


def test_window_is_the_difference_of_cumulative_histograms() -> None:
    early = [1_000_000] * 100  # 1 ms, recorded first
    late = [10_000] * 50  # 10 us, recorded after
    a = SparseHistogram.from_wire(fx.hdr(early))
    b = SparseHistogram.from_wire(fx.hdr(early + late))
    window = b - a
    assert window.total == 50
    assert window.percentile_ns(99) == hdrh_of(late).get_value_at_percentile(99)
    assert not b.is_reset_of(a)
    restarted = SparseHistogram.from_wire(fx.hdr(late))
    assert restarted.is_reset_of(b)
    assert (restarted - b).total == 50  # a restarted gateway: everything is new


def test_cumulative_buckets() -> None:
    s = SparseHistogram.from_values([5_000, 20_000, 20_000, 300_000, 2_000_000_000])
    assert s.cumulative([10_000, 100_000, 1_000_000, 1_000_000_000]) == [1, 3, 4, 4]


@pytest.mark.parametrize(
    "bad",
    [
        b"junk",
        "x",
        [[1, 2]],
        {"1": 2},
        {1: "2"},
        {1: 2.0},
        {-1: 1},
        {COUNTS_LEN: 1},
        {5: -1},
        {True: 1},
        None,
    ],
)
def test_from_wire_rejects_garbage(bad: object) -> None:
    with pytest.raises(ValueError, match="histogram"):
        SparseHistogram.from_wire(bad)


# --- the state model ---------------------------------------------------------------


def run(agg: Aggregator, t: float, **details: dict[str, object]) -> object:
    return agg.ingest(fx.poll(t, details))  # type: ignore[arg-type]


def test_state_mirrors_the_daemons() -> None:
    agg = Aggregator(fx.config())
    gw = fx.gateway(latency_ns=[10_000, 20_000, 30_000, 5_000_000])
    s = agg.ingest(fx.poll(1.0, {"gateway": gw, "feed": fx.feed(), "strategy": fx.strategy()}))
    assert s.seq == 1 and s.source == "monitor"
    assert (s.counters.orders, s.counters.fills, s.counters.cancels) == (10, 4, 2)
    assert (s.counters.risk_rejects, s.counters.md_messages) == (1, 1000)
    assert [p.symbol for p in s.positions] == ["AAPL", "MSFT"]
    aapl = s.positions[0]
    assert (aapl.qty, aapl.avg_price, aapl.mark) == (300, 189.5, 189.6)
    assert (aapl.unrealized, aapl.realized, aapl.total) == (3.0, 0.0, 3.0)
    msft = s.positions[1]
    assert (msft.realized, msft.total) == (12.34, 14.34)
    assert s.totals is not None
    assert (s.totals.qty, s.totals.realized, s.totals.unrealized) == (200, 12.34, 5.0)
    assert s.totals.total == pytest.approx(17.34)
    # Latency: every hop has the 4 orders; the window covers everything so far.
    h = s.hop("t1_t4")
    assert h is not None and h.count == 4
    ref = hdrh_of([10_000, 20_000, 30_000, 5_000_000])
    assert h.p50 == ref.get_value_at_percentile(50) / 1000
    assert h.p99 == ref.get_value_at_percentile(99) / 1000
    assert s.hop("t1_t4", total=True) == h
    # Risk bars: every symbol's position, then the account-wide limits; each with what
    # it is of (the gateway's figures), money in dollars.
    assert [b.key for b in s.risk] == [
        "position.AAPL",
        "position.MSFT",
        "gross",
        "net",
        "exposure",
        "rate",
        "messages",
        "working",
        "loss",
    ]
    aapl_bar = s.risk[0]
    assert (aapl_bar.label, aapl_bar.fraction, aapl_bar.used, aapl_bar.limit) == (
        "position AAPL",
        0.15,
        300,
        2_000,
    )
    assert (aapl_bar.unit, aapl_bar.figure) == ("shares", "300/2,000")
    bars = {b.key: b for b in s.risk}
    assert bars["exposure"].figure == "$98,380.00 / $5,000,000.00"
    assert (bars["exposure"].used, bars["exposure"].limit) == (98_380.0, 5_000_000.0)
    assert (bars["loss"].label, bars["loss"].figure) == ("daily P&L", "$17.34 / -$50,000.00")
    assert (bars["loss"].used, bars["loss"].limit, bars["loss"].fraction) == (17.34, -50_000, 0)
    assert (bars["rate"].label, bars["rate"].figure) == ("order rate", "4/200")
    # Trades newest first, in dollars.
    assert [t.symbol for t in s.trades] == ["MSFT", "AAPL"]
    assert (s.trades[0].price, s.trades[0].tick_to_trade_us) == (415.2, 456.7)
    assert [t.pnl_per_share for t in s.trades] == [None, None]  # both opened
    assert [d.name for d in s.daemons] == ["exchange", "feed", "strategy", "gateway", "monitor"]
    assert all(d.up and d.state == "ready" for d in s.daemons)
    assert s.mode == "active" and not s.breaker_tripped
    assert s.alerts == []


def test_a_losing_day_and_a_reducing_fill() -> None:
    """The daily P&L against the loss limit, both negative; a fill that reduced a
    position carries its P&L per share closed, in dollars; the gateway's own
    per-symbol limit is the one shown."""
    figures = dict(
        fx.RISK_FIGURES,
        **{
            "position.AAPL": RiskFigure(used=300, limit=500, unit="shares"),  # an override
            "loss": RiskFigure(used=-1_280_000, limit=-50_000_000, unit="dollars"),
        },
    )
    fills = [
        FillStatus(
            time_ns=1,
            symbol="AAPL",
            side="S",
            qty=100,
            price=1_896_000,
            tick_to_trade_us=0.0,
            pnl_per_share=1_000.0,  # $0.10 a share above the average entry
        ),
        FillStatus(
            time_ns=2,
            symbol="MSFT",
            side="B",
            qty=40,
            price=4_153_000,
            tick_to_trade_us=9.0,
            pnl_per_share=-1_000.0,
        ),
    ]
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": fx.gateway(risk_figures=figures, recent_fills=fills)}))
    bars = {b.key: b for b in s.risk}
    assert (bars["position.AAPL"].figure, bars["position.AAPL"].fraction) == ("300/500", 0.6)
    assert bars["loss"].figure == "-$128.00 / -$5,000.00"
    assert bars["loss"].fraction == pytest.approx(0.0256)
    assert (bars["loss"].used, bars["loss"].limit) == (-128.0, -5_000.0)
    assert [(t.symbol, t.pnl_per_share) for t in s.trades] == [("MSFT", -0.1), ("AAPL", 0.1)]


def test_a_gateway_without_figures_shows_its_fractions_alone() -> None:
    """An older gateway (no `risk_figures`): the bars it can have, nothing made up."""
    agg = Aggregator(fx.config())
    s = agg.ingest(fx.poll(1.0, {"gateway": fx.gateway(risk={"position.AAPL": 0.5, "loss": 0.1})}))
    assert [(b.key, b.fraction, b.figure, b.unit) for b in s.risk] == [
        ("position.AAPL", 0.5, "", ""),
        ("loss", 0.1, "", ""),
    ]


def test_rates_come_from_counter_deltas_and_survive_a_restart() -> None:
    agg = Aggregator(fx.config())
    for i in range(9):  # 4 polls a second: 20 orders/s, 500 md messages/s
        t = 1.0 + i * 0.25
        s = agg.ingest(
            fx.poll(
                t,
                {"gateway": fx.gateway(sent=5 * i, fills=2 * i), "feed": fx.feed(messages=125 * i)},
            )
        )
    assert s.rates.orders == pytest.approx(20.0)
    assert s.rates.fills == pytest.approx(8.0)
    assert s.rates.md == pytest.approx(500.0)
    # The gateway restarts: its counters begin again at 0 and count up from there.
    s = agg.ingest(fx.poll(3.25, {"gateway": fx.gateway(sent=0), "feed": fx.feed(messages=1125)}))
    s = agg.ingest(fx.poll(3.5, {"gateway": fx.gateway(sent=5), "feed": fx.feed(messages=1250)}))
    assert s.rates.orders >= 0  # never negative across a reset
    assert agg.totals["gateway"].totals["sent"] == 45


def test_history_gets_one_point_a_second() -> None:
    agg = Aggregator(fx.config(window_s=10.0))
    for i in range(60):
        s = agg.ingest(fx.poll(1.0 + i * 0.5, {"gateway": fx.gateway(sent=i)}))
    assert len(s.history) == 10  # window_s points, one per wall-clock second
    assert [p.t for p in s.history] == sorted({p.t for p in s.history})
    assert s.history[-1].pnl == pytest.approx(17.34)
    assert s.history[-1].orders == pytest.approx(2.0)


def test_window_latency_forgets_old_orders() -> None:
    agg = Aggregator(fx.config(latency_window_s=5.0))
    slow = [5_000_000] * 20
    fast = [10_000] * 20
    for t in range(1, 10):  # slow orders at t=1, then nothing new
        agg.ingest(fx.poll(float(t), {"gateway": fx.gateway(latency_ns=slow)}))
    for t in (10, 11):  # fast orders at t=10
        s = agg.ingest(fx.poll(float(t), {"gateway": fx.gateway(latency_ns=slow + fast)}))
    window, total = s.hop("t1_t4"), s.hop("t1_t4", total=True)
    assert window is not None and total is not None
    assert total.count == 40 and total.p99 > 4000
    assert window.count == 20 and window.p99 < 20  # only the fast ones are recent
    for t in range(12, 17):  # 6 s after the fast ones: the window is empty
        s = agg.ingest(fx.poll(float(t), {"gateway": fx.gateway(latency_ns=slow + fast)}))
    window = s.hop("t1_t4")
    assert window is not None and window.count == 0 and window.p99 == 0


class _OnePoller(Poller):
    """A poller whose daemons answer with the StatusInfo given (no sockets)."""

    def __init__(self, info: StatusInfo) -> None:
        super().__init__(Path("/nonexistent"), [info.component], 1.0, 1.0, keep_open=False)
        self.info = info

    async def ask(self, name: str) -> StatusInfo:
        return self.info


@pytest.mark.parametrize(
    ("detail", "field"),
    [
        ({**fx.gateway(), "risk": {"rate": "x"}}, "`float`, got `str` - at `$.risk[...]`"),
        ({**fx.gateway(), "latency_hdr": {"t1_t4": b"junk"}}, "`bytes` - at `$.latency_hdr[...]`"),
        ({k: v for k, v in fx.gateway().items() if k != "sent"}, "`sent`"),
    ],
)
def test_a_detail_not_as_its_struct_says_is_a_failed_poll_naming_the_field(
    detail: dict[str, Any], field: str
) -> None:
    """Was: odd values read as 0 and missing keys as absent, silently. Now the poll
    fails, its error names the field, and the monitor shows no figures from it."""
    good = StatusInfo(
        component="gateway", pid=1, state="running", uptime_s=1.0, detail=fx.gateway()
    )
    poller = _OnePoller(good)
    trio.run(poller.poll_one, "gateway")
    r = poller.readings["gateway"]
    assert r.error == "" and isinstance(r.detail, GatewayDetail) and r.detail.sent == 10
    poller.info = msgspec.structs.replace(good, detail=detail)
    trio.run(poller.poll_one, "gateway")
    assert r.error.startswith("StatusDetailError: gateway Status detail: ")
    assert field in r.error and poller.failures == 1
    assert r.detail is not None and r.detail.sent == 10  # the last good one is kept
    bad = fx.poll(1.0, {})
    bad.readings["gateway"] = Reading(name="gateway", info=poller.info, ok_at=1.0)
    s = Aggregator(fx.config()).ingest(bad)
    assert s.positions == [] and s.totals is None and s.trades == []
    assert s.counters.orders == 0 and s.mode == "unknown"


def test_pure_modules_do_not_import_trio() -> None:
    """(hftd.console.views does no I/O either, but urwid itself imports trio.)"""
    code = (
        "import sys; import hftd.monitor.model, hftd.monitor.alerts, hftd.runtime.hdr, "
        "hftd.monitor.prom, hftd.monitor.http, hftd.monitor.state, hftd.monitor.page; "
        "sys.exit('trio' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr or "a pure monitor module imported trio"


def test_value_tables_are_hdrhistograms() -> None:
    """Every counter's value range, as hdrh computes it (the tables replace its calls)."""
    ref = hdrh_of([])
    for i in range(COUNTS_LEN):
        v = ref.get_value_from_index(i)
        assert (LOW[i], HIGH[i]) == (
            ref.get_lowest_equivalent_value(v),
            ref.get_highest_equivalent_value(v),
        ), i


def test_latency_refresh_in_steps_equals_the_whole() -> None:
    """The daemon's stepped refresh (the steps, then an ingest without latency, as
    `MonitorService.run` does) gives the state a one-go ingest gives, from the
    same poll; until the last step the old figures stay in place."""
    values = [10_000, 20_000, 30_000, 5_000_000] * 50
    whole, stepped = Aggregator(fx.config()), Aggregator(fx.config())
    poll = fx.poll(1.0, {"gateway": fx.gateway(latency_ns=values)})
    want = whole.ingest(poll)
    old = (stepped.lat_window, stepped.lat_total, stepped.lat_second)
    steps = 0
    for _ in stepped.latency_steps(poll):
        steps += 1
        assert (stepped.lat_window, stepped.lat_total, stepped.lat_second) == old
    assert steps >= len(HOPS)  # one hop at a time, at least
    got = stepped.ingest(poll, latency=False)
    assert (got.latency, got.latency_total) == (want.latency, want.latency_total)
    assert got.latency[HOPS.index("t1_t4")].count == len(values)
