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
    if component == "probe":
        from hftd.runtime.probe import ProbeService

        return ProbeService
    raise SystemExit(f"hftd: no daemon called {component!r}")


def cmd_daemon(args: argparse.Namespace) -> int:
    return run_daemon(args.command, args.config, _service(args.command))


def cmd_up(args: argparse.Namespace) -> int:
    from hftd.supervise.supervisor import run_up

    cfg = _load(args.config)
    setup_logging("supervisor", cfg.system.log_level)
    code: int = trio.run(run_up, cfg, args.config)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hftd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("up", cmd_up, "run the whole system under the embedded supervisor"),
        ("exchange", cmd_daemon, "run the exchange simulator daemon"),
        ("probe", cmd_daemon, "run the probe daemon (supervision tests)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", "-c", default="config/default.toml", help="TOML config file")
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    result: int = args.fn(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
