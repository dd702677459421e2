"""Config loading: every problem reported with its path; the default file is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from hftd.config import ConfigError, load_config, parse_config, to_fixed
from tests.support import DEFAULT_CONFIG


def test_default_config_loads() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    assert [s.symbol for s in cfg.symbols] == ["AAPL", "MSFT", "GOOG", "AMZN"]
    assert all(s.reference_price_fp > 0 for s in cfg.symbols)
    assert (cfg.exchange.order_port, cfg.exchange.md_port) == (9000, 9001)
    assert cfg.exchange.host == "127.0.0.1"


def test_every_error_is_reported_with_its_path() -> None:
    bad = {
        "symbols": [
            {"symbol": "aapl", "reference_price": "1.00001", "bogus": 1},
            {"symbol": "MSFT"},
        ],
        "exchange": {
            "order_port": 0,
            "flow": {"cancel_ratio": 2},
            "ack_latency": {"kind": "gamma"},
        },
        "nonsense": {},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    errors = info.value.errors
    for path in (
        "symbols[0].bogus",
        "symbols[0].symbol",
        "symbols[0].reference_price",
        "symbols[1].reference_price",
        "exchange.order_port",
        "exchange.flow.cancel_ratio",
        "exchange.ack_latency.kind",
        "nonsense",
    ):
        assert any(e.startswith(path + ":") for e in errors), (path, errors)


def test_cross_field_problems() -> None:
    bad = {
        "symbols": [
            {"symbol": "X", "reference_price": "1.005"},
            {"symbol": "X", "reference_price": "1.00"},
        ],
        "exchange": {
            "md_port": 9000,
            "users": [{"username": "A", "password": "p"}, {"username": "A", "password": "q"}],
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    text = str(info.value)
    assert "duplicate symbol 'X'" in text
    assert "symbols[0].reference_price: must be a multiple of tick_size" in text
    assert "exchange.md_port: must differ from order_port" in text
    assert "duplicate username 'A'" in text


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    p = tmp_path / "bad.toml"
    p.write_text("symbols = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_config_is_frozen() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    with pytest.raises(AttributeError):
        cfg.exchange.order_port = 1  # type: ignore[misc]


def test_to_fixed() -> None:
    assert to_fixed("189.5") == 1_895_000
    assert to_fixed("0.0001") == 1
    with pytest.raises(ValueError):
        to_fixed("1.00001")


# --- [venue]: where the clients connect; running without the simulator --------------


def _default(**over: object) -> dict[str, object]:
    import tomllib

    data: dict[str, object] = tomllib.loads(DEFAULT_CONFIG.read_text())
    for key, value in over.items():
        section = data.setdefault(key, {})
        assert isinstance(section, dict) and isinstance(value, dict)
        for k, v in value.items():
            if isinstance(v, dict) and isinstance(section.get(k), dict):
                section[k] = {**section[k], **v}
            else:
                section[k] = v
    return data


def test_the_clients_use_the_simulator_by_default() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.simulator_runs()
    a = cfg.venue_address()
    assert (a.host, a.order_port, a.md_port, a.session) == ("127.0.0.1", 9000, 9001, "HFTD000001")
    assert a.heartbeat_timeout_s == 15.0
    # the simulator listening on every address: the clients connect to loopback
    cfg = parse_config(_default(exchange={"host": "0.0.0.0", "order_port": 7000}))
    a = cfg.venue_address()
    assert (a.host, a.order_port) == ("127.0.0.1", 7000)


def test_without_the_simulator_the_venue_is_given_and_nothing_waits_for_it() -> None:
    off = {"exchange": {"enabled": False}}
    venue = {"host": "10.1.2.3", "order_port": 15000, "md_port": 15001}
    cfg = parse_config(_default(daemons=off, venue=venue))
    assert not cfg.simulator_runs()
    a = cfg.venue_address()
    assert (a.host, a.order_port, a.md_port, a.session) == ("10.1.2.3", 15000, 15001, "")
    assert a.heartbeat_timeout_s == 15.0  # SoupBinTCP's, not the simulator's setting
    # feed and gateway come "after" the exchange in the default file: not any more
    assert cfg.daemons["feed"].after == [] and cfg.daemons["gateway"].after == []
    assert cfg.daemons["strategy"].after == ["feed", "gateway"]
    assert "exchange" not in cfg.start_order()
    assert cfg.start_order().index("strategy") > cfg.start_order().index("gateway")


def test_without_the_simulator_a_venue_address_is_required() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_default(daemons={"exchange": {"enabled": False}}, venue={"port": 1}))
    text = "\n".join(e.value.errors)
    assert "venue.port: unknown field" in text
    with pytest.raises(ConfigError) as e:
        parse_config(_default(daemons={"exchange": {"enabled": False}}))
    assert sorted(e.value.errors) == [
        f"venue.{k}: required without the simulator (daemons.exchange is disabled or not "
        "configured): where the feed and the gateway connect"
        for k in ("host", "md_port", "order_port")
    ]
    assert not [x for x in e.value.errors if "is disabled" in x and "after" in x]


def test_a_venue_other_than_the_running_simulator_is_refused() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(_default(venue={"order_port": 9100, "md_port": 9000, "session": "OTHER"}))
    text = "\n".join(e.value.errors)
    assert "venue.order_port: 9100, but the simulator (daemons.exchange) serves 9000" in text
    assert "venue.md_port: 9000, but the simulator" in text
    assert "venue.session: 'OTHER', but the simulator" in text
    # the same values as the simulator's, or a blank session, are fine
    cfg = parse_config(_default(venue={"order_port": 9000, "host": "localhost", "session": ""}))
    a = cfg.venue_address()
    assert (a.host, a.order_port, a.session) == ("localhost", 9000, "")
    off = {"exchange": {"enabled": False}}
    with pytest.raises(ConfigError) as e:
        parse_config(_default(daemons=off, venue={"host": "h", "order_port": 5, "md_port": 5}))
    assert e.value.errors == ["venue.md_port: must differ from order_port"]
    with pytest.raises(ConfigError) as e:
        parse_config(_default(venue={"session": "x" * 11, "order_port": 0}))
    assert sorted(x.split(":")[0] for x in e.value.errors) == ["venue.order_port", "venue.session"]
