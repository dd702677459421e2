#!/usr/bin/env python3
"""Wire to wire: a venue of its own times a trigger's send to the order's receipt.

    python bench/bench_wire.py [--seconds 20] [--rate 50] [--set KEY=VALUE ...]
                               [--no-floor] [--plot FILE.png]

Why: T1..T4 are the project's own stamps, taken by the code they measure; a
stamp in the wrong place flatters it and nothing inside would notice. Here
the only clock that counts is the venue's, on the far side of both sockets.

The venue is this file's (not the exchange daemon, not hftd's codecs: ITCH
5.0, OUCH 5.0 and SoupBinTCP 3.0 are packed with `struct` from PROTOCOLS.md).
It serves ITCH on one loopback port and OUCH on another, from one thread
(epoll). Its market keeps every mid constant: background adds, cancels and
deletes only behind the touch of each symbol (flow-like bursts, one write
each, between triggers), so the default MeanReversion sees zero variance and
never trades on them. A trigger is one ITCH Add Order that improves the bid
(or the ask) by a tick: the mid moves half a tick and MeanReversion's z-score
jumps past its threshold on that very message, so it sells (or buys) IOC at
once. The venue stamps `time.monotonic_ns()` just before the trigger's
send() and just after the recv() that returns the Enter Order for that
symbol: wire-to-wire. It then answers Accepted + Executed (the fill keeps the
position between -100 and 0: the next trigger's side follows it), and deletes
the trigger order (the mid returns). Triggers go round-robin over the
MeanReversion symbols at `--rate` per second, so each symbol's cooldown is
respected and the system is idle between them; an order that does not come
within half the gap is missing (if it comes later: late).

Two phases, the same schedule on a fresh venue each:

- floor: a bare Python process (`--floor-client`) logs in to both ports,
  blocks in recv() on the ITCH socket and writes one Enter Order (48-byte
  SoupBinTCP packet body, 50 bytes with its length) when it sees a trigger;
- hftd: `hftd up` on default.toml with the simulator disabled and `[venue]`
  pointing here (limits raised so risk never refuses; log level as the
  default, "info", unless `--set system.log_level=...`), ready once the
  supervisor sends READY=1 on our NOTIFY_SOCKET.

Printed: both distributions, their difference and ratio at p50 and p99, the
gateway's own hop histograms over the same window (Status `latency_hdr`, the
window's counts only), and per order for the last fills the gateway keeps
(Status `recent_fills`: T4-T1 of each filled order) whether T1->T4 stayed
within the wire-to-wire time of that same order, as honest stamps must.
`--set a.b=v` changes any config key (v parsed as TOML, else taken as a
string), e.g. `--set hotpath.layout=composite --set rings.strategy_wait=spin`.
`--plot FILE.png` draws the HDR percentile plot (needs the `bench` extra:
matplotlib). Everything it starts is stopped, its rings and temp dir removed.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SESSION = "WIRE000001"
DAY_NS = 86_400_000_000_000
TRIGGER_BASE = 1 << 40  # ITCH order references of triggers start here (background: below)
LEVELS = 5  # price levels per side, the touch included
FLOOR_USER = "FLOOR"

# --- SoupBinTCP 3.0, ITCH 5.0, OUCH 5.0: packed by hand (PROTOCOLS.md) ---------------------

_U16 = struct.Struct(">H")


def packet(ptype: bytes, payload: bytes = b"") -> bytes:
    """One SoupBinTCP packet: length (type + payload), type, payload."""
    return _U16.pack(len(payload) + 1) + ptype + payload


def login_request(user: str, password: str, seq: int) -> bytes:
    return packet(
        b"L",
        user.ljust(6)[:6].encode()
        + password.ljust(10)[:10].encode()
        + b" " * 10
        + str(seq).rjust(20).encode(),
    )


def login_accepted(seq: int) -> bytes:
    return packet(b"A", SESSION.rjust(10).encode() + str(seq).rjust(20).encode())


SERVER_HEARTBEAT = packet(b"H")


def _ts48() -> bytes:
    return (time.time_ns() % DAY_NS).to_bytes(6, "big")


def _ts64() -> int:
    return time.time_ns() % DAY_NS


def _itch(mtype: bytes, locate: int, body: bytes) -> bytes:
    return mtype + _U16.pack(locate) + b"\0\0" + _ts48() + body


_ITCH_ADD = struct.Struct(">QcI8sI")  # 25 + 11 = 36
_ITCH_DIR = struct.Struct(">8sccIcc2scccccIc")  # 28 + 11 = 39
_ITCH_TRADING = struct.Struct(">8scc4s")  # 14 + 11 = 25


def itch_system(code: bytes) -> bytes:
    return _itch(b"S", 0, code)


def itch_directory(locate: int, stock: str) -> bytes:
    return _itch(
        b"R",
        locate,
        _ITCH_DIR.pack(
            stock.ljust(8).encode(),
            b"Q",
            b"N",
            100,
            b"N",
            b"C",
            b"Z ",
            b"P",
            b"N",
            b" ",
            b"1",
            b"N",
            0,
            b"N",
        ),
    )


def itch_trading(locate: int, stock: str) -> bytes:
    return _itch(b"H", locate, _ITCH_TRADING.pack(stock.ljust(8).encode(), b"T", b" ", b"    "))


def itch_add(locate: int, ref: int, side: bytes, shares: int, stock: bytes, price: int) -> bytes:
    return _itch(b"A", locate, _ITCH_ADD.pack(ref, side, shares, stock, price))


def itch_cancel(locate: int, ref: int, shares: int) -> bytes:
    return _itch(b"X", locate, struct.pack(">QI", ref, shares))


def itch_delete(locate: int, ref: int) -> bytes:
    return _itch(b"D", locate, struct.pack(">Q", ref))


OUCH_ENTER = struct.Struct(">cIcI8sqccccc14sH")  # 47 + appendage
OUCH_REPLACE = struct.Struct(">cIIIqccc14sH")  # 40 + appendage
OUCH_CANCEL = struct.Struct(">cII")  # 9
OUCH_ACCEPTED = struct.Struct(">cQIcI8sqccQcccc14sH")  # 64
OUCH_REPLACED = struct.Struct(">cQIIcI8sqccQcccc14sH")  # 68
OUCH_CANCELED = struct.Struct(">cQIIc")  # 18
OUCH_EXECUTED = struct.Struct(">cQIIqcQH")  # 36
OUCH_REJECTED = struct.Struct(">cQIH14s")  # 29


def enter_order_packet(user_ref: int, side: bytes, qty: int, stock: bytes, price: int) -> bytes:
    """An Enter Order in a SoupBinTCP Unsequenced Data packet (50 bytes)."""
    return packet(
        b"U",
        OUCH_ENTER.pack(
            b"O", user_ref, side, qty, stock, price, b"3", b"Y", b"P", b"N", b"N", b" " * 14, 0
        ),
    )


# --- the floor: a bare process, blocking in recv() ------------------------------------------


def floor_client(md_port: int, order_port: int) -> None:
    """Log in to both ports, block in recv() on ITCH, answer each trigger with one Enter
    Order (the trigger's symbol). Nothing else: this is the floor of the topology."""
    oe = socket.create_connection(("127.0.0.1", order_port))
    md = socket.create_connection(("127.0.0.1", md_port))
    for s in (oe, md):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    oe.sendall(login_request(FLOOR_USER, "floor", 1))
    md.sendall(login_request(FLOOR_USER, "floor", 0))  # 0: from now on
    order = bytearray(enter_order_packet(0, b"S", 100, b" " * 8, 0))
    user_ref = 0
    buf = b""
    while True:
        data = md.recv(65536)
        if not data:
            return
        buf += data
        i, n = 0, len(buf)
        while n - i >= 3:
            end = i + 2 + ((buf[i] << 8) | buf[i + 1])
            if end > n:
                break
            # 'S' packet holding an ITCH 'A' whose reference is a trigger's
            if (
                buf[i + 2] == 0x53
                and buf[i + 3] == 0x41
                and int.from_bytes(buf[i + 14 : i + 22], "big") >= TRIGGER_BASE
            ):
                user_ref += 1
                order[4:8] = user_ref.to_bytes(4, "big")
                order[13:21] = buf[i + 27 : i + 35]  # the stock
                oe.send(order)
                with suppress(BlockingIOError):  # the venue's answers: read, ignored
                    oe.recv(65536, socket.MSG_DONTWAIT)
            i = end
        buf = buf[i:]


# --- the venue -------------------------------------------------------------------------------


@dataclass
class Sym:
    """One symbol's book as the venue publishes it: the touch never moves except for a
    trigger, background orders live behind it."""

    name: str
    locate: int
    tick: int
    bid: int  # best bid and ask (fixed point): mid = the reference price
    ask: int
    stock: bytes = b""
    behind: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # ref -> side, shares
    last_up: bool = False


@dataclass
class Trigger:
    sym: Sym
    ref: int
    up: bool  # bid improved: the mid went up, a sell is expected
    t_send: int = 0


@dataclass
class Job:
    """A schedule of triggers, run by the venue thread; the main thread waits on `done`."""

    n: int
    gap_ns: int
    timeout_ns: int
    user: str  # whose orders answer the triggers
    prime: int = 0  # background messages per symbol before the first trigger
    w2w: list[int] = field(default_factory=list)  # ns, one per answered trigger
    missing: int = 0
    late: int = 0
    unexpected: int = 0
    wrong_side: int = 0
    sent: int = 0
    next_at: int = 0
    bg_at: int = 0
    pending: Trigger | None = None
    missed: Trigger | None = None  # the last trigger that timed out (a late order's)
    done: threading.Event = field(default_factory=threading.Event)


class Session:
    __slots__ = ("buf", "kind", "last_tx", "sock", "user")

    def __init__(self, sock: socket.socket, kind: str) -> None:
        self.sock = sock
        self.kind = kind  # "md" | "oe"
        self.buf = b""
        self.user = ""  # set at login
        self.last_tx = time.monotonic()


class Venue:
    """ITCH out and OUCH in over SoupBinTCP on loopback, in one thread (epoll).

    Sequenced streams are kept whole (ITCH: one for everyone; OUCH: per user) so a
    client logging in again from sequence N gets every message from N. Answers every
    Enter Order with Accepted, then Executed in full for IOC (`fill`) or Canceled;
    day orders rest until cancelled. `spin` polls instead of sleeping while a trigger
    waits for its order (the receipt stamp then does not wait for a wake-up).
    `busy_after_us`: work this long after reading an Enter Order, before answering;
    `cpu`: pin the venue's thread to that CPU (tests put it beside the gateway)."""

    def __init__(
        self,
        symbols: list[tuple[str, int, int]],
        *,
        seed: int = 7,
        fill: bool = True,
        spin: bool = False,
        busy_after_us: float = 0.0,
        cpu: int | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.fill = fill
        self.spin = spin
        self.cpu = cpu
        self.busy_after_ns = int(busy_after_us * 1000)
        self.sel = selectors.DefaultSelector()
        self.md_listener = socket.create_server(("127.0.0.1", 0))
        self.oe_listener = socket.create_server(("127.0.0.1", 0))
        self.md_port = int(self.md_listener.getsockname()[1])
        self.order_port = int(self.oe_listener.getsockname()[1])
        for lst, kind in ((self.md_listener, "md"), (self.oe_listener, "oe")):
            lst.setblocking(False)
            self.sel.register(lst, selectors.EVENT_READ, kind)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.sessions: dict[int, Session] = {}
        self.md_stream: list[bytes] = []  # framed 'S' packets, message n at n-1
        self.oe_streams: dict[str, list[bytes]] = {}
        self.oe_unsent: dict[str, list[bytes]] = {}
        self.orders: dict[str, dict[int, list[Any]]] = {}  # user -> user_ref -> order
        self.logins: dict[tuple[str, str], int] = {}  # (kind, user) -> logins accepted
        self.entered: dict[str, int] = {}  # Enter Orders received per user
        self.fills: list[tuple[str, int]] = []  # (user, w2w ns or -1), in the order sent
        self.positions: dict[tuple[str, bytes], int] = {}  # (user, stock) -> shares, from fills
        self.rr = 0  # triggers sent (round-robin over the trigger symbols)
        self.next_ref = 1
        self.next_trigger_ref = TRIGGER_BASE
        self.match = 0
        self.cond = threading.Condition()
        self.job: Job | None = None
        self.error: BaseException | None = None
        self.stopping = False
        self.syms = [
            Sym(name, i + 1, tick, ref - tick, ref + tick, name.ljust(8).encode())
            for i, (name, ref, tick) in enumerate(symbols)
        ]
        self.by_stock = {s.stock: s for s in self.syms}
        self._opening()
        self.thread = threading.Thread(target=self._main, name="venue", daemon=True)

    # --- the market ---------------------------------------------------------------------

    def _opening(self) -> None:
        msgs = [itch_system(b"O"), itch_system(b"S")]
        for s in self.syms:
            msgs += [itch_directory(s.locate, s.name), itch_trading(s.locate, s.name)]
        msgs.append(itch_system(b"Q"))
        for s in self.syms:
            for lvl in range(LEVELS):
                for side, px in ((b"B", s.bid - lvl * s.tick), (b"S", s.ask + lvl * s.tick)):
                    ref = self._ref()
                    msgs.append(itch_add(s.locate, ref, side, 300, s.stock, px))
                    if lvl:  # the touch's own orders are never touched by the background
                        s.behind[ref] = (side, 300)
        self._publish(msgs)

    def _ref(self) -> int:
        self.next_ref += 1
        return self.next_ref

    def _background(self, s: Sym, n: int) -> list[bytes]:
        """`n` flow-like messages behind the touch of `s` (its mid does not move)."""
        out = []
        rng = self.rng
        for _ in range(n):
            r = rng.random()
            if r < 0.5 or len(s.behind) < 8:
                side = b"B" if rng.random() < 0.5 else b"S"
                lvl = rng.randint(1, LEVELS - 1)
                px = s.bid - lvl * s.tick if side == b"B" else s.ask + lvl * s.tick
                shares = 100 * rng.randint(1, 5)
                ref = self._ref()
                s.behind[ref] = (side, shares)
                out.append(itch_add(s.locate, ref, side, shares, s.stock, px))
                continue
            ref = rng.choice(list(s.behind))
            side, shares = s.behind[ref]
            if r < 0.75 and shares > 100:
                s.behind[ref] = (side, shares - 100)
                out.append(itch_cancel(s.locate, ref, 100))
            else:
                del s.behind[ref]
                out.append(itch_delete(s.locate, ref))
        return out

    # --- streams --------------------------------------------------------------------------

    def _publish(self, msgs: list[bytes], stamp: Trigger | None = None) -> None:
        """Sequence ITCH messages and send them to every logged-in md session, one write
        each; `stamp` gets the time just before the first write."""
        framed = [packet(b"S", m) for m in msgs]
        self.md_stream.extend(framed)
        data = b"".join(framed)
        targets = [s for s in self.sessions.values() if s.kind == "md" and s.user]
        if stamp is not None:
            stamp.t_send = time.monotonic_ns()
        for sess in targets:
            self._send(sess, data)

    def _oe_out(self, user: str, msg: bytes) -> None:
        """Sequence an OUCH message for `user`; sent by `_oe_flush` (one write per read)."""
        framed = packet(b"S", msg)
        self.oe_streams.setdefault(user, []).append(framed)
        self.oe_unsent.setdefault(user, []).append(framed)

    def _oe_flush(self) -> None:
        for user, msgs in self.oe_unsent.items():
            data = b"".join(msgs)
            for sess in list(self.sessions.values()):
                if sess.kind == "oe" and sess.user == user:
                    self._send(sess, data)
        self.oe_unsent.clear()

    def _send(self, sess: Session, data: bytes) -> None:
        try:
            sess.sock.sendall(data)
            sess.last_tx = time.monotonic()
        except OSError:
            self._close(sess)

    def _close(self, sess: Session) -> None:
        if self.sessions.pop(sess.sock.fileno(), None) is not None:
            self.sel.unregister(sess.sock)
            sess.sock.close()

    # --- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stopping = True
        with suppress(OSError):
            self.wake_w.send(b"x")
        self.thread.join(10)
        for sess in list(self.sessions.values()):
            self._close(sess)
        for s in (self.md_listener, self.oe_listener, self.wake_r, self.wake_w):
            s.close()
        self.sel.close()

    def _main(self) -> None:
        try:
            if self.cpu is not None:
                os.sched_setaffinity(0, {self.cpu})  # this thread only
            self._loop()
        except BaseException as exc:  # reported to the main thread
            self.error = exc
            with self.cond:
                self.cond.notify_all()
            if self.job is not None:
                self.job.done.set()

    def _loop(self) -> None:
        sel = self.sel
        while not self.stopping:
            now = time.monotonic_ns()
            timeout = self._step(now)
            if self.spin and self.job is not None and self.job.pending is not None:
                timeout = 0.0
            for key, _ in sel.select(timeout):
                what = key.data
                if isinstance(what, Session):
                    self._readable(what)
                elif what == "wake":
                    with suppress(BlockingIOError):
                        self.wake_r.recv(4096)
                else:
                    self._accept(key.fileobj, what)  # type: ignore[arg-type]

    def _accept(self, listener: socket.socket, kind: str) -> None:
        with suppress(BlockingIOError):
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(5.0)
            sess = Session(conn, kind)
            self.sessions[conn.fileno()] = sess
            self.sel.register(conn, selectors.EVENT_READ, sess)

    def _readable(self, sess: Session) -> None:
        try:
            data = sess.sock.recv(65536)
        except OSError:
            data = b""
        t_rx = time.monotonic_ns()  # the receipt: as soon as recv() returns
        if not data:
            self._close(sess)
            return
        buf = sess.buf + data
        i, n = 0, len(buf)
        while n - i >= 3:
            end = i + 2 + _U16.unpack_from(buf, i)[0]
            if end > n:
                break
            ptype, body = buf[i + 2 : i + 3], buf[i + 3 : end]
            i = end
            if ptype == b"U" and sess.user and sess.kind == "oe":
                self._ouch(sess.user, body, t_rx)
            elif ptype == b"L":
                self._login(sess, body)
            elif ptype == b"O":
                self._close(sess)
                return
        sess.buf = buf[i:]
        if self.oe_unsent:
            self._oe_flush()

    def _login(self, sess: Session, body: bytes) -> None:
        user = body[:6].decode(errors="replace").strip()
        seq = int(body[26:46].strip() or b"0")
        stream = self.md_stream if sess.kind == "md" else self.oe_streams.setdefault(user, [])
        first = len(stream) + 1 if seq == 0 or seq > len(stream) + 1 else seq
        self._send(sess, login_accepted(first) + b"".join(stream[first - 1 :]))
        sess.user = user
        with self.cond:
            key = (sess.kind, user)
            self.logins[key] = self.logins.get(key, 0) + 1
            self.cond.notify_all()

    # --- orders -----------------------------------------------------------------------------

    def _ouch(self, user: str, msg: bytes, t_rx: int) -> None:
        kind = msg[:1]
        book = self.orders.setdefault(user, {})
        if kind == b"O" and len(msg) >= OUCH_ENTER.size:
            (_, ref, side, qty, stock, price, tif, display, cap, iso, cross, clid, _app) = (
                OUCH_ENTER.unpack_from(msg)
            )
            self.entered[user] = self.entered.get(user, 0) + 1
            w2w = self._answered(user, stock, side, t_rx)
            if self.busy_after_ns:  # the venue's own work after a receipt (tests)
                end = time.monotonic_ns() + self.busy_after_ns
                while time.monotonic_ns() < end:
                    pass
            self.match += 1
            self._oe_out(
                user,
                OUCH_ACCEPTED.pack(
                    b"A",
                    _ts64(),
                    ref,
                    side,
                    qty,
                    stock,
                    price,
                    tif,
                    display,
                    self.match,
                    cap,
                    iso,
                    cross,
                    b"L",
                    clid,
                    0,
                ),
            )
            if tif != b"3":  # day order: rests until cancelled
                book[ref] = [side, qty, stock, price, tif, display, clid]
            elif self.fill:
                self._oe_out(
                    user, OUCH_EXECUTED.pack(b"E", _ts64(), ref, qty, price, b"R", self.match, 0)
                )
                self.fills.append((user, w2w))
                key = (user, stock)
                self.positions[key] = self.positions.get(key, 0) + (qty if side == b"B" else -qty)
            else:
                self._oe_out(user, OUCH_CANCELED.pack(b"C", _ts64(), ref, qty, b"I"))
        elif kind == b"X" and len(msg) >= OUCH_CANCEL.size:
            _, ref, _qty = OUCH_CANCEL.unpack_from(msg)
            o = book.pop(ref, None)
            if o is not None:
                self._oe_out(user, OUCH_CANCELED.pack(b"C", _ts64(), ref, o[1], b"U"))
        elif kind == b"U" and len(msg) >= OUCH_REPLACE.size:
            _, old, new, qty, price, tif, display, iso, clid, _app = OUCH_REPLACE.unpack_from(msg)
            o = book.pop(old, None)
            if o is None:
                self._oe_out(user, OUCH_REJECTED.pack(b"J", _ts64(), new, ord("U"), clid))
                return
            self.match += 1
            book[new] = [o[0], qty, o[2], price, tif, display, clid]
            self._oe_out(
                user,
                OUCH_REPLACED.pack(
                    b"U",
                    _ts64(),
                    old,
                    new,
                    o[0],
                    qty,
                    o[2],
                    price,
                    tif,
                    display,
                    self.match,
                    b"A",
                    iso,
                    b"N",
                    b"L",
                    clid,
                    0,
                ),
            )

    def _answered(self, user: str, stock: bytes, side: bytes, t_rx: int) -> int:
        """Match an Enter Order to the trigger waiting for it; its wire-to-wire ns or -1."""
        job = self.job
        if job is None or user != job.user:
            return -1
        p = job.pending
        if p is None or p.sym.stock != stock:
            if job.missed is not None and job.missed.sym.stock == stock:
                job.late += 1  # the answer to a trigger that timed out
                job.missed = None
            else:
                job.unexpected += 1
            return -1
        w2w = t_rx - p.t_send
        job.w2w.append(w2w)
        if side != (b"S" if p.up else b"B"):
            job.wrong_side += 1
        job.pending = None
        self._publish([itch_delete(p.sym.locate, p.ref)])  # the mid returns
        return w2w

    # --- the schedule -------------------------------------------------------------------------

    def _step(self, now: int) -> float:
        """Heartbeats and the job's next action; seconds until something is due."""
        due = now + 1_000_000_000
        mono = time.monotonic()
        for sess in list(self.sessions.values()):
            if sess.user:
                if mono - sess.last_tx >= 1.0:
                    self._send(sess, SERVER_HEARTBEAT)
                due = min(due, now + int((sess.last_tx + 1.0 - mono) * 1e9))
        job = self.job
        if job is not None:
            due = min(due, self._job_step(job, now))
        return max(0.0, (due - time.monotonic_ns()) / 1e9)

    def _job_step(self, job: Job, now: int) -> int:
        p = job.pending
        if p is not None:
            if now - p.t_send < job.timeout_ns:
                return p.t_send + job.timeout_ns
            job.missing += 1
            job.pending = None
            job.missed = p
            self._publish([itch_delete(p.sym.locate, p.ref)])
        if job.prime:
            for _ in range(job.prime // 10):
                for s in self.syms:
                    self._publish(self._background(s, 10))
            job.prime = 0
            job.next_at = now + 200_000_000  # the system takes the burst first
            return job.next_at
        if not job.next_at:
            job.next_at = now + job.gap_ns  # a gap after whatever came before
        if job.bg_at and now >= job.bg_at:
            job.bg_at = 0
            self._publish(
                [
                    m
                    for s in self.syms
                    for m in self._background(s, 8 if s is self._current(job) else 2)
                ]
            )
        if now < job.next_at:
            return min(job.next_at, job.bg_at or job.next_at)
        if job.sent == job.n:
            self.job = None
            job.done.set()
            return now + 1_000_000_000
        self._trigger(job)
        job.next_at = max(job.next_at + job.gap_ns, now + job.gap_ns // 2)
        job.bg_at = now + job.gap_ns // 2
        return min(job.next_at, now + job.timeout_ns)

    def _current(self, job: Job) -> Sym:
        return self.trigger_syms[(self.rr - 1) % len(self.trigger_syms)]

    def _trigger(self, job: Job) -> None:
        s = self.trigger_syms[self.rr % len(self.trigger_syms)]
        self.rr += 1
        job.sent += 1
        # the side follows the position (-100..0 with fills), else alternates
        pos = self.positions.get((job.user, s.stock), 0)
        up = True if pos > 0 else False if pos < 0 else not s.last_up
        s.last_up = up
        ref = self.next_trigger_ref
        self.next_trigger_ref += 1
        t = Trigger(s, ref, up)
        msg = (
            itch_add(s.locate, ref, b"B", 100, s.stock, s.bid + s.tick)
            if up
            else itch_add(s.locate, ref, b"S", 100, s.stock, s.ask - s.tick)
        )
        job.pending = t
        self._publish([msg], stamp=t)

    # --- the main thread's side ---------------------------------------------------------------

    trigger_syms: list[Sym]

    def set_triggers(self, names: list[str]) -> None:
        self.trigger_syms = [s for s in self.syms if s.name in names]

    def wait_login(self, kind: str, user: str, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(
                lambda: self.error is not None or self.logins.get((kind, user), 0) > 0, timeout
            ):
                raise RuntimeError(f"no {kind} login from {user} in {timeout:g} s")
        if self.error is not None:
            raise RuntimeError(f"venue thread died: {self.error!r}")

    def run(self, job: Job) -> Job:
        """Run `job` in the venue thread; return it once done (bounded in time)."""
        gc.collect()
        gc.disable()  # no collection inside the venue's stamps
        try:
            self.job = job
            self.wake_w.send(b"x")
            limit = job.n * job.gap_ns / 1e9 + job.timeout_ns / 1e9 + 30
            if not job.done.wait(limit):
                raise RuntimeError(f"trigger schedule not done in {limit:.0f} s")
        finally:
            gc.enable()
            self.job = None
        if self.error is not None:
            raise RuntimeError(f"venue thread died: {self.error!r}")
        return job


# --- the system under test ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dump(data: dict[str, Any], prefix: str = "") -> list[str]:
    """TOML text of a parsed config (tables and arrays of tables)."""
    lines = [
        f"{k} = {_toml(v)}" for k, v in data.items() if not isinstance(v, dict) and not _tables(v)
    ]
    for k, v in data.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            lines += ["", f"[{name}]", *dump(v, name)]
        elif _tables(v):
            for item in v:
                lines += ["", f"[[{name}]]", *dump(item, name)]
    return lines


def parse_set(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value`: the key path and the value (TOML if it parses, else a string)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set wants KEY=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_sets(data: dict[str, Any], sets: list[tuple[list[str], Any]]) -> None:
    for path, value in sets:
        d = data
        for part in path[:-1]:
            d = d.setdefault(part, {})
        d[path[-1]] = value


def bench_config(tmp: Path, venue: Venue, sets: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """default.toml against `venue`: simulator off, private run dir, journal, ports and
    rings, limits out of the way (this measures the path, not the controls)."""
    data = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    data["system"].update(
        run_dir=str(tmp / "run"), journal_dir=str(tmp / "journal"), trading_day_starts=""
    )
    data["exchange"].update(order_port=free_port(), md_port=free_port())
    data.setdefault("daemons", {}).setdefault("exchange", {})["enabled"] = False
    data["venue"] = {"host": "127.0.0.1", "order_port": venue.order_port, "md_port": venue.md_port}
    data["rings"]["prefix"] = f"hftd-wire{os.getpid()}"
    data.setdefault("monitor", {})["web_port"] = free_port()
    data["risk"].update(
        max_position=10**9,
        max_gross_position=4 * 10**9,
        max_order_notional=10**14,
        daily_loss_limit=10**14,
        max_orders_per_s=100_000,
        max_working_orders=100_000,
    )
    data["breaker"] = {"max_venue_rejects": 10**9, "max_risk_rejects": 10**9, "max_cancels": 10**9}
    apply_sets(data, sets)
    return data


def trigger_plan(data: dict[str, Any], rate: float) -> list[str]:
    """The MeanReversion symbols the triggers go to; refuses a rate their cooldown or
    threshold would turn into missing orders."""
    mr = [
        i
        for i in data["strategy"]["instances"]
        if i.get("kind") == "mean_reversion" and i.get("enabled", True)
    ]
    if not mr:
        raise SystemExit("no enabled mean_reversion instance in the config: nothing to trigger")
    names = list(dict.fromkeys(s for i in mr for s in i["symbols"]))
    cooldown_ms = max(float(i.get("cooldown_ms", 20.0)) for i in mr)
    spacing_ms = 1000 * len(names) / rate
    if spacing_ms < 1.5 * cooldown_ms:
        raise SystemExit(
            f"--rate {rate:g}: {spacing_ms:.1f} ms between triggers of a symbol, "
            f"under 1.5 x its cooldown ({cooldown_ms:g} ms)"
        )
    return names


class System:
    """`hftd up` in a subprocess, ready once the supervisor sends READY=1."""

    def __init__(self, config: Path, timeout: float = 90.0) -> None:
        self.config = config
        self.run_dir = config.parent / "run"
        self.prefix = tomllib.loads(config.read_text())["rings"]["prefix"]
        notify = config.parent / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(notify))
        self.log_path = config.parent / "up.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hftd.cli", "up", "--config", str(config), "--new-day"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ, NOTIFY_SOCKET=str(notify)),
        )
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"hftd up not ready (exit {self.proc.poll()}):\n{tail}")
            self.sock.settimeout(min(left, 1.0))
            with suppress(TimeoutError):
                if "READY=1" in self.sock.recv(4096).decode().split("\n"):
                    return

    def status(self, name: str) -> dict[str, Any]:
        from hftd.ipc.control import request_sync
        from hftd.msg.control import Status

        reply = request_sync(self.run_dir / f"{name}.sock", Status(), timeout=5.0)
        if not reply.ok:
            raise RuntimeError(f"{name} Status failed: {reply.error}")
        detail: dict[str, Any] = reply.result["detail"]
        return detail

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.sock.close()
        self.log.close()
        for p in Path("/dev/shm").glob(f"{self.prefix}-*"):
            p.unlink(missing_ok=True)


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `pred` (a Status read) until true; bounded."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- figures -------------------------------------------------------------------------------

QS = (50.0, 90.0, 99.0, 99.9)


def quantiles(values: list[int]) -> list[float]:
    """Nearest-rank percentiles QS and the max, in µs."""
    if not values:
        return [math.nan] * (len(QS) + 1)
    v = sorted(values)
    out = [v[max(0, math.ceil(q / 100 * len(v)) - 1)] / 1e3 for q in QS]
    return [*out, v[-1] / 1e3]


def row(label: str, n: int, missing: str, qs: list[float]) -> str:
    return f"  {label:<34} {n:>6} {missing:>8} " + " ".join(f"{x:>9.1f}" for x in qs)


HEADER = f"  {'(µs)':<34} {'count':>6} {'missing':>8} " + " ".join(
    f"{h:>9}" for h in ("p50", "p90", "p99", "p99.9", "max")
)


def hist_quantiles(h: Any) -> list[float]:
    if not h.total:
        return [math.nan] * (len(QS) + 1)
    return [v / 1e3 for v in h.percentiles_ns(list(QS))] + [h.max_ns() / 1e3]


def percentile_curve(values: list[int]) -> tuple[list[float], list[float]]:
    """(1/(1-p) for each sorted value, µs): an HDR percentile plot's points."""
    v = sorted(values)
    n = len(v)
    return [1 / (1 - (i + 0.5) / n) for i in range(n)], [x / 1e3 for x in v]


def hist_curve(h: Any) -> tuple[list[float], list[float]]:
    from hftd.runtime.hdr import HIGH

    xs, ys, cum = [], [], 0
    for i, c in zip(h.indexes, h.counts, strict=True):
        cum += c
        p = (cum - 0.5) / h.total
        xs.append(1 / (1 - p))
        ys.append(HIGH[i] / 1e3)
    return xs, ys


def plot(path: Path, curves: dict[str, tuple[list[float], list[float]]], title: str) -> None:
    """HDR percentile plot: latency against percentile on the 1/(1-p) log axis."""
    import matplotlib  # the `bench` extra: only with --plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for label, (xs, ys) in curves.items():
        if xs:
            ax.plot(xs, ys, label=label, drawstyle="steps-post")
    ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xlim(1, max(10, max((max(xs) for xs, _ in curves.values() if xs), default=10)))
    ax.set_yscale("log")  # µs medians and ms tails on one plot
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs, log)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the phases ------------------------------------------------------------------------------


@dataclass
class Args:
    seconds: float
    rate: float
    warmup: float
    sets: list[tuple[list[str], Any]]


def make_job(args: Args, user: str, seconds: float, prime: int = 0) -> Job:
    gap = int(1e9 / args.rate)
    return Job(
        n=max(1, round(seconds * args.rate)),
        gap_ns=gap,
        timeout_ns=min(gap // 2, 200_000_000),
        user=user,
        prime=prime,
    )


def symbols_of(data: dict[str, Any]) -> list[tuple[str, int, int]]:
    out = []
    for s in data["symbols"]:
        ref = round(float(s["reference_price"]) * 10_000)
        tick = round(float(s.get("tick_size", "0.01")) * 10_000)
        out.append((s["symbol"], ref, tick))
    return out


@contextmanager
def venue_for(data: dict[str, Any], triggers: list[str]) -> Iterator[Venue]:
    venue = Venue(symbols_of(data))
    venue.set_triggers(triggers)
    venue.start()
    try:
        yield venue
    finally:
        venue.close()


def floor_phase(args: Args, data: dict[str, Any], triggers: list[str]) -> Job:
    with venue_for(data, triggers) as venue:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--floor-client", str(venue.md_port), str(venue.order_port)]
        )
        try:
            venue.wait_login("oe", FLOOR_USER, 30)
            venue.wait_login("md", FLOOR_USER, 30)
            venue.run(make_job(args, FLOOR_USER, args.warmup, prime=60))
            return venue.run(make_job(args, FLOOR_USER, args.seconds))
        finally:
            proc.kill()
            proc.wait(10)


@dataclass
class SystemResult:
    job: Job
    g0: dict[str, Any]
    g1: dict[str, Any]
    fills: list[tuple[str, int]]
    entered: int  # Enter Orders the venue read in the window
    layout: str


def system_phase(args: Args, tmp: Path, base: dict[str, Any], triggers: list[str]) -> SystemResult:
    with venue_for(base, triggers) as venue:
        data = bench_config(tmp, venue, args.sets)
        cfg = tmp / "wire.toml"
        cfg.write_text("\n".join(dump(data)) + "\n")
        system = System(cfg)
        try:
            user = data["gateway"]["username"]
            wait_until(
                lambda: bool(system.status("gateway")["strategy_up"]),
                15,
                "the gateway to hear the strategy",
            )

            def settled() -> bool:
                g = system.status("gateway")
                return sum(g["latency_hdr"].get("t1_t4", {}).values()) >= venue.entered.get(
                    user, 0
                ) and g["fills"] == sum(u == user for u, _ in venue.fills)

            venue.run(make_job(args, user, args.warmup, prime=60))
            wait_until(settled, 10, "the warm-up's orders in the gateway's histograms")
            g0 = system.status("gateway")
            before = venue.entered.get(user, 0)
            job = venue.run(make_job(args, user, args.seconds))
            wait_until(settled, 10, "the orders in the gateway's histograms")
            g1 = system.status("gateway")
            return SystemResult(
                job,
                g0,
                g1,
                list(venue.fills),
                venue.entered.get(user, 0) - before,
                describe_layout(cfg),
            )
        finally:
            system.stop()


def describe_layout(path: Path) -> str:
    """The hot-path layout and wait strategies this config resolves to on this machine."""
    from hftd.config import load_config

    cfg: Any = load_config(path)
    hot = getattr(cfg, "hotpath", None)
    if hot is not None and hot.resolved_layout() == "composite":
        return f"composite (hot thread wait {hot.resolved_wait()})"
    return (
        f"split (strategy wait {cfg.rings.wait_for('strategy')}, gateway wait "
        f"{cfg.rings.wait_for('gateway')})"
    )


def report(args: Args, floor: Job | None, sysres: SystemResult, plot_path: Path | None) -> None:
    from hftd.runtime.hdr import SparseHistogram

    job = sysres.job
    print(f"hftd layout: {sysres.layout}")
    print(HEADER)
    if floor is not None:
        print(
            row(
                "floor: bare process recv()->send()",
                len(floor.w2w),
                str(floor.missing),
                quantiles(floor.w2w),
            )
        )
    print(row("hftd wire-to-wire", len(job.w2w), str(job.missing), quantiles(job.w2w)))
    hists = {}
    names = {
        "t1_t2": "T1->T2 feed->strategy",
        "t2_t3": "T2->T3 strategy->risk",
        "t3_t4": "T3->T4 risk->wire",
        "t4_t5": "T4->T5 wire->venue ack",
        "t1_t4": "T1->T4 tick-to-trade",
    }
    for hop, label in names.items():
        h = SparseHistogram.from_wire(
            sysres.g1["latency_hdr"].get(hop, {})
        ) - SparseHistogram.from_wire(sysres.g0["latency_hdr"].get(hop, {}))
        hists[hop] = h
        print(row(f"gateway {label}", h.total, "", hist_quantiles(h)))
    print(
        f"  triggers {job.sent}: answered {len(job.w2w)}, missing {job.missing} (late "
        f"{job.late}), unexpected orders {job.unexpected}, wrong side {job.wrong_side}; "
        f"orders: the venue read {sysres.entered}, the gateway sent "
        f"{sysres.g1['sent'] - sysres.g0['sent']}"
    )
    if floor is not None and floor.w2w and job.w2w:
        f50, f99 = quantiles(floor.w2w)[0], quantiles(floor.w2w)[2]
        w50, w99 = quantiles(job.w2w)[0], quantiles(job.w2w)[2]
        print(
            f"  hftd - floor: p50 +{w50 - f50:.1f} µs (x{w50 / f50:.2f}), "
            f"p99 +{w99 - f99:.1f} µs (x{w99 / f99:.2f})"
        )
    t14 = hists["t1_t4"]
    if t14.total and job.w2w:
        m50 = t14.percentile_ns(50.0) / 1e3
        print(
            f"  T1->T4 p50 {m50:.1f} µs vs wire-to-wire p50 {quantiles(job.w2w)[0]:.1f} µs "
            f"(same orders; T1->T4 must be the smaller: HDR rounds up by < 1%)"
        )
    # Per order: the gateway keeps its last fills' T4-T1; the venue knows each fill's w2w.
    recent = sysres.g1.get("recent_fills", [])
    mine = [w for u, w in sysres.fills if u != FLOOR_USER]
    k = min(len(recent), len(mine))
    pairs = (
        [
            (round(f["tick_to_trade_us"] * 1000), w)
            for f, w in zip(recent[-k:], mine[-k:], strict=True)
            if w >= 0
        ]
        if k
        else []
    )
    if pairs:
        over = [(t, w) for t, w in pairs if t > w]
        worst = max(t - w for t, w in pairs)
        print(
            f"  per order (the gateway's last {len(pairs)} fills): T1->T4 <= wire-to-wire for "
            f"{len(pairs) - len(over)}/{len(pairs)}; T1->T4 - wire-to-wire max {worst / 1e3:+.1f}"
            f" µs, median {sorted(t - w for t, w in pairs)[len(pairs) // 2] / 1e3:+.1f} µs"
        )
    if plot_path is not None:
        curves = {}
        if floor is not None:
            curves["floor (bare process)"] = percentile_curve(floor.w2w)
        curves["hftd wire-to-wire"] = percentile_curve(job.w2w)
        curves["hftd T1->T4 (gateway HDR)"] = hist_curve(t14)
        sets = " ".join(".".join(p) + "=" + str(v) for p, v in args.sets) or "default config"
        plot(
            plot_path,
            curves,
            f"bench_wire.py: {sysres.layout}; {sets}; {args.rate:g} "
            f"triggers/s, {args.seconds:g} s, load {os.getloadavg()[0]:.2f}",
        )
        print(f"  plot: {plot_path}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--floor-client":
        floor_client(int(sys.argv[2]), int(sys.argv[3]))
        return
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measured triggers' span")
    ap.add_argument("--rate", type=float, default=50.0, help="triggers per second")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured triggers")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        type=parse_set,
        metavar="KEY=VALUE",
        help="config override (dotted TOML path)",
    )
    ap.add_argument("--no-floor", action="store_true", help="skip the floor phase")
    ap.add_argument("--plot", type=Path, default=None, metavar="FILE.png")
    ns = ap.parse_args()
    args = Args(ns.seconds, ns.rate, ns.warmup, ns.sets)
    base = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    apply_sets(base, args.sets)
    triggers = trigger_plan(base, args.rate)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus (affinity "
        f"{len(os.sched_getaffinity(0))}), Python {platform.python_version()}, "
        f"{platform.platform()}; load average before "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    sets = " ".join(".".join(p) + "=" + repr(v) for p, v in args.sets) or "(none)"
    print(
        f"triggers: {args.rate:g}/s over {', '.join(triggers)} for {args.seconds:g} s "
        f"(+{args.warmup:g} s warm-up); --set {sets}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="hftd-bench-wire-"))
    try:
        floor = None if ns.no_floor else floor_phase(args, base, triggers)
        sysres = system_phase(args, tmp, base, triggers)
        report(args, floor, sysres, ns.plot)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
