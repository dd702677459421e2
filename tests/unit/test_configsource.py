"""Which config a command uses without `--config` (hftd/configsource.py), `hftd config
init | show`, the running system's record of its config, and hftctl with `--run-dir`
alone: an installed hftd runs anywhere (issue 16 items 1 and 9)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hftd import cli, configsource
from hftd.config import ConfigError, load_config
from hftd.configsource import ConfigSource, packaged_default, resolve
from hftd.ctl import main as hftctl
from hftd.ctl.context import CtlContext
from hftd.runtime.rundir import RunDirError, ensure_private_dir
from tests.support import DEFAULT_CONFIG, ROOT


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no checkout, no $HFTD_CONFIG, no /etc/hftd config."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(configsource.ENV, raising=False)
    monkeypatch.delenv("HFTD_RUN_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    monkeypatch.setattr(configsource, "SYSTEM_CONFIG", tmp_path / "etc" / "hftd.toml")
    return cwd


def test_the_packaged_default_is_config_default_toml() -> None:
    assert packaged_default().read_bytes() == DEFAULT_CONFIG.read_bytes()
    assert load_config(packaged_default()) == load_config(DEFAULT_CONFIG)


def test_resolution_order(elsewhere: Path, tmp_path: Path) -> None:
    env = {configsource.ENV: "/from/env.toml"}
    assert resolve("/named.toml", env=env) == ConfigSource("/named.toml", "--config")
    assert resolve(None, env=env) == ConfigSource("/from/env.toml", "$HFTD_CONFIG")
    assert resolve(None, env={configsource.ENV: ""}).why == configsource.PACKAGED_WHY
    # a checkout in the working directory: today's behaviour
    assert resolve(None, env={}, cwd=ROOT).path == str(ROOT / "config" / "default.toml")
    # nothing around: the packaged default (the systemd units' file only for hftctl)
    configsource.SYSTEM_CONFIG.parent.mkdir()
    configsource.SYSTEM_CONFIG.write_text("")
    assert resolve(None, env={}) == ConfigSource(str(packaged_default()), configsource.PACKAGED_WHY)
    assert resolve(None, env={}, system_wide=True).path == str(configsource.SYSTEM_CONFIG)
    (elsewhere / "config").mkdir()  # a directory called config, but no default.toml
    assert resolve(None).why == configsource.PACKAGED_WHY


def test_config_show_says_which_and_why(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config", "show"]) == 0
    assert capsys.readouterr().out == f"{packaged_default()} (packaged default)\n"
    monkeypatch.setenv(configsource.ENV, "/srv/hftd.toml")
    assert cli.main(["config", "show"]) == 0
    assert capsys.readouterr().out == "/srv/hftd.toml ($HFTD_CONFIG)\n"


def test_config_init_writes_an_editable_copy(
    elsewhere: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "etc" / "hftd" / "hftd.toml"  # parents created
    assert cli.main(["config", "init", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {dest}" in out and f"hftd up --config {dest}" in out
    assert dest.read_bytes() == packaged_default().read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) & 0o077 == 0o040  # venue passwords: not world
    assert [p.name for p in dest.parent.iterdir()] == ["hftd.toml"]  # no temporary left


def test_config_init_keeps_an_existing_file_unless_forced(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = elsewhere / "mine.toml"
    dest.write_text("# my edits\n")
    assert cli.main(["config", "init", "mine.toml"]) == 1
    assert "exists, left as is (--force" in capsys.readouterr().err
    assert dest.read_text() == "# my edits\n"
    assert cli.main(["config", "init", "mine.toml", "--force"]) == 0
    assert dest.read_bytes() == packaged_default().read_bytes()
    assert cli.main(["config", "init", str(elsewhere)]) == 2  # a directory
    assert cli.main(["config", "init"]) == 2  # where to?


def test_an_explicit_config_that_cannot_be_read_is_an_error(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["day", "show", "--config", "missing.toml"])
    assert exc.value.code == 2
    assert "missing.toml" in capsys.readouterr().err


def test_the_record_of_the_running_config(tmp_path: Path) -> None:
    run_dir = ensure_private_dir(tmp_path / "run")
    assert configsource.recorded(run_dir) is None
    configsource.record(run_dir, "relative.toml")  # recorded absolute
    expected = str(Path("relative.toml").resolve())
    assert configsource.recorded(run_dir) == expected
    assert sorted(p.name for p in run_dir.iterdir()) == [configsource.RECORD]
    configsource.forget(run_dir, "another.toml")  # another system's: kept
    assert configsource.recorded(run_dir) == expected
    configsource.forget(run_dir, "relative.toml")
    assert configsource.recorded(run_dir) is None


def test_a_record_not_ours_is_not_believed(tmp_path: Path) -> None:
    run_dir = ensure_private_dir(tmp_path / "run")
    (tmp_path / "elsewhere").write_text("/x.toml\n")
    (run_dir / configsource.RECORD).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunDirError, match="cannot read the recorded config path"):
        configsource.recorded(run_dir)
    if os.geteuid() != 0:
        return  # giving a file away needs root
    (run_dir / configsource.RECORD).unlink()
    configsource.record(run_dir, "/x.toml")
    os.chown(run_dir / configsource.RECORD, 12345, 12345)
    with pytest.raises(RunDirError, match="not by you or root"):
        configsource.recorded(run_dir)


def test_hftctl_reads_the_config_the_system_recorded(elsewhere: Path, tmp_path: Path) -> None:
    run_dir = ensure_private_dir(tmp_path / "run")
    mine = tmp_path / "mine.toml"
    mine.write_text(DEFAULT_CONFIG.read_text().replace('prefix = "hftd"', 'prefix = "mine"'))
    configsource.record(run_dir, str(mine))
    ctx = CtlContext(None, str(run_dir))
    assert ctx.source().path == str(mine) and "recorded in" in ctx.source().why
    assert ctx.cfg.rings.prefix == "mine"
    # an explicit --config wins over the record
    assert CtlContext(str(DEFAULT_CONFIG), str(run_dir)).cfg.rings.prefix == "hftd"
    # the record names a file that is gone: an error naming it, when the config is needed
    mine.unlink()
    ctx = CtlContext(None, str(run_dir))
    with pytest.raises(ConfigError) as exc:
        _ = ctx.cfg
    assert str(mine) in str(exc.value) and "recorded in" in str(exc.value)


def test_hftctl_without_a_readable_config_from_anywhere(
    elsewhere: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--run-dir` alone is enough; a missing config is no error for a command that
    does not need it, nor for `status` when nothing runs."""
    monkeypatch.setenv(configsource.ENV, str(tmp_path / "gone.toml"))
    run_dir = ensure_private_dir(tmp_path / "run")
    for verb in (["pause"], ["resume"], ["halt", "--yes"], ["flatten", "--yes"], ["reload"]):
        assert hftctl.main(["--run-dir", str(run_dir), *verb]) == 3, verb
        assert "hftd is not running" in capsys.readouterr().out
    assert hftctl.main(["--run-dir", str(run_dir), "dashboard"]) == 3
    assert hftctl.main(["--run-dir", str(run_dir), "status"]) == 3
    assert "hftd is not running" in capsys.readouterr().out
    # without --run-dir too: the environment's run dir ($XDG_RUNTIME_DIR/hftd)
    assert hftctl.main(["status"]) == 3
    assert f"in {tmp_path / 'xdg' / 'hftd'}" in capsys.readouterr().out
    # an explicit --config is read, whatever the command
    assert hftctl.main(["--config", str(tmp_path / "gone.toml"), "pause"]) == 2
    assert "gone.toml" in capsys.readouterr().err
