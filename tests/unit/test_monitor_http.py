"""The dashboard's HTTP: the sans-IO parser, then the trio server in-process (no daemons)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from hftd.monitor import http
from hftd.monitor.web import WebApp, serve_web
from hftd.msg.control import Reply

# --- sans-IO -------------------------------------------------------------------------


def test_parse_incrementally() -> None:
    raw = (
        b"POST /api/action/pause?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        b"Content-Length: 4\r\nX-Hftd-Action: pause\r\n\r\n{}{}"
    )
    for cut in range(len(raw)):
        assert http.parse_request(raw[:cut]) is None
    parsed = http.parse_request(raw + b"GET / HTTP/1.1\r\n\r\n")
    assert parsed is not None
    req, used = parsed
    assert used == len(raw)
    assert (req.method, req.path, req.query, req.body) == (
        "POST",
        "/api/action/pause",
        {"x": ["1"]},
        b"{}{}",
    )
    assert req.header("X-HFTD-ACTION") == "pause" and req.header("missing", "d") == "d"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", 413),
        (b"GET http://evil/ HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000, 431),
    ],
)
def test_bad_requests(raw: bytes, status: int) -> None:
    with pytest.raises(http.HttpError) as info:
        http.parse_request(raw)
    assert info.value.status == status


def test_host_check() -> None:
    assert http.host_allowed("127.0.0.1:8080", 8080, "127.0.0.1")
    assert http.host_allowed("localhost:8080", 8080, "127.0.0.1")
    assert http.host_allowed("[::1]:8080", 8080, "127.0.0.1")
    assert not http.host_allowed("evil.example:8080", 8080, "127.0.0.1")  # DNS rebinding
    assert not http.host_allowed("127.0.0.1:9999", 8080, "127.0.0.1")
    assert not http.host_allowed("", 8080, "127.0.0.1")
    assert http.host_allowed("desk-7:8080", 8080, "0.0.0.0")  # operator chose to expose it


def test_bearer_token_check() -> None:
    token = b"s3cret-token_0123456789abcdefghijklmnop"

    def req(auth: str | None) -> http.Request:
        headers = {} if auth is None else {"authorization": auth}
        return http.Request("POST", "/", "/", {}, headers)

    assert http.bearer_token("Bearer abc") == "abc"
    assert http.bearer_token("  bearer   abc  ") == "abc"  # the scheme is case-insensitive
    assert http.bearer_token("Basic YWJj") == "" and http.bearer_token("") == ""
    assert http.authorized(req("Bearer " + token.decode()), token)
    assert not http.authorized(req(None), token)
    assert not http.authorized(req("Bearer "), token)
    assert not http.authorized(req("Bearer " + token.decode()[:-1]), token)
    assert not http.authorized(req("Bearer " + token.decode() + "x"), token)
    assert not http.authorized(req("Basic " + token.decode()), token)
    assert not http.authorized(req("Bearer \xe9\xff"), token)  # latin-1 junk: no crash
    # A server without a token accepts nothing, not everything.
    assert not http.authorized(req("Bearer "), b"") and not http.authorized(req(None), b"")


def test_operator_url_keeps_the_token_in_the_fragment() -> None:
    assert http.operator_url("127.0.0.1", 8080, "T0k") == "http://127.0.0.1:8080/#token=T0k"
    assert http.operator_url("0.0.0.0", 81, "T") == "http://127.0.0.1:81/#token=T"
    assert http.operator_url("::", 81, "T") == "http://[::1]:81/#token=T"
    assert http.operator_url("::1", 81, "T") == "http://[::1]:81/#token=T"
    assert http.operator_url("desk-7", 81, "T") == "http://desk-7:81/#token=T"
    for host in ("127.0.0.1", "0.0.0.0", "::", "::1"):  # the server accepts what it links to
        netloc = http.operator_url(host, 81, "T").split("/")[2]
        assert http.host_allowed(netloc, 81, host), host


def test_responses_and_events() -> None:
    r = http.response(200, b"hi", "text/plain")
    head, body = r.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 2" in head
    assert b"Connection: close" in head and body == b"hi"
    assert http.sse_event(b'{"a":1}', "state") == b'event: state\ndata: {"a":1}\n\n'
    assert http.sse_event(b"x\ny", event_id="7") == b"id: 7\ndata: x\ndata: y\n\n"


@pytest.mark.parametrize(
    "raw, status",
    [
        # urlsplit read "//[" as a host, an unclosed IPv6 literal: ValueError, not 400
        (b"GET //[ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", None),
        (b"GET //[::1]:80/x?a=1 HTTP/1.1\r\n\r\n", None),
        # str.isdigit() is true for these; int() raises (or reads another script's digit)
        ("GET / HTTP/1.1\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"), 400),
        ("GET / HTTP/1.1\r\nContent-Length: \u0663\r\n\r\n".encode("utf-8"), 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nContent-Length: 0000000000000000000001\r\n\r\nx", 413),
    ],
    ids=[
        "slash-slash-bracket",
        "authority-like",
        "superscript-two",
        "arabic-three",
        "negative",
        "5000-digits",
        "zero-padded",
    ],
)
def test_hostile_requests_are_parsed_or_refused_never_raise(raw: bytes, status: int | None) -> None:
    if status is None:
        parsed = http.parse_request(raw)
        assert parsed is not None
        req = parsed[0]
        assert req.path == req.target.partition("?")[0]  # a path, never a host
        return
    with pytest.raises(http.HttpError) as info:
        http.parse_request(raw)
    assert info.value.status == status


# --- the server, in-process ------------------------------------------------------------


async def fetch(port: int, raw: bytes, until: bytes = b"") -> bytes:
    """Send `raw`; read until the server closes (or `until` has arrived)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        out = b""
        with trio.fail_after(5):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return out
                out += chunk
                if until and until in out:
                    return out


def get(path: str, port: int, host: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n\r\n".encode()


def post(path: str, port: int, body: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}\r\n"
    ).encode() + body


def split(resp: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


TOKEN = "kq0cZ8Yw3u1Qm2rT7vXb9nLp4sHj6dFg5aEe0iOo_-A"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def with_server(
    test: Callable[[WebApp, int, list[str], list[str]], Awaitable[None]],
    metrics_only: bool = False,
    token: str = TOKEN,
    **limits: Any,
) -> None:
    sent: list[str] = []
    modes: list[str] = []

    def state_json(history: str) -> bytes:
        modes.append(history)
        if "explode" in modes:
            raise KeyError("a bug met with this request")
        return json.dumps({"seq": len(modes), "history": history}).encode()

    async def execute(name: str) -> dict[str, Reply]:
        sent.append(name)
        return {"gateway": Reply(ok=True, result={"mode": name})}

    async def main() -> None:
        app = WebApp(state_json, lambda: b"hftd_up 1\n", execute, token=token.encode(), **limits)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: serve_web(app, listeners, "127.0.0.1", port, metrics_only=metrics_only)
            )
            with trio.fail_after(20):
                await test(app, port, sent, modes)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_page_state_metrics_and_errors() -> None:
    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        status, headers, body = split(await fetch(port, get("/", port)))
        assert status == 200 and headers["content-type"].startswith("text/html")
        page = body.decode()
        assert '"name":"flatten"' in page and "VERBS_JSON" not in page
        # Nothing outside this server: no absolute URLs at all.
        assert "http://" not in page and "https://" not in page and "//cdn" not in page
        status, headers, body = split(await fetch(port, get("/metrics", port)))
        assert (status, body) == (200, b"hftd_up 1\n")
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        status, _, body = split(await fetch(port, get("/api/state?history=0", port)))
        assert status == 200 and json.loads(body)["history"] == "none"
        assert split(await fetch(port, get("/nope", port)))[0] == 404
        assert split(await fetch(port, get("/", port, host="evil.example")))[0] == 403
        assert split(await fetch(port, b"BROKEN\r\n\r\n"))[0] == 400
        assert sent == []

    with_server(check)


def test_actions_need_the_header_and_confirmation() -> None:
    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        hdr = {"X-Hftd-Action": "halt", "Content-Type": "application/json", **AUTH}
        r = split(await fetch(port, post("/api/action/halt", port, b"{}", AUTH)))
        assert r[0] == 403 and sent == []  # no custom header: a forged cross-site POST
        r = split(await fetch(port, post("/api/action/halt", port, b"{}", hdr)))
        assert r[0] == 409 and sent == []  # halt needs confirming
        r = split(await fetch(port, post("/api/action/halt", port, b'{"confirm": true}', hdr)))
        assert r[0] == 200 and sent == ["halt"]
        assert json.loads(r[2])["replies"]["gateway"]["ok"] is True
        r = split(
            await fetch(
                port, post("/api/action/pause", port, b"", {"X-Hftd-Action": "pause", **AUTH})
            )
        )
        assert r[0] == 200 and sent == ["halt", "pause"]  # pause needs no confirmation
        assert (
            split(
                await fetch(
                    port,
                    post("/api/action/explode", port, b"", {"X-Hftd-Action": "explode", **AUTH}),
                )
            )[0]
            == 404
        )
        assert split(await fetch(port, get("/api/action/pause", port)))[0] == 405

    with_server(check)


def test_an_action_body_nested_too_deep_is_a_bad_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`[[[…` 5,000 deep made msgspec's JSON decoder raise RecursionError, which only
    DecodeError was expected to: the operator's request got 500 and an internal error
    was logged and counted (found by tests/fuzz). It is a body that is not JSON: 400."""
    caplog.set_level(logging.WARNING, logger="hftd.monitor.web")

    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        for body in (b"[" * 5000, b'{"confirm":' * 3000):
            r = split(
                await fetch(
                    port, post("/api/action/pause", port, body, {"X-Hftd-Action": "pause", **AUTH})
                )
            )
            assert r[0] == 400 and json.loads(r[2]) == {"error": "body is not JSON"}
        assert sent == [] and app.stats["web"].errors == 0

    with_server(check)
    assert not [r for r in caplog.records if "failed" in r.getMessage()]


def test_actions_need_the_token(caplog: pytest.LogCaptureFixture) -> None:
    """No token, a wrong one or another scheme: 401, nothing executed, and the same
    answer whatever was asked (no verb, header or confirmation is looked at first)."""
    caplog.set_level(logging.WARNING, logger="hftd.monitor.web")

    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        confirmed = b'{"confirm": true}'
        for auth in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": "Bearer"},
        ):
            for verb, body, extra in (
                ("pause", b"", {"X-Hftd-Action": "pause"}),
                ("halt", confirmed, {"X-Hftd-Action": "halt"}),
                ("halt", b"{}", {"X-Hftd-Action": "halt"}),
                ("resume", b"", {}),
                ("explode", b"", {"X-Hftd-Action": "explode"}),
            ):
                status, headers, raw = split(
                    await fetch(port, post(f"/api/action/{verb}", port, body, {**extra, **auth}))
                )
                assert status == 401, (verb, auth, raw)
                assert headers["www-authenticate"] == "Bearer"
                assert "hftctl dashboard" in json.loads(raw)["error"]
        assert sent == []
        r = split(
            await fetch(
                port, post("/api/action/pause", port, b"", {"X-Hftd-Action": "pause", **AUTH})
            )
        )
        assert r[0] == 200 and sent == ["pause"]
        # The read-only routes need no token.
        assert split(await fetch(port, get("/api/state", port)))[0] == 200
        assert split(await fetch(port, get("/", port)))[0] == 200

    with_server(check)
    refusals = [r for r in caplog.records if "refused action" in r.getMessage()]
    # 25 refused requests; the log got the first few, never the token presented.
    assert 1 <= len(refusals) <= 5
    assert all(TOKEN[:-1] not in r.getMessage() for r in caplog.records)


def test_a_server_without_a_token_refuses_every_action() -> None:
    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        for auth in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer"}):
            r = split(
                await fetch(
                    port, post("/api/action/pause", port, b"", {"X-Hftd-Action": "pause", **auth})
                )
            )
            assert r[0] == 401
        assert sent == []

    with_server(check, token="")


def test_event_stream_pushes_each_state() -> None:
    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(get("/events", port))
            buf = b""

            async def events(n: int) -> list[Any]:
                nonlocal buf
                with trio.fail_after(5):
                    while buf.count(b"\n\n") < n + 1:  # +1: the head's "retry:" block
                        buf += await stream.receive_some(65536)
                body = buf.partition(b"\r\n\r\n")[2]
                return [
                    json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")
                ]

            first = await events(1)
            assert first[0]["full"] is True and first[0]["state"]["history"] == "all"
            assert b"text/event-stream" in buf
            # The sender conflates to the latest state, so publish one at a time.
            app.publish()
            got = await events(2)
            assert [e["full"] for e in got] == [True, False]
            assert got[1]["state"]["history"] == "tail"
            app.publish()
            assert [e["full"] for e in await events(3)] == [True, False, False]

    with_server(check)


def test_metrics_only_listener() -> None:
    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        assert split(await fetch(port, get("/metrics", port)))[0] == 200
        assert split(await fetch(port, get("/", port)))[0] == 404
        assert (
            split(
                await fetch(port, post("/api/action/pause", port, b"", {"X-Hftd-Action": "pause"}))
            )[0]
            == 404
        )
        assert sent == []

    with_server(check, metrics_only=True)


def test_hostile_requests_do_not_end_the_server(caplog: pytest.LogCaptureFixture) -> None:
    """`GET //[` and `Content-Length: ²` raised ValueError out of the connection's task
    and ended the monitor; an error inside a route did the same. Now: 400s, a 500, a line
    in the log each, and the next request is served."""
    caplog.set_level(logging.WARNING, logger="hftd.monitor.web")

    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        host = f"Host: 127.0.0.1:{port}\r\n".encode()
        assert split(await fetch(port, b"GET //[ HTTP/1.1\r\n" + host + b"\r\n"))[0] == 404
        two = b"GET / HTTP/1.1\r\n" + host + "Content-Length: \u00b2\r\n\r\n".encode("latin-1")
        assert split(await fetch(port, two))[0] == 400
        modes.append("explode")  # the next state_json raises
        assert split(await fetch(port, get("/api/state", port)))[0] == 500
        modes.clear()
        assert split(await fetch(port, get("/api/state", port)))[0] == 200
        stats = app.stats["web"].as_dict()
        assert (stats["bad_requests"], stats["errors"], stats["open"]) == (1, 1, 0)

    with_server(check)
    lines = [r.getMessage() for r in caplog.records]
    assert any("bad Content-Length" in line for line in lines)
    assert any("KeyError" in line and "in state_json" in line for line in lines)
    assert not any(r.exc_info for r in caplog.records)


def test_connections_are_capped_and_bounded_in_time() -> None:
    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
        while app.stats["web"].open < 3:  # all three accepted
            await trio.sleep(0.01)
        assert split(await fetch(port, get("/", port)))[0] == 503  # over the cap, at once
        for s in idle:  # opened, never used: closed after the timeout, not counted
            with trio.fail_after(3):
                assert await s.receive_some(1) == b""
            await s.aclose()
        async with await trio.open_tcp_stream("127.0.0.1", port) as slow:
            await slow.send_all(b"GET / HTTP/1.1\r\n")  # and never the rest
            with trio.fail_after(3):
                assert await slow.receive_some(1) == b""
        assert split(await fetch(port, get("/", port)))[0] == 200
        stats = app.stats["web"].as_dict()
        assert (stats["refused"], stats["timeouts"], stats["idle_closed"]) == (1, 1, 3)
        assert stats["limits_hit"] == 2

    with_server(check, max_connections=3, timeout_s=1.0)


def test_an_event_stream_nobody_reads_is_dropped() -> None:
    async def check(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        reader = await trio.open_tcp_stream("127.0.0.1", port)
        reader.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await reader.send_all(get("/events", port))
        with trio.fail_after(10):
            while app.stats["web"].timeouts == 0:  # published states pile up unread
                app.publish()
                await trio.sleep(0.01)
        assert app.streams == 0
        await reader.aclose()

    def big_state(history: str) -> bytes:
        return b"{" + b" " * 200_000 + b"}"

    async def with_big(app: WebApp, port: int, sent: list[str], modes: list[str]) -> None:
        app.state_json = big_state
        await check(app, port, sent, modes)

    with_server(with_big, timeout_s=0.3)
