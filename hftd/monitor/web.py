"""The dashboard's HTTP server (trio): a thin shell around `hftd.monitor.http`.

Routes:

- GET / : the dashboard page (`hftd.monitor.page`);
- GET /metrics : Prometheus text exposition (the monitor's own registry);
- GET /api/state : the `SystemState` as JSON (`?history=0`: no chart points);
- GET /events : Server-Sent Events, `state` after every poll (the first
  one carries the chart history, later ones its last few points);
- POST /api/action/<verb> : a registry verb (`hftd.ctl.registry`), with
  `Authorization: Bearer <run token>` (checked first: 401 without it, whatever
  was asked), the header `X-Hftd-Action: <verb>`, and the body
  `{"confirm": true}` for the verbs that need confirming. 200 all targets
  accepted, 502 one refused, 503 no target running, 409 not confirmed, 403 no
  header.

The read-only routes need no token: on loopback they show the operator's
figures to local users, which `hftctl status` does not hide either.

A listener with `metrics_only` serves /metrics alone (the optional
`monitor.metrics_port`, for a scraper that should not see the actions).

Limits, per listener: at most `monitor.web_max_connections` open (more get
503 at once), a request must arrive within `monitor.web_timeout_s` and each
response (each event of a stream) be taken within the same, request heads and
bodies are bounded (`http.MAX_HEAD`, `http.MAX_BODY`), and at most
`MAX_STREAMS` event streams. Nothing a client sends ends the monitor: an
error while answering ends that connection (500 if nothing was sent yet).
What the limits did is counted (`ListenerStats`, the monitor's Status under
``listeners``) and logged a line at a time, clipped and rate-limited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial
from typing import Any

import msgspec
import trio

from hftd.ctl.registry import VERBS
from hftd.ipc.limits import ListenerStats
from hftd.monitor import http
from hftd.monitor.page import render_page
from hftd.monitor.prom import CONTENT_TYPE
from hftd.msg.control import Reply
from hftd.runtime.logguard import LogThrottle, clip, one_line

log = logging.getLogger("hftd.monitor.web")

MAX_STREAMS = 32
LINGER_S = 0.5  # after refusing a request: how long to take what the client still sends
LINGER_BYTES = 256 * 1024  # ... and how much of it
PING_S = 10.0

Executor = Callable[[str], Awaitable[dict[str, Reply]]]


class WebApp:
    """What the server shows and does; the daemon supplies the pieces."""

    def __init__(
        self,
        state_json: Callable[[str], bytes],
        metrics: Callable[[], bytes],
        execute: Executor,
        *,
        token: bytes,
        max_connections: int = 64,
        timeout_s: float = 5.0,
    ) -> None:
        self.state_json = state_json  # ("all" | "tail" | "none" history) -> JSON of the state
        self.metrics = metrics
        self.execute = execute
        self.token = token  # actions need it (empty: every action is refused)
        self.max_connections = max_connections  # per listener
        self.timeout_s = timeout_s  # to receive a request; to send each response or event
        self.stats: dict[str, ListenerStats] = {}  # listener name -> what its limits did
        self.throttles: dict[str, LogThrottle] = {}  # kind of refusal -> its log throttle
        self.changed = trio.Event()  # set (and replaced) after every poll
        self.streams = 0
        self.page = render_page(
            msgspec.json.encode(
                [{"name": v.name, "help": v.help, "confirm": v.confirm} for v in VERBS.values()]
            ).decode()
        )

    def warn(self, kind: str, msg: str, *args: object, level: int = logging.WARNING) -> None:
        """A line about a refused request: a few at once, then one per 10 s (+ a count)."""
        throttle = self.throttles.setdefault(kind, LogThrottle(10.0, burst=5))
        throttle.log(log, level, trio.current_time(), msg, *args)

    def publish(self) -> None:
        """A new state is in: wake every event stream."""
        ev, self.changed = self.changed, trio.Event()
        ev.set()


async def serve_web(
    app: WebApp,
    listeners: list[trio.SocketListener],
    host: str,
    port: int,
    *,
    metrics_only: bool = False,
    name: str = "web",
) -> None:
    """Serve on `listeners` (bound to host:port) until cancelled; `name` keys its counters."""
    stats = app.stats.setdefault(name, ListenerStats())
    handler = partial(_serve_conn, app, stats, host, port, metrics_only)
    await trio.serve_listeners(handler, listeners)


class _Conn:
    """One client connection: sends bounded in time, remembering whether any was made."""

    def __init__(self, stream: trio.SocketStream, timeout_s: float) -> None:
        self.stream = stream
        self.timeout_s = timeout_s
        self.sent = False

    async def send(self, data: bytes) -> None:
        """Send `data`; trio.TooSlowError if the client does not take it in time."""
        self.sent = True
        with trio.fail_after(self.timeout_s):
            await self.stream.send_all(data)


async def _read_request(conn: _Conn) -> http.Request | None:
    """The request, or None if the client closed (or sent nothing) in time.

    Raises HttpError for a bad one, TooSlowError for one that did not arrive in time."""
    buf = bytearray()
    with trio.move_on_after(conn.timeout_s):
        while True:
            parsed = http.parse_request(bytes(buf))
            if parsed is not None:
                return parsed[0]
            data = await conn.stream.receive_some(65536)
            if not data:
                return None
            buf += data
    if buf:
        raise trio.TooSlowError
    return None  # opened and never used (a browser's spare connection): not an offence


async def _serve_conn(
    app: WebApp,
    stats: ListenerStats,
    host: str,
    port: int,
    metrics_only: bool,
    stream: trio.SocketStream,
) -> None:
    conn = _Conn(stream, app.timeout_s)
    async with stream:
        if stats.open >= app.max_connections:
            stats.refused += 1
            app.warn(
                "refused",
                "web: connection from %s refused: %d open, monitor.web_max_connections is %d",
                _peer(stream),
                stats.open,
                app.max_connections,
            )
            await _quietly(_answer_and_close(conn, http.response(503, b"too many connections\n")))
            return
        stats.open += 1
        stats.accepted += 1
        try:
            await _serve_request(app, stats, conn, host, port, metrics_only)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the browser went away
        except trio.TooSlowError:
            stats.timeouts += 1
            app.warn(
                "timeout",
                "web: %s did not send its request, or take the answer, within "
                "%g s (monitor.web_timeout_s): closed",
                _peer(stream),
                app.timeout_s,
            )
        except Exception as exc:  # our bug, met with this request: end it, not the monitor
            stats.errors += 1
            app.warn(
                "error",
                "web: request from %s failed: %s",
                _peer(stream),
                one_line(exc),
                level=logging.ERROR,
            )
            if not conn.sent:
                await _quietly(conn.send(http.response(500, b"internal error\n")))
        finally:
            stats.open -= 1


async def _answer_and_close(conn: _Conn, response: bytes) -> None:
    """Answer a request we will not read to its end, then close without a reset.

    Closing a socket with unread input makes the kernel send RST, and the client
    may lose the answer to it: end our side, then take (and drop) what the client
    is still sending, for at most a moment (`LINGER_S`, `LINGER_BYTES`)."""
    await conn.send(response)
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await conn.stream.send_eof()
        with trio.move_on_after(LINGER_S):
            taken = 0
            while taken < LINGER_BYTES and (data := await conn.stream.receive_some(65536)):
                taken += len(data)


async def _quietly(send: Awaitable[None]) -> None:
    """A last answer before closing: if the client is gone or slow, never mind."""
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        await send


async def _serve_request(
    app: WebApp, stats: ListenerStats, conn: _Conn, host: str, port: int, metrics_only: bool
) -> None:
    try:
        req = await _read_request(conn)
    except http.HttpError as exc:
        if exc.status in (413, 431):
            stats.oversized += 1
        else:
            stats.bad_requests += 1
        app.warn(
            "bad", "web: bad request from %s: %d %s", _peer(conn.stream), exc.status, clip(exc)
        )
        await _answer_and_close(conn, http.response(exc.status, str(exc).encode() + b"\n"))
        return
    if req is None:
        stats.idle_closed += 1
        return
    if not http.host_allowed(req.header("host"), port, host):
        await conn.send(http.response(403, b"unknown Host\n"))
        return
    if req.path == "/events" and req.method == "GET" and not metrics_only:
        await _events(app, stats, conn)
        return
    await conn.send(await _route(app, req, metrics_only, _peer(conn.stream)))


def _peer(stream: trio.SocketStream) -> str:
    try:
        addr = stream.socket.getpeername()
    except OSError:
        return "?"
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


async def _route(app: WebApp, req: http.Request, metrics_only: bool, peer: str) -> bytes:
    path = req.path
    if path == "/metrics":
        if req.method != "GET":
            return http.response(405, b"GET only\n", headers={"Allow": "GET"})
        return http.response(200, app.metrics(), CONTENT_TYPE)
    if metrics_only:
        return http.response(404, b"this port serves /metrics only\n")
    if path.startswith("/api/action/"):
        return await _action(app, req, path.removeprefix("/api/action/"), peer)
    if req.method != "GET":
        return http.response(405, b"GET only\n", headers={"Allow": "GET"})
    if path in ("/", "/index.html"):
        return http.response(
            200,
            app.page,
            "text/html; charset=utf-8",
            {
                "Content-Security-Policy": "default-src 'self'; "
                "script-src 'unsafe-inline'; style-src 'unsafe-inline'"
            },
        )
    if path == "/api/state":
        with_history = req.query.get("history", ["1"])[0] not in ("0", "false", "no")
        return http.response(
            200, app.state_json("all" if with_history else "none"), "application/json"
        )
    if path == "/favicon.ico":
        return http.response(204)
    return http.response(404, b"not found\n")


async def _action(app: WebApp, req: http.Request, name: str, peer: str) -> bytes:
    if req.method != "POST":
        return http.response(405, b"POST only\n", headers={"Allow": "POST"})
    if not http.authorized(req, app.token):
        app.warn(
            "unauthorized",
            "web: refused action %r from %s: %s",
            clip(name, 40),
            peer,
            "wrong token" if req.header("authorization") else "no token",
        )
        return http.unauthorized()
    verb = VERBS.get(name)
    if verb is None:
        return http.json_response(404, {"error": f"no verb {name!r}"})
    if req.header("x-hftd-action") != name:
        return http.json_response(403, {"error": "missing X-Hftd-Action header"})
    body: dict[str, Any] = {}
    if req.body:
        try:
            decoded = msgspec.json.decode(req.body)
        except (msgspec.DecodeError, RecursionError):  # nested past msgspec's limit
            return http.json_response(400, {"error": "body is not JSON"})
        if isinstance(decoded, dict):
            body = decoded
    if verb.confirm and body.get("confirm") is not True:
        return http.json_response(409, {"error": f"{name} needs confirmation", "help": verb.help})
    log.warning("web: operator action %s", name)
    replies = await app.execute(name)
    if not replies:
        return http.json_response(
            503, {"verb": name, "replies": {}, "error": f"no {'/'.join(verb.targets)} running"}
        )
    ok = all(r.ok for r in replies.values())
    return http.json_response(200 if ok else 502, {"verb": name, "replies": replies})


async def _events(app: WebApp, stats: ListenerStats, conn: _Conn) -> None:
    if app.streams >= MAX_STREAMS:
        stats.refused += 1
        app.warn("streams", "web: event stream refused: %d open, the most allowed", app.streams)
        await conn.send(http.response(503, b"too many event streams\n"))
        return
    app.streams += 1
    try:
        await conn.send(http.sse_head())
        full = True
        while True:
            # Take the event before reading the state: a publish while we send
            # then wakes us, instead of being missed.
            changed = app.changed
            payload = b'{"full":' + (b"true" if full else b"false") + b',"state":'
            payload += app.state_json("all" if full else "tail") + b"}"
            await conn.send(http.sse_event(payload, "state"))
            full = False
            while True:
                with trio.move_on_after(PING_S) as scope:
                    await changed.wait()
                if not scope.cancelled_caught:
                    break
                await conn.send(http.SSE_PING)
    finally:
        app.streams -= 1
