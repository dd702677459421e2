"""Sockets for the live fuzz: send a `Case`, run many in parallel, watch a legitimate
session while it happens.

Blocking sockets in plain threads (the daemons are the system under test; the
client only has to keep them busy). Each `converse` reads while it sends, so a
server's answers never back up into a deadlock, and ends with a shutdown (then
waits for the server to close, which it must) or an abrupt reset.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hftd.msg.control import Status, encoder, reply_decoder
from hftd.wire import soupbintcp as soup
from tests.fuzz.inputs import Case

Address = tuple[str, int] | str  # TCP (host, port) or a Unix socket's path
CLOSE_TIMEOUT_S = 20.0  # a server must close a connection this soon after our shutdown


def connect(addr: Address, timeout: float = 10.0) -> socket.socket:
    """A connected socket; a Unix one whose listen queue is full is retried until
    `timeout` (it says EAGAIN at once where TCP would wait)."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        s.settimeout(timeout)
        try:
            while True:
                try:
                    s.connect(addr)
                    return s
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.002)
        except BaseException:
            s.close()
            raise
    return socket.create_connection(addr, timeout=timeout)


def reset_close(s: socket.socket) -> None:
    """Close abruptly: a TCP reset (SO_LINGER 0); a Unix socket just closes."""
    with contextlib.suppress(OSError):
        if s.family != socket.AF_UNIX:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


@dataclass
class Outcome:
    received: bytes
    complete: bool  # the server closed the connection cleanly after our shutdown
    problem: str = ""


def converse(addr: Address, case: Case, *, until: bytes = b"") -> Outcome:
    """Send `case` as it says (chunks, pauses), reading meanwhile; then end it as it says.
    `until`: hang up as soon as this arrives (an event stream never ends by itself)."""
    s = connect(addr)
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    got = bytearray()
    state = {"eof": False, "reset": False}

    def pump(wait: float) -> None:
        deadline = time.monotonic() + wait
        while not state["eof"]:
            left = deadline - time.monotonic()
            if not sel.select(max(left, 0)):
                return
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                state["eof"] = state["reset"] = True
                return
            if not data:
                state["eof"] = True
                return
            got.extend(data)
            if until and until in got:
                return

    try:
        broken = False
        for chunk in case.chunks:
            view = memoryview(chunk)
            while view and not broken and not state["eof"]:
                try:
                    view = view[s.send(view) :]
                except BlockingIOError:
                    pump(0.01)
                except (BrokenPipeError, ConnectionResetError):
                    broken = True
            pump(case.delay_s)
            if until and until in got:
                break
        if case.abort or (until and until in got):
            return Outcome(bytes(got), False)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while not state["eof"] and time.monotonic() < deadline:
            pump(deadline - time.monotonic())
            if until and until in got:
                return Outcome(bytes(got), False)
        if not state["eof"]:
            return Outcome(
                bytes(got),
                False,
                f"server did not close the connection within {CLOSE_TIMEOUT_S:g} s",
            )
        return Outcome(bytes(got), not state["reset"])
    finally:
        sel.close()
        reset_close(s) if case.abort else s.close()


@dataclass
class Run:
    """What one listener's fuzz did."""

    listener: str
    target: int
    inputs: int = 0
    cases: int = 0
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    stalls: int = 0  # connections left half-sent for the server's timeout to close

    def summary(self) -> str:
        top = ", ".join(f"{k} {n}" for k, n in self.kinds.most_common(8))
        rate = self.inputs / self.seconds if self.seconds else 0.0
        return (
            f"{self.listener}: {self.inputs} inputs in {self.cases} connections "
            f"(+{self.stalls} stalled), {self.seconds:.1f} s, {rate:.0f}/s; {top}"
        )


Worker = Callable[[random.Random], tuple[Case, Callable[[Case], str]]]


def fuzz(
    listener: str,
    target: int,
    seed: int,
    workers: list[Worker],
    *,
    stall: Callable[[random.Random], int] | None = None,
) -> Run:
    """Run cases from every worker (one thread each) until `target` inputs were sent.
    A worker draws a case and returns it with the function that sends it and says
    what was wrong ("" if nothing). `stall`, in a thread of its own meanwhile, holds
    connections half-sent (a slow client); it returns the inputs it sent."""
    run = Run(listener, target)
    lock = threading.Lock()
    done = threading.Event()

    def work(index: int, worker: Worker) -> None:
        r = random.Random(f"{seed}/{listener}/{index}")
        n = 0
        while not done.is_set():
            try:
                case, talk = worker(r)
            except BaseException as exc:  # the generator's bug: say so, stop the run
                with lock:
                    run.problems.append(
                        f"[seed {seed} worker {index} case {n}] generator "
                        f"failed: {type(exc).__name__}: {exc}"
                    )
                done.set()
                raise
            try:
                problem = talk(case)
            except OSError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            with lock:
                run.inputs += case.inputs
                run.cases += 1
                run.kinds[case.kind] += 1
                if problem and len(run.problems) < 20:
                    run.problems.append(
                        f"[seed {seed} worker {index} case {n}] {case.kind}: {problem}; "
                        f"sent {case.data[:160]!r}{'…' if len(case.data) > 160 else ''}"
                    )
                if run.inputs >= target:
                    done.set()
            n += 1

    def stalls() -> None:
        assert stall is not None
        r = random.Random(f"{seed}/{listener}/stall")
        while not done.is_set():
            try:
                sent, problem = stall(r), ""
            except (OSError, AssertionError) as exc:
                sent, problem = 1, f"{type(exc).__name__}: {exc}"
            with lock:
                run.stalls += 1
                run.inputs += sent
                if problem and len(run.problems) < 20:
                    run.problems.append(f"[seed {seed} stall {run.stalls}] {problem}")

    t0 = time.monotonic()
    threads = [
        threading.Thread(target=work, args=(i, w), daemon=True) for i, w in enumerate(workers)
    ]
    if stall is not None:
        threads.append(threading.Thread(target=stalls, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = time.monotonic() - t0
    return run


def held(addr: Address, data: bytes, hold_s: float, *, wait_close_s: float = 0.0) -> str:
    """Send `data` (a part of something) and go quiet for `hold_s`, then reset; or, with
    `wait_close_s`, wait that long for the server to close it: "" if it did."""
    s = connect(addr)
    try:
        with contextlib.suppress(OSError):
            s.sendall(data)
        if not wait_close_s:
            time.sleep(hold_s)
            return ""
        s.settimeout(wait_close_s)
        deadline = time.monotonic() + wait_close_s
        try:
            while time.monotonic() < deadline:
                if not s.recv(1 << 16):
                    return ""
        except (ConnectionResetError, BrokenPipeError):
            return ""
        except TimeoutError:
            pass
        return f"a stalled connection was still open after {wait_close_s:g} s"
    finally:
        reset_close(s)


# --- the legitimate session --------------------------------------------------------------------


class MdWatcher:
    """A market-data client logged in before the fuzz: it must keep its session and get
    every sequenced message (`gapless` compares them with a fresh replay)."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.port, self.username, self.password = port, username, password
        self.session = soup.ClientSession()
        self.messages: list[bytes] = []
        self.error = ""
        self.first = 0
        self.stopping = threading.Event()
        self.sock.sendall(soup.login_request(username, password, "", 1))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last_send = time.monotonic()
        self.sock.settimeout(0.2)
        try:
            while not self.stopping.is_set():
                if time.monotonic() - last_send >= soup.HEARTBEAT_INTERVAL:
                    self.sock.sendall(soup.CLIENT_HEARTBEAT)
                    last_send = time.monotonic()
                try:
                    data = self.sock.recv(1 << 16)
                except TimeoutError:
                    continue
                if not data:
                    raise EOFError("the venue closed the watcher's market-data session")
                for ev in self.session.receive_data(data):
                    if isinstance(ev, soup.LoginAccepted):
                        self.first = ev.sequence
                    elif isinstance(ev, soup.LoginRejected):
                        raise EOFError(f"watcher's login rejected: {ev.reason}")
                    elif isinstance(ev, soup.SequencedData):
                        self.messages.append(ev.payload)
                    elif isinstance(ev, soup.EndOfSession):
                        raise EOFError("end of session")
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def gapless(self) -> str:
        """ "" if what the watcher got is exactly messages 1..n of a fresh replay."""
        if self.error:
            return self.error
        got = list(self.messages)
        if self.first != 1:
            return f"watcher logged in from {self.first}"
        fresh: list[bytes] = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(soup.login_request(self.username, self.password, "", 1))
            cs = soup.ClientSession()
            while len(fresh) < len(got):
                data = s.recv(1 << 16)
                if not data:
                    return "replay connection closed early"
                fresh += [
                    e.payload for e in cs.receive_data(data) if isinstance(e, soup.SequencedData)
                ]
            s.sendall(soup.LOGOUT_REQUEST)
        fresh = fresh[: len(got)]
        if fresh != got:
            i = next(i for i, (a, b) in enumerate(zip(fresh, got, strict=True)) if a != b)
            return f"message {i + 1} differs from the venue's: a gap or corruption"
        return ""

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        with contextlib.suppress(OSError):
            self.sock.sendall(soup.LOGOUT_REQUEST)
        self.sock.close()


class ControlWatcher:
    """One kept-open control connection per daemon (the supervisor's too), asking Status
    every `interval_s`: every answer must come, on the same connection, from the same pid."""

    def __init__(
        self, sockets: dict[str, Path], pids: dict[str, int], interval_s: float = 0.1
    ) -> None:
        self.sockets, self.pids, self.interval_s = sockets, pids, interval_s
        self.answers: Counter[str] = Counter()
        self.errors: list[str] = []
        self.conns = {name: connect(str(path)) for name, path in sockets.items()}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _ask(self, name: str) -> None:
        s = self.conns[name]
        body = encoder.encode(Status())
        s.sendall(struct.pack(">I", len(body)) + body)
        head = _recv_exactly(s, 4)
        reply = reply_decoder.decode(_recv_exactly(s, struct.unpack(">I", head)[0]))
        if not reply.ok:
            raise RuntimeError(f"Status refused: {reply.error}")
        pid = reply.result.get("pid") if isinstance(reply.result, dict) else self.pids[name]
        if pid != self.pids[name]:
            raise RuntimeError(f"Status from pid {pid}, not {self.pids[name]}")
        self.answers[name] += 1

    def _run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            for name in self.sockets:
                try:
                    self._ask(name)
                except Exception as exc:
                    if len(self.errors) < 20:
                        self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    with contextlib.suppress(OSError):
                        self.conns[name].close()
                        self.conns[name] = connect(str(self.sockets[name]))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for s in self.conns.values():
            s.close()


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed mid-reply")
        buf += chunk
    return bytes(buf)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
