"""`hftctl pause|resume|halt|flatten|reload`: the registry's verbs on the command line.

Verbs that need confirmation ask on a terminal, and need `--yes` otherwise.
Exit status: 0 every target accepted, 1 one refused, 3 nothing running.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from hftd.ctl.context import CtlContext
from hftd.ctl.registry import VERBS, Verb, execute

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
        if reply.ok:
            print(f"{target}: ok {msgspec.json.encode(reply.result).decode()}")
        else:
            print(f"{target}: REFUSED: {reply.error}")
            code = 1
    return code


def add_parsers(sub: Any) -> None:
    for verb in VERBS.values():
        p = sub.add_parser(verb.name, help=verb.help)
        if verb.confirm:
            p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        else:
            p.set_defaults(yes=True)
        p.set_defaults(run=lambda ctx, args, v=verb: run_verb(v, ctx, args))
