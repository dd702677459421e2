"""The operator's front ends, driven by tests: headless Chromium and tmux.

`Browser`: Debian's Chromium, headless, driven over the Chrome DevTools
Protocol on a pipe: `--remote-debugging-pipe` makes Chromium read CDP commands from fd 3 and
write replies and events to fd 4, NUL-separated JSON: no websocket client,
no port. The browser runs with its own profile in a temporary directory and
with every host name but 127.0.0.1 unresolvable, so a page that reached past
loopback would fail to load what it asked for (and the test sees the
request in `requests`).

`Tmux`: a private tmux server (its own socket) running one command in a
fixed-size window; `send` types keys, `screen` is `capture-pane`.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium not installed (scripts/install-system-deps installs Debian's chromium)")


def _high(fd: int) -> int:
    """`fd` moved to a number >= 10 (the original is closed)."""
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """One headless Chromium with one page attached (flattened CDP session)."""

    def __init__(self, width: int = 1400, height: int = 1100) -> None:
        self.profile = tempfile.mkdtemp(prefix="hftd-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands; chromium reads fd 3
        self._resp_r, resp_w = os.pipe()  # chromium writes fd 4; we read
        # Out of the way of 3 and 4, so the redirections below cannot clobber them.
        cmd_r, resp_w = (_high(fd) for fd in (cmd_r, resp_w))
        args = [
            chromium_path(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-component-update",
            "--disable-default-apps",
            "--mute-audio",
            "--disable-features=Translate,OptimizationHints,MediaRouter",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=direct://",
            "about:blank",
        ]
        # fd 3 and 4 in the child, whatever numbers the pipes have here
        # (bash: dash reads one-digit fds only).
        script = f'exec "$@" 3<&{cmd_r} 4>&{resp_w} {cmd_r}<&- {resp_w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, "chromium", *args],
            pass_fds=(cmd_r, resp_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(cmd_r)
        os.close(resp_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.session = ""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable")

    # --- protocol --------------------------------------------------------------------

    def _send(self, msg: dict[str, Any]) -> None:
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._resp_r], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._resp_r, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the devtools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        if "method" in msg:
            self.events.append(msg)
            if msg["method"] == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])
        return msg

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 20.0
    ) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        self._send(msg)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {method} in {timeout} s")
            reply = self._read(left)
            if reply is not None and reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def wait_event(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            for ev in self.events[seen:]:
                if ev["method"] == method:
                    return ev
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} in {timeout} s")
            self._read(left)

    # --- conveniences -------------------------------------------------------------------

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str) -> Any:
        res = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def text(self, selector: str) -> str:
        value = self.eval(
            f"(document.querySelector({json.dumps(selector)}) || {{textContent: ''}}).textContent"
        )
        return str(value)

    def wait_for(self, expression: str, timeout: float = 15.0, what: str = "") -> Any:
        """Poll a JS expression until it is truthy (pumping CDP events meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or expression}")
            self._read(0.1)

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the page at `path` (and a copy in $HFTD_SCREENSHOT_DIR, if set)."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        keep = os.environ.get("HFTD_SCREENSHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        try:
            self._send({"id": 0, "method": "Browser.close"})
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        finally:
            os.close(self._cmd_w)
            os.close(self._resp_r)
            shutil.rmtree(self.profile, ignore_errors=True)


def tmux_path() -> str:
    path = shutil.which("tmux")
    if path is None:
        pytest.skip("tmux not installed (scripts/install-system-deps installs it)")
    return path


class Tmux:
    """One command in a detached tmux session of its own server."""

    def __init__(
        self, command: str, cols: int = 80, rows: int = 24, env: dict[str, str] | None = None
    ) -> None:
        self.tmux = tmux_path()
        self.socket = f"hftd-test-{os.getpid()}-{time.monotonic_ns()}"
        merged = dict(os.environ, **(env or {}))
        merged.pop("TMUX", None)
        self.env = merged
        self._run("new-session", "-d", "-s", "t", "-x", str(cols), "-y", str(rows), command)
        self._run("set-option", "-t", "t", "remain-on-exit", "on")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.tmux, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=self.env,
            check=False,
        )

    def send(self, *keys: str) -> None:
        self._run("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "t").stdout

    def wait_screen(self, pred: Any, timeout: float = 15.0, what: str = "") -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if pred(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")
            time.sleep(0.1)

    def dead(self) -> bool:
        """True once the command has exited (the pane stays, remain-on-exit)."""
        out = self._run("list-panes", "-t", "t", "-F", "#{pane_dead}").stdout.strip()
        return out in ("1", "")

    def close(self) -> None:
        self._run("kill-server")


# --- a system with a monitor ---------------------------------------------------------------


def monitor_config(tmp: Path, overrides: dict[str, Any] | None = None) -> tuple[Path, int]:
    """default.toml (monitor included) on free ports; returns (config path, web port)."""
    from tests.support import deep_merge, free_port, make_config

    port = free_port()
    base: dict[str, Any] = {
        "monitor": {"web_port": port, "poll_interval_s": 0.2},
        "exchange": {"flow": {"arrival_rate_per_s": 60.0}},
    }
    return make_config(tmp, deep_merge(base, overrides or {})), port


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def hftctl_path() -> list[str]:
    """The real `hftctl` of this environment (the console script beside the interpreter)."""
    import sys

    script = Path(sys.executable).parent / "hftctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hftd.ctl.main"]


def dashboard_url(config_path: Path) -> str:
    """The operator's link, as the operator gets it: `hftctl --config ... dashboard`."""
    res = subprocess.run(
        [*hftctl_path(), "--config", str(config_path), "dashboard"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    url = res.stdout.strip()
    assert url.startswith("http://") and "#token=" in url, url
    return url


def status(run_dir: Path, name: str) -> dict[str, Any]:
    from hftd.ipc.control import request_sync
    from hftd.msg.control import Status

    reply = request_sync(run_dir / f"{name}.sock", Status(), timeout=5.0)
    assert reply.ok, reply.error
    result: dict[str, Any] = reply.result
    return result


def latency_us(gateway_detail: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-hop percentiles (us) of a gateway Status' histograms, computed here as the
    monitor computes them (the gateway ships counters only)."""
    import msgspec

    from hftd.runtime.latency import summaries

    out: list[dict[str, Any]] = msgspec.to_builtins(summaries(gateway_detail["latency_hdr"]))
    return out


def monitor_state(run_dir: Path) -> dict[str, Any]:
    state: dict[str, Any] = status(run_dir, "monitor")["detail"]["state"]
    return state


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except (OSError, KeyError):
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def quiesce(config_path: Path, run_dir: Path) -> dict[str, Any]:
    """Stop the venue's background flow (live reload): no market data, so no new orders.

    Returns the gateway's Status once nothing is working and its counters held still.
    """
    import tomllib

    from hftd.ipc.control import request_sync
    from hftd.msg.control import Reload
    from tests.support import deep_merge, dump_toml

    data = tomllib.loads(config_path.read_text())
    config_path.write_text(dump_toml(deep_merge(data, {"exchange": {"flow": {"enabled": False}}})))
    reply = request_sync(run_dir / "exchange.sock", Reload())
    assert reply.ok and "exchange.flow.enabled" in reply.result["applied"], reply

    def still() -> dict[str, Any] | None:
        a = status(run_dir, "gateway")["detail"]
        time.sleep(0.6)
        b = status(run_dir, "gateway")["detail"]
        keys = ("sent", "fills", "cancels", "risk_rejects", "venue_rejects")
        same = all(a[k] == b[k] for k in keys) and a["positions"] == b["positions"]
        return b if same and not b["working"] else None

    settled: dict[str, Any] = wait_for(still, 20, "trading to settle", interval=0.0)
    return settled
