"""The web page's actions belong to the operator, not to every local user.

A whole system (`hftd up`, monitor on a free port). Another uid (nobody, by
`setpriv`) can reach the loopback port but not the run dir: its POST with the
page's own header is refused with 401 and the gateway does not move. The
operator gets the link with the real `hftctl dashboard` (over the monitor's
control socket) and its token acts; a restarted monitor keeps the token, a new
`hftd up` draws a new one.

A squatter on the web port (uid 65534 when this runs as root, else a socket of
this test process) takes it while the monitor restarts (`restart_delay_s` 2 s
gives it the time): it could serve a page that reads the token from the link or
from a reloaded tab. While it holds the port `hftctl dashboard` prints no link
(exit 1) and `web.token` is gone; once the port is the monitor's again, by the
same monitor or a restarted one, the token has changed and the old one is
refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.frontends import dashboard_url, hftctl_path, monitor_config, status
from tests.otheruser import python_argv, run_as_other
from tests.support import RING_PREFIXES, Daemon, start_daemon, wait_for

pytestmark = pytest.mark.integration

OTHER_UID = 65534  # nobody

# Runs as the other user: stdlib only, no proxies, isolated mode (-I).
OTHER_USER_SCRIPT = r"""
import json, socket, sys, urllib.error, urllib.request
port, token_path, sock_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
out = {}
for name, extra in (("plain", {}), ("guessed", {"Authorization": "Bearer guessed-token"})):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/action/pause", data=b"",
                                 method="POST", headers={"X-Hftd-Action": "pause", **extra})
    try:
        with opener.open(req, timeout=10) as r:
            out[name] = [r.status, r.read().decode(), ""]
    except urllib.error.HTTPError as e:
        out[name] = [e.code, e.read().decode(), e.headers.get("WWW-Authenticate", "")]
try:
    with open(token_path) as f:
        out["token_file"] = "read: " + f.read()
except OSError as e:
    out["token_file"] = type(e).__name__
try:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        out["monitor_sock"] = "connected"
except OSError as e:
    out["monitor_sock"] = type(e).__name__
print(json.dumps(out))
"""


class System:
    """One `hftd up` at a time on one config; a test may stop it and start another."""

    def __init__(self, config: Path, port: int, stack: ExitStack) -> None:
        self.config = config
        self.port = port
        self.stack = stack
        self.up: Daemon | None = None

    @property
    def run_dir(self) -> Path:
        assert self.up is not None
        return Path(self.up.config["system"]["run_dir"])

    @property
    def log(self) -> str:
        assert self.up is not None
        return self.up.log

    def start(self, *, serving: bool = True) -> None:
        """A new `hftd up`, trading; with `serving`, wait for the monitor's page too.

        A new trading day each time: what is tested here is the run, not the replay of
        a continued day (journals) that a later run would otherwise do."""
        self.up = self.stack.enter_context(start_daemon("up", self.config, args=("--new-day",)))
        wait_for(lambda: gateway_mode(self) == "active", 30, "the gateway trading")
        if serving:
            wait_for(
                lambda: web_listener(self).startswith("http://"), 30, "the monitor's web listener"
            )

    def stop(self) -> None:
        assert self.up is not None
        assert self.up.stop() == 0, self.up.log[-2000:]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("web-auth")
    # A restarted monitor starts 2 s after it died: time for a squatter to take the port.
    cfg, port = monitor_config(tmp, {"supervisor": {"restart_delay_s": 2.0}})
    prefix = RING_PREFIXES.pop()  # removed here, at the end, not after each test
    try:
        with ExitStack() as stack:
            sysm = System(cfg, port, stack)
            sysm.start()
            yield sysm
    finally:
        for path in Path("/dev/shm").glob(f"{prefix}-*"):
            path.unlink(missing_ok=True)


def web_listener(s: System) -> str:
    """The monitor's web listener: its URL, or "error: ..." (Status detail)."""
    web: dict[str, str] = status(s.run_dir, "monitor")["detail"]["web"]
    return web.get("web", "")


def gateway_mode(s: System) -> str:
    mode: str = status(s.run_dir, "gateway")["detail"]["mode"]
    return mode


def post_action(port: int, verb: str, token: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/action/{verb}",
        data=b'{"confirm": true}',
        method="POST",
        headers={
            "X-Hftd-Action": verb,
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def as_other_user(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={OTHER_UID}",
            f"--regid={OTHER_UID}",
            "--clear-groups",
            sys.executable,
            "-I",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )


def other_user_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("acting as another uid needs root (setpriv --reuid)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    probe = as_other_user("-c", "import urllib.request")
    if probe.returncode != 0:
        pytest.skip(f"uid {OTHER_UID} cannot run {sys.executable}: {probe.stderr.strip()[-200:]}")


def test_another_user_is_refused(system: System) -> None:
    other_user_or_skip()
    assert gateway_mode(system) == "active"
    log_before = len(system.log)
    res = as_other_user(
        "-c",
        OTHER_USER_SCRIPT,
        str(system.port),
        str(system.run_dir / "web.token"),
        str(system.run_dir / "monitor.sock"),
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for name in ("plain", "guessed"):
        code, body, challenge = out[name]
        assert (code, challenge) == (401, "Bearer"), out
        assert "hftctl dashboard" in json.loads(body)["error"]
    # Nor can it get the token: the file and the monitor's socket are the operator's.
    assert not out["token_file"].startswith("read"), out
    assert out["monitor_sock"] != "connected", out
    # Nothing ran: the gateway did not move, and the monitor logged refusals, no action.
    assert gateway_mode(system) == "active"
    wait_for(
        lambda: "refused action 'pause'" in system.log[log_before:],
        10,
        "the refusal in the monitor's log",
    )
    assert "operator action" not in system.log[log_before:]


def test_the_operator_link_from_hftctl_acts(system: System) -> None:
    url = dashboard_url(system.config)
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == (f"127.0.0.1:{system.port}", "/")
    assert parts.fragment.startswith("token=")
    token = parts.fragment.removeprefix("token=")
    token_file = system.run_dir / "web.token"
    assert token_file.read_text().strip() == token
    assert token_file.stat().st_mode & 0o777 == 0o600

    assert post_action(system.port, "pause", "not-" + token)[0] == 401
    assert gateway_mode(system) == "active"
    code, body = post_action(system.port, "pause", token)
    assert code == 200 and body["replies"]["gateway"]["ok"] is True, body
    assert gateway_mode(system) == "paused"
    code, body = post_action(system.port, "resume", token)
    assert code == 200 and gateway_mode(system) == "active", body

    # A restarted monitor keeps the run's token: an open page goes on working.
    wait_monitor_restarted(system, kill_monitor(system))
    wait_for(
        lambda: web_listener(system).startswith("http://"),
        20,
        "the restarted monitor's web listener",
    )
    assert dashboard_url(system.config) == url
    code, body = post_action(system.port, "pause", token)
    assert code == 200 and gateway_mode(system) == "paused", body
    assert post_action(system.port, "resume", token)[0] == 200
    # The token is nowhere in the logs, nor in the monitor's Status.
    assert token not in system.log
    assert token not in json.dumps(status(system.run_dir, "monitor"))


def test_a_new_run_gets_a_new_token(system: System) -> None:
    old = token_of(dashboard_url(system.config))
    system.stop()
    system.start()
    new = token_of(dashboard_url(system.config))
    assert new != old and (system.run_dir / "web.token").read_text().strip() == new
    assert post_action(system.port, "pause", old)[0] == 401
    assert gateway_mode(system) == "active"


def monitor_pid(s: System) -> int:
    pid: int = next(d["pid"] for d in status(s.run_dir, "supervisor") if d["name"] == "monitor")
    return pid


def kill_monitor(s: System) -> int:
    """SIGKILL the monitor (its port is free at once; the supervisor restarts it after
    `restart_delay_s`); returns its pid."""
    pid = monitor_pid(s)
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_monitor_restarted(s: System, old_pid: int) -> None:
    wait_for(lambda: monitor_pid(s) not in (0, old_pid), 20, "the monitor restarted")


def token_of(url: str) -> str:
    return url.partition("#token=")[2]


def hftctl_dashboard(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*hftctl_path(), "--config", str(config), "dashboard"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# Takes 127.0.0.1:<port> as soon as it is free, holds it until its stdin closes.
SQUATTER_SCRIPT = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the TIME_WAITs, as one would
deadline = time.monotonic() + 20
while True:
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.002)
s.listen()
print("listening", flush=True)
sys.stdin.read()
"""


def other_user_usable() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    return run_as_other("print('ok')").stdout.strip() == "ok"


@contextmanager
def squatter(port: int, free_it: Callable[[], object]) -> Iterator[str]:
    """Another program that takes `port` once `free_it()` frees it (uid 65534 if we can act
    as it, else a socket of this test process); yields who, releases the port on exit."""
    if not other_user_usable():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            free_it()
            wait_for(lambda: s.bind(("127.0.0.1", port)) or True, 10, f"port {port} free")
            s.listen()
            yield f"this test process (uid {os.geteuid()})"
        return
    with subprocess.Popen(
        python_argv(SQUATTER_SCRIPT, str(port)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    ) as proc:  # its exit closes the pipes and waits
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            free_it()
            line = proc.stdout.readline().strip()  # it gives up after 20 s
            if line != "listening":
                proc.stdin.close()
                raise AssertionError(f"the squatter did not bind: {proc.stderr.read()}")
            yield f"uid {OTHER_UID}"
        finally:
            if not proc.stdin.closed:
                proc.stdin.close()  # it exits, closing its socket
            proc.wait(10)


def assert_no_link(s: System, who: str, secrets: list[str]) -> None:
    """While `who` holds the port: `hftctl dashboard` fails, naming it, and prints no token;
    `web.token` is gone (a restarted monitor must not reuse it)."""
    problem = f"port {s.port} is held by another program"
    wait_for(lambda: problem in web_listener(s), 20, f"the monitor to see {who} on its port")
    res = hftctl_dashboard(s.config)
    assert res.returncode == 1, (who, res.stdout, res.stderr)
    assert res.stdout == "" and "#token=" not in res.stderr, res.stderr
    assert not any(t in res.stderr for t in secrets), res.stderr
    assert f"the monitor is not serving the page: {problem} (" in res.stderr, res.stderr
    assert res.stderr.rstrip().endswith("not printing the operator link"), res.stderr
    if who.startswith("uid"):
        assert f"uid {OTHER_UID}" in res.stderr, res.stderr  # names who holds it
    assert not (s.run_dir / "web.token").exists()


def assert_new_link(s: System, old: str) -> str:
    """The port is the monitor's again: a new link, which acts; the old token is refused."""
    wait_for(
        lambda: web_listener(s).startswith("http://"),
        20,
        "the monitor's web listener after the squatter left",
    )
    new = token_of(dashboard_url(s.config))
    assert new != old and (s.run_dir / "web.token").read_text().strip() == new
    assert post_action(s.port, "pause", old)[0] == 401
    assert gateway_mode(s) == "active"
    code, body = post_action(s.port, "pause", new)
    assert code == 200 and gateway_mode(s) == "paused", body
    assert post_action(s.port, "resume", new)[0] == 200
    return new


def test_a_squatted_port_gets_no_link_and_then_a_new_token(system: System) -> None:
    """The review's case: the operator has the link, the monitor restarts, someone else
    takes the port in between (and could read the token of a tab that reloads)."""
    first = token_of(dashboard_url(system.config))
    log_from = len(system.log)
    # 1. The restarted monitor finds the port taken; it waits for it and then, being
    #    the same monitor, rotates the token itself.
    with squatter(system.port, lambda: kill_monitor(system)) as who:
        assert_no_link(system, who, [first])
    second = assert_new_link(system, first)
    log = system.log[log_from:]
    assert "web token: removed" in log and "web token: rotated" in log
    # 2. A monitor that dies while the port is taken: its successor gets the port at
    #    once (no failure of its own to go by) and still does not go back to the token.
    with squatter(system.port, lambda: kill_monitor(system)) as who:
        assert_no_link(system, who, [first, second])
        pid = kill_monitor(system)
    wait_monitor_restarted(system, pid)  # after the squatter left: binds at its first try
    third = assert_new_link(system, second)
    assert third != first
    log = system.log[log_from:]
    assert not any(t in log for t in (first, second, third))
