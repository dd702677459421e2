"""`hftd backtest`: load the config and the data, run, print and write the results."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from hftd.backtest.source import MarketDataSource, SourceError
from hftd.config import ConfigError, HftdConfig, load_config


def _sources(cfg: HftdConfig, config_path: Path, given: list[str] | None) -> list[MarketDataSource]:
    """The data files (the command line's, else the config's, relative to the config
    file), each opened by what its content is."""
    from hftd.backtest.detect import open_source

    if given:
        paths = [Path(p) for p in given]
    else:
        paths = [
            p if p.is_absolute() else config_path.parent / p
            for p in (Path(d) for d in cfg.backtest.data)
        ]
    if not paths:
        raise SourceError(config_path, "backtest.data", "no data: name files there or use --data")
    symbols = [s.symbol for s in cfg.symbols]
    return [open_source(p, symbols) for p in paths]


def run_backtest(args: argparse.Namespace) -> int:
    from hftd.backtest.report import summarize, summary_text, write_results
    from hftd.backtest.results import Results
    from hftd.backtest.runner import Backtest, updates_of

    if args.session:
        from hftd.backtest.session import replay_session

        return replay_session(Path(args.session))
    config_path = Path(args.config)
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        print(f"hftd backtest: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.backtest.log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("hftd").setLevel(cfg.backtest.log_level.upper())
    try:
        sources = _sources(cfg, config_path, args.data)
    except SourceError as exc:
        print(f"hftd backtest: {exc}", file=sys.stderr)
        return 2
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    started = time.monotonic()

    def progress(events: int, t: int) -> None:
        s = t // 1_000_000_000
        rate = events / max(time.monotonic() - started, 1e-9)
        sys.stderr.write(
            f"\r  {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}  "
            f"{events:>12,} events  {rate:>10,.0f}/s"
        )
        sys.stderr.flush()

    hops = None
    if cfg.backtest.latency_histograms:
        from hftd.backtest.latency import load_hops

        hpath = Path(cfg.backtest.latency_histograms)
        hpath = hpath if hpath.is_absolute() else config_path.parent / hpath
        try:
            hops = load_hops(json.loads(hpath.read_text()))
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            print(f"hftd backtest: backtest.latency_histograms {hpath}: {exc}", file=sys.stderr)
            return 2
    out = Path(args.out or cfg.backtest.out_dir)
    # orders, fills and the equity curve written as they come: memory stays flat
    results = Results([i.name for i in cfg.strategy.instances], out, keep=False)
    try:
        bt = Backtest(cfg, progress if show else None, hops, results)
    except ValueError as exc:
        print(f"hftd backtest: backtest.latency_histograms: {exc}", file=sys.stderr)
        return 2
    try:
        bt.run(updates_of(sources))
    except SourceError as exc:
        if show:
            sys.stderr.write("\n")
        print(f"hftd backtest: {exc}", file=sys.stderr)
        return 2
    if show:
        sys.stderr.write("\n")
    elapsed = time.monotonic() - started
    summary = summarize(bt, [f"{s.name}: {s.path}" for s in sources])
    write_results(bt, summary, out)
    print(summary_text(summary), end="")
    print(f"\nresults in {out}/ (report.html, summary.json, fills.csv, orders.csv, equity.csv)")
    print(
        f"{bt.events:,} events in {elapsed:.1f} s ({bt.events / max(elapsed, 1e-9):,.0f}/s)",
        file=sys.stderr,
    )
    return 0
