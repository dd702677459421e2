"""A backtest's results as the run makes them: written as they come, summed as they go.

A day of our orders can run to millions of rows, so nothing grows with the run:
- orders and fills are written to `orders.csv` and `fills.csv` row by row, the
  equity curve to `equity.csv` (one row per `equity_interval_s` of data time),
  each under a `.part` name until `close` (a run that fails leaves no file that
  looks finished);
- the figures the summary needs are running sums per strategy and symbol (new
  orders and their shares, fills, shares, notional, fees, the largest position)
  and per strategy (the net P&L's running peak and worst drawdown, one point a
  minute for the Sharpe ratio, the sum of absolute positions for their mean);
- the report's charts get a bounded, deterministic thinning of the equity
  samples (every 2**k-th, at most `2 * CHART_POINTS`, and the last) and each
  symbol's first `MARKS` fills (what the chart marks) with the extent of all.

`keep=True` also keeps every row (`fills`, `orders`, `samples`: programs and
tests read them); `out=None` writes nothing until `hftd.backtest.report`
writes the files from those rows. Both give the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec

from hftd.msg.hot import PRICE_SCALE

NANO: Final = 1_000_000_000  # fees are in 1e-9 dollars
CHART_POINTS: Final = 1500  # points per chart line (report.html)
MARKS: Final = 3000  # fills marked on a symbol's chart
SHARPE_STEP_NS: Final = 60 * NANO
FILL_HEADER: Final = [
    "time", "strategy", "cl_id", "symbol", "side", "qty", "price", "liquidity", "fee",
]  # fmt: skip
ORDER_HEADER: Final = [
    "time", "strategy", "cl_id", "action", "symbol", "side", "qty", "price", "tif",
    "orig_cl_id",
]  # fmt: skip


class Fill(msgspec.Struct, frozen=True, array_like=True):
    """One of our fills, as the strategy was told of it."""

    t: int  # ns since midnight, when the report reached the strategy
    strategy: str
    cl_id: int
    symbol: str
    side: str
    qty: int
    price: int
    liquidity: str  # "A": our resting order was hit; else we took
    fee_nano: int  # the fee in 1e-9 dollars (negative: a rebate)


class OrderRecord(msgspec.Struct, frozen=True, array_like=True):
    """One instruction a strategy sent."""

    t: int
    strategy: str
    cl_id: int
    action: str  # new | cancel | replace
    symbol: str
    side: str
    qty: int
    price: int
    tif: str
    orig_cl_id: int


class Sample(msgspec.Struct, frozen=True, array_like=True):
    """The state at one step of the equity curve (money in 1e-4 dollars)."""

    t: int
    pnl: dict[str, int]  # strategy -> realized + unrealized, before fees
    fees_nano: dict[str, int]  # strategy -> fees so far
    position: dict[str, dict[str, int]]  # strategy -> symbol -> shares
    mid: dict[str, int]  # symbol -> mid (0: one side empty)


def clock_text(ns: int) -> str:
    """Nanoseconds since midnight as HH:MM:SS.nnnnnnnnn."""
    s, frac = divmod(ns, NANO)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:09d}"


def px(p: int) -> str:
    return f"{p / PRICE_SCALE:.4f}"


def net(smp: Sample, name: str) -> float:
    """A strategy's net P&L in dollars at a sample (after fees)."""
    return smp.pnl.get(name, 0) / PRICE_SCALE - smp.fees_nano.get(name, 0) / NANO


def fill_row(f: Fill) -> list[Any]:
    return [
        clock_text(f.t),
        f.strategy,
        f.cl_id,
        f.symbol,
        f.side,
        f.qty,
        px(f.price),
        f.liquidity,
        f"{f.fee_nano / NANO:.6f}",
    ]


def order_row(o: OrderRecord) -> list[Any]:
    return [
        clock_text(o.t),
        o.strategy,
        o.cl_id,
        o.action,
        o.symbol,
        o.side,
        o.qty,
        px(o.price) if o.price else "",
        o.tif,
        o.orig_cl_id or "",
    ]


def equity_header(names: list[str]) -> list[str]:
    return ["time", *(f"{n}_net" for n in names)]


def equity_row(smp: Sample, names: list[str]) -> list[str]:
    return [clock_text(smp.t)] + [f"{net(smp, n):.2f}" for n in names]


def csv_text(rows: list[list[Any]], header: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


class SymbolFigures:
    """One strategy's running figures in one symbol."""

    __slots__ = ("fees_nano", "fills", "notional", "ordered", "orders", "peak", "run", "shares")

    def __init__(self) -> None:
        self.orders = 0  # new orders
        self.ordered = 0  # their shares
        self.fills = 0
        self.shares = 0  # traded
        self.notional = 0  # sum of qty * price (1e-4 dollars)
        self.fees_nano = 0
        self.run = 0  # the position its fills add up to
        self.peak = 0  # the largest |run|


class CurveFigures:
    """One strategy's running figures over the equity curve (net P&L, dollars)."""

    __slots__ = ("abs_position", "last", "next_t", "peak", "points", "samples", "t0", "worst")

    def __init__(self) -> None:
        self.peak = -math.inf
        self.worst = 0.0  # the largest fall from a running peak
        self.t0 = -1  # the first sample's time
        self.next_t = 0  # the next Sharpe point at or after this
        self.points: list[float] = []  # one a minute (Sharpe)
        self.last = 0.0
        self.abs_position = 0  # summed over the samples
        self.samples = 0

    def add(self, t: int, x: float, abs_position: int) -> None:
        self.peak = max(self.peak, x)
        self.worst = max(self.worst, self.peak - x)
        if self.t0 < 0:
            self.t0 = self.next_t = t
        if t >= self.next_t:
            self.points.append(x)
            self.next_t = t - (t - self.t0) % SHARPE_STEP_NS + SHARPE_STEP_NS
        self.last = x
        self.abs_position += abs_position
        self.samples += 1

    def sharpe_points(self) -> list[float]:
        """The curve at one-minute steps, and its last value."""
        if not self.samples:
            return []
        if self.points[-1] != self.last:
            return [*self.points, self.last]
        return self.points


class Results:
    """Everything a run reports, as it runs (module docstring)."""

    def __init__(self, names: list[str], out: Path | None = None, keep: bool = True) -> None:
        self.names = names
        self.out = out
        self.keep = keep
        self.fills: list[Fill] = []  # every row, when `keep`
        self.orders: list[OrderRecord] = []
        self.samples: list[Sample] = []
        self.fill_count = 0
        self.order_count = 0
        self.sample_count = 0
        self.symbols: dict[tuple[str, str], SymbolFigures] = {}  # (strategy, symbol)
        self.curves = {n: CurveFigures() for n in names}
        # the charts' samples: every `stride`-th, thinned by half when full
        self.chart: list[Sample] = []
        self.stride = 1
        self.last: Sample | None = None
        self.mid_symbols: set[str] = set()  # symbols with a mid in any sample
        self.marks: dict[str, list[tuple[int, int, str]]] = {}  # symbol -> first fills
        self.extent: dict[str, list[int]] = {}  # symbol -> [t min, t max, price min, max]
        self._files: list[tuple[TextIO, Path]] = []
        self._fill_w: Any = None
        self._order_w: Any = None
        self._equity_w: Any = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            self._fill_w = self._open("fills.csv", FILL_HEADER)
            self._order_w = self._open("orders.csv", ORDER_HEADER)
            self._equity_w = self._open("equity.csv", equity_header(names))

    def _open(self, name: str, header: list[str]) -> Any:
        assert self.out is not None
        final = self.out / name
        f = (self.out / (name + ".part")).open("w", encoding="utf-8", newline="")
        self._files.append((f, final))
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        return w

    @property
    def streamed(self) -> bool:
        """The CSV files are written as the run goes (to `out`)."""
        return self.out is not None

    def _figures(self, strategy: str, symbol: str) -> SymbolFigures:
        key = (strategy, symbol)
        s = self.symbols.get(key)
        if s is None:
            s = self.symbols[key] = SymbolFigures()
        return s

    # --- as the run goes -----------------------------------------------------------

    def order(self, o: OrderRecord) -> None:
        self.order_count += 1
        if o.action == "new":
            s = self._figures(o.strategy, o.symbol)
            s.orders += 1
            s.ordered += o.qty
        if self.keep:
            self.orders.append(o)
        if self._order_w is not None:
            self._order_w.writerow(order_row(o))

    def fill(self, f: Fill) -> None:
        self.fill_count += 1
        s = self._figures(f.strategy, f.symbol)
        s.fills += 1
        s.shares += f.qty
        s.notional += f.qty * f.price
        s.fees_nano += f.fee_nano
        s.run += f.qty if f.side == "B" else -f.qty
        s.peak = max(s.peak, abs(s.run))
        marks = self.marks.get(f.symbol)
        if marks is None:
            marks = self.marks[f.symbol] = []
            self.extent[f.symbol] = [f.t, f.t, f.price, f.price]
        if len(marks) < MARKS:
            marks.append((f.t, f.price, f.side))
        e = self.extent[f.symbol]
        e[0], e[1] = min(e[0], f.t), max(e[1], f.t)
        e[2], e[3] = min(e[2], f.price), max(e[3], f.price)
        if self.keep:
            self.fills.append(f)
        if self._fill_w is not None:
            self._fill_w.writerow(fill_row(f))

    def sample(self, smp: Sample) -> None:
        for n in self.names:
            pos = smp.position.get(n)
            self.curves[n].add(smp.t, net(smp, n), sum(abs(q) for q in pos.values()) if pos else 0)
        self.mid_symbols.update(smp.mid)
        if not self.sample_count % self.stride:
            self.chart.append(smp)
            if len(self.chart) >= 2 * CHART_POINTS:
                del self.chart[1::2]
                self.stride *= 2
        self.sample_count += 1
        self.last = smp
        if self.keep:
            self.samples.append(smp)
        if self._equity_w is not None:
            self._equity_w.writerow(equity_row(smp, self.names))

    def close(self) -> list[Path]:
        """The streamed files complete under their own names; the paths."""
        done = []
        for f, final in self._files:
            f.close()
            Path(f.name).replace(final)
            done.append(final)
        self._files = []
        self._fill_w = self._order_w = self._equity_w = None
        return done

    # --- for the report --------------------------------------------------------------

    def chart_samples(self) -> list[Sample]:
        """The thinned samples, the last one included."""
        if self.last is not None and (not self.chart or self.chart[-1] is not self.last):
            return [*self.chart, self.last]
        return list(self.chart)

    def kept_csv(self) -> dict[str, str]:
        """orders.csv, fills.csv and equity.csv made from the kept rows (`keep`)."""
        return {
            "fills.csv": csv_text([fill_row(f) for f in self.fills], FILL_HEADER),
            "orders.csv": csv_text([order_row(o) for o in self.orders], ORDER_HEADER),
            "equity.csv": csv_text(
                [equity_row(s, self.names) for s in self.samples], equity_header(self.names)
            ),
        }
