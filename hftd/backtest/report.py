"""A backtest's results for a person: the summary, CSV files and an HTML report.

Everything is computed from the run's own results (`Backtest.results`,
hftd.backtest.results: running figures, the rows streamed or kept) and each
strategy's position book, and written without a wall-clock time or anything
else that changes between runs: two runs of the same data and config write
byte-identical files.

Figures (docs/backtesting.md says how to read them):
- P&L: realized + unrealized at the last mid, before fees; net = after fees.
- Fill ratio: shares filled / shares of the strategy's new orders.
- Max drawdown: the largest fall of net P&L from a running peak, over the
  equity curve (one sample per `equity_interval_s`, and one at the end).
- Sharpe: mean / standard deviation of the net P&L's changes over one-minute
  steps of the curve, times sqrt(252 * 390) (one-minute steps of a 6.5-hour
  day, annualized); 0 when fewer than two steps or no variation.
- Inventory: the position at the end, the largest absolute position seen in
  fills, and the mean absolute position over the curve's samples.
"""

from __future__ import annotations

import html
import itertools
import json
import math
from pathlib import Path

import msgspec

from hftd.backtest.results import NANO, Sample, clock_text, net
from hftd.backtest.runner import Backtest
from hftd.msg.hot import PRICE_SCALE

SHARPE_SCALE = math.sqrt(252 * 390)


class SymbolSummary(msgspec.Struct, frozen=True):
    strategy: str
    symbol: str
    orders: int  # new orders sent
    fills: int
    shares: int  # traded
    notional: float  # dollars traded
    fill_ratio: float
    realized: float
    unrealized: float
    pnl: float  # before fees
    fees: float
    net: float
    position: int  # at the end
    max_abs_position: int


class StrategySummary(msgspec.Struct, frozen=True):
    strategy: str
    orders: int
    fills: int
    rejects: int
    held: int
    net: float
    max_drawdown: float
    sharpe: float
    mean_abs_position: float
    symbols: list[SymbolSummary]


class Summary(msgspec.Struct, frozen=True):
    data: list[str]
    events: int
    first: str  # the data's first and last event time
    last: str
    strategies: list[StrategySummary]


def sharpe_of(points: list[float]) -> float:
    """Annualized Sharpe of the changes between `points` (one a minute, module doc)."""
    diffs = [b - a for a, b in itertools.pairwise(points)]
    if len(diffs) < 2:
        return 0.0
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return 0.0 if var <= 0 else round(mean / math.sqrt(var) * SHARPE_SCALE, 4)


def summarize(bt: Backtest, data: list[str]) -> Summary:
    res = bt.results
    counts = bt.strategy_counts()
    out: list[StrategySummary] = []
    for s in bt.engine.contexts:
        name = s.name
        figs = {sym: f for (st, sym), f in res.symbols.items() if st == name}
        rows: list[SymbolSummary] = []
        for sym in sorted({*s.params.symbols, *s.om.book.symbols()}):
            f = figs.get(sym)
            pos = s.om.book.position(sym)
            fees = f.fees_nano / NANO if f else 0.0
            mark = s.om.book.mark(sym)
            unreal = pos.unrealized(mark) if mark is not None else 0
            gross = (pos.realized + unreal) / PRICE_SCALE
            rows.append(
                SymbolSummary(
                    strategy=name,
                    symbol=sym,
                    orders=f.orders if f else 0,
                    fills=f.fills if f else 0,
                    shares=f.shares if f else 0,
                    notional=round(f.notional / PRICE_SCALE, 2) if f else 0.0,
                    fill_ratio=round(f.shares / f.ordered, 4) if f and f.ordered else 0.0,
                    realized=round(pos.realized / PRICE_SCALE, 2),
                    unrealized=round(unreal / PRICE_SCALE, 2),
                    pnl=round(gross, 2),
                    fees=round(fees, 4),
                    net=round(gross - fees, 2),
                    position=pos.qty,
                    max_abs_position=f.peak if f else 0,
                )
            )
        curve = res.curves[name]
        c = counts[name]
        out.append(
            StrategySummary(
                strategy=name,
                orders=sum(f.orders for f in figs.values()),
                fills=sum(f.fills for f in figs.values()),
                rejects=bt.rejects[name],
                held=c.get("held", 0),
                net=round(sum(r.net for r in rows), 2),
                max_drawdown=round(curve.worst, 2),
                sharpe=sharpe_of(curve.sharpe_points()),
                mean_abs_position=(
                    round(curve.abs_position / curve.samples, 2) if curve.samples else 0.0
                ),
                symbols=rows,
            )
        )
    first = bt.first_ts if bt.first_ts >= 0 else 0
    return Summary(
        data=data,
        events=bt.events,
        first=clock_text(first),
        last=clock_text(bt.now),
        strategies=out,
    )


def summary_text(s: Summary) -> str:
    lines = [
        f"backtest: {s.events} market-data events, {s.first} .. {s.last}",
        *(f"  data: {d}" for d in s.data),
        "",
        f"{'strategy':<12} {'symbol':<6} {'orders':>7} {'fills':>6} {'shares':>8} "
        f"{'fill%':>6} {'P&L $':>11} {'fees $':>9} {'net $':>11} {'pos':>6} {'max|pos|':>8}",
    ]
    for st in s.strategies:
        for r in st.symbols:
            lines.append(
                f"{r.strategy:<12} {r.symbol:<6} {r.orders:>7} {r.fills:>6} {r.shares:>8} "
                f"{r.fill_ratio * 100:>6.1f} {r.pnl:>11,.2f} {r.fees:>9,.2f} {r.net:>11,.2f} "
                f"{r.position:>6} {r.max_abs_position:>8}"
            )
    lines.append("")
    lines.append(
        f"{'strategy':<12} {'net $':>11} {'max DD $':>10} {'Sharpe':>8} {'mean|pos|':>9} "
        f"{'rejects':>7} {'held':>6}"
    )
    for st in s.strategies:
        lines.append(
            f"{st.strategy:<12} {st.net:>11,.2f} {st.max_drawdown:>10,.2f} {st.sharpe:>8.2f} "
            f"{st.mean_abs_position:>9.1f} {st.rejects:>7} {st.held:>6}"
        )
    return "\n".join(lines) + "\n"


def write_results(bt: Backtest, s: Summary, out: Path) -> list[Path]:
    """summary.txt, summary.json, fills.csv, orders.csv, equity.csv and report.html
    in `out` (created); the paths written. Results streamed as the run went
    (`Results.out`) are completed there (it must be `out`); kept ones are written."""
    res = bt.results
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "summary.txt": summary_text(s),
        "summary.json": json.dumps(msgspec.to_builtins(s), indent=2, sort_keys=True) + "\n",
    }
    written = []
    if res.streamed:
        if res.out is None or res.out.resolve() != out.resolve():
            raise ValueError(f"the results were written to {res.out}, not {out}")
        written += res.close()
    else:
        files.update(res.kept_csv())
    files["report.html"] = report_html(bt, s)
    for name, text in files.items():
        p = out / name
        p.write_text(text, encoding="utf-8")
        written.append(p)
    return sorted(written)


# --- the HTML report: inline SVG, no script, no network ------------------------------

W, H, PAD = 900, 220, 40
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def _thin(points: list[tuple[int, float]], most: int = 1500) -> list[tuple[int, float]]:
    if len(points) <= most:
        return points
    step = len(points) / most
    return [points[int(i * step)] for i in range(most)] + [points[-1]]


def _chart(
    title: str,
    series: list[tuple[str, list[tuple[int, float]]]],
    marks: list[tuple[int, float, str]] | None = None,
    extent: list[tuple[int, float]] | None = None,
) -> str:
    """One line chart as SVG; `marks` are (t, y, side) triangles (our trades);
    `extent`, more points the axes must cover (marks not drawn)."""
    pts = [p for _n, s in series for p in s] + [(t, y) for t, y, _s in marks or []]
    pts += extent or []
    if not pts:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    t0, t1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if t1 == t0:
        t1 = t0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1

    def xy(t: int, y: float) -> str:
        x = PAD + (t - t0) / (t1 - t0) * (W - 2 * PAD)
        yy = H - PAD / 2 - (y - y0) / (y1 - y0) * (H - PAD)
        return f"{x:.1f},{yy:.1f}"

    parts = [
        f'<h3>{html.escape(title)}</h3><svg width="{W}" height="{H}" '
        f'xmlns="http://www.w3.org/2000/svg" style="background:#fafafa">',
        f'<text x="2" y="12" font-size="10">{y1:,.2f}</text>',
        f'<text x="2" y="{H - 4}" font-size="10">{y0:,.2f}</text>',
        f'<text x="{PAD}" y="{H - 4}" font-size="10">{clock_text(t0)[:12]}</text>',
        f'<text x="{W - PAD - 70}" y="{H - 4}" font-size="10">{clock_text(t1)[:12]}</text>',
    ]
    for i, (name, s) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        line = " ".join(xy(t, y) for t, y in _thin(s))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{line}"/>')
        parts.append(
            f'<text x="{W - 120}" y="{14 + 12 * i}" font-size="11" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    for t, y, side in marks or []:
        x, yy = (float(c) for c in xy(t, y).split(","))
        color = "#2ca02c" if side == "B" else "#d62728"
        tri = (
            f"{x:.1f},{yy - 5:.1f} {x - 4:.1f},{yy + 3:.1f} {x + 4:.1f},{yy + 3:.1f}"
            if side == "B"
            else f"{x:.1f},{yy + 5:.1f} {x - 4:.1f},{yy - 3:.1f} {x + 4:.1f},{yy - 3:.1f}"
        )
        parts.append(f'<polygon points="{tri}" fill="{color}" opacity="0.7"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _net_curve(samples: list[Sample], name: str) -> list[tuple[int, float]]:
    return [(smp.t, net(smp, name)) for smp in samples]


def report_html(bt: Backtest, s: Summary) -> str:
    """A self-contained page: the summary, equity, positions, mid with our trades
    (the curves from the results' thinned samples, at most `CHART_POINTS` drawn)."""
    res = bt.results
    samples = res.chart_samples()
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hftd backtest</title>",
        "<style>body{font-family:sans-serif;margin:20px}pre{background:#f4f4f4;padding:8px}"
        "</style></head><body><h1>hftd backtest</h1>",
        f"<pre>{html.escape(summary_text(s))}</pre>",
        _chart("Net P&L per strategy ($)", [(n, _net_curve(samples, n)) for n in bt.names]),
    ]
    for sym in sorted(res.mid_symbols):
        series = [
            (
                n,
                [(smp.t, float(smp.position.get(n, {}).get(sym, 0))) for smp in samples],
            )
            for n in bt.names
        ]
        body.append(_chart(f"Position in {sym} (shares)", series))
        mid = [(smp.t, smp.mid[sym] / PRICE_SCALE) for smp in samples if smp.mid.get(sym)]
        marks = [(t, p / PRICE_SCALE, side) for t, p, side in res.marks.get(sym, [])]
        e = res.extent.get(sym)
        extent = [(e[0], e[2] / PRICE_SCALE), (e[1], e[3] / PRICE_SCALE)] if e else None
        body.append(
            _chart(f"{sym} mid with our fills (green buy, red sell)", [("mid", mid)], marks, extent)
        )
    body.append("</body></html>\n")
    return "\n".join(body)
