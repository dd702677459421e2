"""The monitor daemon (`hft@monitor`): a thin trio shell around the pure monitor.

Every `monitor.poll_interval_s` it hands the pollers' latest readings
(`hftd.monitor.poll`) to the `Aggregator` (`hftd.monitor.model`), logs the
alerts raised and cleared, and wakes the web page's event streams. It serves:

- its control socket (by `run_daemon`): `Status` detail carries the
  aggregated state under ``state`` (what `hftctl console` shows);
- the web dashboard, `/metrics`, `/api/state`, `/events` and the action
  endpoint on `monitor.web_host:web_port` (loopback by default), and
  `/metrics` alone on `monitor.metrics_port` if set;
- `WebAccess` on its control socket: the page's URL with the run's token
  (`<run_dir>/web.token`), which actions need, and only while this monitor
  holds the listening socket of that URL: a link to a port someone else
  serves would hand them the token. Whoever may use the control socket is the
  operator; the token is never logged nor put in `Status`.

A port that cannot be bound (another monitor, another program) is logged
and retried every few seconds: the monitor keeps watching, alerting and
feeding the console; its Status says what is wrong. Whoever held the web port
may have served a page on our origin that read the token (from the link, or
the tab's `sessionStorage` on a reload): at the first failure `web.token` is
removed (a restarted monitor must not go back to it), and once the port is
bound a new token is made.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import re
import secrets
import socket
import stat
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

from hftd.config import COMPONENTS, HftdConfig
from hftd.ctl.registry import VERBS, execute_async
from hftd.ipc import control
from hftd.monitor import http, prom
from hftd.monitor.cgroup import read_memory
from hftd.monitor.model import Aggregator, Poll, Reading
from hftd.monitor.poll import Poller
from hftd.monitor.schedstat import read_pressure, read_waits
from hftd.monitor.state import SystemState, without_history
from hftd.monitor.web import WebApp, serve_web
from hftd.msg.control import Command, Reply, StatusInfo, WebAccess

log = logging.getLogger("hftd.monitor")

BIND_RETRY_S = 5.0
TAIL_POINTS = 5
TOKEN_FILE = "web.token"
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")  # what secrets.token_urlsafe(32) makes


def _read_token(path: Path) -> tuple[str, str]:
    """(token, "") if `path` holds one we can trust, else ("", why not; "" if absent).

    Trusted only as a regular file of ours that nobody else may read or write:
    another user who could read it could act; one who could write it could pick it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "", ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "", "it is a symbolic link"
        return "", f"cannot open it: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "", "not a regular file"
        if st.st_uid != os.geteuid():
            return "", f"owned by uid {st.st_uid}, not {os.geteuid()}"
        if st.st_mode & 0o077:
            return "", f"mode {stat.S_IMODE(st.st_mode):04o}: group or others have access"
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    token = data.decode("ascii", "replace").strip()
    if not TOKEN_RE.fullmatch(token):
        return "", "its content is not a token"
    return token, ""


def _write_token(path: Path, token: str) -> None:
    """Write `token` to `path` (mode 0600) atomically: a reader sees the old file or the
    new one, and the temporary file is created fresh (never through a link)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask only removes bits: make the mode exact
            data = (token + "\n").encode()
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a link or a foreign file, never writes through it
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _new_token(path: Path) -> tuple[str, str]:
    """A new token, written to `path`; (token, where it is kept). If it cannot be written
    the old file is removed (best effort), so a restarted monitor does not go back to it."""
    token = secrets.token_urlsafe(32)
    try:
        _write_token(path, token)
    except OSError as exc:  # the page still works until the monitor restarts
        note = f"in memory only: cannot write {path}: {exc.strerror or exc}"
        log.error("web token: %s", note)
        try:
            path.unlink(missing_ok=True)
        except OSError as gone:
            log.error("web token: cannot remove %s either: %s", path, gone.strerror or gone)
        return token, note
    return token, str(path)


def web_token(run_dir: Path) -> tuple[str, str]:
    """The run's web token and where it is kept (the file, or why only in memory).

    `<run_dir>/web.token` is reused while it is trustworthy, so a restarted monitor
    keeps open pages working; else a new one replaces it. `hftd up` removes the file
    when it starts: each run draws its own. The token is never logged."""
    path = run_dir / TOKEN_FILE
    token, problem = _read_token(path)
    if token:
        log.info("web token: reusing %s", path)
        return token, str(path)
    if problem:
        log.warning("web token: refusing %s (%s); replacing it", path, problem)
    token, where = _new_token(path)
    if where == str(path):
        log.info("web token: created %s", path)
    return token, where


def port_listeners(port: int) -> list[int]:
    """The uids with a TCP socket listening on `port` (any address), from /proc/net/tcp*,
    which every local user may read: tells the operator who holds the web port."""
    uids: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()  # sl local_address rem_address st ... uid
            if len(f) > 7 and f[3] == "0A" and int(f[1].rpartition(":")[2], 16) == port:
                uids.add(int(f[7]))
    return sorted(uids)


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def bind_problem(exc: OSError, host: str, port: int) -> str:
    """Why `host:port` cannot be listened on, for the log, Status and `hftctl dashboard`."""
    where = f"{host}:{port}: {exc.strerror or exc}"
    if exc.errno != errno.EADDRINUSE:
        return f"cannot listen on {where}"
    holders = port_listeners(port)
    if holders:
        where += "; listening there: " + ", ".join(_user(u) for u in holders)
    return f"port {port} is held by another program ({where})"


def holds(listeners: list[trio.SocketListener], port: int) -> bool:
    """Do `listeners` still listen on `port`? Asked of the kernel, not of our bookkeeping."""
    if not listeners:
        return False
    for listener in listeners:
        sock = listener.socket
        try:
            if sock.fileno() < 0 or sock.getsockname()[1] != port:
                return False
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                return False
        except OSError:
            return False
    return True


def watched(cfg: HftdConfig, me: str = "monitor") -> list[str]:
    """The daemons to watch: every enabled one but `me`, in pipeline order."""
    order = {n: i for i, n in enumerate(COMPONENTS)}
    return sorted((n for n in cfg.start_order() if n != me), key=lambda n: order.get(n, 99))


class MonitorService:
    def __init__(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        self.names = watched(cfg)
        self.agg = Aggregator(cfg)
        self.state = SystemState()
        self.started = time.monotonic()
        self.poller: Poller | None = None
        self.registry = prom.make_registry(lambda: (self.state, self.agg.histograms()))
        self.web: dict[str, str] = {}  # listener name -> URL or "error: ..."
        self.tick_ms = 0.0
        self.latency_ms = 0.0  # the last latency refresh, wall time over all its steps
        self.token = ""  # the web actions' token ("" until `run` has it, or web disabled)
        self.token_where = ""
        self.serving: dict[str, list[trio.SocketListener]] = {}  # listener name -> sockets
        self.app: WebApp | None = None
        self._json: dict[str, bytes] = {}

    # --- serving --------------------------------------------------------------------

    def state_json(self, history: str) -> bytes:
        """JSON of the newest state, history "all", "tail" (last few points) or "none"."""
        cached = self._json.get(history)
        if cached is None:
            s = self.state
            if history == "none":
                s = without_history(s)
            elif history == "tail":
                s = msgspec.structs.replace(s, history=s.history[-TAIL_POINTS:])
            cached = self._json[history] = msgspec.json.encode(s)
        return cached

    def metrics(self) -> bytes:
        return prom.exposition(self.registry)

    async def execute(self, name: str) -> dict[str, Reply]:
        return await execute_async(self.cfg.system.resolved_run_dir(), VERBS[name])

    def web_access(self) -> dict[str, Any]:
        """`WebAccess`: the operator's link, only while this monitor serves the page on its
        port; else why not, and no token (whoever holds the port would read it)."""
        mcfg = self.cfg.monitor
        if not mcfg.web_enabled:
            raise ValueError("the web dashboard is off (monitor.web_enabled = false)")
        if not self.token:
            raise RuntimeError("the monitor is still starting; ask again")
        listening = self.web.get("web", "")
        if holds(self.serving.get("web", []), mcfg.web_port):
            return {
                "serving": True,
                "url": http.operator_url(mcfg.web_host, mcfg.web_port, self.token),
                "listening": listening,
            }
        if listening.startswith("error: "):
            problem = listening.removeprefix("error: ")
        elif listening:
            problem = f"the monitor does not hold its listening socket on port {mcfg.web_port}"
        else:
            problem = "the web listener is not open yet"
        return {"serving": False, "problem": problem, "listening": listening}

    def forget_token_file(self, why: str) -> None:
        """Remove `web.token`: the token in it may be read by whoever holds our port, and a
        monitor restarted before it gets the port back would otherwise reuse it."""
        path = self.cfg.system.resolved_run_dir() / TOKEN_FILE
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("web token: cannot remove %s: %s", path, exc.strerror or exc)
            return
        self.token_where = f"in memory only: {path} removed ({why})"
        log.warning(
            "web token: removed %s (%s): no restarted monitor reuses it; a new "
            "token is made once the port is ours",
            path,
            why,
        )

    def rotate_token(self, app: WebApp, why: str) -> None:
        """Replace the token (memory, `app`, the file): the old one may be known."""
        path = self.cfg.system.resolved_run_dir() / TOKEN_FILE
        self.token, self.token_where = _new_token(path)
        app.token = self.token.encode()
        log.warning(
            "web token: rotated (%s): %s; open pages need the new link (hftctl dashboard)",
            self.token_where,
            why,
        )

    async def _listen(
        self,
        app: WebApp,
        what: str,
        port: int,
        metrics_only: bool,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve one listener; if its port is taken, say so and try again later.

        `started` after the first attempt, bound or not: READY must not wait on a port.
        """
        host = self.cfg.monitor.web_host
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        first = True
        lost = ""  # why the port was not ours at some point since the start ("" never)
        while True:
            try:
                listeners = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                problem = bind_problem(exc, host, port)
                if not lost and not metrics_only:
                    self.forget_token_file("the web port is not ours")
                lost = lost or problem
                self.web[what] = f"error: {problem}"
                log.error("%s: %s; retrying every %g s", what, self.web[what], BIND_RETRY_S)
                if first:
                    first = False
                    task_status.started()
                await trio.sleep(BIND_RETRY_S)
                continue
            if lost and not metrics_only:  # before the first request: none sees the old one
                self.rotate_token(
                    app,
                    f"the web port was someone else's since the monitor "
                    f"started ({lost}): pages served there may have read "
                    "the token",
                )
                lost = ""
            self.web[what] = url
            self.serving[what] = listeners
            log.info("%s on %s", what, url)
            if first:
                first = False
                task_status.started()
            try:
                await serve_web(app, listeners, host, port, metrics_only=metrics_only, name=what)
            finally:
                del self.serving[what]
            lost = f"the listener on {host}:{port} stopped"  # serve_web returned: never so far

    # --- the loop -------------------------------------------------------------------

    def snapshot(self, poller: Poller) -> Poll:
        """The pollers' latest readings, and the monitor's own."""
        now = time.monotonic()
        readings = dict(poller.readings)
        readings["monitor"] = Reading(
            name="monitor",
            info=StatusInfo(
                component="monitor",
                pid=os.getpid(),
                state="running",
                uptime_s=now - self.started,
                detail={"listeners": {**control.served_stats(), **self.listener_stats()}},
            ),
            ok_at=now,
            memory=read_memory(os.getpid()) if poller.memory else None,
            cpu_wait=read_waits(os.getpid(), now) if poller.cpu_wait else None,
        )
        return Poll(
            mono=now,
            wall=time.time(),
            readings=readings,
            supervisor=poller.supervisor,
            cpu_pressure_us=read_pressure() if poller.cpu_wait else None,
        )

    def tick(self, poll: Poll, latency: bool = True) -> None:
        """Ingest a poll; with `latency=False` the latency figures are the ones
        `refresh_latency` (in steps, just before) left."""
        t0 = time.perf_counter()
        before = dict(self.agg.book.active)
        self.state = self.agg.ingest(poll, latency=latency)
        self._json = {}
        after = self.agg.book.active
        for key in after.keys() - before.keys():
            a = after[key]
            log.warning("ALERT %s %s: %s", a.severity, key, a.message)
        for key in before.keys() - after.keys():
            ago = time.time() - before[key].raised_at
            log.info("alert cleared %s (raised %.1f s ago)", key, ago)
        self.tick_ms = (time.perf_counter() - t0) * 1000

    async def refresh_latency(self, poll: Poll) -> None:
        """The aggregator's latency refresh, one short step at a time, with a
        checkpoint (a system call: a kernel preemption point) between steps."""
        if not self.agg.latency_due(poll):
            return
        t0 = time.perf_counter()
        for _ in self.agg.latency_steps(poll):
            await trio.sleep(0)
        self.latency_ms = (time.perf_counter() - t0) * 1000

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        mcfg = self.cfg.monitor
        poller = self.poller = Poller(
            self.cfg.system.resolved_run_dir(),
            self.names,
            mcfg.poll_interval_s,
            mcfg.request_timeout_s,
        )
        if mcfg.web_enabled:
            self.token, self.token_where = web_token(self.cfg.system.resolved_run_dir())
        app = self.app = WebApp(
            self.state_json,
            self.metrics,
            self.execute,
            token=self.token.encode(),
            max_connections=mcfg.web_max_connections,
            timeout_s=mcfg.web_timeout_s,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.run)
            try:
                self.tick(self.snapshot(poller))
            except Exception:  # odd data must not keep the monitor from starting
                log.exception("monitor tick failed at start; the next poll tries again")
            if mcfg.web_enabled:
                await nursery.start(self._listen, app, "web", mcfg.web_port, False)
                if mcfg.metrics_port:
                    await nursery.start(self._listen, app, "metrics", mcfg.metrics_port, True)
            task_status.started()
            log.info("watching %s every %g s", ", ".join(self.names), mcfg.poll_interval_s)
            next_t = trio.current_time()
            while True:
                next_t += self.cfg.monitor.poll_interval_s
                await trio.sleep_until(max(next_t, trio.current_time()))
                try:
                    poll = self.snapshot(poller)
                    await self.refresh_latency(poll)  # first: the state below shows it
                    self.tick(poll, latency=False)
                except Exception:  # our bug, met with odd data: log it, keep the last state
                    log.exception("monitor tick failed; showing the previous state")
                    continue
                app.publish()

    # --- the Service protocol -----------------------------------------------------------

    def listener_stats(self) -> dict[str, dict[str, int]]:
        """What the web listeners' limits did (the control socket's is added by its server)."""
        return {n: st.as_dict() for n, st in self.app.stats.items()} if self.app else {}

    def status_detail(self) -> dict[str, Any]:
        p = self.poller
        return {
            "listeners": self.listener_stats(),
            "web": dict(self.web),
            "web_token": self.token_where,  # where it is kept; never the token itself
            "watching": self.names,
            "polls": self.state.seq,
            "tick_ms": round(self.tick_ms, 3),
            "latency_refresh_ms": round(self.latency_ms, 3),
            "requests": p.requests if p else 0,
            "failures": p.failures if p else 0,
            "state": msgspec.to_builtins(without_history(self.state)),
        }

    async def handle(self, cmd: Command) -> Any:
        if isinstance(cmd, WebAccess):
            return self.web_access()
        raise ValueError(f"monitor does not handle {type(cmd).__name__}")

    def live_config(self) -> tuple[str, ...]:
        # Everything the monitor does not use is "live" for it (so a reload of risk
        # limits is not refused here); of its own section, the alert rules and timing.
        # Not [control]: its own control socket's limits are read at start.
        others = tuple(
            f.encode_name
            for f in msgspec.structs.fields(HftdConfig)
            if f.encode_name not in ("monitor", "system", "daemons", "control")
        )
        return (*others, "monitor.alerts", "monitor.poll_interval_s", "monitor.request_timeout_s")

    def apply_config(self, cfg: HftdConfig) -> None:
        self.cfg = cfg
        self.agg.reconfigure(cfg)
        if self.poller is not None:
            self.poller.interval = cfg.monitor.poll_interval_s
            self.poller.timeout = cfg.monitor.request_timeout_s
