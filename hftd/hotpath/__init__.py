"""The composite hot path: feed, strategy and gateway in one process (`hft@hotpath`)."""
