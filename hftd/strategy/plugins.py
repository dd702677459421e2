"""Strategy kinds: the built-in ones and those installed packages register under
the "hftd.strategies" entry point group.

A package registers a kind by name, pointing at its `Strategy` subclass:

    [project.entry-points."hftd.strategies"]
    breakout = "my_package:Breakout"

The class's config Struct (`Strategy[BreakoutConfig]`) is tagged with the same
name (`class BreakoutConfig(StrategyParams, tag="breakout")`), and a config
names the kind as a built-in one: `kind = "breakout"`, its fields beside the
common ones. The built-in kinds win a name clash. A kind that cannot be loaded,
is not a Strategy, or whose config is not tagged with its name, is an error
naming the kind and the package: the config is refused (hftd.config validates
an instance against its kind's config Struct, so it loads the plug-in).
examples/hftd-example-strategy is a complete one; docs/strategies.md says how.
"""

from __future__ import annotations

from typing import Any

from hftd.strategy.api import Strategy, StrategyParams
from hftd.strategy.kinds import BUILTIN

STRATEGY_ENTRY_POINTS = "hftd.strategies"  # the group a package registers its kinds in
BUILTIN_STRATEGIES = tuple(BUILTIN)


class PluginError(ValueError):
    """A configured plug-in strategy kind that cannot be used."""


class UnknownKind(PluginError):
    """Neither built in nor installed; `known` lists the kinds that are."""

    def __init__(self, kind: str, known: list[str]) -> None:
        self.kind = kind
        self.known = known
        super().__init__(f"unknown strategy kind {kind!r} (known: {', '.join(known)})")


def strategy_kinds() -> list[str]:
    """The strategy kinds a config may name: the built-in ones, then those installed
    packages register (by name: nothing of theirs is imported to list them).
    Not cached: a package installed while daemons run is seen at the next reload."""
    # imported only here: importlib.metadata pulls in email and socket, which a pure
    # module must not (tests/unit/test_purity.py); and takes ~50 ms
    from importlib.metadata import entry_points

    extra = sorted({e.name for e in entry_points(group=STRATEGY_ENTRY_POINTS)})
    return [*BUILTIN_STRATEGIES, *(k for k in extra if k not in BUILTIN)]


def strategy_class(kind: str) -> type[Strategy[Any]]:
    """The class of a built-in or installed strategy kind (UnknownKind, PluginError)."""
    builtin = BUILTIN.get(kind)
    if builtin is not None:
        return builtin
    from importlib.metadata import entry_points

    found = [e for e in entry_points(group=STRATEGY_ENTRY_POINTS) if e.name == kind]
    if not found:
        raise UnknownKind(kind, strategy_kinds())
    if len(found) > 1:  # never pick one at random
        who = ", ".join(f"{e.value} ({e.dist.name if e.dist else '?'})" for e in found)
        raise PluginError(f"strategy kind {kind!r} is registered twice: {who}")
    ep = found[0]
    where = f"{ep.value} ({ep.dist.name if ep.dist else 'unknown package'})"
    try:
        cls = ep.load()
    except Exception as exc:  # whatever the package raises on import: say which
        raise PluginError(f"strategy kind {kind!r}: cannot load {where}: {exc!r}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise PluginError(f"strategy kind {kind!r}: {where} is not a Strategy subclass")
    config = cls.Config
    if config is StrategyParams or not issubclass(config, StrategyParams):
        raise PluginError(
            f"strategy kind {kind!r}: {where} names no config Struct of its own: "
            f"subclass Strategy[YourConfig], YourConfig a StrategyParams tagged {kind!r}"
        )
    tag = config.__struct_config__.tag
    if tag != kind:
        raise PluginError(
            f"strategy kind {kind!r}: {where}'s config {config.__name__} is tagged {tag!r}: "
            f"declare it `class {config.__name__}(StrategyParams, tag={kind!r})`"
        )
    return cls


def config_class(kind: str) -> type[StrategyParams]:
    """The config Struct of a built-in or installed kind (UnknownKind, PluginError)."""
    return strategy_class(kind).Config
