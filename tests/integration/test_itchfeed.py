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
    "open_eligibility": "open_eligibility_status",
    "min_allowable_price": "minimum_allowable_price",
    "max_allowable_price": "maximum_allowable_price",
    "lower_price_collar": "lower_price_range_collar",
    "upper_price_collar": "upper_price_range_collar",
    "release_time": "ipo_release_time",
    "release_qualifier": "ipo_release_qualifier",
}
# Where one hftd name maps to different itchfeed names by message type.
TYPE_RENAMES = {
    ("MwcbDeclineLevel", "level1"): "level1_price",
    ("MwcbDeclineLevel", "level2"): "level2_price",
    ("MwcbDeclineLevel", "level3"): "level3_price",
    ("LuldAuctionCollar", "reference_price"): "auction_collar_reference_price",
    ("LuldAuctionCollar", "upper_price"): "upper_auction_collar_price",
    ("LuldAuctionCollar", "lower_price"): "lower_auction_collar_price",
    ("LuldAuctionCollar", "extension"): "auction_collar_extention",
    ("OperationalHalt", "action"): "operational_halt_action",
    ("Noii", "reference_price"): "current_reference_price",
}


def assert_same(ours: itch.ItchMessage, theirs: Any) -> None:
    """Every field of our decoded message equals itchfeed's raw attribute."""
    assert not isinstance(ours, itch.Unknown), theirs
    for name in msgspec.structs.fields(ours):
        mine = getattr(ours, name.name)
        key = (type(ours).__name__, name.name)
        other = getattr(theirs, TYPE_RENAMES.get(key) or RENAMES.get(name.name, name.name))
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


def test_itchfeed_agrees_on_every_itch_5_type() -> None:
    """The layouts of the types the real sample does not carry (V W K J h Q B I N O)
    are locked against an independent parser too."""
    from tests.unit.test_wire import EVERY_ITCH_TYPE

    parser = parser_mod.MessageParser()
    for m in EVERY_ITCH_TYPE:
        raw = itch.encode(m)
        theirs = parser.get_message_type(raw)
        assert_same(m, theirs)
        assert theirs.to_bytes() == raw


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
