"""Which config file a command uses when none is named, and which one a running
system uses.

An installed hftd (pip, pipx, a systemd unit) has no repository around it, so
`config/default.toml` relative to the working directory is not enough: the
default config ships in the package (`hftd/data/default.toml`, a link to
`config/default.toml` in a checkout, so the two cannot drift; a wheel holds a
copy). Without `--config` a command takes, in order:

1. `$HFTD_CONFIG`, if set;
2. `./config/default.toml`, if it exists (a checkout: what hftd always did);
3. the packaged default.

A running system records the file it runs in `<run_dir>/config-path` (the
supervisor of `hftd up`, and each daemon, so under systemd too), so `hftctl
--run-dir DIR` from any directory reads the same file the system runs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from hftd.runtime.rundir import RunDirError, trusted_uids, user_name

ENV = "HFTD_CONFIG"
CHECKOUT_CONFIG = Path("config") / "default.toml"  # relative to the working directory
SYSTEM_CONFIG = Path("/etc/hftd/hftd.toml")  # deploy/systemd/install's; hftctl looks there
RECORD = "config-path"  # in the run dir: the config the running system was started with
PACKAGED_WHY = "packaged default"
_MAX_RECORD = 4096


def packaged_default() -> Path:
    """The default config inside the installed package."""
    return Path(__file__).absolute().parent / "data" / "default.toml"


class ConfigSource(NamedTuple):
    """A config file and why it is the one in use (said at start and in errors)."""

    path: str
    why: str

    def describe(self) -> str:
        return f"{self.path} ({self.why})"


def resolve(
    explicit: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    system_wide: bool = False,
) -> ConfigSource:
    """The config to use: `explicit` (`--config`), else `$HFTD_CONFIG`, else
    `./config/default.toml` if it exists, else (`system_wide`: hftctl) the systemd
    units' `/etc/hftd/hftd.toml` if it exists, else the packaged default."""
    if explicit:
        return ConfigSource(explicit, "--config")
    environ = os.environ if env is None else env
    named = environ.get(ENV)
    if named:
        return ConfigSource(named, f"${ENV}")
    checkout = (Path.cwd() if cwd is None else cwd) / CHECKOUT_CONFIG
    if checkout.is_file():
        return ConfigSource(str(checkout), "the checkout's, in the working directory")
    if system_wide and SYSTEM_CONFIG.is_file():
        return ConfigSource(str(SYSTEM_CONFIG), "the systemd units'")
    return ConfigSource(str(packaged_default()), PACKAGED_WHY)


def record(run_dir: Path, config_path: str) -> None:
    """Record in `run_dir` (already checked private) the config this system runs.

    Written to a file of its own and renamed over the record, so a reader never
    sees half a path; each process of a system writes the same path."""
    text = f"{Path(config_path).resolve()}\n"
    tmp = run_dir / f".{RECORD}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, run_dir / RECORD)


def forget(run_dir: Path, config_path: str) -> None:
    """Remove the record if it still names `config_path` (a system stopping): a later
    system in the run dir writes its own."""
    try:
        if recorded(run_dir) == str(Path(config_path).resolve()):
            (run_dir / RECORD).unlink(missing_ok=True)
    except (OSError, RunDirError):
        pass


def recorded(run_dir: Path) -> str | None:
    """The config path the system in `run_dir` recorded, or None if there is none.

    The record is believed only if root or this user wrote it (as the sockets in
    that dir); RunDirError otherwise."""
    path = run_dir / RECORD
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symlink where the record should be
        raise RunDirError(f"{path}: cannot read the recorded config path: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunDirError(f"{path} is not a regular file: not hftd's record")
        if st.st_uid not in trusted_uids():
            raise RunDirError(
                f"{path} is owned by {user_name(st.st_uid)}, not by you or root: "
                "not believing the config path it names"
            )
        text = os.read(fd, _MAX_RECORD).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    return text or None
