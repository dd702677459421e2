"""The ring between real processes: SIGKILL/restart of either side, wait strategies.

Workers are ``tests/integration/ring_worker.py`` run with ``sys.executable``;
the test waits for their ``ready``/``done`` lines, and picks kill points by
watching the consumer's output grow (pseudo-random, seeded). The consumer's
output file is the ground truth: every sequence number exactly once, in order.
"""

from __future__ import annotations

import itertools
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from hftd.ipc.ring import Ring, RingStats

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ring_worker.py")
ENTRY = struct.Struct("<QQ")
_names = itertools.count()


class Worker:
    """A ring_worker.py subprocess whose stdout lines we can wait for."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                bufsize=0,
            )
        assert self.proc.stdout is not None
        self._out = self.proc.stdout
        self._buf = b""

    def expect(self, word: str, timeout: float = 20.0) -> str:
        """Wait for the next stdout line; it must start with `word`. Returns the rest."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise AssertionError(f"{self.args[0]}: no {word!r} in {timeout}s; {self.stderr()}")
            chunk = os.read(self._out.fileno(), 4096)
            if not chunk:
                raise AssertionError(
                    f"{self.args[0]} exited ({self.proc.wait()}) before {word!r}; {self.stderr()}"
                )
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        text = line.decode()
        assert text.split(" ", 1)[0] == word, (text, self.stderr())
        return text[len(word) :].strip()

    def stderr(self) -> str:
        return "stderr: " + self.log.read_text()[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()

    def finish(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._out.close()
        return code


@pytest.fixture
def ring_name() -> Iterator[str]:
    name = f"hftd-test-{os.getpid()}-proc{next(_names)}"
    try:
        yield name
    finally:
        Ring.unlink(name, missing_ok=True)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start workers; any still running at the end are killed and reaped."""
    started: list[Worker] = []

    def start(*args: str | int) -> Worker:
        w = Worker([str(a) for a in args], tmp_path / f"{args[0]}.stderr")
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


def entries(out: Path) -> list[tuple[int, int]]:
    data = out.read_bytes() if out.exists() else b""
    return [ENTRY.unpack_from(data, i) for i in range(0, len(data) - len(data) % 16, 16)]


def count(out: Path) -> int:
    try:
        return out.stat().st_size // ENTRY.size
    except FileNotFoundError:
        return 0


def wait_for_count(out: Path, target: int, timeout: float, what: str) -> None:
    """Poll the consumer's progress (not a readiness signal: that is `Worker.expect`)."""
    deadline = time.monotonic() + timeout
    while count(out) < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {target} records {what}")
        time.sleep(0.001)


def check_output(out: Path, total: int) -> None:
    got = entries(out)
    seqs = [seq for _, seq in got]
    assert len(seqs) == total, f"{len(seqs)} records for {total}"
    if seqs != list(range(total)):
        dups = len(seqs) - len(set(seqs))
        missing = sorted(set(range(total)) - set(seqs))[:10]
        raise AssertionError(f"out of order: {dups} duplicates, first missing {missing}")
    positions = [pos for pos, _ in got]
    assert all(a < b for a, b in itertools.pairwise(positions))


@pytest.mark.timeout(60)
def test_sigkill_and_restart_producer_and_consumer(
    ring_name: str, tmp_path: Path, workers: Callable[..., Worker]
) -> None:
    total = 80_000
    out = tmp_path / "consumer.out"
    rng = random.Random(0x5EED)
    Ring.create(ring_name, 4096).close()  # small: it wraps and fills often
    consumer = workers("consume", ring_name, out, total)
    assert consumer.expect("ready") == "0"
    producer = workers("produce", ring_name, total)
    assert producer.expect("ready") == "0"
    victims = ["producer", "consumer"] * 5
    rng.shuffle(victims)
    seeks = 0
    for victim in victims:
        target = count(out) + rng.randint(300, 4000)
        wait_for_count(out, target, 20, f"before killing the {victim}")
        if victim == "producer":
            producer.kill()
            producer = workers("produce", ring_name, total)
            resumed = int(producer.expect("ready"))
            assert resumed >= target  # resumed after what it had committed, not from 0
        else:
            consumer.kill()
            last_seq = entries(out)[-1][1]
            consumer = workers("consume", ring_name, out, total)
            ready = consumer.expect("ready").split()
            assert int(ready[0]) == last_seq + 1
            seeks += len(ready) > 1  # killed between its output write and its commit
    assert producer.expect("done", timeout=30) == str(total)
    stats = msgspec.json.decode(consumer.expect("done", timeout=30), type=RingStats)
    assert producer.finish() == consumer.finish() == 0
    check_output(out, total)
    assert stats.used == 0
    assert stats.full_count > 0  # the producer did hit a full ring and retried
    print(f"consumer restarts that had to seek past an uncommitted record: {seeks}/5")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strategy", ["spin", "spin-then-sleep", "sleep"])
def test_two_processes_per_wait_strategy(
    strategy: str, ring_name: str, tmp_path: Path, workers: Callable[..., Worker]
) -> None:
    total = 20_000
    out = tmp_path / "consumer.out"
    Ring.create(ring_name, 1 << 16).close()
    consumer = workers("consume", ring_name, out, total, "--strategy", strategy)
    consumer.expect("ready")
    # bursts with idle gaps: the sleeping strategies go to sleep and get rung awake
    producer = workers("produce", ring_name, total, "--burst", 1000, "--pause-us", 2000)
    producer.expect("ready")
    assert producer.expect("done", timeout=30) == str(total)
    stats = msgspec.json.decode(consumer.expect("done", timeout=30), type=RingStats)
    assert producer.finish() == consumer.finish() == 0
    check_output(out, total)
    print(strategy, stats)
    if strategy == "spin":
        assert stats.sleeps == stats.bells == 0
    else:
        assert stats.sleeps > 0
        assert stats.wakeups > 0
        assert stats.bells >= stats.wakeups
