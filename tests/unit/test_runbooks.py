"""The operator's runbooks in ops/ (issue 16 item 7) say only what is true of this system.

For every runbook: it exists and ops/README.md links to it; every `hftd` and `hftctl`
command line in it (its shell code blocks, and inline code that starts with either
name) parses with the real argument parsers; every repository path and relative link
it cites exists; every alert it names is one of the monitor's rules
(hftd/monitor/alerts.py); every config key (`section.key`, `[section]`) is a field of
the config's Structs; every systemd unit (`hft@<name>`) is one deploy/systemd ships.

The parsers are the commands' own: `hftd.cli.main` and `hftd.ctl.main.main` run with
`ArgumentParser.parse_args` wrapped to stop right after parsing, so nothing is
executed and nothing in hftd is refactored for the test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest

from hftd import cli
from hftd.config import COMPONENTS, HftdConfig
from hftd.ctl import main as ctl_main
from hftd.runtime import days

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
INDEX = OPS / "README.md"

# The situations: start and end of day, a reconciliation mismatch, a torn or
# corrupt journal, a venue that will not accept the login, a host reboot.
RUNBOOKS = (
    "runbook-start-of-day.md",
    "runbook-end-of-day.md",
    "runbook-reconciliation-mismatch.md",
    "runbook-journal-damage.md",
    "runbook-venue-login-refused.md",
    "runbook-host-reboot.md",
)

SHELL_BLOCKS = {"sh", "bash", "shell", "console"}  # ```text blocks are output and logs
PROGRAMS: dict[str, Callable[[list[str]], int]] = {"hftd": cli.main, "hftctl": ctl_main.main}
SEPARATORS = {"&&", "||", ";", "|"}
ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FENCE = re.compile(r"^\s*```\s*([\w-]*)\s*$")
SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(
    r"(?<![\w./~$@-])((?:bench|config|deploy|docs|examples|hftd|ops|scripts|tests)/[\w@.+/-]*)"
)
ALERT_KEY = re.compile(r"^([a-z]+(?:_[a-z]+)*):([a-z0-9_.]+)$")  # rule:subject
ALERT_WORD = re.compile(r"(?:\balerts?\s+`([a-z_]+)`)|(?:`([a-z_]+)`\s+alerts?\b)")
CONFIG_KEY = re.compile(r"^\[{0,2}([a-z_]+(?:\.[a-z_]+)+|[a-z_]+(?=\]))\]{0,2}$")
UNIT = re.compile(r"\bhft@([a-z]+)\b")
# Files the system writes whose names look like `section.key`.
FILES = (*days.JOURNALS, days.STRATEGY_RUNS, "exchange.state")
FILE_SUFFIXES = {"sock", "lock", "token", "toml", "md", "service", "target", "conf", "py"}


class Markdown(msgspec.Struct):
    """A runbook split into what the checks look at."""

    text: str
    prose: str  # every line outside fenced blocks
    blocks: list[tuple[str, list[str]]]  # (language, lines) of each fenced block

    @property
    def spans(self) -> list[str]:
        return SPAN.findall(self.prose)


def read(name: str) -> Markdown:
    text = (OPS / name).read_text(encoding="utf-8")
    prose: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence and current is None:
            current = []
            blocks.append((fence.group(1), current))
        elif fence:
            current = None
        elif current is not None:
            current.append(line)
        else:
            prose.append(line)
    assert current is None, f"{name}: a code block is not closed"
    return Markdown(text, "\n".join(prose), blocks)


def shell_lines(lines: list[str]) -> Iterator[str]:
    """Lines of a shell block, continuation lines joined."""
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def commands(line: str) -> Iterator[tuple[str, list[str]]]:
    """(program, arguments) of every hftd/hftctl command on a shell line."""
    words: list[str] = []
    for token in [*shlex.split(line, comments=True), ";"]:
        ends = token in SEPARATORS or token.endswith(";")
        if not ends:
            words.append(token)
            continue
        if token.endswith(";") and token != ";":
            words.append(token[:-1])
        while words and (words[0] == "sudo" or ENV.match(words[0])):
            words.pop(0)
        if words and Path(words[0]).name in PROGRAMS:
            yield Path(words[0]).name, words[1:]
        words = []


def command_lines(md: Markdown) -> list[tuple[str, list[str]]]:
    found = [
        cmd
        for lang, lines in md.blocks
        if lang in SHELL_BLOCKS
        for line in shell_lines(lines)
        for cmd in commands(line)
    ]
    for span in md.spans:  # `hftctl halt --yes` in the text is a command too
        if span.split(" ", 1)[0] in PROGRAMS:
            found.extend(commands(span))
    return found


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def parse(program: str, args: list[str]) -> argparse.Namespace:
    """The program's own parser on `args`, stopped before it acts on them."""
    real = argparse.ArgumentParser.parse_args

    def stop(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> argparse.Namespace:
        raise _Parsed(real(self, *a, **kw))

    err = io.StringIO()
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_args", stop),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            PROGRAMS[program](args)
        except _Parsed as parsed:
            return parsed.namespace
        except SystemExit as exc:
            raise AssertionError(f"{program} {shlex.join(args)}: {err.getvalue().strip()}") from exc
    raise AssertionError(f"{program} {shlex.join(args)}: returned without parsing")


# --- config keys -------------------------------------------------------------------------


def _unwrap(tp: Any) -> Any:
    """The type under Annotated[...] and Optional[...]."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            real = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = real[0] if len(real) == 1 else tp
            if len(real) != 1:
                return tp
        else:
            return tp


def config_key_exists(parts: list[str]) -> bool:
    """Whether `a.b.c` names a field (a table, a list of tables, a key) of HftdConfig."""
    tp: Any = HftdConfig
    for i, part in enumerate(parts):
        tp = _unwrap(tp)
        while typing.get_origin(tp) is list:  # [[exchange.users]]: the element's fields
            tp = _unwrap(typing.get_args(tp)[0])
        if typing.get_origin(tp) is dict:  # daemons.<name>, risk.symbols.<SYM>
            if parts[i - 1] == "daemons" and part not in COMPONENTS:
                return False
            tp = typing.get_args(tp)[1]
            continue
        if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
            return False  # a leaf with more parts after it
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(tp)}
        if part not in fields:
            return False
        tp = fields[part]
    return True


SECTIONS = {f.encode_name for f in msgspec.structs.fields(HftdConfig)}


def config_keys(md: Markdown) -> list[str]:
    """Inline code that is a config key or section: its first part is a section of the
    config, and it is not a file the system writes (`gateway.journal`, `x.sock`)."""
    keys = []
    for span in md.spans:
        m = CONFIG_KEY.match(span)
        if m is None:
            continue
        key = m.group(1)
        parts = key.split(".")
        if parts[0] not in SECTIONS or parts[-1] in FILE_SUFFIXES:
            continue
        if any(key == f or key.startswith(f + ".") for f in FILES):
            continue
        keys.append(key)
    return keys


# --- alerts ------------------------------------------------------------------------------

ALERT_RULES = set(
    re.findall(r'rule="([a-z_]+)"', (ROOT / "hftd/monitor/alerts.py").read_text("utf-8"))
)


def alerts(md: Markdown) -> list[str]:
    """Alert names the runbook cites: `rule:subject` (the monitor's alert key), or
    inline code next to the word alert."""
    found = [m.group(1) for span in md.spans if (m := ALERT_KEY.match(span))]
    found += [a or b for a, b in ALERT_WORD.findall(md.prose)]
    return found


# --- the tests ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=RUNBOOKS)
def runbook(request: pytest.FixtureRequest) -> tuple[str, Markdown]:
    name: str = request.param
    assert (OPS / name).is_file(), f"ops/{name} is missing"
    return name, read(name)


def test_every_runbook_exists_and_the_index_links_it(runbook: tuple[str, Markdown]) -> None:
    name, md = runbook
    assert f"]({name})" in INDEX.read_text(encoding="utf-8"), f"ops/README.md does not link {name}"
    assert md.text.startswith("# Runbook: "), name
    for part in ("## Never", "## Escalate"):  # what not to do, and who to call
        assert part in md.text, f"{name}: no {part!r} section"


def test_no_runbook_is_left_out_of_the_list() -> None:
    assert sorted(p.name for p in OPS.glob("runbook-*.md")) == sorted(RUNBOOKS)


def test_inline_code_stays_on_one_line(runbook: tuple[str, Markdown]) -> None:
    """A code span broken over two lines would escape the checks below."""
    name, md = runbook
    for line in md.prose.splitlines():
        assert line.count("`") % 2 == 0, f"{name}: a code span crosses a line: {line!r}"


def test_every_command_parses(runbook: tuple[str, Markdown]) -> None:
    name, md = runbook
    found = command_lines(md)
    assert found, f"{name}: no hftd/hftctl command found (the extraction is broken?)"
    for program, args in found:
        namespace = parse(program, args)
        assert getattr(namespace, "command", None), (name, program, args)


def test_the_parse_check_refuses_what_the_commands_refuse() -> None:
    """The check has teeth: a verb that does not exist and a missing argument fail."""
    assert parse("hftctl", ["--run-dir", "/run/hftd", "halt", "--yes"]).yes
    assert parse("hftd", ["day", "new", "--config", "x.toml"]).action == "new"
    for program, args in (("hftctl", ["restart"]), ("hftd", ["day"]), ("hftd", ["replay"])):
        with pytest.raises(AssertionError):
            parse(program, args)
    assert list(commands("sudo HFTD_RUN_DIR=/run/hftd hftd day show && hftctl status")) == [
        ("hftd", ["day", "show"]),
        ("hftctl", ["status"]),
    ]


def test_every_path_and_link_exists(runbook: tuple[str, Markdown]) -> None:
    name, md = runbook
    for m in REPO_PATH.finditer(md.text):
        path = m.group(1).rstrip(".")
        if md.text[m.end() : m.end() + 1] == "<":  # a placeholder follows: its directory
            path = path.rsplit("/", 1)[0]
        assert (ROOT / path).exists(), f"{name}: {path} does not exist"
    for target in LINK.findall(md.text):
        if "://" in target or target.startswith("#"):
            continue
        assert (OPS / target.split("#", 1)[0]).exists(), f"{name}: link to {target}"


def test_every_alert_is_a_monitor_rule(runbook: tuple[str, Markdown]) -> None:
    name, md = runbook
    assert {"daemon_down", "trading_mode", "link_down"} <= ALERT_RULES  # the source was read
    for alert in alerts(md):
        assert alert in ALERT_RULES, f"{name}: no alert rule {alert!r}"


def test_the_runbooks_cite_alerts_config_and_units() -> None:
    """The extractions find what is there (else the checks above check nothing)."""
    mds = [read(n) for n in RUNBOOKS]
    assert {"trading_mode", "link_down", "daemon_down"} <= {a for md in mds for a in alerts(md)}
    keys = {k for md in mds for k in config_keys(md)}
    assert {"system.trading_day_starts", "gateway.reconcile_overlap"} <= keys
    assert not keys & set(FILES)
    assert {"gateway", "exchange"} <= {u for md in mds for u in UNIT.findall(md.text)}


def test_every_config_key_exists(runbook: tuple[str, Markdown]) -> None:
    name, md = runbook
    for key in config_keys(md):
        assert config_key_exists(key.split(".")), f"{name}: no config key {key!r}"


def test_the_config_key_check_refuses_unknown_keys() -> None:
    assert config_key_exists(["exchange", "users", "password"])
    assert config_key_exists(["daemons", "exchange", "enabled"])
    assert config_key_exists(["monitor", "alerts", "start_grace_s"])
    assert not config_key_exists(["gateway", "passwd"])
    assert not config_key_exists(["daemons", "nosuch", "enabled"])
    assert not config_key_exists(["gateway", "password", "more"])


def test_every_unit_is_shipped(runbook: tuple[str, Markdown]) -> None:
    name, md = runbook
    for unit in UNIT.findall(md.text):
        assert (ROOT / "deploy/systemd" / f"hft@{unit}.service.d").is_dir(), f"{name}: hft@{unit}"
    if "hft.target" in md.text:
        assert (ROOT / "deploy/systemd/hft.target").is_file()
