"""`hftd`: run a daemon, the whole system, a backtest or a replay."""

from __future__ import annotations

import argparse
import sys
from functools import partial

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
    if component == "hotpath":
        from hftd.hotpath.daemon import HotpathService

        return HotpathService
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
    code: int = trio.run(partial(run_up, new_day=args.new_day), cfg, args.config)
    return code


def cmd_day(args: argparse.Namespace) -> int:
    """`hftd day show | new`: the trading day the journals go in (hftd.runtime.days)."""
    from hftd.runtime import days
    from hftd.runtime.rundir import RunDirError

    cfg = _load(args.config)
    try:
        if args.action == "show":
            return _show_day(cfg)
        run_dir = cfg.system.resolved_run_dir()
        directory = days.journal_dir(cfg)
        day, what = days.open_day(
            cfg, new=True, check=lambda: days.refuse_if_running(run_dir, directory)
        )
    except RunDirError as exc:  # days.DayError is one
        print(f"hftd day {args.action}: {exc}", file=sys.stderr)
        return 1
    print(f"trading day {day.name} {what}: journals in {day.path}")
    return 0


def _show_day(cfg: HftdConfig) -> int:
    """Print the current day, its directory and journals; creates nothing."""
    from hftd.runtime import days

    directory = cfg.system.resolved_journal_dir()
    current = days.read_current(directory) if directory.is_dir() else None
    if current is None:
        print(f"no trading day yet in {directory}: `hftd up` (or a daemon) opens the first")
        return 0
    path = directory / str(current)
    print(f"trading day {current}")
    print(f"  directory         {path}")
    for name in days.JOURNALS:
        try:
            size = f"{(path / name).stat().st_size:,} bytes"
        except FileNotFoundError:
            size = "none yet"
        print(f"  {name:17s} {size}")
    others = [str(d) for d in days.day_names(directory) if d != current]
    if others:
        span = others[0] if len(others) == 1 else f"{others[0]} .. {others[-1]}"
        print(f"other days kept: {len(others)} ({span})")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hftd.replay import ReplayError, format_books, replay_file

    try:
        builder, count = replay_file(Path(args.file), args.symbol or None)
    except OSError as exc:
        print(f"hftd replay: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except ReplayError as exc:  # names the file, the message number and its byte offset
        print(f"hftd replay: {exc}", file=sys.stderr)
        return 2
    print(f"{count} ITCH messages replayed from {args.file}")
    print(format_books(builder, args.depth))
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Recorded market data through the live strategy, risk and position code."""
    from hftd.backtest.cli import run_backtest

    return run_backtest(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hftd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("up", cmd_up, "run the whole system under the embedded supervisor"),
        ("exchange", cmd_daemon, "run the exchange simulator daemon"),
        ("feed", cmd_daemon, "run the feed handler daemon"),
        ("strategy", cmd_daemon, "run the strategy daemon"),
        ("gateway", cmd_daemon, "run the order gateway daemon"),
        ("hotpath", cmd_daemon, "run feed, strategy and gateway in one process (composite)"),
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
        if fn is cmd_up:
            p.add_argument(
                "--new-day",
                action="store_true",
                help="open a new trading day (new journals) instead of continuing the current one",
            )
        p.set_defaults(fn=fn)
    p = sub.add_parser("day", help="show the current trading day, or open a new one")
    p.add_argument("--config", "-c", default="config/default.toml", help="TOML config file")
    p.add_argument(
        "action",
        choices=("show", "new"),
        help="show: the current day and its journals; new: open a new day (nothing may run)",
    )
    p.set_defaults(fn=cmd_day)
    p = sub.add_parser(
        "backtest", help="run the strategies on recorded market data (ITCH 5.0, LOBSTER)"
    )
    p.add_argument("--config", "-c", default="config/backtest.toml", help="TOML config file")
    p.add_argument(
        "--data",
        action="append",
        metavar="FILE",
        help="a recorded file instead of the config's backtest.data (repeatable)",
    )
    p.add_argument("--out", help="results directory (default: the config's backtest.out_dir)")
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="a progress line on stderr (auto: when stderr is a terminal)",
    )
    p.set_defaults(fn=cmd_backtest)
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
