"""`hftctl`: operate a running hftd system."""

from __future__ import annotations

import argparse
import sys

from hftd.config import ConfigError
from hftd.ctl.commands import console, dashboard, latency, status, verbs
from hftd.ctl.context import CtlContext
from hftd.runtime.rundir import RunDirError

COMMANDS = [status, console, dashboard, latency]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hftctl", description=__doc__)
    parser.add_argument(
        "--config",
        "-c",
        help="config file (default: the one the running system recorded in its run dir, "
        "else $HFTD_CONFIG, ./config/default.toml, /etc/hftd/hftd.toml, the packaged default); "
        "read only by the commands that need it (console, status without a supervisor)",
    )
    parser.add_argument(
        "--run-dir",
        help="run directory (default: the config's; enough alone, from any directory)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS:
        cmd.add_parser(sub)
    verbs.add_parsers(sub)
    args = parser.parse_args(argv)
    try:
        ctx = CtlContext(args.config, args.run_dir)
    except ConfigError as exc:
        print(f"hftctl: {exc}", file=sys.stderr)
        return 2
    try:
        ctx.check_run_dir()
        code: int = args.run(ctx, args)
    except RunDirError as exc:  # someone else's dir or socket: never act on its answers
        print(f"hftctl: refusing: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a command that needs the config, and it cannot be read
        print(f"hftctl {args.command}: needs the config: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
