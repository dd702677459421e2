"""A tiny HTTP/1.1 for the dashboard, sans-IO: bytes in, requests out; responses as bytes.

Enough for one page, its JSON, Server-Sent Events and /metrics: one request
per connection (every response says ``Connection: close``), bodies only with
Content-Length, no chunked uploads. The trio server in `hftd.monitor.web`
only moves bytes.

Safety (the page can halt trading):
- `authorized`: an action POST must carry ``Authorization: Bearer <token>``,
  the run's secret that only the operator can get (`hftctl dashboard`, over
  the monitor's control socket): a loopback port is open to every local
  user, the token is what tells the operator apart;
- `host_allowed`: a request must name this server by a loopback name (or the
  configured host), which defeats DNS rebinding from a hostile page;
- action POSTs must carry the `X-Hftd-Action` header naming the verb: a
  custom header makes a cross-origin request need a CORS preflight, which
  this server never grants, so another site cannot forge one.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import parse_qs, unquote

import msgspec

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_DIGITS = re.compile(r"[0-9]+")


class HttpError(Exception):
    """The peer sent something we will not serve; answer `status` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request(msgspec.Struct, frozen=True):
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


def parse_request(buf: bytes) -> tuple[Request, int] | None:
    """A complete request at the start of `buf` and its length, or None if more is needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise HttpError(431, "request head too large")
        return None
    if end > MAX_HEAD:
        raise HttpError(431, "request head too large")
    try:
        head = buf[:end].decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
        raise HttpError(400, "undecodable head") from exc
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, f"bad request line {lines[0][:80]!r}")
    method, target, _ = parts
    if not method.isalpha() or not method.isupper():
        raise HttpError(400, f"bad method {method[:20]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, f"bad header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(400, "chunked bodies are not supported")
    length_text = headers.get("content-length", "0")
    # ASCII digits only: str.isdigit() is true for "²" or "٣", which int() refuses or reads.
    if not _DIGITS.fullmatch(length_text):
        raise HttpError(400, "bad Content-Length")
    length = int(length_text) if len(length_text) <= 9 else MAX_BODY + 1  # int(): <= 4300 digits
    if length > MAX_BODY:
        raise HttpError(413, "body too large")
    total = end + 4 + length
    if len(buf) < total:
        return None
    # Origin form only ("/path?query"), split by hand: urlsplit reads "//x" as a
    # host and raises on "//[" (an unclosed IPv6 literal).
    if not target.startswith("/"):
        raise HttpError(400, "only origin-form request targets")
    path, _, query = target.partition("#")[0].partition("?")
    req = Request(
        method=method,
        target=target,
        path=unquote(path),
        query=parse_qs(query),
        headers=headers,
        body=bytes(buf[end + 4 : total]),
    )
    return req, total


def host_allowed(host_header: str, port: int, bound_host: str) -> bool:
    """Is `Host:` this server? Loopback names always; the bound host if not a wildcard.

    Bound to a wildcard (0.0.0.0, ::), any Host is accepted: the operator chose
    to serve the network, and names it by whatever name resolves to it.
    """
    if bound_host in ("0.0.0.0", "::", ""):
        return True
    names = {*LOOPBACK_NAMES, bound_host if ":" not in bound_host else f"[{bound_host}]"}
    host = host_header.strip().lower()
    return host in {f"{n}:{port}" for n in names} or (port == 80 and host in names)


def bearer_token(authorization: str) -> str:
    """The credentials of ``Authorization: Bearer <token>`` ("" for none or another scheme)."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return credentials.strip()


def authorized(req: Request, token: bytes) -> bool:
    """Does `req` carry the run's token? In constant time; never with an empty token
    (a server without one refuses every action rather than accepting any)."""
    if not token:
        return False
    presented = bearer_token(req.header("authorization")).encode("utf-8", "replace")
    return hmac.compare_digest(presented, token)


def operator_url(host: str, port: int, token: str) -> str:
    """The page's URL for the operator, the token in the fragment: a browser never sends
    a fragment, so it stays out of request lines, access logs and Referer headers.

    A wildcard bind (0.0.0.0, ::) is reached on loopback, which `host_allowed` accepts.
    """
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/#token={token}"


def response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A complete response (Connection: close)."""
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        "Connection: close",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(status: int, obj: object, headers: dict[str, str] | None = None) -> bytes:
    return response(status, msgspec.json.encode(obj), "application/json", headers)


def unauthorized() -> bytes:
    """401 for an action without the run's token; the same answer whatever was asked,
    so a caller without the token learns nothing about verbs or bodies."""
    return json_response(
        401,
        {"error": "not authorized: open the operator link from `hftctl dashboard`"},
        {"WWW-Authenticate": "Bearer"},
    )


def sse_head() -> bytes:
    """Response head of an event stream (the body never ends; the server closes it)."""
    return (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream\r\n"
        "Cache-Control: no-store\r\n"
        "X-Accel-Buffering: no\r\n"
        "Connection: close\r\n\r\n"
        "retry: 1000\n\n"
    ).encode("latin-1")


def sse_event(data: bytes, event: str = "", event_id: str = "") -> bytes:
    """One Server-Sent Event; `data` may span lines (each gets its own `data:`)."""
    out = b""
    if event_id:
        out += b"id: " + event_id.encode() + b"\n"
    if event:
        out += b"event: " + event.encode() + b"\n"
    for line in data.split(b"\n"):
        out += b"data: " + line + b"\n"
    return out + b"\n"


SSE_PING = b": ping\n\n"
