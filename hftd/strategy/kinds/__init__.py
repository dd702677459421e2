"""The built-in strategy kinds: one module each, its config Struct beside its logic.

`BUILTIN` maps each kind's name (its config's tag) to its class; `BuiltinConfig`
is the union of their config Structs, tagged on `kind` (hftd.config decodes a
config's instances as this union, with the installed plug-ins' configs added).
"""

from __future__ import annotations

from typing import Any

from hftd.strategy.api import Strategy
from hftd.strategy.kinds.load import Load, LoadConfig
from hftd.strategy.kinds.market_maker import MarketMaker, MarketMakerConfig
from hftd.strategy.kinds.mean_reversion import MeanReversion, MeanReversionConfig
from hftd.strategy.kinds.momentum import Momentum, MomentumConfig

BuiltinConfig = MeanReversionConfig | MomentumConfig | MarketMakerConfig | LoadConfig

BUILTIN: dict[str, type[Strategy[Any]]] = {
    str(cls.Config.__struct_config__.tag): cls
    for cls in (MeanReversion, Momentum, MarketMaker, Load)
}

__all__ = [
    "BUILTIN",
    "BuiltinConfig",
    "Load",
    "LoadConfig",
    "MarketMaker",
    "MarketMakerConfig",
    "MeanReversion",
    "MeanReversionConfig",
    "Momentum",
    "MomentumConfig",
]
