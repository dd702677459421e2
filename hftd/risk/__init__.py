"""Pre-trade risk: pure checks and state, no I/O (used by the gateway, strategy, backtests)."""

from hftd.risk.engine import (
    ACCEPT,
    ACTIVE,
    CHECKS,
    HALTED,
    REDUCING,
    Decision,
    RiskEngine,
    RiskMode,
    RiskStatistics,
)
from hftd.risk.limits import (
    PRICE_SCALE,
    EffectiveLimits,
    RiskLimits,
    SymbolLimits,
    dollars,
    format_money,
)

__all__ = [
    "ACCEPT",
    "ACTIVE",
    "CHECKS",
    "HALTED",
    "PRICE_SCALE",
    "REDUCING",
    "Decision",
    "EffectiveLimits",
    "RiskEngine",
    "RiskLimits",
    "RiskMode",
    "RiskStatistics",
    "SymbolLimits",
    "dollars",
    "format_money",
]
