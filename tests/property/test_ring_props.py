"""Property test: the ring against a deque model, over random operation sequences.

The model knows nothing of the buffer: it keeps the records in flight in a
deque and computes whether a write fits from the documented record size and
wrap rule alone (a record of ``size`` bytes goes at ``head`` if it fits before
the end of the buffer, else at the start of the next lap; it fits if its end
is within ``capacity`` of ``tail``). After every operation the ring must agree:
the same records in order (no loss, no duplicate), full exactly when the model
has no space, the same indexes and counters, and ``last_committed`` after a
producer restart.

Profiles: derandomized by default (reproducible, ~10 s). Set
``HFTD_RING_FUZZ=1`` for a randomized run with 10x the examples.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftd.ipc.ring import Ring, record_size

FUZZ = os.environ.get("HFTD_RING_FUZZ") == "1"
_names = itertools.count()

Op = tuple[str, int]


@dataclass
class Model:
    capacity: int
    head: int = 0
    tail: int = 0
    pos: int = 0
    full: int = 0
    unread: deque[tuple[int, bytes]] = field(default_factory=deque)  # (end position, payload)
    uncommitted: list[tuple[int, bytes]] = field(default_factory=list)  # read, not committed
    last: bytes | None = None

    def write(self, payload: bytes) -> bool:
        size = record_size(len(payload))
        start = self.head
        if start % self.capacity + size > self.capacity:
            start = (start // self.capacity + 1) * self.capacity
        if start + size - self.tail > self.capacity:
            self.full += 1
            return False
        self.head = start + size
        self.unread.append((self.head, payload))
        self.last = payload
        return True

    def read(self) -> bytes | None:
        if not self.unread:
            return None
        end, payload = self.unread.popleft()
        self.uncommitted.append((end, payload))
        self.pos = end
        return payload

    def commit(self) -> None:
        self.tail = self.pos
        self.uncommitted.clear()

    def restart_consumer(self) -> None:
        """Back to the committed position: read-but-uncommitted records come again."""
        self.unread.extendleft(reversed(self.uncommitted))
        self.uncommitted.clear()
        self.pos = self.tail


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, list[Op]]:
    capacity = draw(st.sampled_from([64, 128, 256, 1024]))
    max_payload = capacity // 4
    size = st.one_of(
        st.just(0),
        st.integers(0, max_payload),
        st.integers(max(0, max_payload - 8), max_payload),  # near the maximum
    )
    op = st.one_of(
        st.tuples(st.just("write"), size),
        st.tuples(st.just("write"), size),
        st.tuples(st.sampled_from(["read", "read", "commit", "read_commit"]), st.just(0)),
        st.tuples(st.sampled_from(["restart_consumer", "restart_producer"]), st.just(0)),
    )
    return capacity, draw(st.lists(op, max_size=120))


def payload_for(seq: int, size: int) -> bytes:
    """Distinct contents per record, so a lost or repeated record cannot hide."""
    return (seq.to_bytes(4, "little") * (size // 4 + 1))[:size]


@settings(
    max_examples=5000 if FUZZ else 500,
    derandomize=not FUZZ,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_ring_matches_deque_model(scenario: tuple[int, list[Op]]) -> None:
    capacity, ops = scenario
    name = f"hftd-test-{os.getpid()}-prop{next(_names)}"
    model = Model(capacity)
    prod = Ring.create(name, capacity)
    cons = Ring.attach(name)
    try:
        for seq, (kind, size) in enumerate(ops):
            if kind == "write":
                payload = payload_for(seq, size)
                assert prod.try_write(payload) == model.write(payload), (seq, model)
            elif kind == "read":
                assert cons.read() == model.read()
            elif kind == "commit":
                cons.commit()
                model.commit()
            elif kind == "read_commit":
                assert cons.read_commit() == model.read()
                model.commit()
            elif kind == "restart_consumer":
                cons.close()
                cons = Ring.attach(name)
                model.restart_consumer()
            else:
                prod.close()
                prod = Ring.attach(name)
                assert prod.last_committed() == model.last
            stats = prod.statistics()
            assert (stats.head, stats.tail) == (model.head, model.tail)
            assert stats.used == model.head - model.tail <= capacity
            assert stats.full_count == model.full
            assert cons.position == model.pos
        # drain: everything written and not consumed comes out, in order, once
        rest = []
        while (record := cons.read_commit()) is not None:
            rest.append(record)
        assert rest == [p for _, p in model.unread]
        assert prod.last_committed() == model.last
    finally:
        prod.close()
        cons.close()
        Ring.unlink(name, missing_ok=True)
