#!/usr/bin/env python3
"""What compiling the pure hot modules with mypyc would buy: the same tree, twice.

    python bench/bench_compiled.py [--rev HEAD] [--modules hftd/book/l3.py ...]
                                   [--rounds 3] [--data FILE] [--keep DIR]

Why: the per-message Python work is what stands between the hot path and
issue 12's targets, and between the backtest loop and issue 15's 250,000
events/s (docs/performance.md). mypyc (part of mypy, already a dev
dependency) compiles mypy-checked modules to C extensions; `hftd/` is
`mypy --strict` clean, so the question is only what it buys and what it cannot
compile. This bench answers the first without touching the project's build:
it extracts `--rev` twice into a temp dir (`git archive`), compiles
`--modules` in one copy (`mypycify`, opt level 3, in place: the .so beside the
.py, which Python imports first), checks that every compiled module is the
one imported, and runs `bench/bench_backtest.py --skip-memory --runs 1` in
each copy, alternating, `--rounds` times. It prints the events/s of each
configuration per round, the medians, and compiled/pure as a ratio (a shared
2-vCPU machine: compare within a run, read the medians).

Not every module compiles as is: mypyc turns a class body's annotated
defaults into typed attributes, so a module that defines msgspec Structs with
`msgspec.field(...)` defaults fails at import (TypeError: dict object
expected; got msgspec._core.Field); the default list leaves those out
(risk.limits, risk.engine, risk.breaker, the queue model). The fills of every
configuration must match between the two copies (the same decisions), or the
bench stops.

Needs a C compiler and the Python headers (gcc, python3-dev).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = (
    ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
)
# Pure modules on the backtest loop and the live order path that compile as they are.
DEFAULT_MODULES = [
    "hftd/book/l3.py",
    "hftd/risk/market.py",
    "hftd/gateway/core.py",
    "hftd/gateway/lifecycle.py",
    "hftd/gateway/positions.py",
    "hftd/strategy/engine.py",
    "hftd/strategy/context.py",
    "hftd/strategy/orders.py",
    "hftd/backtest/runner.py",
]
BUILD = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="hftd-compiled", ext_modules=mypycify(sys.argv[2:], opt_level="3", debug_level="0"),
      script_args=["build_ext", "--inplace"])
"""
LINE = re.compile(r"^\s+(loop.*?)\s+([\d,]+) events/s\s+\(([\d,]+) fills")


def extract(rev: str, dest: Path) -> None:
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    tar = dest / "tree.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()


def compile_tree(tree: Path, modules: list[str]) -> None:
    (tree / "_build_compiled.py").write_text(BUILD)
    res = subprocess.run(
        [sys.executable, "_build_compiled.py", "-", *modules],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        sys.exit(f"mypyc failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    names = [m.removesuffix(".py").replace("/", ".") for m in modules]
    check = (
        "import importlib, sys\n"
        f"for n in {names!r}:\n"
        "    f = importlib.import_module(n).__file__ or ''\n"
        "    assert f.endswith('.so'), (n, f)\n"
    )
    subprocess.run([sys.executable, "-c", check], cwd=tree, check=True)


def run(tree: Path, data: Path) -> dict[str, tuple[int, int]]:
    """{configuration: (events/s, fills)} of one bench_backtest run in `tree`."""
    res = subprocess.run(
        [
            sys.executable,
            "bench/bench_backtest.py",
            "--data",
            str(data),
            "--runs",
            "1",
            "--skip-memory",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
    )
    if res.returncode != 0:
        sys.exit(f"bench_backtest failed in {tree}:\n{res.stderr[-3000:]}")
    out: dict[str, tuple[int, int]] = {}
    for line in res.stdout.splitlines():
        m = LINE.match(line)
        if m:
            out[" ".join(m.group(1).split())] = (
                int(m.group(2).replace(",", "")),
                int(m.group(3).replace(",", "")),
            )
    if not out:
        sys.exit(f"no figures from bench_backtest in {tree}:\n{res.stdout[-2000:]}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rev", default="HEAD")
    p.add_argument("--modules", nargs="+", default=DEFAULT_MODULES)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--keep", type=Path, help="build here and keep it (default: a temp dir)")
    args = p.parse_args()
    if not args.data.exists():
        sys.exit(f"--data {args.data}: no such file (the LOBSTER sample: ../shared/data/lobster)")
    with tempfile.TemporaryDirectory(prefix="hftd-compiled-") as tmp:
        base = args.keep or Path(tmp)
        if args.keep and args.keep.exists():
            sys.exit(f"--keep {args.keep}: exists already (give a new directory)")
        pure, compiled = base / "pure", base / "compiled"
        extract(args.rev, pure)
        extract(args.rev, compiled)
        print(f"compiling {len(args.modules)} modules with mypyc ...", flush=True)
        compile_tree(compiled, args.modules)
        print(f"load average: {os.getloadavg()[0]:.2f}; rev {args.rev}; data {args.data.name}")
        results: dict[str, list[dict[str, tuple[int, int]]]] = {"pure": [], "compiled": []}
        for i in range(args.rounds):
            for name, tree in (("pure", pure), ("compiled", compiled)):
                r = run(tree, args.data)
                results[name].append(r)
                figs = "  ".join(f"{k}: {v[0]:,}" for k, v in r.items())
                print(f"round {i + 1} {name:<8} {figs}", flush=True)
        head = f"events/s, median of {args.rounds}"
        print(f"\n{head:<40} {'pure':>10} {'compiled':>10} {'ratio':>7}")
        for key in results["pure"][0]:
            fills = {r[key][1] for rs in results.values() for r in rs}
            if len(fills) != 1:
                sys.exit(f"{key}: fills differ between the copies: {sorted(fills)}")
            a = statistics.median(r[key][0] for r in results["pure"])
            b = statistics.median(r[key][0] for r in results["compiled"])
            print(f"{key:<40} {a:>10,.0f} {b:>10,.0f} {b / a:>6.2f}x")
        print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
