"""The Status details are typed contracts (hftd/msg/status.py): what the producers
make decodes as their Struct, through the wire, and a detail missing any field
its Struct requires (or with one of another type) is refused, naming the field:
renaming a key can no longer silently break the strategy's recovery or the monitor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.config import HftdConfig, load_config
from hftd.feed.daemon import FeedAgent, FeedService
from hftd.gateway.daemon import GatewayAgent, GatewayService, gateway_detail
from hftd.ipc.ring import Ring
from hftd.msg import ids
from hftd.msg.control import Reply, StatusInfo, encoder, reply_decoder
from hftd.msg.status import (
    DETAILS,
    FeedDetail,
    GatewayDetail,
    PositionSnapshot,
    ReconcileStatus,
    RiskFigure,
    StatusDetailError,
    StrategyDetail,
    WorkingOrderStatus,
    decode_detail,
    format_dollars,
    format_fraction,
    risk_text,
)
from hftd.risk.market import MarketView
from hftd.runtime.daemon import _as_map
from hftd.strategy.daemon import StrategyAgent, StrategyService
from hftd.strategy.engine import StrategyEngine
from tests.support import DEFAULT_CONFIG, open_rings
from tests.unit.gateway_fixtures import PX
from tests.unit.test_gateway_core import Harness

CONTROL = {"control": {"open": 1, "accepted": 1, "limits_hit": 0}}  # the socket server's


def wire(detail: Any) -> dict[str, Any]:
    """`detail` as a reader gets it: through `Runtime.dispatch`, the control
    server (which adds ``listeners``) and msgpack."""
    info = StatusInfo(
        component="x",
        pid=1,
        state="running",
        uptime_s=1.0,
        detail={**_as_map(detail), "listeners": CONTROL},
    )
    reply = reply_decoder.decode(encoder.encode(Reply(ok=True, result=info)))
    out: dict[str, Any] = reply.result["detail"]
    return out


def required(kind: type[msgspec.Struct]) -> list[str]:
    """The wire names of `kind`'s fields without a default."""
    return [
        f.encode_name
        for f in msgspec.structs.fields(kind)
        if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
    ]


def traded_gateway() -> tuple[Harness, GatewayDetail]:
    """A GatewayCore that traded: a live order, a partly filled one, a position."""
    h = Harness()
    h.next_cl = ids.first_id(0, 1)  # ids as strategy instance 0 draws them
    h.order("B", 100)
    part = h.order("S", 300)
    h.fill(part, 100)
    cfg = load_config(DEFAULT_CONFIG)
    market = MarketView([s.symbol for s in cfg.symbols], lambda: 0.0)
    agreed = ReconcileStatus(state="agreed", first=3, last_seq=9, verified=7, problems=[])
    return h, gateway_detail(h.core, market, agreed, 2, 1)


def made_market() -> MarketView:
    return MarketView([s.symbol for s in load_config(DEFAULT_CONFIG).symbols], lambda: 0.0)


# --- the gateway: what the strategy's recovery and the monitor read -----------------


def test_a_traded_gateways_detail_round_trips_through_the_typed_decoder() -> None:
    _, detail = traded_gateway()
    raw = wire(detail)
    assert decode_detail(GatewayDetail, raw) == detail
    # the wire is the plain map it always was (old readers index it by key)
    assert raw["positions"]["positions"][0]["symbol"] == "AAPL"
    assert {w["state"] for w in raw["working"]} == {"live"}
    assert raw["reconcile"] == {
        "state": "agreed",
        "from": 3,
        "to": 9,
        "verified": 7,
        "problems": [],
    }
    assert raw["sent"] == 2 and raw["fills"] == 1 and raw["report_backlog"] == 2
    assert len(detail.working) == 2 and detail.positions.positions[0].qty == -100
    assert detail.recent_fills[0].qty == 100


def test_every_gateway_counter_is_in_the_detail() -> None:
    """A counter GatewayCore gains is not carried until GatewayDetail has a field
    for it (its builder names each one): this says which are missing."""
    fields = {f.name for f in msgspec.structs.fields(GatewayDetail)}
    assert set(Harness().core.counters) - fields == set()


def test_a_restarted_strategy_adopts_what_the_gateways_detail_says() -> None:
    """The recovery path (`StrategyService._recover`): the typed working orders and
    positions into the engine, routed to the strategy whose id each order carries."""
    _, made = traded_gateway()
    assert {ids.instance_of(w.cl_id) for w in made.working} == {0}
    detail = decode_detail(GatewayDetail, wire(made))
    assert detail is not None
    cfg = load_config(DEFAULT_CONFIG)
    engine = StrategyEngine(cfg, lambda c: True, lambda: 0)
    positions = {p.symbol: p.qty for p in detail.positions.positions}
    assert engine.adopt(detail.working, positions) == 2
    om = engine.contexts[0].om
    assert sorted((o.side, o.leaves) for o in om.orders.values()) == [("B", 100), ("S", 200)]
    assert om.positions["AAPL"] == -100  # mr1 trades AAPL; mom1 does not
    assert "AAPL" not in engine.contexts[1].om.positions


def test_risk_figures_and_pnl_per_share_ride_along_and_older_details_still_decode() -> None:
    """The risk limits' used/limit and a reducing fill's P&L per share are in the
    detail; a gateway older than them (neither field) still decodes, without them."""
    h, made = traded_gateway()  # bought 100 (working), sold 100 of 300: short 100
    sell = h.core.orders[h.next_cl - 1]
    h.fill(h.order("B", 40), 40, PX - 100)  # covers 40 of the short, $0.01 a share better
    detail = gateway_detail(h.core, made_market(), made.reconcile, 0, 0)
    assert [f.pnl_per_share for f in detail.recent_fills] == [None, 100.0]
    figures = detail.risk_figures
    assert figures["position.AAPL"] == RiskFigure(used=60, limit=2_000, unit="shares")
    assert figures["working"].used == len(h.core.orders) == 2 and sell.leaves == 200
    assert detail.risk == {k: f.fraction for k, f in figures.items()}
    raw = wire(detail)
    assert raw["risk_figures"]["loss"] == {
        "used": detail.positions.total,
        "limit": -500_000_000,
        "unit": "dollars",
    }
    assert decode_detail(GatewayDetail, raw) == detail
    del raw["risk_figures"]
    for f in raw["recent_fills"]:
        del f["pnl_per_share"]
    old = decode_detail(GatewayDetail, raw)
    assert old is not None and old.risk_figures == {}
    assert [f.pnl_per_share for f in old.recent_fills] == [None, None]


@pytest.mark.parametrize(
    ("fixed", "text"),
    [
        (0, "$0.00"),
        (-1_280_000, "-$128.00"),
        (-50_000 * 10_000, "-$50,000.00"),
        (12_345_678_949, "$1,234,567.89"),  # half a cent and less: down
        (12_345_678_950, "$1,234,567.90"),  # half a cent: away from zero
        (-49, "$0.00"),  # no "-$0.00"
        (-50, "-$0.01"),
    ],
)
def test_dollars_as_the_front_ends_show_them(fixed: int, text: str) -> None:
    assert format_dollars(fixed) == text


def test_risk_text_is_used_over_limit_in_the_limits_units() -> None:
    assert risk_text(RiskFigure(used=400, limit=1_000, unit="shares")) == "400/1,000"
    assert risk_text(RiskFigure(used=12, limit=1_000, unit="messages/s")) == "12/1,000"
    loss = RiskFigure(used=-1_280_000, limit=-50_000_000, unit="dollars")
    assert risk_text(loss) == "-$128.00 / -$5,000.00" and format_fraction(loss.fraction) == "2.6%"
    profit = RiskFigure(used=3_000_000, limit=-50_000_000, unit="dollars")
    assert risk_text(profit) == "$300.00 / -$5,000.00" and profit.fraction == 0.0


@pytest.mark.parametrize("field", required(GatewayDetail))
def test_a_gateway_detail_missing_any_field_is_refused_naming_it(field: str) -> None:
    raw = wire(traded_gateway()[1])
    del raw[field]
    with pytest.raises(StatusDetailError, match=f"^gateway Status detail: .*`{field}`"):
        decode_detail(GatewayDetail, raw)


@pytest.mark.parametrize("field", required(WorkingOrderStatus))
def test_a_working_order_missing_any_field_is_refused_naming_it(field: str) -> None:
    raw = wire(traded_gateway()[1])
    del raw["working"][1][field]
    with pytest.raises(StatusDetailError, match=rf"`{field}` - at `\$.working\[1\]`"):
        decode_detail(GatewayDetail, raw)


@pytest.mark.parametrize("field", required(PositionSnapshot))
def test_a_position_missing_any_field_is_refused_naming_it(field: str) -> None:
    raw = wire(traded_gateway()[1])
    del raw["positions"]["positions"][0][field]
    with pytest.raises(StatusDetailError, match=rf"`{field}` - at `\$.positions.positions\[0\]`"):
        decode_detail(GatewayDetail, raw)


def test_a_mistyped_field_is_refused_naming_it() -> None:
    raw = wire(traded_gateway()[1])
    raw["working"][0]["leaves"] = "100"
    with pytest.raises(StatusDetailError, match=r"Expected `int`, got `str` - at `\$.working\[0\]"):
        decode_detail(GatewayDetail, raw)


def test_a_starting_daemons_detail_is_none() -> None:
    """Nothing but the control socket's ``listeners``: the service has no detail yet."""
    for kind in DETAILS.values():
        assert decode_detail(kind, wire(None)) is None
        assert decode_detail(kind, {}) is None


# --- the services themselves (real agents on rings) ---------------------------------


@pytest.fixture
def cfg_rings(tmp_path: Path) -> Iterator[tuple[HftdConfig, dict[str, Ring]]]:
    with open_rings(tmp_path) as r:
        yield r


def test_each_service_makes_the_detail_its_readers_decode(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
) -> None:
    cfg, r = cfg_rings
    gw = GatewayService(cfg)
    feed = FeedService(cfg)
    strat = StrategyService(cfg)
    assert gw.status_detail() is None and feed.status_detail() is None
    assert strat.status_detail() is None  # no agent yet: a starting daemon
    gw.agent = GatewayAgent(cfg, r["orders"], r["executions"], r["risk_md"])
    feed.agent = FeedAgent(cfg, r["md"], r["risk_md"])
    strat.agent = StrategyAgent(cfg, r["md"], r["executions"], r["orders"])
    for name, svc, kind in (
        ("gateway", gw, GatewayDetail),
        ("feed", feed, FeedDetail),
        ("strategy", strat, StrategyDetail),
    ):
        detail = svc.status_detail()
        assert isinstance(detail, kind) and DETAILS[name] is kind
        assert decode_detail(kind, wire(detail), name) == detail
    gd = gw.status_detail()
    assert gd is not None and gd.reconcile == ReconcileStatus(state="verifying", problems=[])
    assert wire(gd)["reconcile"] == {"state": "verifying", "problems": []}


@pytest.mark.parametrize(
    ("kind", "field"),
    [(k, f) for k in (StrategyDetail, FeedDetail) for f in required(k)],
)
def test_a_strategy_or_feed_detail_missing_any_field_is_refused_naming_it(
    cfg_rings: tuple[HftdConfig, dict[str, Ring]],
    kind: type[StrategyDetail | FeedDetail],
    field: str,
) -> None:
    cfg, r = cfg_rings
    svc: FeedService | StrategyService
    if kind is FeedDetail:
        svc = FeedService(cfg)
        svc.agent = FeedAgent(cfg, r["md"], r["risk_md"])
    else:
        svc = StrategyService(cfg)
        svc.agent = StrategyAgent(cfg, r["md"], r["executions"], r["orders"])
    raw = wire(svc.status_detail())
    del raw[field]
    with pytest.raises(StatusDetailError, match=f"`{field}`"):
        decode_detail(kind, raw)
