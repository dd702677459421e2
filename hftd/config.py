"""Configuration: TOML -> frozen msgspec Structs, validated completely.

`load_config` reports *every* problem in a file at once, each with its path
(``exchange.flow.cancel_ratio: Expected `float` <= 1.0``), because an operator
fixing a config one error per restart is an operator losing minutes.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from hftd.configtypes import (
    Alpha6,
    Alpha10,
    Micros,
    NonNegative,
    Port,
    Positive,
    PriceText,
    Ratio,
    Seconds,
    Symbol,
)
from hftd.ipc.ring import default_strategy
from hftd.msg import ids
from hftd.msg.hot import PRICE_SCALE as PRICE_SCALE  # 4 implied decimals
from hftd.risk.breaker import BreakerConfig
from hftd.risk.limits import RiskLimits
from hftd.runtime.journal import FsyncPolicy
from hftd.strategy.api import StrategyParams
from hftd.strategy.kinds import BuiltinConfig
from hftd.strategy.plugins import BUILTIN_STRATEGIES as BUILTIN_STRATEGIES
from hftd.strategy.plugins import STRATEGY_ENTRY_POINTS as STRATEGY_ENTRY_POINTS
from hftd.strategy.plugins import PluginError, config_class
from hftd.strategy.plugins import strategy_kinds as strategy_kinds


class ConfigError(Exception):
    """A config file is unreadable or invalid; `errors` lists every problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid config {source}:\n  " + "\n  ".join(errors))


class _Base(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Common settings for every config Struct."""

    def problems(self) -> Iterator[str]:
        """Cross-field checks a type annotation cannot express (path-relative)."""
        return iter(())


def to_fixed(text: str) -> int:
    """Decimal price text ("189.25") -> 4-decimal fixed point (1892500)."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a price: {text!r}") from exc
    scaled = value * PRICE_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"more than 4 decimals: {text!r}")
    return int(scaled)


class LatencyConfig(_Base, frozen=True, kw_only=True):
    """A delay distribution in microseconds; `kind = "none"` adds nothing."""

    kind: Literal["none", "fixed", "uniform", "normal", "lognormal"] = "none"
    micros: Micros = 0.0  # fixed value, or the mean/median for distributions
    low_micros: Micros = 0.0  # uniform
    high_micros: Micros = 0.0  # uniform
    stdev_micros: Micros = 0.0  # normal
    sigma: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.5  # lognormal: median = micros
    seed: int = 7

    def problems(self) -> Iterator[str]:
        if self.kind == "uniform" and self.high_micros < self.low_micros:
            yield "high_micros: must be >= low_micros"


class FlowConfig(_Base, frozen=True, kw_only=True):
    """Synthetic background participants for one symbol (or the default for all)."""

    enabled: bool = True
    arrival_rate_per_s: Annotated[float, msgspec.Meta(ge=0.0)] = 20.0
    step_ticks: Annotated[float, msgspec.Meta(ge=0.0)] = 1.0  # stdev of the mid walk per event
    spread_ticks: Positive = 2
    depth_levels: Positive = 5  # passive orders land within this many ticks of the touch
    size_lots_mean: Annotated[float, msgspec.Meta(ge=1.0)] = 2.0  # geometric, in round lots
    size_lots_max: Positive = 20
    cancel_ratio: Ratio = 0.3
    marketable_ratio: Ratio = 0.1
    max_resting_per_side: Positive = 200


class SymbolConfig(_Base, frozen=True, kw_only=True):
    """One listed instrument."""

    symbol: Symbol
    reference_price: PriceText
    tick_size: PriceText = "0.01"
    round_lot: Positive = 100
    flow: FlowConfig | None = None

    @property
    def reference_price_fp(self) -> int:
        return to_fixed(self.reference_price)

    @property
    def tick_fp(self) -> int:
        return to_fixed(self.tick_size)

    def problems(self) -> Iterator[str]:
        if to_fixed(self.tick_size) <= 0:
            yield "tick_size: must be > 0"
        elif to_fixed(self.reference_price) % to_fixed(self.tick_size) != 0:
            yield "reference_price: must be a multiple of tick_size"
        if to_fixed(self.reference_price) <= 0:
            yield "reference_price: must be > 0"


class UserConfig(_Base, frozen=True, kw_only=True):
    """A venue login (SoupBinTCP username/password)."""

    username: Alpha6
    password: Alpha10


class ExchangeConfig(_Base, frozen=True, kw_only=True):
    """The exchange simulator daemon."""

    host: str = "127.0.0.1"
    order_port: Port = 9000
    md_port: Port = 9001
    session: Alpha10 = "HFTD000001"
    users: list[UserConfig] = msgspec.field(default_factory=list)
    max_order_size: Positive = 1_000_000
    heartbeat_interval_s: Seconds = 1.0
    heartbeat_timeout_s: Seconds = 15.0
    ack_latency: LatencyConfig = msgspec.field(default_factory=LatencyConfig)
    md_latency: LatencyConfig = msgspec.field(default_factory=LatencyConfig)
    flow: FlowConfig = msgspec.field(default_factory=FlowConfig)
    flow_seed: int = 42
    # Every venue input is journaled before it is applied; a restart replays it.
    # The journal is the trading day's (hftd.runtime.days): system.journal_dir.
    journal_fsync: FsyncPolicy = "batch"
    journal_batch_s: Seconds = 0.1  # "batch": fdatasync at most this often
    # A checkpoint of the venue (hftd.exchange.checkpoint) once this many records were
    # journaled since the last one, or this long after it: a restart replays only the
    # journal after the checkpoint (docs/venue.md "Crash recovery").
    checkpoint_records: Positive = 10_000
    checkpoint_interval_s: Seconds = 10.0
    # Venue access (docs/venue.md "Logins, lock-out and caps"); each port keeps its own.
    md_users: list[UserConfig] = msgspec.field(default_factory=list)  # [] = md open to anyone
    login_max_failures: Positive = 5  # failed logins past this, from one source or for one user ...
    login_failure_window_s: Seconds = 60.0  # ... within this window lock that source (user) out
    login_lockout_s: Seconds = 60.0  # for this long: every login from it refused
    max_connections: Positive = 64  # open at once per port, logged in or not
    md_max_sessions_per_user: Positive = 4  # market-data sessions per md user
    # A recorded day as the market instead of the synthetic flow (docs/venue.md "Paper
    # trading on a recorded day"); "" = synthetic flow. Relative to the config file.
    # md_file_model "book": an ITCH 5.0 BinaryFILE played into the venue's books, our
    # orders trading with its orders there (our trades change the stream); "queue": any
    # file hftd.backtest.detect reads (ITCH plain or gzip, LOBSTER) published as it is,
    # our orders matched by the backtest's queue model (hftd.exchange.paper). Restart
    # to change.
    md_file: str = ""
    md_file_model: Literal["book", "queue"] = "book"
    md_file_speed: Annotated[float, msgspec.Meta(ge=0.0)] = 1.0  # x recorded time; 0 = at once
    # A session whose socket does not take its data (sequenced messages, heartbeats,
    # replies) for this long is not reading: it is dropped, so it cannot slow the venue.
    send_timeout_s: Seconds = 5.0

    def problems(self) -> Iterator[str]:
        if self.order_port == self.md_port:
            yield "md_port: must differ from order_port"
        for field_, users in (("users", self.users), ("md_users", self.md_users)):
            names = [u.username for u in users]
            for name in sorted({n for n in names if names.count(n) > 1}):
                yield f"{field_}: duplicate username {name!r}"
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            yield "heartbeat_timeout_s: must exceed heartbeat_interval_s"


class StrategyConfig(_Base, frozen=True, kw_only=True):
    """The strategy daemon."""

    heartbeat_s: Seconds = 0.1  # to the gateway, so it notices a dead strategy
    # Record every input of the engine (market data, reports, timers, clock readings)
    # in the day's journal dir, for `hftd backtest --session` (restart to change)
    record_inputs: bool = False
    # Each instance is its kind's own config Struct (`kind` the tag: a built-in one,
    # hftd.strategy.kinds, or a plug-in's; hftd.strategy.plugins), decoded and checked
    # as one (`_check_instance`, `convert_config`); applied live on reload
    instances: list[StrategyParams] = msgspec.field(default_factory=list)

    def problems(self) -> Iterator[str]:
        names = [i.name for i in self.instances]
        for name in sorted({n for n in names if names.count(n) > 1}):
            yield f"instances: duplicate name {name!r}"
        if len(self.instances) > ids.MAX_INSTANCES:
            yield (
                f"instances: {len(self.instances)} listed, at most {ids.MAX_INSTANCES} "
                "(an order id holds the instance in 8 bits: hftd.msg.ids)"
            )


WaitName = Literal["auto", "spin", "spin-then-sleep", "sleep"]


class RingsConfig(_Base, frozen=True, kw_only=True):
    """The shared-memory rings of the hot path (/dev/shm/<prefix>-<edge>)."""

    prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,40}$")] = "hftd"
    md_capacity: Positive = 1 << 22  # feed -> strategy, bytes (power of two)
    # feed -> gateway: the same records, for risk's own view (hftd.risk.market)
    risk_md_capacity: Positive = 1 << 22
    orders_capacity: Positive = 1 << 20  # strategy -> gateway
    executions_capacity: Positive = 1 << 20  # gateway -> strategy
    # Per consumer. "auto": spin-then-sleep with a core to spare, else sleep
    # (never spin on an oversubscribed machine).
    strategy_wait: WaitName = "auto"
    gateway_wait: WaitName = "auto"
    spin_us: Annotated[float, msgspec.Meta(ge=0.0)] = 20.0

    def problems(self) -> Iterator[str]:
        for name in ("md_capacity", "risk_md_capacity", "orders_capacity", "executions_capacity"):
            v = getattr(self, name)
            if v & (v - 1) or v < 4096:
                yield f"{name}: must be a power of two >= 4096"

    def wait_for(self, consumer: str) -> str:
        """The wait strategy a consumer uses, with "auto" resolved for this machine."""
        name: str = getattr(self, f"{consumer}_wait")
        if name != "auto":
            return name
        return default_strategy()


# "auto" picks "split" when each hot component can have a core of its own (with
# one to spare for the rest), else "composite".
SPLIT_MIN_CPUS = 4


class HotpathConfig(_Base, frozen=True, kw_only=True):
    """How the hot-path components (feed, strategy, gateway) run.

    `split`: one process each, over shm rings (the production shape with a
    core per hot component). `composite`: the same agents in one process and
    one hot thread (daemon `hotpath`), no wake-up between them; one crash takes
    the three together. `auto`: split with >= SPLIT_MIN_CPUS usable CPUs.
    """

    layout: Literal["auto", "split", "composite"] = "auto"
    # The composite's hot thread waits on the venue's sockets: "auto" spins
    # spin_us first with a core to spare, else sleeps at once.
    wait: WaitName = "auto"
    # SCHED_FIFO priority of the hot threads (feed, strategy, gateway, both
    # layouts; 0 = the default policy). They sleep between messages, so they
    # take little CPU, but a message wakes them at once instead of after the
    # scheduler's slice of whatever else shares the CPU. The kernel's RT
    # throttling (sched_rt_runtime_us) keeps 5% of each CPU for the rest.
    rt_priority: Annotated[int, msgspec.Meta(ge=0, le=99)] = 0
    # The composite hot thread, idle this long, runs one warming pass: the path's
    # code on canned data and scratch state, nothing sent or recorded
    # (hftd.hotpath.warmup), so the next real message finds it in the CPU caches.
    # 0 = never. Split daemons do not warm (docs/hotpath.md, "Warming").
    warm_us: Annotated[float, msgspec.Meta(ge=0.0)] = 1000.0

    def resolved_layout(self) -> str:
        if self.layout != "auto":
            return self.layout
        return "split" if len(os.sched_getaffinity(0)) >= SPLIT_MIN_CPUS else "composite"

    def resolved_wait(self) -> str:
        if self.wait != "auto":
            return self.wait
        return "spin-then-sleep" if len(os.sched_getaffinity(0)) >= 3 else "sleep"


OptionalPort = Annotated[int, msgspec.Meta(ge=1, le=65535)] | None
Session = Annotated[str, msgspec.Meta(max_length=10, pattern=r"^[ -~]*$")]
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # listen-all -> loopback


class VenueConfig(_Base, frozen=True, kw_only=True):
    """Where the clients (feed: market data, gateway: order entry) find the venue.

    A field left out is the simulator's (`[exchange]`) while the simulator runs
    (`daemons.exchange` enabled; a listen-all host means loopback). Without the
    simulator (`daemons.exchange.enabled = false`, a real venue) `host`,
    `order_port` and `md_port` are required. While the simulator runs, a port
    or session given here must be the simulator's: pointing the clients away
    from a simulator that runs is a mistake, not a way to trade elsewhere.
    """

    host: str | None = None
    order_port: OptionalPort = None  # OUCH 5.0 over SoupBinTCP 3.0
    md_port: OptionalPort = None  # ITCH 5.0 over SoupBinTCP 3.0
    # The SoupBinTCP session the clients expect (the gateway refuses another one);
    # "" = whatever the venue's current session is.
    session: Session | None = None
    heartbeat_timeout_s: Seconds | None = None  # a venue silent this long: reconnect (15 s)


class VenueAddress(msgspec.Struct, frozen=True, kw_only=True):
    """`[venue]` resolved (`HftdConfig.venue_address`): what the clients connect to."""

    host: str
    order_port: int
    md_port: int
    session: str  # "" = any
    heartbeat_timeout_s: float


class FeedConfig(_Base, frozen=True, kw_only=True):
    """The feed handler daemon."""

    username: Alpha6 = "FEED"
    password: Alpha10 = "feed"
    reconnect_min_s: Seconds = 0.05
    reconnect_max_s: Seconds = 2.0


class GatewayConfig(_Base, frozen=True, kw_only=True):
    """The order gateway daemon."""

    username: Alpha6 = "HFTD"
    password: Alpha10 = "hftd-pass"
    order_timeout_s: Seconds = 2.0  # no acknowledgement in this time: cancel it
    strategy_timeout_s: Seconds = 1.0  # no strategy heartbeat: cancel its orders, hold new ones
    # a new trading day starts paused: new orders held until `hftctl resume` (a restart
    # within the day keeps the journaled mode)
    start_paused: bool = False
    journal_fsync: FsyncPolicy = "batch"  # the journal is the trading day's (system.journal_dir)
    journal_batch_s: Seconds = 0.05  # batch policy: fdatasync at most this often
    reconnect_min_s: Seconds = 0.05
    reconnect_max_s: Seconds = 2.0
    # On start, the journal's last this-many venue messages are re-read from the
    # venue and compared (docs/reconciliation.md); more than the day's re-reads it all.
    reconcile_overlap: Positive = 16


ALERT_RULES = (
    "daemon_down",
    "daemon_restarted",
    "memory",
    "latency",
    "feed_gaps",
    "ring_drops",
    "risk_utilisation",
    "pnl_stop",
    "breaker",
    "trading_mode",
    "link_down",
    "resync_loop",
    "listener_limits",
    "book_errors",
    "venue_unusable",
    "risk_view",
    "risk_rejects",
    "venue_silent",
    "md_backlog",
    "cpu_wait",
)
LatencyHop = Literal["t1_t2", "t2_t3", "t3_t4", "t4_t5", "t1_t4"]


class AlertRulesConfig(_Base, frozen=True, kw_only=True):
    """The monitor's alert rules and thresholds (applied live on reload)."""

    latency_hop: LatencyHop = "t1_t4"  # tick-to-trade by default
    latency_p99_us: Annotated[float, msgspec.Meta(gt=0.0)] = 5000.0  # over monitor.latency_window_s
    latency_min_samples: Positive = 5  # fewer orders in the window: no verdict
    max_gaps_per_min: NonNegative = 0  # feed sequence gaps in the last 60 s
    max_drops_per_min: NonNegative = 0  # md ring drops + orders refused (ring full), last 60 s
    risk_utilisation: Ratio = 0.8  # any risk limit used past this fraction
    pnl_stop_fraction: Ratio = 0.8  # loss past this fraction of risk.daily_loss_limit
    down_after_s: Seconds = 1.0  # a control socket silent this long: daemon down
    start_grace_s: Seconds = 30.0  # a daemon never seen up is "down" only after this
    restart_hold_s: Seconds = 60.0  # a restart stays an alert this long
    # a daemon's memory cgroup (its systemd unit's) past this fraction of its limit
    memory_near_limit: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.9
    link_down_after_s: Seconds = 2.0  # venue/md session or strategy heartbeat lost this long
    resync_loop_after: Positive = 1  # resyncs in a row that hit a gap again before the old one
    max_limit_hits_per_min: NonNegative = 0  # listener limits hit (refused, timed out...), 60 s
    max_book_errors_per_min: NonNegative = 0  # md updates the strategy's books rejected, 60 s
    max_unusable_per_min: NonNegative = 0  # sequenced venue messages the gateway could not use
    max_risk_rejects_per_min: NonNegative = 100  # orders risk refused, last 60 s
    # a venue session up but nothing from the venue this long (it heartbeats each second)
    venue_silent_after_s: Seconds = 3.0
    # market data unread in the feed's socket (bytes) more than this, for md_backlog_after_s:
    # the hot path is slower than the venue's flow (a healthy one leaves ~0 there)
    md_backlog_bytes: NonNegative = 16384
    md_backlog_after_s: Seconds = 2.0
    # a daemon's most-waiting thread runnable but waiting for a CPU more than this many ms
    # per second, on average over cpu_wait_window_s: starved of CPU (hftd/monitor/schedstat.py)
    cpu_wait_ms_per_s: Annotated[float, msgspec.Meta(gt=0.0, le=1000.0)] = 150.0
    cpu_wait_window_s: Annotated[float, msgspec.Meta(ge=1.0, le=300.0)] = 5.0
    # the machine's CPU pressure (/proc/pressure/cpu "some": the share of the same window
    # in which some runnable thread waited for a CPU) past this: short of CPU (1.0: off)
    cpu_pressure_max: Ratio = 0.6
    disabled: list[str] = msgspec.field(default_factory=list)  # rule names switched off

    def problems(self) -> Iterator[str]:
        for name in self.disabled:
            if name not in ALERT_RULES:
                yield f"disabled: unknown rule {name!r} (known: {', '.join(ALERT_RULES)})"


class MonitorConfig(_Base, frozen=True, kw_only=True):
    """The monitor daemon: polling, rolling window, web dashboard, /metrics, alerts."""

    poll_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=5.0)] = 0.5
    request_timeout_s: Seconds = 1.0  # one control-socket request
    window_s: Annotated[float, msgspec.Meta(ge=10.0, le=86400.0)] = 300.0  # charts, 1 point/s
    latency_window_s: Annotated[float, msgspec.Meta(ge=1.0)] = 60.0  # "recent" percentiles
    web_enabled: bool = True
    web_host: str = "127.0.0.1"  # loopback: the page can pause, halt and flatten
    web_port: Port = 8080
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0  # 0 = /metrics on web_port
    web_max_connections: Positive = 64  # open at once per web listener; more get 503
    web_timeout_s: Seconds = 5.0  # a request must arrive, and each response part be taken, in this
    alerts: AlertRulesConfig = msgspec.field(default_factory=AlertRulesConfig)

    def problems(self) -> Iterator[str]:
        if self.metrics_port and self.metrics_port == self.web_port:
            yield "metrics_port: must differ from web_port (0 = serve /metrics on web_port)"


class ControlConfig(_Base, frozen=True, kw_only=True):
    """Every control socket (each daemon's and the supervisor's): what one client may
    hold (docs/security.md "Every listener"). Read at start: changes need a restart."""

    # Open at once per socket: at the cap the connection idle longest is closed
    # to make room (a kept-open poller reconnects), or the new one is refused.
    max_connections: Positive = 16
    # A request (command) larger than this is answered with an error and the
    # connection closed; commands are a few bytes. Replies are not limited.
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1024, le=16 * 1024 * 1024)] = 65536
    request_timeout_s: Seconds = 5.0  # a request must arrive whole, and its reply be taken, in this
    idle_timeout_s: Annotated[float, msgspec.Meta(ge=1.0)] = 60.0  # silent between requests: closed
    log_interval_s: Seconds = 10.0  # rejected input: a few lines, then one per interval (+ count)


# The card's components, a daemon each (hft@<name>); the one list of their names.
DAEMONS = ("exchange", "feed", "strategy", "gateway", "monitor")
HOTPATH = "hotpath"  # the process that composes the hot parts (layout "composite")
COMPONENTS = (*DAEMONS, "probe", HOTPATH)  # every daemon `hftd` runs ("probe": tests)
# The hot-path components, in the order a composite hot loop runs them: a market
# data message read by the feed reaches the strategy and its order the gateway
# in one pass (`hftd.runtime.composite`).
HOT_PARTS = ("feed", "strategy", "gateway")


class DaemonConfig(_Base, frozen=True, kw_only=True):
    """How one daemon is run (embedded supervisor; systemd units mirror it)."""

    enabled: bool = True
    cpus: list[NonNegative] = msgspec.field(default_factory=list)  # CPU affinity; [] = inherit
    after: list[str] = msgspec.field(default_factory=list)  # started once these are READY
    watchdog_s: Seconds = 2.0  # restarted when silent this long (WATCHDOG=1 every half)
    # Scheduling niceness (systemd: Nice=). Off-path daemons (the monitor) run
    # nicer so that, on a box with fewer cores than daemons, the hot path wins.
    nice: Annotated[int, msgspec.Meta(ge=-20, le=19)] = 0
    # Scheduling policy (systemd: CPUSchedulingPolicy=). "idle" runs only on CPU
    # time no other task wants, and any waking task preempts it at once: what
    # the monitor needs to add no latency to the trading daemons.
    cpu_policy: Literal["other", "batch", "idle"] = "other"


class SupervisorConfig(_Base, frozen=True, kw_only=True):
    """The embedded supervisor behind `hftd up`."""

    restart_delay_s: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.05
    start_timeout_s: Seconds = 30.0  # no READY=1 in this time: killed and restarted
    stop_timeout_s: Seconds = 5.0  # SIGTERM, then SIGKILL after this
    flap_window_s: Seconds = 30.0
    flap_max_restarts: Positive = 10  # more restarts than this in the window: backoff
    # A daemon that keeps failing (or refuses to run: exit 2) is retried after
    # backoff_min_s, doubling up to backoff_max_s; never abandoned while the
    # system runs. Once it ran for flap_window_s, restarts are immediate again.
    backoff_min_s: Seconds = 1.0
    backoff_max_s: Seconds = 30.0


class SystemConfig(_Base, frozen=True, kw_only=True):
    """Settings shared by every daemon."""

    name: str = "hftd"
    run_dir: str = ""  # "" = $HFTD_RUN_DIR, else $XDG_RUNTIME_DIR/hftd, else /tmp/hftd-<uid>
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The trading days' journals (books and records: durable, never the run dir's
    # tmpfs). "" = $HFTD_JOURNAL_DIR, else $XDG_STATE_HOME/hftd/journal, else
    # ~/.local/state/hftd/journal.
    journal_dir: str = ""
    # Local HH:MM at which a trading date begins: `hftd up` past it opens a new
    # day. "" = never by itself (`hftd up --new-day`, `hftd day new`).
    trading_day_starts: str = "00:00"

    def problems(self) -> Iterator[str]:
        from hftd.runtime.days import parse_starts  # days imports config only for types

        try:
            parse_starts(self.trading_day_starts)
        except ValueError as exc:
            yield f"trading_day_starts: {exc}"

    def resolved_run_dir(self) -> Path:
        if self.run_dir:
            return Path(self.run_dir)
        env = os.environ.get("HFTD_RUN_DIR")
        if env:
            return Path(env)
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg:
            return Path(xdg) / "hftd"
        return Path(f"/tmp/hftd-{os.getuid()}")

    def resolved_journal_dir(self) -> Path:
        """Where the trading days are kept (see `journal_dir`)."""
        if self.journal_dir:
            return Path(self.journal_dir).expanduser()
        env = os.environ.get("HFTD_JOURNAL_DIR")
        if env:
            return Path(env)
        xdg = os.environ.get("XDG_STATE_HOME")
        if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is ignored
            return Path(xdg) / "hftd" / "journal"
        return Path.home() / ".local" / "state" / "hftd" / "journal"


Fee = Annotated[str, msgspec.Meta(pattern=r"^-?[0-9]+(\.[0-9]{1,6})?$")]


class FeesConfig(_Base, frozen=True, kw_only=True):
    """A venue's charges per share traded, in dollars (negative: a rebate). Maker:
    our resting order was hit (liquidity "A"); taker: we took (anything else)."""

    maker_per_share: Fee = "0"
    taker_per_share: Fee = "0"

    def per_share_nano(self, liquidity: str) -> int:
        """The charge of one share in 1e-9 dollars (exact decimal arithmetic)."""
        text = self.maker_per_share if liquidity == "A" else self.taker_per_share
        return int(Decimal(text) * 1_000_000_000)


class BacktestConfig(_Base, frozen=True, kw_only=True):
    """`hftd backtest`: recorded market data through the live strategy, risk and
    position code, in one process on the data's clock (docs/backtesting.md)."""

    # recorded files (ITCH 5.0 BinaryFILE plain or gzip, LOBSTER zip or message CSV),
    # relative to the config file; `--data` on the command line replaces them
    data: list[str] = msgspec.field(default_factory=list)
    out_dir: str = "backtest-out"  # relative to the working directory
    # delays on the way: the venue's md to our books, our order to the venue, the
    # venue's reply to the gateway (constant or a seeded distribution, microseconds)
    feed_latency: LatencyConfig = msgspec.field(default_factory=LatencyConfig)
    entry_latency: LatencyConfig = msgspec.field(default_factory=LatencyConfig)
    response_latency: LatencyConfig = msgspec.field(default_factory=LatencyConfig)
    # the live system's measured hops instead of entry/response_latency: a file from
    # `hftctl latency --save` (relative to the config file); "" = the configured ones
    latency_histograms: str = ""
    latency_seed: int = 7  # the draws from them
    fees: FeesConfig = msgspec.field(default_factory=FeesConfig)
    timer_ms: Annotated[float, msgspec.Meta(gt=0.0, le=1000.0)] = 10.0  # the daemons' timers
    equity_interval_s: Seconds = 1.0  # the equity curve's step (sim time)
    log_level: Literal["debug", "info", "warning", "error"] = "warning"


class HftdConfig(_Base, frozen=True, kw_only=True):
    """The whole system's configuration (one file for every daemon)."""

    symbols: list[SymbolConfig]
    system: SystemConfig = msgspec.field(default_factory=SystemConfig)
    exchange: ExchangeConfig = msgspec.field(default_factory=ExchangeConfig)
    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    strategy: StrategyConfig = msgspec.field(default_factory=StrategyConfig)
    feed: FeedConfig = msgspec.field(default_factory=FeedConfig)
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    venue: VenueConfig = msgspec.field(default_factory=VenueConfig)
    rings: RingsConfig = msgspec.field(default_factory=RingsConfig)
    hotpath: HotpathConfig = msgspec.field(default_factory=HotpathConfig)
    monitor: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    risk: RiskLimits = msgspec.field(default_factory=RiskLimits)
    breaker: BreakerConfig = msgspec.field(default_factory=BreakerConfig)
    control: ControlConfig = msgspec.field(default_factory=ControlConfig)
    backtest: BacktestConfig = msgspec.field(default_factory=BacktestConfig)
    daemons: dict[str, DaemonConfig] = msgspec.field(
        default_factory=lambda: {"exchange": DaemonConfig()}
    )

    def problems(self) -> Iterator[str]:
        if not self.symbols:
            yield "symbols: at least one symbol is required"
        names = [s.symbol for s in self.symbols]
        for sym in sorted({n for n in names if names.count(n) > 1}):
            yield f"symbols: duplicate symbol {sym!r}"
        for name, d in self.daemons.items():
            if name not in COMPONENTS:
                yield f"daemons.{name}: unknown component (known: {', '.join(COMPONENTS)})"
            for dep in d.after:  # a disabled one is not waited for (`parse_config`)
                if dep not in self.daemons:
                    yield f"daemons.{name}.after: {dep!r} is not a configured daemon"
        try:
            self.start_order()
        except ValueError as exc:
            yield f"daemons: {exc}"
        else:
            try:
                self.process_order()
            except ValueError as exc:
                yield f"daemons: in the composite hot path ({', '.join(self.hot_parts())}): {exc}"
        for i, inst in enumerate(self.strategy.instances):
            for sym in inst.symbols:
                if sym not in names:
                    yield f"strategy.instances[{i}].symbols: {sym!r} is not a configured symbol"
        yield from self._venue_problems()

    def simulator_runs(self) -> bool:
        """Whether this system runs the exchange simulator (`daemons.exchange` enabled)."""
        d = self.daemons.get("exchange")
        return d is not None and d.enabled

    def venue_address(self) -> VenueAddress:
        """Where the feed and the gateway connect: `[venue]`, what it leaves out taken
        from the simulator's `[exchange]` while the simulator runs (`VenueConfig`)."""
        v, ex = self.venue, self.exchange
        sim = self.simulator_runs()
        host = v.host
        if host is None:
            host = _ANY_ADDRESS.get(ex.host, ex.host) if sim else ""
        return VenueAddress(
            host=host,
            order_port=v.order_port or (ex.order_port if sim else 0),
            md_port=v.md_port or (ex.md_port if sim else 0),
            session=v.session if v.session is not None else (ex.session if sim else ""),
            heartbeat_timeout_s=v.heartbeat_timeout_s or (ex.heartbeat_timeout_s if sim else 15.0),
        )

    def _venue_problems(self) -> Iterator[str]:
        v, ex = self.venue, self.exchange
        if self.simulator_runs():
            for name in ("order_port", "md_port", "session"):
                mine, sims = getattr(v, name), getattr(ex, name)
                if mine is not None and mine != sims and not (name == "session" and mine == ""):
                    yield (
                        f"venue.{name}: {mine!r}, but the simulator (daemons.exchange) serves "
                        f"{sims!r}: leave it out to use the simulator, or set "
                        "daemons.exchange.enabled = false to trade with another venue"
                    )
        else:
            for name in ("host", "order_port", "md_port"):
                if not getattr(v, name):
                    yield (
                        f"venue.{name}: required without the simulator (daemons.exchange is "
                        "disabled or not configured): where the feed and the gateway connect"
                    )
        if v.order_port is not None and v.order_port == v.md_port:
            yield "venue.md_port: must differ from order_port"

    def start_order(self) -> list[str]:
        """Enabled components, each after the ones it names in `after` (topological).
        `hotpath` is a process, not a component: see `process_order`."""
        deps = {n: [a for a in d.after if a in self.daemons] for n, d in self.daemons.items()}
        order = _topological(list(self.daemons), deps)
        return [n for n in order if self.daemons[n].enabled and n != HOTPATH]

    def hot_parts(self) -> list[str]:
        """The hot-path components one `hotpath` process runs: none in the split
        layout, or when fewer than two of them are enabled (nothing to compose)."""
        if self.hotpath.resolved_layout() != "composite":
            return []
        parts = [n for n in HOT_PARTS if n in self.daemons and self.daemons[n].enabled]
        return parts if len(parts) >= 2 else []

    def host_of(self, component: str) -> str:
        """The process that runs `component` (its own, or `hotpath`)."""
        return HOTPATH if component in self.hot_parts() else component

    def composed_parts(self) -> list[str]:
        """What a `hotpath` process runs: the composite layout's parts, or (run by hand
        in the split layout) every enabled hot-path component."""
        return self.hot_parts() or [
            n for n in HOT_PARTS if n in self.daemons and self.daemons[n].enabled
        ]

    def process_config(self, name: str) -> DaemonConfig:
        """How process `name` is run. The `hotpath` process: `daemons.hotpath` if
        configured, else its parts' settings merged (CPUs joined, the longest
        watchdog, the lowest niceness); it starts after what its parts wait for."""
        parts = self.composed_parts() if name == HOTPATH else []
        if not parts:
            return self.daemons.get(name, DaemonConfig())
        ds = [self.daemons[p] for p in parts]
        after = [a for d in ds for a in d.after if a not in parts]
        mine = self.daemons.get(HOTPATH)
        if mine is not None:
            return msgspec.structs.replace(mine, after=list(dict.fromkeys([*after, *mine.after])))
        return DaemonConfig(
            cpus=sorted({c for d in ds for c in d.cpus}),
            after=list(dict.fromkeys(after)),
            watchdog_s=max(d.watchdog_s for d in ds),
            nice=min(d.nice for d in ds),
        )

    def process_order(self) -> list[str]:
        """The processes a supervisor starts, in order: the enabled components, the
        composed ones replaced by one `hotpath` (after what any of them waits for,
        before whatever waits for any of them)."""
        parts = self.hot_parts()
        comps = self.start_order()
        if not parts:
            return comps
        names = list(dict.fromkeys(self.host_of(n) for n in comps))
        deps = {
            n: [
                self.host_of(a)
                for a in self.process_config(n).after
                if a in self.daemons and self.host_of(a) != n and self.host_of(a) in names
            ]
            for n in names
        }
        return _topological(names, deps)

    def symbol(self, name: str) -> SymbolConfig:
        for s in self.symbols:
            if s.symbol == name:
                return s
        raise KeyError(name)

    def flow_for(self, name: str) -> FlowConfig:
        s = self.symbol(name)
        return s.flow if s.flow is not None else self.exchange.flow


def _topological(names: list[str], deps: dict[str, list[str]]) -> list[str]:
    """`names`, each after its `deps` (in `names` order otherwise); ValueError on a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError("dependency cycle: " + " -> ".join((*path, name)))
        state[name] = 1
        for dep in deps.get(name, ()):
            visit(dep, (*path, name))
        state[name] = 2
        order.append(name)

    for name in names:
        visit(name, ())
    return order


# --- validation ---------------------------------------------------------------


def _strip(tp: Any) -> Any:
    """Annotated[T, ...] -> T."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    """The config Struct inside `tp` (`T` or `T | None`), if any."""
    tp = _strip(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    args = [a for a in get_args(tp) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], msgspec.Struct):
        return args[0]
    return None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _check(value: Any, tp: Any, path: str, errors: list[str]) -> None:
    """Collect every problem in `value` against type `tp` into `errors`."""
    struct = _struct_of(tp)
    if struct is StrategyParams and isinstance(value, dict):
        _check_instance(value, path, errors)
        return
    if struct is not None and isinstance(value, dict):
        _check_struct(value, struct, path, errors)
        return
    bare = _strip(tp)
    if get_origin(bare) is dict and isinstance(value, dict):
        key_tp, item_tp = get_args(bare)
        if _struct_of(item_tp) is not None:
            for key, item in value.items():
                _check(key, key_tp, _join(path, str(key)), errors)
                _check(item, item_tp, _join(path, str(key)), errors)
            return
    if get_origin(bare) is list and isinstance(value, list):
        (item_tp,) = get_args(bare)
        if _struct_of(item_tp) is not None:
            for i, item in enumerate(value):
                _check(item, item_tp, _join(path, i), errors)
            return
    try:
        msgspec.convert(value, tp)
    except msgspec.ValidationError as exc:
        text, _, where = str(exc).partition(" - at `$")
        suffix = where.rstrip("`")
        errors.append(f"{(path + suffix) if suffix else (path or '<root>')}: {text}")


_NEW_DAY = "start a new day with `hftd up --new-day` or `hftd day new`"
# Fields that were removed: a config that still sets one is told what replaced it.
REMOVED_FIELDS = {
    "exchange.journal": "removed: journals are kept per trading day in system.journal_dir",
    "gateway.journal": "removed: journals are kept per trading day in system.journal_dir",
    "exchange.fresh_start": f"removed: journals are kept per trading day; {_NEW_DAY}",
}


def _check_struct(
    data: dict[str, Any], cls: type[msgspec.Struct], path: str, errors: list[str]
) -> None:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    for key in data:
        if key not in fields:
            where = _join(path, key)
            errors.append(f"{where}: {REMOVED_FIELDS.get(where, 'unknown field')}")
    for name, field in fields.items():
        if name not in data:
            if field.required:
                errors.append(f"{_join(path, name)}: required field is missing")
            continue
        _check(data[name], hints[field.name], _join(path, name), errors)


def _check_instance(data: dict[str, Any], path: str, errors: list[str]) -> None:
    """A strategy instance, against its kind's config Struct (the tag, `kind`, says
    which: a built-in kind or an installed plug-in's). A field of another kind is
    named with the fields this kind has."""
    kind = data.get("kind")
    where = _join(path, "kind")
    if kind is None:
        errors.append(f"{where}: required field is missing")
        return
    if not isinstance(kind, str):
        errors.append(f"{where}: Expected `str`, got `{type(kind).__name__}`")
        return
    try:
        cls = config_class(kind)
    except PluginError as exc:
        errors.append(f"{where}: {exc}")
        return
    fields = {f.encode_name for f in msgspec.structs.fields(cls)}
    for key in data:
        if key == "kind" or key in fields:
            continue
        if key == "params":
            errors.append(
                f"{_join(path, key)}: removed: a kind's own parameters are fields of the "
                f"instance, beside the common ones (kind {kind!r} has: "
                f"{', '.join(_own_fields(cls))})"
            )
        else:
            errors.append(
                f"{_join(path, key)}: unknown field for kind {kind!r} (its own: "
                f"{', '.join(_own_fields(cls)) or 'none'}; common: "
                f"{', '.join(_own_fields(StrategyParams))})"
            )
    known = {k: v for k, v in data.items() if k in fields}
    _check_struct(known, cls, path, errors)


def _own_fields(cls: type[msgspec.Struct]) -> list[str]:
    """A strategy config Struct's fields: those of its kind (StrategyParams itself:
    the common ones)."""
    common = set() if cls is StrategyParams else set(StrategyParams.__struct_fields__)
    return [f.encode_name for f in msgspec.structs.fields(cls) if f.name not in common]


def convert_config(data: dict[str, Any]) -> HftdConfig:
    """A config document as HftdConfig, without validating it (`parse_config` does):
    for a config that was valid before (a recorded session's). The strategy
    instances decode as the union of the built-in kinds' config Structs and those of
    the plug-in kinds it names, tagged on `kind`."""
    strategy = data.get("strategy")
    insts = strategy.get("instances") if isinstance(strategy, dict) else None
    if not isinstance(strategy, dict) or not insts:
        return msgspec.convert(data, HftdConfig)
    plugins = {
        i["kind"]: config_class(i["kind"])
        for i in insts
        if isinstance(i, dict) and i.get("kind") not in BUILTIN_STRATEGIES
    }
    kinds = Union[(BuiltinConfig, *plugins.values())] if plugins else BuiltinConfig
    decoded: list[StrategyParams] = msgspec.convert(insts, list[kinds])  # type: ignore[valid-type]
    cfg = msgspec.convert({**data, "strategy": {**strategy, "instances": []}}, HftdConfig)
    return msgspec.structs.replace(
        cfg, strategy=msgspec.structs.replace(cfg.strategy, instances=decoded)
    )


def _semantic(obj: Any, path: str, errors: list[str]) -> None:
    """Run `problems()` on every config Struct in the tree."""
    if isinstance(obj, msgspec.Struct):
        try:
            problems = getattr(obj, "problems", None)
            if problems is not None:
                errors.extend(_join(path, problem) for problem in problems())
        except ValueError as exc:
            errors.append(f"{path or '<root>'}: {exc}")
        for f in msgspec.structs.fields(obj):
            _semantic(getattr(obj, f.name), _join(path, f.encode_name), errors)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            _semantic(item, _join(path, i), errors)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            _semantic(item, _join(path, str(key)), errors)


def _without_disabled_after(cfg: HftdConfig) -> HftdConfig:
    """A daemon does not wait for one that is disabled: it leaves its `after` (so
    `daemons.exchange.enabled = false` is all it takes to run without the simulator).
    Names of no configured daemon stay, for `problems` to report."""
    daemons = cfg.daemons
    off = {n for n, d in daemons.items() if not d.enabled}
    if not off or not any(set(d.after) & off for d in daemons.values()):
        return cfg
    kept = {
        n: msgspec.structs.replace(d, after=[a for a in d.after if a not in off])
        for n, d in daemons.items()
    }
    return msgspec.structs.replace(cfg, daemons=kept)


def parse_config(data: dict[str, Any], source: str = "<config>") -> HftdConfig:
    """Validate a decoded TOML document; raise ConfigError listing every problem."""
    errors: list[str] = []
    _check_struct(data, HftdConfig, "", errors)
    if errors:
        raise ConfigError(source, errors)
    cfg = _without_disabled_after(convert_config(data))
    _semantic(cfg, "", errors)
    if errors:
        raise ConfigError(source, errors)
    return cfg


def load_config(path: str | os.PathLike[str]) -> HftdConfig:
    """Read and validate a TOML config file. A relative `exchange.md_file` is taken
    relative to the file's directory (as `backtest.data`), so the config means the
    same from any working directory (systemd runs daemons in /)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [f"not valid TOML: {exc}"]) from exc
    cfg = parse_config(data, str(p))
    md_file = cfg.exchange.md_file
    if md_file and not Path(md_file).expanduser().is_absolute():
        where = str(p.absolute().parent / md_file)
        cfg = msgspec.structs.replace(
            cfg, exchange=msgspec.structs.replace(cfg.exchange, md_file=where)
        )
    return cfg


def config_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths of every leaf that differs between two configs."""
    if isinstance(old, msgspec.Struct) and type(old) is type(new):
        out: list[str] = []
        for f in msgspec.structs.fields(old):
            out += config_diff(
                getattr(old, f.name), getattr(new, f.name), _join(path, f.encode_name)
            )
        return out
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old or key not in new:
                out.append(_join(path, str(key)))
            else:
                out += config_diff(old[key], new[key], _join(path, str(key)))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += config_diff(a, b, _join(path, i))
        return out
    return [] if old == new else [path or "<root>"]


# Config sections one daemon alone reads. A change there is that daemon's to apply
# or refuse; the others do not read it, so they neither apply nor refuse it: they
# report it as ignored (a reload of risk limits is not "refused" by the feed).
# What of [exchange] the feed and the gateway read too: where the venue is, when
# [venue] leaves it to the simulator (`HftdConfig.venue_address`).
_EXCHANGE_SHARED = ("host", "order_port", "md_port", "session", "heartbeat_timeout_s")

PRIVATE_SECTIONS: dict[str, tuple[str, ...]] = {
    # the simulator's flow, latency injection, users...: its own (a reload that
    # changes the flow is not refused by the feed, strategy and gateway)
    "exchange": tuple(
        f"exchange.{f}" for f in ExchangeConfig.__struct_fields__ if f not in _EXCHANGE_SHARED
    ),
    "strategy": ("strategy",),
    "gateway": ("gateway", "risk", "breaker"),
    "feed": ("feed",),
    "monitor": ("monitor",),
    "backtest": ("backtest",),  # no daemon reads it: every daemon ignores a change
}


def others_sections(mine: set[str]) -> tuple[str, ...]:
    """The private sections of every daemon not in `mine` (a process's components)."""
    return tuple(p for d, ps in PRIVATE_SECTIONS.items() if d not in mine for p in ps)


def within(path: str, prefixes: tuple[str, ...]) -> bool:
    """Is the config path `path` (as `config_diff` names it: `a.b`, `a.list[2].c`) one
    of `prefixes` or below one? A list item is below its list: `strategy.instances[0]
    .order_qty` is below `strategy.instances`."""
    return any(path == x or path.startswith((x + ".", x + "[")) for x in prefixes)


RING_EDGES = ("md", "risk_md", "orders", "executions")


def ring_name(cfg: HftdConfig, edge: str) -> str:
    """The shared-memory ring of one hot-path edge: /dev/shm/<prefix>-<edge>."""
    return f"{cfg.rings.prefix}-{edge}"
