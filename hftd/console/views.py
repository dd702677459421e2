"""The console's screen: urwid widgets filled from a `SystemState`. No I/O.

Laid out for an 80x24 terminal (more rows give more recent trades, more
columns show more of each row):

    header      time, trading mode, breaker, venue, where the state comes from
    throughput  orders/s fills/s cancels/s rejects/s md/s
    latency | components     p50 p95 p99 p99.9 per hop | state, pid, restarts
    positions   symbol position avg market unrealized realized total, TOTAL row
    strategies  (under the positions, while any reports) per instance: signals orders
                fills rejects held, its position, its P&L
    risk | alerts            breaker; the most used position, book (gross, net,
                             exposure) and flow (orders/s, messages/s, working)
                             limits and the daily P&L, as used/limit and % | alerts
    trades      newest first, with tick-to-trade latency and, for a fill that
                reduced a position, its P&L per share closed
    footer      keys, and the last action's outcome

ASCII only, so it renders the same over any SSH session and locale.
Tests render `Dashboard.widget` to text with `render_text` and read it.
"""

from __future__ import annotations

import time

import urwid

from hftd.monitor.state import HOP_LABELS, HOPS, RiskBar, SystemState
from hftd.msg.status import format_fraction

PALETTE = [
    ("header", "black", "light gray"),
    ("title", "yellow,bold", ""),
    ("dim", "dark gray", ""),
    ("ok", "light green", ""),
    ("warn", "yellow", ""),
    ("crit", "white,bold", "dark red"),
    ("bad", "light red", ""),
    ("footer", "black", "light gray"),
    ("key", "dark blue,bold", "light gray"),
    ("dialog", "white", "dark blue"),
    ("bar_ok", "light green", ""),
    ("bar_warn", "yellow", ""),
    ("bar_crit", "light red", ""),
]
Markup = str | tuple[str, str] | list["Markup"]
KEYS_HELP: list[Markup] = [
    ("key", "P"),
    " pause ",
    ("key", "R"),
    " resume ",
    ("key", "F"),
    " flatten ",
    ("key", "H"),
    " halt ",
    ("key", "Q"),
    " quit ",
]


def fmt_us(v: float, count: int = 1) -> str:
    """Microseconds in at most 7 characters: "-" without samples; "12.3", "4,002";
    from 10 ms on, milliseconds ("55.4ms", "182ms"); from 10 s on, seconds ("12.5s")."""
    if count <= 0:
        return "-"
    if v < 100:
        return f"{v:.1f}"
    if v < 10_000:
        return f"{v:,.0f}"
    if v < 100_000:
        return f"{v / 1000:.1f}ms"
    if v < 10_000_000:
        return f"{v / 1000:.0f}ms"
    return f"{v / 1e6:.1f}s"


def fmt_us_unit(v: float) -> str:
    """`fmt_us` with its unit ("4,002 us", "182ms")."""
    text = fmt_us(v)
    return text if text.endswith("s") else f"{text} us"


def fmt_rate(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def fmt_money(v: float) -> str:
    return f"{v:,.2f}"


def fmt_uptime(s: float) -> str:
    s = int(s)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
        if s >= 3600
        else f"{s // 60:02d}:{s % 60:02d}"
    )


TRADES_TITLE: list[Markup] = [  # over the columns of `Dashboard._trades`
    ("title", f"{'RECENT TRADES':<43}"),
    ("dim", f"  {'tick-to-trade':>13}  {'P&L/share':>11}"),
]
RISK_WIDTH = 40  # the risk pane's columns (the alerts have the rest)
MAX_POSITION_LINES = 6  # more symbols than this: one "... N more" line (80x24 must fit)


def risk_line(b: RiskBar, width: int = RISK_WIDTH) -> list[Markup]:
    """ "position AAPL  400/1,000          40.0%": the label, used/limit, and the % in
    use coloured as the page's bars. A long figure (money) takes the label's padding,
    then the spaces around its slash, then the label's end: the figures show whole."""
    pct = format_fraction(b.fraction)
    attr = "bar_crit" if b.fraction >= 0.8 else "bar_warn" if b.fraction >= 0.5 else "bar_ok"
    room = width - len(pct) - 1  # for the label, the figure and the space between
    figure = b.figure
    if len(b.label) + len(figure) + 1 > room:  # money: "$380,000.00/$5,000,000.00"
        figure = figure.replace(" / ", "/")
    avail = max(0, room - len(figure) - 1)  # for the label
    label = b.label[:avail]
    head = f"{label:<{min(14, avail)}} {figure}" if figure else label
    return [f"{head:<{room}} ", (attr, pct)]


def _money_attr(v: float) -> str:
    return "bad" if v < 0 else "ok" if v > 0 else ""


class Dashboard:
    """The whole screen; `update(state)` refreshes every figure."""

    def __init__(self) -> None:
        self.header = urwid.Text("hftd", wrap="clip")
        self.throughput = urwid.Text("", wrap="clip")
        self.latency = urwid.Text("", wrap="clip")
        self.health = urwid.Text("", wrap="clip")
        self.positions = urwid.Text("", wrap="clip")
        self.risk = urwid.Text("", wrap="clip")
        self.alerts = urwid.Text("", wrap="space")  # alerts wrap: they matter more than trades
        self.trades_walker: urwid.SimpleListWalker[urwid.Text] = urwid.SimpleListWalker([])
        self.message = urwid.Text("", wrap="clip")
        body = urwid.Pile(
            [
                ("pack", self.throughput),
                ("pack", urwid.Columns([(47, self.latency), self.health], dividechars=1)),
                ("pack", self.positions),
                ("pack", urwid.Columns([(RISK_WIDTH, self.risk), self.alerts], dividechars=1)),
                ("pack", urwid.Text(TRADES_TITLE, wrap="clip")),
                ("weight", 1, urwid.ListBox(self.trades_walker)),
            ],
            # what does not fit is cut from the bottom (the trades), never the top:
            # throughput, latency, health and positions matter more
            focus_item=0,
        )
        footer = urwid.Columns([("pack", urwid.Text(KEYS_HELP, wrap="clip")), self.message])
        self.widget = urwid.Frame(
            body,
            header=urwid.AttrMap(self.header, "header"),
            footer=urwid.AttrMap(footer, "footer"),
        )
        self.update(None)

    def set_message(self, text: str) -> None:
        self.message.set_text(text)

    def update(self, s: SystemState | None, note: str = "") -> None:
        if s is None:
            self.header.set_text(" hftd  " + (note or "waiting for the first state..."))
            return
        clock = time.strftime("%H:%M:%S", time.localtime(s.time)) if s.time else "--:--:--"
        mode_attr = "ok" if s.mode == "active" else "crit" if s.mode == "halted" else "warn"
        self.header.set_text(
            [
                f" hftd  {clock}  mode ",
                (mode_attr, s.mode.upper()),
                "  breaker ",
                ("crit", "TRIPPED")
                if s.breaker_tripped
                else ("ok" if s.mode != "unknown" else "-"),  # no gateway: no word on it
                "  venue ",
                "up" if s.venue_up else ("crit", "DOWN"),
                f"  via {s.source}",
                f"  {note}" if note else "",
                *((("warn", f"\n next: {s.next_step}"),) if s.next_step else ()),
            ]
        )
        r, c = s.rates, s.counters
        self.throughput.set_text(
            [
                ("title", "orders/s "),
                f"{fmt_rate(r.orders):>6}  ",
                ("title", "fills/s "),
                f"{fmt_rate(r.fills):>6}  ",
                ("title", "cancels/s "),
                f"{fmt_rate(r.cancels):>5}  ",
                ("title", "rejects/s "),
                f"{fmt_rate(r.rejects):>5}  ",
                ("title", "md/s "),
                f"{fmt_rate(r.md):>6}",
                ("dim", f"   sent {c.orders} fills {c.fills}"),
            ]
        )
        self.latency.set_text(self._latency(s))
        self.health.set_text(self._health(s))
        # the strategies' lines under the positions, only while there are some: a
        # screen of 24 rows has none to spare (more alerts must not push out the top)
        self.positions.set_text(self._positions(s) + self._strategies(s))
        self.risk.set_text(self._risk(s))
        self.alerts.set_text(self._alerts(s))
        self.trades_walker[:] = [urwid.Text(t, wrap="clip") for t in self._trades(s)]

    @staticmethod
    def _latency(s: SystemState) -> list[Markup]:
        out: list[Markup] = [
            ("title", f"{'LATENCY us':<13}"),
            (
                "dim",
                f"{f'{s.latency_window_s:.0f}s n':>6}{'p50':>7}{'p95':>7}{'p99':>7}{'p99.9':>7}\n",
            ),
        ]
        for hop in HOPS:
            h = s.hop(hop)
            if h is None:
                continue
            n = h.count
            out.append(
                f"{HOP_LABELS[hop]:<13}{n:>6}{fmt_us(h.p50, n):>7}{fmt_us(h.p95, n):>7}"
                f"{fmt_us(h.p99, n):>7}{fmt_us(h.p999, n):>7}\n"
            )
        out[-1] = out[-1].rstrip("\n") if isinstance(out[-1], str) else out[-1]
        return out

    @staticmethod
    def _health(s: SystemState) -> list[Markup]:
        out: list[Markup] = [
            ("title", f"{'DAEMON':<9}"),
            ("dim", f"{'STATE':<10}{'PID':>7}{'RST':>4}  UP\n"),
        ]
        for i, d in enumerate(s.daemons):
            attr = "ok" if d.up else "warn" if d.state == "starting" else "bad"
            pid = str(d.pid) if d.pid else "-"
            up = fmt_uptime(d.uptime_s) if d.up else "-"
            end = "\n" if i < len(s.daemons) - 1 else ""
            out += [
                f"{d.name:<9}",
                (attr, f"{d.state[:10]:<10}"),
                f"{pid:>7}{d.restarts:>4}  {up}{end}",
            ]
        return out

    @staticmethod
    def _positions(s: SystemState) -> list[Markup]:
        out: list[Markup] = [
            ("title", f"{'SYMBOL':<7}"),
            (
                "dim",
                f"{'POS':>7} {'AVG PX':>10} "
                f"{'MARKET':>9} {'UNREAL':>11} {'REAL':>11} {'TOTAL':>11}",
            ),
        ]
        shown = s.positions[:MAX_POSITION_LINES]
        for p in shown:
            out += [
                "\n",
                f"{p.symbol:<7}{p.qty:>7} {p.avg_price:>10.4f} {p.mark:>9.4f} ",
                (_money_attr(p.unrealized), f"{fmt_money(p.unrealized):>11}"),
                " ",
                (_money_attr(p.realized), f"{fmt_money(p.realized):>11}"),
                " ",
                (_money_attr(p.total), f"{fmt_money(p.total):>11}"),
            ]
        if len(s.positions) > len(shown):  # the rest: the page, hftctl status
            more = len(s.positions) - len(shown)
            out += ["\n", ("dim", f"... {more} more symbols: hftctl status, the web page")]
        t = s.totals
        if t is not None:
            out += [
                "\n",
                ("title", f"{'TOTAL':<7}"),
                f"{'':>7} {'':>10} {'':>9} ",  # no share total: symbols do not add up
                (_money_attr(t.unrealized), f"{fmt_money(t.unrealized):>11}"),
                " ",
                (_money_attr(t.realized), f"{fmt_money(t.realized):>11}"),
                " ",
                (_money_attr(t.total), f"{fmt_money(t.total):>11}"),
            ]
        else:
            out.append(("dim", "\n(no positions: gateway not answering)"))
        return out

    @staticmethod
    def _strategies(s: SystemState) -> list[Markup]:
        """A line per strategy instance: its own counts, position and P&L."""
        if not s.strategies:
            return []
        out: list[Markup] = [
            "\n",
            ("title", f"{'STRATEGY':<9}"),
            ("dim", f"{'SIG':>5} {'ORD':>5} {'FILL':>5} {'REJ':>4} {'HELD':>4}  POSITION"),
            ("dim", "  P&L"),
        ]
        for r in s.strategies:
            pos = " ".join(f"{sym} {q:+d}" for sym, q in sorted(r.positions.items())) or "flat"
            out += [
                "\n",
                f"{r.name[:8]:<9}{r.signals:>5} {r.orders:>5} {r.fills:>5} {r.rejects:>4} "
                f"{r.held:>4}  {pos}  ",
                (_money_attr(r.pnl), fmt_money(r.pnl)),
            ]
        return out

    @staticmethod
    def _risk(s: SystemState) -> list[Markup]:
        """The breaker, then the most used limit of each kind: a symbol's position, the
        account's book (gross, net, exposure), its flow (orders/s, messages/s, working
        orders), and the daily P&L against the loss limit; each as used/limit and %."""
        out: list[Markup] = [("title", "RISK"), f"{'':<11}breaker "]
        if s.breaker_tripped:
            out.append(("crit", f"TRIPPED {s.breaker_reason}"))
        elif s.mode == "unknown":
            out.append("-")  # no gateway answering: nobody says it is armed
        else:
            out.append(("ok", "armed"))
        bars = {b.key: b for b in s.risk}
        for family in (
            [b for b in s.risk if b.key.startswith("position.")],
            [bars[k] for k in ("gross", "net", "exposure") if k in bars],
            [bars[k] for k in ("rate", "messages", "working") if k in bars],
            [bars[k] for k in ("loss",) if k in bars],
        ):
            if family:
                out += ["\n", *risk_line(max(family, key=lambda b: b.fraction))]
        return out

    @staticmethod
    def _alerts(s: SystemState) -> list[Markup]:
        out: list[Markup] = [("title", f"ALERTS ({len(s.alerts)})")]
        if not s.alerts:
            out.append(("dim", "\nnone"))
        for a in s.alerts:
            attr = "crit" if a.severity == "critical" else "warn"
            when = time.strftime("%H:%M:%S", time.localtime(a.raised_at))
            out += [
                "\n",
                ("dim", when + " "),
                (attr, "CRIT" if attr == "crit" else "WARN"),
                f" {a.message}",
            ]
        return out

    @staticmethod
    def _trades(s: SystemState) -> list[Markup]:
        if not s.trades:
            return [("dim", "no fills yet")]
        rows: list[Markup] = []
        for t in s.trades:
            ms = int(t.time * 1000) % 1000
            when = time.strftime("%H:%M:%S", time.localtime(t.time)) + f".{ms:03d}"
            # an order no market data triggered (the gateway's flatten) has no tick
            t2t = fmt_us_unit(t.tick_to_trade_us) if t.tick_to_trade_us > 0 else "no tick"
            pps = t.pnl_per_share
            rows.append(
                [
                    f"{when}  {t.symbol:<6} {t.side}  {t.qty:>6} @ {t.price:>10.2f}  {t2t:>13}  ",
                    # what a fill that reduced a position made per share closed; "-" opened
                    ("dim", f"{'-':>11}") if pps is None else (_money_attr(pps), f"{pps:>+11,.4f}"),
                ]
            )
        return rows


def confirm_dialog(top: urwid.Widget, verb: str, help_text: str) -> urwid.Widget:
    """ "Are you sure?" over the dashboard: Y confirms, any other key cancels."""
    text = urwid.Text(
        [
            ("title", f" {verb.upper()} \n\n"),
            f"{help_text}.\n\n",
            "Press ",
            ("title", "Y"),
            " to confirm, any other key to cancel.",
        ]
    )
    box = urwid.LineBox(urwid.Padding(text, left=1, right=1), title="confirm")
    return urwid.Overlay(
        urwid.AttrMap(box, "dialog"),
        top,
        align="center",
        width=("relative", 60),
        valign="middle",
        height="pack",
        min_width=40,
    )


def render_text(widget: urwid.Widget, cols: int = 80, rows: int = 24) -> list[str]:
    """The screen as lines of text (what a terminal of that size would show)."""
    canvas = widget.render((cols, rows))
    return [line.decode("utf-8", "replace") for line in canvas.text]
