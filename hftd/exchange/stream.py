"""An append-only sequenced message log, compact in memory.

SoupBinTCP clients may log in from any sequence number, so the venue keeps
every message it has sequenced. One bytearray plus an offsets array costs
~8 bytes per message over the payload, where a list of bytes objects costs ~40.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator


class SequencedStream:
    """Messages numbered 1, 2, 3, ... in the order they were appended."""

    __slots__ = ("_data", "_ends")

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")  # _ends[i] = end offset of message i+1

    def append(self, payload: bytes) -> int:
        """Store a message; return its sequence number."""
        self._data += payload
        self._ends.append(len(self._data))
        return len(self._ends)

    def __len__(self) -> int:
        return len(self._ends)

    @property
    def next_sequence(self) -> int:
        return len(self._ends) + 1

    def get(self, seq: int) -> bytes:
        """Message number `seq` (1-based)."""
        if not 1 <= seq <= len(self._ends):
            raise IndexError(f"no message {seq} (have 1..{len(self._ends)})")
        start = self._ends[seq - 2] if seq > 1 else 0
        return bytes(self._data[start : self._ends[seq - 1]])

    def range(self, first: int, stop: int) -> Iterator[bytes]:
        """Messages first..stop-1, clipped to what exists."""
        first = max(first, 1)
        stop = min(stop, len(self._ends) + 1)
        ends, data = self._ends, self._data
        start = ends[first - 2] if first > 1 else 0
        for seq in range(first, stop):
            end = ends[seq - 1]
            yield bytes(data[start:end])
            start = end
