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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import trio

from hftd.ctl.registry import VERBS
from hftd.monitor import http
from hftd.monitor.page import render_page
from hftd.monitor.prom import CONTENT_TYPE
from hftd.msg.control import Reply

log = logging.getLogger("hftd.monitor.web")

READ_TIMEOUT_S = 5.0
MAX_STREAMS = 32
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
    ) -> None:
        self.state_json = state_json  # ("all" | "tail" | "none" history) -> JSON of the state
        self.metrics = metrics
        self.execute = execute
        self.token = token  # actions need it (empty: every action is refused)
        self.refusals = http.LogThrottle()
        self.changed = trio.Event()  # set (and replaced) after every poll
        self.streams = 0
        self.page = render_page(
            msgspec.json.encode(
                [{"name": v.name, "help": v.help, "confirm": v.confirm} for v in VERBS.values()]
            ).decode()
        )

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
) -> None:
    """Serve on `listeners` (bound to host:port) until cancelled."""
    handler = partial(_serve_conn, app, host, port, metrics_only)
    await trio.serve_listeners(handler, listeners)


async def _read_request(stream: trio.SocketStream) -> http.Request | None:
    buf = bytearray()
    with trio.move_on_after(READ_TIMEOUT_S):
        while True:
            parsed = http.parse_request(bytes(buf))
            if parsed is not None:
                return parsed[0]
            data = await stream.receive_some(65536)
            if not data:
                return None
            buf += data
    return None


async def _serve_conn(
    app: WebApp, host: str, port: int, metrics_only: bool, stream: trio.SocketStream
) -> None:
    try:
        async with stream:
            try:
                req = await _read_request(stream)
            except http.HttpError as exc:
                await stream.send_all(http.response(exc.status, str(exc).encode() + b"\n"))
                return
            if req is None:
                return
            if not http.host_allowed(req.header("host"), port, host):
                await stream.send_all(http.response(403, b"unknown Host\n"))
                return
            if req.path == "/events" and req.method == "GET" and not metrics_only:
                await _events(app, stream)
                return
            await stream.send_all(await _route(app, req, metrics_only, _peer(stream)))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the browser went away


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
        return http.response(200, app.page, "text/html; charset=utf-8",
                             {"Content-Security-Policy": "default-src 'self'; "
                              "script-src 'unsafe-inline'; style-src 'unsafe-inline'"})
    if path == "/api/state":
        with_history = req.query.get("history", ["1"])[0] not in ("0", "false", "no")
        return http.response(200, app.state_json("all" if with_history else "none"),
                             "application/json")
    if path == "/favicon.ico":
        return http.response(204)
    return http.response(404, b"not found\n")


async def _action(app: WebApp, req: http.Request, name: str, peer: str) -> bytes:
    if req.method != "POST":
        return http.response(405, b"POST only\n", headers={"Allow": "POST"})
    if not http.authorized(req, app.token):
        held = app.refusals.allow(time.monotonic())
        if held is not None:
            log.warning("web: refused action %r from %s: %s%s", name[:40], peer,
                        "wrong token" if req.header("authorization") else "no token",
                        f" ({held} more refused, not logged)" if held else "")
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
        except msgspec.DecodeError:
            return http.json_response(400, {"error": "body is not JSON"})
        if isinstance(decoded, dict):
            body = decoded
    if verb.confirm and body.get("confirm") is not True:
        return http.json_response(409, {"error": f"{name} needs confirmation",
                                        "help": verb.help})
    log.warning("web: operator action %s", name)
    replies = await app.execute(name)
    if not replies:
        return http.json_response(503, {"verb": name, "replies": {},
                                        "error": f"no {'/'.join(verb.targets)} running"})
    ok = all(r.ok for r in replies.values())
    return http.json_response(200 if ok else 502, {"verb": name, "replies": replies})


async def _events(app: WebApp, stream: trio.SocketStream) -> None:
    if app.streams >= MAX_STREAMS:
        await stream.send_all(http.response(503, b"too many event streams\n"))
        return
    app.streams += 1
    try:
        await stream.send_all(http.sse_head())
        full = True
        while True:
            # Take the event before reading the state: a publish while we send
            # then wakes us, instead of being missed.
            changed = app.changed
            payload = b'{"full":' + (b"true" if full else b"false") + b',"state":'
            payload += app.state_json("all" if full else "tail") + b"}"
            await stream.send_all(http.sse_event(payload, "state"))
            full = False
            while True:
                with trio.move_on_after(PING_S) as scope:
                    await changed.wait()
                if not scope.cancelled_caught:
                    break
                await stream.send_all(http.SSE_PING)
    finally:
        app.streams -= 1
