"""Shared fixtures: a real exchange daemon on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LAYOUT, OPEN_CLIENTS, RING_PREFIXES, Daemon, make_config, start_daemon

LAYOUTS = ("split", "composite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `layouts` runs once per hot-path layout (`_layout` applies it)."""
    if metafunc.definition.get_closest_marker("layouts") is not None:
        metafunc.fixturenames.append("hftd_layout")
        metafunc.parametrize("hftd_layout", LAYOUTS)


@pytest.fixture(autouse=True)
def _layout(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every config a `layouts` test makes asks for its layout (autouse: before the
    test's own fixtures make theirs)."""
    callspec = getattr(request.node, "callspec", None)
    LAYOUT[0] = callspec.params.get("hftd_layout") if callspec is not None else None
    try:
        yield
    finally:
        LAYOUT[0] = None


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[Daemon]:
    """The exchange simulator with background flow, on free ports."""
    cfg = make_config(tmp_path)
    with start_daemon("exchange", cfg) as d:
        yield d


@pytest.fixture
def quiet_exchange(tmp_path: Path) -> Iterator[Daemon]:
    """The exchange simulator without background flow (deterministic books)."""
    cfg = make_config(tmp_path, {"exchange": {"flow": {"enabled": False}}})
    with start_daemon("exchange", cfg) as d:
        yield d


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


@pytest.fixture(autouse=True)
def _remove_rings() -> Iterator[None]:
    """Every ring a test's config named is gone from /dev/shm afterwards."""
    yield
    for prefix in RING_PREFIXES:
        for path in Path("/dev/shm").glob(f"{prefix}-*"):
            path.unlink(missing_ok=True)
