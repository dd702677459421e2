"""Where hftctl finds the system: the config file and the run directory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hftd.config import HftdConfig, load_config
from hftd.runtime.rundir import check_trusted_dir

CONFIG_CANDIDATES = ("config/default.toml", "/etc/hftd/hftd.toml")
SYSTEMD_RUN_DIR = "/run/hftd"  # RuntimeDirectory= of the hft@ units


class CtlContext:
    """The config hftctl was pointed at, and the sockets it names."""

    def __init__(self, config_path: str | None, run_dir: str | None) -> None:
        path = config_path or os.environ.get("HFTD_CONFIG")
        if path is None:
            path = next((p for p in CONFIG_CANDIDATES if Path(p).exists()), CONFIG_CANDIDATES[0])
        self.config_path = path
        self.cfg: HftdConfig = load_config(path)
        if run_dir:
            self.run_dir = Path(run_dir)
        else:
            # The config's run dir; else the systemd units' /run/hftd if daemons live there.
            self.run_dir = self.cfg.system.resolved_run_dir()
            explicit = self.cfg.system.run_dir or os.environ.get("HFTD_RUN_DIR")
            systemd = Path(SYSTEMD_RUN_DIR)
            if (
                not explicit
                and not any(self.run_dir.glob("*.sock"))
                and any(systemd.glob("*.sock"))
            ):
                self.run_dir = systemd

    def check_run_dir(self) -> None:
        """Refuse a run dir that is not root's or ours, or that others may write to:
        sockets in it could be anyone's (each answer's sender is checked too)."""
        with contextlib.suppress(FileNotFoundError):  # nothing runs: each command says so
            check_trusted_dir(self.run_dir)

    def socket(self, name: str) -> Path:
        return self.run_dir / f"{name}.sock"
