"""An installed hftd runs anywhere (issue 16 items 1 and 9).

A wheel of the project, installed (not editable) into a fresh venv and run from
`/`, far from any checkout: `hftd` finds its packaged default config and says
so, `hftd config init` writes an editable copy, `hftd up` runs the system from
it, and `hftctl --run-dir` alone, from `/`, reads it.

Offline: the wheel is built with the setuptools of this venv (no build
isolation), and the fresh venv takes hftd's dependencies from this venv's
site-packages as a plain path (its .pth files, among them this checkout's
editable hftd, are not run): the hftd it imports is the wheel's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    DEFAULT_CONFIG,
    RING_PREFIXES,
    ROOT,
    deep_merge,
    dump_toml,
    free_ports,
    start_daemon,
    wait_for,
)

pytestmark = pytest.mark.integration

# What hftd reads from the environment: none of this test process's may leak in.
SCRUBBED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HFTD_CONFIG", "HFTD_RUN_DIR")


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the project's wheel installed; its bin dir."""
    work = tmp_path_factory.mktemp("install")
    # Build from a copy of what the build reads: nothing is written into the checkout
    # (build/, *.egg-info), which other work may be using meanwhile.
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "hftd", src / "hftd", symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    (src / "config").mkdir()
    shutil.copy2(DEFAULT_CONFIG, src / "config" / "default.toml")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work), str(src)])
    (wheel,) = work.glob("hftd-*.whl")
    with zipfile.ZipFile(wheel) as z:  # the file itself, not the checkout's link to it
        assert z.read("hftd/data/default.toml") == DEFAULT_CONFIG.read_bytes()
    env = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    python = env / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)])
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    ours = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    Path(site.stdout.strip(), "zz-hftd-test-deps.pth").write_text("\n".join(ours) + "\n")
    yield env / "bin"


def environ(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without hftd's settings, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def from_root(
    bin_dir: Path, *cmd: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """An installed command run from `/` (no checkout, no config/ anywhere near)."""
    res = subprocess.run(
        [str(bin_dir / cmd[0]), *cmd[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env=env or environ(bin_dir),
    )
    if check:
        assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def test_the_installed_hftd_is_the_wheels_and_finds_its_default(bin_dir: Path) -> None:
    where = from_root(bin_dir, "python", "-c", "import hftd; print(hftd.__file__)").stdout
    assert where.startswith(str(bin_dir.parent)) and str(ROOT) not in where, where
    assert "config" in from_root(bin_dir, "hftd", "--help").stdout
    assert "--config" in from_root(bin_dir, "hftd", "up", "--help").stdout
    assert "--run-dir" in from_root(bin_dir, "hftctl", "--help").stdout
    packaged = bin_dir.parent / "lib"
    out = from_root(bin_dir, "hftd", "config", "show").stdout.strip()
    assert out.startswith(str(packaged)) and out.endswith(
        "hftd/data/default.toml (packaged default)"
    )


def test_an_installed_system_runs_from_anywhere(
    bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, journal_dir = tmp_path / "run", tmp_path / "journal"
    mine = tmp_path / "etc" / "my.toml"
    out = from_root(bin_dir, "hftd", "config", "init", str(mine)).stdout
    assert f"wrote {mine}" in out and f"hftd up --config {mine}" in out
    # The operator edits the copy: ports of its own, rings of its own.
    order, md, web = free_ports(3)
    prefix = f"hftd-inst{os.getpid()}"
    RING_PREFIXES.append(prefix)  # conftest removes them from /dev/shm afterwards
    data = deep_merge(
        tomllib.loads(mine.read_text()),
        {
            "exchange": {"order_port": order, "md_port": md},
            "monitor": {"web_port": web},
            "rings": {"prefix": prefix},
        },
    )
    mine.write_text(dump_toml(data))

    for name in SCRUBBED:  # start_daemon passes this process's environment on
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HFTD_RUN_DIR", str(run_dir))
    monkeypatch.setenv("HFTD_JOURNAL_DIR", str(journal_dir))
    monkeypatch.setenv("PATH", environ(bin_dir)["PATH"])
    # ready once the supervisor says every daemon settled (READY=1 on its notify socket)
    with start_daemon("up", mine, 60.0, cwd=Path("/"), command=[str(bin_dir / "hftd")]) as up:
        assert f"config: {mine} (--config)" in up.log, up.log
        assert (run_dir / "config-path").read_text() == f"{mine.resolve()}\n"

        # hftctl from `/`: the run dir alone is enough (no config named, none around)
        bare = environ(bin_dir)

        def all_ready() -> str | None:
            res = from_root(
                bin_dir, "hftctl", "--run-dir", str(run_dir), "status", env=bare, check=False
            )
            return res.stdout if res.returncode == 0 else None

        status = wait_for(all_ready, 60, "every daemon ready in hftctl status")
        for name in ("exchange", "feed", "strategy", "gateway", "monitor"):
            assert any(ln.split()[:2] == [name, "ready"] for ln in status.splitlines()), status
        assert "TRADING    mode" in status, status
        for verb in ("pause", "resume"):
            res = from_root(bin_dir, "hftctl", "--run-dir", str(run_dir), verb, env=bare)
            assert res.stdout.startswith("gateway: ok"), res.stdout

        # `hftd up` with no config and no checkout: the packaged default, said at
        # start; this run dir is taken, so it refuses before binding a port.
        res = from_root(
            bin_dir, "hftd", "up", env=environ(bin_dir, HFTD_RUN_DIR=str(run_dir)), check=False
        )
        assert res.returncode == 2, res.stderr
        assert "hftd/data/default.toml (packaged default)" in res.stderr, res.stderr
        assert "already running" in res.stderr, res.stderr

        assert up.stop(30.0) == 0, up.log  # SIGTERM: stops every daemon in order
        assert "all daemons stopped" in up.log
    assert not (run_dir / "config-path").exists()  # the record goes with the system
    res = from_root(bin_dir, "hftctl", "--run-dir", str(run_dir), "status", env=bare, check=False)
    assert res.returncode == 3 and "hftd is not running" in res.stdout, res
