"""`hftctl dashboard`: print the web dashboard's operator link.

The link carries the run's token in its fragment (`http://127.0.0.1:8080/#token=...`);
the page's action buttons need it, its figures do not. It comes from the monitor
over its control socket, so it reaches only who may use that socket: the
operator. Open it in a browser of your own session; do not pass it on a
command line other users can see (`ps`), or paste it where others read.

The link is printed only while the monitor says it holds the page's listening
socket: if another program holds the port, whoever opens the link gives it the
token (its page reads the fragment). Then nothing of the token is printed.
Exit status: 0 printed, 1 no link (web dashboard off, monitor starting, the
page not served by the monitor), 3 the monitor is not running.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hftd.ctl.context import CtlContext
from hftd.ipc.control import request_sync
from hftd.msg.control import WebAccess

NOT_RUNNING = 3


def run(ctx: CtlContext, args: argparse.Namespace) -> int:
    path = ctx.socket("monitor")
    try:
        reply = request_sync(path, WebAccess(), timeout=5.0)
    except OSError as exc:
        print(f"hftd's monitor is not running: no answer on {path} ({exc})", file=sys.stderr)
        return NOT_RUNNING
    if not reply.ok:
        print(f"hftctl dashboard: the monitor refused: {reply.error}", file=sys.stderr)
        return 1
    result: dict[str, Any] = reply.result
    url = result.get("url")
    if result.get("serving") is not True or not isinstance(url, str):
        # An older monitor does not say: its link may point at someone else's page.
        problem = str(
            result.get("problem")
            or "it did not say it serves the page "
            f"({str(result.get('listening', '')) or 'no listener state'})"
        )
        print(
            f"hftctl dashboard: the monitor is not serving the page: {problem}; "
            "not printing the operator link",
            file=sys.stderr,
        )
        return 1
    print(url)
    if sys.stdout.isatty():
        print(
            "open it in your browser; it lets whoever holds it pause, halt and flatten",
            file=sys.stderr,
        )
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="print the web dashboard's operator link (with token)")
    p.set_defaults(run=run)
