"""`hftctl pause|resume|halt|flatten|reload`: the registry's verbs on the command line.

Verbs that need confirmation ask on a terminal, and need `--yes` otherwise.
Exit status: 0 every target accepted, 1 one refused (a reload: one daemon refused a
change or the file), 3 nothing running. A reload prints a line per daemon: what it
applied, refused and left to the daemon that owns it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from hftd.ctl.context import CtlContext
from hftd.ctl.registry import VERBS, Verb, execute
from hftd.msg.control import ReloadResult

NOT_RUNNING = 3


def run_verb(verb: Verb, ctx: CtlContext, args: argparse.Namespace) -> int:
    if verb.confirm and not args.yes:
        if not sys.stdin.isatty():
            print(
                f"hftctl {verb.name}: {verb.help}. Refusing without --yes (no terminal to ask on).",
                file=sys.stderr,
            )
            return 2
        answer = input(f"{verb.name}: {verb.help}. Type '{verb.name}' to confirm: ")
        if answer.strip() != verb.name:
            print("not confirmed; nothing sent")
            return 1
    replies = execute(ctx.run_dir, verb)
    if not replies:
        print(f"hftd is not running: no {'/'.join(verb.targets)} in {ctx.run_dir}")
        return NOT_RUNNING
    code = 0
    for target, reply in replies.items():
        if reply.ok and verb.name == "reload":
            try:
                r = msgspec.convert(reply.result, ReloadResult)
            except msgspec.ValidationError:  # a daemon of another version: as it said
                print(f"{target}: ok {msgspec.json.encode(reply.result).decode()}")
                continue
            print(f"{target}: {_reload_line(r)}")
            if r.refused or r.error:
                code = 1
        elif reply.ok:
            print(f"{target}: ok {msgspec.json.encode(reply.result).decode()}")
        else:
            print(f"{target}: REFUSED: {reply.error}")
            code = 1
    return code


def _reload_line(r: ReloadResult) -> str:
    if r.error:
        return f"REFUSED, nothing applied: {r.error}"
    parts = []
    if r.refused:
        parts.append("REFUSED, nothing applied (needs a restart): " + ", ".join(r.refused))
    elif r.applied:
        parts.append("applied " + ", ".join(r.applied))
    if r.ignored:
        parts.append("left to its owner " + ", ".join(r.ignored))
    return "; ".join(parts) or "no changes"


def add_parsers(sub: Any) -> None:
    for verb in VERBS.values():
        p = sub.add_parser(verb.name, help=verb.help)
        if verb.confirm:
            p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        else:
            p.set_defaults(yes=True)
        p.set_defaults(run=lambda ctx, args, v=verb: run_verb(v, ctx, args))
