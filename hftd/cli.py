"""`hftd`: run a daemon, the whole system, or a replay."""

from __future__ import annotations

import argparse
import sys

import trio

from hftd.config import ConfigError, HftdConfig, load_config
from hftd.runtime.daemon import ServiceFactory, run_daemon
from hftd.runtime.log import setup_logging


def _load(path: str) -> HftdConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"hftd: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _service(component: str) -> ServiceFactory:
    """The service class of a component (imported only when that daemon runs)."""
    if component == "exchange":
        from hftd.exchange.daemon import ExchangeDaemon

        return ExchangeDaemon
    if component == "feed":
        from hftd.feed.daemon import FeedService

        return FeedService
    if component == "strategy":
        from hftd.strategy.daemon import StrategyService

        return StrategyService
    if component == "gateway":
        from hftd.gateway.daemon import GatewayService

        return GatewayService
    if component == "monitor":
        from hftd.monitor.daemon import MonitorService

        return MonitorService
    if component == "probe":
        from hftd.runtime.probe import ProbeService

        return ProbeService
    raise SystemExit(f"hftd: no daemon called {component!r}")


def cmd_daemon(args: argparse.Namespace) -> int:
    factory = _service(args.command)  # imports everything the daemon needs
    if args.standby and sys.stdin.readline() != "go\n":
        return 0  # the supervisor no longer needs this spare
    return run_daemon(args.command, args.config, factory)


def cmd_up(args: argparse.Namespace) -> int:
    from hftd.supervise.supervisor import run_up

    cfg = _load(args.config)
    setup_logging("supervisor", cfg.system.log_level)
    code: int = trio.run(run_up, cfg, args.config)
    return code


def cmd_replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hftd.replay import format_books, replay_file
    from hftd.wire.errors import RemoteProtocolError

    try:
        builder, count = replay_file(Path(args.file), args.symbol or None)
    except OSError as exc:
        print(f"hftd replay: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except RemoteProtocolError as exc:
        print(f"hftd replay: {args.file} is not an ITCH 5.0 BinaryFILE: {exc}", file=sys.stderr)
        return 2
    print(f"{count} ITCH messages replayed from {args.file}")
    print(format_books(builder, args.depth))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hftd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("up", cmd_up, "run the whole system under the embedded supervisor"),
        ("exchange", cmd_daemon, "run the exchange simulator daemon"),
        ("feed", cmd_daemon, "run the feed handler daemon"),
        ("strategy", cmd_daemon, "run the strategy daemon"),
        ("gateway", cmd_daemon, "run the order gateway daemon"),
        ("monitor", cmd_daemon, "run the monitor daemon (web dashboard, /metrics, alerts)"),
        ("probe", cmd_daemon, "run the probe daemon (supervision tests)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", "-c", default="config/default.toml", help="TOML config file")
        if fn is cmd_daemon:
            p.add_argument(
                "--standby",
                action="store_true",
                help="import everything, then wait for 'go' on stdin (warm spare)",
            )
        p.set_defaults(fn=fn)
    p = sub.add_parser("replay", help="rebuild books from an ITCH 5.0 BinaryFILE")
    p.add_argument("file", help="NASDAQ BinaryFILE (u16 length + ITCH message, repeated)")
    p.add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    p.add_argument("--depth", type=int, default=5, help="price levels to print per side")
    p.set_defaults(fn=cmd_replay)
    args = parser.parse_args(argv)
    result: int = args.fn(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
