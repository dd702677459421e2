"""Acting as another local user (uid 65534, `nobody`) in tests, through `setpriv`.

The security tests must show what a real second uid can and cannot do, not
what a function returns when told it is someone else. Running as another uid
needs root; without it (or without setpriv, or where that uid cannot run this
venv's python) the tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

OTHER_UID = 65534  # nobody
ROOT = Path(__file__).resolve().parent.parent


def setpriv_argv(*argv: str) -> list[str]:
    """`argv` run as uid/gid 65534 with no supplementary groups."""
    return [
        "setpriv",
        f"--reuid={OTHER_UID}",
        f"--regid={OTHER_UID}",
        "--clear-groups",
        *argv,
    ]


def python_argv(code: str, *args: str) -> list[str]:
    """This venv's python running `code` as the other user, importing this checkout's hftd."""
    return setpriv_argv(
        sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code, *args
    )


def run_as_other(code: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run python `code` as the other user (umask 0: what it creates is world-writable)."""
    return subprocess.run(
        python_argv(code, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        umask=0,
        cwd="/",
    )


def skip_unless_other_user() -> None:
    """Skip (with the reason) unless this test can act as another uid."""
    if os.geteuid() != 0:
        pytest.skip("acting as another uid (setpriv --reuid) needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    probe = run_as_other("import hftd, os; print(os.getuid())")
    if probe.returncode != 0 or probe.stdout.strip() != str(OTHER_UID):
        pytest.skip(f"uid {OTHER_UID} cannot run {sys.executable} with hftd: {probe.stderr[-300:]}")


@contextmanager
def other_users_dir(mode: int = 0o777) -> Iterator[Path]:
    """A fresh directory under /tmp owned by the other user (e.g. a squatted run dir)."""
    path = Path(tempfile.mkdtemp(prefix="hftd-other-", dir="/tmp"))
    try:
        os.chown(path, OTHER_UID, OTHER_UID)
        path.chmod(mode)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
