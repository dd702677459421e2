"""Strategy kinds from outside the package (the "hftd.strategies" entry points).

A package registers a kind by name, pointing at a subclass of
`hftd.strategy.strategies.Strategy`:

    [project.entry-points."hftd.strategies"]
    breakout = "my_package:Breakout"

and a config names it (`kind = "breakout"`; its own parameters in `params`).
The built-in kinds win a name clash. A kind that cannot be loaded, or is not a
Strategy, is an error naming the kind and the package: the strategy daemon
refuses to start rather than run without one of its configured instances.
examples/hftd-example-strategy is a complete one; docs/strategies.md says how.
"""

from __future__ import annotations

from hftd.config import STRATEGY_ENTRY_POINTS
from hftd.strategy.strategies import KINDS, Strategy


class PluginError(ValueError):
    """A configured plug-in strategy kind that cannot be used."""


def strategy_class(kind: str) -> type[Strategy]:
    """The class of a built-in or installed strategy kind."""
    builtin = KINDS.get(kind)
    if builtin is not None:
        return builtin
    # imported only for a plug-in: importlib.metadata pulls in email and socket,
    # which a pure module must not (tests/unit/test_purity.py)
    from importlib.metadata import entry_points

    found = [e for e in entry_points(group=STRATEGY_ENTRY_POINTS) if e.name == kind]
    if not found:
        raise PluginError(f"strategy kind {kind!r} is neither built in nor installed")
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
    return cls
