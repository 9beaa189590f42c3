"""Waiting before a retry: one policy for every kind of I/O that retries (the feed's
reconnects, the vendor's REST API, the store), so they all spread out the same way."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Exponential delays with jitter: half fixed, half random, so clients that failed
    together do not come back together. ``reset()`` after a success."""

    def __init__(self, minimum_s: float, maximum_s: float) -> None:
        self.minimum_s, self.maximum_s = minimum_s, maximum_s
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum_s, self.minimum_s * float(2**self.attempt))
        self.attempt += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not secrecy)

    def reset(self) -> None:
        self.attempt = 0
