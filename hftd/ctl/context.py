"""Where hftctl finds the system: the run directory, and the config file when a
command needs one.

The run dir is `--run-dir`, else the config's (the config found as below, or
the environment's default run dir if that config cannot be read), else the
systemd units' `/run/hftd` if daemons answer there. The config is `--config`;
else the one the running system recorded in its run dir (hftd.configsource),
so `--run-dir` alone is enough from any directory; else `$HFTD_CONFIG`,
`./config/default.toml`, `/etc/hftd/hftd.toml`, the packaged default. Only an
explicit `--config` is read at once; any other only by a command that needs it
(`status` with no supervisor answering, `console`), so pause, resume, halt,
flatten, reload, dashboard and a supervised `status` work with none at all.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hftd import configsource
from hftd.config import ConfigError, HftdConfig, SystemConfig, load_config
from hftd.configsource import ConfigSource
from hftd.runtime.rundir import check_trusted_dir

SYSTEMD_RUN_DIR = "/run/hftd"  # RuntimeDirectory= of the hft@ units


class CtlContext:
    """The run dir hftctl was pointed at, its sockets, and (on demand) the config."""

    def __init__(self, config_path: str | None, run_dir: str | None) -> None:
        self._cfg: HftdConfig | None = None
        self._source: ConfigSource | None = None
        self._read: tuple[ConfigSource, HftdConfig] | None = None  # the fallback, if read
        if config_path:  # named: it must be readable, whatever the command
            self._source = configsource.resolve(config_path)
            self._cfg = load_config(config_path)
        if run_dir:
            self.run_dir = Path(run_dir)
            return
        cfg = self._cfg
        if cfg is None:
            fallback = self._fallback()
            with contextlib.suppress(ConfigError):  # said by a command that needs it
                cfg = load_config(fallback.path)
                self._read = (fallback, cfg)
        system = cfg.system if cfg is not None else SystemConfig()
        # The config's run dir; else the systemd units' /run/hftd if daemons live there.
        self.run_dir = system.resolved_run_dir()
        explicit = system.run_dir or os.environ.get("HFTD_RUN_DIR")
        systemd = Path(SYSTEMD_RUN_DIR)
        if not explicit and not any(self.run_dir.glob("*.sock")) and any(systemd.glob("*.sock")):
            self.run_dir = systemd

    @staticmethod
    def _fallback() -> ConfigSource:
        """The config without `--config` and without a record: `$HFTD_CONFIG`,
        the checkout's, the systemd units', the packaged default."""
        return configsource.resolve(None, system_wide=True)

    def source(self) -> ConfigSource:
        """The config in use: `--config`, the running system's record, the fallback.

        Raises RunDirError if the record is not root's or ours."""
        if self._source is None:
            path = None
            with contextlib.suppress(FileNotFoundError):  # no run dir: nothing runs
                path = configsource.recorded(check_trusted_dir(self.run_dir))
            self._source = (
                ConfigSource(path, f"the running system's, recorded in {self.run_dir}")
                if path
                else self._fallback()
            )
        return self._source

    @property
    def cfg(self) -> HftdConfig:
        """The config, read on first use; ConfigError (naming the file and why it is
        the one in use) if it cannot be read or is invalid."""
        if self._cfg is None:
            src = self.source()
            if self._read is not None and self._read[0] == src:
                self._cfg = self._read[1]  # read already, for the run dir
                return self._cfg
            try:
                self._cfg = load_config(src.path)
            except ConfigError as exc:
                raise ConfigError(f"{src.path} ({src.why})", exc.errors) from exc
        return self._cfg

    def check_run_dir(self) -> None:
        """Refuse a run dir that is not root's or ours, or that others may write to:
        sockets in it could be anyone's (each answer's sender is checked too)."""
        with contextlib.suppress(FileNotFoundError):  # nothing runs: each command says so
            check_trusted_dir(self.run_dir)

    def socket(self, name: str) -> Path:
        return self.run_dir / f"{name}.sock"
