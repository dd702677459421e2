"""Wider chaos (issue 16, item 6): a consumer too slow for its ring, a venue that stops
answering. Each scenario runs the whole system (`hftd up`) on loopback while it
trades, stops a process with SIGSTOP (alive, holding its sockets, answering nothing:
what a wedged or swapping process looks like from outside; SIGCONT always follows, in
a `finally`) and proves, as tests/chaos/test_chaos_links.py does:

- the system gets back by itself (or, after the breaker, by the operator's resume)
  and trades again;
- the monitor raised the right alert while it lasted;
- nothing is lost and nothing is left behind: once halted, no order rests at the
  venue nor works at the gateway, the gateway's fills, positions and P&L equal those
  recomputed from the venue's own record, and (the flow stopped) the strategy's books
  equal the venue's, every symbol.

The supervisor's watchdog would kill a stopped daemon after `watchdog_s` (a kill is
tests/chaos/test_chaos_supervisor.py's case): the stopped one is given a long one.

What the system does when a consumer falls behind its ring depends on the layout:

- split: the feed never waits for the strategy. A full md ring drops the update and
  counts it (`drops`); the monitor raises `ring_drops`. The strategy, once it runs
  again, reads what the ring kept, sees the hole (a sequence gap, or a feed heartbeat
  past what it saw: "md drop"), asks the feed for a resync: MD_RESET and a replay
  from ITCH sequence 1 rebuild its books, without acting on the replay, and it trades
  again from the live edge.
- composite: feed, strategy and gateway share one thread, so the strategy reads each
  record as the feed writes it and no ring can be lapped; a hot path too slow leaves
  the venue's data in the socket. It reads it when it runs again: nothing dropped,
  no gap, no resync. Stopped, it answers nothing (`daemon_down`). Slow but running
  (a strategy plug-in that sleeps in its callback, tests/chaos/slow_strategy.py), it
  answers: the feed's Status says how many bytes wait unread in its socket and the
  monitor raises `md_backlog` past `md_backlog_bytes` held for `md_backlog_after_s`
  (the defaults), then clears it once caught up. The venue is not taken for silent
  meanwhile (`venue_silent`: what it sent waits unread), nor does it drop the feed
  as silent (the feed heartbeats on reads too).

A venue that stops answering: its sessions stay connected, nothing comes back. The
monitor raises `venue_silent` (orders and md) after `venue_silent_after_s`; orders get
no acknowledgement, and the gateway cancels those unanswered after
`gateway.order_timeout_s`; the feed stops vouching for the market data (no
heartbeats after MD_VOUCH_S without a word from the venue), so its age reaches the
breaker's `md_stale_s`, which halts trading and cancels what works: nothing more is
sent into the silence. Past the venue's heartbeat timeout the links are dropped and
retried (`link_down`). When the venue answers again the sessions go on (or log in
again from their sequence numbers), the orders and cancels sent into the stall are
answered, and the operator resumes.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hftd.msg.control import Depth, Reload
from tests.chaos.test_chaos_links import (
    active,
    halt_and_match_the_venue,
    links_config,
    monitor,
    raised_then_cleared,
    trades_again,
    trading,
)
from tests.integration.test_trading import STRATEGIES
from tests.support import (
    Daemon,
    ask,
    deep_merge,
    dump_toml,
    hftctl,
    start_daemon,
    status,
    status_of_up,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

MD_RING = 1 << 16  # bytes: ~1,200 md records, a few seconds of the tests' flow
MD_BACKLOG_BYTES = 16 * 1024  # monitor.alerts.md_backlog_bytes: the default
SLOW_US = 4000  # the slow strategy's cost per book change: fewer a second than the flow makes
STOPPED_WATCHDOG_S = 120.0  # the stopped daemon is not killed by the supervisor meanwhile


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """Process `pid` stopped (SIGSTOP) for the block, continued (SIGCONT) after it,
    whatever happens inside."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def pid_of(up: Daemon, component: str) -> int:
    """The pid of the process that runs `component` (its own, or the hotpath's)."""
    pid: int = status_of_up(up)[component]["pid"]
    return pid


def md_sequence(up: Daemon) -> int:
    """The last ITCH sequence number the venue has published."""
    seq: int = ask(up, "exchange", Depth("AAPL"))["md_sequence"]
    return seq


def caught_up(up: Daemon, timeout: float = 30) -> dict[str, Any]:
    """The strategy in sync at the live edge, past what the venue had published now."""
    venue_seq = md_sequence(up)

    def done() -> dict[str, Any] | None:
        s = status(up, "strategy")
        return s if s["synced"] and not s["catching_up"] and s["last_seq"] >= venue_seq else None

    found: dict[str, Any] = wait_for(done, timeout, "the strategy's books at the live edge")
    return found


def books_match_the_venue(up: Daemon, cfg: Path) -> None:
    """Stop the venue's flow (the exchange reloads its config) so that the market
    stands still, then every symbol's book at the strategy is the venue's, at the same
    sequence number."""
    data = tomllib.loads(cfg.read_text())
    cfg.write_text(dump_toml(deep_merge(data, {"exchange": {"flow": {"enabled": False}}})))
    assert "exchange.flow.enabled" in ask(up, "exchange", Reload())["applied"]
    symbols = [s["symbol"] for s in up.config["symbols"]]
    last: list[str] = []

    def same() -> bool:
        want = {s: ask(up, "exchange", Depth(s)) for s in symbols}
        got = {s: ask(up, "strategy", Depth(s)) for s in symbols}
        seq = want[symbols[0]]["md_sequence"]
        diff = [
            f"{s}: venue at {seq} {want[s]['bids'][:2]} {want[s]['asks'][:2]}, strategy at "
            f"{got[s]['md_sequence']} {got[s]['bids'][:2]} {got[s]['asks'][:2]}"
            for s in symbols
            if got[s]["md_sequence"] != seq
            or (got[s]["bids"], got[s]["asks"], got[s]["orders"])
            != (want[s]["bids"], want[s]["asks"], want[s]["orders"])
        ]
        last[:] = diff
        return not diff

    try:
        wait_for(same, 15, "the strategy's books equal to the venue's")
    except AssertionError:
        raise AssertionError("\n".join(last)) from None
    assert all(ask(up, "exchange", Depth(s))["orders"] for s in symbols), "empty books"


def resume(up: Daemon, cfg: Path) -> None:
    """The operator re-arms the breaker and trades again."""
    res = hftctl(cfg, "resume")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for(lambda: status(up, "gateway")["mode"] == "active", 10, "active again")


# --- a consumer too slow for its ring ------------------------------------------------------


def test_a_strategy_too_slow_for_its_ring_is_lapped_and_resyncs(tmp_path: Path) -> None:
    """Split layout: the strategy stopped while the feed goes on, until the md ring is
    full and the feed drops updates."""
    cfg = links_config(
        tmp_path,
        {
            "hotpath": {"layout": "split"},
            "rings": {"md_capacity": MD_RING},
            "daemons": {"strategy": {"watchdog_s": STOPPED_WATCHDOG_S}},
        },
    )
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        strat0 = caught_up(up)
        feed0 = status(up, "feed")
        assert feed0["drops"] == 0 and "ring_drops:rings" not in active(up)

        with stopped(pid_of(up, "strategy")):
            feed = wait_for(
                lambda: (lambda f: f if f["drops"] else None)(status(up, "feed")),
                30,
                "the feed dropping updates on the full md ring",
            )
            assert feed["ring"]["full_count"] > 0 and feed["ring"]["free"] < 1024
            alert = wait_for(lambda: active(up).get("ring_drops:rings"), 10, "ring_drops")
            assert alert["severity"] == "critical", alert
            assert "dropped on full rings" in alert["message"], alert
            # the gateway hears no strategy: its orders cancelled, new ones held
            wait_for(lambda: not status(up, "gateway")["strategy_up"], 10, "strategy silent")

        # By itself: the hole seen, one resync (a replay from 1, not acted on), in sync
        # at the live edge again; the feed dropped nothing more.
        strat = caught_up(up)
        print(f"lapped: {status(up, 'feed')['drops']} updates dropped; {strat['last_loss']}")
        assert strat["gaps"] >= strat0["gaps"] + 1
        assert strat["resyncs"] >= strat0["resyncs"] + 1 and strat["resets"] > strat0["resets"]
        assert "md gap" in strat["last_loss"] or "md drop" in strat["last_loss"], strat
        assert not strat["resync_loop"] and strat["resync_failures"] == 0
        assert status(up, "feed")["resets"] >= feed0["resets"] + 1
        assert "resync_loop:strategy" not in active(up)
        assert status_of_up(up)["strategy"]["restarts"] == 0  # lapped, not killed
        wait_for(lambda: status(up, "gateway")["strategy_up"], 10, "the strategy heard again")
        trades_again(up)

        halt_and_match_the_venue(up, cfg)
        books_match_the_venue(up, cfg)
        assert status(up, "strategy")["untracked"] == 0


def test_a_stalled_composite_hot_path_drops_nothing(tmp_path: Path) -> None:
    """Composite layout: the hot path (feed, strategy and gateway in one thread) stopped
    for longer than its md ring would hold at this flow: the backlog waits in the
    venue's socket, nothing is dropped, nothing resynced."""
    cfg = links_config(
        tmp_path,
        {
            "hotpath": {"layout": "composite"},
            "rings": {"md_capacity": MD_RING},
            "daemons": {"strategy": {"watchdog_s": STOPPED_WATCHDOG_S}},
        },
    )
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        strat0 = caught_up(up)
        feed0 = status(up, "feed")
        hot = pid_of(up, "strategy")
        assert pid_of(up, "feed") == hot == pid_of(up, "gateway")

        with stopped(hot):
            # more than the md ring holds (MD_RING bytes, >= 40 a record) goes by
            start = md_sequence(up)
            wait_for(
                lambda: md_sequence(up) > start + MD_RING // 40,
                30,
                "the venue publishing more than the md ring holds",
            )
            keys = {f"daemon_down:{n}" for n in ("feed", "strategy", "gateway")}
            wait_for(lambda: keys <= set(active(up)), 10, "the hot path's daemons down")

        strat = caught_up(up)
        feed = status(up, "feed")
        assert feed["drops"] == feed0["drops"] == 0 and feed["gaps"] == feed0["gaps"]
        assert feed["resets"] == feed0["resets"]
        assert (strat["gaps"], strat["resyncs"]) == (strat0["gaps"], strat0["resyncs"])
        assert "ring_drops:rings" not in active(up)
        raised_then_cleared(up, "daemon_down:strategy")
        trades_again(up)

        halt_and_match_the_venue(up, cfg)
        books_match_the_venue(up, cfg)


def plugin_site(tmp: Path) -> Path:
    """The slow kind (tests/chaos/slow_strategy.py) as an installed distribution: its
    module and a dist-info whose entry point registers it (what pip would write)."""
    site = tmp / "plugins"
    dist = site / "hftci_slow-0.dist-info"
    dist.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("slow_strategy.py"), site / "hftci_slow.py")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hftci-slow\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[hftd.strategies]\nslow = hftci_slow:Slow\n")
    return site


@contextmanager
def present(flag: Path) -> Iterator[None]:
    """File `flag` exists for the block, and not after it, whatever happens inside."""
    flag.touch()
    try:
        yield
    finally:
        flag.unlink()


def test_a_slow_composite_hot_path_raises_md_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Composite layout: the hot path slower than the venue's flow, not stopped (a
    strategy that sleeps in its callback): its control plane answers, so the monitor
    hears the feed say how much market data waits unread in its socket, and raises
    `md_backlog` at the default thresholds; it clears once the hot path has caught up.
    Nothing dropped, nothing resynced, nothing left behind."""
    site = plugin_site(tmp_path)
    monkeypatch.syspath_prepend(str(site))  # this process reads the config too
    monkeypatch.setenv("PYTHONPATH", str(site))  # hftd up, hftctl
    flag = tmp_path / "slow"
    symbols = ["AAPL", "MSFT", "GOOG", "AMZN"]
    slow = {"name": "slow1", "kind": "slow", "symbols": symbols, "sleep_us": SLOW_US}
    cfg = links_config(
        tmp_path,
        {
            "hotpath": {"layout": "composite"},
            "strategy": {"instances": [*STRATEGIES, {**slow, "slow_while": str(flag)}]},
        },
    )
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        strat0 = caught_up(up)
        feed0 = status(up, "feed")
        assert feed0["unread_bytes"] is not None and feed0["unread_bytes"] < MD_BACKLOG_BYTES
        assert "md_backlog:feed" not in active(up)

        with present(flag):
            t0 = time.monotonic()
            alert = wait_for(lambda: active(up).get("md_backlog:feed"), 60, "md_backlog")
            assert alert["severity"] == "warning", alert
            assert "unread in the feed's socket" in alert["message"], alert
            assert alert["value"] > MD_BACKLOG_BYTES == alert["threshold"]
            # not mistaken for a hot path that stopped (it answers), nor for a venue
            # that stopped answering (what it sends waits unread)
            assert not {"daemon_down:feed", "venue_silent:md", "venue_silent:orders"} & set(
                active(up)
            )
            print(f"slow hot path: {alert['message']} ({time.monotonic() - t0:.1f} s)")

        # Caught up by itself: the alert clears, nothing was dropped or resynced.
        raised_then_cleared(up, "md_backlog:feed")
        # The venue talked all along (what it sent waited unread), and heard the feed:
        # no venue_silent, no session dropped as silent.
        assert not [a for a in monitor(up)["alert_log"] if a["rule"] == "venue_silent"]
        assert status(up, "feed")["reconnects"] == feed0["reconnects"]
        strat = caught_up(up)
        feed = status(up, "feed")
        assert feed["unread_bytes"] < MD_BACKLOG_BYTES
        assert feed["drops"] == feed0["drops"] == 0 and feed["gaps"] == feed0["gaps"]
        assert feed["resets"] == feed0["resets"]
        assert (strat["gaps"], strat["resyncs"]) == (strat0["gaps"], strat0["resyncs"])
        assert status_of_up(up)["strategy"]["restarts"] == 0
        trades_again(up)

        halt_and_match_the_venue(up, cfg)
        books_match_the_venue(up, cfg)


# --- a venue that stops answering -----------------------------------------------------------


def venue_config(tmp: Path, extra: dict[str, Any] | None = None) -> Path:
    over = {"daemons": {"exchange": {"watchdog_s": STOPPED_WATCHDOG_S}}}
    return links_config(tmp, deep_merge(over, extra or {}))


def halted_by_stale_md(up: Daemon, timeout: float) -> dict[str, Any]:
    """The breaker tripped on market data gone stale, trading halted."""
    gw: dict[str, Any] = wait_for(
        lambda: (lambda g: g if g["breaker"]["tripped"] else None)(status(up, "gateway")),
        timeout,
        "the circuit breaker tripped on stale market data",
    )
    assert "market data stale" in gw["breaker"]["reason"], gw["breaker"]
    assert gw["mode"] == "halted"
    return gw


def nothing_awaits_the_venue(up: Daemon) -> None:
    """Every order and cancel sent into the silence has had its answer."""
    wait_for(
        lambda: (
            not [
                o
                for o in status(up, "gateway")["working"]
                if o["state"] in ("pending", "cancel pending")
            ]
        ),
        15,
        "the venue's answers to what was sent into the silence",
    )


@pytest.mark.layouts
def test_a_venue_that_stops_answering(tmp_path: Path) -> None:
    """Stopped for less than its heartbeat timeout (15 s): the sessions stay up."""
    cfg = venue_config(tmp_path)
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        before = status(up, "gateway")
        assert not {"venue_silent:orders", "venue_silent:md"} & set(active(up))

        with stopped(pid_of(up, "exchange")):
            for key in ("venue_silent:orders", "venue_silent:md"):
                alert = wait_for(lambda k=key: active(up).get(k), 10, f"the {key} alert")
                assert alert["severity"] == "critical" and "not answering" in alert["message"]
            heard = status(up, "gateway")["venue_heard_ms_ago"]
            assert heard is not None and heard >= 3000
            assert status(up, "feed")["venue_heard_ms_ago"] >= 3000
            # the feed no longer vouches for the market data: it ages, and the breaker
            # (md_stale_s, 3 s) halts trading and cancels what works, long before the
            # link's heartbeat timeout; nothing new is sent into the silence after that
            gw = halted_by_stale_md(up, 8)
            sent = gw["sent"]
            time.sleep(1.0)  # a window to count in, not a readiness wait
            gw = status(up, "gateway")
            assert gw["sent"] == sent, "orders sent to a venue that does not answer"
            assert gw["venue_up"] and gw["reconnects"] == before["reconnects"]  # still up
            print(
                f"venue stopped: {sent - before['sent']} orders sent before the halt, "
                f"{gw['timeouts'] - before['timeouts']} unanswered past order_timeout_s, "
                f"{len(gw['working'])} working"
            )

        # It answers again: same sessions, every order and cancel answered, the
        # alerts cleared; the operator resumes.
        raised_then_cleared(up, "venue_silent:orders")
        raised_then_cleared(up, "venue_silent:md")
        nothing_awaits_the_venue(up)
        gw = status(up, "gateway")
        assert gw["venue_up"] and gw["reconnects"] == before["reconnects"]
        assert status(up, "feed")["link"] == "live"
        resume(up, cfg)
        trades_again(up)

        halt_and_match_the_venue(up, cfg)
        books_match_the_venue(up, cfg)


@pytest.mark.layouts
def test_a_venue_silent_past_its_heartbeat_timeout(tmp_path: Path) -> None:
    """Stopped for longer than the clients wait for its heartbeats (lowered to 5 s
    here): the links are declared down and retried; once it answers, the gateway
    logs in again from its sequence number and the books agree."""
    cfg = venue_config(tmp_path, {"venue": {"heartbeat_timeout_s": 5.0}})
    with start_daemon("up", cfg, ready_timeout=60) as up:
        trading(up)
        before = status(up, "gateway")
        feed0 = status(up, "feed")

        with stopped(pid_of(up, "exchange")):
            wait_for(lambda: active(up).get("venue_silent:orders"), 10, "venue_silent")
            halted_by_stale_md(up, 15)
            wait_for(
                lambda: status(up, "gateway")["reconnects"] > before["reconnects"],
                15,
                "the gateway dropping the silent link",
            )
            for key in ("link_down:venue", "link_down:md"):
                alert = wait_for(lambda k=key: active(up).get(k), 10, f"the {key} alert")
                assert alert["severity"] == "critical"
            sent = status(up, "gateway")["sent"]

        # Back: logged in again from where each left off; what went into the dead
        # connection is answered (or, if the venue never read it, timed out and
        # cancelled); nothing untracked, nothing lost.
        raised_then_cleared(up, "link_down:venue")
        raised_then_cleared(up, "link_down:md")
        gw = wait_for(
            lambda: (lambda g: g if g["venue_up"] else None)(status(up, "gateway")),
            15,
            "the gateway on the venue again",
        )
        assert gw["sent"] == sent and gw["mode"] == "halted"
        assert status(up, "feed")["reconnects"] > feed0["reconnects"]
        nothing_awaits_the_venue(up)
        caught_up(up)
        resume(up, cfg)
        trades_again(up)

        gw = halt_and_match_the_venue(up, cfg)
        assert gw["unusable"] == 0
        books_match_the_venue(up, cfg)
