"""Helpers for tests that start real daemons on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hftd.config import HftdConfig
    from hftd.ipc.ring import Ring

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "default.toml"
# NASDAQ's public sample (may be committed: ../shared/data/README.md), in the repository
ITCH_FILE = ROOT / "tests" / "data" / "itch" / "nasdaq_itch50_20200130_AAPL_locate13_first10k.bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """`n` different free ports: asked for while all are held, so the kernel cannot
    hand the same one out twice (two `free_port()` calls in a row sometimes did, and
    the config was refused: md_port must differ from order_port)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def dump_toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer for test configs (tables, arrays of tables, scalars)."""
    lines: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and not _is_aot(v)}
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                lines.append(f"\n[{name}]")
                table(name, v)
            elif _is_aot(v):
                for item in v:
                    lines.append(f"\n[[{name}]]")
                    table(name, item)

    table("", data)
    return "\n".join(lines) + "\n"


def _is_aot(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


RING_PREFIXES: list[str] = []  # removed from /dev/shm after each test (conftest)


# The hot path's layout for the test running now ([hotpath] layout): None leaves
# default.toml's ("auto"); tests marked `layouts` run once with each
# (conftest.py `hftd_layout`).
LAYOUT: list[str | None] = [None]


def make_config(tmp: Path, overrides: dict[str, Any] | None = None) -> Path:
    """default.toml with free ports, a private run dir and ring prefix, `overrides` merged in
    (and the layout of a test marked `layouts`)."""
    data = tomllib.loads(DEFAULT_CONFIG.read_text())
    if LAYOUT[0] is not None:
        data = deep_merge(data, {"hotpath": {"layout": LAYOUT[0]}})
    prefix = f"hftd-t{os.getpid()}-{len(RING_PREFIXES)}"
    RING_PREFIXES.append(prefix)
    data = deep_merge(
        data,
        {
            "system": {"run_dir": str(tmp / "run"), "journal_dir": str(tmp / "journal")},
            "exchange": dict(zip(("order_port", "md_port"), free_ports(2), strict=True)),
            "rings": {"prefix": prefix},
            # CPU starvation is what a loaded CI machine is: off unless a test asks
            # (tests/chaos/test_chaos_pressure.py sets default.toml's threshold)
            "monitor": {"alerts": {"cpu_wait_ms_per_s": 1000.0, "cpu_pressure_max": 1.0}},
        },
    )
    data = deep_merge(data, overrides or {})
    path = tmp / "hftd.toml"
    path.write_text(dump_toml(data))
    return path


@contextmanager
def open_rings(
    tmp: Path, overrides: dict[str, Any] | None = None
) -> Iterator[tuple[HftdConfig, dict[str, Ring]]]:
    """A config made in `tmp` (make_config) and its hot-path rings (md, risk_md,
    orders, executions) opened for agents built in the test; closed after
    (conftest removes them from /dev/shm)."""
    from hftd.config import load_config, ring_name
    from hftd.ipc.ring import Ring

    cfg = load_config(make_config(tmp, overrides))
    rc = cfg.rings
    caps = {
        "md": rc.md_capacity,
        "risk_md": rc.risk_md_capacity,
        "orders": rc.orders_capacity,
        "executions": rc.executions_capacity,
    }
    rings = {e: Ring.open(ring_name(cfg, e), c) for e, c in caps.items()}
    try:
        yield cfg, rings
    finally:
        for r in rings.values():
            r.close()


class Daemon:
    """A daemon process started by a test, ready once it sent READY=1."""

    def __init__(
        self, proc: subprocess.Popen[bytes], log_path: Path, config: dict[str, Any]
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.config = config

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@contextmanager
def start_daemon(
    component: str,
    config_path: Path,
    ready_timeout: float = 30.0,
    *,
    cwd: Path = ROOT,
    command: list[str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[Daemon]:
    """Start `hftd <component>`, wait for its READY=1 on a NOTIFY_SOCKET we serve.

    `command` replaces `python -m hftd.cli` (e.g. the installed `hftd` script);
    `args` follow `--config` (e.g. `("--new-day",)` for `up`)."""
    run_dir = config_path.parent
    notify_path = run_dir / f"notify-{component}.sock"
    notify_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    log_path = run_dir / f"{component}.log"
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [
                *(command or [sys.executable, "-m", "hftd.cli"]),
                component,
                "--config",
                str(config_path),
                *args,
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
        )
    daemon = Daemon(proc, log_path, tomllib.loads(config_path.read_text()))
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError(f"{component} not ready (exit {proc.poll()}):\n{daemon.log}")
            sock.settimeout(min(left, 0.5))
            try:
                msg = sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in msg.split("\n"):
                break
        yield daemon
    finally:
        daemon.stop()
        sock.close()
        notify_path.unlink(missing_ok=True)


OPEN_CLIENTS: list[SoupClient] = []


class SoupClient:
    """A blocking SoupBinTCP client for tests (sequenced messages are numbered).

    Every client is closed by the autouse fixture in conftest.py.
    """

    def __init__(
        self,
        port: int,
        username: str = "TEST",
        password: str = "test-pass",
        sequence: int = 1,
        session: str = "",
    ) -> None:
        from hftd.wire import soupbintcp as soup

        self.soup = soup
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        OPEN_CLIENTS.append(self)
        self.session = soup.ClientSession()
        self.pending: list[Any] = []
        self.last_send = time.monotonic()
        self.sock.sendall(soup.login_request(username, password, session, sequence))
        self.login = self.next_event(timeout=10)

    def next_event(self, timeout: float = 10.0) -> Any:
        """The next SoupBinTCP event (raises TimeoutError, EOFError)."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                raise TimeoutError("no SoupBinTCP packet in time")
            if now - self.last_send >= self.soup.HEARTBEAT_INTERVAL:
                self.sock.sendall(self.soup.CLIENT_HEARTBEAT)
                self.last_send = now
            self.sock.settimeout(min(left, self.soup.HEARTBEAT_INTERVAL))
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                raise EOFError("server closed the connection")
            self.pending.extend(self.session.receive_data(data))
        return self.pending.pop(0)

    def sequenced(self, timeout: float = 10.0) -> Any:
        """The next sequenced message event (heartbeats skipped)."""
        while True:
            ev = self.next_event(timeout)
            if isinstance(ev, self.soup.SequencedData):
                return ev

    def send_unsequenced(self, payload: bytes) -> None:
        self.sock.sendall(self.soup.unsequenced(payload))
        self.last_send = time.monotonic()

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """Drain until EOF; True if the server closed the connection in time."""
        try:
            while True:
                self.next_event(timeout)
        except (EOFError, ConnectionResetError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            with suppress(OSError):
                self.sock.sendall(self.soup.LOGOUT_REQUEST)
        self.sock.close()


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `pred` until it returns something truthy (a daemon between lives, whose
    socket does not answer yet, counts as not yet); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def ask(d: Daemon, name: str, cmd: Any) -> Any:
    """A control command's result from daemon `name` of the system `d` belongs to."""
    from hftd.ipc.control import request_sync

    reply = request_sync(Path(d.config["system"]["run_dir"]) / f"{name}.sock", cmd)
    assert reply.ok, reply.error
    return reply.result


def run_cli(module: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` to the end (hftd.cli, hftd.ctl.main), output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def hftctl(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`hftctl --config cfg <args>`."""
    return run_cli("hftd.ctl.main", "--config", str(cfg), *args, timeout=30)


def hftd_refused(cfg: Path, *args: str) -> str:
    """`hftd <args> --config cfg` must refuse to run (exit 2) at once; its output."""
    res = run_cli("hftd.cli", *args, "--config", str(cfg), timeout=30)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    return out


def status_of_up(up: Daemon) -> dict[str, dict[str, Any]]:
    """The embedded supervisor's view of every daemon of `hftd up` (by name)."""
    from hftd.msg.control import Status

    reply = ask_path(Path(up.config["system"]["run_dir"]) / "supervisor.sock", Status())
    return {d["name"]: d for d in reply}


def ask_path(sock: Path, cmd: Any) -> Any:
    """A control command's result from the socket at `sock`."""
    from hftd.ipc.control import request_sync

    reply = request_sync(sock, cmd)
    assert reply.ok, reply.error
    return reply.result


def status(d: Daemon, name: str) -> dict[str, Any]:
    """Daemon `name`'s Status detail."""
    from hftd.msg.control import Status

    detail: dict[str, Any] = ask(d, name, Status())["detail"]
    return detail


def assert_gateway_matches_venue(gateway: dict[str, Any], snap: dict[str, Any]) -> None:
    """The gateway's positions, cost, realized P&L and fills equal those recomputed
    from the exchange's own record of fills, and nothing rests there unknown."""
    from hftd.gateway.positions import PositionBook

    assert not snap["open_orders"], "orders resting at the venue"
    matches = [f["match_number"] for f in snap["fills"]]
    assert len(matches) == len(set(matches))
    assert gateway["fills"] == len(snap["fills"]), "lost or double-counted fills"
    ref = PositionBook()
    for f in sorted(snap["fills"], key=lambda f: f["match_number"]):
        ref.on_fill(f["symbol"], f["side"], f["quantity"], f["price"])
    mine = {p["symbol"]: p for p in gateway["positions"]["positions"]}
    for sym in ref.symbols():
        pos = ref.position(sym)
        got = mine[sym]
        assert (got["qty"], got["cost_basis"], got["realized"]) == (
            pos.qty,
            pos.cost,
            pos.realized,
        ), sym
    assert gateway["positions"]["realized"] == ref.realized()
    assert gateway["untracked"] == 0


class StubItchVenue:
    """A bare ITCH venue for tests: SoupBinTCP on a free loopback port, in a thread,
    serving `messages` (ITCH payloads, numbered from 1) to any login, then what
    `publish` adds, and heartbeats, the way a real NASDAQ feed serves its day.
    `logins` records the
    sequence number each login asked for (a reconnect loop shows there).
    Use as a context manager; it stops its threads and closes its sockets."""

    def __init__(self, messages: list[bytes]) -> None:
        import threading

        from hftd.wire import soupbintcp as soup

        self.soup = soup
        self.messages = list(messages)
        self.once: dict[int, bytes] = {}  # see corrupt_once
        self.logins: list[int] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def publish(self, messages: list[bytes]) -> None:
        """Sequence more messages (every session gets them)."""
        self.messages.extend(messages)

    def corrupt_once(self, seq: int, payload: bytes) -> None:
        """The next session to send message `seq` sends `payload` in its place (a
        message damaged once on its way); a later replay sends the real one."""
        self.once[seq] = payload

    def __enter__(self) -> StubItchVenue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(5)
        self.listener.close()

    def _accept(self) -> None:
        import threading

        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        soup = self.soup
        session = soup.ServerSession()
        conn.settimeout(0.2)
        with conn, suppress(OSError):
            login = None
            while login is None and not self.stopping.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                for ev in session.receive_data(data):
                    if isinstance(ev, soup.LoginRequested):
                        login = ev
            if login is None:
                return
            self.logins.append(login.sequence)
            end = len(self.messages) + 1
            first = end if login.sequence == 0 or login.sequence > end else login.sequence
            conn.sendall(soup.login_accepted("STUB", first))
            session.accept()
            sent = first - 1  # messages[:sent] are the client's
            last_send = 0.0
            while not self.stopping.is_set():
                if len(self.messages) > sent:
                    first, batch, sent = sent + 1, self.messages[sent:], len(self.messages)
                    if self.once:
                        batch = [self.once.pop(first + i, m) for i, m in enumerate(batch)]
                    conn.sendall(b"".join(soup.sequenced(m) for m in batch))
                    last_send = time.monotonic()
                elif time.monotonic() - last_send >= soup.HEARTBEAT_INTERVAL:
                    conn.sendall(soup.SERVER_HEARTBEAT)
                    last_send = time.monotonic()
                try:
                    if not conn.recv(4096):
                        return
                except TimeoutError:
                    continue


def itch_sample() -> list[bytes]:
    """The real NASDAQ sample's 10,000 ITCH messages (tests/data/itch)."""
    from hftd.wire import itch

    return [bytes(m) for m in itch.iter_binary_file(ITCH_FILE.read_bytes())]
