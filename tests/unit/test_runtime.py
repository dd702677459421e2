"""Runtime pieces without processes: flap detection, config diff, reload rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from hftd.config import HftdConfig, config_diff, load_config, within
from hftd.msg.control import Command, Reload, ReloadResult
from hftd.runtime.daemon import Runtime
from hftd.supervise.supervisor import FlapDetector
from tests.support import DEFAULT_CONFIG


def test_flap_detector_window() -> None:
    f = FlapDetector(window=10.0, limit=3)
    assert not f.record(0.0) and not f.record(1.0) and not f.record(2.0)
    assert f.record(3.0)  # 4 restarts within 10 s
    g = FlapDetector(window=10.0, limit=3)
    assert not any(g.record(t) for t in (0.0, 5.0, 11.0, 16.0, 22.0))  # spread out


def test_config_diff_names_paths() -> None:
    a = load_config(DEFAULT_CONFIG)
    text = DEFAULT_CONFIG.read_text().replace("cancel_ratio = 0.3", "cancel_ratio = 0.5")
    text = text.replace("order_port = 9000", "order_port = 9100")
    p = Path("/tmp") / f"hftd-diff-{id(a)}.toml"
    p.write_text(text)
    try:
        b = load_config(p)
    finally:
        p.unlink()
    assert config_diff(a, b) == ["exchange.order_port", "exchange.flow.cancel_ratio"]
    assert config_diff(a, a) == []


def test_a_list_item_is_within_its_list() -> None:
    """A strategy parameter is named `strategy.instances[0].order_qty`: it is a live
    change for a daemon that applies `strategy.instances` (it was refused, always)."""
    live = ("strategy.instances", "risk")
    assert within("strategy.instances[0].order_qty", live)
    assert within("strategy.instances", live) and within("risk.max_position", live)
    assert not within("strategy.instancesX", live) and not within("riskier", live)
    assert not within("strategy.heartbeat_s", live)


class FakeService:
    def __init__(self, cfg: HftdConfig) -> None:
        self.applied: list[HftdConfig] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    def status_detail(self) -> dict[str, Any]:
        return {}

    async def handle(self, cmd: Command) -> Any:
        raise ValueError("no")

    def live_config(self) -> tuple[str, ...]:
        return ("exchange.flow",)

    def apply_config(self, cfg: HftdConfig) -> None:
        self.applied.append(cfg)


def _runtime(tmp_path: Path) -> tuple[Runtime, FakeService, Path]:
    path = tmp_path / "c.toml"
    path.write_text(DEFAULT_CONFIG.read_text())
    cfg = load_config(path)
    svc = FakeService(cfg)
    return Runtime("exchange", str(path), cfg, svc), svc, path


def test_reload_applies_live_changes(tmp_path: Path) -> None:
    rt, svc, path = _runtime(tmp_path)
    path.write_text(path.read_text().replace("cancel_ratio = 0.3", "cancel_ratio = 0.6"))
    res = rt.reload()
    assert res.applied == ["exchange.flow.cancel_ratio"] and not res.refused and not res.error
    assert svc.applied and rt.cfg.exchange.flow.cancel_ratio == 0.6


def test_reload_refuses_restart_changes_and_applies_nothing(tmp_path: Path) -> None:
    rt, svc, path = _runtime(tmp_path)
    old = rt.cfg
    text = path.read_text().replace("cancel_ratio = 0.3", "cancel_ratio = 0.6")
    path.write_text(text.replace("md_port = 9001", "md_port = 9101"))
    res = rt.reload()
    assert res.refused == ["exchange.md_port"] and res.applied == []
    assert not svc.applied and rt.cfg is old


def test_reload_of_an_invalid_file_changes_nothing(tmp_path: Path) -> None:
    rt, svc, path = _runtime(tmp_path)
    old = rt.cfg
    path.write_text(path.read_text().replace("cancel_ratio = 0.3", "cancel_ratio = 7"))
    res = rt.reload()
    assert "exchange.flow.cancel_ratio" in res.error
    assert not svc.applied and rt.cfg is old


def test_hop_summaries_equal_hdrh_percentiles() -> None:
    import random

    from hdrh.histogram import HdrHistogram

    from hftd.runtime.hdr import HIGHEST_NS, LOWEST_NS, SIG_DIGITS
    from hftd.runtime.latency import HOPS, HopRecorder

    rec = HopRecorder(capacity=1 << 12)
    rng = random.Random(5)
    ref = {hop: HdrHistogram(LOWEST_NS, HIGHEST_NS, SIG_DIGITS) for hop in HOPS}
    for _ in range(3000):
        t1 = rng.randrange(10**9)
        t2 = t1 + int(rng.lognormvariate(10, 1))
        t3, t4 = t2 + rng.randrange(50_000), t2 + 90_000
        t5 = t4 + int(rng.lognormvariate(12, 2))
        rec.record(t1, t2, t3, t4, t5)
        for hop, v in zip(HOPS, (t2 - t1, t3 - t2, t4 - t3, t5 - t4, t4 - t1), strict=True):
            ref[hop].record_value(max(v, 1))
    for s in rec.summaries():
        h = ref[s.hop]
        want = [h.get_value_at_percentile(p) / 1000 for p in (50, 95, 99, 99.9)]
        assert s.max == h.get_max_value() / 1000
        assert [s.p50, s.p95, s.p99, s.p999] == want, s.hop
        assert s.count == 3000


def test_hot_thread_log_lines_wait_for_its_idle_moment() -> None:
    """A hot thread's records are written when it flushes (its loop is idle), in order
    and with the time they were made; other threads' records are written at once."""
    import logging
    import threading

    from hftd.runtime.log import DeferredHandler

    written: list[tuple[str, float]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append((record.getMessage(), record.created))

    d = DeferredHandler(Collect(), max_pending=3)
    logger = logging.getLogger("hftd.test.deferred")
    logger.propagate = False
    logger.addHandler(d)
    logger.setLevel(logging.INFO)
    try:
        d.hot.add(threading.get_ident())
        logger.info("order %d", 1)
        logger.info("order %d", 2)
        assert written == [] and len(d.pending) == 2  # nothing on the hot path
        other = threading.Thread(target=lambda: logger.info("control"))
        other.start()
        other.join()
        assert [m for m, _ in written] == ["control"]  # not a hot thread: at once
        assert d.flush_pending() == 2
        assert [m for m, _ in written] == ["control", "order 1", "order 2"]
        assert written[1][1] <= written[0][1]  # each keeps the time it was made
        for i in range(3):  # a loop that is never idle still writes, every max_pending
            logger.info("busy %d", i)
        assert [m for m, _ in written[3:]] == ["busy 0", "busy 1", "busy 2"]
        assert not d.pending
    finally:
        logger.removeHandler(d)


def test_deferred_flush_can_write_one_line_at_a_time() -> None:
    import logging

    from hftd.runtime.log import DeferredHandler

    out: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())

    d = DeferredHandler(Collect())
    for i in range(3):
        d.pending.append(logging.LogRecord("x", logging.INFO, "", 0, f"line {i}", None, None))
    assert d.flush_pending(1) == 1 and out == ["line 0"]
    assert d.flush_pending() == 2 and out == ["line 0", "line 1", "line 2"]
    assert d.flush_pending(1) == 0


def test_deferred_lines_are_bounded_in_delay_and_never_dropped() -> None:
    """Warnings go out at once (after what waits, in order); a saturated hot thread
    catches up a few lines per call; the control thread writes stale lines; flush
    (logging.shutdown) writes the rest."""
    import logging
    import threading

    from hftd.runtime.log import DeferredHandler

    out: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())

    d = DeferredHandler(Collect(), max_pending=4, max_delay_s=0.05)
    logger = logging.getLogger("hftd.test.bounded")
    logger.propagate = False
    logger.addHandler(d)
    logger.setLevel(logging.INFO)
    d.hot.add(threading.get_ident())
    try:
        logger.info("a")
        logger.warning("BREAKER")
        assert out == ["a", "BREAKER"] and not d.pending
        for i in range(4):
            logger.info("x%d", i)
        assert out[2:] == ["x0", "x1", "x2", "x3"]  # at max_pending: caught up, bounded
        logger.info("old")
        old = d.pending[0]
        old.created -= 1.0  # waited a second: a hung loop
        other = threading.Thread(target=d.flush_stale)
        other.start()
        other.join()
        assert out[-1] == "old" and not d.pending
        logger.info("young")
        assert d.flush_stale() == 0 and out[-1] == "old"  # not stale: left to its thread
        d.flush()
        assert out[-1] == "young" and not d.pending
    finally:
        logger.removeHandler(d)


def test_hot_record_is_a_log_record_with_the_same_attributes() -> None:
    """The record factory setup_logging installs: what a LogRecord would hold, field by
    field, for the records the daemons make (no caller file), and LogRecord's own
    construction for anything else."""
    import logging

    from hftd.runtime.log import HotRecord

    args = ("AAPL", 100, 1.5)
    ref = logging.LogRecord("hftd.x", logging.INFO, "(unknown file)", 0, "a %s %d %.1f", args, None)
    hot = HotRecord("hftd.x", logging.INFO, "(unknown file)", 0, "a %s %d %.1f", args, None)
    moment = {"created", "msecs", "relativeCreated"}
    assert set(vars(hot)) == set(vars(ref))
    assert {k: v for k, v in vars(hot).items() if k not in moment} == {
        k: v for k, v in vars(ref).items() if k not in moment
    }
    assert hot.getMessage() == "a AAPL 100 1.5"
    assert 0 <= hot.msecs < 1000 and hot.msecs == int((hot.created % 1) * 1000)
    # a mapping as the only argument, or a caller's file: LogRecord's own code
    m = HotRecord("n", logging.INFO, "(unknown file)", 0, "%(a)s", ({"a": 1},), None)
    assert m.args == {"a": 1} and m.getMessage() == "1"
    f = HotRecord("n", logging.INFO, "/x/y/mod.py", 3, "m", (), None)
    assert (f.filename, f.module) == ("mod.py", "mod")


def test_brief_format_of_any_second_whatever_the_order() -> None:
    """The time text is cached per second: lines of other seconds, in any order,
    still carry their own."""
    import logging
    import time

    from hftd.runtime.log import BriefFormatter

    fmt = BriefFormatter("MD")
    base = 1_700_000_000.0
    for t in (base + 0.25, base + 0.75, base + 1.5, base + 0.1, base + 86_400.9, base + 1.5):
        r = logging.LogRecord("hftd.feed", logging.INFO, "", 0, "x", None, None)
        r.created, r.msecs = t, int((t % 1) * 1000)
        want = time.strftime("%H:%M:%S", time.localtime(t))
        assert fmt.format(r) == f"[{want}.{r.msecs:03d}] [MD    ] x"


def test_reload_leaves_other_daemons_sections_to_them(tmp_path: Path) -> None:
    """Risk limits (the gateway's) and strategy parameters changed: the exchange
    neither applies nor refuses them (it does not read them) and says so."""
    rt, svc, path = _runtime(tmp_path)
    text = path.read_text().replace("max_order_qty = 1000", "max_order_qty = 900")
    path.write_text(text.replace("heartbeat_s = 0.1", "heartbeat_s = 0.2"))
    res = rt.reload()
    assert res.ignored == ["strategy.heartbeat_s", "risk.max_order_qty"]
    assert res.applied == [] and res.refused == [] and not res.error
    assert rt.cfg.risk.max_order_qty == 900  # kept, so the next reload does not see it again
    assert rt.reload() == ReloadResult([], [], "", [])
    # with a change of its own that needs a restart: refused, the others still ignored
    path.write_text(path.read_text().replace("max_order_qty = 900", "max_order_qty = 800"))
    path.write_text(path.read_text().replace("md_port = 9001", "md_port = 9101"))
    res = rt.reload()
    assert res.refused == ["exchange.md_port"] and res.ignored == ["risk.max_order_qty"]
    assert not svc.applied


class FakeHotpath(FakeService):
    """A composed process's service: parts with their own live keys."""

    def __init__(self, cfg: HftdConfig) -> None:
        super().__init__(cfg)
        self.parts = {"feed": FakeService(cfg), "strategy": FakeService(cfg)}
        self.parts["gateway"] = FakeService(cfg)

    def live_config(self) -> tuple[str, ...]:
        return ("risk", "strategy.instances", "feed")


def test_reload_through_each_part_answers_for_that_parts_keys(tmp_path: Path) -> None:
    """Composite layout: `hftctl reload` asks feed, strategy and gateway, one process.
    A risk limit changed: the gateway says it applied it, the feed and the strategy
    leave it to its owner (the feed used to answer "applied" for the whole process and
    the gateway "no changes"); the process applies it once."""
    path = tmp_path / "c.toml"
    path.write_text(DEFAULT_CONFIG.read_text())
    cfg = load_config(path)
    svc = FakeHotpath(cfg)
    rt = Runtime("hotpath", str(path), cfg, svc)
    parts = {p.component: p for p in rt.parts}
    path.write_text(path.read_text().replace("max_order_qty = 1000", "max_order_qty = 900"))

    async def ask(name: str) -> ReloadResult:
        res: ReloadResult = await parts[name].dispatch(Reload())
        return res

    got = {name: trio.run(ask, name) for name in ("feed", "strategy", "gateway")}
    assert got["feed"] == ReloadResult([], [], "", ["risk.max_order_qty"])
    assert got["strategy"] == ReloadResult([], [], "", ["risk.max_order_qty"])
    assert got["gateway"] == ReloadResult(["risk.max_order_qty"], [], "")
    assert len(svc.applied) == 1 and rt.cfg.risk.max_order_qty == 900
    # asked again, nothing changed: nobody applies anything
    assert trio.run(ask, "gateway") == ReloadResult([], [], "", [])
    # a change the process cannot take live: refused in every part's answer
    path.write_text(path.read_text().replace("md_port = 9001", "md_port = 9101"))
    for name in ("feed", "gateway"):
        res = trio.run(ask, name)
        assert res.refused == ["exchange.md_port"] and res.applied == []
    assert len(svc.applied) == 1


def test_the_simulators_own_keys_are_left_to_it(tmp_path: Path) -> None:
    """The exchange's flow is the exchange's: the gateway (feed, strategy alike)
    leaves a change to it instead of refusing it (`hftctl reload` exited 1 for a
    flow change the exchange applied). Where the venue is stays theirs too: a port
    change is refused by the gateway, which connects to it."""
    path = tmp_path / "c.toml"
    path.write_text(DEFAULT_CONFIG.read_text())
    cfg = load_config(path)
    rt = Runtime("gateway", str(path), cfg, FakeService(cfg))
    path.write_text(path.read_text().replace("cancel_ratio = 0.3", "cancel_ratio = 0.5"))
    assert rt.reload() == ReloadResult([], [], "", ["exchange.flow.cancel_ratio"])
    path.write_text(path.read_text().replace("order_port = 9000", "order_port = 9100"))
    assert rt.reload().refused == ["exchange.order_port"]
