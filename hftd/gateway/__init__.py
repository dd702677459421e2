"""The order gateway: pre-trade risk inline, OUCH session, positions and P&L, journal."""
