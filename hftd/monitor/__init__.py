"""The monitor: pulls every daemon's Status, keeps a rolling window, raises alerts.

It serves the web dashboard, /metrics and the console's state; see docs/monitoring.md.
"""
