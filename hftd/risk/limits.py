"""Pre-trade risk limits: frozen msgspec Structs, ready to embed in the TOML config.

Units (all integers):
- shares for positions and order sizes;
- money in 4-decimal fixed-point dollars, the same units as prices: a
  notional is ``qty * price`` ($189.50 x 100 shares = 1_895_000 * 100 =
  189_500_000 = $18,950.0000). Write money limits with `dollars()`:
  ``max_order_notional = dollars(250_000)``; in TOML, as the integer it
  returns (``2_500_000_000`` for $250,000);
- basis points for price bands (100 bps = 1 %).

`SymbolLimits` overrides any of the per-symbol limits for one symbol (None =
use the global value); `RiskLimits.for_symbol` resolves the overrides into an
`EffectiveLimits`.

This module imports nothing from hftd: hftd.config embeds these Structs, so an
import the other way would be circular.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec

from hftd.msg.hot import PRICE_SCALE as PRICE_SCALE  # 4 implied decimals

CENT = PRICE_SCALE // 100  # $0.01 in fixed point

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
SymbolName = Annotated[str, msgspec.Meta(min_length=1, max_length=8, pattern=r"^[A-Z][A-Z0-9.]*$")]


def dollars(whole: int) -> int:
    """Whole dollars -> fixed-point money (`dollars(5)` == 50_000)."""
    return whole * PRICE_SCALE


def format_money(value: int) -> str:
    """Fixed-point money or price -> "-1,234.5000" (exact, no floats)."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), PRICE_SCALE)
    return f"{sign}{whole:,}.{frac:04d}"


class SymbolLimits(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Per-symbol overrides; a None field means "use the global limit"."""

    max_position: PositiveInt | None = None  # |net position|, shares
    max_order_qty: PositiveInt | None = None  # shares per order
    max_order_notional: PositiveInt | None = None  # qty * price, fixed-point dollars
    price_band_bps: PositiveInt | None = None  # limit price vs last trade, basis points


class EffectiveLimits(msgspec.Struct, frozen=True, gc=False):
    """The per-symbol limits in force for one symbol (overrides resolved)."""

    max_position: int
    max_order_qty: int
    max_order_notional: int
    price_band_bps: int


class RiskLimits(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Global risk limits, with per-symbol overrides in `symbols`.

    Every limit is inclusive: a value equal to the limit passes, one unit past
    it fails. The exception is `daily_loss_limit`, a stop level: trading stops
    when P&L reaches it (``pnl <= -daily_loss_limit``).
    """

    # per symbol (overridable in `symbols`)
    max_position: PositiveInt = 5_000
    max_order_qty: PositiveInt = 1_000
    max_order_notional: PositiveInt = 250_000 * PRICE_SCALE  # $250,000
    price_band_bps: PositiveInt = 500  # 5 % around the last trade
    # account wide
    max_gross_position: PositiveInt = 20_000  # sum over symbols of |position|, shares
    max_net_position: PositiveInt = 20_000  # |sum over symbols of position|, shares
    max_exposure_notional: PositiveInt = 5_000_000 * PRICE_SCALE  # sum |position| x last price
    max_messages_per_s: PositiveInt = 1_000  # new + replace + cancel messages in any 1 s
    max_orders_per_s: PositiveInt = 100  # new orders + replaces in any 1 s window
    max_working_orders: PositiveInt = 200  # open orders across all symbols
    daily_loss_limit: PositiveInt = 50_000 * PRICE_SCALE  # $50,000 realized + unrealized
    symbols: dict[SymbolName, SymbolLimits] = msgspec.field(default_factory=dict)

    def for_symbol(self, symbol: str) -> EffectiveLimits:
        """The limits in force for `symbol`: its overrides, else the globals."""
        o = self.symbols.get(symbol)
        if o is None:
            return EffectiveLimits(
                self.max_position, self.max_order_qty, self.max_order_notional, self.price_band_bps
            )
        return EffectiveLimits(
            self.max_position if o.max_position is None else o.max_position,
            self.max_order_qty if o.max_order_qty is None else o.max_order_qty,
            self.max_order_notional if o.max_order_notional is None else o.max_order_notional,
            self.price_band_bps if o.price_band_bps is None else o.price_band_bps,
        )

    def problems(self) -> Iterator[str]:
        """Cross-field checks (same contract as hftd.config's `problems()`)."""
        for sym, o in self.symbols.items():
            pos = self.max_position if o.max_position is None else o.max_position
            if pos > self.max_gross_position:
                yield (
                    f"symbols.{sym}.max_position: {pos} exceeds max_gross_position "
                    f"{self.max_gross_position}"
                )
        if self.max_position > self.max_gross_position:
            yield (
                f"max_position: {self.max_position} exceeds max_gross_position "
                f"{self.max_gross_position}"
            )
