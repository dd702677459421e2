"""`hftd backtest --session DIR`: re-run the strategies on a live session's record.

A strategy daemon with `strategy.record_inputs` writes its engine's inputs to
`<day dir>/strategy-inputs.<run>.rec` (hftd.strategy.record). Each run's
record is replayed through a fresh engine and every order it sends is compared
with the one sent live, field for field.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from hftd.runtime.journal import JournalCorrupt, read_all
from hftd.strategy.record import RECORD_PREFIX, ReplayResult, replay


def session_files(where: Path) -> list[Path]:
    """The record files of a day's dir (or the one file given), by run."""
    if where.is_file():
        return [where]
    files = list(where.glob(f"{RECORD_PREFIX}.*.rec"))

    def run_of(p: Path) -> int:
        middle = p.name[len(RECORD_PREFIX) + 1 : -len(".rec")]
        return int(middle) if middle.isdigit() else 0

    return sorted(files, key=run_of)


def replay_session(where: Path) -> int:
    """Replay every run recorded in `where`; print what each reproduced. Exit status:
    0 all reproduced, 1 a difference, 2 nothing to replay or an unreadable record."""
    files = session_files(where) if where.exists() else []
    if not files:
        print(
            f"hftd backtest: {where}: no {RECORD_PREFIX}.<run>.rec here (record a session "
            "with strategy.record_inputs = true; it is kept in the day's journal dir)",
            file=sys.stderr,
        )
        return 2
    status = 0
    for path in files:
        try:
            records, torn = read_all(path)
            result: ReplayResult = replay(records)
        except (IndexError, KeyError, TypeError) as exc:  # a record of the wrong shape
            print(f"hftd backtest: {path}: not a session record: {exc!r}", file=sys.stderr)
            return 2
        except (OSError, JournalCorrupt, ValueError, msgspec.MsgspecError) as exc:
            print(f"hftd backtest: {path}: cannot replay: {exc}", file=sys.stderr)
            return 2
        tail = f" (a torn tail was left out: {torn.reason})" if torn is not None else ""
        print(
            f"{path.name}: run {result.run}, {result.inputs:,} inputs, {result.orders:,} orders "
            f"and {result.heartbeats:,} heartbeats reproduced field for field{tail}"
        )
        if not result.ok:
            status = 1
            if not result.inputs:
                print("  nothing recorded after the header")
            for m in result.mismatches:
                print(f"  input {m.record}: {m.what}")
    return status
