"""The independent `itchfeed` parser (PyPI) agrees with hftd's ITCH, message for message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from hftd.wire import itch, ouch
from tests.support import ITCH_FILE, SoupClient, make_config, start_daemon

parser_mod = pytest.importorskip("itch.parser")

# hftd field name -> itchfeed attribute name, where they differ.
RENAMES = {
    "order_ref": "order_reference_number",
    "original_ref": "order_reference_number",
    "new_ref": "new_order_reference_number",
    "side": "buy_sell_indicator",
    "financial_status": "financial_status_indicator",
    "short_sale_threshold": "short_sale_threshold_indicator",
    "luld_tier": "luld_ref",
    "etp_leverage": "etp_leverage_factor",
    "inverse": "inverse_indicator",
    "participant_state": "market_participant_state",
    "action": "reg_sho_action",
}


def assert_same(ours: itch.ItchMessage, theirs: Any) -> None:
    """Every field of our decoded message equals itchfeed's raw attribute."""
    assert not isinstance(ours, itch.Unknown), theirs
    for name in msgspec.structs.fields(ours):
        mine = getattr(ours, name.name)
        other = getattr(theirs, RENAMES.get(name.name, name.name))
        if isinstance(other, bytes):  # itchfeed keeps alpha padding; hftd strips it
            other = other.decode("latin-1").rstrip(" ")
            mine = mine.rstrip(" ")
        assert mine == other, (type(ours).__name__, name.name, mine, other)


def test_itchfeed_matches_on_the_real_nasdaq_file() -> None:
    parser = parser_mod.MessageParser()
    with open(ITCH_FILE, "rb") as f:
        theirs = list(parser.parse_file(f))
    ours = [itch.decode(m) for m in itch.iter_binary_file(ITCH_FILE.read_bytes())]
    assert len(theirs) == len(ours) == 10_000
    for a, b in zip(ours, theirs, strict=True):
        assert_same(a, b)


def test_itchfeed_decodes_the_live_stream(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"exchange": {"flow": {"arrival_rate_per_s": 400.0}}})
    parser = parser_mod.MessageParser()
    with start_daemon("exchange", cfg) as d:
        # Some replaces and partial cancels of our own, so U and X appear for sure.
        trader = SoupClient(d.config["exchange"]["order_port"])
        for ref in range(1, 6):
            trader.send_unsequenced(
                ouch.encode_inbound(
                    ouch.EnterOrder(ref * 3, "B", 500, "MSFT", 4_000_000 + ref * 100)
                )
            )
            trader.send_unsequenced(
                ouch.encode_inbound(
                    ouch.ReplaceOrder(ref * 3, ref * 3 + 1, 400, 3_990_000 + ref * 100)
                )
            )
            trader.send_unsequenced(ouch.encode_inbound(ouch.CancelOrder(ref * 3 + 1, 100)))
        md = SoupClient(d.config["exchange"]["md_port"], "FEED", "feed", sequence=1)
        seen: dict[str, int] = {}
        expect_seq = 1
        wanted = {"S", "R", "H", "A", "E", "X", "D", "U"}
        while not wanted <= set(seen) or sum(seen.values()) < 3000:
            ev = md.sequenced(timeout=20)
            assert ev.sequence == expect_seq
            expect_seq += 1
            theirs = parser.get_message_type(ev.payload)
            ours = itch.decode(ev.payload)
            assert_same(ours, theirs)
            assert theirs.to_bytes() == ev.payload == itch.encode(ours)
            kind = chr(ev.payload[0])
            seen[kind] = seen.get(kind, 0) + 1
