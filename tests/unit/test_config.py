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
