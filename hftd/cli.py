"""`hftd`: run a daemon, the whole system, a backtest or a replay."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import trio

from hftd import configsource
from hftd.config import ConfigError, HftdConfig, load_config
from hftd.configsource import ConfigSource
from hftd.runtime.daemon import ServiceFactory, run_daemon
from hftd.runtime.log import setup_logging
from hftd.runtime.loglines import hftd_version, symbols_line, version_line

CONFIG_HELP = (
    "TOML config file (default: $HFTD_CONFIG, else ./config/default.toml if it exists, "
    "else the packaged default: `hftd config show`)"
)


def _load(src: ConfigSource) -> HftdConfig:
    """The config, or exit 2 naming the file and, unless named, why it is that one."""
    try:
        return load_config(src.path)
    except ConfigError as exc:
        named = src.why == "--config"
        print(f"hftd: {exc if named else ConfigError(src.describe(), exc.errors)}", file=sys.stderr)
        raise SystemExit(2) from exc


def _source(args: argparse.Namespace) -> ConfigSource:
    """The config this command uses: `--config`, else the default resolution."""
    return configsource.resolve(args.config)


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
    src = _source(args)
    if src.why != "--config":  # the supervisor always names it: only one run by hand says
        print(f"hftd {args.command}: config: {src.describe()}", file=sys.stderr)
    return run_daemon(args.command, src.path, factory)


def cmd_up(args: argparse.Namespace) -> int:
    from hftd.supervise.supervisor import log, run_up

    src = _source(args)
    cfg = _load(src)
    setup_logging("supervisor", cfg.system.log_level)
    log.info("%s", version_line(hftd_version()))
    log.info("config: %s", src.describe())
    log.info("%s", symbols_line(cfg.symbols))
    code: int = trio.run(partial(run_up, new_day=args.new_day), cfg, src.path)
    return code


def cmd_config(args: argparse.Namespace) -> int:
    """`hftd config init PATH | show`: an editable copy of the packaged default, or
    which file a command run here without `--config` would use."""
    if args.action == "show":
        src = _source(args)
        print(src.describe())
        return 0
    if not args.path:
        print("hftd config init: where to? `hftd config init PATH`", file=sys.stderr)
        return 2
    return _init_config(Path(args.path).expanduser(), args.force)


def _init_config(dest: Path, force: bool) -> int:
    """Write the packaged default to `dest` (0640: it holds the venue's passwords)."""
    if dest.is_dir():
        print(f"hftd config init: {dest} is a directory: name the file", file=sys.stderr)
        return 2
    if dest.exists() and not force:
        print(
            f"hftd config init: {dest} exists, left as is (--force to overwrite it)",
            file=sys.stderr,
        )
        return 1
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")  # never half a file at dest
    try:
        text = configsource.packaged_default().read_bytes()
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        print(f"hftd config init: cannot write {dest}: {exc.strerror}", file=sys.stderr)
        return 1
    path = dest.resolve()
    print(f"wrote {path} (the packaged default config); edit it, then run")
    print(f"  hftd up --config {path}")
    print(f"or export HFTD_CONFIG={path}: every hftd command without --config uses it")
    return 0


def cmd_day(args: argparse.Namespace) -> int:
    """`hftd day show | new`: the trading day the journals go in (hftd.runtime.days)."""
    from hftd.runtime import days
    from hftd.runtime.rundir import RunDirError

    cfg = _load(_source(args))
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
    """The backtest's book-only mode: a recorded file through the feed's normalizer
    and the strategies' book builder, no strategy; the books it ends with."""
    from hftd.backtest.detect import open_source
    from hftd.backtest.itch_file import ItchFile
    from hftd.backtest.source import SourceError
    from hftd.replay import ReplayError, format_books, replay_file, replay_source

    path = Path(args.file)
    try:
        with path.open("rb") as f:
            plain_itch = f.read(2) != b"\x1f\x8b" and isinstance(open_source(path), ItchFile)
        if plain_itch:  # every error named by message number and byte offset
            builder, count = replay_file(path, args.symbol or None)
            what = "ITCH messages"
        else:
            source = open_source(path, args.symbol or None)
            builder, count = replay_source(source, args.symbol or None)
            what = f"updates ({source.name})"
    except OSError as exc:
        print(f"hftd replay: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ReplayError, SourceError) as exc:  # names the file and where in it
        print(f"hftd replay: {exc}", file=sys.stderr)
        return 2
    print(f"{count} {what} replayed from {args.file}")
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
        p.add_argument("--config", "-c", help=CONFIG_HELP)
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
    p.add_argument("--config", "-c", help=CONFIG_HELP)
    p.add_argument(
        "action",
        choices=("show", "new"),
        help="show: the current day and its journals; new: open a new day (nothing may run)",
    )
    p.set_defaults(fn=cmd_day)
    p = sub.add_parser(
        "config", help="write an editable copy of the default config, or show the one in use"
    )
    p.add_argument(
        "action",
        choices=("init", "show"),
        help="init PATH: write the packaged default config to PATH; "
        "show: the config used here without --config, and why",
    )
    p.add_argument("path", nargs="?", help="init: the file to write (parent dirs are created)")
    p.add_argument("--force", action="store_true", help="init: overwrite an existing file")
    p.add_argument("--config", "-c", help="show: as if this were given")
    p.set_defaults(fn=cmd_config)
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
        "--session",
        metavar="DIR",
        help="re-run a recorded live session (strategy.record_inputs) from a day's journal "
        "dir and check it sends the same orders",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="a progress line on stderr (auto: when stderr is a terminal)",
    )
    p.set_defaults(fn=cmd_backtest)
    p = sub.add_parser(
        "replay",
        help="the backtest's book-only mode: rebuild books from a recorded file, no strategies",
    )
    p.add_argument(
        "file", help="an ITCH 5.0 BinaryFILE (plain or gzip) or a LOBSTER zip / message CSV"
    )
    p.add_argument("--symbol", action="append", help="only this symbol (repeatable)")
    p.add_argument("--depth", type=int, default=5, help="price levels to print per side")
    p.set_defaults(fn=cmd_replay)
    args = parser.parse_args(argv)
    result: int = args.fn(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
