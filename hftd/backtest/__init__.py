"""Backtesting and paper trading on recorded market data (issue 15).

`source`: the one interface every recorded feed offers (ITCH 5.0 BinaryFILE,
LOBSTER, ...). `queue`: the venue model that puts our orders into the real
book at their queue position. `runner`: the in-process, deterministic loop
that drives the live system's own strategy, risk and position code.
"""
