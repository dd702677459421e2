"""hftd.runtime.gcpolicy: the collector runs in idle moments, not mid-message."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hftd.runtime import gcpolicy
from hftd.runtime.gcpolicy import GcPolicy


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture(autouse=True)
def _gc_state() -> Iterator[None]:
    """Each test starts and ends with the interpreter's own collector settings."""
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    enabled = gc.isenabled()
    gc.enable()
    yield
    gcpolicy.restore()
    gc.set_threshold(*threshold)
    if not frozen:
        gc.unfreeze()
    if not enabled:
        gc.disable()


def _grow(n: int) -> list[list[int]]:
    """n tracked objects kept alive: gen-0 count rises by about n."""
    return [[i] for i in range(n)]


def test_idle_collect_does_nothing_before_settle() -> None:
    assert gcpolicy.active() is None
    keep = _grow(5000)
    before = gc.get_count()[0]
    assert gcpolicy.idle_collect() == 0
    assert gc.get_count()[0] >= before  # no collection reset it
    assert gcpolicy.stats() == {}
    del keep


def test_settle_freezes_the_heap_and_raises_the_automatic_threshold() -> None:
    p = gcpolicy.settle(GcPolicy(young=500, backstop=50_000))
    assert gcpolicy.active() is p
    assert gc.get_threshold()[0] == 50_000
    assert gc.get_freeze_count() > 0
    assert p.stats.freezes == 1
    assert p.stats.frozen == gc.get_freeze_count()
    gcpolicy.restore()
    assert gc.get_threshold()[0] != 50_000
    assert gcpolicy.active() is None


def test_nothing_due_means_no_collection() -> None:
    p = gcpolicy.settle(GcPolicy(young=100_000, backstop=200_000))
    assert p.idle_collect() == 0
    assert p.stats.idle_collections == [0, 0, 0]


def test_young_generation_collected_once_it_holds_young_objects() -> None:
    p = gcpolicy.settle(GcPolicy(young=1000, middle_every=100, backstop=100_000))
    keep = _grow(1500)
    assert gc.get_count()[0] >= 1000
    assert gcpolicy.idle_collect() == 1
    assert p.stats.idle_collections == [1, 0, 0]
    assert gc.get_count()[0] < 1000
    assert p.stats.auto_collections == [0, 0, 0]
    del keep


def test_every_middle_every_th_idle_collection_takes_generation_1() -> None:
    p = gcpolicy.settle(GcPolicy(young=200, middle_every=3, backstop=100_000))
    keep = []
    for _ in range(3):
        keep.append(_grow(300))
        assert p.idle_collect() == 1
    assert p.stats.idle_collections == [2, 1, 0]


def test_full_collection_when_due_frees_cycles_and_refreezes() -> None:
    p = gcpolicy.settle(GcPolicy(young=100, full_every_s=60.0, backstop=100_000), now_ns=0)
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    keep = _grow(200)
    frozen = gc.get_freeze_count()
    assert p.idle_collect(now_ns=10**9) == 1  # not due yet: a young collection
    assert p.stats.idle_collections[2] == 0
    keep2 = _grow(200)
    assert p.idle_collect(now_ns=61 * 10**9) == 1  # due: the old generation
    assert p.stats.idle_collections[2] == 1
    assert ref() is None
    assert p.stats.freezes == 2
    assert gc.get_freeze_count() >= frozen + 200  # the survivors are frozen too
    assert p.next_full_ns == 121 * 10**9
    del keep, keep2


def test_refreeze_off_leaves_survivors_collectable() -> None:
    p = gcpolicy.settle(GcPolicy(young=100, backstop=100_000, refreeze=False), now_ns=0)
    frozen = gc.get_freeze_count()
    keep = _grow(300)
    assert p.idle_collect(now_ns=61 * 10**9) == 1
    assert p.stats.idle_collections[2] == 1
    assert gc.get_freeze_count() == frozen
    del keep


def test_collections_outside_idle_moments_are_counted_as_automatic() -> None:
    p = gcpolicy.settle(GcPolicy(young=1000, backstop=100_000))
    gc.collect(0)
    assert p.stats.auto_collections == [1, 0, 0]
    assert p.stats.idle_collections == [0, 0, 0]
    assert gcpolicy.stats()["auto_collections"] == [1, 0, 0]


def test_settle_again_replaces_the_active_policy() -> None:
    first = gcpolicy.settle(GcPolicy(backstop=60_000))
    second = gcpolicy.settle(GcPolicy(backstop=70_000))
    assert gcpolicy.active() is second
    assert gc.get_threshold()[0] == 70_000
    assert first._on_gc not in gc.callbacks
    assert second._on_gc in gc.callbacks


@pytest.mark.parametrize(
    "kwargs",
    [{"young": 0}, {"middle_every": 0}, {"full_every_s": 0.0}, {"young": 10, "backstop": 10}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        GcPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_hot_loop_collects_in_its_idle_moments_only() -> None:
    """HotLoop calls idle_collect when its agent has nothing to do: the agent's
    garbage is collected there, never by an automatic collection mid-work."""
    import time

    from hftd.runtime.hotloop import HotLoop

    class Agent:
        def __init__(self) -> None:
            self.batches = 0
            self.keep: list[list[list[int]]] = []

        def do_work(self) -> int:
            if self.batches >= 20:
                return 0
            self.batches += 1
            self.keep.append(_grow(150))  # tracked objects that outlive the unit of work
            return 1 if self.batches % 2 else 0  # idle after every second batch

        def wait_fds(self) -> list[int]:
            return []

        def next_timer_s(self) -> float:
            return 0.001

    p = gcpolicy.settle(GcPolicy(young=200, backstop=100_000))
    agent = Agent()
    loop = HotLoop("test", agent, [], "sleep")
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while (agent.batches < 20 or sum(p.stats.idle_collections) < 5) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
    finally:
        loop.stop()
    assert agent.batches == 20
    assert sum(p.stats.idle_collections) >= 5
    assert p.stats.auto_collections == [0, 0, 0]
