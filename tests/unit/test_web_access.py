"""The web actions' token: kept in `<run_dir>/web.token` only while nobody else could
have read or chosen it; handed out by the monitor's `WebAccess` only while the monitor
serves the page itself; replaced once the port was someone else's; `hftctl dashboard`."""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from hftd.config import load_config
from hftd.ctl.commands import dashboard
from hftd.ctl.main import main as hftctl
from hftd.monitor import daemon
from hftd.monitor.daemon import TOKEN_FILE, TOKEN_RE, MonitorService, web_token
from hftd.monitor.web import WebApp
from hftd.msg.control import Reply, WebAccess
from tests.support import free_port, make_config

OTHER_UID = 65534  # nobody


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_created_private_and_reused(tmp_path: Path) -> None:
    old = os.umask(0)  # a careless umask must not widen it
    try:
        token, where = web_token(tmp_path)
    finally:
        os.umask(old)
    path = tmp_path / TOKEN_FILE
    assert where == str(path) and TOKEN_RE.fullmatch(token) and len(token) >= 43
    assert mode(path) == 0o600 and path.stat().st_uid == os.geteuid()
    assert path.read_text().strip() == token
    assert [p.name for p in tmp_path.iterdir()] == [TOKEN_FILE]  # no temporary left behind
    # A restarted monitor keeps it (open pages go on working).
    assert web_token(tmp_path) == (token, str(path))


@pytest.mark.parametrize("bits", [0o644, 0o640, 0o604, 0o660, 0o602], ids=oct)
def test_readable_or_writable_by_others_is_replaced(
    tmp_path: Path, bits: int, caplog: pytest.LogCaptureFixture
) -> None:
    first, _ = web_token(tmp_path)
    path = tmp_path / TOKEN_FILE
    path.chmod(bits)
    with caplog.at_level(logging.WARNING, logger="hftd.monitor"):
        token, _ = web_token(tmp_path)
    assert token != first and mode(path) == 0o600 and path.read_text().strip() == token
    assert f"mode {bits:04o}" in caplog.text and "replacing" in caplog.text
    assert first not in caplog.text and token not in caplog.text


def test_another_owners_file_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    planted = "p" * 43  # a token someone else chose (and so knows)
    path = tmp_path / TOKEN_FILE
    path.write_text(planted + "\n")
    path.chmod(0o600)
    os.chown(path, OTHER_UID, OTHER_UID)
    with caplog.at_level(logging.WARNING, logger="hftd.monitor"):
        token, _ = web_token(tmp_path)
    assert token != planted
    st = path.stat()
    assert (st.st_uid, mode(path)) == (os.geteuid(), 0o600)
    assert path.read_text().strip() == token
    assert f"owned by uid {OTHER_UID}" in caplog.text


def test_a_link_or_junk_is_replaced_and_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("q" * 43 + "\n")
    target.chmod(0o600)
    path = tmp_path / TOKEN_FILE
    path.symlink_to(target)
    token, _ = web_token(tmp_path)
    assert token != "q" * 43 and not path.is_symlink() and mode(path) == 0o600
    assert target.read_text() == "q" * 43 + "\n"  # the link's target was not written
    for junk in ("", "short", "x" * 43 + " y", "\0" * 50):
        path.write_text(junk)
        path.chmod(0o600)
        again, _ = web_token(tmp_path)
        assert again != junk.strip() and TOKEN_RE.fullmatch(again)
        assert path.read_text().strip() == again


def test_an_unwritable_place_keeps_the_token_in_memory(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).mkdir()  # cannot be replaced by a file
    token, where = web_token(tmp_path)
    assert TOKEN_RE.fullmatch(token) and where.startswith("in memory only")
    assert [p.name for p in tmp_path.iterdir()] == [TOKEN_FILE]


def test_monitor_answers_web_access(tmp_path: Path) -> None:
    cfg = load_config(make_config(tmp_path, {"monitor": {"web_port": 8123}}))
    svc = MonitorService(cfg)
    with pytest.raises(RuntimeError, match="starting"):
        svc.web_access()  # before `run` has the token
    svc.token, svc.token_where = web_token(tmp_path)
    # Not listening (yet): no link, nothing of the token.
    result = trio.run(svc.handle, WebAccess())
    assert result["serving"] is False and "url" not in result
    assert svc.token not in repr(result) and "not open yet" in result["problem"]
    assert svc.token not in repr(svc.status_detail())  # Status goes to many readers
    off = MonitorService(load_config(make_config(tmp_path, {"monitor": {"web_enabled": False}})))
    off.token = "x" * 43
    with pytest.raises(ValueError, match="web_enabled"):
        off.web_access()


def test_hftctl_dashboard_without_a_monitor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(tmp_path)
    run_dir = tmp_path / "empty-run"
    run_dir.mkdir()
    assert hftctl(["--config", str(cfg), "--run-dir", str(run_dir), "dashboard"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and "monitor is not running" in err


@pytest.fixture
def held_port() -> Iterator[tuple[int, socket.socket]]:
    """A port on 127.0.0.1 held by a listening socket of this process (another program)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", free_port()))
        s.listen()
        yield int(s.getsockname()[1]), s


def test_no_link_while_the_port_is_held_then_a_new_token(
    tmp_path: Path,
    held_port: tuple[int, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whoever held our port may have served a page that read the token: once the monitor
    gets its port, the token it had is worthless and the file holds a new one."""
    port, squatter = held_port
    monkeypatch.setattr(daemon, "BIND_RETRY_S", 0.02)
    cfg = load_config(make_config(tmp_path, {"monitor": {"web_port": port}}))
    run_dir = cfg.system.resolved_run_dir()
    run_dir.mkdir(mode=0o700)
    svc = MonitorService(cfg)
    old, _ = svc.token, svc.token_where = web_token(run_dir)
    app = WebApp(svc.state_json, svc.metrics, svc.execute, token=old.encode())
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(svc._listen, app, "web", port, False)
            seen["held"] = await svc.handle(WebAccess())
            seen["file while held"] = (run_dir / TOKEN_FILE).exists()
            squatter.close()
            with trio.fail_after(10):
                while not svc.web_access()["serving"]:
                    await trio.sleep(0.01)
            seen["served"] = svc.web_access()
            nursery.cancel_scope.cancel()
        seen["stopped"] = svc.web_access()

    with caplog.at_level(logging.INFO, logger="hftd.monitor"):
        trio.run(main)
    held = seen["held"]
    assert held["serving"] is False and "url" not in held and old not in repr(held)
    assert held["problem"].startswith(f"port {port} is held by another program (")
    assert f"uid {os.geteuid()}" in held["problem"]  # /proc/net/tcp names the holder
    assert seen["file while held"] is False  # a monitor restarted meanwhile makes its own
    new = svc.token
    assert new != old and TOKEN_RE.fullmatch(new) and app.token == new.encode()
    assert (run_dir / TOKEN_FILE).read_text().strip() == new and mode(run_dir / TOKEN_FILE) == 0o600
    assert seen["served"] == {
        "serving": True,
        "url": f"http://127.0.0.1:{port}/#token={new}",
        "listening": f"http://127.0.0.1:{port}/",
    }
    assert seen["stopped"]["serving"] is False  # the listener is gone: no link either
    assert "web token: removed" in caplog.text and "web token: rotated" in caplog.text
    assert f"port {port}" in caplog.text
    assert old not in caplog.text and new not in caplog.text


def test_a_first_bind_keeps_the_token(tmp_path: Path) -> None:
    """No failure, no rotation: a restarted monitor that gets its port keeps open pages."""
    port = free_port()
    cfg = load_config(make_config(tmp_path, {"monitor": {"web_port": port}}))
    svc = MonitorService(cfg)
    svc.token, svc.token_where = web_token(tmp_path)
    first = svc.token
    app = WebApp(svc.state_json, svc.metrics, svc.execute, token=first.encode())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(svc._listen, app, "web", port, False)
            assert svc.web_access() == {
                "serving": True,
                "url": f"http://127.0.0.1:{port}/#token={first}",
                "listening": f"http://127.0.0.1:{port}/",
            }
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert svc.token == first and (tmp_path / TOKEN_FILE).read_text().strip() == first


@pytest.mark.parametrize(
    "result",
    [
        {
            "serving": False,
            "problem": "port 8080 is held by another program (in use)",
            "listening": "error: port 8080 is held by another program (in use)",
        },
        # An older monitor, which did not say whether it serves: never trust the link.
        {"url": "http://127.0.0.1:8080/#token=" + "s" * 43, "listening": "error: cannot listen"},
    ],
    ids=["held", "unsaid"],
)
def test_hftctl_dashboard_prints_no_link_unless_served(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    result: dict[str, str],
) -> None:
    monkeypatch.setattr(dashboard, "request_sync", lambda *a, **k: Reply(ok=True, result=result))
    cfg = make_config(tmp_path)
    assert hftctl(["--config", str(cfg), "dashboard"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "token" not in err and "s" * 43 not in err
    assert "the monitor is not serving the page: " in err
    assert err.rstrip().endswith("not printing the operator link")
    if result.get("serving") is False:
        assert "port 8080 is held by another program (in use)" in err
