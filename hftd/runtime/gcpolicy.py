"""When the cyclic garbage collector may run in a hot daemon: in idle moments.

CPython collects generation 0 whenever tracked allocations minus deallocations
pass a threshold (700 by default), in whichever thread allocates: in the middle
of a message, and the older generations every 10th time. Most hot-path objects
die young by reference counting (msgspec Structs with ``gc=False`` are not even
tracked), so a collection finds almost nothing to free; it is pure pause. The
policy here, for a process whose hot loop has idle moments:

- `settle()`, once the daemon is READY: a full collection, then `gc.freeze()`
  (everything alive now lives for the whole run: no collection walks it again),
  and automatic thresholds raised to a backstop: an automatic collection runs
  only if the process allocates `backstop` net tracked objects without one idle
  moment (a saturated loop still has its memory bounded).
- `idle_collect()`, from the hot loop's idle branch: collects the young
  generation once it holds `young` objects (200 by default: a pause of a few
  tens of µs, at a moment nothing waits; bench/bench_alloc.py --young), the
  middle one every `middle_every` young collections, and instead of a young
  one, at most every `full_every_s` seconds, the old one (what was promoted
  since the last freeze), freezing its survivors again so that no collection
  ever walks a long-lived heap. Costs one `gc.get_count()` when there is
  nothing to do.

Trade-off of re-freezing: an object frozen while alive that later becomes part
of a garbage *cycle* is never collected (reference counting still frees
everything else). Hot-path state (books, orders, positions) holds no cycles;
`refreeze=False` keeps the old generation collectable instead.

Before `settle()` (or after `restore()`), `idle_collect()` does nothing, so a
hot loop may call it unconditionally.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GcPolicy", "GcStats", "active", "idle_collect", "restore", "settle", "stats"]


@dataclass
class GcStats:
    """What the policy did and what the collector did anyway (any thread)."""

    idle_collections: list[int] = field(default_factory=lambda: [0, 0, 0])  # by generation
    auto_collections: list[int] = field(default_factory=lambda: [0, 0, 0])  # not ours
    max_idle_pause_ns: int = 0
    max_auto_pause_ns: int = 0
    freezes: int = 0
    frozen: int = 0  # objects in the permanent generation after the last freeze

    def as_dict(self) -> dict[str, Any]:
        return {
            "idle_collections": list(self.idle_collections),
            "auto_collections": list(self.auto_collections),
            "max_idle_pause_us": self.max_idle_pause_ns / 1e3,
            "max_auto_pause_us": self.max_auto_pause_ns / 1e3,
            "freezes": self.freezes,
            "frozen": self.frozen,
        }


class GcPolicy:
    """Thresholds and state of the idle-time collection (see the module docstring)."""

    def __init__(
        self,
        *,
        young: int = 200,
        middle_every: int = 10,
        full_every_s: float = 60.0,
        backstop: int = 100_000,
        refreeze: bool = True,
    ) -> None:
        if young <= 0 or middle_every <= 0 or backstop <= young or full_every_s <= 0:
            raise ValueError("young > 0, middle_every > 0, full_every_s > 0, backstop > young")
        self.young = young
        self.middle_every = middle_every
        self.full_every_ns = int(full_every_s * 1e9)
        self.backstop = backstop
        self.refreeze = refreeze
        self.stats = GcStats()
        self.next_full_ns = 0
        self._young_done = 0  # young collections since the last middle one
        self._saved_threshold: tuple[int, int, int] | None = None
        self._in_idle = False
        self._t0 = 0

    # --- lifecycle ---------------------------------------------------------------------

    def settle(self, now_ns: int | None = None) -> None:
        """Collect everything, freeze what is left, raise the automatic thresholds."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        if self._saved_threshold is None:
            self._saved_threshold = gc.get_threshold()
        if self._on_gc in gc.callbacks:  # settled again: not a collection to count
            gc.callbacks.remove(self._on_gc)
        gc.collect()
        self._freeze()
        gc.callbacks.append(self._on_gc)  # counts what happens from now on
        # middle and old thresholds stay CPython's: only a backstop collection counts
        gc.set_threshold(self.backstop, 10, 10)
        self.next_full_ns = now + self.full_every_ns
        self._young_done = 0

    def restore(self) -> None:
        """Back to CPython's thresholds; frozen objects stay frozen (gc.unfreeze if wanted)."""
        if self._saved_threshold is not None:
            gc.set_threshold(*self._saved_threshold)
            self._saved_threshold = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    # --- the idle branch ---------------------------------------------------------------

    def idle_collect(self, now_ns: int | None = None) -> int:
        """Collect what is due, in an idle moment; returns 1 if it collected, else 0."""
        if gc.get_count()[0] < self.young:
            return 0
        now = time.monotonic_ns() if now_ns is None else now_ns
        if now >= self.next_full_ns:
            self.next_full_ns = now + self.full_every_ns
            self._collect(2)
            if self.refreeze:
                self._freeze()
            self._young_done = 0
            return 1
        self._young_done += 1
        if self._young_done >= self.middle_every:
            self._young_done = 0
            self._collect(1)
        else:
            self._collect(0)
        return 1

    def _collect(self, generation: int) -> None:
        self._in_idle = True
        try:
            gc.collect(generation)
        finally:
            self._in_idle = False

    def _freeze(self) -> None:
        gc.freeze()
        self.stats.freezes += 1
        self.stats.frozen = gc.get_freeze_count()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        """gc.callbacks: counts and times every collection, ours and automatic ones."""
        if phase == "start":
            self._t0 = time.perf_counter_ns()
            return
        pause = time.perf_counter_ns() - self._t0
        gen = info.get("generation", 2)
        s = self.stats
        if self._in_idle:
            s.idle_collections[gen] += 1
            s.max_idle_pause_ns = max(s.max_idle_pause_ns, pause)
        else:
            s.auto_collections[gen] += 1
            s.max_auto_pause_ns = max(s.max_auto_pause_ns, pause)


_active: GcPolicy | None = None


def settle(policy: GcPolicy | None = None, now_ns: int | None = None) -> GcPolicy:
    """Call once the daemon is READY (start-up garbage is gone, long-lived state
    built): collect, freeze, raise thresholds; `idle_collect` acts from now on."""
    global _active
    p = policy if policy is not None else (_active or GcPolicy())
    if _active is not None and _active is not p:
        _active.restore()
    p.settle(now_ns)
    _active = p
    return p


def idle_collect(now_ns: int | None = None) -> int:
    """For a hot loop's idle branch: 1 if it collected (look for work again), else 0.
    Nothing to do, or no `settle()` yet: one `gc.get_count()` call."""
    p = _active
    return p.idle_collect(now_ns) if p is not None else 0


def restore() -> None:
    """Undo `settle()` (tests, a daemon going back to start-up)."""
    global _active
    if _active is not None:
        _active.restore()
        _active = None


def active() -> GcPolicy | None:
    return _active


def stats() -> dict[str, Any]:
    """For a daemon's Status: collections by kind and generation, longest pauses."""
    return _active.stats.as_dict() if _active is not None else {}
