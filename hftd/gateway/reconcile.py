"""Reconciling a restarted gateway with the venue's own stream (pure).

A real venue has no side channel to ask what it thinks our orders and fills
are; what it has is SoupBinTCP: the day's OUCH stream of this account, kept
whole, re-sent from any sequence number on login. The gateway's journal holds
every sequenced message it received, with its number. So, on start:

1. the journal is replayed (orders, positions, P&L, last sequence N);
2. the gateway logs in from ``N + 1 - overlap`` (at least 1), re-requesting
   the last `overlap` messages it already has;
3. each re-sent message must be byte for byte the journal's of that number,
   and the venue must have all of them: the stream reaching N proves the two
   agree up to N, and everything after N is new and applied as usual.

It does not agree (`problems`) when:

- the venue's session differs from the one the journal logged in to (a real
  venue names each day's session: a journal from another day);
- the venue's stream ends before N: the login is accepted from an earlier
  number than asked, or the venue goes quiet (a heartbeat, nothing to send)
  before N: the journal has messages the venue never sent (invented fills,
  another day's journal, another account's);
- a re-sent message differs from the journal's (another day, corruption);
- the journal lacks a number it should have (a gap).

`overlap` large enough re-reads the whole day from sequence 1 and compares
every message (`gateway.reconcile_overlap`). An empty journal has nothing to
verify: the gateway logs in from 1 and rebuilds everything from the venue's
messages (Accepted echoes the ClOrdID, where the strategy's order id is).
"""

from __future__ import annotations

from typing import Literal

State = Literal["verifying", "agreed", "mismatch"]


class StreamCheck:
    """One start's check of the journal's last messages against the venue's stream.

    `first` is the sequence number to log in from. Feed it the venue's login
    (`on_login`), every sequenced message (`on_message`: False for one already
    in the journal, which must not be applied again) and its heartbeats while
    verifying (`on_idle`). `done` once `state` is "agreed" or "mismatch".
    """

    def __init__(
        self, journaled: dict[int, bytes], last_seq: int, session: str, overlap: int
    ) -> None:
        self.last_seq = last_seq  # the journal's last sequenced message
        self.first = max(1, last_seq + 1 - overlap)
        self.journaled = {s: p for s, p in journaled.items() if s >= self.first}
        self.session = session  # the venue session the journal last logged in to ("": none)
        self.state: State = "verifying" if last_seq else "agreed"
        self.verified = 0  # re-sent messages found equal to the journal's
        self.problems: list[str] = []

    @property
    def done(self) -> bool:
        return self.state != "verifying"

    def _mismatch(self, problem: str) -> None:
        self.problems.append(problem)
        self.state = "mismatch"

    def on_login(self, session: str, first_seq: int, requested: int) -> None:
        """The venue accepted a login asking for `requested`: `first_seq` is the next
        message it will send."""
        if self.done:
            return
        if self.session and session and session != self.session:
            self._mismatch(
                f"the venue's session is {session!r}, the journal's is {self.session!r}: "
                "a journal of another session (another day?)"
            )
        elif first_seq < requested:
            self._mismatch(
                f"the venue's stream ends at {first_seq - 1}, the journal has messages up to "
                f"{self.last_seq}: the journal holds messages the venue never sent"
            )
        elif first_seq > requested:
            self._mismatch(
                f"asked for sequence {requested}, the venue starts at {first_seq}: messages "
                "the journal has cannot be checked"
            )

    def on_message(self, seq: int, payload: bytes) -> bool:
        """One sequenced message: True if it is new (journal and apply it), False if the
        journal has it already (verified against it, or skipped after a mismatch)."""
        if seq > self.last_seq:
            if self.state == "verifying":  # cannot happen: the venue sends in order
                self._mismatch(f"sequence {seq} arrived before {self.last_seq} was verified")
            return True
        if self.state != "verifying":
            return False
        mine = self.journaled.get(seq)
        if mine is None:
            self._mismatch(f"the journal has no message {seq} (a gap before {self.last_seq})")
        elif bytes(payload) != mine:
            self._mismatch(
                f"message {seq} differs: the venue sent {bytes(payload[:24]).hex()}…, the "
                f"journal has {mine[:24].hex()}…"
            )
        else:
            self.verified += 1
            if seq == self.last_seq:
                self.state = "agreed"
        return False

    def on_idle(self, next_seq: int) -> None:
        """The venue has nothing more to send (a heartbeat); `next_seq` is the next
        sequence number it would send."""
        if self.state == "verifying" and next_seq <= self.last_seq:
            self._mismatch(
                f"the venue's stream ends at {next_seq - 1}, the journal has messages up to "
                f"{self.last_seq}: the journal holds messages the venue never sent"
            )

    def summary(self) -> dict[str, object]:
        """For Status: what was checked and what was found."""
        return {
            "state": self.state,
            "from": self.first,
            "to": self.last_seq,
            "verified": self.verified,
            "problems": list(self.problems),
        }
