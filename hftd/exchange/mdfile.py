"""A recorded ITCH 5.0 day (NASDAQ BinaryFILE) as the venue's background flow (pure).

`exchange.md_file` names the file; the venue plays it instead of the synthetic
flow (`Venue.play_file_message` says how each message type is applied). This
module only reads the file and paces it:

- `MdFile.parse(data)` splits the BinaryFILE (u16 length + message, repeated)
  and notes what the venue must know before the first message: each message's
  timestamp (bytes 5..11 of every ITCH message), and the largest order
  reference and match number in the file, so that the venue's own orders and
  trades are numbered above them and never collide with the file's.
- Pacing: message i is due `(ts[i] - ts[0]) / speed` seconds after the file
  started (`speed` 1 = as recorded, 60 = a minute a second, 0 = all at once).
  Timestamps that go backwards are taken as equal to the latest one.

The file's bytes are checked only for framing here: a message the venue
cannot read is skipped (and counted) when its turn comes.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from itertools import accumulate

from hftd.wire import itch
from hftd.wire.errors import RemoteProtocolError

_REF_AT = {  # type byte -> offsets of the u64 order references in the message
    ord("A"): (11,),
    ord("F"): (11,),
    ord("U"): (11, 19),
}
_MATCH_AT = {  # type byte -> offset of the u64 match number
    ord("E"): 23,
    ord("C"): 23,
    ord("P"): 36,
    ord("Q"): 31,
}
_U64 = struct.Struct(">Q")


class MdFileError(Exception):
    """The file is not an ITCH BinaryFILE the venue can play."""


class MdFile:
    """A parsed BinaryFILE: messages, their relative times, the numbers they use."""

    def __init__(
        self,
        messages: list[bytes],
        times_ns: list[int],
        max_order_ref: int,
        max_match_number: int,
        digest: str,
    ) -> None:
        self.messages = messages
        self.times_ns = times_ns  # since the first message, non-decreasing
        self.max_order_ref = max_order_ref
        self.max_match_number = max_match_number
        self.digest = digest  # sha256 of the file: the journal's identity check

    def __len__(self) -> int:
        return len(self.messages)

    @classmethod
    def parse(cls, data: bytes) -> MdFile:
        try:
            messages = [bytes(m) for m in itch.iter_binary_file(data)]
        except RemoteProtocolError as exc:
            raise MdFileError(str(exc)) from exc
        if not messages:
            raise MdFileError("no messages")
        stamps: list[int] = []
        max_ref = max_match = 0
        for i, m in enumerate(messages):
            if len(m) < 11:
                raise MdFileError(f"message {i + 1}: {len(m)} bytes, shorter than an ITCH header")
            hi, lo = struct.unpack_from(">HI", m, 5)
            stamps.append((hi << 32) | lo)
            for off in _REF_AT.get(m[0], ()):
                if len(m) >= off + 8:
                    max_ref = max(max_ref, _U64.unpack_from(m, off)[0])
            off = _MATCH_AT.get(m[0], 0)
            if off and len(m) >= off + 8:
                max_match = max(max_match, _U64.unpack_from(m, off)[0])
        t0 = stamps[0]
        times = list(accumulate((t - t0 for t in stamps), max))
        return cls(messages, times, max_ref, max_match, hashlib.sha256(data).hexdigest())

    def due(self, position: int, elapsed_s: float, speed: float) -> int:
        """How many messages from `position` on are due `elapsed_s` after the start."""
        if speed <= 0:
            return len(self.messages) - position
        upto = bisect.bisect_right(self.times_ns, elapsed_s * speed * 1e9, lo=position)
        return upto - position

    def wait_s(self, position: int, elapsed_s: float, speed: float) -> float:
        """Seconds until message `position` is due (0 if it is, or the file is done)."""
        if speed <= 0 or position >= len(self.messages):
            return 0.0
        return max(0.0, self.times_ns[position] / 1e9 / speed - elapsed_s)

    def elapsed_at(self, position: int, speed: float) -> float:
        """The pacing clock when message `position` is due (to resume after a restart)."""
        if speed <= 0 or position >= len(self.messages):
            return 0.0
        return self.times_ns[position] / 1e9 / speed
